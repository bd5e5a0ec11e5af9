// Normalisation layers: GroupNorm, LayerNorm, BatchNorm (eval).
//
// Statistics (norm_stats) are summed in double in one pass over memory, shifted by
// a pilot mean K of the first 16 values: d = v - K, S1 = sum d, S2 = sum d^2,
//   mean = K + S1/n,   var = S2/n - (S1/n)^2   (biased, as torch).
// With K near the mean the subtraction loses nothing that matters: the relative
// error of var is about 1e-16 * (1 + (mean - K)^2 / var) * sqrt(n), far below float
// rounding, as with the two-pass double sums this replaced (whose bits it matches
// except in the rare case a sum sits within 1e-16 of a float rounding boundary).
// One pass instead of two saves a read of maps larger than the caches (VAE at 512).
// Sums go to 16 lanes (element i of each row to lane i % 16, in order), added in a
// fixed pairwise order at the end: the AVX-512, AVX2, NEON and scalar paths give the same bits.
//
// The normalisation itself is ((v - mean) * rstd) * gamma + beta in float with
// no FMA contraction (C99 mode keeps the scalar loops from contracting), as before:
// the same bits on every ISA path. OpenMP over (sample, group) / rows / (sample,
// channel) with a static partition; each statistic is one thread's.
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512_FUNC __attribute__((target("avx512f,avx512dq,fma")))
#define AVX2_FUNC __attribute__((target("avx2,fma")))
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

// Maps smaller than this run on the calling thread (starting a parallel region costs more).
enum { PARALLEL_MIN = 16384 };

// ---- Statistics -------------------------------------------------------------------------

// For each of the rows x[r*stride + i], i < len (v = x + row_add[r] when row_add is not NULL):
// d = v - K goes to s1[i % 16] and d^2 to s2[i % 16], in increasing i. The SIMD versions keep
// the 16 lanes in registers (AVX-512: 2 x 8 doubles, AVX2: 4 x 4) and add the same values
// to the same lanes in the same order, so the sums have the same bits.
static void stats_scalar(const float *x, int rows, int64_t len, int64_t stride, const float *row_add, double K,
                         double s1[16], double s2[16]) {
    for (int j = 0; j < 16; j++) s1[j] = s2[j] = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * stride;
        for (int64_t i = 0; i < len; i++) {
            float v = row_add ? xr[i] + row_add[r] : xr[i];
            double d = (double)v - K;
            s1[i & 15] += d;
            s2[i & 15] += d * d;
        }
    }
}

#if defined(__x86_64__)
AVX512_FUNC static void stats_avx512(const float *x, int rows, int64_t len, int64_t stride, const float *row_add,
                                     double K, double s1[16], double s2[16]) {
    __m512d vk = _mm512_set1_pd(K);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), q0 = _mm512_setzero_pd(), q1 = _mm512_setzero_pd();
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * stride;
        __m512 va = _mm512_set1_ps(row_add ? row_add[r] : 0.0f);
        int64_t i = 0;
        for (; i + 16 <= len; i += 16) {
            __m512 v = _mm512_loadu_ps(xr + i);
            if (row_add) v = _mm512_add_ps(v, va);
            __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vk);
            __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vk);
            a0 = _mm512_add_pd(a0, d0);
            a1 = _mm512_add_pd(a1, d1);
            q0 = _mm512_add_pd(q0, _mm512_mul_pd(d0, d0));
            q1 = _mm512_add_pd(q1, _mm512_mul_pd(d1, d1));
        }
        if (i < len) {  // the tail (len % 16 values) adds only to its lanes; masked loads only here (in the
                        // main loop they made this 4x slower on maps in memory, AMD Zen)
            __mmask16 k = (__mmask16)((1u << (len - i)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(k, xr + i);
            if (row_add) v = _mm512_add_ps(v, va);
            __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vk);
            __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), vk);
            __mmask8 k0 = (__mmask8)(k & 0xFF), k1 = (__mmask8)(k >> 8);
            a0 = _mm512_mask_add_pd(a0, k0, a0, d0);
            a1 = _mm512_mask_add_pd(a1, k1, a1, d1);
            q0 = _mm512_mask_add_pd(q0, k0, q0, _mm512_mul_pd(d0, d0));
            q1 = _mm512_mask_add_pd(q1, k1, q1, _mm512_mul_pd(d1, d1));
        }
    }
    _mm512_storeu_pd(s1, a0);
    _mm512_storeu_pd(s1 + 8, a1);
    _mm512_storeu_pd(s2, q0);
    _mm512_storeu_pd(s2 + 8, q1);
}

