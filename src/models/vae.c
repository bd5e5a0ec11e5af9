// AutoencoderKL encoder + quant_conv (see vae.h).
#include "models/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

// ---- loading -------------------------------------------------------------------

// SD's VAE has 128..512 channels: a size beyond this is a broken config.json, refused before any
// buffer is sized from it (and 2 * latent_channels stays in int range).
#define VAE_MAX_CHANNELS 65536

// config.json key (or key[index] when index >= 0) must be in lo..hi.
static int cfg_range(const char *key, int index, int value, int lo, int hi) {
    if (value >= lo && value <= hi) return 0;
    if (index >= 0) return sd_errorf("config.json '%s'[%d] is %d: expected %d..%d", key, index, value, lo, hi);
    return sd_errorf("config.json '%s' is %d: expected %d..%d", key, value, lo, hi);
}

static int vae_load_impl(VaeEncoder *v, const JsonValue *cfg) {
    if (!cfg || cfg->type != JSON_OBJECT) return sd_errorf("VAE config: expected a JSON object");
    const JsonValue *boc = json_get(cfg, "block_out_channels");
    int n = 1;
    if (boc && boc->type != JSON_NULL) {
        if (boc->type != JSON_ARRAY || boc->count < 1 || boc->count > VAE_MAX_BLOCKS)
            return sd_errorf("config.json 'block_out_channels': expected a list of 1..%d ints", VAE_MAX_BLOCKS);
        n = boc->count;
        if (json_get_int_list(cfg, "block_out_channels", n, v->block_out_channels)) return sd_error_context("config.json");
    } else {
        v->block_out_channels[0] = 64;
    }
    v->n_blocks = n;
    const JsonValue *types = json_get(cfg, "down_block_types");
    if (types && types->type != JSON_NULL) {
        if (types->type != JSON_ARRAY || types->count != n)
            return sd_errorf("config.json 'down_block_types': expected a list of %d names", n);
        for (int i = 0; i < n; i++)
            if (types->items[i].type != JSON_STRING || strcmp(types->items[i].string, "DownEncoderBlock2D") != 0)
                return sd_errorf("config.json 'down_block_types'[%d]: only DownEncoderBlock2D is supported", i);
    } else if (n != 1) {
        return sd_errorf("config.json: down_block_types is needed with %d blocks", n);
    }
    double scaling;
    const char *act;
    if (json_get_int(cfg, "in_channels", 3, &v->in_channels) ||
        json_get_int(cfg, "latent_channels", 4, &v->latent_channels) ||
        json_get_int(cfg, "layers_per_block", 1, &v->layers_per_block) ||
        json_get_int(cfg, "norm_num_groups", 32, &v->norm_num_groups) ||
        json_get_double(cfg, "scaling_factor", 0.18215, &scaling) || json_get_string(cfg, "act_fn", "silu", &act))
        return sd_error_context("config.json");
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        return sd_errorf("config.json 'act_fn' is '%s': only silu is supported", act);
    for (int i = 0; i < n; i++)
        if (cfg_range("block_out_channels", boc && boc->type == JSON_ARRAY ? i : -1, v->block_out_channels[i], 1,
                      VAE_MAX_CHANNELS))
            return SD_FAIL;
    if (cfg_range("in_channels", -1, v->in_channels, 1, VAE_MAX_CHANNELS) ||
        cfg_range("latent_channels", -1, v->latent_channels, 1, VAE_MAX_CHANNELS) ||
        cfg_range("norm_num_groups", -1, v->norm_num_groups, 1, VAE_MAX_CHANNELS))
        return SD_FAIL;
    if (v->layers_per_block < 1 || v->layers_per_block > VAE_MAX_LAYERS)
        return sd_errorf("config.json 'layers_per_block' is %d: 1..%d supported", v->layers_per_block, VAE_MAX_LAYERS);
    if (!(scaling > 0.0) || !isfinite((float)scaling))
        return sd_errorf("config.json 'scaling_factor' is %g: expected a finite number > 0", scaling);
    v->scaling_factor = (float)scaling;

    NnWeights *w = &v->weights;
    const int G = v->norm_num_groups;
    const float eps = 1e-6f;  // Encoder passes resnet_eps=1e-6 everywhere
    char buf[NN_NAME_MAX];
    const int C0 = v->block_out_channels[0], CL = v->block_out_channels[n - 1], Z = 2 * v->latent_channels;
    if (nn_conv2d_load(w, &v->conv_in, "encoder.conv_in", v->in_channels, C0, 3, conv_geometry(3, 1, 1), 1))
        return SD_FAIL;
    int out_ch = C0;
    for (int i = 0; i < n; i++) {
        int in_ch = out_ch;
        out_ch = v->block_out_channels[i];
        VaeDownBlock *blk = &v->down_blocks[i];
        blk->num_layers = v->layers_per_block;
        for (int j = 0; j < blk->num_layers; j++) {
            snprintf(buf, sizeof(buf), "encoder.down_blocks.%d.resnets.%d", i, j);
            if (resnet_block_load(w, &blk->resnets[j], buf, j == 0 ? in_ch : out_ch, out_ch, 0, G, eps, 1.0f, 0))
                return SD_FAIL;
        }
        blk->has_downsampler = i < n - 1;
        if (blk->has_downsampler) {
            snprintf(buf, sizeof(buf), "encoder.down_blocks.%d.downsamplers.0", i);
            if (downsample_load(w, &blk->downsampler, buf, out_ch, 0)) return SD_FAIL;
        }
    }
    for (int j = 0; j < 2; j++) {
        snprintf(buf, sizeof(buf), "encoder.mid_block.resnets.%d", j);
        if (resnet_block_load(w, &v->mid_resnets[j], buf, CL, CL, 0, G, eps, 1.0f, 0)) return SD_FAIL;
    }
    if (nn_groupnorm_load(w, &v->mid_attn_norm, "encoder.mid_block.attentions.0.group_norm", CL, G, eps))
        return SD_FAIL;
    // attn_num_head_channels=None: heads = 1, dim_head = channels; bias=True; old names accepted.
    if (attention_layer_load(w, &v->mid_attn, "encoder.mid_block.attentions.0", CL, CL, 1, CL, 1, 1)) return SD_FAIL;
    if (nn_groupnorm_load(w, &v->conv_norm_out, "encoder.conv_norm_out", CL, G, eps)) return SD_FAIL;
    if (nn_conv2d_load(w, &v->conv_out, "encoder.conv_out", CL, Z, 3, conv_geometry(3, 1, 1), 1)) return SD_FAIL;
    return nn_conv2d_load(w, &v->quant_conv, "quant_conv", Z, Z, 1, conv_geometry(1, 1, 0), 1);
}

