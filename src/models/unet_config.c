// UNet2DConditionModel from its config.json and weights (diffusers 0.17.0 unet_2d_condition.py __init__,
// DiffusionSat sat_unet.py): the config keys read, defaulted, range-checked or rejected by name, and the
// modules they list loaded (see unet.h). The forward is in unet.c.
#include "models/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// ---- config ------------------------------------------------------------------

// A list of strings of known length, or the defaults when the key is absent.
static int cfg_strings(const JsonValue *cfg, const char *key, int count, const char *const *dflt, const char **out) {
    const JsonValue *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) {
        for (int i = 0; i < count; i++) out[i] = dflt[i];
        return 0;
    }
    if (v->type != JSON_ARRAY) return sd_errorf("config.json '%s': expected a list of strings", key);
    if (v->count != count) return sd_errorf("config.json '%s': %d entries, expected %d (one per block)", key, v->count, count);
    for (int i = 0; i < count; i++) {
        if (v->items[i].type != JSON_STRING) return sd_errorf("config.json '%s'[%d]: expected a string", key, i);
        out[i] = v->items[i].string;
    }
    return 0;
}

// An int or a list of ints (one per block), or `dflt` repeated when the key is absent.
static int cfg_ints(const JsonValue *cfg, const char *key, int count, int dflt, int *out) {
    const JsonValue *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) {
        for (int i = 0; i < count; i++) out[i] = dflt;
        return 0;
    }
    if (json_get_int_list(cfg, key, count, out)) return sd_error_context("config.json");
    return 0;
}

// A bool or a list of bools.
static int cfg_bools(const JsonValue *cfg, const char *key, int count, int dflt, int *out) {
    const JsonValue *v = json_get(cfg, key);
    for (int i = 0; i < count; i++) out[i] = dflt;
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type == JSON_BOOL) {
        for (int i = 0; i < count; i++) out[i] = v->boolean;
        return 0;
    }
    if (v->type != JSON_ARRAY || v->count != count)
        return sd_errorf("config.json '%s': expected a bool or a list of %d bools", key, count);
    for (int i = 0; i < count; i++) {
        if (v->items[i].type != JSON_BOOL) return sd_errorf("config.json '%s'[%d]: expected a bool", key, i);
        out[i] = v->items[i].boolean;
    }
    return 0;
}

// Keys whose non-default values select features this implementation does not have.
static int cfg_reject(const JsonValue *cfg) {
    static const char *const must_be_null[] = {
        "class_embed_type", "num_class_embeds", "addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type",
        "time_cond_proj_dim", "timestep_post_act", "time_embedding_act_fn", "cross_attention_norm",
        "projection_class_embeddings_input_dim"};
    for (size_t i = 0; i < sizeof(must_be_null) / sizeof(must_be_null[0]); i++) {
        const JsonValue *v = json_get(cfg, must_be_null[i]);
        if (v && v->type != JSON_NULL)
            return sd_errorf("config.json '%s' is set: not supported by this UNet (SD 1.x/2.x family only)", must_be_null[i]);
    }
    static const char *const must_be_false[] = {"dual_cross_attention", "class_embeddings_concat"};
    for (size_t i = 0; i < sizeof(must_be_false) / sizeof(must_be_false[0]); i++) {
        int b;
        if (json_get_bool(cfg, must_be_false[i], 0, &b)) return sd_error_context("config.json");
        if (b) return sd_errorf("config.json '%s' is true: not supported by this UNet", must_be_false[i]);
    }
    const char *s;
    if (json_get_string(cfg, "act_fn", "silu", &s)) return sd_error_context("config.json");
    if (strcmp(s, "silu") != 0 && strcmp(s, "swish") != 0)
        return sd_errorf("config.json 'act_fn' is '%s': only silu is supported", s);
    if (json_get_string(cfg, "time_embedding_type", "positional", &s)) return sd_error_context("config.json");
    if (strcmp(s, "positional") != 0)
        return sd_errorf("config.json 'time_embedding_type' is '%s': only positional is supported", s);
    return 0;
}

// Sizes a real SD / DiffusionSat UNet is far below (320..1280 channels, 5..20 heads, 1024 cross-attention,
// 7 metadata values): larger values are a broken config.json, refused before any buffer is sized from them
// (and products like 4 * channels stay in int range).
#define UNET_MAX_CHANNELS 65536
#define UNET_MAX_KERNEL 31
#define UNET_MAX_METADATA 1024

