// The operators every model and head is built from. All tensors are float32,
// row-major; images are NCHW. Each function states its shapes. Results do not
// depend on the thread count: every output element is reduced by one thread in
// a fixed order.
#ifndef SD_KERNELS_H
#define SD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/half.h"
#include "core/tensor.h"

// ---- GEMM (gemm.c) -------------------------------------------------------
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major like BLAS
// cblas_sgemm(CblasRowMajor, ...). op(A) = A (M x K, lda) or A^T (A is K x M).
// beta == 0 means C is not read (it may hold garbage or NaN).
void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc);

// y[rows,out] = x[rows,in] W^T + b, W is (out, in) as nn.Linear stores it; b may be NULL.
void linear_forward(const float *x, const float *W, const float *b, float *y, int rows, int in, int out);
// Its backward (gemm.c): dinp (rows,in) += dout W;  dweight (out,in) += dout^T x;  dbias[o] += sum_r dout[r,o].
// Accumulates (+=); each gradient may be NULL.
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int rows, int in, int out);

// The kernel set in use: one ISA's micro-kernels, packers and blocking, chosen at run time.
// Public here: its name and blocking, which the layout of weights packed for it depends on (a
// packed model file records them); its code is kernels/gemm_internal.h's GemmKernelOps.
typedef struct GemmKernelInfo {
    const char *name;  // "avx512", "avx2", "neon", "scalar" (f32 sets); "avx512_bf16"
    int mr, nr;        // register tile
    int mc, kc, nc;    // cache blocks: A block mc x kc (L2), B panel kc x nc (L3)
    const struct GemmKernelOps *ops;
} GemmKernelInfo;
// The f32 kernel set in use on this thread: the forced one, else the one for sd_cpu_isa().
const GemmKernelInfo *gemm_kernel_info(void);
// Forces an ISA path for the calling thread (ISA_SCALAR, ISA_AVX2, ...: a test hook, `pack --isa`,
// a library context's setting); -1 restores the automatic choice. Returns -1 (and changes
// nothing) if this build or CPU cannot run that path.
int gemm_force_isa(int isa);

// A weight matrix W (rows x K, row-major) packed once, at load, into the layout the
// micro-kernel reads (so that no forward pass packs a weight again): panels of
// width = mr rows when W is the GEMM's A operand (a conv weight, C = W X) or nr rows
// when W^T is its B operand (an nn.Linear weight, C = X W^T), cut into the kernel's
// k blocks of kc:
//   k block pc (kc long) starts at data + pc * padded_rows; in it panel q is kc*width
//   floats: W[q*width + i][pc + p] at [q*width*kc + p*width + i]; rows past `rows` are 0.
// So the panels one k block of the GEMM reads are one contiguous stream, each exactly
// what the per-call packing would have made. The layout belongs to one kernel set: when
// another is in use (gemm_force_isa), the GEMM repacks from it on the fly (same values).
typedef struct GemmPackedWeights {
    const GemmKernelInfo *kernel;  // the kernel set whose mr/nr/kc the layout has
    int rows, K, width, kc;
    int padded_rows;  // rows rounded up to a multiple of width
    int as_b;         // 0: A operand (panels of mr), 1: B^T operand (panels of nr)
    float *data;      // padded_rows * K floats, 64-byte aligned (NULL for f16 weights)
    // f16 weights (gemm_pack_weights_f16; data is NULL): the same layout with IEEE half elements.
    // The GEMM widens each block it needs (an A block mc x kc, a B panel kc x nc) to f32 into its
    // pack buffer where it would have read f32 weights in place, so the products are those of
    // the f32 path on the weights rounded to f16, bit for bit (docs/bf16.md, "f16 weights").
    uint16_t *half;
    int borrowed;     // 1: data / half belong to someone else (a mapped packed model file): not freed
} GemmPackedWeights;

// The GEMM keeps its workspaces between calls, per host thread (two threads may call the kernels
// at once): a thread that is done with the library frees its own with this (else they stay
// allocated until the process ends). The next call allocates them again.
void gemm_free_thread_buffers(void);

