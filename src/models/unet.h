// The diffusers UNet2DConditionModel (0.17.0) forward, and DiffusionSat's SatUNet metadata embeddings.
//
// Build it from the model's config.json and its weights, named as the PyTorch state_dict names them:
//
//   JsonValue cfg;  json_parse_file("unet/config.json", &cfg);
//   SafeTensors st; st_open(&st, "unet/diffusion_pytorch_model.safetensors");
//   UNet unet;      unet_load(&unet, &cfg, &st, "", -1);    // prefix "unet." for a pipeline file
//   float *eps = malloc(unet_output_floats(&unet, B, h, w) * sizeof(float));
//   unet_run(&unet, sample, B, h, w, timesteps, context, L, NULL, NULL, eps);
//   unet_free(&unet); st_close(&st);                      // st must outlive the UNet (f32 weights are views)
//
// Shapes: sample (B, in_channels, h, w) NCHW; timesteps (B) float (fractional and negative values are fine,
// the inversion starts at t = -1); context = encoder_hidden_states (B, L, cross_attention_dim); metadata
// (B, num_metadata) when the model has metadata embeddings, else NULL; output (B, out_channels, h, w).
// h and w need not be equal nor multiples of 2^(number of upsamplers): as diffusers, the up path then
// upsamples to the skip connection's size.
//
// Config keys read (diffusers' defaults when absent): in_channels, out_channels, block_out_channels,
// layers_per_block (int or list), down_block_types / up_block_types (CrossAttnDownBlock2D, DownBlock2D,
// CrossAttnUpBlock2D, UpBlock2D), mid_block_type (UNetMidBlock2DCrossAttn or null), attention_head_dim
// (int or list), num_attention_heads (int or list, when present it wins), cross_attention_dim (int or list),
// use_linear_projection, only_cross_attention (bool or list), upcast_attention (no effect in float32),
// norm_num_groups, norm_eps, flip_sin_to_cos, freq_shift, downsample_padding, mid_block_scale_factor,
// resnet_time_scale_shift (default | scale_shift), time_embedding_type (positional), time_embedding_dim,
// conv_in_kernel, conv_out_kernel, center_input_sample, use_metadata / num_metadata (SatUNet).
// Features of the config this implementation does not have (class/addition embeddings, encoder_hid_proj,
// fourier time embedding, dual cross attention, ...) are rejected with a message naming the key.
//
// diffusers 0.17 quirk, kept: attention_head_dim is passed to the blocks as the number of heads
// (attn_num_head_channels), and the head size is channels / heads. SD 2.x configs give (5,10,20,20),
// i.e. 64-wide heads; SD 1.x gives 8 heads everywhere.
//
// Captures: pass a ModuleCaptures (capture.h) listing module paths; each is filled with a copy of that
// module's output, exactly as a PyTorch forward hook would see it:
//   "<blk>.resnets.<j>"                                   ResnetBlock2D output (B, C, h, w)
//   "<blk>.resnets.<j>.conv1" / ".conv2"                  conv outputs before the time add / shortcut add
//   "<blk>.attentions.<j>"                                Transformer2DModel output (B, C, h, w)
//   "<blk>.attentions.<j>.transformer_blocks.0"           BasicTransformerBlock output (B, h*w, C)
//   "<blk>.attentions.<j>.transformer_blocks.0.attn1"     self-attention after to_out, before the residual
//                                                         add (B, h*w, C); also ".attn2", ".ff"
//   "<blk>.downsamplers.0", "<blk>.upsamplers.0", "up_blocks.<i>", "mid_block", "conv_in", "conv_out",
//   "time_embedding"
// with <blk> = down_blocks.<i> | mid_block | up_blocks.<i>. A requested path that the model does not
// have is an error after the forward. With captures == NULL the forward does no capture work at all.
// unet_up_block_paths lists the paths the feature extractor wants (SPEC.md section 6).
#ifndef SD_MODELS_UNET_H
#define SD_MODELS_UNET_H

#include "io/json.h"
#include "io/safetensors.h"
#include "models/capture.h"
#include "models/nn.h"
#include "models/transformer2d.h"
#include "models/unet_blocks.h"

#define UNET_MAX_BLOCKS 8
#define UNET_MAX_LAYERS 8

typedef struct {
    int has_attention;  // CrossAttn*Block2D
    int num_layers;     // resnets (layers_per_block, +1 in the up path)
    ResnetBlock2D resnets[UNET_MAX_LAYERS];
    Transformer2D attentions[UNET_MAX_LAYERS];
    int has_sampler;    // downsamplers.0 / upsamplers.0
    Downsample2D downsampler;
    Upsample2D upsampler;
    int out_channels;
} UNetBlock;

typedef struct {
    // ---- config ----
    int in_channels, out_channels;
    int n_blocks;
    int block_out_channels[UNET_MAX_BLOCKS];
    int heads[UNET_MAX_BLOCKS];               // per down block (mid: the last, up: reversed)
    int cross_attention_dim[UNET_MAX_BLOCKS];
    int time_embed_dim, timestep_input_dim;
    int flip_sin_to_cos;
    float freq_shift;
    int center_input_sample;
    int has_mid_block;
    int num_metadata;                         // 0 when metadata embeddings are off
    // ---- weights (state_dict names) ----
    NnConv2d conv_in;
    TimestepEmbedding time_embedding;
    TimestepEmbedding *metadata_embedding;    // num_metadata of them (SatUNet)
    UNetBlock down_blocks[UNET_MAX_BLOCKS];
    UNetBlock mid_block;                      // resnets[0..1], attentions[0]
    UNetBlock up_blocks[UNET_MAX_BLOCKS];
    int has_conv_norm_out;                    // norm_num_groups != null
    NnGroupNorm conv_norm_out;
    NnConv2d conv_out;
    NnWeights weights;
} UNet;

// prefix: prepended to every weight name ("unet." or ""). use_metadata: -1 follows the config
// (use_metadata true and num_metadata > 0; SatUNet's default num_metadata is 7), 0 forces the metadata
// embeddings off (as SatDiFuser loads DiffusionSat: use_metadata=False), 1 requires them.
int unet_load(UNet *u, const JsonValue *config, const SafeTensors *st, const char *prefix, int use_metadata);
void unet_free(UNet *u);

int64_t unet_output_floats(const UNet *u, int B, int h, int w);
// The forward with a caller's arena (it grows as needed; reset to its mark before returning): a caller
// that keeps one arena across many calls (the DDIM walk) pays for its growth once.
// out: (B, out_channels, h, w).
int unet_forward(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps,
                 const float *context, int L, const float *metadata, ModuleCaptures *captures, Arena *arena,
                 float *out);
// The same with an arena made (and freed) inside.
int unet_run(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps, const float *context,
             int L, const float *metadata, ModuleCaptures *captures, float *out);

// The capturable paths of the up_blocks modules whose name ends in one of `suffixes` (string suffix,
// as SatDiFuser's get_named_modules_with_suffix), in SPEC.md section 6 order: block i ascending; inside
// a block, suffix by suffix in the order given; for one suffix, modules in named_modules() order.
// {"attn1", "conv2"} gives, per block, all self-attention outputs then all ResNet conv2 outputs.
// *paths is a malloc'd array of malloc'd strings (free with unet_paths_free).
int unet_up_block_paths(const UNet *u, const char *const *suffixes, int n_suffixes, char ***paths, int *count);
void unet_paths_free(char **paths, int count);

#endif
