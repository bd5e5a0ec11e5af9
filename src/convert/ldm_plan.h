// Stable Diffusion checkpoints in the original LDM/CompVis layout (one file:
// model.diffusion_model.*, first_stage_model.*, cond_stage_model.*) and the
// names the same tensors have in a diffusers pipeline folder (unet/, vae/,
// text_encoder/). The job of diffusers 0.17's convert_from_ckpt.py
// (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
// convert_open_clip_checkpoint, convert_ldm_clip_checkpoint), written as plain
// rename tables (ldm_plan.c) plus the index arithmetic of the blocks:
//
//   UNet  model.diffusion_model.input_blocks.i.j   i = 1 + level*(L+1) + layer, L = layers_per_block
//           j = 0 ResBlock -> down_blocks.level.resnets.layer (layer == L: Downsample .0.op -> downsamplers.0.conv)
//           j = 1 SpatialTransformer -> down_blocks.level.attentions.layer
//         middle_block.0/1/2 -> mid_block.resnets.0 / attentions.0 / resnets.1
//         output_blocks.i.j   i = level*(L+1) + layer: .0 ResBlock, .1 SpatialTransformer, last .conv Upsample
//   VAE   first_stage_model.encoder.down.i.block.j -> encoder.down_blocks.i.resnets.j
//         first_stage_model.decoder.up.i.block.j   -> decoder.up_blocks.(n-1-i).resnets.j   (reversed)
//         mid.attn_1.q/k/v/proj_out (1x1 convs)      -> mid_block.attentions.0.to_q/to_k/to_v/to_out.0 (linears)
//   Text  SD 2.x OpenCLIP cond_stage_model.model.transformer.resblocks.i -> text_model.encoder.layers.i,
//         attn.in_proj_weight (3d, d) split into q_proj / k_proj / v_proj; the last resblock is not
//         converted (SD 2.x uses the penultimate layer, the diffusers text encoder has one layer less);
//         SD 1.x CLIP-L cond_stage_model.transformer.text_model.* -> text_model.* (already transformers names)
//
// docs/convert.md has the whole table.
#ifndef SD_LDM_PLAN_H
#define SD_LDM_PLAN_H

#include <stdint.h>

#include "io/safetensors.h"

#define LDM_NAME_MAX        256
#define LDM_MAX_LEVELS      8  // UNet / VAE resolution levels
#define LDM_MAX_LAYERS      8  // layers_per_block
#define LDM_MAX_TEXT_LAYERS 128

// The diffusers pipeline part a tensor goes to.
typedef enum { LDM_UNET, LDM_VAE, LDM_TEXT, LDM_PARTS } LdmPart;
// The folder of each part and its weights file name.
extern const char *const ldm_part_folder[LDM_PARTS];  // "unet", "vae", "text_encoder"
extern const char *const ldm_part_file[LDM_PARTS];    // "diffusion_pytorch_model.safetensors", ..., "model.safetensors"

typedef enum { LDM_TEXT_NONE, LDM_TEXT_OPENCLIP, LDM_TEXT_CLIP } LdmTextKind;

// What a tensor's data becomes.
typedef enum {
    LDM_AS_IS,              // the same shape
    LDM_CONV1X1_TO_LINEAR,  // (C, C, 1, 1) -> (C, C): the VAE attention's 1x1 convs are linears in diffusers
    LDM_SPLIT_QKV,          // (3d, ...) -> three (d, ...) tensors, rows [0,d) q, [d,2d) k, [2d,3d) v
} LdmReshape;

// The structure read from the checkpoint's names (ldm_detect_layout).
typedef struct {
    int unet_levels, unet_layers_per_block;  // SD 1.x/2.x: 4 levels, 2 ResBlocks each
    int vae_levels, vae_layers_per_block;    // SD: 4 levels, 2 ResBlocks each (the decoder has one more)
    int vae_has_decoder;
    LdmTextKind text_kind;
    int text_layers;       // resblocks / encoder layers in the file
    int text_layers_kept;  // layers converted (default: OpenCLIP text_layers - 1, CLIP text_layers)
    int ema_tensors;       // model_ema.* entries (EMA copies of the UNet weights)
    int use_ema;           // convert the UNet from the model_ema.* copies
} LdmLayout;

