// Backward passes (llm.c style): gradients accumulate (+=); NULL means "not wanted".
// Every OpenMP loop gives each gradient element to one thread, which sums its
// terms in a fixed order, so any thread count produces the same bits.
// Conv/linear weight gradients run on the GEMM (float, fixed order); bias
// gradients and normalisation statistics are summed in double.
#include "train/ops_backward.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"

// ---------------------------------------------------------------------------
// GroupNorm

void groupnorm_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                             const float *beta, int N, int C, int HW, int groups, float eps) {
    // groupnorm_forward itself, with the statistics it normalised with kept for the backward
    groupnorm_forward_stats(inp, out, gamma, beta, N, C, HW, groups, eps, mean, rstd);
}

// With xhat = (x - mean) * rstd and D = cpg * HW per (n, group):
//   dxhat = dout * gamma
//   dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   dgamma[c] += sum_{n,hw} dout * xhat;  dbeta[c] += sum_{n,hw} dout
void groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *mean, const float *rstd, const float *gamma, int N, int C, int HW, int groups) {
    const int cpg = C / groups;
    if (dinp) {
#pragma omp parallel for collapse(2) schedule(static)
        for (int n = 0; n < N; n++) {
            for (int g = 0; g < groups; g++) {
                const int64_t base = ((int64_t)n * C + (int64_t)g * cpg) * HW;
                const float m = mean[n * groups + g], rs = rstd[n * groups + g];
                double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
                for (int c = 0; c < cpg; c++) {
                    const float gm = gamma ? gamma[g * cpg + c] : 1.0f;
                    const float *d = dout + base + (int64_t)c * HW;
                    const float *x = inp + base + (int64_t)c * HW;
                    for (int i = 0; i < HW; i++) {
                        double dxhat = (double)d[i] * gm;
                        sum_dxhat += dxhat;
                        sum_dxhat_xhat += dxhat * (((double)x[i] - m) * rs);
                    }
                }
                const double D = (double)cpg * HW;
                const float mean_dxhat = (float)(sum_dxhat / D), mean_dxhat_xhat = (float)(sum_dxhat_xhat / D);
                for (int c = 0; c < cpg; c++) {
                    const float gm = gamma ? gamma[g * cpg + c] : 1.0f;
                    const float *d = dout + base + (int64_t)c * HW;
                    const float *x = inp + base + (int64_t)c * HW;
                    float *dx = dinp + base + (int64_t)c * HW;
                    for (int i = 0; i < HW; i++) {
                        float xhat = (x[i] - m) * rs;
                        dx[i] += rs * (d[i] * gm - mean_dxhat - xhat * mean_dxhat_xhat);
                    }
                }
            }
        }
    }
    if (dgamma || dbeta) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            const int g = c / cpg;
            double sg = 0.0, sb = 0.0;
            for (int n = 0; n < N; n++) {
                const float m = mean[n * groups + g], rs = rstd[n * groups + g];
                const float *d = dout + ((int64_t)n * C + c) * HW;
                const float *x = inp + ((int64_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++) {
                    sg += (double)d[i] * (((double)x[i] - m) * rs);
                    sb += d[i];
                }
            }
            if (dgamma) dgamma[c] += (float)sg;
            if (dbeta) dbeta[c] += (float)sb;
        }
    }
}

// ---------------------------------------------------------------------------
// BatchNorm (training mode). The arithmetic follows ATen's CPU kernel for
// contiguous float input: mean = (float)(double sum / M); var_sum = double sum of
// the float (x - mean)^2; rstd = 1/sqrt(var_sum/M + eps) in double; the running
// statistics are updated in float with a float momentum; out = x * a + b with
// a = rstd * gamma, b = beta - mean * a.

int batchnorm_forward_train(float *out, float *save_mean, float *save_rstd, float *running_mean,
                            float *running_var, int64_t *num_batches_tracked, const float *inp, const float *gamma,
                            const float *beta, int N, int C, int HW, double momentum, double eps) {
    const int64_t M = (int64_t)N * HW;
    if (M < 2)
        return sd_errorf("batchnorm_forward_train: expected more than 1 value per channel in training, got input (%d, %d, %d)",
                         N, C, HW);
    const float mom = (float)momentum;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((int64_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) sum += x[i];
        }
        const float m = (float)(sum / (double)M);
        double var_sum_d = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((int64_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                float d = x[i] - m;
                var_sum_d += d * d;
            }
        }
        const float var_sum = (float)var_sum_d;
        const float rs = (float)(1.0 / sqrt((double)(var_sum / (float)M) + eps));
        save_mean[c] = m;
        save_rstd[c] = rs;
        if (running_mean) running_mean[c] = mom * m + (1.0f - mom) * running_mean[c];
        if (running_var) {
            double unbiased = (double)(var_sum / (float)(M - 1));
            running_var[c] = (float)(mom * unbiased + (double)((1.0f - mom) * running_var[c]));
        }
        const float a = rs * (gamma ? gamma[c] : 1.0f);
        const float b = (beta ? beta[c] : 0.0f) - m * a;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((int64_t)n * C + c) * HW;
            float *y = out + ((int64_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) y[i] = (float)((double)x[i] * a + b);  // ATen fuses this multiply-add
        }
    }
    if (num_batches_tracked) (*num_batches_tracked)++;
    return 0;
}

