// The small layers the fusion modules and heads are made of: a convolution,
// a normalisation (GroupNorm or BatchNorm) and their usual chain
// conv -> norm -> ReLU. Each layer has a forward that keeps, in a cache the
// caller owns, what its backward needs (llm.c style): the input pointer, the
// output before the norm, the norm statistics and the output.
#ifndef SD_FUSION_LAYERS_H
#define SD_FUSION_LAYERS_H

#include "core/tensor.h"
#include "fusion/params.h"

// nn.Conv2d with stride 1 and `pad` zero padding on every side.
typedef struct {
    int cin, cout, kernel, pad;
    Param *weight;  // (cout, cin, kernel, kernel)
    Param *bias;    // (cout), NULL for a conv without bias
} ConvLayer;

// Registers "<prefix>.weight" (and "<prefix>.bias" when has_bias).
int conv_layer_init(ConvLayer *l, ParamSet *ps, const char *prefix, int cin, int cout, int kernel, int pad,
                    int has_bias);
// y (B, cout, Ho, Wo) = conv(x (B, cin, H, W)) + bias; Ho = H + 2 pad - kernel + 1.
void conv_layer_forward(const ConvLayer *l, const float *x, int B, int H, int W, float *y);

typedef enum { NORM_GROUP = 1, NORM_BATCH = 2 } NormKind;

// nn.GroupNorm(groups, channels) or nn.BatchNorm2d(channels), eps 1e-5, affine.
typedef struct {
    NormKind kind;
    int channels, groups;  // groups: GroupNorm only
    float eps, momentum;   // momentum: BatchNorm running statistics (0.1)
    Param *weight, *bias;
    Param *running_mean, *running_var, *num_batches_tracked;  // BatchNorm only
} NormLayer;

// Registers "<prefix>.weight", "<prefix>.bias" (+ running_mean, running_var,
// num_batches_tracked for BatchNorm, in the state_dict's order).
int norm_layer_init(NormLayer *n, ParamSet *ps, const char *prefix, NormKind kind, int channels, int groups);
// y = norm(x), x and y (B, channels, HW). mean/rstd (may be NULL) receive the
// statistics used: GroupNorm (B * groups), BatchNorm (channels).
// BatchNorm: training -> batch statistics (biased variance), then the running
// statistics move by momentum towards the batch mean and the UNBIASED batch
// variance and num_batches_tracked += 1; eval -> running statistics.
int norm_layer_forward(NormLayer *n, const float *x, float *y, int B, int HW, int training, float *mean, float *rstd);

// conv -> norm -> optional ReLU: a Detectron2 Conv2d(norm=GN) (+ F.relu_), or
// an UPerNet nn.Sequential(Conv2d, SyncBatchNorm, ReLU).
typedef struct {
    ConvLayer conv;
    NormLayer norm;
    int relu;
} ConvNormAct;

typedef struct {
    const float *x;   // the input, kept alive by the caller (the backward needs it for dW)
    int B, H, W;      // input (= output) spatial size
    FBuf pre;         // conv output before the norm (B, cout, H, W)
    FBuf mean, rstd;  // the norm statistics (filled in training mode)
    FBuf out;         // after the norm and the activation (B, cout, H, W)
} ConvNormActCache;

// conv_prefix / norm_prefix name the two halves ("x.conv1" + "x.conv1.norm", or
// "psp_modules.0.1" + "psp_modules.0.2"). `pad` keeps the spatial size (kernel / 2).
int cna_init(ConvNormAct *l, ParamSet *ps, const char *conv_prefix, const char *norm_prefix, int cin, int cout,
             int kernel, int conv_bias, NormKind norm, int groups, int relu);
// The output is c->out.data.
int cna_forward(ConvNormAct *l, ConvNormActCache *c, const float *x, int B, int H, int W, int training);
// Its backward after a forward that kept c (training mode for BatchNorm's batch statistics): given
// dout = d(c->out), accumulates the conv weight/bias and the norm scale/shift gradients (Param->grad,
// has_grad = 1) and dx += d(c->x) (dx may be NULL):
//   dnorm = dout where out > 0 (if ReLU);  dpre = norm'(dnorm);  dW, db, dx from conv2d_backward(dpre)
int cna_backward(ConvNormAct *l, const ConvNormActCache *c, const float *dout, float *dx);
void cna_cache_free(ConvNormActCache *c);

// ---- helpers ---------------------------------------------------------------
// dst (B, c, HW) = src[:, c0:c0+c] of src (B, C, HW), and its backward: dsrc[:, c0:c0+c] += ddst.
void copy_channels(float *dst, const float *src, int B, int C, int c0, int c, int HW);
void copy_channels_backward(float *dsrc, const float *ddst, int B, int C, int c0, int c, int HW);
// dst[:, c0:c0+c] of dst (B, C, HW) = src (B, c, HW) (a piece of torch.cat on dim 1), and its
// backward: dsrc (B, c, HW) += ddst[:, c0:c0+c].
void paste_channels(float *dst, const float *src, int B, int C, int c0, int c, int HW);
void paste_channels_backward(float *dsrc, const float *ddst, int B, int C, int c0, int c, int HW);
// Per-sample bilinear resize of src (B, c, H, W) into the
// channels [c0, c0+c) of dst (B, C, Ho, Wo): F.interpolate then torch.cat.
void resize_into_channels(float *dst, const float *src, int B, int C, int c0, int c, int H, int W, int Ho, int Wo,
                          int align_corners);
// Softmax over dim 1 of x (B, K, HW) at every (sample, pixel), in place: y = softmax(x / temperature).
void softmax_dim1(float *x, int B, int K, int HW, float temperature);
// Its backward given its output y: dinp += y * (dout - sum_k dout_k y_k) / temperature.
void softmax_dim1_backward(float *dinp, const float *dout, const float *out, int B, int K, int HW, float temperature);
// nn.Dropout2d in training mode: channel (n, c) is kept with probability 1 - p and scaled by 1/(1-p):
// mask[n*C+c] = 0 when splitmix64_uniform(rng) < p, else 1/(1-p) (N*C draws in (n, c) order; PyTorch's
// generator is not reproduced); out = inp * mask (out may equal inp). p >= 1 zeroes everything.
void dropout2d_forward(float *out, float *mask, const float *inp, int N, int C, int HW, float p, uint64_t *rng);
// Its backward with the forward's mask: dinp += dout * mask.
void dropout2d_backward(float *dinp, const float *dout, const float *mask, int N, int C, int HW);
// sum_i a[i] b[i] in double, in index order.
double dot_f64(const float *a, const float *b, int64_t n);

#endif