// config.json key (or key[index] when index >= 0) must be in lo..hi.
static int cfg_range(const char *key, int index, int value, int lo, int hi) {
    if (value >= lo && value <= hi) return 0;
    if (index >= 0) return sd_errorf("config.json '%s'[%d] is %d: expected %d..%d", key, index, value, lo, hi);
    return sd_errorf("config.json '%s' is %d: expected %d..%d", key, value, lo, hi);
}

// "UNetResDownBlock2D" is an alias diffusers strips to "DownBlock2D".
static const char *block_type(const char *t) { return strncmp(t, "UNetRes", 7) == 0 ? t + 7 : t; }

// ---- loading -------------------------------------------------------------------

typedef struct {
    int groups;
    float eps;
    int scale_shift;
    int linear_projection;
} BlockCommon;

static int load_attention(NnWeights *w, Transformer2D *t, const char *name, int channels, int heads, int context_dim,
                          int only_cross, const BlockCommon *bc) {
    if (heads <= 0 || channels / heads <= 0)
        return sd_errorf("%s: %d channels cannot have %d attention heads", name, channels, heads);
    // Transformer2DModel(heads, channels // heads): the head size is rounded down, as diffusers does.
    return transformer2d_load(w, t, name, channels, heads, channels / heads, context_dim, bc->groups,
                              bc->linear_projection, only_cross);
}

static int load_block(UNet *u, UNetBlock *blk, const char *name, const char *type, int is_up, int num_layers,
                      int in_ch, int out_ch, int prev_out_ch, int heads, int context_dim, int only_cross,
                      int add_sampler, int downsample_padding, const BlockCommon *bc) {
    char buf[NN_NAME_MAX];
    const char *t = block_type(type);
    if (!is_up && strcmp(t, "CrossAttnDownBlock2D") == 0) blk->has_attention = 1;
    else if (is_up && strcmp(t, "CrossAttnUpBlock2D") == 0) blk->has_attention = 1;
    else if (!is_up && strcmp(t, "DownBlock2D") == 0) blk->has_attention = 0;
    else if (is_up && strcmp(t, "UpBlock2D") == 0) blk->has_attention = 0;
    else
        return sd_errorf("%s: block type '%s' is not supported (CrossAttn%sBlock2D or %sBlock2D)", name, type,
                         is_up ? "Up" : "Down", is_up ? "Up" : "Down");
    if (num_layers < 1 || num_layers > UNET_MAX_LAYERS)
        return sd_errorf("%s: %d layers (1..%d supported)", name, num_layers, UNET_MAX_LAYERS);
    blk->num_layers = num_layers;
    blk->out_channels = out_ch;
    for (int j = 0; j < num_layers; j++) {
        int rin;
        if (!is_up) {
            rin = j == 0 ? in_ch : out_ch;
        } else {  // the skip connection is concatenated on channels
            int res_skip = j == num_layers - 1 ? in_ch : out_ch;
            rin = (j == 0 ? prev_out_ch : out_ch) + res_skip;
        }
        snprintf(buf, sizeof(buf), "%s.resnets.%d", name, j);
        if (resnet_block_load(&u->weights, &blk->resnets[j], buf, rin, out_ch, u->time_embed_dim, bc->groups, bc->eps,
                              1.0f, bc->scale_shift))
            return SD_FAIL;
        if (blk->has_attention) {
            snprintf(buf, sizeof(buf), "%s.attentions.%d", name, j);
            if (load_attention(&u->weights, &blk->attentions[j], buf, out_ch, heads, context_dim, only_cross, bc))
                return SD_FAIL;
        }
    }
    blk->has_sampler = add_sampler;
    if (add_sampler) {
        if (is_up) {
            snprintf(buf, sizeof(buf), "%s.upsamplers.0", name);
            return upsample_load(&u->weights, &blk->upsampler, buf, out_ch);
        }
        snprintf(buf, sizeof(buf), "%s.downsamplers.0", name);
        return downsample_load(&u->weights, &blk->downsampler, buf, out_ch, downsample_padding);
    }
    return 0;
}

