// Golden handler for module "head": a fuser + task head (GWFuserClassifier,
// LWFuserSegUPerNet, MoEFuserClassifier, ...) in evaluation mode on the case's
// feature pyramids. Compares output.logits and every capture the case holds:
//   capture.fused.<s>                          fused scale s (what the head receives)
//   capture.mixing_weights_softmax             gw: softmax of the mixing weights
//   capture.bottleneck_layers.<i>@t<T>         gw / lw: Phi output of stream i at timestep T
//   capture.gate.<s>                           lw: per-pixel gate weights (B, K, H, W)
//   capture.scale_moes.<s>.gate_network@t<T>   moe: pooled gate logits before / temperature
//   capture.moe.gate_probs|topk_indices|topk_active.<s>@t<T>
//   capture.decoder_head.1                     classifier: pooled features (B, P)
//   capture.psp_modules.<j>, capture.bottleneck, capture.lateral_convs.<i>,
//   capture.fpn_convs.<i>, capture.fpn_bottleneck, capture.conv_seg   UPerNet modules
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "golden/head_inputs.h"
#include "heads/head.h"

// Compares only when the case captured that tensor.
static void check_opt(GoldenCase *gc, const char *name, const float *got, int ndim, const int *shape, int *rc) {
    if (!golden_has(gc, name)) return;
    if (golden_check(gc, name, got, ndim, shape)) *rc = SD_FAIL;
}

static void check_cna(GoldenCase *gc, const char *name, const ConvNormActCache *c, int channels, int *rc) {
    int shape[4] = {c->B, channels, c->H, c->W};
    check_opt(gc, name, c->out.data, 4, shape, rc);
}

static void check_captures(GoldenCase *gc, HeadModel *m, int *rc) {
    const FeatureLayout *fl = &m->cfg.layout;
    const Fuser *f = &m->fuser;
    int S = fl->num_scales, T = fl->num_timesteps, B = f->B, P = m->cfg.fuser.projection_dim;
    char name[160];
    for (int s = 0; s < S; s++) {
        snprintf(name, sizeof(name), "capture.fused.%d", s);
        int shape[4] = {B, P, f->H[s], f->W[s]};
        check_opt(gc, name, f->fused[s].data, 4, shape, rc);
    }
    FuserKind kind = m->cfg.fuser.kind;
    if (kind == FUSER_GW) {
        int n = f->gw.num_calls;
        check_opt(gc, "capture.mixing_weights_softmax", f->gw.weights.data, 1, &n, rc);
    }
    if (kind == FUSER_GW || kind == FUSER_LW) {
        for (int s = 0; s < S; s++)
            for (int l = 0; l < fl->num_streams[s]; l++)
                for (int k = 0; k < T; k++) {
                    int idx = feature_layout_stream_index(fl, s, l);
                    snprintf(name, sizeof(name), "capture.bottleneck_layers.%d@t%d", idx, fl->timesteps[fl->ts_input[k]]);
                    const FBuf *out = kind == FUSER_GW
                                          ? &f->gw.outputs[k * f->gw.num_streams + idx]
                                          : &f->lw.outputs[T * feature_layout_stream_index(fl, s, 0) + k * fl->num_streams[s] + l];
                    int shape[4] = {B, P, f->H[s], f->W[s]};
                    check_opt(gc, name, out->data, 4, shape, rc);
                }
    }
    if (kind == FUSER_LW)
        for (int s = 0; s < S; s++) {
            snprintf(name, sizeof(name), "capture.gate.%d", s);
            int shape[4] = {B, T * fl->num_streams[s], f->H[s], f->W[s]};
            check_opt(gc, name, f->lw.gate[s].data, 4, shape, rc);
        }
    if (kind == FUSER_MOE) {
        int E = f->moe.num_experts;
        for (int s = 0; s < S; s++) {
            int K = f->moe.scales[s].top_k;
            for (int k = 0; k < T; k++) {
                const MoECall *cl = &f->moe.calls[s * T + k];
                int t = fl->timesteps[fl->ts_input[k]];
                int shape[2] = {B, E};
                snprintf(name, sizeof(name), "capture.scale_moes.%d.gate_network@t%d", s, t);
                check_opt(gc, name, cl->logits.data, 2, shape, rc);
                snprintf(name, sizeof(name), "capture.moe.gate_probs.%d@t%d", s, t);
                check_opt(gc, name, cl->probs.data, 2, shape, rc);
                float active = (float)cl->topk_active;
                snprintf(name, sizeof(name), "capture.moe.topk_active.%d@t%d", s, t);
                check_opt(gc, name, &active, 0, NULL, rc);
                snprintf(name, sizeof(name), "capture.moe.topk_indices.%d@t%d", s, t);
                if (cl->topk_active && golden_has(gc, name)) {
                    float idx[B * K];
                    for (int i = 0; i < B * K; i++) idx[i] = (float)cl->topk_idx.data[i];
                    int ishape[2] = {B, K};
                    check_opt(gc, name, idx, 2, ishape, rc);
                }
                if (gc->verbose) {
                    printf("      moe scale %d t%d: counter %lld -> %s", s, t, (long long)cl->step,
                           cl->topk_active ? "top-k" : "dense");
                    if (cl->topk_active)
                        for (int b = 0; b < B; b++) {
                            printf(" [");
                            for (int j = 0; j < K; j++) printf(j ? ", %d" : "%d", cl->topk_idx.data[b * K + j]);
                            printf("]");
                        }
                    printf("\n");
                }
            }
        }
        printf("    moe counters after the forward:");
        for (int s = 0; s < S; s++) printf(" %lld", (long long)f->moe.scales[s].global_step);
        printf("\n");
    }
    if (m->cfg.task == TASK_SEGMENTATION) {
        const UperHead *u = &m->uper;
        int ch = u->channels;
        for (int j = 0; j < u->num_pool; j++) {
            snprintf(name, sizeof(name), "capture.psp_modules.%d", j);
            check_cna(gc, name, &u->psp_c[j], ch, rc);
        }
        check_cna(gc, "capture.bottleneck", &u->bottleneck_c, ch, rc);
        for (int i = 0; i + 1 < S; i++) {
            snprintf(name, sizeof(name), "capture.lateral_convs.%d", i);
            check_cna(gc, name, &u->lateral_c[i], ch, rc);
            snprintf(name, sizeof(name), "capture.fpn_convs.%d", i);
            check_cna(gc, name, &u->fpn_c[i], ch, rc);
        }
        check_cna(gc, "capture.fpn_bottleneck", &u->fpnb_c, ch, rc);
        int shape[4] = {B, u->num_classes, u->H[0], u->W[0]};
        check_opt(gc, "capture.conv_seg", u->seg.data, 4, shape, rc);
    } else {
        int shape[2] = {B, m->cfg.projection_dim};
        check_opt(gc, "capture.decoder_head.1", m->linear.pooled.data, 2, shape, rc);
    }
}

