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
// Softmax

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
