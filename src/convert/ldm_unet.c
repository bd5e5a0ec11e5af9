// The UNet's names, model.diffusion_model.* -> diffusers UNet2DConditionModel: its rename tables
// and name map (ldm_rename.h). Reference: diffusers 0.17.0 convert_from_ckpt.py and
// ldm/modules/diffusionmodules/openaimodel.py (UNetModel, ResBlock), ldm/modules/attention.py
// (SpatialTransformer).
#include <stdio.h>

#include "convert/ldm_rename.h"
#include "core/error.h"

// clang-format off
// UNet, model.diffusion_model.*: the tensors outside the blocks.
static const Rename kUnetTop[] = {
    {"time_embed.0.weight",     "time_embedding.linear_1.weight", REQ, AS_IS},
    {"time_embed.0.bias",       "time_embedding.linear_1.bias",   REQ, AS_IS},
    {"time_embed.2.weight",     "time_embedding.linear_2.weight", REQ, AS_IS},
    {"time_embed.2.bias",       "time_embedding.linear_2.bias",   REQ, AS_IS},
    {"input_blocks.0.0.weight", "conv_in.weight",                 REQ, AS_IS},
    {"input_blocks.0.0.bias",   "conv_in.bias",                   REQ, AS_IS},
    {"out.0.weight",            "conv_norm_out.weight",           REQ, AS_IS},
    {"out.0.bias",              "conv_norm_out.bias",             REQ, AS_IS},
    {"out.2.weight",            "conv_out.weight",                REQ, AS_IS},
    {"out.2.bias",              "conv_out.bias",                  REQ, AS_IS},
};
// openaimodel.py ResBlock -> diffusers ResnetBlock2D. in_layers = (GroupNorm, SiLU, conv),
// emb_layers = (SiLU, Linear), out_layers = (GroupNorm, SiLU, Dropout, conv).
static const Rename kUnetResBlock[] = {
    {"in_layers.0.weight",     "norm1.weight",         REQ, AS_IS},
    {"in_layers.0.bias",       "norm1.bias",           REQ, AS_IS},
    {"in_layers.2.weight",     "conv1.weight",         REQ, AS_IS},
    {"in_layers.2.bias",       "conv1.bias",           REQ, AS_IS},
    {"emb_layers.1.weight",    "time_emb_proj.weight", REQ, AS_IS},
    {"emb_layers.1.bias",      "time_emb_proj.bias",   REQ, AS_IS},
    {"out_layers.0.weight",    "norm2.weight",         REQ, AS_IS},
    {"out_layers.0.bias",      "norm2.bias",           REQ, AS_IS},
    {"out_layers.3.weight",    "conv2.weight",         REQ, AS_IS},
    {"out_layers.3.bias",      "conv2.bias",           REQ, AS_IS},
    {"skip_connection.weight", "conv_shortcut.weight", OPT, AS_IS},
    {"skip_connection.bias",   "conv_shortcut.bias",   OPT, AS_IS},
};
// openaimodel.py Downsample (a strided conv called op) -> Downsample2D.
static const Rename kUnetDownsample[] = {
    {"op.weight", "conv.weight", REQ, AS_IS},
    {"op.bias",   "conv.bias",   REQ, AS_IS},
};
// attention.py SpatialTransformer -> Transformer2DModel: the same names in both. proj_in / proj_out
// are 1x1 convs in SD 1.x and linears in SD 2.x (use_linear_projection), in both layouts alike.
static const Rename kSpatialTransformer[] = {
    {"norm.weight",     "norm.weight",     REQ, AS_IS},
    {"norm.bias",       "norm.bias",       REQ, AS_IS},
    {"proj_in.weight",  "proj_in.weight",  REQ, AS_IS},
    {"proj_in.bias",    "proj_in.bias",    REQ, AS_IS},
    {"proj_out.weight", "proj_out.weight", REQ, AS_IS},
    {"proj_out.bias",   "proj_out.bias",   REQ, AS_IS},
};
// ... its transformer_blocks.k (BasicTransformerBlock): the same names too.
static const Rename kTransformerBlock[] = {
    {"attn1.to_q.weight",     "attn1.to_q.weight",     REQ, AS_IS},
    {"attn1.to_k.weight",     "attn1.to_k.weight",     REQ, AS_IS},
    {"attn1.to_v.weight",     "attn1.to_v.weight",     REQ, AS_IS},
    {"attn1.to_out.0.weight", "attn1.to_out.0.weight", REQ, AS_IS},
    {"attn1.to_out.0.bias",   "attn1.to_out.0.bias",   REQ, AS_IS},
    {"attn2.to_q.weight",     "attn2.to_q.weight",     REQ, AS_IS},
    {"attn2.to_k.weight",     "attn2.to_k.weight",     REQ, AS_IS},
    {"attn2.to_v.weight",     "attn2.to_v.weight",     REQ, AS_IS},
    {"attn2.to_out.0.weight", "attn2.to_out.0.weight", REQ, AS_IS},
    {"attn2.to_out.0.bias",   "attn2.to_out.0.bias",   REQ, AS_IS},
    {"ff.net.0.proj.weight",  "ff.net.0.proj.weight",  REQ, AS_IS},
    {"ff.net.0.proj.bias",    "ff.net.0.proj.bias",    REQ, AS_IS},
    {"ff.net.2.weight",       "ff.net.2.weight",       REQ, AS_IS},
    {"ff.net.2.bias",         "ff.net.2.bias",         REQ, AS_IS},
    {"norm1.weight",          "norm1.weight",          REQ, AS_IS},
    {"norm1.bias",            "norm1.bias",            REQ, AS_IS},
    {"norm2.weight",          "norm2.weight",          REQ, AS_IS},
    {"norm2.bias",            "norm2.bias",            REQ, AS_IS},
    {"norm3.weight",          "norm3.weight",          REQ, AS_IS},
    {"norm3.bias",            "norm3.bias",            REQ, AS_IS},
};
// clang-format on

