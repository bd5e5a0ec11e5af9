// The small layers every model file is built from (nn.Linear, nn.Conv2d,
// nn.GroupNorm, nn.LayerNorm), each a plain struct of Tensors filled by its
// state_dict name, and the loader that fills them from a safetensors file.
//
// Weights stored as float32 stay in the file mapping (st_load gives a view);
// f16/bf16/f64 weights are converted into owned copies. The loader remembers
// every tensor it filled so that nn_weights_free releases them all.
//
// Linear and conv weights are packed once at load into the GEMM micro-kernel's
// panel layout (gemm_pack_weights) and the original is then released (its pages
// of the mapping dropped, an owned copy freed): every forward reads the packed
// copy, so no forward pass spends time repacking weights, and the model holds
// its weights once in memory. Such a layer's `weight` tensor is empty after load.
#ifndef SD_MODELS_NN_H
#define SD_MODELS_NN_H

#include "core/tensor.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

#define NN_NAME_MAX 256

typedef struct {
    const SafeTensors *st;
    char prefix[64];   // prepended to every name ("unet.", "vae." or "")
    Tensor **loaded;   // every tensor filled so far (pointers into the model's structs)
    int n_loaded, cap_loaded;
    GemmPackedWeights **packed;  // every weight packed for the GEMM so far (freed with the tensors)
    int n_packed, cap_packed;
    Bf16Packed **packed_bf16;    // the same for bf16 compute
    int n_packed_bf16, cap_packed_bf16;
    int bf16;                    // 1: linear and conv weights packed for the bf16 GEMM (nn_set_precision)
    int f16;                     // 1: linear and conv weights rounded to f16, f32 compute (NN_F16)
    // Names, for the packed model file's writer (models/pack.h): the full name of loaded[i]
    // and of packed[i] ("<name>.packed", "<name>.packed.0" / ".1" for the two halves of a GEGLU).
    char **loaded_names, **packed_names;
    // st is a packed model file: its weights are stored as "<name>.packed" in the panel layout
    // of the kernel set it was packed for (panels of pack_mr / pack_nr rows, k blocks of pack_kc).
    // pack_same: the kernel set in use has that layout, so the panels are used in place from the
    // mapping; otherwise they are read back and packed again at load (pack_repacked counts them).
    // pack_f16: the panels are f16 (pack.precision "f16"): used only by NN_F16 loads.
    int pack_mr, pack_nr, pack_kc, pack_same, pack_repacked, pack_f16;
} NnWeights;

// The compute precision of the models the calling thread loads from now on: NN_F32 (the default),
// NN_BF16 (linear and conv products with both operands rounded to bf16 and summed in f32, on
// CPUs with AVX512_BF16 or arm64's FEAT_BF16; attention, norms and activations stay f32), or
// NN_F16 (linear and conv weights rounded to IEEE half once at load and kept 16-bit in memory,
// every product in f32: the bits of NN_F32 on the rounded weights; any CPU). A per-thread
// setting (each host thread has its own; the library API sets it from its context); a loaded
// model keeps the precision it was loaded with. The CLI sets it from $SATDIFUSER_PRECISION at
// start-up. Returns -1 (with a message) if bf16 is asked for and this CPU lacks it.
enum { NN_F32 = 0, NN_BF16 = 1, NN_F16 = 2 };
int nn_set_precision(int precision);
int nn_precision(void);
// "f32", "bf16", "f16" (the CLI's --precision and the features' compute_precision) <-> NN_*:
// nn_precision_parse returns -1 with a message naming `what` (the option) for anything else.
int nn_precision_parse(const char *name, const char *what);
const char *nn_precision_name(int precision);

// st must stay open while the model is used (f32 weights point into it).
void nn_weights_init(NnWeights *w, const SafeTensors *st, const char *prefix);
// Frees every tensor loaded through w (owned copies; views are only forgotten).
void nn_weights_free(NnWeights *w);
// 1 if prefix + name exists in the file.
int nn_weights_has(const NnWeights *w, const char *name);
// Loads prefix + name into t, checking the shape (ndim/shape may be 0/NULL: any).
// A missing tensor or a wrong shape is an error naming the file, the tensor and
// both shapes.
int nn_weights_load(NnWeights *w, const char *name, int ndim, const int *shape, Tensor *t);
// Like nn_weights_load, but accepts any stored shape with the same number of
// elements as `shape` (a 1x1 conv weight (o,i,1,1) used as a linear (o,i)).
int nn_weights_load_as(NnWeights *w, const char *name, int ndim, const int *shape, Tensor *t);