// Lanes at or past rem are set to +0; adding +0 leaves a sum's bits alone (the sums
// start at +0 and so are never -0).
AVX2_FUNC static inline __m256d keep_lanes(__m256d d, int first_lane, int64_t rem) {
    __m256d idx = _mm256_setr_pd(first_lane, first_lane + 1, first_lane + 2, first_lane + 3);
    return _mm256_and_pd(d, _mm256_cmp_pd(idx, _mm256_set1_pd((double)rem), _CMP_LT_OQ));
}

AVX2_FUNC static void stats_avx2(const float *x, int rows, int64_t len, int64_t stride, const float *row_add,
                                 double K, double s1[16], double s2[16]) {
    __m256d vk = _mm256_set1_pd(K);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    __m256d q0 = _mm256_setzero_pd(), q1 = _mm256_setzero_pd(), q2 = _mm256_setzero_pd(), q3 = _mm256_setzero_pd();
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * stride;
        __m256 va = _mm256_set1_ps(row_add ? row_add[r] : 0.0f);
        for (int64_t i = 0; i < len; i += 16) {
            int64_t rem = len - i;
            const float *p = xr + i;
            float buf[16];
            if (rem < 16) {  // the tail, zero-padded
                memset(buf, 0, sizeof(buf));
                memcpy(buf, p, (size_t)rem * sizeof(float));
                p = buf;
            }
            __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
            if (row_add) {
                v0 = _mm256_add_ps(v0, va);
                v1 = _mm256_add_ps(v1, va);
            }
            __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v0)), vk);
            __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1)), vk);
            __m256d d2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v1)), vk);
            __m256d d3 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1)), vk);
            if (rem < 16) {
                d0 = keep_lanes(d0, 0, rem);
                d1 = keep_lanes(d1, 4, rem);
                d2 = keep_lanes(d2, 8, rem);
                d3 = keep_lanes(d3, 12, rem);
            }
            a0 = _mm256_add_pd(a0, d0);
            a1 = _mm256_add_pd(a1, d1);
            a2 = _mm256_add_pd(a2, d2);
            a3 = _mm256_add_pd(a3, d3);
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
            q2 = _mm256_add_pd(q2, _mm256_mul_pd(d2, d2));
            q3 = _mm256_add_pd(q3, _mm256_mul_pd(d3, d3));
        }
    }
    _mm256_storeu_pd(s1, a0);
    _mm256_storeu_pd(s1 + 4, a1);
    _mm256_storeu_pd(s1 + 8, a2);
    _mm256_storeu_pd(s1 + 12, a3);
    _mm256_storeu_pd(s2, q0);
    _mm256_storeu_pd(s2 + 4, q1);
    _mm256_storeu_pd(s2 + 8, q2);
    _mm256_storeu_pd(s2 + 12, q3);
}
#endif

