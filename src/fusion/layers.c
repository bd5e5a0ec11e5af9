// Convolution, GroupNorm / BatchNorm and conv -> norm -> ReLU with caches. See layers.h.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "fusion/layers.h"
#include "kernels/kernels.h"

int conv_layer_init(ConvLayer *l, ParamSet *ps, const char *prefix, int cin, int cout, int kernel, int pad,
                    int has_bias) {
    memset(l, 0, sizeof(*l));
    if (cin <= 0 || cout <= 0 || kernel <= 0 || pad < 0)
        return sd_errorf("%s: invalid conv (in %d, out %d, kernel %d, pad %d)", prefix, cin, cout, kernel, pad);
    l->cin = cin;
    l->cout = cout;
    l->kernel = kernel;
    l->pad = pad;
    int wshape[4] = {cout, cin, kernel, kernel};
    l->weight = params_add(ps, PARAM_WEIGHT, 0.0f, 4, wshape, "%s.weight", prefix);
    if (!l->weight) return SD_FAIL;
    if (has_bias) {
        l->bias = params_add(ps, PARAM_WEIGHT, 0.0f, 1, &cout, "%s.bias", prefix);
        if (!l->bias) return SD_FAIL;
    }
    return 0;
}

void conv_layer_forward(const ConvLayer *l, const float *x, int B, int H, int W, float *y) {
    Conv2dGeometry g = conv_geometry(l->kernel, 1, l->pad);
    conv2d_forward(x, B, l->cin, H, W, l->weight->data, l->bias ? l->bias->data : NULL, l->cout, g, y);
}

int norm_layer_init(NormLayer *n, ParamSet *ps, const char *prefix, NormKind kind, int channels, int groups) {
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->channels = channels;
    n->groups = groups;
    n->eps = 1e-5f;
    n->momentum = 0.1f;
    if (kind == NORM_GROUP && (groups <= 0 || channels % groups != 0))
        return sd_errorf("%s: GroupNorm(%d, %d): channels must be a multiple of the group count", prefix, groups,
                         channels);
    n->weight = params_add(ps, PARAM_WEIGHT, 1.0f, 1, &channels, "%s.weight", prefix);
    n->bias = n->weight ? params_add(ps, PARAM_WEIGHT, 0.0f, 1, &channels, "%s.bias", prefix) : NULL;
    if (!n->bias) return SD_FAIL;
    if (kind == NORM_BATCH) {
        n->running_mean = params_add(ps, PARAM_BUFFER, 0.0f, 1, &channels, "%s.running_mean", prefix);
        n->running_var = n->running_mean ? params_add(ps, PARAM_BUFFER, 1.0f, 1, &channels, "%s.running_var", prefix)
                                         : NULL;
        n->num_batches_tracked =
            n->running_var ? params_add(ps, PARAM_COUNTER, 0.0f, 0, NULL, "%s.num_batches_tracked", prefix) : NULL;
        if (!n->num_batches_tracked) return SD_FAIL;
    }
    return 0;
}

// Per (sample, group) mean and 1/sqrt(var + eps), accumulated in double as the GroupNorm kernel does.
// BatchNorm in training mode: batch statistics over (B, HW) per channel.
static int batchnorm_train(NormLayer *n, const float *x, float *y, int B, int HW, float *mean, float *rstd) {
    int C = n->channels;
    int64_t count = (int64_t)B * HW;
    if (count < 2)
        return sd_errorf("%s: BatchNorm in training mode needs more than 1 value per channel (batch %d, %d pixels)",
                         n->weight->name, B, HW);
    float bmean[C], bvar[C];
    float m = n->momentum;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int b = 0; b < B; b++) {
            const float *xc = x + ((int64_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) sum += xc[i];
        }
        double mu = sum / (double)count;
        for (int b = 0; b < B; b++) {
            const float *xc = x + ((int64_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) { double d = xc[i] - mu; sq += d * d; }
        }
        double var = sq / (double)count;  // biased: used to normalise
        bmean[c] = (float)mu;
        bvar[c] = (float)var;
        if (mean) mean[c] = (float)mu;
        if (rstd) rstd[c] = (float)(1.0 / sqrt(var + n->eps));
        // running statistics move towards the unbiased variance
        double unbiased = sq / (double)(count - 1);
        n->running_mean->data[c] = (1.0f - m) * n->running_mean->data[c] + m * (float)mu;
        n->running_var->data[c] = (1.0f - m) * n->running_var->data[c] + m * (float)unbiased;
    }
    n->num_batches_tracked->counter += 1;
    batchnorm_forward_eval(x, y, bmean, bvar, n->weight->data, n->bias->data, B, C, HW, n->eps);
    return 0;
}

