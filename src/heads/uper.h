// UPerNet segmentation head (SegUPerNetDecoderMixin, archs/segmenters.py, as in
// PANGAEA's pangaea/decoders/upernet.py). S fused scales x_0 (largest) .. x_{S-1}:
//
//   neck: identity (rescales 1, 1, 1, 1)
//   PPM on x_{S-1}: for each pool scale q (pool_scales cut to S):
//       p_q = ReLU(BN(conv1x1(AdaptiveAvgPool_q(x_{S-1}))))             "psp_modules.<j>.1/.2"
//   top = ReLU(BN(conv3x3(cat[x_{S-1}, up(p_q)...])))                    "bottleneck.0/.1"
//   lateral_i = ReLU(BN(conv1x1(x_i))), i < S-1                          "lateral_convs.<i>.0/.1"
//   top-down: lat_{S-1} = top; lat_{i-1} = lateral_{i-1} + up(lat_i)
//   fpn_i = ReLU(BN(conv3x3(lat_i))), i < S-1; fpn_{S-1} = top           "fpn_convs.<i>.0/.1"
//   f = ReLU(BN(conv3x3(cat[fpn_0, up(fpn_1), ..., up(fpn_{S-1})])))     "fpn_bottleneck.0/.1"
//   logits = bilinear(conv_seg(Dropout2d(f)), output_shape)              "conv_seg" 1x1 with bias
//
// Every conv has a bias; channels (512 in the original) everywhere; "up" is a
// bilinear resize with align_corners (false); the final resize is always
// align_corners false. BatchNorm (SyncBatchNorm on one device = BatchNorm2d):
// batch statistics + running-statistics update in training, running
// statistics in evaluation. Dropout2d(p) zeroes whole channels in training.
#ifndef SD_HEADS_UPER_H
#define SD_HEADS_UPER_H

#include <stdint.h>

#include "fusion/fuser.h"
#include "fusion/layers.h"

#define UPER_MAX_POOL 8

typedef struct {
    int num_scales, in_channels, channels, num_classes;
    int num_pool, pool_scales[UPER_MAX_POOL];
    int out_h, out_w, align_corners;
    float dropout_p;
    uint64_t rng_state;                          // Dropout2d masks (training only)
    ConvNormAct psp[UPER_MAX_POOL];
    ConvNormAct bottleneck;
    ConvNormAct lateral[FUSION_MAX_SCALES];      // S - 1 of them
    ConvNormAct fpn[FUSION_MAX_SCALES];          // S - 1 of them
    ConvNormAct fpn_bottleneck;
    ConvLayer conv_seg;
    // forward state (kept for the backward)
    int B, H[FUSION_MAX_SCALES], W[FUSION_MAX_SCALES];
    FBuf pooled[UPER_MAX_POOL];                  // AdaptiveAvgPool_q(x_{S-1}) (B, P, q, q)
    ConvNormActCache psp_c[UPER_MAX_POOL];
    FBuf psp_cat;                                // (B, P + num_pool * ch, H_{S-1}, W_{S-1})
    ConvNormActCache bottleneck_c;
    ConvNormActCache lateral_c[FUSION_MAX_SCALES];
    FBuf lat[FUSION_MAX_SCALES];                 // lat_i after the top-down add, i < S-1
    FBuf up_tmp;                                 // scratch for up(lat_i)
    ConvNormActCache fpn_c[FUSION_MAX_SCALES];
    FBuf fpn_cat;                                // (B, S * ch, H0, W0)
    ConvNormActCache fpnb_c;
    FBuf drop_mask;                              // (B * ch): 0 or 1 / (1 - p) (training with p > 0)
    FBuf dropped;                                // Dropout2d output (B, ch, H0, W0)
    FBuf seg;                                    // conv_seg output (B, classes, H0, W0)
    FBuf logits;                                 // (B, classes, out_h, out_w)
} UperHead;

// pool_scales / num_pool: as configured (cut to num_scales here).
int uper_head_init(UperHead *u, ParamSet *ps, int num_scales, int in_channels, int channels, int num_classes,
                   const int *pool_scales, int num_pool, int out_h, int out_w, int align_corners, float dropout_p);
// fused[s]: (B, in_channels, H[s], W[s]). Output: u->logits.
int uper_head_forward(UperHead *u, const FBuf *fused, int B, const int *H, const int *W, int training);
// Its backward after a training forward (BatchNorm batch statistics, the Dropout2d mask of that
// forward when p > 0): dlogits (B, classes, out_h, out_w) -> dfused[s] += (B, P, H_s, W_s); the
// parameters' gradients accumulate into Param->grad. Conventions: fuser_backward (fuser.h).
int uper_head_backward(UperHead *u, const float *dlogits, float *const *dfused);
void uper_head_free(UperHead *u);

#endif