#if defined(__aarch64__)
// NEON: the 16 lanes in 8 q registers of 2 doubles each (lane pair j holds lanes 2j, 2j+1);
// the tail goes through a zero-padded copy whose padding lanes add +0 (no change to a sum).
static void stats_neon(const float *x, int rows, int64_t len, int64_t stride, const float *row_add, double K,
                       double s1[16], double s2[16]) {
    float64x2_t vk = vdupq_n_f64(K), a[8], q[8];
    for (int j = 0; j < 8; j++) a[j] = q[j] = vdupq_n_f64(0.0);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * stride;
        float32x4_t va = vdupq_n_f32(row_add ? row_add[r] : 0.0f);
        for (int64_t i = 0; i < len; i += 16) {
            int64_t rem = len - i;
            const float *p = xr + i;
            float buf[16];
            if (rem < 16) {
                memset(buf, 0, sizeof(buf));
                memcpy(buf, p, (size_t)rem * sizeof(float));
                p = buf;
            }
            for (int h = 0; h < 4; h++) {
                float32x4_t v = vld1q_f32(p + 4 * h);
                if (row_add) v = vaddq_f32(v, va);
                float64x2_t d0 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), vk);
                float64x2_t d1 = vsubq_f64(vcvt_high_f64_f32(v), vk);
                if (rem < 16) {  // lanes past the row: +0 (d would be -K)
                    if (4 * h >= rem) d0 = vdupq_n_f64(0.0);
                    else if (4 * h + 1 >= rem) d0 = vsetq_lane_f64(0.0, d0, 1);
                    if (4 * h + 2 >= rem) d1 = vdupq_n_f64(0.0);
                    else if (4 * h + 3 >= rem) d1 = vsetq_lane_f64(0.0, d1, 1);
                }
                a[2 * h] = vaddq_f64(a[2 * h], d0);
                a[2 * h + 1] = vaddq_f64(a[2 * h + 1], d1);
                q[2 * h] = vaddq_f64(q[2 * h], vmulq_f64(d0, d0));
                q[2 * h + 1] = vaddq_f64(q[2 * h + 1], vmulq_f64(d1, d1));
            }
        }
    }
    for (int j = 0; j < 8; j++) {
        vst1q_f64(s1 + 2 * j, a[j]);
        vst1q_f64(s2 + 2 * j, q[j]);
    }
}
#endif

static void stats_sums(const float *x, int rows, int64_t len, int64_t stride, const float *row_add, double K,
                       double s1[16], double s2[16], int isa) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) {
        stats_avx512(x, rows, len, stride, row_add, K, s1, s2);
        return;
    }
    if (isa == ISA_AVX2) {
        stats_avx2(x, rows, len, stride, row_add, K, s1, s2);
        return;
    }
#endif
#if defined(__aarch64__)
    if (isa == ISA_NEON) {
        stats_neon(x, rows, len, stride, row_add, K, s1, s2);
        return;
    }
#endif
    (void)isa;
    stats_scalar(x, rows, len, stride, row_add, K, s1, s2);
}

// v[0] + ... + v[15] in a fixed pairwise order: 4 dependent adds instead of 15.
static double pairwise16(const double v[16]) {
    double s8[8], s4[4];
    for (int j = 0; j < 8; j++) s8[j] = v[2 * j] + v[2 * j + 1];
    for (int j = 0; j < 4; j++) s4[j] = s8[2 * j] + s8[2 * j + 1];
    return (s4[0] + s4[1]) + (s4[2] + s4[3]);
}

void norm_stats(const float *x, int rows, int64_t len, int64_t stride, const float *row_add, float eps, int isa,
                float *mean, float *rstd) {
    double count = (double)rows * (double)len;
    if (count <= 0.0) {
        *mean = 0.0f;
        *rstd = (float)(1.0 / sqrt((double)eps));
        return;
    }
    // pilot mean of row 0's first 16 values (fewer if the row is shorter)
    double pilot[16] = {0};
    int64_t np = len < 16 ? len : 16;
    for (int64_t i = 0; i < np; i++) pilot[i] = (double)(row_add ? x[i] + row_add[0] : x[i]);
    double K = pairwise16(pilot) / (double)np;
    double s1[16], s2[16];
    stats_sums(x, rows, len, stride, row_add, K, s1, s2, isa);
    double S1 = pairwise16(s1), S2 = pairwise16(s2);
    double dm = S1 / count;
    double var = S2 / count - dm * dm;
    if (var < 0.0) var = 0.0;  // rounding; NaN stays NaN
    *mean = (float)(K + dm);
    *rstd = (float)(1.0 / sqrt(var + eps));
}

// ---- y = ((v - mean) * rstd) * scale + shift -------------------------------------------

static void apply_scalar(const float *x, float *y, int64_t n, const float *add, float mean, float rstd, float scale,
                         float shift) {
    for (int64_t i = 0; i < n; i++) {
        float v = add ? x[i] + *add : x[i];
        y[i] = (v - mean) * rstd * scale + shift;
    }
}