int norm_layer_forward(NormLayer *n, const float *x, float *y, int B, int HW, int training, float *mean, float *rstd) {
    if (n->kind == NORM_GROUP) {
        // the statistics kept for the backward are those the output was normalised with
        groupnorm_forward_stats(x, y, n->weight->data, n->bias->data, B, n->channels, HW, n->groups, n->eps, mean,
                                rstd);
        return 0;
    }
    if (training) return batchnorm_train(n, x, y, B, HW, mean, rstd);
    batchnorm_forward_eval(x, y, n->running_mean->data, n->running_var->data, n->weight->data, n->bias->data, B,
                           n->channels, HW, n->eps);
    if (mean && rstd)
        for (int c = 0; c < n->channels; c++) {
            mean[c] = n->running_mean->data[c];
            rstd[c] = 1.0f / sqrtf(n->running_var->data[c] + n->eps);
        }
    return 0;
}

int cna_init(ConvNormAct *l, ParamSet *ps, const char *conv_prefix, const char *norm_prefix, int cin, int cout,
             int kernel, int conv_bias, NormKind norm, int groups, int relu) {
    memset(l, 0, sizeof(*l));
    l->relu = relu;
    if (conv_layer_init(&l->conv, ps, conv_prefix, cin, cout, kernel, kernel / 2, conv_bias)) return SD_FAIL;
    return norm_layer_init(&l->norm, ps, norm_prefix, norm, cout, groups);
}

int cna_forward(ConvNormAct *l, ConvNormActCache *c, const float *x, int B, int H, int W, int training) {
    size_t n = (size_t)B * l->conv.cout * H * W;
    int nstat = l->norm.kind == NORM_GROUP ? B * l->norm.groups : l->norm.channels;
    float *pre = fbuf(&c->pre, n), *out = fbuf(&c->out, n);
    float *mean = fbuf(&c->mean, (size_t)nstat), *rstd = fbuf(&c->rstd, (size_t)nstat);
    if (!pre || !out || !mean || !rstd) return SD_FAIL;
    c->x = x;
    c->B = B;
    c->H = H;
    c->W = W;
    conv_layer_forward(&l->conv, x, B, H, W, pre);
    if (norm_layer_forward(&l->norm, pre, out, B, H * W, training, training ? mean : NULL, training ? rstd : NULL))
        return SD_FAIL;
    if (l->relu) relu_inplace(out, (int64_t)n);
    return 0;
}

// conv -> norm -> ReLU
//
//   out = ReLU(norm(pre)), pre = conv(x)
//   dnorm = dout where out > 0;  dpre = norm_backward(dnorm);  dW, db, dx from conv2d_backward(dpre)

int cna_backward(ConvNormAct *l, const ConvNormActCache *c, const float *dout, float *dx) {
    const int B = c->B, H = c->H, W = c->W, HW = H * W, cout = l->conv.cout;
    const int64_t n = (int64_t)B * cout * HW;
    float *dpre = zalloc_floats((size_t)n), *dnorm = NULL;
    if (!dpre) return SD_FAIL;
    const float *dn = dout;
    if (l->relu) {
        dnorm = zalloc_floats((size_t)n);
        if (!dnorm) { free(dpre); return SD_FAIL; }
        relu_backward(dnorm, dout, c->out.data, n);
        dn = dnorm;
    }
    NormLayer *nl = &l->norm;
    if (nl->kind == NORM_GROUP)
        groupnorm_backward(dpre, param_grad(nl->weight), param_grad(nl->bias), dn, c->pre.data, c->mean.data,
                           c->rstd.data, nl->weight->data, B, cout, HW, nl->groups);
    else  // BatchNorm with the batch statistics of the training forward
        batchnorm_backward(dpre, param_grad(nl->weight), param_grad(nl->bias), dn, c->pre.data, c->mean.data,
                           c->rstd.data, nl->weight->data, B, cout, HW);
    free(dnorm);
    const ConvLayer *cv = &l->conv;
    int rc = conv2d_backward(dx, param_grad(cv->weight), param_grad(cv->bias), dpre, c->x, cv->weight->data, B,
                             cv->cin, H, W, cout, conv_geometry(cv->kernel, 1, cv->pad));
    free(dpre);
    return rc ? sd_error_context("backward of %s", cv->weight->name) : 0;
}

