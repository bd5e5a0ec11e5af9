// LDM/CompVis checkpoint names -> diffusers names: the plan of a conversion (see ldm_plan.h). Reference: diffusers 0.17.0
// src/diffusers/pipelines/stable_diffusion/convert_from_ckpt.py, and the modules whose
// state_dict names these are: ldm/modules/diffusionmodules/openaimodel.py (UNetModel, ResBlock),
// ldm/modules/attention.py (SpatialTransformer), ldm/modules/diffusionmodules/model.py
// (Encoder, Decoder), open_clip/transformer.py (Transformer, ResidualAttentionBlock).
#include "convert/ldm_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"

const char *const ldm_part_folder[LDM_PARTS] = {"unet", "vae", "text_encoder"};
const char *const ldm_part_file[LDM_PARTS] = {"diffusion_pytorch_model.safetensors",
                                              "diffusion_pytorch_model.safetensors", "model.safetensors"};

// ---------------------------------------------------------------------------
// The rename tables. Each table is one kind of block ("unit"): the names of its
// tensors in the checkpoint, their names in diffusers, and whether every
// instance of the block has them.

// clang-format off
enum { REQ, OPT };  // every instance of the block has it / only some
#define AS_IS LDM_AS_IS
#define TO_LINEAR LDM_CONV1X1_TO_LINEAR
#define SPLIT_QKV LDM_SPLIT_QKV