int golden_head_inputs(GoldenCase *gc, const FeatureLayout *fl, FusionInput *in, Tensor *tensors) {
    memset(in, 0, sizeof(*in));
    int S = fl->num_scales;
    for (int i = 0; i < fl->num_timesteps; i++)
        for (int s = 0; s < S; s++) {
            char name[64];
            snprintf(name, sizeof(name), "input.feat.%d.%d", i, s);
            Tensor *t = &tensors[i * S + s];
            if (golden_load(gc, name, t)) return SD_FAIL;
            if (t->ndim != 4 || t->shape[1] != fl->scale_channels[s] || t->shape[3] != fl->width[s] ||
                (i + s > 0 && t->shape[0] != in->B))
                return sd_errorf("%s: shape (%d, %d, %d, %d), the layout wants (B, %d, H, %d)", name, t->shape[0],
                                 t->shape[1], t->shape[2], t->shape[3], fl->scale_channels[s], fl->width[s]);
            in->B = t->shape[0];
            in->H[s] = t->shape[2];
            in->W[s] = t->shape[3];
            in->C[s] = t->shape[1];
            in->feat[i][s] = t->data;
        }
    return 0;
}

int golden_case_head(GoldenCase *gc) {
    HeadConfig cfg;
    HeadModel model;
    Tensor feats[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    memset(feats, 0, sizeof(feats));
    memset(&model, 0, sizeof(model));
    int rc = SD_FAIL;
    FusionInput in;
    if (head_config_from_json_golden(&cfg, gc->config)) return sd_error_context("case.json config");
    if (head_model_init(&model, &cfg)) goto done;
    if (head_model_load_st(&model, &gc->weights)) goto done;
    if (golden_head_inputs(gc, &cfg.layout, &in, feats)) goto done;
    head_model_set_mode(&model, 0, 1);  // model.eval(), keeping every activation for the captures
    if (head_model_forward(&model, &in)) goto done;
    rc = 0;
    if (golden_check(gc, "output.logits", head_model_logits(&model), model.out_ndim, model.out_shape)) rc = SD_FAIL;
    check_captures(gc, &model, &rc);
    if (rc) rc = 0;  // mismatches are already counted as failures by golden_check
done:
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&feats[i]);
    head_model_free(&model);
    return rc;
}
