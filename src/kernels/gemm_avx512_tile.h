// The epilogue of the AVX-512 14 x 32 tiles (f32 FMA in gemm_avx512.c, bf16 dot products in
// gemm_bf16.c): the accumulators, two vectors per row, go to C with the biases and beta.
// Only the k loops differ between those kernels; this part is the same, so it is here once,
// with the 16 x 16 register transpose both use to pack row-major A into micro-panels.
// Included only by those two files, on x86-64, inside functions compiled for AVX-512.
#ifndef SD_GEMM_AVX512_TILE_H
#define SD_GEMM_AVX512_TILE_H

#include <immintrin.h>
#include <stddef.h>

#define AVX512_TILE_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

// The masks of the first n (<= 32) columns: k0 for columns 0..15, k1 for 16..31.
AVX512_TILE_FUNC static inline void tile_column_masks(int n, __mmask16 *k0, __mmask16 *k1) {
    *k0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    *k1 = n >= 32 ? (__mmask16)0xFFFF : n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1);
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

#endif