// Packs W (rows x K) for the kernel set in use; returns -1 (with a message) if out of memory.
int gemm_pack_weights(GemmPackedWeights *pw, const float *W, int rows, int K, int as_b);
void gemm_packed_weights_free(GemmPackedWeights *pw);
// Weights already in the packed layout of the kernel set in use (read from a packed model file,
// models/pack.h): pw describes `data` (padded_rows * K floats, 64-byte aligned), which stays the
// caller's. The floats the layout needs: gemm_packed_floats.
void gemm_packed_weights_view(GemmPackedWeights *pw, const float *data, int rows, int K, int as_b);
size_t gemm_packed_floats(int rows, int K, int width);
// f16 resident weights (the precision NN_F16, models/nn.h): W rounded to IEEE half (to nearest,
// ties to even: f16_from_f32, core/half.h) once, in the layout gemm_pack_weights writes, with 2-byte
// elements (pw->half). Returns -1 (with a message) if out of memory or if a value of W is beyond
// f16's range (|w| >= 65520 would round to inf): such weights need f32.
int gemm_pack_weights_f16(GemmPackedWeights *pw, const float *W, int rows, int K, int as_b);
// The same as gemm_packed_weights_view, for f16 panels (padded_rows * K halves, 64-byte aligned).
void gemm_packed_weights_view_f16(GemmPackedWeights *pw, const uint16_t *half, int rows, int K, int as_b);
// W[r][p] read back from the packed layout (f16 weights widened).
float gemm_packed_at(const GemmPackedWeights *pw, int r, int p);
// y[rows,out] = x[rows,in] W^T + b with W packed as_b (out = W->rows, in = W->K); row r of x
// starts at x + r*ldx (ldx >= in).
void linear_forward_packed(const float *x, int ldx, const GemmPackedWeights *W, const float *b, float *y, int rows);
// The same with x stored channels first, x[p*rows + r] (one sample of an NCHW map, rows = H*W):
// op(A) = x^T, so no transposed copy; the packed panels hold the same values, so the same bits.
void linear_forward_packed_cf(const float *x, const GemmPackedWeights *W, const float *b, float *y, int rows);

// ---- Convolution (conv.c) ------------------------------------------------
typedef struct {
    int kernel_h, kernel_w;
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;  // zero padding
} Conv2dGeometry;

Conv2dGeometry conv_geometry(int kernel, int stride, int pad);  // symmetric padding
int conv_out_size(int in, int kernel, int stride, int pad_before, int pad_after);

// y[N,Cout,Ho,Wo] = conv(x[N,Cin,H,W], weight[Cout,Cin,kh,kw]) + bias[Cout] (bias may be NULL).
// An implicit GEMM: the im2col columns are made inside the GEMM's B packer, no scratch.
void conv2d_forward(const float *x, int N, int Cin, int H, int W, const float *weight, const float *bias, int Cout,
                    Conv2dGeometry g, float *y);
// The same with the weight packed as the A operand (gemm_pack_weights(.., Cout, Cin*kh*kw, 0)).
void conv2d_forward_packed(const float *x, int N, int Cin, int H, int W, const GemmPackedWeights *weight,
                           const float *bias, int Cout, Conv2dGeometry g, float *y);
// Its backward (conv_backward.c), for the same x = inp, weight, geometry; dout (N,Cout,Ho,Wo):
//   dinp[n,ci,ih,iw] += sum_{co,kh,kw} weight[co,ci,kh,kw] dout[n,co,oh,ow]  (ih = oh*s-pt+kh, ...)
//   dweight[co,ci,kh,kw] += sum_{n,oh,ow} dout[n,co,oh,ow] inp[n,ci,ih,iw];  dbias[co] += sum dout[n,co,:,:]
// Accumulates (+=); dinp, dweight, dbias may each be NULL. Mallocs a transposed kernel and one sample
// of scratch for dinp when the kernel is not 1x1; returns -1 (with a message) only if that fails.
int conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                    const float *weight, int N, int Cin, int H, int W, int Cout, Conv2dGeometry g);

// ---- Normalisation (norm.c) ----------------------------------------------
// GroupNorm over (C/groups, HW) per sample and group; gamma/beta (C) may be NULL. y may equal x.
void groupnorm_forward(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                       int groups, float eps);
// The same, also giving the statistics it normalised with (what a backward needs): mean and
// rstd = 1/sqrt(var + eps), (N, groups) each; either may be NULL.
void groupnorm_forward_stats(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                             int groups, float eps, float *mean, float *rstd);
// LayerNorm over the last dim; gamma/beta (dim) may be NULL. y may equal x.
void layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim, float eps);
// BatchNorm with given statistics (eval mode): y = (x - mean) / sqrt(var + eps) * gamma + beta.
void batchnorm_forward_eval(const float *x, float *y, const float *mean, const float *var, const float *gamma,
                            const float *beta, int N, int C, int HW, float eps);
