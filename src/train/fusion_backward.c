// Backward passes of Phi and the fusers. See fusion_backward.h; the layer
// backward primitives are in ops_backward.h. Every reduction below gives each
// output element to one thread (or runs serially) in a fixed order, so the
// gradients do not depend on the thread count.
#include "train/fusion_backward.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"

// The gradient buffer of a parameter that takes part in this backward: has_grad = 1
// ("grad is not None"). NULL when the parameter does not exist or has no buffer.
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

// sum_i a[i] b[i] in double, in index order.
static double dot(const float *a, const float *b, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc += (double)a[i] * b[i];
    return acc;
}

// ---------------------------------------------------------------------------
// conv -> norm -> ReLU
//
//   out = ReLU(norm(pre)), pre = conv(x)
//   dnorm = dout where out > 0;  dpre = norm_backward(dnorm);  dW, db, dx from conv2d_backward(dpre)

int cna_backward(ConvNormAct *l, const ConvNormActCache *c, const float *dout, float *dx) {
    const int B = c->B, H = c->H, W = c->W, HW = H * W, cout = l->conv.cout;
    const int64_t n = (int64_t)B * cout * HW;
    float *dpre = zalloc((size_t)n), *dnorm = NULL;
    if (!dpre) return SD_FAIL;
    const float *dn = dout;
    if (l->relu) {
        dnorm = zalloc((size_t)n);
        if (!dnorm) { free(dpre); return SD_FAIL; }
        relu_backward(dnorm, dout, c->out.data, n);
        dn = dnorm;
    }
    NormLayer *nl = &l->norm;
    if (nl->kind == NORM_GROUP)
        groupnorm_backward(dpre, grad_of(nl->weight), grad_of(nl->bias), dn, c->pre.data, c->mean.data, c->rstd.data,
                           nl->weight->data, B, cout, HW, nl->groups);
    else  // BatchNorm with the batch statistics of the training forward
        batchnorm_backward(dpre, grad_of(nl->weight), grad_of(nl->bias), dn, c->pre.data, c->mean.data, c->rstd.data,
                           nl->weight->data, B, cout, HW);
    free(dnorm);
    const ConvLayer *cv = &l->conv;
    int rc = conv2d_backward(dx, grad_of(cv->weight), grad_of(cv->bias), dpre, c->x, cv->weight->data, B, cv->cin, H,
                             W, cout, conv_geometry(cv->kernel, 1, cv->pad));
    free(dpre);
    return rc ? sd_error_context("backward of %s", cv->weight->name) : 0;
}

// ---------------------------------------------------------------------------
// Phi
//
// One BottleneckBlock, out = ReLU(v), v = GN3(conv3(h2)) + shortcut(x):
//   dv = dout where out > 0
//   branch: dh2 = cna3'(dv), dh1 = cna2'(dh2), dx += cna1'(dh1)
//   shortcut: dx += cna_sc'(dv), or dx += dv for the identity