const LdmUnit ldm_unit_unet_top = {"UNet", kUnetTop, COUNT(kUnetTop)};
const LdmUnit ldm_unit_unet_resblock = {"ResBlock", kUnetResBlock, COUNT(kUnetResBlock)};
const LdmUnit ldm_unit_unet_downsample = {"Downsample", kUnetDownsample, COUNT(kUnetDownsample)};
const LdmUnit ldm_unit_unet_attention = {"SpatialTransformer", kSpatialTransformer, COUNT(kSpatialTransformer)};
const LdmUnit ldm_unit_unet_transformer_block = {"BasicTransformerBlock", kTransformerBlock, COUNT(kTransformerBlock)};

// A SpatialTransformer's tensor: its own (norm, proj_in, proj_out) or one of its transformer blocks'.
static int rename_attention(LdmTarget *t, const char *name, const char *rest, const char *dprefix) {
    int k;
    const char *b = ldm_take_index(rest, "transformer_blocks.", &k);
    if (!b) return ldm_rename_in_unit(t, U_UNET_ATTENTION, name, rest, dprefix);
    char d[LDM_NAME_MAX];
    snprintf(d, sizeof(d), "%stransformer_blocks.%d.", dprefix, k);
    return ldm_rename_in_unit(t, U_UNET_TRANSFORMER_BLOCK, name, b, d);
}

int ldm_map_unet(const LdmLayout *L, const char *name, const char *r, LdmTarget *t) {
    char d[LDM_NAME_MAX];
    const int per = L->unet_layers_per_block + 1;  // ResBlocks + the Downsample/Upsample of a level
    int i, j;
    const char *s;
    if (ldm_unit_row(U_UNET_TOP, r) >= 0) return ldm_rename_in_unit(t, U_UNET_TOP, name, r, "");
    if ((s = ldm_take_index(ldm_take_index(r, "input_blocks.", &i), "", &j))) {
        if (i < 1 || i >= L->unet_levels * per)
            return sd_errorf("tensor '%s': input block %d is outside 1..%d", name, i, L->unet_levels * per - 1);
        int level = (i - 1) / per, layer = (i - 1) % per;
        if (layer == L->unet_layers_per_block) {  // the last block of a level downsamples
            if (j != 0) return ldm_unknown(name, "Downsample");
            snprintf(d, sizeof(d), "down_blocks.%d.downsamplers.0.", level);
            return ldm_rename_in_unit(t, U_UNET_DOWNSAMPLE, name, s, d);
        }
        if (j == 0) {
            snprintf(d, sizeof(d), "down_blocks.%d.resnets.%d.", level, layer);
            return ldm_rename_in_unit(t, U_UNET_RESBLOCK, name, s, d);
        }
        if (j == 1) {
            snprintf(d, sizeof(d), "down_blocks.%d.attentions.%d.", level, layer);
            return rename_attention(t, name, s, d);
        }
        return ldm_unknown(name, NULL);
    }
    if ((s = ldm_take_index(r, "middle_block.", &j))) {
        if (j == 0) return ldm_rename_in_unit(t, U_UNET_RESBLOCK, name, s, "mid_block.resnets.0.");
        if (j == 1) return rename_attention(t, name, s, "mid_block.attentions.0.");
        if (j == 2) return ldm_rename_in_unit(t, U_UNET_RESBLOCK, name, s, "mid_block.resnets.1.");
        return ldm_unknown(name, NULL);
    }
    if ((s = ldm_take_index(ldm_take_index(r, "output_blocks.", &i), "", &j))) {
        if (i < 0 || i >= L->unet_levels * per)
            return sd_errorf("tensor '%s': output block %d is outside 0..%d", name, i, L->unet_levels * per - 1);
        int level = i / per, layer = i % per;
        if (j == 0) {
            snprintf(d, sizeof(d), "up_blocks.%d.resnets.%d.", level, layer);
            return ldm_rename_in_unit(t, U_UNET_RESBLOCK, name, s, d);
        }
        if ((j == 1 || j == 2) && ldm_after(s, "conv.")) {  // Upsample: after the ResBlock, or after its attention
            if (layer != L->unet_layers_per_block || level == L->unet_levels - 1)
                return sd_errorf("tensor '%s': an Upsample conv where the layout has none (level %d, layer %d)", name,
                                 level, layer);
            snprintf(d, sizeof(d), "up_blocks.%d.upsamplers.0.", level);
            return ldm_rename_in_unit(t, U_CONV, name, s, d);
        }
        if (j == 1) {
            snprintf(d, sizeof(d), "up_blocks.%d.attentions.%d.", level, layer);
            return rename_attention(t, name, s, d);
        }
        return ldm_unknown(name, NULL);
    }
    if (ldm_after(r, "label_emb."))
        return sd_errorf("tensor '%s': a class-conditioned UNet (label_emb: SD 2.x unCLIP, SDXL) is not supported",
                         name);
    return ldm_unknown(name, NULL);
}