// Backward of groupnorm_forward_stats, given the mean/rstd (N*groups) it returned: dinp (N,C,HW),
// dgamma/dbeta (C); gamma may be NULL (= ones). Accumulates (+=); each gradient may be NULL.
void groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int N, int C, int HW, int groups);
// BatchNorm2d in training mode (F.batch_norm(training=True), ATen's CPU arithmetic): per channel over
// (N, HW), normalises with the batch mean and the BIASED batch variance, saves save_mean/save_rstd (C),
// and updates running_mean/running_var (may be NULL) with momentum and the UNBIASED variance:
//   running = (1 - momentum) * running + momentum * batch_stat;  num_batches_tracked (may be NULL) += 1.
// Returns -1 if N*HW < 2 (PyTorch refuses too). (fusion/layers.c's BatchNorm layer has its own
// training forward, with double statistics: the one the heads were trained and checked with.)
int batchnorm_forward_train(float *out, float *save_mean, float *save_rstd, float *running_mean,
                            float *running_var, int64_t *num_batches_tracked, const float *inp, const float *gamma,
                            const float *beta, int N, int C, int HW, double momentum, double eps);
// Its backward with the saved statistics; also right for the layer's forward (same mean and rstd).
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *save_mean, const float *save_rstd, const float *gamma, int N, int C, int HW);

// ---- Element-wise (activations.c) ------------------------------------------
void silu_inplace(float *x, int64_t n);            // x * sigmoid(x)
void relu_inplace(float *x, int64_t n);
void gelu_inplace(float *x, int64_t n);            // exact: 0.5 x (1 + erf(x / sqrt 2))
void gelu_tanh_inplace(float *x, int64_t n);       // tanh approximation
void quick_gelu_inplace(float *x, int64_t n);      // x * sigmoid(1.702 x)
void add_inplace(float *y, const float *x, int64_t n);     // y += x
void scale_inplace(float *y, float s, int64_t n);          // y *= s
// Softmax over the last dim of x[rows, n], in place.
void softmax_rows(float *x, int rows, int n);
// The backwards of relu_inplace, softmax_rows and a division by a scalar (accumulated, +=):
// dinp += dout where out > 0 (out = the ReLU's output, so an in-place ReLU is fine);
// dinp += out * (dout - sum_j dout_j out_j) per row, out = softmax_rows' output (rows, n);
// out = inp / t for n values: dinp += dout / t, *dt += -sum(dout * inp) / t^2 (dinp, dt may be NULL).
void relu_backward(float *dinp, const float *dout, const float *out, int64_t n);
void softmax_backward(float *dinp, const float *dout, const float *out, int rows, int n);
void div_scalar_backward(float *dinp, float *dt, const float *dout, const float *inp, float t, int64_t n);

// ---- Attention (attention.c) ----------------------------------------------
// Multi-head scaled dot-product attention with an online softmax over key tiles:
// never the Nq x Nk matrix. q (B, Nq, heads*head_dim), k and v (B, Nk, heads*head_dim),
// out (B, Nq, heads*head_dim). out = softmax(scale * q k^T [+ causal mask]) v per head.
// causal: query i sees keys j <= i (CLIP text).
int attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                      int head_dim, float scale, int causal, Arena *scratch);
// Arena bytes attention_forward takes (for every thread of omp_get_max_threads()); without an
// arena it takes the same from the heap for the call.
size_t attention_scratch_bytes(int Nk, int head_dim);

// ---- Resampling and pooling (resample.c) ------------------------------------
// Bilinear resize like F.interpolate(mode="bilinear", antialias=False).
void resize_bilinear(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo, int align_corners);
// Nearest-neighbour x2 upsampling (F.interpolate(scale_factor=2, mode="nearest")).
void upsample_nearest2x(const float *x, float *y, int N, int C, int H, int W);
// AdaptiveAvgPool2d to (Ho, Wo): bins [floor(i*H/Ho), ceil((i+1)*H/Ho)).
void adaptive_avg_pool2d(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo);
// Their backwards, accumulated (+=) into dinp (N,C,H,W) from dout (N,C,Ho,Wo): the adjoint of
// resize_bilinear (same source indices and weights; each plane scattered by one thread in output
// order, as ATen's upsample_bilinear2d_backward), and of adaptive_avg_pool2d (each input of bin
// (oh,ow) gets dout / bin size; Ho = Wo = 1 is the global average pool).
void resize_bilinear_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo,
                              int align_corners);