// ---- layers ---------------------------------------------------------------

// nn.Linear: weight (out, in) packed as the B^T operand, bias (out) or none (bias.data == NULL).
typedef struct {
    Tensor weight, bias;        // weight is released after packing
    GemmPackedWeights packed;   // weight (out, in), panels of nr rows (f32 compute; f16 elements for NN_F16)
    Bf16Packed bf16;            // or: weight rounded to bf16 (bf16 compute, data != NULL)
    int in, out;
} NnLinear;

// nn.Conv2d: weight (cout, cin, k, k) packed as the A operand (cout x cin*k*k), bias (cout) or none.
typedef struct {
    Tensor weight, bias;        // weight is released after packing
    GemmPackedWeights packed;   // weight (cout, cin*k*k), panels of mr rows (f32 compute; f16 for NN_F16)
    Bf16Packed bf16;            // or: weight rounded to bf16 (bf16 compute, data != NULL)
    int cin, cout;
    Conv2dGeometry geom;
} NnConv2d;

typedef struct {
    Tensor weight, bias;  // (channels) each
    int channels, groups;
    float eps;
} NnGroupNorm;

typedef struct {
    Tensor weight, bias;  // (dim) each
    int dim;
    float eps;
} NnLayerNorm;

// `name` is the module path without ".weight" ("conv_in", "time_embedding.linear_1").
int nn_linear_load(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias);
// A 1x1 nn.Conv2d, weight (out, in, 1, 1), used as a linear on (rows, in): proj_in/proj_out of a
// Transformer2DModel without linear projection.
int nn_linear_load_conv1x1(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias);
// A linear stored either as (out, in) or as (out, in, 1, 1) (old VAE attention checkpoints).
int nn_linear_load_any(NnWeights *w, NnLinear *l, const char *name, int in, int out, int has_bias);
// A linear (2*out, in) loaded as two linears of `out` outputs each: rows [0, out) into `first`,
// [out, 2*out) into `second` (GEGLU's ff.net.0.proj: value half, gate half); with its bias.
int nn_linear_load_halves(NnWeights *w, NnLinear *first, NnLinear *second, const char *name, int in, int out);
int nn_conv2d_load(NnWeights *w, NnConv2d *c, const char *name, int cin, int cout, int kernel, Conv2dGeometry geom,
                   int has_bias);
int nn_groupnorm_load(NnWeights *w, NnGroupNorm *g, const char *name, int channels, int groups, float eps);
int nn_layernorm_load(NnWeights *w, NnLayerNorm *l, const char *name, int dim, float eps);

// y[rows, out] = x[rows, in] W^T + b. Returns 0, or -1 with a message (only the bf16 path can
// fail: out of memory for its pack buffers).
int nn_linear(const NnLinear *l, const float *x, float *y, int rows);
// The same with x stored channels first, x[k*rows + r]: one sample (C, H*W) of an NCHW map as
// H*W rows of C, without a transposed copy. Same bits as nn_linear on the transposed x.
int nn_linear_channels_first(const NnLinear *l, const float *x, float *y, int rows);
// y (N, cout, Ho, Wo) from x (N, cin, H, W); Ho/Wo by the layer's geometry.
int nn_conv2d(const NnConv2d *c, const float *x, int N, int H, int W, float *y);
void nn_conv2d_out_size(const NnConv2d *c, int H, int W, int *Ho, int *Wo);
// GroupNorm over x (N, channels, HW); y may equal x.
void nn_groupnorm(const NnGroupNorm *g, const float *x, float *y, int N, int HW);
// y = silu(groupnorm(x + channel_bias[n, c])) in one pass (kernels/fused.h); channel_bias (N, channels)
// may be NULL; y may equal x. Same bits as the add, nn_groupnorm and silu_inplace in turn.
void nn_groupnorm_silu(const NnGroupNorm *g, const float *x, float *y, const float *channel_bias, int N, int HW);
// LayerNorm over the last dim of x (rows, dim); y may equal x.
void nn_layernorm(const NnLayerNorm *l, const float *x, float *y, int rows);

// ---- layout helpers (plain loops: kernels.h has no transpose) --------------

// (B, C, HW) -> (B, HW, C)
void nn_nchw_to_nlc(const float *x, float *y, int B, int C, int HW);
// (B, HW, C) -> (B, C, HW)
void nn_nlc_to_nchw(const float *x, float *y, int B, int C, int HW);

// floats from the arena, or NULL with the arena's message.
float *nn_alloc(Arena *a, int64_t count);

#endif