typedef struct {
    const char *ldm;        // inside the block, in the checkpoint
    const char *diffusers;  // inside the block, in diffusers ("{q,k,v}" marks the three parts of a split)
    int need;               // REQ or OPT (a 1x1 shortcut conv exists only where the width changes)
    LdmReshape reshape;
} Rename;

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
// Upsample (UNet) and the VAE's Downsample / Upsample: one conv, the same name.
static const Rename kConv[] = {
    {"conv.weight", "conv.weight", REQ, AS_IS},
    {"conv.bias",   "conv.bias",   REQ, AS_IS},
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

// VAE, first_stage_model.*: the encoder's tensors outside the blocks (what feature extraction needs).
static const Rename kVaeEncoderTop[] = {
    {"encoder.conv_in.weight",  "encoder.conv_in.weight",       REQ, AS_IS},
    {"encoder.conv_in.bias",    "encoder.conv_in.bias",         REQ, AS_IS},
    {"encoder.norm_out.weight", "encoder.conv_norm_out.weight", REQ, AS_IS},
    {"encoder.norm_out.bias",   "encoder.conv_norm_out.bias",   REQ, AS_IS},
    {"encoder.conv_out.weight", "encoder.conv_out.weight",      REQ, AS_IS},
    {"encoder.conv_out.bias",   "encoder.conv_out.bias",        REQ, AS_IS},
    {"quant_conv.weight",       "quant_conv.weight",            REQ, AS_IS},
    {"quant_conv.bias",         "quant_conv.bias",              REQ, AS_IS},
};
// ... and the decoder's (converted when the checkpoint has a decoder).
static const Rename kVaeDecoderTop[] = {
    {"decoder.conv_in.weight",  "decoder.conv_in.weight",       REQ, AS_IS},
    {"decoder.conv_in.bias",    "decoder.conv_in.bias",         REQ, AS_IS},
    {"decoder.norm_out.weight", "decoder.conv_norm_out.weight", REQ, AS_IS},
    {"decoder.norm_out.bias",   "decoder.conv_norm_out.bias",   REQ, AS_IS},
    {"decoder.conv_out.weight", "decoder.conv_out.weight",      REQ, AS_IS},
    {"decoder.conv_out.bias",   "decoder.conv_out.bias",        REQ, AS_IS},
    {"post_quant_conv.weight",  "post_quant_conv.weight",       REQ, AS_IS},
    {"post_quant_conv.bias",    "post_quant_conv.bias",         REQ, AS_IS},
};
// model.py ResnetBlock -> ResnetBlock2D (no time embedding in the VAE).
static const Rename kVaeResBlock[] = {
    {"norm1.weight",        "norm1.weight",         REQ, AS_IS},
    {"norm1.bias",          "norm1.bias",           REQ, AS_IS},
    {"conv1.weight",        "conv1.weight",         REQ, AS_IS},
    {"conv1.bias",          "conv1.bias",           REQ, AS_IS},
    {"norm2.weight",        "norm2.weight",         REQ, AS_IS},
    {"norm2.bias",          "norm2.bias",           REQ, AS_IS},
    {"conv2.weight",        "conv2.weight",         REQ, AS_IS},
    {"conv2.bias",          "conv2.bias",           REQ, AS_IS},
    {"nin_shortcut.weight", "conv_shortcut.weight", OPT, AS_IS},
    {"nin_shortcut.bias",   "conv_shortcut.bias",   OPT, AS_IS},
};
// model.py AttnBlock (1x1 convs q, k, v, proj_out) -> Attention (linears).
static const Rename kVaeAttention[] = {
    {"norm.weight",     "group_norm.weight", REQ, AS_IS},
    {"norm.bias",       "group_norm.bias",   REQ, AS_IS},
    {"q.weight",        "to_q.weight",       REQ, TO_LINEAR},
    {"q.bias",          "to_q.bias",         REQ, AS_IS},
    {"k.weight",        "to_k.weight",       REQ, TO_LINEAR},
    {"k.bias",          "to_k.bias",         REQ, AS_IS},
    {"v.weight",        "to_v.weight",       REQ, TO_LINEAR},
    {"v.bias",          "to_v.bias",         REQ, AS_IS},
    {"proj_out.weight", "to_out.0.weight",   REQ, TO_LINEAR},
    {"proj_out.bias",   "to_out.0.bias",     REQ, AS_IS},
};

// SD 2.x text encoder, cond_stage_model.model.* (open_clip) -> transformers CLIPTextModel.
static const Rename kOpenClipTop[] = {
    {"token_embedding.weight", "embeddings.token_embedding.weight",    REQ, AS_IS},
    {"positional_embedding",   "embeddings.position_embedding.weight", REQ, AS_IS},
    {"ln_final.weight",        "final_layer_norm.weight",              REQ, AS_IS},
    {"ln_final.bias",          "final_layer_norm.bias",                REQ, AS_IS},
};
// open_clip ResidualAttentionBlock (nn.MultiheadAttention: one packed in_proj) -> CLIPEncoderLayer.
static const Rename kOpenClipLayer[] = {
    {"ln_1.weight",          "layer_norm1.weight",            REQ, AS_IS},
    {"ln_1.bias",            "layer_norm1.bias",              REQ, AS_IS},
    {"attn.in_proj_weight",  "self_attn.{q,k,v}_proj.weight", REQ, SPLIT_QKV},
    {"attn.in_proj_bias",    "self_attn.{q,k,v}_proj.bias",   REQ, SPLIT_QKV},
    {"attn.out_proj.weight", "self_attn.out_proj.weight",     REQ, AS_IS},
    {"attn.out_proj.bias",   "self_attn.out_proj.bias",       REQ, AS_IS},
    {"ln_2.weight",          "layer_norm2.weight",            REQ, AS_IS},
    {"ln_2.bias",            "layer_norm2.bias",              REQ, AS_IS},
    {"mlp.c_fc.weight",      "mlp.fc1.weight",                REQ, AS_IS},
    {"mlp.c_fc.bias",        "mlp.fc1.bias",                  REQ, AS_IS},
    {"mlp.c_proj.weight",    "mlp.fc2.weight",                REQ, AS_IS},
    {"mlp.c_proj.bias",      "mlp.fc2.bias",                  REQ, AS_IS},
};
// SD 1.x text encoder, cond_stage_model.transformer.text_model.*: already transformers names.
static const Rename kClipTop[] = {
    {"embeddings.token_embedding.weight",    "embeddings.token_embedding.weight",    REQ, AS_IS},
    {"embeddings.position_embedding.weight", "embeddings.position_embedding.weight", REQ, AS_IS},
    {"final_layer_norm.weight",              "final_layer_norm.weight",              REQ, AS_IS},
    {"final_layer_norm.bias",                "final_layer_norm.bias",                REQ, AS_IS},
};
static const Rename kClipLayer[] = {
    {"layer_norm1.weight",        "layer_norm1.weight",        REQ, AS_IS},
    {"layer_norm1.bias",          "layer_norm1.bias",          REQ, AS_IS},
    {"self_attn.q_proj.weight",   "self_attn.q_proj.weight",   REQ, AS_IS},
    {"self_attn.q_proj.bias",     "self_attn.q_proj.bias",     REQ, AS_IS},
    {"self_attn.k_proj.weight",   "self_attn.k_proj.weight",   REQ, AS_IS},
    {"self_attn.k_proj.bias",     "self_attn.k_proj.bias",     REQ, AS_IS},
    {"self_attn.v_proj.weight",   "self_attn.v_proj.weight",   REQ, AS_IS},
    {"self_attn.v_proj.bias",     "self_attn.v_proj.bias",     REQ, AS_IS},
    {"self_attn.out_proj.weight", "self_attn.out_proj.weight", REQ, AS_IS},
    {"self_attn.out_proj.bias",   "self_attn.out_proj.bias",   REQ, AS_IS},
    {"layer_norm2.weight",        "layer_norm2.weight",        REQ, AS_IS},
    {"layer_norm2.bias",          "layer_norm2.bias",          REQ, AS_IS},
    {"mlp.fc1.weight",            "mlp.fc1.weight",            REQ, AS_IS},
    {"mlp.fc1.bias",              "mlp.fc1.bias",              REQ, AS_IS},
    {"mlp.fc2.weight",            "mlp.fc2.weight",            REQ, AS_IS},
    {"mlp.fc2.bias",              "mlp.fc2.bias",              REQ, AS_IS},
};

// Tensors of a training checkpoint that are not weights of the pipeline.
static const char *const kScheduleBuffers[] = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights"};

// clang-format on
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
enum {
    U_UNET_TOP,
    U_UNET_RESBLOCK,
    U_UNET_DOWNSAMPLE,
    U_CONV,
    U_UNET_ATTENTION,
    U_UNET_TRANSFORMER_BLOCK,
    U_VAE_ENCODER_TOP,
    U_VAE_DECODER_TOP,
    U_VAE_RESBLOCK,
    U_VAE_ATTENTION,
    U_OPENCLIP_TOP,
    U_OPENCLIP_LAYER,
    U_CLIP_TOP,
    U_CLIP_LAYER,
    U_COUNT
};
static const struct {
    const char *what;
    const Rename *rows;
    int count;
} kUnits[U_COUNT] = {
    [U_UNET_TOP] = {"UNet", kUnetTop, COUNT(kUnetTop)},
    [U_UNET_RESBLOCK] = {"ResBlock", kUnetResBlock, COUNT(kUnetResBlock)},
    [U_UNET_DOWNSAMPLE] = {"Downsample", kUnetDownsample, COUNT(kUnetDownsample)},
    [U_CONV] = {"Downsample/Upsample", kConv, COUNT(kConv)},
    [U_UNET_ATTENTION] = {"SpatialTransformer", kSpatialTransformer, COUNT(kSpatialTransformer)},
    [U_UNET_TRANSFORMER_BLOCK] = {"BasicTransformerBlock", kTransformerBlock, COUNT(kTransformerBlock)},
    [U_VAE_ENCODER_TOP] = {"VAE encoder", kVaeEncoderTop, COUNT(kVaeEncoderTop)},
    [U_VAE_DECODER_TOP] = {"VAE decoder", kVaeDecoderTop, COUNT(kVaeDecoderTop)},
    [U_VAE_RESBLOCK] = {"VAE ResnetBlock", kVaeResBlock, COUNT(kVaeResBlock)},
    [U_VAE_ATTENTION] = {"VAE AttnBlock", kVaeAttention, COUNT(kVaeAttention)},
    [U_OPENCLIP_TOP] = {"OpenCLIP text tower", kOpenClipTop, COUNT(kOpenClipTop)},
    [U_OPENCLIP_LAYER] = {"OpenCLIP resblock", kOpenClipLayer, COUNT(kOpenClipLayer)},
    [U_CLIP_TOP] = {"CLIP text model", kClipTop, COUNT(kClipTop)},
    [U_CLIP_LAYER] = {"CLIP encoder layer", kClipLayer, COUNT(kClipLayer)},
};

// ---------------------------------------------------------------------------
// Name parsing.

// s without `prefix`, or NULL.
static const char *after(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

// s = prefix + "<digits>." + rest: sets *idx and returns rest, else NULL.
static const char *take_index(const char *s, const char *prefix, int *idx) {
    if (!s || !(s = after(s, prefix)) || *s < '0' || *s > '9') return NULL;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 100000) v = v * 10 + (*s++ - '0');
    if (*s != '.') return NULL;
    *idx = (int)v;
    return s + 1;
}

static int unit_row(int unit, const char *rest) {
    for (int k = 0; k < kUnits[unit].count; k++)
        if (strcmp(kUnits[unit].rows[k].ldm, rest) == 0) return k;
    return -1;
}

static int unknown(const char *name, const char *what) {
    return sd_errorf("tensor '%s': unknown name%s%s: not the SD 1.x/2.x LDM layout this converter knows", name,
                     what ? " for a " : "", what ? what : "");
}

// `rest` is the part of `name` inside a block of kind `unit`; dprefix is the block's diffusers prefix.
static int rename_in_unit(LdmTarget *t, int unit, const char *name, const char *rest, const char *dprefix) {
    int k = unit_row(unit, rest);
    if (k < 0) return unknown(name, kUnits[unit].what);
    const Rename *r = &kUnits[unit].rows[k];
    t->unit = unit;
    t->member = k;
    snprintf(t->instance, sizeof(t->instance), "%.*s", (int)(rest - name), name);
    t->reshape = r->reshape;
    const char *mark = strstr(r->diffusers, "{q,k,v}");
    if (r->reshape == LDM_SPLIT_QKV && mark) {
        static const char *const qkv[3] = {"q", "k", "v"};
        t->n_names = 3;
        for (int i = 0; i < 3; i++)
            snprintf(t->name[i], LDM_NAME_MAX, "%s%.*s%s%s", dprefix, (int)(mark - r->diffusers), r->diffusers, qkv[i],
                     mark + 7);
    } else {
        t->n_names = 1;
        snprintf(t->name[0], LDM_NAME_MAX, "%s%s", dprefix, r->diffusers);
    }
    return 1;
}

// A SpatialTransformer's tensor: its own (norm, proj_in, proj_out) or one of its transformer blocks'.
static int rename_attention(LdmTarget *t, const char *name, const char *rest, const char *dprefix) {
    int k;
    const char *b = take_index(rest, "transformer_blocks.", &k);
    if (!b) return rename_in_unit(t, U_UNET_ATTENTION, name, rest, dprefix);
    char d[LDM_NAME_MAX];
    snprintf(d, sizeof(d), "%stransformer_blocks.%d.", dprefix, k);
    return rename_in_unit(t, U_UNET_TRANSFORMER_BLOCK, name, b, d);
}

static int map_unet(const LdmLayout *L, const char *name, const char *r, LdmTarget *t) {
    char d[LDM_NAME_MAX];
    const int per = L->unet_layers_per_block + 1;  // ResBlocks + the Downsample/Upsample of a level
    int i, j;
    const char *s;
    if (unit_row(U_UNET_TOP, r) >= 0) return rename_in_unit(t, U_UNET_TOP, name, r, "");
    if ((s = take_index(take_index(r, "input_blocks.", &i), "", &j))) {
        if (i < 1 || i >= L->unet_levels * per)
            return sd_errorf("tensor '%s': input block %d is outside 1..%d", name, i, L->unet_levels * per - 1);
        int level = (i - 1) / per, layer = (i - 1) % per;
        if (layer == L->unet_layers_per_block) {  // the last block of a level downsamples
            if (j != 0) return unknown(name, "Downsample");
            snprintf(d, sizeof(d), "down_blocks.%d.downsamplers.0.", level);
            return rename_in_unit(t, U_UNET_DOWNSAMPLE, name, s, d);
        }
        if (j == 0) {
            snprintf(d, sizeof(d), "down_blocks.%d.resnets.%d.", level, layer);
            return rename_in_unit(t, U_UNET_RESBLOCK, name, s, d);
        }
        if (j == 1) {
            snprintf(d, sizeof(d), "down_blocks.%d.attentions.%d.", level, layer);
            return rename_attention(t, name, s, d);
        }
        return unknown(name, NULL);
    }
    if ((s = take_index(r, "middle_block.", &j))) {
        if (j == 0) return rename_in_unit(t, U_UNET_RESBLOCK, name, s, "mid_block.resnets.0.");
        if (j == 1) return rename_attention(t, name, s, "mid_block.attentions.0.");
        if (j == 2) return rename_in_unit(t, U_UNET_RESBLOCK, name, s, "mid_block.resnets.1.");
        return unknown(name, NULL);
    }
    if ((s = take_index(take_index(r, "output_blocks.", &i), "", &j))) {
        if (i < 0 || i >= L->unet_levels * per)
            return sd_errorf("tensor '%s': output block %d is outside 0..%d", name, i, L->unet_levels * per - 1);
        int level = i / per, layer = i % per;
        if (j == 0) {
            snprintf(d, sizeof(d), "up_blocks.%d.resnets.%d.", level, layer);
            return rename_in_unit(t, U_UNET_RESBLOCK, name, s, d);
        }
        if ((j == 1 || j == 2) && after(s, "conv.")) {  // Upsample: after the ResBlock, or after its attention
            if (layer != L->unet_layers_per_block || level == L->unet_levels - 1)
                return sd_errorf("tensor '%s': an Upsample conv where the layout has none (level %d, layer %d)", name,
                                 level, layer);
            snprintf(d, sizeof(d), "up_blocks.%d.upsamplers.0.", level);
            return rename_in_unit(t, U_CONV, name, s, d);
        }
        if (j == 1) {
            snprintf(d, sizeof(d), "up_blocks.%d.attentions.%d.", level, layer);
            return rename_attention(t, name, s, d);
        }
        return unknown(name, NULL);
    }
    if (after(r, "label_emb."))
        return sd_errorf("tensor '%s': a class-conditioned UNet (label_emb: SD 2.x unCLIP, SDXL) is not supported",
                         name);
    return unknown(name, NULL);
}

static int map_vae(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    char d[LDM_NAME_MAX];
    int i, j;
    const char *s, *b;
    if (unit_row(U_VAE_ENCODER_TOP, r) >= 0) return rename_in_unit(t, U_VAE_ENCODER_TOP, name, r, "");
    if (unit_row(U_VAE_DECODER_TOP, r) >= 0) return rename_in_unit(t, U_VAE_DECODER_TOP, name, r, "");
    if ((s = take_index(r, "encoder.down.", &i))) {
        if (i >= L->vae_levels) return sd_errorf("tensor '%s': encoder level %d of %d", name, i, L->vae_levels);
        if ((b = take_index(s, "block.", &j))) {
            snprintf(d, sizeof(d), "encoder.down_blocks.%d.resnets.%d.", i, j);
            return rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
        }
        if ((b = after(s, "downsample.")) && i < L->vae_levels - 1) {
            snprintf(d, sizeof(d), "encoder.down_blocks.%d.downsamplers.0.", i);
            return rename_in_unit(t, U_CONV, name, b, d);
        }
        return unknown(name, NULL);  // e.g. encoder.down.i.attn: attention at a resolution, not in SD's VAE
    }
    if ((s = take_index(r, "decoder.up.", &i))) {
        // The decoder's up list is numbered from the lowest resolution: up.i is up_blocks[n-1-i].
        if (i >= L->vae_levels) return sd_errorf("tensor '%s': decoder level %d of %d", name, i, L->vae_levels);
        int u = L->vae_levels - 1 - i;
        if ((b = take_index(s, "block.", &j))) {
            snprintf(d, sizeof(d), "decoder.up_blocks.%d.resnets.%d.", u, j);
            return rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
        }
        if ((b = after(s, "upsample.")) && i > 0) {
            snprintf(d, sizeof(d), "decoder.up_blocks.%d.upsamplers.0.", u);
            return rename_in_unit(t, U_CONV, name, b, d);
        }
        return unknown(name, NULL);
    }
    static const char *const parts[2] = {"encoder", "decoder"};
    for (int p = 0; p < 2; p++) {
        const char *m = after(r, parts[p]);
        if (!m || !(m = after(m, ".mid."))) continue;
        if ((b = after(m, "block_1.")))
            snprintf(d, sizeof(d), "%s.mid_block.resnets.0.", parts[p]);
        else if ((b = after(m, "block_2.")))
            snprintf(d, sizeof(d), "%s.mid_block.resnets.1.", parts[p]);
        else if ((b = after(m, "attn_1."))) {
            snprintf(d, sizeof(d), "%s.mid_block.attentions.0.", parts[p]);
            return rename_in_unit(t, U_VAE_ATTENTION, name, b, d);
        } else
            return unknown(name, NULL);
        return rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
    }
    if (after(r, "loss.")) {
        *why = "VAE training loss (LPIPS, discriminator)";
        return 0;
    }
    return unknown(name, NULL);
}

static int map_openclip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    char d[LDM_NAME_MAX];
    int i;
    const char *s;
    if (unit_row(U_OPENCLIP_TOP, r) >= 0) return rename_in_unit(t, U_OPENCLIP_TOP, name, r, "text_model.");
    if (!strcmp(r, "text_projection") || !strcmp(r, "logit_scale") || !strcmp(r, "attn_mask")) {
        *why = "OpenCLIP's projection to the image space / logit scale / mask: not used by the pipeline";
        return 0;
    }
    if ((s = take_index(r, "transformer.resblocks.", &i))) {
        if (unit_row(U_OPENCLIP_LAYER, s) < 0) return unknown(name, kUnits[U_OPENCLIP_LAYER].what);
        if (i >= L->text_layers_kept) {
            *why = "a text layer after the last one the pipeline uses (SD 2.x: the penultimate layer)";
            return 0;
        }
        snprintf(d, sizeof(d), "text_model.encoder.layers.%d.", i);
        return rename_in_unit(t, U_OPENCLIP_LAYER, name, s, d);
    }
    return unknown(name, NULL);
}

