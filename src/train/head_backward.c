// Backward of the linear head, of UPerNet and of the whole model. See head_backward.h.
#include "train/head_backward.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"

static float *grad_of(Param *p) {
    if (!p || !p->grad) return NULL;
    p->has_grad = 1;
    return p->grad;
}

static float *zalloc(size_t n) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) sd_errorf("backward: out of memory (%zu floats)", n);
    return p;
}

// ---------------------------------------------------------------------------
// Linear classifier:  z = sum_s r_s (r_s = resize(fused[s]) to the largest scale),
// pooled = mean_HW z, logits = pooled W^T + b
//   dpooled, dW, db = linear'(dlogits);  dz = dpooled / HW0;  dfused[s] += resize'(dz) (or dz)

int linear_head_backward(LinearHead *h, const float *dlogits, float *const *dfused) {
    const int B = h->B, P = h->in_features, H0 = h->H[0], W0 = h->W[0], HW0 = H0 * W0;
    float *dpooled = zalloc((size_t)B * P), *dsum = zalloc((size_t)B * P * HW0);
    if (!dpooled || !dsum) { free(dpooled); free(dsum); return SD_FAIL; }
    linear_backward(dpooled, grad_of(h->weight), grad_of(h->bias), dlogits, h->pooled.data, h->weight->data, B, P,
                    h->num_classes);
    adaptive_avg_pool2d_backward(dsum, dpooled, B, P, H0, W0, 1, 1);
    for (int s = 0; s < h->num_scales; s++) {
        if (h->H[s] != H0 || h->W[s] != W0)
            resize_bilinear_backward(dfused[s], dsum, B, P, h->H[s], h->W[s], H0, W0, 0);
        else
            add_inplace(dfused[s], dsum, (int64_t)B * P * HW0);
    }
    free(dpooled);
    free(dsum);
    return 0;
}

// ---------------------------------------------------------------------------
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
    float *dseg = zalloc((size_t)B * nc * HW0), *df = zalloc((size_t)B * ch * HW0), *dfb = NULL;
    float *dfcat = zalloc((size_t)B * S * ch * HW0), *slice = zalloc((size_t)B * ch * (HW0 > HWt ? HW0 : HWt));
    float *dfpn = zalloc((size_t)B * ch * HW0), *dcat = zalloc((size_t)B * Ccat * HWt);
    if (!dseg || !df || !dfcat || !slice || !dfpn || !dcat) goto done;
    for (int i = 0; i < S; i++)
        if (!(dlat[i] = zalloc((size_t)B * ch * u->H[i] * u->W[i]))) goto done;

    // conv_seg and the final resize (always align_corners false)
    resize_bilinear_backward(dseg, dlogits, B, nc, H0, W0, u->out_h, u->out_w, 0);
    const int dropped = u->dropout_p > 0.0f;
    const float *feat = dropped ? u->dropped.data : u->fpnb_c.out.data;
    if (conv2d_backward(df, grad_of(u->conv_seg.weight), grad_of(u->conv_seg.bias), dseg, feat,
                        u->conv_seg.weight->data, B, ch, H0, W0, nc, conv_geometry(1, 1, 0)))
        goto done;
    dfb = df;
    if (dropped) {  // Dropout2d: the mask of the forward
        if (!(dfb = zalloc((size_t)B * ch * HW0))) goto done;
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
        float *dpsp = zalloc((size_t)B * ch * q * q), *dpooled = zalloc((size_t)B * P * q * q);
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

// ---------------------------------------------------------------------------

int head_model_backward_ex(HeadModel *m, const float *dlogits, FusionGrad *dfeat) {
    const HeadConfig *c = &m->cfg;
    Fuser *f = &m->fuser;
    const int S = c->layout.num_scales, B = f->B, P = c->fuser.projection_dim;
    if (!m->training)
        return sd_errorf("head_model_backward: the last forward was not a training forward "
                         "(head_model_set_mode(m, 1, ...) keeps what the backward needs)");
    if (B < 1) return sd_errorf("head_model_backward: no forward to differentiate");
    if (params_alloc_grads(&m->params)) return SD_FAIL;
    float *dfused[FUSION_MAX_SCALES] = {0};
    int rc = SD_FAIL;
    for (int s = 0; s < S; s++)
        if (!(dfused[s] = zalloc((size_t)B * P * f->H[s] * f->W[s]))) goto done;
    if (c->task == TASK_SEGMENTATION) {
        if (uper_head_backward(&m->uper, dlogits, dfused)) goto done;
    } else {
        if (linear_head_backward(&m->linear, dlogits, dfused)) goto done;
    }
    if (fuser_backward(f, (const float *const *)dfused, dfeat)) {
        sd_error_context("fusion backward");
        goto done;
    }
    rc = 0;
done:
    for (int s = 0; s < S; s++) free(dfused[s]);
    return rc;
}

int head_model_backward(HeadModel *m, const float *dlogits) { return head_model_backward_ex(m, dlogits, NULL); }