void adaptive_avg_pool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo);

// ---- bf16 compute (gemm.c with the bf16 kernel set, conv.c, attention.c) -------------
// Optional (AVX512_BF16, vdpbf16ps): the GEMM run with the bf16 kernel set
// (gemm_avx512_bf16.c), both operands rounded to bf16 and the products summed in f32. A weight
// matrix is rounded and packed once (gemm_bf16_pack_weights); the other operand is rounded
// while it is packed, call by call. f32 stays the default everywhere: callers choose this path
// explicitly, and only where gemm_bf16_supported(). Layout, rounding and the measured error
// and speed: docs/bf16.md.

// bf16_from_f32 / f32_from_bf16, the rounding the bf16 kernel sets use: core/half.h (included above).

// 1 if this build and CPU can run the bf16 kernel: x86-64, AVX-512 in use
// (sd_cpu_isa() == ISA_AVX512, so SATDIFUSER_ISA=avx2 turns it off too) and AVX512_BF16.
int gemm_bf16_supported(void);

// Which GEMM operand a packed weight matrix w (rows x K, row-major) stands for:
//   GEMM_BF16_A:  C[M = rows, N] = W X           (conv weights Cout x Cin*kh*kw)
//   GEMM_BF16_BT: C[M, N = rows] = X W^T         (nn.Linear weights (out, in))
enum { GEMM_BF16_A = 0, GEMM_BF16_BT = 1 };

// W rounded to bf16, in the k-pair layout vdpbf16ps reads: one 32-bit word per
// (row, k pair), the bf16 of the even k in the low half, of the odd k in the high
// half (a zero there when K is odd). Rows are grouped in micro-panels of `panel`
// rows (the kernel's register tile: 14 for side A, 32 for side BT; rows past
// `rows` are zeros), each panel holding all kpairs = ceil(K/2) pairs:
//   word of (r, k) = data[(r / panel) * kpairs * panel + (k / 2) * panel + r % panel].
typedef struct {
    int rows, K, side;
    int panel, kpairs;
    uint32_t *data;
    size_t bytes;
} Bf16Packed;

// Rounds and packs w (rows x K f32, row-major). Returns 0, or -1 via sd_errorf
// (bad arguments, out of memory). Free with gemm_bf16_packed_free.
int gemm_bf16_pack_weights(Bf16Packed *p, const float *w, int rows, int K, int side);
void gemm_bf16_packed_free(Bf16Packed *p);

// y[rows, out] = x[rows, in] W^T + b with W packed as side GEMM_BF16_BT (W->rows = out,
// W->K = in); b (out) may be NULL. Returns 0, or -1 via sd_errorf (CPU without AVX512_BF16,
// shapes that do not match W, out of memory).
int linear_forward_bf16(const float *x, const Bf16Packed *W, const float *b, float *y, int rows);
// The same with x stored channels first, x[p*rows + r] (as linear_forward_packed_cf): same bits.
int linear_forward_bf16_cf(const float *x, const Bf16Packed *W, const float *b, float *y, int rows);

// conv2d_forward (kernels.h) in bf16: y[N,Cout,Ho,Wo] = conv(x[N,Cin,H,W], weight) + bias[Cout]
// (bias may be NULL), weight packed as side GEMM_BF16_A from the (Cout, Cin*kh*kw) f32 weight.
// Each sample is rounded to bf16 once into a zero-padded copy (Cin x (H+pads) x (W+pads)
// uint16; kept between calls up to 32 MB), from which the implicit im2col is read in pairs.
// Returns 0 or -1.
int conv2d_forward_bf16(const float *x, int N, int Cin, int H, int W, const Bf16Packed *weight, const float *bias,
                        int Cout, Conv2dGeometry g, float *y);

// Multi-head attention with Q K^T and P V in bf16 (q, k, v and the softmax's P rounded to
// bf16, every sum in f32; the online softmax in f32): attention_forward's contract
// (kernels.h) otherwise. Returns -1 via sd_errorf on a CPU without AVX512_BF16.
int attention_forward_bf16(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                           int Nk, int head_dim, float scale, int causal, Arena *scratch);

#endif
