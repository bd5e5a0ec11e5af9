// Global weighted fusion (GlobalWeightedFuser): one learnable scalar per
// (timestep, stream), a single softmax over all of them.
//
//   w = softmax(mixing_weights)                        (L * T), index ts_idx * L + stream
//   fused[s] = sum_{ts_idx} sum_{l in scale s} w[ts_idx * L + idx(s, l)] * Phi_idx(s,l)(x[ts][s][:, c_l])
//
// Timesteps are walked in descending order; the channel offset of each stream
// advances through the scale's concatenated channels.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"
#include "kernels/kernels.h"

int gw_init(GlobalFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    memset(g, 0, sizeof(*g));
    g->num_streams = feature_layout_total_streams(fl);
    if (fuser_stream_phis_init(&g->phis, fl, cfg, ps)) return SD_FAIL;
    int n = g->num_streams * fl->num_timesteps;
    g->mixing_weights = params_add(ps, PARAM_WEIGHT, 1.0f, 1, &n, "mixing_weights");  // torch.ones
    if (!g->mixing_weights) return SD_FAIL;
    g->num_calls = n;
    return fuser_calls_alloc(n, &g->inputs, &g->outputs, &g->caches);
}

int gw_forward(GlobalFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep) {
    int L = g->num_streams, T = fl->num_timesteps, B = in->B;
    float *w = fbuf(&g->weights, (size_t)L * T);
    if (!w) return SD_FAIL;
    memcpy(w, g->mixing_weights->data, (size_t)L * T * sizeof(float));
    softmax_rows(w, 1, L * T);
    for (int s = 0; s < fl->num_scales; s++) {
        int H = in->H[s], W = in->W[s], HW = H * W, P = g->phis[0].out_channels;
        int64_t n_out = (int64_t)B * P * HW;
        float *acc = fused[s].data;
        for (int k = 0; k < T; k++) {
            const float *x = in->feat[fl->ts_input[k]][s];
            int c0 = 0;
            for (int l = 0; l < fl->num_streams[s]; l++) {
                int c = fl->channels[s][l];
                int idx = feature_layout_stream_index(fl, s, l);
                int call = k * L + idx;  // = the weight index
                int slot = keep ? call : 0;
                float *xs = fbuf(&g->inputs[slot], (size_t)B * c * HW);
                float *y = fbuf(&g->outputs[slot], (size_t)n_out);
                if (!xs || !y) return SD_FAIL;
                copy_channels(xs, x, B, fl->scale_channels[s], c0, c, HW);
                if (phi_forward(&g->phis[idx], &g->caches[slot], xs, B, H, W, y, training)) return SD_FAIL;
                // scale_feat = w * Phi(x) for the first call, then scale_feat += w * Phi(x)
                float wi = w[call];
                if (k == 0 && l == 0)
                    for (int64_t i = 0; i < n_out; i++) acc[i] = wi * y[i];
                else
                    for (int64_t i = 0; i < n_out; i++) acc[i] += wi * y[i];
                c0 += c;  // the global fuser advances start_channel
            }
        }
    }
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
// Global weighted:  fused[s] = sum_{k, l} w[c] y_c,  w = softmax(mixing_weights), c = k L + idx(s, l)
//   dw[c] = <dfused[s], y_c>;  dy_c = w[c] dfused[s];  dmixing = softmax'(dw)

int gw_backward(GlobalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat) {
    const int L = g->num_streams, T = fl->num_timesteps, P = g->phis[0].out_channels;
    const float *w = g->weights.data;
    float *dw = zalloc_floats((size_t)L * T);
    if (!dw) return SD_FAIL;
    int rc = SD_FAIL;
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s];
        const int64_t n_out = (int64_t)B * P * HW;
        float *dy = zalloc_floats((size_t)n_out);
        if (!dy) goto done;
        for (int k = 0; k < T; k++) {
            float *dx_all = fusion_grad_at(dfeat, fl, k, s);
            int c0 = 0;
            for (int l = 0; l < fl->num_streams[s]; l++) {
                const int c = fl->channels[s][l], idx = feature_layout_stream_index(fl, s, l), call = k * L + idx;
                const float *y = g->outputs[call].data;
                dw[call] = (float)dot_f64(dfused[s], y, n_out);
                for (int64_t i = 0; i < n_out; i++) dy[i] = w[call] * dfused[s][i];
                float *dxs = dx_all ? zalloc_floats((size_t)B * c * HW) : NULL;
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
    softmax_backward(param_grad(g->mixing_weights), dw, w, 1, L * T);
    rc = 0;
done:
    free(dw);
    return rc;
}

void gw_free(GlobalFuser *g) {
    fuser_calls_free(g->num_calls, g->inputs, g->outputs, g->caches);
    free(g->phis);
    fbuf_free(&g->weights);
    memset(g, 0, sizeof(*g));
}