static int map_clip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    char d[LDM_NAME_MAX];
    int i;
    const char *s, *m = after(r, "text_model.");
    if (!m) return unknown(name, NULL);
    if (!strcmp(m, "embeddings.position_ids")) {
        *why = "a buffer (0, 1, ..., 76), not a weight";
        return 0;
    }
    if (unit_row(U_CLIP_TOP, m) >= 0) return rename_in_unit(t, U_CLIP_TOP, name, m, "text_model.");
    if ((s = take_index(m, "encoder.layers.", &i))) {
        if (unit_row(U_CLIP_LAYER, s) < 0) return unknown(name, kUnits[U_CLIP_LAYER].what);
        if (i >= L->text_layers_kept) {
            *why = "a text layer after the last one converted";
            return 0;
        }
        snprintf(d, sizeof(d), "text_model.encoder.layers.%d.", i);
        return rename_in_unit(t, U_CLIP_LAYER, name, s, d);
    }
    return unknown(name, NULL);
}

int ldm_map_name(const LdmLayout *L, const char *name, LdmTarget *t, const char **why) {
    memset(t, 0, sizeof(*t));
    *why = NULL;
    const char *r;
    if ((r = after(name, "model.diffusion_model."))) {
        t->part = LDM_UNET;
        return map_unet(L, name, r, t);
    }
    if ((r = after(name, "first_stage_model."))) {
        t->part = LDM_VAE;
        return map_vae(L, name, r, t, why);
    }
    if ((r = after(name, "cond_stage_model.model."))) {
        t->part = LDM_TEXT;
        return map_openclip(L, name, r, t, why);
    }
    if ((r = after(name, "cond_stage_model.transformer."))) {
        t->part = LDM_TEXT;
        return map_clip(L, name, r, t, why);
    }
    if (!strcmp(name, "model_ema.decay") || !strcmp(name, "model_ema.num_updates")) {
        *why = "EMA bookkeeping";
        return 0;
    }
    if (after(name, "model_ema.")) {
        *why = L->use_ema ? "EMA weights, read through the UNet's names" : "EMA weights (--ema converts them)";
        return 0;
    }
    for (int k = 0; k < COUNT(kScheduleBuffers); k++)
        if (!strcmp(name, kScheduleBuffers[k])) {
            *why = "DDPM schedule buffer (the scheduler config has the schedule)";
            return 0;
        }
    *why = "not a part of the Stable Diffusion pipeline";
    return 0;
}

