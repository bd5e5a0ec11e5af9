// Phi: the projection every fuser applies to a feature map, a Detectron2
// ResNet stage of BottleneckBlocks (archs/detectron2/resnet.py) with GroupNorm
// and convs without bias:
//
//   conv1 1x1  C   -> P/4, GN, ReLU
//   conv2 3x3  P/4 -> P/4 (pad 1), GN, ReLU
//   conv3 1x1  P/4 -> P, GN
//   shortcut   1x1 C -> P, GN    (only when C != P; identity otherwise)
//   out = ReLU(conv3 + shortcut)
//
// nn.Sequential(*ResNet.make_stage(BottleneckBlock, num_blocks, ...)): block 0
// maps C -> P, the next ones P -> P (identity shortcut). State dict names under
// a prefix X: X.<block>.conv1.weight, X.<block>.conv1.norm.weight/bias, ...,
// X.<block>.shortcut.weight, X.<block>.shortcut.norm.weight/bias.
#ifndef SD_FUSION_PHI_H
#define SD_FUSION_PHI_H

#include "fusion/layers.h"

#define PHI_MAX_BLOCKS 4

typedef struct {
    int in_channels, out_channels;
    ConvNormAct conv1, conv2, conv3;
    int has_shortcut;
    ConvNormAct shortcut;
} PhiBlock;

typedef struct {
    int in_channels, bottleneck_channels, out_channels, num_blocks;
    PhiBlock blocks[PHI_MAX_BLOCKS];
} Phi;

// What one call of phi_forward keeps for the backward.
typedef struct {
    const float *x;  // the input (B, in, H, W), kept alive by the caller
    int B, H, W;
    ConvNormActCache conv1[PHI_MAX_BLOCKS], conv2[PHI_MAX_BLOCKS], conv3[PHI_MAX_BLOCKS], shortcut[PHI_MAX_BLOCKS];
    FBuf block_out[PHI_MAX_BLOCKS];  // ReLU(conv3 + shortcut) of every block but the last (that one is `out`)
} PhiCache;

// Registers the stage's parameters under `prefix` (e.g. "bottleneck_layers.3").
int phi_init(Phi *phi, ParamSet *ps, const char *prefix, int in_channels, int out_channels, int num_blocks,
             int num_norm_groups);
// out (B, out_channels, H, W) = Phi(x (B, in_channels, H, W)). `out` must not
// alias x. Intermediates go to `cache` (the caller reuses one cache for many
// calls when it does not need them kept). training: also record the GroupNorm
// statistics for the backward (GroupNorm itself is the same in both modes).
int phi_forward(const Phi *phi, PhiCache *cache, const float *x, int B, int H, int W, float *out, int training);
// Its backward for the call `cache` belongs to (a training forward): out = that call's output,
// dout = d(out); accumulates the parameters' gradients and dx += d(x) (dx may be NULL).
int phi_backward(const Phi *phi, const PhiCache *cache, const float *out, const float *dout, float *dx);
void phi_cache_free(PhiCache *cache);
// Trainable floats of one Phi (for the shape / parameter-count checks).
int64_t phi_num_weights(const Phi *phi);

#endif
