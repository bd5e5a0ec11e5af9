// Mixture-of-experts fusion (MoEWeightedFuser + MOEWeightedPerScale).
//
// One MoE per scale, shared over timesteps; its input is the scale's whole
// concatenated feature map x (B, C_s, H, W). For each timestep (descending):
//
//   logits = AdaptiveAvgPool(gate_conv3x3(x))          (B, E)
//   z = logits / temperature                           temperature is learnt
//   global_step += 1                                   every call, training or not
//   global_step < warmup_steps:  out = sum_e softmax(z)[:, e] * expert_e(x)
//   otherwise (top-k):           (v, idx) = topk(z, k); w = softmax(v)
//                                out[b] = sum_j w[b, j] * expert_idx[b,j](x[b])
//   fused[s] = mean over timesteps of out
//
// The counter is a non-persistent buffer in the original: it is not saved with
// the weights, every scale has its own, and it starts from the configured
// value (0 in a fresh model). It counts calls, i.e. T per forward, evaluation
// forwards included: warmup_steps 300 with 3 timesteps ends after 100 forward
// passes. moe_counter "train_steps" (corrected) counts training forwards only
// (+1 after each), uses top-k once warmup_steps of them are done, and is saved
// with the weights. The load-balancing term of the original is computed there
// but never reaches the loss; it is not computed here.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"
#include "kernels/kernels.h"

int moe_init(MoEFuser *m, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    memset(m, 0, sizeof(*m));
    int E = cfg->num_experts;
    m->num_scales = fl->num_scales;
    m->num_timesteps = fl->num_timesteps;
    m->num_experts = E;
    for (int s = 0; s < fl->num_scales; s++) {
        MoEScale *ms = &m->scales[s];
        ms->in_channels = fl->scale_channels[s];
        ms->num_experts = E;
        ms->top_k = cfg->top_k;
        ms->warmup_steps = cfg->warmup_steps;
        ms->global_step = cfg->moe_global_step;
        ms->count_train_steps = cfg->moe_count_train_steps;
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "scale_moes.%d.temperature", s);
        ms->temperature = params_add(ps, PARAM_WEIGHT, cfg->gating_temperature, 0, NULL, "%s", prefix);
        if (!ms->temperature) return SD_FAIL;
        ms->experts = (Phi *)calloc((size_t)E, sizeof(Phi));
        if (!ms->experts) return sd_errorf("out of memory");
        for (int e = 0; e < E; e++) {
            snprintf(prefix, sizeof(prefix), "scale_moes.%d.experts.%d", s, e);
            if (phi_init(&ms->experts[e], ps, prefix, ms->in_channels, cfg->projection_dim, cfg->num_res_blocks,
                         cfg->num_norm_groups))
                return SD_FAIL;
        }
        snprintf(prefix, sizeof(prefix), "scale_moes.%d.gate_network.0", s);
        if (conv_layer_init(&ms->gate_conv, ps, prefix, ms->in_channels, E, 3, 1, 1)) return SD_FAIL;
    }
    m->num_calls = fl->num_scales * fl->num_timesteps;
    m->calls = (MoECall *)calloc((size_t)m->num_calls, sizeof(MoECall));
    m->kept_runs = (MoEExpertRun *)calloc((size_t)m->num_calls * E, sizeof(MoEExpertRun));
    m->shared_runs = (MoEExpertRun *)calloc((size_t)E, sizeof(MoEExpertRun));
    if (!m->calls || !m->kept_runs || !m->shared_runs) return sd_errorf("out of memory");
    return 0;
}

void moe_set_global_step(MoEFuser *m, int64_t step) {
    for (int s = 0; s < m->num_scales; s++) m->scales[s].global_step = step;
}

// Indices of the k largest of z[0..E) in descending order (torch.topk, sorted;
// on equal values the lower index first).
static void topk_desc(const float *z, int E, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= idx[i] == e;
            if (!taken && (best < 0 || z[e] > z[best])) best = e;
        }
        idx[j] = best;
    }
}

