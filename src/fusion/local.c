// Localized weighted fusion (LocalWeightedFuser + LocalWeightedPerScale):
// per-pixel weights over the K = T x L_s projected maps of a scale.
//
//   y_K = Phi_l(x[ts][s][:, offset_l : offset_l + c_l])     K = ts_idx * L_s + l
//   m = mean_K y_K                                          (B, P, H, W)
//   g = softmax_K(gate_conv(m) / gating_tempature)          (B, K, H, W), 1x1 conv with bias
//   fused[s] = sum_K g[:, K] * y_K
//
// Released-code quirk (the default): LocalWeightedFuser.forward sets
// start_channel = 0 before the stream loop and never advances it, so
// offset_l = 0 for every stream: stream l's Phi reads the first c_l channels
// of the scale (with equal widths: the first stream, every time).
// lw_advance_channels = 1 reads each stream's own channels, as the global
// fuser does.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"
#include "kernels/kernels.h"

int lw_init(LocalFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    memset(g, 0, sizeof(*g));
    g->num_streams = feature_layout_total_streams(fl);
    g->temperature = cfg->gating_temperature;
    g->advance_channels = cfg->lw_advance_channels;
    if (fuser_stream_phis_init(&g->phis, fl, cfg, ps)) return SD_FAIL;
    for (int s = 0; s < fl->num_scales; s++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "gate_modules.%d.gate_conv", s);
        int K = fl->num_timesteps * fl->num_streams[s];
        if (conv_layer_init(&g->gate_conv[s], ps, prefix, cfg->projection_dim, K, 1, 0, 1)) return SD_FAIL;
    }
    g->num_calls = g->num_streams * fl->num_timesteps;
    return fuser_calls_alloc(g->num_calls, &g->inputs, &g->outputs, &g->caches);
}

int lw_stream_offset(const LocalFuser *g, const FeatureLayout *fl, int s, int l) {
    if (!g->advance_channels) return 0;  // start_channel = 0, never advanced
    int c0 = 0;
    for (int i = 0; i < l; i++) c0 += fl->channels[s][i];
    return c0;
}

int lw_forward(LocalFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep) {
    int T = fl->num_timesteps, B = in->B;
    for (int s = 0; s < fl->num_scales; s++) {
        int H = in->H[s], W = in->W[s], HW = H * W, Ls = fl->num_streams[s], K = T * Ls;
        int P = g->phis[0].out_channels;
        int64_t n_out = (int64_t)B * P * HW;
        int first_call = T * feature_layout_stream_index(fl, s, 0);
        // The K projected maps of the scale (kept: the mean and the weighted sum read them all).
        for (int k = 0; k < T; k++) {
            const float *x = in->feat[fl->ts_input[k]][s];
            for (int l = 0; l < Ls; l++) {
                int c = fl->channels[s][l];
                int call = first_call + k * Ls + l;
                int slot = keep ? call : 0;
                int off = lw_stream_offset(g, fl, s, l);
                float *xs = fbuf(&g->inputs[slot], (size_t)B * c * HW);
                float *y = fbuf(&g->outputs[call], (size_t)n_out);
                if (!xs || !y) return SD_FAIL;
                copy_channels(xs, x, B, fl->scale_channels[s], off, c, HW);
                int idx = feature_layout_stream_index(fl, s, l);
                if (phi_forward(&g->phis[idx], &g->caches[slot], xs, B, H, W, y, training)) return SD_FAIL;
            }
        }
        // m = feats.mean(dim=1): sum over K in order, then / K
        float *m = fbuf(&g->mean[s], (size_t)n_out);
        float *gate = fbuf(&g->gate[s], (size_t)B * K * HW);
        if (!m || !gate) return SD_FAIL;
        memcpy(m, g->outputs[first_call].data, (size_t)n_out * sizeof(float));
        for (int q = 1; q < K; q++) add_inplace(m, g->outputs[first_call + q].data, n_out);
        for (int64_t i = 0; i < n_out; i++) m[i] /= (float)K;
        // g = softmax over K of gate_conv(m) / temperature
        conv_layer_forward(&g->gate_conv[s], m, B, H, W, gate);
        softmax_dim1(gate, B, K, HW, g->temperature);
        // fused = sum_K g[:, K] * y_K
        float *acc = fused[s].data;
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int c = 0; c < P; c++) {
                float *a = acc + ((int64_t)b * P + c) * HW;
                for (int q = 0; q < K; q++) {
                    const float *y = g->outputs[first_call + q].data + ((int64_t)b * P + c) * HW;
                    const float *gq = gate + ((int64_t)b * K + q) * HW;
                    if (q == 0)
                        for (int p = 0; p < HW; p++) a[p] = gq[p] * y[p];
                    else
                        for (int p = 0; p < HW; p++) a[p] += gq[p] * y[p];
                }
            }
        }
    }
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
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
        float *dg = zalloc_floats((size_t)B * K * HW), *da = zalloc_floats((size_t)B * K * HW);
        float *dm = zalloc_floats((size_t)n_out), *dy = zalloc_floats((size_t)n_out);
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
        if (conv2d_backward(dm, param_grad(gc->weight), param_grad(gc->bias), da, g->mean[s].data, gc->weight->data,
                            B, P, H[s], W[s], K, conv_geometry(1, 1, 0)))
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
            float *dx_all = fusion_grad_at(dfeat, fl, k, s);
            float *dxs = dx_all ? zalloc_floats((size_t)B * c * HW) : NULL;
            if (dx_all && !dxs) goto scale_done;
            int r = phi_backward(&g->phis[idx], &g->caches[call], g->outputs[call].data, dy, dxs);
            if (!r && dxs)
                copy_channels_backward(dx_all, dxs, B, fl->scale_channels[s], lw_stream_offset(g, fl, s, l), c, HW);
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

void lw_free(LocalFuser *g) {
    fuser_calls_free(g->num_calls, g->inputs, g->outputs, g->caches);
    for (int s = 0; s < FUSION_MAX_SCALES; s++) {
        fbuf_free(&g->mean[s]);
        fbuf_free(&g->gate[s]);
    }
    free(g->phis);
    memset(g, 0, sizeof(*g));
}