// ---------------------------------------------------------------------------
// The structure of a checkpoint.

static void first_names(const SafeTensors *st, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < st->count && i < 3 && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s'%s'", i ? ", " : "", st->entries[i].name);
}

int ldm_detect_layout(const SafeTensors *st, LdmLayout *L) {
    memset(L, 0, sizeof(*L));
    int n_unet = 0, n_vae = 0, n_openclip = 0, n_clip = 0, n_sdxl = 0, n_diffusers = 0;
    int max_in = -1, max_out = -1, n_down = 0, max_level = -1, max_block = -1, max_resblock = -1, max_layer = -1;
    for (int k = 0; k < st->count; k++) {
        const char *name = st->entries[k].name, *r, *s;
        int i, j;
        if ((r = after(name, "model.diffusion_model."))) {
            n_unet++;
            if ((s = take_index(r, "input_blocks.", &i))) {
                if (i > max_in) max_in = i;
                if (!strcmp(s, "0.op.weight")) n_down++;
            }
            if (take_index(r, "output_blocks.", &i) && i > max_out) max_out = i;
        } else if ((r = after(name, "first_stage_model."))) {
            n_vae++;
            if ((s = take_index(take_index(r, "encoder.down.", &i), "block.", &j))) {
                if (i > max_level) max_level = i;
                if (j > max_block) max_block = j;
            }
            if (after(r, "decoder.")) L->vae_has_decoder = 1;
        } else if ((r = after(name, "cond_stage_model.model."))) {
            n_openclip++;
            if (take_index(r, "transformer.resblocks.", &i) && i > max_resblock) max_resblock = i;
        } else if ((r = after(name, "cond_stage_model.transformer."))) {
            n_clip++;
            if (take_index(r, "text_model.encoder.layers.", &i) && i > max_layer) max_layer = i;
        } else if (after(name, "model_ema.diffusion_model")) {
            L->ema_tensors++;
        } else if (after(name, "conditioner.embedders.")) {
            n_sdxl++;
        } else if (after(name, "down_blocks.") || after(name, "encoder.down_blocks.") ||
                   after(name, "text_model.encoder.")) {
            n_diffusers++;
        }
    }
    char first[3 * LDM_NAME_MAX];
    first_names(st, first, sizeof(first));
    if (n_unet == 0) {
        if (n_sdxl) return sd_errorf("%s: an SDXL checkpoint (conditioner.embedders.*): not supported", st->path);
        if (n_diffusers)
            return sd_errorf(
                "%s: already diffusers / transformers names (down_blocks.*, text_model.*), not an LDM "
                "checkpoint: put it in a pipeline folder as it is",
                st->path);
        return sd_errorf(
            "%s: no tensor named model.diffusion_model.*: not a Stable Diffusion checkpoint in the LDM "
            "layout (%d tensors, the first: %s)",
            st->path, st->count, first);
    }
    // input_blocks: conv_in, then per level L ResBlocks and (but the last level) a Downsample.
    L->unet_levels = n_down + 1;
    int n_in = max_in + 1;
    if (n_in < 2 || L->unet_levels > LDM_MAX_LEVELS || n_in % L->unet_levels != 0 || n_in / L->unet_levels < 2 ||
        n_in / L->unet_levels - 1 > LDM_MAX_LAYERS)
        return sd_errorf(
            "%s: model.diffusion_model.input_blocks.0..%d with %d Downsample (input_blocks.*.0.op): not "
            "the block structure of an SD UNet",
            st->path, max_in, n_down);
    L->unet_layers_per_block = n_in / L->unet_levels - 1;
    if (max_out + 1 != n_in)
        return sd_errorf(
            "%s: model.diffusion_model.output_blocks.0..%d: expected output_blocks.0..%d (as many as "
            "input_blocks)",
            st->path, max_out, n_in - 1);
    if (n_vae == 0)
        return sd_errorf(
            "%s: no tensor named first_stage_model.* (the VAE): a checkpoint without its VAE is not "
            "supported",
            st->path);
    if (max_level < 0 || max_level + 1 > LDM_MAX_LEVELS || max_block + 1 > LDM_MAX_LAYERS)
        return sd_errorf("%s: first_stage_model.encoder.down.*.block.*: %s", st->path,
                         max_level < 0 ? "none (the VAE has no encoder)" : "too many levels or blocks");
    L->vae_levels = max_level + 1;
    L->vae_layers_per_block = max_block + 1;
    if (n_openclip && n_clip)
        return sd_errorf(
            "%s: both cond_stage_model.model.* (OpenCLIP) and cond_stage_model.transformer.* (CLIP) "
            "tensors: which text encoder?",
            st->path);
    if (n_openclip) {
        L->text_kind = LDM_TEXT_OPENCLIP;
        L->text_layers = max_resblock + 1;
    } else if (n_clip) {
        L->text_kind = LDM_TEXT_CLIP;
        L->text_layers = max_layer + 1;
    } else {
        return sd_errorf(
            "%s: no text encoder: expected cond_stage_model.model.* (SD 2.x OpenCLIP) or "
            "cond_stage_model.transformer.* (SD 1.x CLIP)",
            st->path);
    }
    if (L->text_layers < 1 || L->text_layers > LDM_MAX_TEXT_LAYERS)
        return sd_errorf("%s: the text encoder has %d layers (1..%d supported)", st->path, L->text_layers,
                         LDM_MAX_TEXT_LAYERS);
    L->text_layers_kept = L->text_kind == LDM_TEXT_OPENCLIP && L->text_layers > 1 ? L->text_layers - 1 : L->text_layers;
    return 0;
}

