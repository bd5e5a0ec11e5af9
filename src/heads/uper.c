// UPerNet segmentation head. See uper.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "heads/uper.h"
#include "kernels/kernels.h"

// conv "<name>.0" (+ bias) and BatchNorm "<name>.1", as nn.Sequential(Conv2d, SyncBatchNorm, ReLU).
static int cbr_init(ConvNormAct *l, ParamSet *ps, const char *conv, const char *norm, int cin, int cout, int kernel) {
    return cna_init(l, ps, conv, norm, cin, cout, kernel, 1, NORM_BATCH, 0, 1);
}

int uper_head_init(UperHead *u, ParamSet *ps, int num_scales, int in_channels, int channels, int num_classes,
                   const int *pool_scales, int num_pool, int out_h, int out_w, int align_corners, float dropout_p) {
    memset(u, 0, sizeof(*u));
    if (num_scales < 1 || num_scales > FUSION_MAX_SCALES) return sd_errorf("upernet: %d scales", num_scales);
    if (channels < 1 || num_classes < 1 || out_h < 1 || out_w < 1)
        return sd_errorf("upernet: channels %d, num_classes %d, output_shape %dx%d", channels, num_classes, out_h, out_w);
    if (num_pool > num_scales) num_pool = num_scales;  // pool_scales[:num_scales]
    if (num_pool > UPER_MAX_POOL) return sd_errorf("upernet: %d pool scales, at most %d", num_pool, UPER_MAX_POOL);
    u->num_scales = num_scales;
    u->in_channels = in_channels;
    u->channels = channels;
    u->num_classes = num_classes;
    u->num_pool = num_pool;
    u->out_h = out_h;
    u->out_w = out_w;
    u->align_corners = align_corners;
    u->dropout_p = dropout_p;
    u->rng_state = 0x5D1F05E2ull;
    char conv[64], norm[64];
    for (int j = 0; j < num_pool; j++) {
        if (pool_scales[j] < 1) return sd_errorf("upernet: pool scale %d", pool_scales[j]);
        u->pool_scales[j] = pool_scales[j];
        snprintf(conv, sizeof(conv), "psp_modules.%d.1", j);
        snprintf(norm, sizeof(norm), "psp_modules.%d.2", j);
        if (cbr_init(&u->psp[j], ps, conv, norm, in_channels, channels, 1)) return SD_FAIL;
    }
    if (cbr_init(&u->bottleneck, ps, "bottleneck.0", "bottleneck.1", in_channels + num_pool * channels, channels, 3))
        return SD_FAIL;
    for (int i = 0; i + 1 < num_scales; i++) {
        snprintf(conv, sizeof(conv), "lateral_convs.%d.0", i);
        snprintf(norm, sizeof(norm), "lateral_convs.%d.1", i);
        if (cbr_init(&u->lateral[i], ps, conv, norm, in_channels, channels, 1)) return SD_FAIL;
    }
    for (int i = 0; i + 1 < num_scales; i++) {
        snprintf(conv, sizeof(conv), "fpn_convs.%d.0", i);
        snprintf(norm, sizeof(norm), "fpn_convs.%d.1", i);
        if (cbr_init(&u->fpn[i], ps, conv, norm, channels, channels, 3)) return SD_FAIL;
    }
    if (cbr_init(&u->fpn_bottleneck, ps, "fpn_bottleneck.0", "fpn_bottleneck.1", num_scales * channels, channels, 3))
        return SD_FAIL;
    return conv_layer_init(&u->conv_seg, ps, "conv_seg", channels, num_classes, 1, 0, 1);
}

