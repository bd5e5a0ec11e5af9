// Time embedding, ResnetBlock2D, Downsample2D, Upsample2D (see unet_blocks.h).
#include "models/unet_blocks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

// ---- time embedding --------------------------------------------------------

void timestep_embedding_sinusoidal(const float *t, int B, int dim, int flip_sin_to_cos, float freq_shift, float *emb) {
    int half = dim / 2;
    // The same float32 steps as diffusers: exponent = (-ln(10000) * i) / (half - shift), freq = exp(exponent).
    const float neg_log_period = (float)(-log(10000.0));
    const float denom = (float)half - freq_shift;
    for (int b = 0; b < B; b++) {
        float *e = emb + (int64_t)b * dim;
        for (int i = 0; i < half; i++) {
            float exponent = (neg_log_period * (float)i) / denom;
            float arg = t[b] * expf(exponent);
            float s = sinf(arg), c = cosf(arg);
            e[flip_sin_to_cos ? half + i : i] = s;
            e[flip_sin_to_cos ? i : half + i] = c;
        }
        if (dim % 2) e[dim - 1] = 0.0f;
    }
}

int timestep_embedding_load(NnWeights *w, TimestepEmbedding *te, const char *name, int in, int dim) {
    char buf[NN_NAME_MAX];
    snprintf(buf, sizeof(buf), "%s.linear_1", name);
    if (nn_linear_load(w, &te->linear_1, buf, in, dim, 1)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.linear_2", name);
    return nn_linear_load(w, &te->linear_2, buf, dim, dim, 1);
}

int timestep_embedding_forward(const TimestepEmbedding *te, const float *x, float *out, int B, Arena *arena) {
    size_t mark = arena_mark(arena);
    float *h = nn_alloc(arena, (int64_t)B * te->linear_1.out);
    if (!h) return SD_FAIL;
    int rc = nn_linear(&te->linear_1, x, h, B);
    if (!rc) silu_inplace(h, (int64_t)B * te->linear_1.out);
    if (!rc) rc = nn_linear(&te->linear_2, h, out, B);
    arena_reset(arena, mark);
    return rc;
}

// ---- ResnetBlock2D -----------------------------------------------------------

int resnet_block_load(NnWeights *w, ResnetBlock2D *r, const char *name, int in_channels, int out_channels,
                      int temb_channels, int groups, float eps, float output_scale_factor, int scale_shift) {
    char buf[NN_NAME_MAX];
    memset(r, 0, sizeof(*r));
    r->in_channels = in_channels;
    r->out_channels = out_channels;
    r->temb_channels = temb_channels;
    r->scale_shift = scale_shift;
    r->output_scale_factor = output_scale_factor;
    Conv2dGeometry g3 = conv_geometry(3, 1, 1);
    snprintf(buf, sizeof(buf), "%s.norm1", name);
    if (nn_groupnorm_load(w, &r->norm1, buf, in_channels, groups, eps)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.conv1", name);
    if (nn_conv2d_load(w, &r->conv1, buf, in_channels, out_channels, 3, g3, 1)) return SD_FAIL;
    if (temb_channels > 0) {
        snprintf(buf, sizeof(buf), "%s.time_emb_proj", name);
        if (nn_linear_load(w, &r->time_emb_proj, buf, temb_channels, scale_shift ? 2 * out_channels : out_channels, 1))
            return SD_FAIL;
    }
    snprintf(buf, sizeof(buf), "%s.norm2", name);
    if (nn_groupnorm_load(w, &r->norm2, buf, out_channels, groups, eps)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.conv2", name);
    if (nn_conv2d_load(w, &r->conv2, buf, out_channels, out_channels, 3, g3, 1)) return SD_FAIL;
    r->has_conv_shortcut = in_channels != out_channels;
    if (r->has_conv_shortcut) {
        snprintf(buf, sizeof(buf), "%s.conv_shortcut", name);
        if (nn_conv2d_load(w, &r->conv_shortcut, buf, in_channels, out_channels, 1, conv_geometry(1, 1, 0), 1))
            return SD_FAIL;
    }
    return 0;
}

int resnet_block_forward(const ResnetBlock2D *r, const float *x, const float *temb_silu, float *out, int B, int H,
                         int W, Arena *arena, ModuleCaptures *cap, const char *path) {
    const int Cin = r->in_channels, C = r->out_channels, HW = H * W;
    const int64_t n_out = (int64_t)B * C * HW;
    int shape[4] = {B, C, H, W};
    size_t mark0 = arena_mark(arena);
    int rc = SD_FAIL;

    // Time projection (B, C) or (B, 2C): time_emb_proj(silu(temb)).
    float *proj = NULL;
    if (r->temb_channels > 0) {
        if (!temb_silu) return sd_errorf("%s: this ResNet block needs a time embedding", path);
        proj = nn_alloc(arena, (int64_t)B * r->time_emb_proj.out);
        if (!proj) goto done;
        if (nn_linear(&r->time_emb_proj, temb_silu, proj, B)) goto done;
    }

    // h = conv1(silu(norm1(x)))
    float *h = nn_alloc(arena, n_out);
    if (!h) goto done;
    size_t mark1 = arena_mark(arena);
    float *t = nn_alloc(arena, (int64_t)B * Cin * HW);
    if (!t) goto done;
    nn_groupnorm_silu(&r->norm1, x, t, NULL, B, HW);
    if (nn_conv2d(&r->conv1, t, B, H, W, h)) goto done;
    arena_reset(arena, mark1);
    if (captures_offer(cap, path, "conv1", h, 4, shape)) goto done;

    if (!r->scale_shift) {
        // "default": h = silu(norm2(h + proj[:, :, None, None])), in one pass
        nn_groupnorm_silu(&r->norm2, h, h, proj, B, HW);
    } else {
        // "scale_shift": h = h * (1 + scale) + shift after norm2, (scale, shift) = chunk(proj, 2).
        nn_groupnorm(&r->norm2, h, h, B, HW);
        if (proj) {
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++) {
                    float *hc = h + ((int64_t)b * C + c) * HW;
                    float scale = proj[(int64_t)b * 2 * C + c], shift = proj[(int64_t)b * 2 * C + C + c];
                    for (int i = 0; i < HW; i++) hc[i] = hc[i] * (1.0f + scale) + shift;
                }
        }
        silu_inplace(h, n_out);
    }
    if (nn_conv2d(&r->conv2, h, B, H, W, out)) goto done;
    if (captures_offer(cap, path, "conv2", out, 4, shape)) goto done;

    // out = (shortcut(x) + out) / output_scale_factor
    const float *sc = x;
    if (r->has_conv_shortcut) {
        float *s = nn_alloc(arena, n_out);
        if (!s) goto done;
        if (nn_conv2d(&r->conv_shortcut, x, B, H, W, s)) goto done;
        sc = s;
    }
    const float osf = r->output_scale_factor;
    if (osf == 1.0f) {
        add_inplace(out, sc, n_out);
    } else {
        for (int64_t i = 0; i < n_out; i++) out[i] = (sc[i] + out[i]) / osf;
    }
    if (captures_offer(cap, path, NULL, out, 4, shape)) goto done;
    rc = 0;
done:
    arena_reset(arena, mark0);
    return rc;
}

// ---- Downsample2D / Upsample2D -------------------------------------------------

int downsample_load(NnWeights *w, Downsample2D *d, const char *name, int channels, int padding) {
    char buf[NN_NAME_MAX];
    d->channels = channels;
    Conv2dGeometry g = conv_geometry(3, 2, padding);
    if (padding == 0) {  // F.pad(x, (0, 1, 0, 1)): one zero column right, one zero row below
        g.pad_bottom = 1;
        g.pad_right = 1;
    }
    snprintf(buf, sizeof(buf), "%s.conv", name);
    return nn_conv2d_load(w, &d->conv, buf, channels, channels, 3, g, 1);
}

void downsample_out_size(const Downsample2D *d, int H, int W, int *Ho, int *Wo) {
    nn_conv2d_out_size(&d->conv, H, W, Ho, Wo);
}

int downsample_forward(const Downsample2D *d, const float *x, float *out, int B, int H, int W) {
    return nn_conv2d(&d->conv, x, B, H, W, out);
}

int upsample_load(NnWeights *w, Upsample2D *u, const char *name, int channels) {
    char buf[NN_NAME_MAX];
    u->channels = channels;
    snprintf(buf, sizeof(buf), "%s.conv", name);
    return nn_conv2d_load(w, &u->conv, buf, channels, channels, 3, conv_geometry(3, 1, 1), 1);
}

static int nearest_index(int dst, int in, int out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = (float)in / (float)out;
    int src = (int)floorf((float)dst * scale);
    return src < in - 1 ? src : in - 1;
}

void upsample_nearest_to(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo) {
    if (Ho == 2 * H && Wo == 2 * W) {
        upsample_nearest2x(x, y, N, C, H, W);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int ih = nearest_index(oh, H, Ho);
                for (int ow = 0; ow < Wo; ow++) o[(int64_t)oh * Wo + ow] = in[(int64_t)ih * W + nearest_index(ow, W, Wo)];
            }
        }
    }
}

int upsample_forward(const Upsample2D *u, const float *x, float *out, int B, int H, int W, int Ho, int Wo,
                     Arena *arena) {
    size_t mark = arena_mark(arena);
    float *t = nn_alloc(arena, (int64_t)B * u->channels * Ho * Wo);
    if (!t) return SD_FAIL;
    upsample_nearest_to(x, t, B, u->channels, H, W, Ho, Wo);
    int rc = nn_conv2d(&u->conv, t, B, Ho, Wo, out);
    arena_reset(arena, mark);
    return rc;
}