// ---------------------------------------------------------------------------
// The plan: every converted tensor, and the check that every block is whole.

typedef struct {
    int unit;
    char prefix[LDM_NAME_MAX];
    uint64_t found;  // bit k: row k of the unit's table was seen
} Instance;

typedef struct {
    Instance *items;
    int n, cap;
} Instances;

static Instance *instance_get(Instances *in, int unit, const char *prefix) {
    for (int i = 0; i < in->n; i++)
        if (in->items[i].unit == unit && !strcmp(in->items[i].prefix, prefix)) return &in->items[i];
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 64;
        Instance *p = (Instance *)realloc(in->items, (size_t)cap * sizeof(Instance));
        if (!p) return NULL;
        in->items = p;
        in->cap = cap;
    }
    Instance *it = &in->items[in->n++];
    it->unit = unit;
    snprintf(it->prefix, sizeof(it->prefix), "%s", prefix);
    it->found = 0;
    return it;
}

static int instance_exists(const Instances *in, const char *prefix) {
    for (int i = 0; i < in->n; i++)
        if (!strcmp(in->items[i].prefix, prefix)) return 1;
    return 0;
}

static int plan_add(LdmPlan *p, int *cap, const LdmTensor *t) {
    if (p->count == *cap) {
        int c = *cap ? 2 * *cap : 256;
        LdmTensor *q = (LdmTensor *)realloc(p->tensors, (size_t)c * sizeof(LdmTensor));
        if (!q) return sd_errorf("out of memory");
        p->tensors = q;
        *cap = c;
    }
    p->tensors[p->count++] = *t;
    return 0;
}