#if defined(__x86_64__)
AVX512_FUNC static inline __m512 apply16(__m512 v, const float *add, __m512 va, __m512 m, __m512 rs, __m512 s,
                                         __m512 b) {
    if (add) v = _mm512_add_ps(v, va);
    return _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), rs), s), b);
}

AVX512_FUNC static void apply_avx512(const float *x, float *y, int64_t n, const float *add, float mean, float rstd,
                                     float scale, float shift) {
    __m512 va = _mm512_set1_ps(add ? *add : 0.0f), m = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd);
    __m512 s = _mm512_set1_ps(scale), b = _mm512_set1_ps(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, apply16(_mm512_loadu_ps(x + i), add, va, m, rs, s, b));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, apply16(_mm512_maskz_loadu_ps(k, x + i), add, va, m, rs, s, b));
    }
}

AVX2_FUNC static inline __m256 apply8(__m256 v, const float *add, __m256 va, __m256 m, __m256 rs, __m256 s, __m256 b) {
    if (add) v = _mm256_add_ps(v, va);
    return _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(v, m), rs), s), b);
}

AVX2_FUNC static void apply_avx2(const float *x, float *y, int64_t n, const float *add, float mean, float rstd,
                                 float scale, float shift) {
    __m256 va = _mm256_set1_ps(add ? *add : 0.0f), m = _mm256_set1_ps(mean), rs = _mm256_set1_ps(rstd);
    __m256 s = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, apply8(_mm256_loadu_ps(x + i), add, va, m, rs, s, b));
    apply_scalar(x + i, y + i, n - i, add, mean, rstd, scale, shift);
}
#endif

#if defined(__aarch64__)
// vmulq/vaddq: separate roundings, no fused multiply-add, as the scalar loop.
static void apply_neon(const float *x, float *y, int64_t n, const float *add, float mean, float rstd, float scale,
                       float shift) {
    float32x4_t va = vdupq_n_f32(add ? *add : 0.0f), m = vdupq_n_f32(mean), rs = vdupq_n_f32(rstd);
    float32x4_t sc = vdupq_n_f32(scale), b = vdupq_n_f32(shift);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        if (add) v = vaddq_f32(v, va);
        vst1q_f32(y + i, vaddq_f32(vmulq_f32(vmulq_f32(vsubq_f32(v, m), rs), sc), b));
    }
    apply_scalar(x + i, y + i, n - i, add, mean, rstd, scale, shift);
}
#endif

void norm_apply_span(const float *x, float *y, int64_t n, const float *add, float mean, float rstd, float scale,
                     float shift, int isa) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) {
        apply_avx512(x, y, n, add, mean, rstd, scale, shift);
        return;
    }
    if (isa == ISA_AVX2) {
        apply_avx2(x, y, n, add, mean, rstd, scale, shift);
        return;
    }
#endif
#if defined(__aarch64__)
    if (isa == ISA_NEON) {
        apply_neon(x, y, n, add, mean, rstd, scale, shift);
        return;
    }
#endif
    (void)isa;
    apply_scalar(x, y, n, add, mean, rstd, scale, shift);
}

// LayerNorm's per-element gamma and beta: y[i] = ((x[i] - mean) * rstd) * gamma[i] + beta[i]
// (1 and 0 when NULL, multiplied and added as the scalar loop always did).
static void apply_rows_scalar(const float *x, float *y, int n, float mean, float rstd, const float *gamma,
                              const float *beta) {
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * rstd * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
}

#if defined(__x86_64__)
AVX512_FUNC static void apply_rows_avx512(const float *x, float *y, int n, float mean, float rstd, const float *gamma,
                                          const float *beta) {
    __m512 m = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = gamma ? _mm512_loadu_ps(gamma + i) : one;
        __m512 b = beta ? _mm512_loadu_ps(beta + i) : zero;
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), rs), g), b));
    }
    if (i < n) {  // masked loads only for the tail: in the main loop they cost (4x from memory on AMD Zen)
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m512 g = gamma ? _mm512_maskz_loadu_ps(k, gamma + i) : one;
        __m512 b = beta ? _mm512_maskz_loadu_ps(k, beta + i) : zero;
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), rs), g), b));
    }
}