static int block_backward(PhiBlock *b, const PhiCache *c, int i, const float *out, const float *dout, float *dx) {
    const int B = c->B, HW = c->H * c->W, cb = b->conv1.conv.cout;
    const int64_t n = (int64_t)B * b->out_channels * HW;
    float *dv = zalloc((size_t)n), *dh2 = zalloc((size_t)B * cb * HW), *dh1 = zalloc((size_t)B * cb * HW);
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
            dprev = zalloc((size_t)n);
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

// The d(input slice) buffer of a call when the caller wants feature gradients, else NULL.
static float *dfeat_of(FusionGrad *dfeat, const FeatureLayout *fl, int k, int s) {
    return dfeat ? dfeat->feat[fl->ts_input[k]][s] : NULL;
}

// ---------------------------------------------------------------------------
// Global weighted:  fused[s] = sum_{k, l} w[c] y_c,  w = softmax(mixing_weights), c = k L + idx(s, l)
//   dw[c] = <dfused[s], y_c>;  dy_c = w[c] dfused[s];  dmixing = softmax'(dw)

int gw_backward(GlobalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat) {
    const int L = g->num_streams, T = fl->num_timesteps, P = g->phis[0].out_channels;
    const float *w = g->weights.data;
    float *dw = zalloc((size_t)L * T);
    if (!dw) return SD_FAIL;
    int rc = SD_FAIL;
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s];
        const int64_t n_out = (int64_t)B * P * HW;
        float *dy = zalloc((size_t)n_out);
        if (!dy) goto done;
        for (int k = 0; k < T; k++) {
            float *dx_all = dfeat_of(dfeat, fl, k, s);
            int c0 = 0;
            for (int l = 0; l < fl->num_streams[s]; l++) {
                const int c = fl->channels[s][l], idx = feature_layout_stream_index(fl, s, l), call = k * L + idx;
                const float *y = g->outputs[call].data;
                dw[call] = (float)dot(dfused[s], y, n_out);
                for (int64_t i = 0; i < n_out; i++) dy[i] = w[call] * dfused[s][i];
                float *dxs = dx_all ? zalloc((size_t)B * c * HW) : NULL;
                if (dx_all && !dxs) { free(dy); goto done; }
                int r = phi_backward(&g->phis[idx], &g->caches[call], y, dy, dxs);
                if (!r && dxs) copy_channels_backward(dx_all, dxs, B, fl->scale_channels[s], c0, c, HW);
                free(dxs);
                if (r) { free(dy); goto done; }
                c0 += c;
            }
        }
        free(dy);
    }
    softmax_backward(grad_of(g->mixing_weights), dw, w, 1, L * T);
    rc = 0;
done:
    free(dw);
    return rc;
}

// ---------------------------------------------------------------------------
// Localized weighted, per scale (K = T L_s maps y_q):
//   m = mean_q y_q;  a = gate_conv(m);  g = softmax_q(a / tau);  fused = sum_q g_q y_q
//   dg_q = sum_c dfused y_q;  da = softmax'(dg) / tau;  dm, dW, db = gate_conv'(da)
//   dy_q = g_q dfused + dm / K

int lw_backward(LocalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat) {
    const int T = fl->num_timesteps, P = g->phis[0].out_channels;
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s], Ls = fl->num_streams[s], K = T * Ls;
        const int first_call = T * feature_layout_stream_index(fl, s, 0);
        const int64_t n_out = (int64_t)B * P * HW;
        const float *gate = g->gate[s].data, *df = dfused[s];
        float *dg = zalloc((size_t)B * K * HW), *da = zalloc((size_t)B * K * HW);
        float *dm = zalloc((size_t)n_out), *dy = zalloc((size_t)n_out);
        int rc = SD_FAIL;
        if (!dg || !da || !dm || !dy) goto scale_done;
        // dg[b, q, p] = sum_c dfused[b, c, p] y_q[b, c, p], summed over c in order in double. Pixels
        // run in chunks, the channels outside: rows are read contiguously (a loop over c inside, with
        // its stride of HW floats, hit one cache set per pixel: 2-3x the whole GW backward at 32x32).
        // Same sums in the same order, so the same bits.
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int q = 0; q < K; q++) {
                const float *y = g->outputs[first_call + q].data + (int64_t)b * P * HW;
                const float *d = df + (int64_t)b * P * HW;
                float *o = dg + ((int64_t)b * K + q) * HW;
                enum { CHUNK = 256 };
                double acc[CHUNK];
                for (int p0 = 0; p0 < HW; p0 += CHUNK) {
                    const int np = HW - p0 < CHUNK ? HW - p0 : CHUNK;
                    for (int j = 0; j < np; j++) acc[j] = 0.0;
                    for (int c = 0; c < P; c++) {
                        const float *dc = d + (int64_t)c * HW + p0, *yc = y + (int64_t)c * HW + p0;
                        for (int j = 0; j < np; j++) acc[j] += (double)dc[j] * yc[j];
                    }
                    for (int j = 0; j < np; j++) o[p0 + j] = (float)acc[j];
                }
            }
        }
        softmax_dim1_backward(da, dg, gate, B, K, HW, g->temperature);
        ConvLayer *gc = &g->gate_conv[s];
        if (conv2d_backward(dm, grad_of(gc->weight), grad_of(gc->bias), da, g->mean[s].data, gc->weight->data, B, P,
                            H[s], W[s], K, conv_geometry(1, 1, 0)))
            goto scale_done;
        for (int q = 0; q < K; q++) {
            const int k = q / Ls, l = q % Ls, call = first_call + q;
            const int c = fl->channels[s][l], idx = feature_layout_stream_index(fl, s, l);
            // dy_q = g_q dfused + dm / K
#pragma omp parallel for collapse(2) schedule(static)
            for (int b = 0; b < B; b++) {
                for (int ch = 0; ch < P; ch++) {
                    const int64_t o = ((int64_t)b * P + ch) * HW;
                    const float *gq = gate + ((int64_t)b * K + q) * HW;
                    for (int p = 0; p < HW; p++) dy[o + p] = gq[p] * df[o + p] + dm[o + p] / (float)K;
                }
            }
            float *dx_all = dfeat_of(dfeat, fl, k, s);
            float *dxs = dx_all ? zalloc((size_t)B * c * HW) : NULL;
            if (dx_all && !dxs) goto scale_done;
            int r = phi_backward(&g->phis[idx], &g->caches[call], g->outputs[call].data, dy, dxs);
            if (!r && dxs) copy_channels_backward(dx_all, dxs, B, fl->scale_channels[s], lw_stream_offset(g, fl, s, l), c, HW);
            free(dxs);
            if (r) goto scale_done;
        }
        rc = 0;
    scale_done:
        free(dg);
        free(da);
        free(dm);
        free(dy);
        if (rc) return SD_FAIL;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Mixture of experts, per scale and call (timestep k), x = the scale's features:
//   fused = mean_k out_k                              dout_k = dfused / T
//   z = logits / t, logits = pool(gate_conv(x))
//   dense:  out = sum_e p_e y_e, p = softmax(z)       dy_e = p_e dout; dp_e = <dout, y_e>; dz = softmax'(dp)
//   top-k:  out[b] = sum_j w_bj y_{idx_bj}[b], w = softmax(z[idx])
//           dy_e[b] = w_be dout[b]; dw_bj = <dout[b], y_{idx_bj}[b]>; dz[b, idx_bj] = softmax'(dw)_bj
//   dlogits = dz / t;  dt += -sum(dz logits) / t^2;  dmap = dlogits / HW;  gate_conv'(dmap)
// An expert no item chose in a top-k call gets nothing from that call.

// The call's input x (B, C, H, W): a dense call ran every expert on x itself; a
// top-k call kept each expert's gathered rows, and every item is in at least one.
static const float *moe_call_input(const MoECall *cl, int E, int B, int C, int HW, float *buf) {
    if (!cl->topk_active) return cl->runs[0].cache.x;
    for (int b = 0; b < B; b++) {
        int found = 0;
        for (int e = 0; e < E && !found; e++) {
            const MoEExpertRun *r = &cl->runs[e];
            for (int i = 0; i < r->n; i++)
                if (r->items.data[i] == b) {
                    memcpy(buf + (int64_t)b * C * HW, r->x.data + (int64_t)i * C * HW, (size_t)C * HW * sizeof(float));
                    found = 1;
                    break;
                }
        }
        if (!found) { sd_errorf("moe backward: batch item %d is in no expert's run", b); return NULL; }
    }
    return buf;
}

