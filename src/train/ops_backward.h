// Backward passes of the layers the fusion modules and heads are built from,
// plus the training-mode forwards that save what a backward needs
// (GroupNorm/BatchNorm statistics, Dropout2d masks).
//
// Style of karpathy/llm.c: xxx_backward(dinp, dweight, dbias, dout, inp, weight, ..., shapes).
// Every gradient is ACCUMULATED (+=) into its buffer, so a caller can sum the
// contributions of several streams/timesteps/branches; zero the buffers first.
// Any gradient pointer may be NULL when that gradient is not wanted (a frozen
// input, a conv without bias). Layouts are NCHW, row-major, float32.
// Results do not depend on the thread count: each gradient element is reduced
// by one thread in a fixed order. Equations: docs/training.md.
#ifndef SD_OPS_BACKWARD_H
#define SD_OPS_BACKWARD_H

#include <stdint.h>

#include "kernels/kernels.h"

// ---- Softmax -----------------------------------------------------------------
// Softmax over the channel dim of (N,C,HW) (F.softmax(x, dim=1) per pixel), forward and backward.
void softmax_channels_forward(float *out, const float *inp, int N, int C, int HW);
void softmax_channels_backward(float *dinp, const float *dout, const float *out, int N, int C, int HW);

// ---- Dropout2d -----------------------------------------------------------------
// Seeded generator for the channel masks (splitmix64); PyTorch's generator is not reproduced.
typedef struct {
    uint64_t state;
} DropoutRng;
void dropout_rng_seed(DropoutRng *rng, uint64_t seed);
// Training-mode nn.Dropout2d: each (n,c) channel is kept with probability 1-p and scaled by 1/(1-p):
// mask[n*C+c] = 0 or 1/(1-p); out = inp * mask. p >= 1 zeroes everything; p <= 0 is the identity.
// Draws N*C numbers in (n, c) order. out may equal inp.
void dropout2d_forward(float *out, float *mask, const float *inp, int N, int C, int HW, float p, DropoutRng *rng);
void dropout2d_backward(float *dinp, const float *dout, const float *mask, int N, int C, int HW);

// ---- Concatenation along channels ------------------------------------------------
// out (N, sum(channels), HW) = cat(inps[k] (N, channels[k], HW), dim=1), and the split of its gradient:
// dinps[k] += the matching channel slice of dout (dinps[k] may be NULL).
void concat_channels_forward(float *out, const float *const *inps, const int *channels, int count, int N, int HW);
void concat_channels_backward(float *const *dinps, const float *dout, const int *channels, int count, int N,
                              int HW);

#endif
