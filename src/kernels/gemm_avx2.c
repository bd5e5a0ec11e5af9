// AVX2 + FMA micro-kernel: a 6 x 16 tile of C in 12 ymm registers; each k step
// loads two vectors of packed B and broadcasts 6 values of packed A, 12 FMAs.
// Compiled with a target attribute, used only when the CPU has AVX2 and FMA.
#include "kernels/gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2_FUNC __attribute__((target("avx2,fma")))

enum { MR = 6, NR = 16 };

// One row of the epilogue: v = acc + bias; C = beta*C + v (C read only if beta != 0).
// Partial rows (n < 16) go through a zero-padded copy so the arithmetic is the same.
AVX2_FUNC static inline void store_row(float *c, __m256 acc0, __m256 acc1, int n, float beta, const float *bias_m_i,
                                       const float *bias_n) {
    float tmp[16], tb[16];
    if (bias_m_i) {
        __m256 bm = _mm256_set1_ps(*bias_m_i);
        acc0 = _mm256_add_ps(acc0, bm);
        acc1 = _mm256_add_ps(acc1, bm);
    }
    if (bias_n) {
        const float *bn = bias_n;
        if (n < NR) {
            memset(tb, 0, sizeof(tb));
            memcpy(tb, bias_n, (size_t)n * sizeof(float));
            bn = tb;
        }
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(bn));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(bn + 8));
    }
    float *dst = n < NR ? tmp : c;
    if (beta != 0.0f) {
        if (n < NR) {
            memset(tmp, 0, sizeof(tmp));
            memcpy(tmp, c, (size_t)n * sizeof(float));
        }
        __m256 vb = _mm256_set1_ps(beta);
        acc0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(dst), acc0);
        acc1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(dst + 8), acc1);
    }
    _mm256_storeu_ps(dst, acc0);
    _mm256_storeu_ps(dst + 8, acc1);
    if (n < NR) memcpy(c, tmp, (size_t)n * sizeof(float));
}

AVX2_FUNC static void micro_avx2(int k, const void *va, const void *vb, float *c, int ldc, int m, int n, float beta,
                                 const float *bias_m, const float *bias_n) {
    const float *a = va, *b = vb;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 ai;
        ai = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51);
        a += MR;
        b += NR;
    }
    // Rows past m are padding: fall through from the last real row down to row 0.
    switch (m) {
    case 6: store_row(c + 5 * (long)ldc, c50, c51, n, beta, bias_m ? bias_m + 5 : NULL, bias_n); /* fall through */
    case 5: store_row(c + 4 * (long)ldc, c40, c41, n, beta, bias_m ? bias_m + 4 : NULL, bias_n); /* fall through */
    case 4: store_row(c + 3 * (long)ldc, c30, c31, n, beta, bias_m ? bias_m + 3 : NULL, bias_n); /* fall through */
    case 3: store_row(c + 2 * (long)ldc, c20, c21, n, beta, bias_m ? bias_m + 2 : NULL, bias_n); /* fall through */
    case 2: store_row(c + 1 * (long)ldc, c10, c11, n, beta, bias_m ? bias_m + 1 : NULL, bias_n); /* fall through */
    case 1: store_row(c, c00, c01, n, beta, bias_m, bias_n); /* fall through */
    default: break;
    }
}

// exp(x) for softmax inputs (x <= 0): x = n ln2 + r, exp(r) by the Cephes degree-6
// polynomial, times 2^n built in the exponent bits. Inputs below -87 give 0.
AVX2_FUNC static inline __m256 exp256(__m256 x) {
    __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n + 127 in the exponent field (n in [-126, 127] after the clamp)
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), live);
}

// The online-softmax step of GemmKernelInfo, 8 query columns at a time.
AVX2_FUNC static void softmax_step_avx2(float *s, int rows, float *m, float *l, float *corr) {
    for (int h = 0; h < NR; h += 8) {
        __m256 m_old = _mm256_loadu_ps(m + h), m_new = m_old;
        for (int r = 0; r < rows; r++) m_new = _mm256_max_ps(m_new, _mm256_loadu_ps(s + (long)r * NR + h));
        // columns still at -inf use shift 0 so that exp(-inf - shift) = 0, not NaN
        __m256 dead = _mm256_cmp_ps(m_new, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
        __m256 shift = _mm256_andnot_ps(dead, m_new);
        __m256 c = exp256(_mm256_sub_ps(m_old, shift)), sum = _mm256_setzero_ps();
        for (int r = 0; r < rows; r++) {
            float *sr = s + (long)r * NR + h;
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(sr), shift));
            _mm256_storeu_ps(sr, e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_storeu_ps(l + h, _mm256_fmadd_ps(_mm256_loadu_ps(l + h), c, sum));
        _mm256_storeu_ps(m + h, m_new);
        _mm256_storeu_ps(corr + h, c);
    }
}

static const GemmKernelOps k_avx2_ops = {
    .kpack = 1, .pack_a = gemm_pack_a_f32, .pack_b = gemm_pack_b_f32,
    // a multiply-add costs ~1/32 cycle (vector FMA), packing a float ~1 cycle, streaming a float of
    // weights packed at load ~1/4 cycle (every thread whose blocks need those rows reads them)
    .fma_per_cycle = 32.0, .pack_cost = 1.0, .stream_cost = 0.25, .shared_b_words = (size_t)2 << 20,
    .micro = micro_avx2, .softmax_step = softmax_step_avx2, .widen_f16 = gemm_widen_f16_avx2,
};
static const GemmKernelInfo k_avx2 = {.name = "avx2", .mr = MR, .nr = NR, .mc = 144, .kc = 256, .nc = 4096,
                                      .ops = &k_avx2_ops};

const GemmKernelInfo *gemm_kernel_avx2(void) { return &k_avx2; }

#else
const GemmKernelInfo *gemm_kernel_avx2(void) { return 0; }
#endif