// Per channel, with M = N*HW, sum = sum(dout), dotp = sum((x - mean) * dout):
//   dinp += (dout - sum/M - (x - mean) * dotp * rstd^2 / M) * rstd * gamma
//   dgamma += dotp * rstd;  dbeta += sum
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                        const float *save_mean, const float *save_rstd, const float *gamma, int N, int C, int HW) {
    const int64_t M = (int64_t)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float m = save_mean[c], rs = save_rstd[c];
        double sum = 0.0, dotp = 0.0;
        for (int n = 0; n < N; n++) {
            const float *d = dout + ((int64_t)n * C + c) * HW;
            const float *x = inp + ((int64_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                sum += d[i];
                dotp += (double)(x[i] - m) * d[i];
            }
        }
        if (dinp) {
            const float k = (float)(dotp * rs * rs / (double)M);
            const float grad_mean = (float)(sum / (double)M);
            const float w = gamma ? gamma[c] : 1.0f;
            for (int n = 0; n < N; n++) {
                const float *d = dout + ((int64_t)n * C + c) * HW;
                const float *x = inp + ((int64_t)n * C + c) * HW;
                float *dx = dinp + ((int64_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++) dx[i] += (d[i] - grad_mean - (x[i] - m) * k) * rs * w;
            }
        }
        if (dgamma) dgamma[c] += (float)(dotp * rs);
        if (dbeta) dbeta[c] += (float)sum;
    }
}

// ---------------------------------------------------------------------------
// Element-wise

void relu_backward(float *dinp, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (out[i] > 0.0f) dinp[i] += dout[i];
}

void div_scalar_backward(float *dinp, float *dt, const float *dout, const float *inp, float t, int64_t n) {
    if (dinp) {
        for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] / t;
    }
    if (dt) {
        double acc = 0.0;  // d(x/t)/dt = -x/t^2
        for (int64_t i = 0; i < n; i++) acc += (double)dout[i] * inp[i];
        *dt += (float)(-acc / ((double)t * t));
    }
}

// ---------------------------------------------------------------------------
// Resampling and pooling

// Source coordinate of output index i: the same float arithmetic as resample.c
// (ATen's area_pixel_compute_source_index with scale = in / out).
static float source_index(int i, int in, int out, int align_corners) {
    if (align_corners) return out > 1 ? (float)i * (float)(in - 1) / (float)(out - 1) : 0.0f;
    float s = ((float)i + 0.5f) * ((float)in / (float)out) - 0.5f;
    return s < 0.0f ? 0.0f : s;
}

// Each (n, c) plane is scattered by one thread in output order, as ATen's
// upsample_bilinear2d_backward does.
void resize_bilinear_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo,
                              int align_corners) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float *dx = dinp + ((int64_t)n * C + c) * H * W;
            const float *d = dout + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                float sh = source_index(oh, H, Ho, align_corners);
                int h0 = (int)sh;
                int h1 = h0 + (h0 < H - 1 ? 1 : 0);
                float lh = sh - (float)h0;
                for (int ow = 0; ow < Wo; ow++) {
                    float sw = source_index(ow, W, Wo, align_corners);
                    int w0 = (int)sw;
                    int w1 = w0 + (w0 < W - 1 ? 1 : 0);
                    float lw = sw - (float)w0;
                    float g = d[oh * Wo + ow];
                    dx[h0 * W + w0] += (1.0f - lh) * (1.0f - lw) * g;
                    dx[h0 * W + w1] += (1.0f - lh) * lw * g;
                    dx[h1 * W + w0] += lh * (1.0f - lw) * g;
                    dx[h1 * W + w1] += lh * lw * g;
                }
            }
        }
    }
}

void adaptive_avg_pool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float *dx = dinp + ((int64_t)n * C + c) * H * W;
            const float *d = dout + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0 = (oh * H) / Ho, h1 = ((oh + 1) * H + Ho - 1) / Ho;
                for (int ow = 0; ow < Wo; ow++) {
                    int w0 = (ow * W) / Wo, w1 = ((ow + 1) * W + Wo - 1) / Wo;
                    float g = d[oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) dx[h * W + w] += g;
                }
            }
        }
    }
}