static int moe_call_backward(MoEScale *ms, const MoECall *cl, int B, int H, int W, const float *dout, float *dx) {
    const int E = ms->num_experts, K = ms->top_k, C = ms->in_channels, HW = H * W;
    const int P = ms->experts[0].out_channels;
    const int64_t n_item = (int64_t)P * HW;
    float *dz = zalloc((size_t)B * E), *dlogits = zalloc((size_t)B * E), *dmap = zalloc((size_t)B * E * HW);
    float *xbuf = cl->topk_active ? zalloc((size_t)B * C * HW) : NULL;
    float *dsel = NULL, *dy = NULL, *dxe = NULL;
    int rc = SD_FAIL;
    if (!dz || !dlogits || !dmap || (cl->topk_active && !xbuf)) goto done;
    const float *x = moe_call_input(cl, E, B, C, HW, xbuf);
    if (!x) goto done;
    if (!cl->topk_active) {
        const float *probs = cl->probs.data;
        float *dprobs = zalloc((size_t)B * E);
        dy = zalloc((size_t)B * n_item);
        if (!dprobs || !dy) { free(dprobs); goto done; }
        for (int e = 0; e < E; e++) {
            const MoEExpertRun *r = &cl->runs[e];
            const float *y = r->out.data;
            for (int b = 0; b < B; b++) {
                dprobs[b * E + e] = (float)dot(dout + b * n_item, y + b * n_item, n_item);
                const float pe = probs[b * E + e];
                for (int64_t i = 0; i < n_item; i++) dy[b * n_item + i] = pe * dout[b * n_item + i];
            }
            if (phi_backward(&ms->experts[e], &r->cache, y, dy, dx)) { free(dprobs); goto done; }
        }
        softmax_backward(dz, dprobs, probs, B, E);
        free(dprobs);
    } else {
        const int *idx = cl->topk_idx.data;
        const float *tw = cl->topk_w.data;
        float *dtw = zalloc((size_t)B * K);
        dsel = zalloc((size_t)B * K);
        if (!dtw || !dsel) { free(dtw); goto done; }
        for (int e = 0; e < E; e++) {
            const MoEExpertRun *r = &cl->runs[e];
            if (r->n == 0) continue;  // the expert did not run: no gradient from this call
            const float *y = r->out.data;
            free(dy);
            dy = zalloc((size_t)r->n * n_item);
            if (!dy) { free(dtw); goto done; }
            for (int i = 0; i < r->n; i++) {
                const int b = r->items.data[i];
                float w = 0.0f;  // (gate_weights * (topk_indices == e)).sum(1)
                for (int j = 0; j < K; j++)
                    if (idx[b * K + j] == e) {
                        w += tw[b * K + j];
                        dtw[b * K + j] += (float)dot(dout + b * n_item, y + i * n_item, n_item);
                    }
                for (int64_t q = 0; q < n_item; q++) dy[i * n_item + q] = w * dout[b * n_item + q];
            }
            free(dxe);
            dxe = dx ? zalloc((size_t)r->n * C * HW) : NULL;
            if (dx && !dxe) { free(dtw); goto done; }
            if (phi_backward(&ms->experts[e], &r->cache, y, dy, dxe)) { free(dtw); goto done; }
            for (int i = 0; dxe && i < r->n; i++)  // x[mask]: scatter the rows back
                add_inplace(dx + (int64_t)r->items.data[i] * C * HW, dxe + (int64_t)i * C * HW, (int64_t)C * HW);
        }
        softmax_backward(dsel, dtw, tw, B, K);
        free(dtw);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < K; j++) dz[b * E + idx[b * K + j]] += dsel[b * K + j];
    }
    // z = logits / t (the learnt temperature), logits = AdaptiveAvgPool(1)(gate_conv(x))
    div_scalar_backward(dlogits, grad_of(ms->temperature), dz, cl->logits.data, ms->temperature->data[0], (int64_t)B * E);
    adaptive_avg_pool2d_backward(dmap, dlogits, B, E, H, W, 1, 1);
    ConvLayer *gc = &ms->gate_conv;
    if (conv2d_backward(dx, grad_of(gc->weight), grad_of(gc->bias), dmap, x, gc->weight->data, B, C, H, W, E,
                        conv_geometry(gc->kernel, 1, gc->pad)))
        goto done;
    rc = 0;
done:
    free(dz);
    free(dlogits);
    free(dmap);
    free(xbuf);
    free(dsel);
    free(dy);
    free(dxe);
    return rc;
}

