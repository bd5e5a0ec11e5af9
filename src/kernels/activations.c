#include <math.h>

#include "kernels/kernels.h"

void silu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void relu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void gelu_tanh_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

void quick_gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void add_inplace(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void scale_inplace(float *y, float s, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

void softmax_rows(float *x, int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *xr = x + (int64_t)r * n;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = xr[i] > mx ? xr[i] : mx;
        float sum = 0.0f;
        for (int i = 0; i < n; i++) { xr[i] = expf(xr[i] - mx); sum += xr[i]; }
        for (int i = 0; i < n; i++) xr[i] /= sum;
    }
}