int uper_head_forward(UperHead *u, const FBuf *fused, int B, const int *H, const int *W, int training) {
    int S = u->num_scales, P = u->in_channels, ch = u->channels, ac = u->align_corners;
    u->B = B;
    for (int s = 0; s < S; s++) { u->H[s] = H[s]; u->W[s] = W[s]; }

    // lateral convs on every scale but the last
    for (int i = 0; i + 1 < S; i++)
        if (cna_forward(&u->lateral[i], &u->lateral_c[i], fused[i].data, B, H[i], W[i], training))
            return SD_FAIL;

    // PPM on the smallest scale, concatenated with it, then the bottleneck
    const float *x = fused[S - 1].data;
    int Ht = H[S - 1], Wt = W[S - 1], Ccat = P + u->num_pool * ch;
    float *cat = fbuf(&u->psp_cat, (size_t)B * Ccat * Ht * Wt);
    if (!cat) return SD_FAIL;
    paste_channels(cat, x, B, Ccat, 0, P, Ht * Wt);
    for (int j = 0; j < u->num_pool; j++) {
        int q = u->pool_scales[j];
        float *pooled = fbuf(&u->pooled[j], (size_t)B * P * q * q);
        if (!pooled) return SD_FAIL;
        adaptive_avg_pool2d(x, pooled, B, P, Ht, Wt, q, q);
        if (cna_forward(&u->psp[j], &u->psp_c[j], pooled, B, q, q, training)) return SD_FAIL;
        resize_into_channels(cat, u->psp_c[j].out.data, B, Ccat, P + j * ch, ch, q, q, Ht, Wt, ac);
    }
    if (cna_forward(&u->bottleneck, &u->bottleneck_c, cat, B, Ht, Wt, training)) return SD_FAIL;

    // top-down path: lat_{i-1} = lateral_{i-1} + up(lat_i), from the top down
    const float *lat[FUSION_MAX_SCALES];
    lat[S - 1] = u->bottleneck_c.out.data;
    for (int i = S - 1; i > 0; i--) {
        int64_t n = (int64_t)B * ch * H[i - 1] * W[i - 1];
        float *dst = fbuf(&u->lat[i - 1], (size_t)n);
        float *up = fbuf(&u->up_tmp, (size_t)n);
        if (!dst || !up) return SD_FAIL;
        resize_bilinear(lat[i], up, B, ch, H[i], W[i], H[i - 1], W[i - 1], ac);
        const float *l = u->lateral_c[i - 1].out.data;
        for (int64_t k = 0; k < n; k++) dst[k] = l[k] + up[k];
        lat[i - 1] = dst;
    }

    // FPN convs, then everything resized to the largest scale and concatenated
    int H0 = H[0], W0 = W[0];
    float *fcat = fbuf(&u->fpn_cat, (size_t)B * S * ch * H0 * W0);
    if (!fcat) return SD_FAIL;
    for (int i = 0; i < S; i++) {
        const float *f = lat[i];
        if (i + 1 < S) {
            if (cna_forward(&u->fpn[i], &u->fpn_c[i], lat[i], B, H[i], W[i], training)) return SD_FAIL;
            f = u->fpn_c[i].out.data;
        }
        if (i == 0) paste_channels(fcat, f, B, S * ch, 0, ch, H0 * W0);
        else resize_into_channels(fcat, f, B, S * ch, i * ch, ch, H[i], W[i], H0, W0, ac);
    }
    if (cna_forward(&u->fpn_bottleneck, &u->fpnb_c, fcat, B, H0, W0, training)) return SD_FAIL;

    // Dropout2d (training only), conv_seg, resize to the output size
    const float *feat = u->fpnb_c.out.data;
    int64_t nf = (int64_t)B * ch * H0 * W0;
    if (training && u->dropout_p > 0.0f) {
        float *mask = fbuf(&u->drop_mask, (size_t)B * ch);
        float *d = fbuf(&u->dropped, (size_t)nf);
        if (!mask || !d) return SD_FAIL;
        dropout2d_forward(d, mask, feat, B, ch, H0 * W0, u->dropout_p, &u->rng_state);
        feat = d;
    }
    float *seg = fbuf(&u->seg, (size_t)B * u->num_classes * H0 * W0);
    float *logits = fbuf(&u->logits, (size_t)B * u->num_classes * u->out_h * u->out_w);
    if (!seg || !logits) return SD_FAIL;
    conv_layer_forward(&u->conv_seg, feat, B, H0, W0, seg);
    resize_bilinear(seg, logits, B, u->num_classes, H0, W0, u->out_h, u->out_w, 0);
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
// UPerNet, the forward (uper.h) walked backwards:
//   logits = resize(conv_seg(drop(f)))           dseg = resize'(dlogits); df = drop'(conv_seg'(dseg))
//   f = cna_fpnb(cat[fpn_0, up(fpn_1), ...])     dfcat = cna_fpnb'(df), split, up'
//   fpn_i = cna_fpn_i(lat_i) (i < S-1), fpn_{S-1} = top
//   lat_{i-1} = lateral_{i-1} + up(lat_i)        from i-1 = 0 up: dlateral_{i-1} = dlat_{i-1}, dlat_i += up'(dlat_{i-1})
//   top = cna_bottleneck(cat[x, up(psp_j(pool_j(x)))])   x = fused[S-1]
//   lateral_i = cna_lateral_i(fused[i])

int uper_head_backward(UperHead *u, const float *dlogits, float *const *dfused) {
    const int B = u->B, S = u->num_scales, ch = u->channels, P = u->in_channels, ac = u->align_corners;
    const int nc = u->num_classes, H0 = u->H[0], W0 = u->W[0], HW0 = H0 * W0;
    const int Ht = u->H[S - 1], Wt = u->W[S - 1], HWt = Ht * Wt, Ccat = P + u->num_pool * ch;
    int rc = SD_FAIL;
    float *dlat[FUSION_MAX_SCALES] = {0};
    float *dseg = zalloc_floats((size_t)B * nc * HW0), *df = zalloc_floats((size_t)B * ch * HW0), *dfb = NULL;
    float *dfcat = zalloc_floats((size_t)B * S * ch * HW0);
    float *slice = zalloc_floats((size_t)B * ch * (HW0 > HWt ? HW0 : HWt));
    float *dfpn = zalloc_floats((size_t)B * ch * HW0), *dcat = zalloc_floats((size_t)B * Ccat * HWt);
    if (!dseg || !df || !dfcat || !slice || !dfpn || !dcat) goto done;
    for (int i = 0; i < S; i++)
        if (!(dlat[i] = zalloc_floats((size_t)B * ch * u->H[i] * u->W[i]))) goto done;

    // conv_seg and the final resize (always align_corners false)
    resize_bilinear_backward(dseg, dlogits, B, nc, H0, W0, u->out_h, u->out_w, 0);
    const int dropped = u->dropout_p > 0.0f;
    const float *feat = dropped ? u->dropped.data : u->fpnb_c.out.data;
    if (conv2d_backward(df, param_grad(u->conv_seg.weight), param_grad(u->conv_seg.bias), dseg, feat,
                        u->conv_seg.weight->data, B, ch, H0, W0, nc, conv_geometry(1, 1, 0)))
        goto done;
    dfb = df;
    if (dropped) {  // Dropout2d: the mask of the forward
        if (!(dfb = zalloc_floats((size_t)B * ch * HW0))) goto done;
        dropout2d_backward(dfb, df, u->drop_mask.data, B, ch, HW0);
    }
    if (cna_backward(&u->fpn_bottleneck, &u->fpnb_c, dfb, dfcat)) goto done;

    // split the FPN concatenation; fpn convs back to the top-down sums
    for (int i = 0; i < S; i++) {
        const int HWi = u->H[i] * u->W[i];
        float *dfi = dfpn;
        memset(dfpn, 0, (size_t)B * ch * HWi * sizeof(float));
        if (i == 0) {
            copy_channels(dfpn, dfcat, B, S * ch, 0, ch, HW0);
        } else {
            copy_channels(slice, dfcat, B, S * ch, i * ch, ch, HW0);
            resize_bilinear_backward(dfpn, slice, B, ch, u->H[i], u->W[i], H0, W0, ac);
        }
        if (i + 1 < S) {
            if (cna_backward(&u->fpn[i], &u->fpn_c[i], dfi, dlat[i])) goto done;
        } else {
            add_inplace(dlat[i], dfi, (int64_t)B * ch * HWi);  // fpn_{S-1} is the PPM output itself
        }
    }
    // top-down adds, from the largest scale up; the laterals
    for (int i = 1; i < S; i++) {
        resize_bilinear_backward(dlat[i], dlat[i - 1], B, ch, u->H[i], u->W[i], u->H[i - 1], u->W[i - 1], ac);
        if (cna_backward(&u->lateral[i - 1], &u->lateral_c[i - 1], dlat[i - 1], dfused[i - 1])) goto done;
    }

    // PPM: the bottleneck, then its concatenation [x, up(psp_0), ...]
    if (cna_backward(&u->bottleneck, &u->bottleneck_c, dlat[S - 1], dcat)) goto done;
    float *dx = dfused[S - 1];
    paste_channels_backward(dx, dcat, B, Ccat, 0, P, HWt);
    for (int j = 0; j < u->num_pool; j++) {
        const int q = u->pool_scales[j];
        float *dpsp = zalloc_floats((size_t)B * ch * q * q), *dpooled = zalloc_floats((size_t)B * P * q * q);
        if (!dpsp || !dpooled) { free(dpsp); free(dpooled); goto done; }
        copy_channels(slice, dcat, B, Ccat, P + j * ch, ch, HWt);
        resize_bilinear_backward(dpsp, slice, B, ch, q, q, Ht, Wt, ac);
        int r = cna_backward(&u->psp[j], &u->psp_c[j], dpsp, dpooled);
        if (!r) adaptive_avg_pool2d_backward(dx, dpooled, B, P, Ht, Wt, q, q);
        free(dpsp);
        free(dpooled);
        if (r) goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < S; i++) free(dlat[i]);
    if (dfb != df) free(dfb);
    free(dseg);
    free(df);
    free(dfcat);
    free(slice);
    free(dfpn);
    free(dcat);
    return rc ? sd_error_context("upernet backward") : 0;
}

void uper_head_free(UperHead *u) {
    for (int j = 0; j < UPER_MAX_POOL; j++) {
        fbuf_free(&u->pooled[j]);
        cna_cache_free(&u->psp_c[j]);
    }
    for (int i = 0; i < FUSION_MAX_SCALES; i++) {
        cna_cache_free(&u->lateral_c[i]);
        cna_cache_free(&u->fpn_c[i]);
        fbuf_free(&u->lat[i]);
    }
    cna_cache_free(&u->bottleneck_c);
    cna_cache_free(&u->fpnb_c);
    fbuf_free(&u->psp_cat);
    fbuf_free(&u->up_tmp);
    fbuf_free(&u->fpn_cat);
    fbuf_free(&u->drop_mask);
    fbuf_free(&u->dropped);
    fbuf_free(&u->seg);
    fbuf_free(&u->logits);
}
