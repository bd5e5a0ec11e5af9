// The linear classifier head (LinearClassifierDecoderMixin, archs/classifiers.py):
//
//   r_s = bilinear_resize(fused[s], size of fused[0])    (only when the size differs; align_corners false)
//   z = r_0 + r_1 + ... (python sum)                      (B, P, H0, W0)
//   pooled = AdaptiveAvgPool2d(1)(z).flatten(1)           (B, P)          = decoder_head.1
//   logits = pooled W^T + b                               (B, classes)    W, b = decoder_head.2
//
// Used for single-label (cross-entropy) and multi-label (BCE) classification alike.
#ifndef SD_HEADS_LINEAR_H
#define SD_HEADS_LINEAR_H

#include "fusion/fuser.h"
#include "fusion/params.h"

typedef struct {
    int in_features, num_classes;
    Param *weight;  // "decoder_head.2.weight" (classes, P)
    Param *bias;    // "decoder_head.2.bias" (classes)
    // forward state (kept for the backward)
    int B, num_scales, H[FUSION_MAX_SCALES], W[FUSION_MAX_SCALES];
    FBuf resized[FUSION_MAX_SCALES];  // r_s for s >= 1 when resized (unused when the size matches)
    FBuf sum;                         // z (B, P, H0, W0)
    FBuf pooled;                      // (B, P)
    FBuf logits;                      // (B, classes)
} LinearHead;

int linear_head_init(LinearHead *h, ParamSet *ps, int in_features, int num_classes);
// fused[s]: (B, in_features, H[s], W[s]). Output: h->logits.
int linear_head_forward(LinearHead *h, const FBuf *fused, int num_scales, int B, const int *H, const int *W);
// Its backward after that forward: dlogits (B, classes) -> dfused[s] += (B, P, H_s, W_s); the weight
// and bias gradients accumulate into Param->grad (has_grad = 1). Conventions: fuser_backward (fuser.h).
int linear_head_backward(LinearHead *h, const float *dlogits, float *const *dfused);
void linear_head_free(LinearHead *h);

#endif
