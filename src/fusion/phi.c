// Phi, the Detectron2 BottleneckBlock stage. See phi.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/phi.h"
#include "kernels/kernels.h"

static int block_init(PhiBlock *b, ParamSet *ps, const char *prefix, int cin, int cb, int cout, int groups) {
    char conv[256], norm[256];
    memset(b, 0, sizeof(*b));
    b->in_channels = cin;
    b->out_channels = cout;
    // registration order = BottleneckBlock.__init__ order = state_dict order: shortcut, conv1, conv2, conv3
    b->has_shortcut = cin != cout;
    if (b->has_shortcut) {
        snprintf(conv, sizeof(conv), "%.200s.shortcut", prefix);
        snprintf(norm, sizeof(norm), "%.200s.shortcut.norm", prefix);
        if (cna_init(&b->shortcut, ps, conv, norm, cin, cout, 1, 0, NORM_GROUP, groups, 0)) return SD_FAIL;
    }
    snprintf(conv, sizeof(conv), "%.200s.conv1", prefix);
    snprintf(norm, sizeof(norm), "%.200s.conv1.norm", prefix);
    if (cna_init(&b->conv1, ps, conv, norm, cin, cb, 1, 0, NORM_GROUP, groups, 1)) return SD_FAIL;
    snprintf(conv, sizeof(conv), "%.200s.conv2", prefix);
    snprintf(norm, sizeof(norm), "%.200s.conv2.norm", prefix);
    if (cna_init(&b->conv2, ps, conv, norm, cb, cb, 3, 0, NORM_GROUP, groups, 1)) return SD_FAIL;
    snprintf(conv, sizeof(conv), "%.200s.conv3", prefix);
    snprintf(norm, sizeof(norm), "%.200s.conv3.norm", prefix);
    return cna_init(&b->conv3, ps, conv, norm, cb, cout, 1, 0, NORM_GROUP, groups, 0);
}

int phi_init(Phi *phi, ParamSet *ps, const char *prefix, int in_channels, int out_channels, int num_blocks,
             int num_norm_groups) {
    memset(phi, 0, sizeof(*phi));
    if (num_blocks < 1 || num_blocks > PHI_MAX_BLOCKS)
        return sd_errorf("%s: num_res_blocks %d, supported 1..%d", prefix, num_blocks, PHI_MAX_BLOCKS);
    if (out_channels < 4 || out_channels % 4 != 0)
        return sd_errorf("%s: projection_dim %d must be a positive multiple of 4", prefix, out_channels);
    phi->in_channels = in_channels;
    phi->bottleneck_channels = out_channels / 4;  // projection_dim // 4
    phi->out_channels = out_channels;
    phi->num_blocks = num_blocks;
    int cin = in_channels;
    for (int i = 0; i < num_blocks; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%d", prefix, i);
        if (block_init(&phi->blocks[i], ps, p, cin, phi->bottleneck_channels, out_channels, num_norm_groups))
            return SD_FAIL;
        cin = out_channels;  // make_stage: in_channels = out_channels after the first block
    }
    return 0;
}

// One BottleneckBlock: out = ReLU(GN(conv3(ReLU(GN(conv2(ReLU(GN(conv1(x)))))))) + shortcut(x)).
static int block_forward(const PhiBlock *blk, PhiCache *c, int i, const float *x, int B, int H, int W, float *out,
                         int training) {
    // GroupNorm computes the same in training and evaluation; `training` only
    // asks for its statistics (mean, rstd) to be recorded for the backward.
    PhiBlock *b = (PhiBlock *)blk;  // a GroupNorm forward does not modify the layer
    if (cna_forward(&b->conv1, &c->conv1[i], x, B, H, W, training)) return SD_FAIL;
    if (cna_forward(&b->conv2, &c->conv2[i], c->conv1[i].out.data, B, H, W, training)) return SD_FAIL;
    if (cna_forward(&b->conv3, &c->conv3[i], c->conv2[i].out.data, B, H, W, training)) return SD_FAIL;
    const float *shortcut = x;
    if (b->has_shortcut) {
        if (cna_forward(&b->shortcut, &c->shortcut[i], x, B, H, W, training)) return SD_FAIL;
        shortcut = c->shortcut[i].out.data;
    }
    int64_t n = (int64_t)B * b->out_channels * H * W;
    const float *branch = c->conv3[i].out.data;
    for (int64_t k = 0; k < n; k++) {
        float v = branch[k] + shortcut[k];  // out += shortcut; F.relu_(out)
        out[k] = v > 0.0f ? v : 0.0f;
    }
    return 0;
}