// One MOEWeightedPerScale.forward: out (B, P, H, W) for x (B, C, H, W).
static int moe_call(MoEFuser *m, MoEScale *ms, MoECall *cl, MoEExpertRun *runs, const float *x, int B, int H, int W,
                    float *out, int training) {
    int E = ms->num_experts, K = ms->top_k, C = ms->in_channels, HW = H * W;
    int P = ms->experts[0].out_channels;
    int64_t n_item = (int64_t)P * HW;
    cl->B = B;
    cl->runs = runs;
    // gate: 3x3 conv, global average pool, / temperature, softmax
    float *map = fbuf(&m->gate_map, (size_t)B * E * HW);
    float *logits = fbuf(&cl->logits, (size_t)B * E);
    float *probs = fbuf(&cl->probs, (size_t)B * E);
    int *idx = ibuf(&cl->topk_idx, (size_t)B * K);
    float *tw = fbuf(&cl->topk_w, (size_t)B * K);
    if (!map || !logits || !probs || !idx || !tw) return SD_FAIL;
    conv_layer_forward(&ms->gate_conv, x, B, H, W, map);
    adaptive_avg_pool2d(map, logits, B, E, H, W, 1, 1);
    float temp = ms->temperature->data[0];
    for (int i = 0; i < B * E; i++) probs[i] = logits[i] / temp;  // z, softmax'd below (kept tempered for top-k)
    // the counter: with torch.no_grad(): global_step += 1; then in_warmup = global_step < warmup_steps
    if (!ms->count_train_steps) ms->global_step += 1;
    cl->step = ms->global_step;
    cl->topk_active = !(ms->global_step < ms->warmup_steps);
    if (cl->topk_active) {
        for (int b = 0; b < B; b++) {
            const float *z = probs + (int64_t)b * E;
            topk_desc(z, E, K, idx + b * K);
            for (int j = 0; j < K; j++) tw[b * K + j] = z[idx[b * K + j]];
        }
        softmax_rows(tw, B, K);  // softmax over the k kept values
    }
    softmax_rows(probs, B, E);  // gating_probs (every call computes them)
    memset(out, 0, (size_t)B * n_item * sizeof(float));
    if (!cl->topk_active) {
        // dense: output += w_e * expert_e(x), every expert on the whole batch
        for (int e = 0; e < E; e++) {
            MoEExpertRun *r = &runs[e];
            int *items = ibuf(&r->items, (size_t)B);
            float *y = fbuf(&r->out, (size_t)B * n_item);
            if (!items || !y) return SD_FAIL;
            r->n = B;
            for (int b = 0; b < B; b++) items[b] = b;
            if (phi_forward(&ms->experts[e], &r->cache, x, B, H, W, y, training)) return SD_FAIL;
            for (int b = 0; b < B; b++) {
                float w = probs[b * E + e];
                float *o = out + b * n_item;
                const float *ye = y + b * n_item;
                for (int64_t i = 0; i < n_item; i++) o[i] += w * ye[i];
            }
        }
        return 0;
    }
    // top-k: each expert runs on the batch items that chose it (x[mask])
    for (int e = 0; e < E; e++) {
        MoEExpertRun *r = &runs[e];
        int *items = ibuf(&r->items, (size_t)B);
        if (!items) return SD_FAIL;
        r->n = 0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < K; j++)
                if (idx[b * K + j] == e) { items[r->n++] = b; break; }
        if (r->n == 0) continue;  // `if not mask.any(): continue`: the expert does not run
        float *xe = fbuf(&r->x, (size_t)r->n * C * HW);
        float *y = fbuf(&r->out, (size_t)r->n * n_item);
        if (!xe || !y) return SD_FAIL;
        for (int i = 0; i < r->n; i++)
            memcpy(xe + (int64_t)i * C * HW, x + (int64_t)items[i] * C * HW, (size_t)C * HW * sizeof(float));
        if (phi_forward(&ms->experts[e], &r->cache, xe, r->n, H, W, y, training)) return SD_FAIL;
        for (int i = 0; i < r->n; i++) {
            int b = items[i];
            float w = 0.0f;  // (gate_weights * (topk_indices == e)).sum(1)
            for (int j = 0; j < K; j++) w += idx[b * K + j] == e ? tw[b * K + j] : 0.0f;
            float *o = out + b * n_item;
            const float *ye = y + i * n_item;
            for (int64_t q = 0; q < n_item; q++) o[q] += ye[q] * w;
        }
    }
    return 0;
}