int vae_encoder_load(VaeEncoder *v, const JsonValue *config, const SafeTensors *st, const char *prefix) {
    memset(v, 0, sizeof(*v));
    nn_weights_init(&v->weights, st, prefix);
    if (vae_load_impl(v, config)) {
        sd_error_context("VAE encoder");
        vae_encoder_free(v);
        return SD_FAIL;
    }
    return 0;
}

void vae_encoder_free(VaeEncoder *v) {
    nn_weights_free(&v->weights);
    memset(v, 0, sizeof(*v));
}

void vae_latent_size(const VaeEncoder *v, int H, int W, int *h, int *w) {
    for (int i = 0; i < v->n_blocks; i++)
        if (v->down_blocks[i].has_downsampler) downsample_out_size(&v->down_blocks[i].downsampler, H, W, &H, &W);
    *h = H;
    *w = W;
}

// ---- forward ---------------------------------------------------------------------

// Moves n floats at src down to the arena position `mark` (everything between is dead) and makes them
// the arena's top.
static float *move_down(Arena *a, size_t mark, const float *src, int64_t n) {
    arena_reset(a, mark);
    float *dst = nn_alloc(a, n);
    if (dst && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
    return dst;
}

// cur (B, C, H, W) in place: cur = cur + to_out(attention(group_norm(cur) as (B, HW, C))).
static int mid_attention_forward(const VaeEncoder *v, float *cur, int B, int C, int HW, Arena *arena) {
    size_t mark = arena_mark(arena);
    int rc = SD_FAIL;
    float *normed = nn_alloc(arena, (int64_t)B * C * HW);
    float *rows = normed ? nn_alloc(arena, (int64_t)B * HW * C) : NULL;
    float *a = rows ? nn_alloc(arena, (int64_t)B * HW * C) : NULL;
    if (!a) goto done;
    nn_groupnorm(&v->mid_attn_norm, cur, normed, B, HW);
    nn_nchw_to_nlc(normed, rows, B, C, HW);
    if (attention_layer_forward(&v->mid_attn, rows, B, HW, NULL, 0, a, arena)) goto done;
    // residual_connection=True, rescale_output_factor=1
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *xc = cur + ((int64_t)b * C + c) * HW;
            const float *ac = a + (int64_t)b * HW * C + c;
            for (int i = 0; i < HW; i++) xc[i] += ac[(int64_t)i * C];
        }
    rc = 0;
done:
    arena_reset(arena, mark);
    return rc;
}

