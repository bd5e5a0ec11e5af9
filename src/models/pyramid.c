// The feature pyramid: one save step's module captures grouped by spatial size and concatenated on
// channels (see pyramid.h). Reference: SatDiFuser archs/ldm_extractor.py (collect_layers, collect_feats).
#include "models/pyramid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void feature_pyramid_free(FeaturePyramid *p) {
    if (p->feats)
        for (int i = 0; i < p->n_steps * p->n_scales; i++) tensor_free(&p->feats[i]);
    free(p->feats);
    for (int i = 0; i < p->n_layers; i++) free(p->layer_path[i]);
    if (p->noisy_latents)
        for (int i = 0; i < p->n_noisy; i++) tensor_free(&p->noisy_latents[i]);
    free(p->noisy_latents);
    tensor_free(&p->latent);
    memset(p, 0, sizeof(*p));
}

// The spatial size the modules of up_blocks[i] run at: the size of down
// level n_blocks - 1 - i, each down block's Downsample2D (3x3, stride 2,
// padding 1) mapping n to (n - 1) / 2 + 1.
static void up_block_size(const UNet *u, int i, int h, int w, int *bh, int *bw) {
    int level = u->n_blocks - 1 - i;
    for (int k = 0; k < level; k++)
        if (u->down_blocks[k].has_sampler) {
            h = (h - 1) / 2 + 1;
            w = (w - 1) / 2 + 1;
        }
    *bh = h;
    *bw = w;
}

// The layout of the pyramid: which capture goes to which scale, from the
// first set of captures (collect_layer_dims). Scales sorted by width, largest
// first; within a scale, the capture order.
int pyramid_layout(const UNet *u, const ModuleCaptures *cap, int h, int w, FeaturePyramid *p) {
    p->n_layers = cap->count;
    if (cap->count > PYRAMID_MAX_LAYERS) return sd_errorf("%d feature layers (at most %d)", cap->count, PYRAMID_MAX_LAYERS);
    int lh[PYRAMID_MAX_LAYERS], lw[PYRAMID_MAX_LAYERS];
    for (int k = 0; k < cap->count; k++) {
        const Tensor *t = &cap->items[k].value;
        const char *path = cap->items[k].path;
        int blk = -1;
        if (sscanf(path, "up_blocks.%d.", &blk) != 1 || blk < 0 || blk >= u->n_blocks)
            return sd_errorf("feature layer '%s' is not in up_blocks", path);
        up_block_size(u, blk, h, w, &lh[k], &lw[k]);
        if (t->ndim == 4) {
            if (t->shape[2] != lh[k] || t->shape[3] != lw[k])
                return sd_errorf("feature layer '%s' is %dx%d, expected %dx%d", path, t->shape[2], t->shape[3], lh[k], lw[k]);
            p->layer_channels[k] = t->shape[1];
        } else if (t->ndim == 3) {
            // attention output (B, h*w, C); the original takes w = sqrt(h*w) (square inputs only)
            if (t->shape[1] != lh[k] * lw[k])
                return sd_errorf("feature layer '%s' has %d positions, expected %dx%d", path, t->shape[1], lh[k], lw[k]);
            p->layer_channels[k] = t->shape[2];
        } else {
            return sd_errorf("feature layer '%s' has %d dims (expected 3 or 4)", path, t->ndim);
        }
        p->layer_path[k] = strdup(path);
        if (!p->layer_path[k]) return sd_errorf("out of memory");
    }
    // distinct widths, descending
    p->n_scales = 0;
    for (int k = 0; k < cap->count; k++) {
        int s = 0;
        while (s < p->n_scales && p->scale_w[s] != lw[k]) s++;
        if (s == p->n_scales) {
            if (p->n_scales == PYRAMID_MAX_SCALES) return sd_errorf("more than %d feature scales", PYRAMID_MAX_SCALES);
            p->scale_w[s] = lw[k];
            p->scale_h[s] = lh[k];
            p->scale_c[s] = 0;
            p->n_scales++;
        } else if (p->scale_h[s] != lh[k]) {
            return sd_errorf("feature layers of width %d have heights %d and %d", lw[k], p->scale_h[s], lh[k]);
        }
    }
    for (int a = 0; a < p->n_scales; a++)
        for (int b = a + 1; b < p->n_scales; b++)
            if (p->scale_w[b] > p->scale_w[a]) {
                int tw = p->scale_w[a], th = p->scale_h[a];
                p->scale_w[a] = p->scale_w[b], p->scale_h[a] = p->scale_h[b];
                p->scale_w[b] = tw, p->scale_h[b] = th;
            }
    for (int k = 0; k < cap->count; k++) {
        int s = 0;
        while (p->scale_w[s] != lw[k]) s++;
        p->layer_scale[k] = s;
        p->scale_c[s] += p->layer_channels[k];
    }
    return 0;
}

int pyramid_copy_layout(FeaturePyramid *dst, const FeaturePyramid *src) {
    dst->n_layers = src->n_layers;
    dst->n_scales = src->n_scales;
    memcpy(dst->scale_h, src->scale_h, sizeof(dst->scale_h));
    memcpy(dst->scale_w, src->scale_w, sizeof(dst->scale_w));
    memcpy(dst->scale_c, src->scale_c, sizeof(dst->scale_c));
    memcpy(dst->layer_scale, src->layer_scale, sizeof(dst->layer_scale));
    memcpy(dst->layer_channels, src->layer_channels, sizeof(dst->layer_channels));
    for (int k = 0; k < src->n_layers; k++)
        if (!(dst->layer_path[k] = strdup(src->layer_path[k]))) return sd_errorf("out of memory");
    return 0;
}

// Concatenates one save step's captures of batch element b (of captures made at batch B) into its
// scales: feats[slot * n_scales + s] (1, C_s, H_s, W_s).
int pyramid_fill(FeaturePyramid *p, const ModuleCaptures *cap, int slot, int b) {
    for (int s = 0; s < p->n_scales; s++) {
        Tensor *dst = &p->feats[slot * p->n_scales + s];
        int shape[4] = {1, p->scale_c[s], p->scale_h[s], p->scale_w[s]};
        if (tensor_alloc(dst, 4, shape, "feature pyramid")) return -1;
        int hw = p->scale_h[s] * p->scale_w[s], c0 = 0;
        for (int k = 0; k < p->n_layers; k++) {
            if (p->layer_scale[k] != s) continue;
            const Tensor *t = captures_get(cap, p->layer_path[k]);
            int C = p->layer_channels[k];
            if (!t || !t->data) return sd_errorf("feature layer '%s' was not captured", p->layer_path[k]);
            float *out = dst->data + (int64_t)c0 * hw;
            const float *src = t->data + (int64_t)b * C * hw;  // element b of (B, C, h, w) or (B, h*w, C)
            if (t->ndim == 4) {
                memcpy(out, src, (size_t)C * (size_t)hw * sizeof(float));
            } else {
                // (1, h*w, C) -> (1, C, h, w): reshape(B, h, w, C).permute(0, 3, 1, 2)
                for (int q = 0; q < hw; q++)
                    for (int c = 0; c < C; c++) out[(int64_t)c * hw + q] = src[(int64_t)q * C + c];
            }
            c0 += C;
        }
    }
    return 0;
}