int moe_backward(MoEFuser *m, const FeatureLayout *fl, int B, const int *H, const int *W,
                 const float *const *dfused, FusionGrad *dfeat) {
    const int T = fl->num_timesteps;
    for (int s = 0; s < fl->num_scales; s++) {
        MoEScale *ms = &m->scales[s];
        const int64_t n_out = (int64_t)B * ms->experts[0].out_channels * H[s] * W[s];
        float *dout = zalloc((size_t)n_out);  // torch.stack(...).mean(0): each call gets dfused / T
        if (!dout) return SD_FAIL;
        for (int64_t i = 0; i < n_out; i++) dout[i] = dfused[s][i] / (float)T;
        for (int k = 0; k < T; k++) {
            const MoECall *cl = &m->calls[s * T + k];
            if (cl->B != B) { free(dout); return sd_errorf("moe backward: call %d saw batch %d, not %d", s * T + k, cl->B, B); }
            if (moe_call_backward(ms, cl, B, H[s], W[s], dout, dfeat_of(dfeat, fl, k, s))) {
                free(dout);
                return sd_error_context("moe backward, scale %d, timestep %d", s, fl->timesteps[fl->ts_input[k]]);
            }
        }
        free(dout);
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Concatenation baseline: fused[s] = conv1x1(cat_k x_k) + b; the input gradient splits by timestep.

int concat_backward(ConcatFuser *c, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, FusionGrad *dfeat) {
    const int T = fl->num_timesteps;
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s], Cs = fl->scale_channels[s];
        int want = 0;
        for (int k = 0; k < T; k++) want |= dfeat_of(dfeat, fl, k, s) != NULL;
        float *dcat = want ? zalloc((size_t)B * T * Cs * HW) : NULL;
        if (want && !dcat) return SD_FAIL;
        ConvLayer *pc = &c->proj[s];
        if (conv2d_backward(dcat, grad_of(pc->weight), grad_of(pc->bias), dfused[s], c->input[s].data,
                            pc->weight->data, B, T * Cs, H[s], W[s], pc->cout, conv_geometry(1, 1, 0))) {
            free(dcat);
            return SD_FAIL;
        }
        for (int k = 0; dcat && k < T; k++) {
            float *dx = dfeat_of(dfeat, fl, k, s);
            if (dx) paste_channels_backward(dx, dcat, B, T * Cs, k * Cs, Cs, HW);
        }
        free(dcat);
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Single-feature baseline: fused[s] = Phi_s(x[t][s][:, stream channels]).

int single_backward(SingleFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, const FBuf *fused, FusionGrad *dfeat) {
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s], l = g->stream[s], c = fl->channels[s][l];
        int c0 = 0;
        for (int i = 0; i < l; i++) c0 += fl->channels[s][i];
        float *dx_all = dfeat ? dfeat->feat[g->input_pos][s] : NULL;
        float *dxs = dx_all ? zalloc((size_t)B * c * HW) : NULL;
        if (dx_all && !dxs) return SD_FAIL;
        int r = phi_backward(&g->phis[s], &g->caches[s], fused[s].data, dfused[s], dxs);
        if (!r && dxs) copy_channels_backward(dx_all, dxs, B, fl->scale_channels[s], c0, c, HW);
        free(dxs);
        if (r) return SD_FAIL;
    }
    return 0;
}

// ---------------------------------------------------------------------------

int fuser_backward(Fuser *f, const float *const *dfused, FusionGrad *dfeat) {
    const FeatureLayout *fl = &f->layout;
    switch (f->cfg.kind) {
    case FUSER_GW: return gw_backward(&f->gw, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_LW: return lw_backward(&f->lw, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_MOE: return moe_backward(&f->moe, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_CONCAT: return concat_backward(&f->concat, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_SINGLE: return single_backward(&f->single, fl, f->B, f->H, f->W, dfused, f->fused, dfeat);
    }
    return sd_errorf("fuser backward: unknown fuser kind %d", (int)f->cfg.kind);
}