void global_avg_pool_forward(float *out, const float *inp, int N, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        const float *x = inp + nc * HW;
        float sum = 0.0f;
        for (int i = 0; i < HW; i++) sum += x[i];
        out[nc] = sum / (float)HW;
    }
}

void global_avg_pool_backward(float *dinp, const float *dout, int N, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        float g = dout[nc] / (float)HW;
        float *dx = dinp + nc * HW;
        for (int i = 0; i < HW; i++) dx[i] += g;
    }
}

// ---------------------------------------------------------------------------
// Softmax

void softmax_backward(float *dinp, const float *dout, const float *out, int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *y = out + (int64_t)r * n;
        const float *d = dout + (int64_t)r * n;
        float *dx = dinp + (int64_t)r * n;
        double dot = 0.0;
        for (int i = 0; i < n; i++) dot += (double)d[i] * y[i];
        const float s = (float)dot;
        for (int i = 0; i < n; i++) dx[i] += y[i] * (d[i] - s);
    }
}

void softmax_channels_forward(float *out, const float *inp, int N, int C, int HW) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < HW; p++) {
            const float *x = inp + (int64_t)n * C * HW + p;
            float *y = out + (int64_t)n * C * HW + p;
            float mx = -INFINITY;
            for (int c = 0; c < C; c++) mx = x[(int64_t)c * HW] > mx ? x[(int64_t)c * HW] : mx;
            float sum = 0.0f;
            for (int c = 0; c < C; c++) {
                float e = expf(x[(int64_t)c * HW] - mx);
                y[(int64_t)c * HW] = e;
                sum += e;
            }
            for (int c = 0; c < C; c++) y[(int64_t)c * HW] /= sum;
        }
    }
}

void softmax_channels_backward(float *dinp, const float *dout, const float *out, int N, int C, int HW) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < HW; p++) {
            const int64_t base = (int64_t)n * C * HW + p;
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)dout[base + (int64_t)c * HW] * out[base + (int64_t)c * HW];
            const float s = (float)dot;
            for (int c = 0; c < C; c++) {
                int64_t k = base + (int64_t)c * HW;
                dinp[k] += out[k] * (dout[k] - s);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Dropout2d

void dropout_rng_seed(DropoutRng *rng, uint64_t seed) { rng->state = seed; }

void dropout2d_forward(float *out, float *mask, const float *inp, int N, int C, int HW, float p, DropoutRng *rng) {
    // PyTorch: noise = bernoulli(1 - p) / (1 - p), out = inp * noise (the divisor as a float).
    const float keep_scale = p >= 1.0f ? 0.0f : 1.0f / (float)(1.0 - (double)p);
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        if (p <= 0.0f) {
            mask[nc] = 1.0f;
        } else if (p >= 1.0f) {
            mask[nc] = 0.0f;
        } else {
            mask[nc] = splitmix64_uniform(&rng->state) < 1.0 - (double)p ? keep_scale : 0.0f;
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        const float s = mask[nc];
        for (int i = 0; i < HW; i++) out[nc * HW + i] = inp[nc * HW + i] * s;
    }
}

void dropout2d_backward(float *dinp, const float *dout, const float *mask, int N, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
        const float s = mask[nc];
        for (int i = 0; i < HW; i++) dinp[nc * HW + i] += dout[nc * HW + i] * s;
    }
}

// ---------------------------------------------------------------------------
// Concatenation along channels

void concat_channels_forward(float *out, const float *const *inps, const int *channels, int count, int N, int HW) {
    int total = 0;
    for (int k = 0; k < count; k++) total += channels[k];
    for (int n = 0; n < N; n++) {
        int offset = 0;
        for (int k = 0; k < count; k++) {
            const int64_t len = (int64_t)channels[k] * HW;
            const float *src = inps[k] + (int64_t)n * len;
            float *dst = out + ((int64_t)n * total + offset) * HW;
            for (int64_t i = 0; i < len; i++) dst[i] = src[i];
            offset += channels[k];
        }
    }
}

void concat_channels_backward(float *const *dinps, const float *dout, const int *channels, int count, int N,
                              int HW) {
    int total = 0;
    for (int k = 0; k < count; k++) total += channels[k];
    for (int n = 0; n < N; n++) {
        int offset = 0;
        for (int k = 0; k < count; k++) {
            const int64_t len = (int64_t)channels[k] * HW;
            if (dinps[k]) {
                const float *src = dout + ((int64_t)n * total + offset) * HW;
                float *dst = dinps[k] + (int64_t)n * len;
                for (int64_t i = 0; i < len; i++) dst[i] += src[i];
            }
            offset += channels[k];
        }
    }
}