// cur = resnet(cur), the output moved down over the input.
static int resnet_step(const ResnetBlock2D *r, float **cur, size_t cur_mark, int B, int H, int W, Arena *arena,
                       ModuleCaptures *cap, const char *path) {
    const int64_t n = (int64_t)B * r->out_channels * H * W;
    float *o = nn_alloc(arena, n);
    if (!o || resnet_block_forward(r, *cur, NULL, o, B, H, W, arena, cap, path)) return SD_FAIL;
    *cur = move_down(arena, cur_mark, o, n);
    return 0;
}

int vae_encode(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
               ModuleCaptures *captures, Arena *arena) {
    if (B < 1 || H < 1 || W < 1) return sd_errorf("vae_encode: bad sizes B=%d H=%d W=%d", B, H, W);
    const size_t mark0 = arena_mark(arena);
    const int Z = 2 * v->latent_channels, n = v->n_blocks;
    ModuleCaptures *cap = captures;
    char path[96] = "";
    int rc = SD_FAIL;
    int C = v->block_out_channels[0];

    float *cur = nn_alloc(arena, (int64_t)B * C * H * W);
    if (!cur || nn_conv2d(&v->conv_in, image, B, H, W, cur)) goto done;
    if (captures_offer(cap, "encoder.conv_in", NULL, cur, 4, (int[4]){B, C, H, W})) goto done;
    for (int i = 0; i < n; i++) {
        const VaeDownBlock *blk = &v->down_blocks[i];
        for (int j = 0; j < blk->num_layers; j++) {
            if (cap) snprintf(path, sizeof(path), "encoder.down_blocks.%d.resnets.%d", i, j);
            if (resnet_step(&blk->resnets[j], &cur, mark0, B, H, W, arena, cap, path)) goto done;
            C = blk->resnets[j].out_channels;
        }
        if (blk->has_downsampler) {
            int Ho, Wo;
            downsample_out_size(&blk->downsampler, H, W, &Ho, &Wo);
            const int64_t cnt = (int64_t)B * C * Ho * Wo;
            float *o = nn_alloc(arena, cnt);
            if (!o || downsample_forward(&blk->downsampler, cur, o, B, H, W)) goto done;
            cur = move_down(arena, mark0, o, cnt);
            H = Ho;
            W = Wo;
            if (cap) snprintf(path, sizeof(path), "encoder.down_blocks.%d.downsamplers.0", i);
            if (captures_offer(cap, path, NULL, cur, 4, (int[4]){B, C, H, W})) goto done;
        }
        if (cap) snprintf(path, sizeof(path), "encoder.down_blocks.%d", i);
        if (captures_offer(cap, path, NULL, cur, 4, (int[4]){B, C, H, W})) goto done;
    }
    if (resnet_step(&v->mid_resnets[0], &cur, mark0, B, H, W, arena, cap, "encoder.mid_block.resnets.0")) goto done;
    if (mid_attention_forward(v, cur, B, C, H * W, arena)) goto done;
    if (captures_offer(cap, "encoder.mid_block.attentions.0", NULL, cur, 4, (int[4]){B, C, H, W})) goto done;
    if (resnet_step(&v->mid_resnets[1], &cur, mark0, B, H, W, arena, cap, "encoder.mid_block.resnets.1")) goto done;
    if (captures_offer(cap, "encoder.mid_block", NULL, cur, 4, (int[4]){B, C, H, W})) goto done;
    {
        // conv_out(silu(conv_norm_out(x))), then quant_conv
        const int64_t cnt = (int64_t)B * C * H * W, zc = (int64_t)B * Z * H * W;
        float *t = nn_alloc(arena, cnt);
        float *m = t ? nn_alloc(arena, zc) : NULL;
        float *q = m ? nn_alloc(arena, zc) : NULL;
        if (!q) goto done;
        nn_groupnorm_silu(&v->conv_norm_out, cur, t, NULL, B, H * W);
        if (nn_conv2d(&v->conv_out, t, B, H, W, m)) goto done;
        if (captures_offer(cap, "encoder.conv_out", NULL, m, 4, (int[4]){B, Z, H, W})) goto done;
        if (captures_offer(cap, "encoder", NULL, m, 4, (int[4]){B, Z, H, W})) goto done;
        if (nn_conv2d(&v->quant_conv, m, B, H, W, q)) goto done;
        if (captures_offer(cap, "quant_conv", NULL, q, 4, (int[4]){B, Z, H, W})) goto done;
        // mean, logvar = torch.chunk(moments, 2, dim=1); logvar = clamp(logvar, -30, 20)
        const int64_t half = (int64_t)v->latent_channels * H * W;
        for (int b = 0; b < B; b++) {
            const float *qb = q + (int64_t)b * 2 * half;
            memcpy(mean + (int64_t)b * half, qb, (size_t)half * sizeof(float));
            if (!logvar) continue;
            float *lb = logvar + (int64_t)b * half;
            for (int64_t i = 0; i < half; i++) {
                float x = qb[half + i];
                lb[i] = x < -30.0f ? -30.0f : x > 20.0f ? 20.0f : x;
            }
        }
    }
    rc = captures_check_filled(cap, "VAE encoder");
done:
    arena_end(arena, mark0);
    return rc;
}

int vae_encode_run(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
                   ModuleCaptures *captures) {
    Arena arena = {0};
    int rc = vae_encode(v, image, B, H, W, mean, logvar, captures, &arena);
    arena_free(&arena);
    return rc;
}

// ---- latent ------------------------------------------------------------------------

float vae_normal(uint64_t seed, uint64_t i) {
    // Two independent uniforms in (0, 1] and [0, 1) from the counter, then Box-Muller (cos branch).
    uint64_t a = splitmix64(seed ^ splitmix64(2 * i)), b = splitmix64(seed ^ splitmix64(2 * i + 1));
    double u1 = ((double)(a >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(b >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void vae_latent(const float *mean, const float *logvar, int64_t n, float scaling_factor, int sample, uint64_t seed,
                float *z) {
    for (int64_t i = 0; i < n; i++) {
        float x = mean[i];
        if (sample) x = mean[i] + expf(0.5f * logvar[i]) * vae_normal(seed, (uint64_t)i);  // mean + std * eps
        z[i] = x * scaling_factor;
    }
}