int moe_forward(MoEFuser *m, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training, int keep) {
    int T = fl->num_timesteps, B = in->B, E = m->num_experts;
    for (int s = 0; s < fl->num_scales; s++) {
        MoEScale *ms = &m->scales[s];
        int H = in->H[s], W = in->W[s];
        int64_t n_out = (int64_t)B * ms->experts[0].out_channels * H * W;
        float *out = fbuf(&m->call_out, (size_t)n_out);
        if (!out) return SD_FAIL;
        float *acc = fused[s].data;
        for (int k = 0; k < T; k++) {
            int call = s * T + k;
            MoEExpertRun *runs = keep ? &m->kept_runs[(size_t)call * E] : m->shared_runs;
            if (moe_call(m, ms, &m->calls[call], runs, in->feat[fl->ts_input[k]][s], B, H, W, out, training))
                return sd_error_context("moe scale %d, timestep %d", s, fl->timesteps[fl->ts_input[k]]);
            // torch.stack(t_fused_feats).mean(dim=0): sum over timesteps in order, then / T
            if (k == 0) memcpy(acc, out, (size_t)n_out * sizeof(float));
            else add_inplace(acc, out, n_out);
        }
        for (int64_t i = 0; i < n_out; i++) acc[i] /= (float)T;
        if (ms->count_train_steps && training) ms->global_step += 1;  // corrected: one per training step
    }
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
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
    float *dz = zalloc_floats((size_t)B * E), *dlogits = zalloc_floats((size_t)B * E);
    float *dmap = zalloc_floats((size_t)B * E * HW);
    float *xbuf = cl->topk_active ? zalloc_floats((size_t)B * C * HW) : NULL;
    float *dsel = NULL, *dy = NULL, *dxe = NULL;
    int rc = SD_FAIL;
    if (!dz || !dlogits || !dmap || (cl->topk_active && !xbuf)) goto done;
    const float *x = moe_call_input(cl, E, B, C, HW, xbuf);
    if (!x) goto done;
    if (!cl->topk_active) {
        const float *probs = cl->probs.data;
        float *dprobs = zalloc_floats((size_t)B * E);
        dy = zalloc_floats((size_t)B * n_item);
        if (!dprobs || !dy) { free(dprobs); goto done; }
        for (int e = 0; e < E; e++) {
            const MoEExpertRun *r = &cl->runs[e];
            const float *y = r->out.data;
            for (int b = 0; b < B; b++) {
                dprobs[b * E + e] = (float)dot_f64(dout + b * n_item, y + b * n_item, n_item);
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
        float *dtw = zalloc_floats((size_t)B * K);
        dsel = zalloc_floats((size_t)B * K);
        if (!dtw || !dsel) { free(dtw); goto done; }
        for (int e = 0; e < E; e++) {
            const MoEExpertRun *r = &cl->runs[e];
            if (r->n == 0) continue;  // the expert did not run: no gradient from this call
            const float *y = r->out.data;
            free(dy);
            dy = zalloc_floats((size_t)r->n * n_item);
            if (!dy) { free(dtw); goto done; }
            for (int i = 0; i < r->n; i++) {
                const int b = r->items.data[i];
                float w = 0.0f;  // (gate_weights * (topk_indices == e)).sum(1)
                for (int j = 0; j < K; j++)
                    if (idx[b * K + j] == e) {
                        w += tw[b * K + j];
                        dtw[b * K + j] += (float)dot_f64(dout + b * n_item, y + i * n_item, n_item);
                    }
                for (int64_t q = 0; q < n_item; q++) dy[i * n_item + q] = w * dout[b * n_item + q];
            }
            free(dxe);
            dxe = dx ? zalloc_floats((size_t)r->n * C * HW) : NULL;
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
    div_scalar_backward(dlogits, param_grad(ms->temperature), dz, cl->logits.data, ms->temperature->data[0],
                        (int64_t)B * E);
    adaptive_avg_pool2d_backward(dmap, dlogits, B, E, H, W, 1, 1);
    ConvLayer *gc = &ms->gate_conv;
    if (conv2d_backward(dx, param_grad(gc->weight), param_grad(gc->bias), dmap, x, gc->weight->data, B, C, H, W, E,
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
        float *dout = zalloc_floats((size_t)n_out);  // torch.stack(...).mean(0): each call gets dfused / T
        if (!dout) return SD_FAIL;
        for (int64_t i = 0; i < n_out; i++) dout[i] = dfused[s][i] / (float)T;
        for (int k = 0; k < T; k++) {
            const MoECall *cl = &m->calls[s * T + k];
            if (cl->B != B) { free(dout); return sd_errorf("moe backward: call %d saw batch %d, not %d", s * T + k, cl->B, B); }
            if (moe_call_backward(ms, cl, B, H[s], W[s], dout, fusion_grad_at(dfeat, fl, k, s))) {
                free(dout);
                return sd_error_context("moe backward, scale %d, timestep %d", s, fl->timesteps[fl->ts_input[k]]);
            }
        }
        free(dout);
    }
    return 0;
}

static void run_free(MoEExpertRun *r) {
    ibuf_free(&r->items);
    fbuf_free(&r->x);
    fbuf_free(&r->out);
    phi_cache_free(&r->cache);
}

void moe_free(MoEFuser *m) {
    for (int s = 0; s < m->num_scales; s++) free(m->scales[s].experts);
    if (m->calls)
        for (int i = 0; i < m->num_calls; i++) {
            fbuf_free(&m->calls[i].logits);
            fbuf_free(&m->calls[i].probs);
            ibuf_free(&m->calls[i].topk_idx);
            fbuf_free(&m->calls[i].topk_w);
        }
    if (m->kept_runs)
        for (int i = 0; i < m->num_calls * m->num_experts; i++) run_free(&m->kept_runs[i]);
    if (m->shared_runs)
        for (int e = 0; e < m->num_experts; e++) run_free(&m->shared_runs[e]);
    free(m->calls);
    free(m->kept_runs);
    free(m->shared_runs);
    fbuf_free(&m->gate_map);
    fbuf_free(&m->call_out);
    memset(m, 0, sizeof(*m));
}
