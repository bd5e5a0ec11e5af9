// Cross-entropy with ignore index and BCE-with-logits. Per-position terms are
// computed in double; the loss is summed over fixed chunks of positions (one
// partial sum per chunk, then the partials in order), so any thread count gives
// the same bits.
#include "train/losses.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

#define LOSS_CHUNK 1024  // positions per partial sum

int cross_entropy_loss(float *loss, float *dlogits, const float *logits, const int64_t *labels, int N, int C, int HW,
                       int64_t ignore_index) {
    const int64_t P = (int64_t)N * HW;
    if (N < 0 || C < 1 || HW < 0) return sd_errorf("cross_entropy_loss: bad shape (%d, %d, %d)", N, C, HW);
    // Validate labels and count the kept positions (serially: sd_errorf is not thread-safe).
    int64_t kept = 0;
    for (int64_t i = 0; i < P; i++) {
        if (labels[i] == ignore_index) continue;
        if (labels[i] < 0 || labels[i] >= C)
            return sd_errorf("cross_entropy_loss: label %lld at position %lld is outside [0, %d) and is not the "
                             "ignore index %lld",
                             (long long)labels[i], (long long)i, C, (long long)ignore_index);
        kept++;
    }
    if (kept == 0) {
        *loss = NAN;  // PyTorch: mean over zero elements
        return 0;
    }
    const int64_t chunks = (P + LOSS_CHUNK - 1) / LOSS_CHUNK;
    double *partial = (double *)calloc((size_t)chunks, sizeof(double));
    if (!partial) return sd_errorf("cross_entropy_loss: out of memory (%lld partial sums)", (long long)chunks);
    const double inv_kept = 1.0 / (double)kept;

#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = (ch + 1) * LOSS_CHUNK < P ? (ch + 1) * LOSS_CHUNK : P;
        double acc = 0.0;
        for (int64_t i = ch * LOSS_CHUNK; i < end; i++) {
            const int64_t label = labels[i];
            if (label == ignore_index) continue;
            const int64_t n = i / HW, p = i % HW;
            const float *x = logits + n * C * HW + p;  // x[c * HW] is class c
            double mx = -INFINITY;
            for (int c = 0; c < C; c++) mx = x[(int64_t)c * HW] > mx ? x[(int64_t)c * HW] : mx;
            double sum = 0.0;
            for (int c = 0; c < C; c++) sum += exp(x[(int64_t)c * HW] - mx);
            acc += mx + log(sum) - x[label * HW];  // -log softmax[label]
            if (dlogits) {
                float *d = dlogits + n * C * HW + p;
                for (int c = 0; c < C; c++) {
                    double prob = exp(x[(int64_t)c * HW] - mx) / sum;
                    d[(int64_t)c * HW] += (float)((prob - (c == label ? 1.0 : 0.0)) * inv_kept);
                }
            }
        }
        partial[ch] = acc;
    }
    double total = 0.0;
    for (int64_t ch = 0; ch < chunks; ch++) total += partial[ch];
    free(partial);
    *loss = (float)(total * inv_kept);
    return 0;
}

int bce_with_logits_loss(float *loss, float *dlogits, const float *logits, const float *targets, int64_t n) {
    if (n <= 0) {
        *loss = NAN;
        return 0;
    }
    const int64_t chunks = (n + LOSS_CHUNK - 1) / LOSS_CHUNK;
    double *partial = (double *)calloc((size_t)chunks, sizeof(double));
    if (!partial) return sd_errorf("bce_with_logits_loss: out of memory (%lld partial sums)", (long long)chunks);
    const double inv_n = 1.0 / (double)n;

#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t end = (ch + 1) * LOSS_CHUNK < n ? (ch + 1) * LOSS_CHUNK : n;
        double acc = 0.0;
        for (int64_t i = ch * LOSS_CHUNK; i < end; i++) {
            const double x = logits[i], t = targets[i];
            // max(x,0) - x t + log(1 + exp(-|x|)): never overflows
            acc += (x > 0.0 ? x : 0.0) - x * t + log1p(exp(-fabs(x)));
            if (dlogits) {
                const double e = exp(-fabs(x));  // sigmoid without overflow
                const double sig = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
                dlogits[i] += (float)((sig - t) * inv_n);
            }
        }
        partial[ch] = acc;
    }
    double total = 0.0;
    for (int64_t ch = 0; ch < chunks; ch++) total += partial[ch];
    free(partial);
    *loss = (float)(total * inv_n);
    return 0;
}