void cna_cache_free(ConvNormActCache *c) {
    fbuf_free(&c->pre);
    fbuf_free(&c->mean);
    fbuf_free(&c->rstd);
    fbuf_free(&c->out);
    c->x = NULL;
}

// ---------------------------------------------------------------------------

void copy_channels(float *dst, const float *src, int B, int C, int c0, int c, int HW) {
    for (int b = 0; b < B; b++)
        memcpy(dst + (int64_t)b * c * HW, src + ((int64_t)b * C + c0) * HW, (size_t)c * HW * sizeof(float));
}

void paste_channels(float *dst, const float *src, int B, int C, int c0, int c, int HW) {
    for (int b = 0; b < B; b++)
        memcpy(dst + ((int64_t)b * C + c0) * HW, src + (int64_t)b * c * HW, (size_t)c * HW * sizeof(float));
}

void resize_into_channels(float *dst, const float *src, int B, int C, int c0, int c, int H, int W, int Ho, int Wo,
                          int align_corners) {
    for (int b = 0; b < B; b++)
        resize_bilinear(src + (int64_t)b * c * H * W, dst + ((int64_t)b * C + c0) * Ho * Wo, 1, c, H, W, Ho, Wo, align_corners);
}

void softmax_dim1(float *x, int B, int K, int HW, float temperature) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int p = 0; p < HW; p++) {
            float *xp = x + (int64_t)b * K * HW + p;
            float mx = -INFINITY;
            for (int k = 0; k < K; k++) {
                xp[(int64_t)k * HW] = xp[(int64_t)k * HW] / temperature;
                if (xp[(int64_t)k * HW] > mx) mx = xp[(int64_t)k * HW];
            }
            float sum = 0.0f;
            for (int k = 0; k < K; k++) {
                float e = expf(xp[(int64_t)k * HW] - mx);
                xp[(int64_t)k * HW] = e;
                sum += e;
            }
            for (int k = 0; k < K; k++) xp[(int64_t)k * HW] /= sum;
        }
    }
}

// The adjoint of softmax_dim1 (y = softmax(x / T) over dim 1), with y its output, per (sample, pixel):
//   dinp += y * (dout - sum_k dout_k y_k) / T
void softmax_dim1_backward(float *dinp, const float *dout, const float *out, int B, int K, int HW, float temperature) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int p = 0; p < HW; p++) {
            const int64_t base = (int64_t)b * K * HW + p;
            double dot = 0.0;
            for (int k = 0; k < K; k++) dot += (double)dout[base + (int64_t)k * HW] * out[base + (int64_t)k * HW];
            const float s = (float)dot;
            for (int k = 0; k < K; k++) {
                const int64_t i = base + (int64_t)k * HW;
                dinp[i] += out[i] * (dout[i] - s) / temperature;
            }
        }
    }
}

void copy_channels_backward(float *dsrc, const float *ddst, int B, int C, int c0, int c, int HW) {
    for (int b = 0; b < B; b++) add_inplace(dsrc + ((int64_t)b * C + c0) * HW, ddst + (int64_t)b * c * HW, (int64_t)c * HW);
}

void paste_channels_backward(float *dsrc, const float *ddst, int B, int C, int c0, int c, int HW) {
    for (int b = 0; b < B; b++) add_inplace(dsrc + (int64_t)b * c * HW, ddst + ((int64_t)b * C + c0) * HW, (int64_t)c * HW);
}

void dropout2d_forward(float *out, float *mask, const float *inp, int N, int C, int HW, float p, uint64_t *rng) {
    const float keep = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) mask[nc] = splitmix64_uniform(rng) < p ? 0.0f : keep;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
        for (int i = 0; i < HW; i++) out[nc * HW + i] = inp[nc * HW + i] * mask[nc];
}

void dropout2d_backward(float *dinp, const float *dout, const float *mask, int N, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
        for (int i = 0; i < HW; i++) dinp[nc * HW + i] += dout[nc * HW + i] * mask[nc];
}

double dot_f64(const float *a, const float *b, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc += (double)a[i] * b[i];
    return acc;
}