// Where one checkpoint name goes (ldm_map_name).
typedef struct {
    LdmPart part;
    int n_names;                 // 1, or 3 for LDM_SPLIT_QKV (q, k, v)
    char name[3][LDM_NAME_MAX];  // diffusers / transformers names
    LdmReshape reshape;
    int unit, member;             // the rename table and row used (for the completeness check)
    char instance[LDM_NAME_MAX];  // the checkpoint prefix of the unit ("model.diffusion_model.input_blocks.1.0.")
} LdmTarget;

// Maps one checkpoint name. Returns 1 when it is converted (*t filled), 0 when it is deliberately
// not converted (*why says why: EMA copy, DDPM schedule buffer, unused text layer, ...), -1 with a
// message naming the tensor when it is a name of a known part that this layout does not have.
int ldm_map_name(const LdmLayout *layout, const char *name, LdmTarget *t, const char **why);

// Reads the structure of a checkpoint from its names. Fails (naming the file) when it is not an
// LDM-layout Stable Diffusion checkpoint: a diffusers file, SDXL, no UNet / VAE / text encoder.
int ldm_detect_layout(const SafeTensors *st, LdmLayout *out);

// One tensor of the converted pipeline: elements [offset, offset + numel) of a checkpoint tensor.
typedef struct {
    LdmPart part;
    char name[LDM_NAME_MAX];
    const StEntry *src;
    int64_t offset, numel;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} LdmTensor;

typedef struct {
    LdmLayout layout;
    LdmTensor *tensors;  // sorted by part, then name
    int count;
    int ignored;  // checkpoint tensors not converted, grouped by the reason:
    struct {
        const char *why;
        int count;
        char example[LDM_NAME_MAX];
    } skipped[8];
    int n_skipped;
} LdmPlan;

// Maps every tensor of the checkpoint and checks that each block it has is complete.
// text_layers: text encoder layers to keep (-1: the default of the layout). use_ema: read the UNet
// from its model_ema.* copies.
int ldm_plan_build(const SafeTensors *st, int text_layers, int use_ema, LdmPlan *plan);
void ldm_plan_free(LdmPlan *plan);
const LdmTensor *ldm_plan_find(const LdmPlan *plan, LdmPart part, const char *name);
// Converts elements [first, first + count) of a planned tensor to `dtype` (DT_F32 or DT_F16) into dst,
// as little-endian bytes (the safetensors data, whatever the host's byte order).
int ldm_tensor_read(const LdmTensor *t, int64_t first, int64_t count, DType dtype, void *dst);

// The diffusers / transformers config values the tensor shapes determine.
typedef struct {
    // UNet2DConditionModel
    int unet_levels, block_out_channels[LDM_MAX_LEVELS], layers_per_block;
    int down_attention[LDM_MAX_LEVELS], up_attention[LDM_MAX_LEVELS];  // CrossAttn{Down,Up}Block2D?
    int in_channels, out_channels, cross_attention_dim, use_linear_projection, time_embed_dim, transformer_depth;
    // AutoencoderKL
    int vae_levels, vae_block_out_channels[LDM_MAX_LEVELS], vae_layers_per_block;
    int vae_in_channels, vae_out_channels, latent_channels, vae_has_decoder;
    // CLIPTextModel
    LdmTextKind text_kind;
    int hidden_size, intermediate_size, vocab_size, max_position_embeddings, num_hidden_layers, projection_dim;
} LdmShapes;

int ldm_infer_shapes(const LdmPlan *plan, LdmShapes *out);
// The attention heads diffusers 0.17's attention_head_dim gives a UNet level when the checkpoint
// does not say: SD 2.x (context 1024) uses 64-wide heads (5, 10, 20, 20 for 320..1280 channels),
// SD 1.x 8 heads.
int ldm_default_heads(int cross_attention_dim, int channels);

#endif