static int unet_load_impl(UNet *u, const JsonValue *cfg, int use_metadata) {
    static const char *const dflt_down[4] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                             "DownBlock2D"};
    static const char *const dflt_up[4] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                           "CrossAttnUpBlock2D"};
    static const int dflt_boc[4] = {320, 640, 1280, 1280};
    if (!cfg || cfg->type != JSON_OBJECT) return sd_errorf("UNet config: expected a JSON object");
    if (cfg_reject(cfg)) return SD_FAIL;

    const JsonValue *boc = json_get(cfg, "block_out_channels");
    int n = 4;
    if (boc && boc->type != JSON_NULL) {
        if (boc->type != JSON_ARRAY || boc->count < 1 || boc->count > UNET_MAX_BLOCKS)
            return sd_errorf("config.json 'block_out_channels': expected a list of 1..%d ints", UNET_MAX_BLOCKS);
        n = boc->count;
        if (json_get_int_list(cfg, "block_out_channels", n, u->block_out_channels)) return sd_error_context("config.json");
    } else {
        memcpy(u->block_out_channels, dflt_boc, sizeof(dflt_boc));
    }
    u->n_blocks = n;
    const char *down_types[UNET_MAX_BLOCKS], *up_types[UNET_MAX_BLOCKS];
    if (!boc || boc->type == JSON_NULL || n == 4) {
        if (cfg_strings(cfg, "down_block_types", n, dflt_down, down_types)) return SD_FAIL;
        if (cfg_strings(cfg, "up_block_types", n, dflt_up, up_types)) return SD_FAIL;
    } else {
        if (!json_get(cfg, "down_block_types") || !json_get(cfg, "up_block_types"))
            return sd_errorf("config.json: down_block_types and up_block_types are needed with %d blocks", n);
        if (cfg_strings(cfg, "down_block_types", n, NULL, down_types)) return SD_FAIL;
        if (cfg_strings(cfg, "up_block_types", n, NULL, up_types)) return SD_FAIL;
    }
    int layers[UNET_MAX_BLOCKS], only_cross[UNET_MAX_BLOCKS];
    if (cfg_ints(cfg, "layers_per_block", n, 2, layers)) return SD_FAIL;
    // diffusers 0.17 passes attention_head_dim as the head count; later versions call it num_attention_heads.
    const JsonValue *nah = json_get(cfg, "num_attention_heads");
    const char *heads_key = nah && nah->type != JSON_NULL ? "num_attention_heads" : "attention_head_dim";
    if (cfg_ints(cfg, heads_key, n, 8, u->heads)) return SD_FAIL;
    if (cfg_ints(cfg, "cross_attention_dim", n, 1280, u->cross_attention_dim)) return SD_FAIL;
    if (cfg_bools(cfg, "only_cross_attention", n, 0, only_cross)) return SD_FAIL;
    // a scalar key was repeated per block: name it without an index then
    const JsonValue *lv = json_get(cfg, "layers_per_block"), *hv = json_get(cfg, heads_key),
                    *cv = json_get(cfg, "cross_attention_dim");
    for (int i = 0; i < n; i++) {
        int boc_i = boc && boc->type == JSON_ARRAY ? i : -1;
        if (cfg_range("block_out_channels", boc_i, u->block_out_channels[i], 1, UNET_MAX_CHANNELS) ||
            cfg_range("layers_per_block", lv && lv->type == JSON_ARRAY ? i : -1, layers[i], 1, UNET_MAX_LAYERS - 1) ||
            cfg_range(heads_key, hv && hv->type == JSON_ARRAY ? i : -1, u->heads[i], 1, UNET_MAX_CHANNELS) ||
            cfg_range("cross_attention_dim", cv && cv->type == JSON_ARRAY ? i : -1, u->cross_attention_dim[i], 1,
                      UNET_MAX_CHANNELS))
            return SD_FAIL;
    }

    int use_linear, groups, flip, conv_in_k, conv_out_k, down_pad, ted, center, tl;
    double eps, shift, mid_scale;
    const char *mid_type = "UNetMidBlock2DCrossAttn", *tss;
    if (json_get_int(cfg, "in_channels", 4, &u->in_channels) || json_get_int(cfg, "out_channels", 4, &u->out_channels) ||
        json_get_bool(cfg, "use_linear_projection", 0, &use_linear) ||
        json_get_double(cfg, "norm_eps", 1e-5, &eps) || json_get_bool(cfg, "flip_sin_to_cos", 1, &flip) ||
        json_get_double(cfg, "freq_shift", 0.0, &shift) || json_get_int(cfg, "conv_in_kernel", 3, &conv_in_k) ||
        json_get_int(cfg, "conv_out_kernel", 3, &conv_out_k) ||
        json_get_int(cfg, "downsample_padding", 1, &down_pad) ||
        json_get_double(cfg, "mid_block_scale_factor", 1.0, &mid_scale) ||
        json_get_int(cfg, "time_embedding_dim", 0, &ted) || json_get_bool(cfg, "center_input_sample", 0, &center) ||
        json_get_string(cfg, "resnet_time_scale_shift", "default", &tss) ||
        json_get_int(cfg, "transformer_layers_per_block", 1, &tl))
        return sd_error_context("config.json");
    const JsonValue *gv = json_get(cfg, "norm_num_groups");
    if (gv && gv->type == JSON_NULL) return sd_errorf("config.json 'norm_num_groups' is null: not supported");
    if (json_get_int(cfg, "norm_num_groups", 32, &groups)) return sd_error_context("config.json");
    const JsonValue *mv = json_get(cfg, "mid_block_type");
    if (mv && mv->type == JSON_NULL) mid_type = NULL;
    else if (json_get_string(cfg, "mid_block_type", mid_type, &mid_type)) return sd_error_context("config.json");
    if (mid_type && strcmp(mid_type, "UNetMidBlock2DCrossAttn") != 0)
        return sd_errorf("config.json 'mid_block_type' is '%s': only UNetMidBlock2DCrossAttn (or null) is supported",
                         mid_type);
    if (strcmp(tss, "default") != 0 && strcmp(tss, "scale_shift") != 0)
        return sd_errorf("config.json 'resnet_time_scale_shift' is '%s': default or scale_shift supported", tss);
    if (tl != 1) return sd_errorf("config.json 'transformer_layers_per_block' is %d: only 1 is supported", tl);
    if (cfg_range("in_channels", -1, u->in_channels, 1, UNET_MAX_CHANNELS) ||
        cfg_range("out_channels", -1, u->out_channels, 1, UNET_MAX_CHANNELS) ||
        cfg_range("norm_num_groups", -1, groups, 1, UNET_MAX_CHANNELS) ||
        cfg_range("conv_in_kernel", -1, conv_in_k, 1, UNET_MAX_KERNEL) ||
        cfg_range("conv_out_kernel", -1, conv_out_k, 1, UNET_MAX_KERNEL))
        return SD_FAIL;
    if (conv_in_k % 2 == 0 || conv_out_k % 2 == 0)
        return sd_errorf("config.json: conv_in_kernel %d / conv_out_kernel %d must be odd", conv_in_k, conv_out_k);
    // Values that would run but give NaN/Inf features (or, for a large padding, grow every downsampled map).
    if (!(eps >= 0.0) || !isfinite((float)eps)) return sd_errorf("config.json 'norm_eps' is %g: expected a finite number >= 0", eps);
    if (!isfinite((float)shift)) return sd_errorf("config.json 'freq_shift' is %g: expected a finite number", shift);
    if (!(mid_scale > 0.0) || !isfinite((float)mid_scale))
        return sd_errorf("config.json 'mid_block_scale_factor' is %g: expected a finite number > 0", mid_scale);
    if (down_pad < 0 || down_pad > 1) return sd_errorf("config.json 'downsample_padding' is %d: 0 or 1 supported", down_pad);
    if (ted < 0 || ted > 4 * UNET_MAX_CHANNELS)
        return sd_errorf("config.json 'time_embedding_dim' is %d: expected 1..%d (or null)", ted, 4 * UNET_MAX_CHANNELS);

    // SatUNet metadata embeddings.
    int cfg_use_md, num_md;
    if (json_get_bool(cfg, "use_metadata", 0, &cfg_use_md) || json_get_int(cfg, "num_metadata", 7, &num_md))
        return sd_error_context("config.json");
    int want_md = use_metadata < 0 ? cfg_use_md : use_metadata;
    u->num_metadata = want_md ? num_md : 0;
    if (want_md && cfg_range("num_metadata", -1, num_md, 1, UNET_MAX_METADATA)) return SD_FAIL;

    const int C0 = u->block_out_channels[0];
    u->flip_sin_to_cos = flip;
    u->freq_shift = (float)shift;
    u->center_input_sample = center;
    u->timestep_input_dim = C0;
    u->time_embed_dim = ted > 0 ? ted : 4 * C0;
    u->has_mid_block = mid_type != NULL;
    BlockCommon bc = {groups, (float)eps, strcmp(tss, "scale_shift") == 0, use_linear};
    NnWeights *w = &u->weights;
    char buf[NN_NAME_MAX];

    if (nn_conv2d_load(w, &u->conv_in, "conv_in", u->in_channels, C0, conv_in_k,
                       conv_geometry(conv_in_k, 1, (conv_in_k - 1) / 2), 1))
        return SD_FAIL;
    if (timestep_embedding_load(w, &u->time_embedding, "time_embedding", C0, u->time_embed_dim)) return SD_FAIL;
    if (u->num_metadata > 0) {
        u->metadata_embedding = (TimestepEmbedding *)calloc((size_t)u->num_metadata, sizeof(TimestepEmbedding));
        if (!u->metadata_embedding) return sd_errorf("out of memory");
        for (int m = 0; m < u->num_metadata; m++) {
            snprintf(buf, sizeof(buf), "metadata_embedding.%d", m);
            if (timestep_embedding_load(w, &u->metadata_embedding[m], buf, C0, u->time_embed_dim)) return SD_FAIL;
        }
    }

    int out_ch = C0;
    for (int i = 0; i < n; i++) {
        int in_ch = out_ch;
        out_ch = u->block_out_channels[i];
        snprintf(buf, sizeof(buf), "down_blocks.%d", i);
        if (load_block(u, &u->down_blocks[i], buf, down_types[i], 0, layers[i], in_ch, out_ch, 0, u->heads[i],
                       u->cross_attention_dim[i], only_cross[i], i < n - 1, down_pad, &bc))
            return SD_FAIL;
    }
    if (u->has_mid_block) {
        const int C = u->block_out_channels[n - 1];
        UNetBlock *mid = &u->mid_block;
        mid->has_attention = 1;
        mid->num_layers = 2;
        mid->out_channels = C;
        BlockCommon mbc = bc;
        for (int j = 0; j < 2; j++) {
            snprintf(buf, sizeof(buf), "mid_block.resnets.%d", j);
            if (resnet_block_load(w, &mid->resnets[j], buf, C, C, u->time_embed_dim, groups, (float)eps,
                                  (float)mid_scale, mbc.scale_shift))
                return SD_FAIL;
        }
        if (load_attention(w, &mid->attentions[0], "mid_block.attentions.0", C, u->heads[n - 1],
                           u->cross_attention_dim[n - 1], 0, &mbc))
            return SD_FAIL;
    }
    out_ch = u->block_out_channels[n - 1];
    for (int i = 0; i < n; i++) {
        int r = n - 1 - i;  // reversed lists
        int prev_out = out_ch;
        out_ch = u->block_out_channels[r];
        int in_ch = u->block_out_channels[r - 1 >= 0 ? r - 1 : 0];
        snprintf(buf, sizeof(buf), "up_blocks.%d", i);
        if (load_block(u, &u->up_blocks[i], buf, up_types[i], 1, layers[r] + 1, in_ch, out_ch, prev_out, u->heads[r],
                       u->cross_attention_dim[r], only_cross[r], i < n - 1, 0, &bc))
            return SD_FAIL;
    }
    u->has_conv_norm_out = 1;
    if (nn_groupnorm_load(w, &u->conv_norm_out, "conv_norm_out", C0, groups, (float)eps)) return SD_FAIL;
    return nn_conv2d_load(w, &u->conv_out, "conv_out", C0, u->out_channels, conv_out_k,
                          conv_geometry(conv_out_k, 1, (conv_out_k - 1) / 2), 1);
}

int unet_load(UNet *u, const JsonValue *config, const SafeTensors *st, const char *prefix, int use_metadata) {
    memset(u, 0, sizeof(*u));
    nn_weights_init(&u->weights, st, prefix);
    if (unet_load_impl(u, config, use_metadata)) {
        sd_error_context("UNet");
        unet_free(u);
        return SD_FAIL;
    }
    return 0;
}

static void block_free(UNetBlock *b) {
    for (int j = 0; j < UNET_MAX_LAYERS; j++) transformer2d_free(&b->attentions[j]);
}

void unet_free(UNet *u) {
    nn_weights_free(&u->weights);
    free(u->metadata_embedding);
    for (int i = 0; i < UNET_MAX_BLOCKS; i++) {
        block_free(&u->down_blocks[i]);
        block_free(&u->up_blocks[i]);
    }
    block_free(&u->mid_block);
    memset(u, 0, sizeof(*u));
}