int phi_forward(const Phi *phi, PhiCache *cache, const float *x, int B, int H, int W, float *out, int training) {
    cache->x = x;
    cache->B = B;
    cache->H = H;
    cache->W = W;
    const float *in = x;
    for (int i = 0; i < phi->num_blocks; i++) {
        float *dst = out;
        if (i + 1 < phi->num_blocks) {
            dst = fbuf(&cache->block_out[i], (size_t)B * phi->out_channels * H * W);
            if (!dst) return SD_FAIL;
        }
        if (block_forward(&phi->blocks[i], cache, i, in, B, H, W, dst, training)) return SD_FAIL;
        in = dst;
    }
    return 0;
}

// ---- Backward ---------------------------------------------------------------------------
// One BottleneckBlock, out = ReLU(v), v = GN3(conv3(h2)) + shortcut(x):
//   dv = dout where out > 0
//   branch: dh2 = cna3'(dv), dh1 = cna2'(dh2), dx += cna1'(dh1)
//   shortcut: dx += cna_sc'(dv), or dx += dv for the identity

static int block_backward(PhiBlock *b, const PhiCache *c, int i, const float *out, const float *dout, float *dx) {
    const int B = c->B, HW = c->H * c->W, cb = b->conv1.conv.cout;
    const int64_t n = (int64_t)B * b->out_channels * HW;
    float *dv = zalloc_floats((size_t)n), *dh2 = zalloc_floats((size_t)B * cb * HW);
    float *dh1 = zalloc_floats((size_t)B * cb * HW);
    int rc = SD_FAIL;
    if (!dv || !dh2 || !dh1) goto done;
    relu_backward(dv, dout, out, n);
    if (cna_backward(&b->conv3, &c->conv3[i], dv, dh2)) goto done;
    if (cna_backward(&b->conv2, &c->conv2[i], dh2, dh1)) goto done;
    if (cna_backward(&b->conv1, &c->conv1[i], dh1, dx)) goto done;
    if (b->has_shortcut) {
        if (cna_backward(&b->shortcut, &c->shortcut[i], dv, dx)) goto done;
    } else if (dx) {
        add_inplace(dx, dv, n);
    }
    rc = 0;
done:
    free(dv);
    free(dh2);
    free(dh1);
    return rc;
}

int phi_backward(const Phi *phi, const PhiCache *c, const float *out, const float *dout, float *dx) {
    Phi *p = (Phi *)phi;  // only the parameters' gradients change
    const int64_t n = (int64_t)c->B * phi->out_channels * c->H * c->W;
    const float *dcur = dout;
    float *owned = NULL;  // d(input of block i) when i > 0: (B, P, H, W)
    for (int i = phi->num_blocks - 1; i >= 0; i--) {
        const float *bout = i + 1 == phi->num_blocks ? out : c->block_out[i].data;
        float *dprev = dx;
        if (i > 0) {
            dprev = zalloc_floats((size_t)n);
            if (!dprev) { free(owned); return SD_FAIL; }
        }
        int rc = block_backward(&p->blocks[i], c, i, bout, dcur, dprev);
        free(owned);
        owned = i > 0 ? dprev : NULL;
        if (rc) { free(owned); return SD_FAIL; }
        dcur = dprev;
    }
    free(owned);
    return 0;
}

void phi_cache_free(PhiCache *c) {
    for (int i = 0; i < PHI_MAX_BLOCKS; i++) {
        cna_cache_free(&c->conv1[i]);
        cna_cache_free(&c->conv2[i]);
        cna_cache_free(&c->conv3[i]);
        cna_cache_free(&c->shortcut[i]);
        fbuf_free(&c->block_out[i]);
    }
}

int64_t phi_num_weights(const Phi *phi) {
    int64_t n = 0;
    for (int i = 0; i < phi->num_blocks; i++) {
        const PhiBlock *b = &phi->blocks[i];
        const ConvNormAct *l[4] = {&b->conv1, &b->conv2, &b->conv3, b->has_shortcut ? &b->shortcut : NULL};
        for (int k = 0; k < 4; k++)
            if (l[k]) n += l[k]->conv.weight->numel + l[k]->norm.weight->numel + l[k]->norm.bias->numel;
    }
    return n;
}
