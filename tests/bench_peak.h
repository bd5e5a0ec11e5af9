// What the benches share: the machine's fp32 FMA peak, measured (12 independent register-only
// FMA chains per thread, AVX-512, AVX2 or scalar as the ISA in use), and their random inputs.
#ifndef SD_BENCH_PEAK_H
#define SD_BENCH_PEAK_H

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <stdio.h>
#include <stdlib.h>

#include "core/runtime.h"

// n floats scale * U(-1, 1) + offset from a xorshift stream seeded by `seed` (exits if out of memory).
static inline float *bench_rand_floats(size_t n, unsigned seed, float scale, float offset) {
    float *x = (float *)malloc((n ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    unsigned long long s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = scale * ((float)((s >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f) + offset;
    }
    return x;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static inline double fma_flops_avx512(long iters, float seed) {
    __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    __m512 x0 = _mm512_set1_ps(seed), x1 = _mm512_set1_ps(seed + 1), x2 = _mm512_set1_ps(seed + 2);
    __m512 x3 = _mm512_set1_ps(seed + 3), x4 = _mm512_set1_ps(seed + 4), x5 = _mm512_set1_ps(seed + 5);
    __m512 x6 = _mm512_set1_ps(seed + 6), x7 = _mm512_set1_ps(seed + 7), x8 = _mm512_set1_ps(seed + 8);
    __m512 x9 = _mm512_set1_ps(seed + 9), x10 = _mm512_set1_ps(seed + 10), x11 = _mm512_set1_ps(seed + 11);
    for (long i = 0; i < iters; i++) {
        x0 = _mm512_fmadd_ps(x0, b, c); x1 = _mm512_fmadd_ps(x1, b, c); x2 = _mm512_fmadd_ps(x2, b, c);
        x3 = _mm512_fmadd_ps(x3, b, c); x4 = _mm512_fmadd_ps(x4, b, c); x5 = _mm512_fmadd_ps(x5, b, c);
        x6 = _mm512_fmadd_ps(x6, b, c); x7 = _mm512_fmadd_ps(x7, b, c); x8 = _mm512_fmadd_ps(x8, b, c);
        x9 = _mm512_fmadd_ps(x9, b, c); x10 = _mm512_fmadd_ps(x10, b, c); x11 = _mm512_fmadd_ps(x11, b, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                             _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"))) static inline double fma_flops_avx2(long iters, float seed) {
    __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 x0 = _mm256_set1_ps(seed), x1 = _mm256_set1_ps(seed + 1), x2 = _mm256_set1_ps(seed + 2);
    __m256 x3 = _mm256_set1_ps(seed + 3), x4 = _mm256_set1_ps(seed + 4), x5 = _mm256_set1_ps(seed + 5);
    __m256 x6 = _mm256_set1_ps(seed + 6), x7 = _mm256_set1_ps(seed + 7), x8 = _mm256_set1_ps(seed + 8);
    __m256 x9 = _mm256_set1_ps(seed + 9), x10 = _mm256_set1_ps(seed + 10), x11 = _mm256_set1_ps(seed + 11);
    for (long i = 0; i < iters; i++) {
        x0 = _mm256_fmadd_ps(x0, b, c); x1 = _mm256_fmadd_ps(x1, b, c); x2 = _mm256_fmadd_ps(x2, b, c);
        x3 = _mm256_fmadd_ps(x3, b, c); x4 = _mm256_fmadd_ps(x4, b, c); x5 = _mm256_fmadd_ps(x5, b, c);
        x6 = _mm256_fmadd_ps(x6, b, c); x7 = _mm256_fmadd_ps(x7, b, c); x8 = _mm256_fmadd_ps(x8, b, c);
        x9 = _mm256_fmadd_ps(x9, b, c); x10 = _mm256_fmadd_ps(x10, b, c); x11 = _mm256_fmadd_ps(x11, b, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    volatile float sink = lanes[0] + lanes[7];
    (void)sink;
    return (double)iters * 12 * 8 * 2;
}
#endif

// Scalar (or NEON, where the compiler vectorises nothing here): 12 chains of plain multiply-adds.
static inline double fma_flops_scalar(long iters, float seed) {
    float x[12];
    for (int j = 0; j < 12; j++) x[j] = seed + (float)j;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) x[j] = x[j] * 0.999999f + 1e-7f;
    volatile float sink = x[0] + x[11];
    (void)sink;
    return (double)iters * 12 * 2;
}

static inline double fma_flops(SdIsa isa, long iters, float seed) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) return fma_flops_avx512(iters, seed);
    if (isa == ISA_AVX2) return fma_flops_avx2(iters, seed);
#endif
    (void)isa;
    return fma_flops_scalar(iters, seed);
}

// Peak GFLOP/s of `threads` threads running the FMA loop at once: the best of 7 short runs,
// the rate of the core when no other process takes it.
static inline double measure_peak(SdIsa isa, int threads) {
    long iters = 15 * 1000 * 1000L;
    if (isa == ISA_SCALAR || isa == ISA_NEON) iters /= 4;
    double best = 0.0;
    for (int rep = 0; rep < 7; rep++) {
        double flops = 0.0, t0 = sd_now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        flops += fma_flops(isa, iters, 1.0f + rep);
        double gf = flops / (sd_now() - t0) * 1e-9;
        if (gf > best) best = gf;
    }
    return best;
}

#endif
