// Backward passes of the fusion modules (src/fusion): Phi, the global /
// localized / MoE / concat / single fusers. Each reads what its forward kept
// in the layer caches and the Fuser structs (a training forward, which keeps
// every call's activations), so it must run after that forward and before the
// next one, on the same parameter values.
//
// llm.c style: parameter gradients ACCUMULATE (+=) into Param->grad and set
// has_grad = 1 on every parameter that took part (call params_alloc_grads
// first; params_zero_grads before each step). Input gradients accumulate too;
// a NULL input gradient is not computed (the backbone is frozen, so training
// needs none; the finite-difference tests ask for them).
//
// What a parameter that did not take part keeps: has_grad = 0. That is an MoE
// expert no batch item chose in a top-k call of this forward (Adam then skips
// it, as torch does for a None gradient). The MoE call counters are not
// touched: the forward advanced them.
//
// Equations: at each function in fusion_backward.c / head_backward.c; the layer
// primitives: docs/training.md.
#ifndef SD_TRAIN_FUSION_BACKWARD_H
#define SD_TRAIN_FUSION_BACKWARD_H

#include "fusion/fuser.h"
#include "fusion/layers.h"
#include "fusion/phi.h"

// d loss / d features, laid out as FusionInput.feat: [position in save_timesteps][scale],
// each (B, C_s, H_s, W_s). A NULL entry (or a NULL FusionGrad) is not computed.
typedef struct {
    float *feat[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];
} FusionGrad;

// conv -> norm -> optional ReLU (a ConvNormAct with its cache of a training forward):
// given dout = d(c->out), accumulates the conv weight/bias and norm scale/shift
// gradients and dx += d(c->x) (dx may be NULL). GroupNorm and BatchNorm (batch statistics).
int cna_backward(ConvNormAct *l, const ConvNormActCache *c, const float *dout, float *dx);

// Phi (a stage of BottleneckBlocks): out = the Phi output of the call the cache
// belongs to, dout = d(out); dx += d(input) (may be NULL).
int phi_backward(const Phi *phi, const PhiCache *c, const float *out, const float *dout, float *dx);

// The whole fuser: dfused[s] = d loss / d f->fused[s] (B, P, H_s, W_s) of the
// last training forward; dfeat (may be NULL) receives d loss / d input features.
int fuser_backward(Fuser *f, const float *const *dfused, FusionGrad *dfeat);

// The fusers one by one (what fuser_backward dispatches to).
int gw_backward(GlobalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat);
int lw_backward(LocalFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                const float *const *dfused, FusionGrad *dfeat);
int moe_backward(MoEFuser *m, const FeatureLayout *fl, int B, const int *H, const int *W,
                 const float *const *dfused, FusionGrad *dfeat);
int concat_backward(ConcatFuser *c, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, FusionGrad *dfeat);
int single_backward(SingleFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, const FBuf *fused, FusionGrad *dfeat);

#endif