// The tensors of one checkpoint entry (three for a q/k/v split).
static int plan_entry(LdmPlan *p, int *cap, const LdmTarget *t, const StEntry *src, const char *path) {
    LdmTensor o;
    memset(&o, 0, sizeof(o));
    o.part = t->part;
    o.src = src;
    o.ndim = src->ndim;
    for (int d = 0; d < src->ndim; d++) o.shape[d] = src->shape[d];
    o.numel = src->numel;
    if (t->reshape == LDM_CONV1X1_TO_LINEAR) {
        int ok = src->ndim == 2 || (src->ndim == 3 && src->shape[2] == 1) ||
                 (src->ndim == 4 && src->shape[2] == 1 && src->shape[3] == 1);
        if (!ok)
            return sd_errorf("%s: tensor '%s': expected a 1x1 conv (C, C, 1, 1) or a linear (C, C), got %d dims", path,
                             src->name, src->ndim);
        o.ndim = 2;
    }
    if (t->reshape == LDM_SPLIT_QKV) {
        if (src->ndim < 1 || src->ndim > 2 || src->shape[0] % 3 != 0)
            return sd_errorf("%s: tensor '%s': expected (3*d, d) or (3*d), the packed q, k, v projections", path,
                             src->name);
        o.shape[0] = src->shape[0] / 3;
        o.numel = src->numel / 3;
    }
    for (int k = 0; k < t->n_names; k++) {
        snprintf(o.name, sizeof(o.name), "%s", t->name[k]);
        o.offset = (int64_t)k * o.numel;
        if (plan_add(p, cap, &o)) return SD_FAIL;
    }
    return 0;
}

// "model.diffusion_model.input_blocks.0.0.weight" -> "model_ema.diffusion_modelinput_blocks00weight":
// LDM's LitEma stores its copies under the name without dots.
static void ema_name(const char *name, char *out, size_t size) {
    size_t n = (size_t)snprintf(out, size, "model_ema.");
    for (const char *s = name + strlen("model."); *s && n + 1 < size; s++)
        if (*s != '.') out[n++] = *s;
    out[n] = 0;
}

static int cmp_tensor(const void *a, const void *b) {
    const LdmTensor *x = (const LdmTensor *)a, *y = (const LdmTensor *)b;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    return strcmp(x->name, y->name);
}

// Every block the layout has must be in the file (a block with some tensors is checked row by row).
static int check_blocks(const LdmLayout *L, const Instances *in, const char *path) {
    char p[LDM_NAME_MAX], q[LDM_NAME_MAX];
    const int per = L->unet_layers_per_block + 1;
#define NEED(what, ...)                                                                                  \
    do {                                                                                                 \
        snprintf(p, sizeof(p), __VA_ARGS__);                                                             \
        if (!instance_exists(in, p)) return sd_errorf("%s: no tensors named '%s*' (%s)", path, p, what); \
    } while (0)
    for (int i = 1; i < L->unet_levels * per; i++)
        NEED("a ResBlock or Downsample", "model.diffusion_model.input_blocks.%d.0.", i);
    NEED("the middle ResBlock", "model.diffusion_model.middle_block.0.");
    NEED("the middle attention", "model.diffusion_model.middle_block.1.transformer_blocks.0.");
    NEED("the middle ResBlock", "model.diffusion_model.middle_block.2.");
    for (int i = 0; i < L->unet_levels * per; i++) {
        NEED("a ResBlock", "model.diffusion_model.output_blocks.%d.0.", i);
        if (i % per == L->unet_layers_per_block && i / per < L->unet_levels - 1) {
            snprintf(q, sizeof(q), "model.diffusion_model.output_blocks.%d.2.", i);
            if (!instance_exists(in, q)) NEED("an Upsample", "model.diffusion_model.output_blocks.%d.1.", i);
        }
    }
    for (int i = 0; i < L->vae_levels; i++) {
        for (int j = 0; j < L->vae_layers_per_block; j++)
            NEED("a VAE encoder ResnetBlock", "first_stage_model.encoder.down.%d.block.%d.", i, j);
        if (i < L->vae_levels - 1) NEED("a VAE Downsample", "first_stage_model.encoder.down.%d.downsample.", i);
        if (!L->vae_has_decoder) continue;
        for (int j = 0; j <= L->vae_layers_per_block; j++)
            NEED("a VAE decoder ResnetBlock", "first_stage_model.decoder.up.%d.block.%d.", i, j);
        if (i > 0) NEED("a VAE Upsample", "first_stage_model.decoder.up.%d.upsample.", i);
    }
    static const char *const mids[3] = {"block_1", "attn_1", "block_2"};
    for (int m = 0; m < 3; m++) {
        NEED("the VAE encoder's middle block", "first_stage_model.encoder.mid.%s.", mids[m]);
        if (L->vae_has_decoder) NEED("the VAE decoder's middle block", "first_stage_model.decoder.mid.%s.", mids[m]);
    }
    for (int i = 0; i < L->text_layers_kept; i++) {
        if (L->text_kind == LDM_TEXT_OPENCLIP)
            NEED("a text layer", "cond_stage_model.model.transformer.resblocks.%d.", i);
        else
            NEED("a text layer", "cond_stage_model.transformer.text_model.encoder.layers.%d.", i);
    }
#undef NEED
    for (int i = 0; i < in->n; i++) {
        const Instance *it = &in->items[i];
        for (int k = 0; k < kUnits[it->unit].count; k++) {
            const Rename *r = &kUnits[it->unit].rows[k];
            if (r->need == REQ && !(it->found & ((uint64_t)1 << k)))
                return sd_errorf("%s: tensor '%s%s' is missing (a %s needs it: %s)", path, it->prefix, r->ldm,
                                 kUnits[it->unit].what, r->diffusers);
        }
    }
    return 0;
}

