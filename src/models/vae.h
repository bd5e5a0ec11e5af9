// The encoder half of diffusers' AutoencoderKL (0.17.0 autoencoder_kl.py + vae.py Encoder):
//
//   image (B, 3, H, W) in [-1, 1]
//   -> encoder.conv_in (3x3)
//   -> encoder.down_blocks.<i> (DownEncoderBlock2D): layers_per_block ResnetBlock2D (no time embedding,
//      GroupNorm eps 1e-6), then Downsample2D (3x3 stride 2 after F.pad (0,1,0,1)) except in the last block
//   -> encoder.mid_block (UNetMidBlock2D): resnets.0, attentions.0 (GroupNorm + single-head spatial
//      self-attention + residual), resnets.1
//   -> encoder.conv_norm_out + SiLU + encoder.conv_out (3x3, 2 * latent_channels)
//   -> quant_conv (1x1) = moments; mean, logvar = chunk(moments, 2); logvar = clamp(logvar, -30, 20)
//
// Usage:
//   VaeEncoder vae;  vae_encoder_load(&vae, &config, &st, "");      // "vae." for a pipeline file
//   int h, w;        vae_latent_size(&vae, H, W, &h, &w);               // H/8 x W/8 for SD
//   vae_encode_run(&vae, image, B, H, W, mean, logvar, NULL);           // mean/logvar (B, 4, h, w)
//   vae_latent(mean, logvar, n, vae.scaling_factor, 0, 0, z0);          // z0 = mean * 0.18215
//
// Weight names: the AutoencoderKL state_dict's encoder.* and quant_conv.* (decoder.* is ignored). The
// mid-block attention is encoder.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}; checkpoints
// saved before diffusers 0.14 name them {group_norm,query,key,value,proj_attn}: both load.
// The attention runs through attention_forward (online softmax), so a 512x512 image (4096 positions in
// the mid block) never holds the 4096 x 4096 matrix.
//
// Captures (capture.h), as PyTorch forward hooks see them: "encoder.conv_in", "encoder.down_blocks.<i>",
// "encoder.down_blocks.<i>.resnets.<j>" (+ ".conv1", ".conv2"), "encoder.down_blocks.<i>.downsamplers.0",
// "encoder.mid_block.resnets.<j>", "encoder.mid_block.attentions.0" (B,C,h,w after the residual add),
// "encoder.mid_block", "encoder.conv_out", "encoder", "quant_conv".
#ifndef SD_MODELS_VAE_H
#define SD_MODELS_VAE_H

#include <stdint.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "models/capture.h"
#include "models/nn.h"
#include "models/transformer2d.h"
#include "models/unet_blocks.h"

#define VAE_MAX_BLOCKS 8
#define VAE_MAX_LAYERS 8

typedef struct {
    int num_layers;
    ResnetBlock2D resnets[VAE_MAX_LAYERS];
    int has_downsampler;
    Downsample2D downsampler;
} VaeDownBlock;

typedef struct {
    // ---- config ----
    int in_channels, latent_channels;
    int n_blocks;
    int block_out_channels[VAE_MAX_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    float scaling_factor;  // 0.18215 unless the config says otherwise
    // ---- weights ----
    NnConv2d conv_in;
    VaeDownBlock down_blocks[VAE_MAX_BLOCKS];
    ResnetBlock2D mid_resnets[2];
    NnGroupNorm mid_attn_norm;     // mid_block.attentions.0.group_norm (eps 1e-6)
    AttentionLayer mid_attn;       // 1 head of block_out_channels[-1] channels, biases on q/k/v
    NnGroupNorm conv_norm_out;
    NnConv2d conv_out;             // -> 2 * latent_channels
    NnConv2d quant_conv;           // 1x1, 2 * latent_channels
    NnWeights weights;
} VaeEncoder;

// prefix: "vae." for a pipeline file, else "". Config keys: in_channels, down_block_types
// (DownEncoderBlock2D), block_out_channels, layers_per_block, act_fn (silu), latent_channels,
// norm_num_groups, scaling_factor.
int vae_encoder_load(VaeEncoder *v, const JsonValue *config, const SafeTensors *st, const char *prefix);
void vae_encoder_free(VaeEncoder *v);

// The latent size for an (H, W) image: each downsampler maps n to floor((n - 2) / 2) + 1.
void vae_latent_size(const VaeEncoder *v, int H, int W, int *h, int *w);

// The posterior of image (B, in_channels, H, W): mean and logvar (B, latent_channels, h, w), logvar
// clamped to [-30, 20]; logvar may be NULL. Uses the caller's arena (reset before returning).
int vae_encode(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
               ModuleCaptures *captures, Arena *arena);
// The same with an arena made inside.
int vae_encode_run(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
                   ModuleCaptures *captures);

// The scaled latent from the posterior: z = mean * scaling_factor (sample == 0, the default here), or
// z = (mean + exp(0.5 * logvar) * eps) * scaling_factor with eps ~ N(0, 1) from vae_normal(seed, i)
// (sample != 0; the original's latent_dist.sample(generator)). n = number of elements.
void vae_latent(const float *mean, const float *logvar, int64_t n, float scaling_factor, int sample, uint64_t seed,
                float *z);
// The i-th standard normal of the stream `seed`: counter-based (splitmix64 + Box-Muller), so each value
// depends only on (seed, i) and never on the thread count. Not torch.randn's stream.
float vae_normal(uint64_t seed, uint64_t i);

#endif
