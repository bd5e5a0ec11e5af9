// The convolutional pieces of the diffusers UNet and VAE (diffusers 0.17.0):
//   timestep_embedding_sinusoidal  <- embeddings.py get_timestep_embedding / Timesteps
//   TimestepEmbedding              <- embeddings.py TimestepEmbedding (linear_1, SiLU, linear_2)
//   ResnetBlock2D                  <- resnet.py ResnetBlock2D
//   Downsample2D                   <- resnet.py Downsample2D (stride-2 conv; padding 0 means F.pad (0,1,0,1))
//   Upsample2D                     <- resnet.py Upsample2D (nearest x2 or to a given size, then conv 3x3)
// Every forward takes explicit shapes, writes into a caller-provided output and
// takes its temporaries from the arena (released before returning).
#ifndef SD_MODELS_UNET_BLOCKS_H
#define SD_MODELS_UNET_BLOCKS_H

#include "models/capture.h"
#include "models/nn.h"

// ---- time embedding --------------------------------------------------------

// emb[b, :] for timesteps t[b] (float, may be negative), embedding_dim channels:
// freq_i = exp(-ln(10000) * i / (half - freq_shift)), emb = [sin(t freq), cos(t freq)]
// ([cos, sin] with flip_sin_to_cos), zero-padded when dim is odd. float32 like diffusers.
void timestep_embedding_sinusoidal(const float *t, int B, int dim, int flip_sin_to_cos, float freq_shift, float *emb);

typedef struct {
    NnLinear linear_1, linear_2;
} TimestepEmbedding;

int timestep_embedding_load(NnWeights *w, TimestepEmbedding *te, const char *name, int in, int dim);
// out (B, dim) = linear_2(silu(linear_1(x))), x (B, in). Scratch: B*dim floats.
int timestep_embedding_forward(const TimestepEmbedding *te, const float *x, float *out, int B, Arena *arena);

// ---- ResnetBlock2D -----------------------------------------------------------

typedef struct {
    int in_channels, out_channels;
    int temb_channels;          // 0: no time embedding (VAE)
    int scale_shift;            // time_embedding_norm == "scale_shift" (else "default")
    float output_scale_factor;
    NnGroupNorm norm1, norm2;
    NnConv2d conv1, conv2;
    NnLinear time_emb_proj;     // temb_channels -> out (or 2*out with scale_shift)
    int has_conv_shortcut;      // in_channels != out_channels
    NnConv2d conv_shortcut;     // 1x1
} ResnetBlock2D;

int resnet_block_load(NnWeights *w, ResnetBlock2D *r, const char *name, int in_channels, int out_channels,
                      int temb_channels, int groups, float eps, float output_scale_factor, int scale_shift);

// out (B, out, H, W) = (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(temb))))) / output_scale_factor
// x (B, in, H, W); temb_silu = silu(temb) (B, temb_channels), NULL when temb_channels == 0 (the SiLU of
// the time embedding is the same for every block, so the caller applies it once).
// Captures "<path>.conv1", "<path>.conv2" (conv2 output before the shortcut add) and "<path>".
int resnet_block_forward(const ResnetBlock2D *r, const float *x, const float *temb_silu, float *out, int B, int H,
                         int W, Arena *arena, ModuleCaptures *cap, const char *path);

// ---- Downsample2D / Upsample2D -------------------------------------------------

typedef struct {
    int channels;
    NnConv2d conv;  // 3x3 stride 2; padding p (p > 0) or (0,1,0,1) when p == 0
} Downsample2D;

int downsample_load(NnWeights *w, Downsample2D *d, const char *name, int channels, int padding);
void downsample_out_size(const Downsample2D *d, int H, int W, int *Ho, int *Wo);
int downsample_forward(const Downsample2D *d, const float *x, float *out, int B, int H, int W);

typedef struct {
    int channels;
    NnConv2d conv;  // 3x3 pad 1
} Upsample2D;

int upsample_load(NnWeights *w, Upsample2D *u, const char *name, int channels);
// x (B, C, H, W) -> out (B, C, Ho, Wo): nearest to (Ho, Wo) (2H x 2W in the usual case), then conv.
int upsample_forward(const Upsample2D *u, const float *x, float *out, int B, int H, int W, int Ho, int Wo,
                     Arena *arena);

// F.interpolate(mode="nearest", size=(Ho, Wo)) as ATen computes it: identity when the size is unchanged,
// dst/2 when doubled, else src = min(floor(dst * (float)in/out), in-1).
void upsample_nearest_to(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo);

#endif