int ldm_plan_build(const SafeTensors *st, int text_layers, int use_ema, LdmPlan *p) {
    memset(p, 0, sizeof(*p));
    LdmLayout *L = &p->layout;
    if (ldm_detect_layout(st, L)) return SD_FAIL;
    L->use_ema = use_ema;
    if (text_layers >= 0) {
        if (text_layers < 1 || text_layers > L->text_layers)
            return sd_errorf("%s: %d text layers asked for, the checkpoint has %d", st->path, text_layers,
                             L->text_layers);
        L->text_layers_kept = text_layers;
    }
    if (use_ema && L->ema_tensors == 0)
        return sd_errorf("%s: --ema: the checkpoint has no EMA weights (model_ema.*)", st->path);
    Instances in = {0};
    int cap = 0, rc = SD_FAIL;
    // The blocks outside the repeated ones must be there even when none of their tensors are.
    int openclip = L->text_kind == LDM_TEXT_OPENCLIP;
    const char *text_top = openclip ? "cond_stage_model.model." : "cond_stage_model.transformer.text_model.";
    if (!instance_get(&in, U_UNET_TOP, "model.diffusion_model.") ||
        !instance_get(&in, U_VAE_ENCODER_TOP, "first_stage_model.") ||
        (L->vae_has_decoder && !instance_get(&in, U_VAE_DECODER_TOP, "first_stage_model.")) ||
        !instance_get(&in, openclip ? U_OPENCLIP_TOP : U_CLIP_TOP, text_top)) {
        sd_errorf("out of memory");
        goto done;
    }
    for (int k = 0; k < st->count; k++) {
        const StEntry *e = &st->entries[k];
        LdmTarget t;
        const char *why = NULL;
        int m = ldm_map_name(L, e->name, &t, &why);
        if (m < 0) {
            sd_error_context("%s", st->path);
            goto done;
        }
        if (m == 0) {
            int r = 0;
            while (r < p->n_skipped && strcmp(p->skipped[r].why, why) != 0) r++;
            if (r == p->n_skipped && r < (int)(sizeof(p->skipped) / sizeof(p->skipped[0]))) {
                p->skipped[r].why = why;
                snprintf(p->skipped[r].example, sizeof(p->skipped[r].example), "%s", e->name);
                p->n_skipped++;
            }
            if (r < p->n_skipped) p->skipped[r].count++;
            p->ignored++;
            continue;
        }
        const StEntry *src = e;
        if (use_ema && t.part == LDM_UNET) {
            char flat[LDM_NAME_MAX];
            ema_name(e->name, flat, sizeof(flat));
            src = st_find(st, flat);
            if (!src) {
                sd_errorf("%s: tensor '%s' is missing (the EMA copy of '%s')", st->path, flat, e->name);
                goto done;
            }
            int same = src->ndim == e->ndim;
            for (int d = 0; same && d < e->ndim; d++) same = src->shape[d] == e->shape[d];
            if (!same) {
                sd_errorf("%s: tensor '%s': its shape differs from '%s'", st->path, flat, e->name);
                goto done;
            }
        }
        if (src->dtype != DT_F32 && src->dtype != DT_F16 && src->dtype != DT_BF16 && src->dtype != DT_F64) {
            sd_errorf("%s: tensor '%s': dtype %s, expected a float type (F32, F16, BF16, F64)", st->path, src->name,
                      dtype_name(src->dtype));
            goto done;
        }
        Instance *it = instance_get(&in, t.unit, t.instance);
        if (!it) {
            sd_errorf("out of memory");
            goto done;
        }
        it->found |= (uint64_t)1 << t.member;
        if (plan_entry(p, &cap, &t, src, st->path)) goto done;
    }
    if (check_blocks(L, &in, st->path)) goto done;
    qsort(p->tensors, (size_t)p->count, sizeof(LdmTensor), cmp_tensor);
    for (int i = 1; i < p->count; i++)
        if (p->tensors[i].part == p->tensors[i - 1].part && !strcmp(p->tensors[i].name, p->tensors[i - 1].name)) {
            sd_errorf("%s: tensors '%s' and '%s' both map to %s/%s", st->path, p->tensors[i - 1].src->name,
                      p->tensors[i].src->name, ldm_part_folder[p->tensors[i].part], p->tensors[i].name);
            goto done;
        }
    rc = 0;
done:
    free(in.items);
    if (rc) ldm_plan_free(p);
    return rc;
}

void ldm_plan_free(LdmPlan *p) {
    free(p->tensors);
    p->tensors = NULL;
    p->count = 0;
}