AVX2_FUNC static void apply_rows_avx2(const float *x, float *y, int n, float mean, float rstd, const float *gamma,
                                      const float *beta) {
    __m256 m = _mm256_set1_ps(mean), rs = _mm256_set1_ps(rstd), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = gamma ? _mm256_loadu_ps(gamma + i) : one;
        __m256 b = beta ? _mm256_loadu_ps(beta + i) : zero;
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(v, m), rs), g), b));
    }
    apply_rows_scalar(x + i, y + i, n - i, mean, rstd, gamma ? gamma + i : NULL, beta ? beta + i : NULL);
}
#endif

#if defined(__aarch64__)
static void apply_rows_neon(const float *x, float *y, int n, float mean, float rstd, const float *gamma,
                            const float *beta) {
    float32x4_t m = vdupq_n_f32(mean), rs = vdupq_n_f32(rstd), one = vdupq_n_f32(1.0f), zero = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = gamma ? vld1q_f32(gamma + i) : one;
        float32x4_t b = beta ? vld1q_f32(beta + i) : zero;
        float32x4_t v = vld1q_f32(x + i);
        vst1q_f32(y + i, vaddq_f32(vmulq_f32(vmulq_f32(vsubq_f32(v, m), rs), g), b));
    }
    apply_rows_scalar(x + i, y + i, n - i, mean, rstd, gamma ? gamma + i : NULL, beta ? beta + i : NULL);
}
#endif

static void apply_rows(const float *x, float *y, int n, float mean, float rstd, const float *gamma, const float *beta,
                       int isa) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) {
        apply_rows_avx512(x, y, n, mean, rstd, gamma, beta);
        return;
    }
    if (isa == ISA_AVX2) {
        apply_rows_avx2(x, y, n, mean, rstd, gamma, beta);
        return;
    }
#endif
#if defined(__aarch64__)
    if (isa == ISA_NEON) {
        apply_rows_neon(x, y, n, mean, rstd, gamma, beta);
        return;
    }
#endif
    (void)isa;
    apply_rows_scalar(x, y, n, mean, rstd, gamma, beta);
}

// ---- The layers ---------------------------------------------------------------------------

void groupnorm_forward(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                       int groups, float eps) {
    groupnorm_forward_stats(x, y, gamma, beta, N, C, HW, groups, eps, NULL, NULL);
}

void groupnorm_forward_stats(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                             int groups, float eps, float *mean_out, float *rstd_out) {
    groupnorm_run(x, y, gamma, beta, NULL, 0, N, C, HW, groups, eps, mean_out, rstd_out);
}

void layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim, float eps) {
    if (sd_reference_path()) {  // $SATDIFUSER_ISA=reference: two-pass mean and variance
        reference_layernorm(x, y, gamma, beta, rows, dim, eps);
        return;
    }
    const int isa = eltwise_isa();
#pragma omp parallel for schedule(static) if ((int64_t)rows * dim >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * dim;
        float mean, rstd;
        norm_stats(xr, 1, dim, dim, NULL, eps, isa, &mean, &rstd);
        apply_rows(xr, y + (int64_t)r * dim, dim, mean, rstd, gamma, beta, isa);
    }
}

// y = x * s + b with s = gamma / sqrt(var + eps), b = beta - mean * s; computed as
// ((x - 0) * 1) * s + b, which is the same float result.
void batchnorm_forward_eval(const float *x, float *y, const float *mean, const float *var, const float *gamma,
                            const float *beta, int N, int C, int HW, float eps) {
    const int isa = eltwise_isa();
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)N * C * HW >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float rstd = 1.0f / sqrtf(var[c] + eps);
            float s = (gamma ? gamma[c] : 1.0f) * rstd;
            float b = (beta ? beta[c] : 0.0f) - mean[c] * s;
            int64_t off = ((int64_t)n * C + c) * HW;
            norm_apply_span(x + off, y + off, HW, NULL, 0.0f, 1.0f, s, b, isa);
        }
    }
}

// ---- Training: the backwards, BatchNorm with batch statistics ------------------------------
// Gradients accumulate (+=); a NULL gradient is not computed. Each gradient element is one
// thread's, summed in a fixed order (in double), so the bits do not depend on the thread count.

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
