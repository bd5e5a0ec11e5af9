// A tiny test harness: CHECK(cond, fmt, ...) records a pass or a failure with
// its location; test_report() prints "RESULT <passed> <failed>" (read by
// tests/run_tests.sh) and returns the exit code.
#ifndef SD_TEST_UTIL_H
#define SD_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_test_passed = 0, g_test_failed = 0;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (cond) {                                               \
            g_test_passed++;                                      \
        } else {                                                  \
            g_test_failed++;                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
            printf(__VA_ARGS__);                                  \
            printf("\n");                                         \
        }                                                         \
    } while (0)

// Max |a - b| over n floats.
static inline double max_abs_diff(const float *a, const float *b, long n) {
    double m = 0.0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;  // NaN propagates as a failure
    }
    return m;
}

// The OpenMP thread count for what follows (tests compare 1 and 2 threads bit for bit).
// 1 if the first n columns of m rows of a (row stride lda) have the bits of those of b (ldb).
static inline int same_leading_columns(const float *a, long lda, const float *b, long ldb, int m, int n) {
    int same = 1;
    for (int i = 0; i < m; i++) same &= memcmp(a + i * lda, b + i * ldb, (size_t)n * sizeof(float)) == 0;
    return same;
}

static inline void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// Deterministic pseudo-random floats in [-1, 1) (xorshift), for test inputs.
static inline float test_rand(unsigned long long *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (float)((*state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static inline void test_fill(float *x, long n, unsigned long long seed) {
    unsigned long long s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (long i = 0; i < n; i++) x[i] = test_rand(&s);
}

static inline int test_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, g_test_passed, g_test_failed);
    printf("RESULT %d %d\n", g_test_passed, g_test_failed);
    return g_test_failed ? 1 : 0;
}

#endif