const LdmTensor *ldm_plan_find(const LdmPlan *p, LdmPart part, const char *name) {
    int lo = 0, hi = p->count - 1;  // sorted by (part, name)
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const LdmTensor *t = &p->tensors[mid];
        int c = t->part != part ? (t->part < part ? -1 : 1) : strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

int ldm_tensor_read(const LdmTensor *t, int64_t first, int64_t count, DType dtype, void *dst) {
    const StEntry *e = t->src;
    if (first < 0 || count < 0 || first + count > t->numel)
        return sd_errorf("tensor '%s': elements [%lld, %lld) of %lld", t->name, (long long)first,
                         (long long)(first + count), (long long)t->numel);
    if (dtype != DT_F32 && dtype != DT_F16) return sd_errorf("tensor '%s': can write F32 or F16 only", t->name);
    const int size = dtype_size(e->dtype);
    const unsigned char *p = e->data + (size_t)(t->offset + first) * (size_t)size;
    if (e->dtype == dtype) {  // the same bytes (little-endian in the file and in memory)
        memcpy(dst, p, (size_t)count * (size_t)size);
        return 0;
    }
    for (int64_t k = 0; k < count; k++) {
        const unsigned char *b = p + k * size;
        float v;
        if (e->dtype == DT_F32) {  // little-endian whatever the host (big-endian: s390x)
            uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
            memcpy(&v, &u, 4);
        } else if (e->dtype == DT_F16) {
            v = f32_from_f16((uint16_t)(b[0] | (b[1] << 8)));
        } else if (e->dtype == DT_BF16) {
            v = f32_from_bf16((uint16_t)(b[0] | (b[1] << 8)));
        } else if (e->dtype == DT_F64) {
            uint64_t u = 0;
            for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
            double x;
            memcpy(&x, &u, 8);
            v = (float)x;
        } else {
            return sd_errorf("tensor '%s': dtype %s is not a float type", e->name, dtype_name(e->dtype));
        }
        // out as the file's little-endian bytes (the caller writes dst as it is)
        unsigned char *o = (unsigned char *)dst + k * dtype_size(dtype);
        uint32_t u;
        if (dtype == DT_F32) memcpy(&u, &v, 4);
        else u = f16_from_f32(v);
        for (int i = 0; i < dtype_size(dtype); i++) o[i] = (unsigned char)(u >> (8 * i));
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Config values from the shapes.

static const LdmTensor *shape_of(const LdmPlan *p, LdmPart part, int min_ndim, const char *fmt, int a) {
    char name[LDM_NAME_MAX];
    snprintf(name, sizeof(name), fmt, a);
    const LdmTensor *t = ldm_plan_find(p, part, name);
    if (!t)
        sd_errorf("%s/%s: missing: cannot tell the config", ldm_part_folder[part], name);
    else if (t->ndim < min_ndim) {
        sd_errorf("%s/%s: %d dims, expected at least %d", ldm_part_folder[part], name, t->ndim, min_ndim);
        t = NULL;
    }
    return t;
}

int ldm_infer_shapes(const LdmPlan *p, LdmShapes *s) {
    const LdmLayout *L = &p->layout;
    const LdmTensor *t;
    memset(s, 0, sizeof(*s));
    s->unet_levels = L->unet_levels;
    s->layers_per_block = L->unet_layers_per_block;
    for (int l = 0; l < L->unet_levels; l++) {
        if (!(t = shape_of(p, LDM_UNET, 1, "down_blocks.%d.resnets.0.conv1.weight", l))) return SD_FAIL;
        s->block_out_channels[l] = (int)t->shape[0];
        char name[LDM_NAME_MAX];
        snprintf(name, sizeof(name), "down_blocks.%d.attentions.0.proj_in.weight", l);
        s->down_attention[l] = ldm_plan_find(p, LDM_UNET, name) != NULL;
        snprintf(name, sizeof(name), "up_blocks.%d.attentions.0.proj_in.weight", l);
        s->up_attention[l] = ldm_plan_find(p, LDM_UNET, name) != NULL;
    }
    if (!(t = shape_of(p, LDM_UNET, 2, "conv_in.weight", 0))) return SD_FAIL;
    s->in_channels = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_UNET, 1, "conv_out.weight", 0))) return SD_FAIL;
    s->out_channels = (int)t->shape[0];
    if (!(t = shape_of(p, LDM_UNET, 2, "mid_block.attentions.0.transformer_blocks.%d.attn2.to_k.weight", 0)))
        return SD_FAIL;
    s->cross_attention_dim = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_UNET, 2, "mid_block.attentions.0.proj_in.weight", 0))) return SD_FAIL;
    s->use_linear_projection = t->ndim == 2;  // SD 2.x: Linear; SD 1.x: 1x1 conv
    if (!(t = shape_of(p, LDM_UNET, 1, "time_embedding.linear_1.weight", 0))) return SD_FAIL;
    s->time_embed_dim = (int)t->shape[0];
    for (int k = 0; k < 64; k++) {
        char name[LDM_NAME_MAX];
        snprintf(name, sizeof(name), "mid_block.attentions.0.transformer_blocks.%d.norm1.weight", k);
        if (!ldm_plan_find(p, LDM_UNET, name)) break;
        s->transformer_depth = k + 1;
    }

    s->vae_levels = L->vae_levels;
    s->vae_layers_per_block = L->vae_layers_per_block;
    s->vae_has_decoder = L->vae_has_decoder;
    for (int l = 0; l < L->vae_levels; l++) {
        if (!(t = shape_of(p, LDM_VAE, 1, "encoder.down_blocks.%d.resnets.0.conv1.weight", l))) return SD_FAIL;
        s->vae_block_out_channels[l] = (int)t->shape[0];
    }
    if (!(t = shape_of(p, LDM_VAE, 2, "encoder.conv_in.weight", 0))) return SD_FAIL;
    s->vae_in_channels = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_VAE, 1, "quant_conv.weight", 0))) return SD_FAIL;
    s->latent_channels = (int)t->shape[0] / 2;  // quant_conv gives the posterior's mean and log-variance
    s->vae_out_channels = s->vae_in_channels;
    if (L->vae_has_decoder) {
        if (!(t = shape_of(p, LDM_VAE, 1, "decoder.conv_out.weight", 0))) return SD_FAIL;
        s->vae_out_channels = (int)t->shape[0];
    }

    s->text_kind = L->text_kind;
    if (!(t = shape_of(p, LDM_TEXT, 2, "text_model.embeddings.token_embedding.weight", 0))) return SD_FAIL;
    s->vocab_size = (int)t->shape[0];
    s->hidden_size = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_TEXT, 1, "text_model.embeddings.position_embedding.weight", 0))) return SD_FAIL;
    s->max_position_embeddings = (int)t->shape[0];
    if (!(t = shape_of(p, LDM_TEXT, 1, "text_model.encoder.layers.%d.mlp.fc1.weight", 0))) return SD_FAIL;
    s->intermediate_size = (int)t->shape[0];
    s->num_hidden_layers = L->text_layers_kept;
    s->projection_dim = s->hidden_size;
    return 0;
}

int ldm_default_heads(int cross_attention_dim, int channels) {
    if (cross_attention_dim == 1024 && channels % 64 == 0) return channels / 64;
    return 8;
}
