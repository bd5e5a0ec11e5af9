// The epilogue of the AVX-512 14 x 32 tiles (f32 FMA in gemm_avx512.c, bf16 dot products in
// gemm_avx512_bf16.c): the accumulators, two vectors per row, go to C with the biases and beta.
// Only the k loops differ between those kernels; this part is the same, so it is here once,
// with the 16 x 16 register transpose both use to pack row-major A into micro-panels and the
// exp of the attention's online softmax (f32 in gemm_avx512.c, fused with the bf16 pairing in
// gemm_avx512_bf16.c).
// Included only by those two files and conv_avx512.c, on x86-64, inside functions compiled for
// AVX-512.
#ifndef SD_GEMM_AVX512_TILE_H
#define SD_GEMM_AVX512_TILE_H

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define AVX512_TILE_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

// The mask of the first n lanes of 16 (none for n <= 0, all for n >= 16).
static inline __mmask16 first_lanes16(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// The masks of the first n (<= 32) columns: k0 for columns 0..15, k1 for 16..31.
static inline void tile_column_masks(int n, __mmask16 *k0, __mmask16 *k1) {
    *k0 = first_lanes16(n);
    *k1 = first_lanes16(n - 16);
}

// One row: v = acc + bias_m_i + bias_n; C = beta*C + v (C read only if beta != 0).
AVX512_TILE_FUNC static inline void tile_store_row(float *c, __m512 acc0, __m512 acc1, __mmask16 k0, __mmask16 k1,
                                                   float beta, const float *bias_m_i, const float *bias_n) {
    if (bias_m_i) {
        __m512 bm = _mm512_set1_ps(*bias_m_i);
        acc0 = _mm512_add_ps(acc0, bm);
        acc1 = _mm512_add_ps(acc1, bm);
    }
    if (bias_n) {
        acc0 = _mm512_add_ps(acc0, _mm512_maskz_loadu_ps(k0, bias_n));
        acc1 = _mm512_add_ps(acc1, _mm512_maskz_loadu_ps(k1, bias_n + 16));
    }
    if (beta != 0.0f) {
        __m512 vb = _mm512_set1_ps(beta);
        acc0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, c), acc0);
        acc1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, c + 16), acc1);
    }
    _mm512_mask_storeu_ps(c, k0, acc0);
    _mm512_mask_storeu_ps(c + 16, k1, acc1);
}

// The first m rows and n columns of a tile whose row i is acc[2i], acc[2i+1]; rows past m are padding.
AVX512_TILE_FUNC static inline void tile_store(float *c, int ldc, int m, int n, const __m512 *acc, float beta,
                                               const float *bias_m, const float *bias_n) {
    __mmask16 k0, k1;
    tile_column_masks(n, &k0, &k1);
    for (int i = 0; i < m; i++)
        tile_store_row(c + (ptrdiff_t)i * ldc, acc[2 * i], acc[2 * i + 1], k0, k1, beta, bias_m ? bias_m + i : NULL,
                       bias_n);
}

// The narrow tiles' epilogue (a B micro-panel of n <= 16 columns): row i < m is acc[i] alone.
AVX512_TILE_FUNC static inline void tile_store_narrow(float *c, int ldc, int m, int n, const __m512 *acc, float beta,
                                                      const float *bias_m, const float *bias_n) {
    __mmask16 k0 = first_lanes16(n);
    for (int i = 0; i < m; i++)
        tile_store_row(c + (ptrdiff_t)i * ldc, acc[i], _mm512_setzero_ps(), k0, 0, beta, bias_m ? bias_m + i : NULL,
                       bias_n);
}

// r[i] = row i of a 16 x 16 block in, r[j] = column j out: pairs of rows interleaved
// (unpack), then pairs of pairs (shuffle), then 128-bit lanes twice (shuffle_f32x4).
AVX512_TILE_FUNC static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16], v[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        u[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 4; j++) {
            v[8 * k + j] = _mm512_shuffle_f32x4(u[8 * k + j], u[8 * k + 4 + j], 0x88);
            v[8 * k + 4 + j] = _mm512_shuffle_f32x4(u[8 * k + j], u[8 * k + 4 + j], 0xdd);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0xdd);
    }
}

// exp(x) for x <= 0 as in a softmax: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial (Cephes expf coefficients), times 2^n. Inputs below -87 give 0.
AVX512_TILE_FUNC static inline __m512 exp512(__m512 x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(live, p, n);
}

// The online softmax over 16 query columns of a score tile (rows x 32, row stride 32): the new
// running max m_new of those columns, and the shift their exps use (m_new, but 0 where a column
// is still at -inf, so that exp(-inf - shift) = 0, not NaN).
AVX512_TILE_FUNC static inline __m512 softmax_shift(const float *s, int rows, __m512 m_old, __m512 *m_new) {
    __m512 mx = m_old;
    for (int r = 0; r < rows; r++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + (ptrdiff_t)r * 32));
    *m_new = mx;
    __mmask16 dead = _mm512_cmp_ps_mask(mx, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(mx, dead, _mm512_setzero_ps());
}

#endif
