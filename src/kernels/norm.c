// Normalisation layers. Statistics are accumulated in double: the mean and
// variance of a 64x64x40 group then match PyTorch's to float rounding.
#include <math.h>

#include "kernels/kernels.h"

void groupnorm_forward(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                       int groups, float eps) {
    int cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < groups; g++) {
            const float *xg = x + ((int64_t)n * C + (int64_t)g * cpg) * HW;
            float *yg = y + ((int64_t)n * C + (int64_t)g * cpg) * HW;
            int64_t count = (int64_t)cpg * HW;
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < count; i++) sum += xg[i];
            double mean = sum / (double)count;
            for (int64_t i = 0; i < count; i++) { double d = xg[i] - mean; sq += d * d; }
            double var = sq / (double)count;  // biased, as torch
            float rstd = (float)(1.0 / sqrt(var + eps));
            float m = (float)mean;
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                float s = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
                for (int i = 0; i < HW; i++) {
                    int64_t k = (int64_t)c * HW + i;
                    yg[k] = (xg[k] - m) * rstd * s + b;
                }
            }
        }
    }
}

void layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < dim; i++) sum += xr[i];
        double mean = sum / dim;
        for (int i = 0; i < dim; i++) { double d = xr[i] - mean; sq += d * d; }
        float rstd = (float)(1.0 / sqrt(sq / dim + eps));
        float m = (float)mean;
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * rstd * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
    }
}

void batchnorm_forward_eval(const float *x, float *y, const float *mean, const float *var, const float *gamma,
                            const float *beta, int N, int C, int HW, float eps) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float rstd = 1.0f / sqrtf(var[c] + eps);
            float s = (gamma ? gamma[c] : 1.0f) * rstd;
            float b = (beta ? beta[c] : 0.0f) - mean[c] * s;
            const float *xc = x + ((int64_t)n * C + c) * HW;
            float *yc = y + ((int64_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) yc[i] = xc[i] * s + b;
        }
    }
}
