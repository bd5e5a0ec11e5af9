// AVX-512 micro-kernel: a 14 x 32 tile of C lives in 28 zmm registers; each k
// step loads two vectors of packed B (32 columns) and broadcasts 14 values of
// packed A, 28 FMAs. Compiled with a target attribute, used only when the CPU
// has AVX-512 (see sd_cpu_isa()).
#include "kernels/gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "kernels/gemm_avx512_tile.h"

#define AVX512_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

enum { MR = 14, NR = 32 };

// The short tiles for the last micro-panel of a block whose row count is not a multiple of 14
// (M = 64 tokens: 4 x 14 + 8; the VAE's 128 channels: 9 x 14 + 2): only the first `rows` rows
// of the A micro-panel (still packed 14 wide), so no FMA is spent on padding rows. Same FMA
// chain per C element as the 14-row tile, so the same bits. `rows` is a constant at each call
// (4 or 8), so the accumulator array stays in registers.
AVX512_FUNC static inline __attribute__((always_inline)) void micro_short_avx512(
    const int rows, int k, const float *a, const float *b, float *c, int ldc, int m, int n, float beta,
    const float *bias_m, const float *bias_n, const char *fetch, int fetch_step) {
    __m512 acc[2 * 8];
#pragma GCC unroll 16
    for (int i = 0; i < 2 * rows; i++) acc[i] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        // With 4 rows or fewer (1 row: a time-embedding projection) B is a weight read once,
        // from memory: fetch it 4 KB ahead; else B comes from L2 and A streams, as below.
        _mm_prefetch((const char *)(rows <= 4 ? b + 1024 : b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 1024), _MM_HINT_T0);
        if (fetch_step) _mm_prefetch(fetch + (long)p * fetch_step, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
        a += MR;
        b += NR;
    }
    tile_store(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

// The tile, and while it runs (fetch_step > 0) one cache line fetched per k step at
// fetch + p * fetch_step (GemmKernelInfo.micro_fetch).
AVX512_FUNC static inline __attribute__((always_inline)) void micro_tile_avx512(
    int k, const float *a, const float *b, float *c, int ldc, int m, int n, float beta, const float *bias_m,
    const float *bias_n, const char *fetch, int fetch_step) {
    if (m <= 4) {
        micro_short_avx512(4, k, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, fetch_step);
        return;
    }
    if (m <= 8) {
        micro_short_avx512(8, k, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, fetch_step);
        return;
    }
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
    __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(), c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
    __m512 ca0 = _mm512_setzero_ps(), ca1 = _mm512_setzero_ps(), cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
    __m512 cc0 = _mm512_setzero_ps(), cc1 = _mm512_setzero_ps(), cd0 = _mm512_setzero_ps(), cd1 = _mm512_setzero_ps();
    // C is read after the k loop: start fetching its rows now.
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(c + (long)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (long)i * ldc + 31), _MM_HINT_T0);
    }
    for (int p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        __m512 ai;
        // B: 8 k steps ahead (it comes from L2). A: 4 KB ahead (~73 k steps): weights packed at
        // load stream from memory, and only this far ahead does the fetch hide DRAM latency.
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 1024), _MM_HINT_T0);
        if (fetch_step) _mm_prefetch(fetch + (long)p * fetch_step, _MM_HINT_T0);
        ai = _mm512_set1_ps(a[0]);  c00 = _mm512_fmadd_ps(ai, b0, c00); c01 = _mm512_fmadd_ps(ai, b1, c01);
        ai = _mm512_set1_ps(a[1]);  c10 = _mm512_fmadd_ps(ai, b0, c10); c11 = _mm512_fmadd_ps(ai, b1, c11);
        ai = _mm512_set1_ps(a[2]);  c20 = _mm512_fmadd_ps(ai, b0, c20); c21 = _mm512_fmadd_ps(ai, b1, c21);
        ai = _mm512_set1_ps(a[3]);  c30 = _mm512_fmadd_ps(ai, b0, c30); c31 = _mm512_fmadd_ps(ai, b1, c31);
        ai = _mm512_set1_ps(a[4]);  c40 = _mm512_fmadd_ps(ai, b0, c40); c41 = _mm512_fmadd_ps(ai, b1, c41);
        ai = _mm512_set1_ps(a[5]);  c50 = _mm512_fmadd_ps(ai, b0, c50); c51 = _mm512_fmadd_ps(ai, b1, c51);
        ai = _mm512_set1_ps(a[6]);  c60 = _mm512_fmadd_ps(ai, b0, c60); c61 = _mm512_fmadd_ps(ai, b1, c61);
        ai = _mm512_set1_ps(a[7]);  c70 = _mm512_fmadd_ps(ai, b0, c70); c71 = _mm512_fmadd_ps(ai, b1, c71);
        ai = _mm512_set1_ps(a[8]);  c80 = _mm512_fmadd_ps(ai, b0, c80); c81 = _mm512_fmadd_ps(ai, b1, c81);
        ai = _mm512_set1_ps(a[9]);  c90 = _mm512_fmadd_ps(ai, b0, c90); c91 = _mm512_fmadd_ps(ai, b1, c91);
        ai = _mm512_set1_ps(a[10]); ca0 = _mm512_fmadd_ps(ai, b0, ca0); ca1 = _mm512_fmadd_ps(ai, b1, ca1);
        ai = _mm512_set1_ps(a[11]); cb0 = _mm512_fmadd_ps(ai, b0, cb0); cb1 = _mm512_fmadd_ps(ai, b1, cb1);
        ai = _mm512_set1_ps(a[12]); cc0 = _mm512_fmadd_ps(ai, b0, cc0); cc1 = _mm512_fmadd_ps(ai, b1, cc1);
        ai = _mm512_set1_ps(a[13]); cd0 = _mm512_fmadd_ps(ai, b0, cd0); cd1 = _mm512_fmadd_ps(ai, b1, cd1);
        a += MR;
        b += NR;
    }
    const __m512 acc[2 * MR] = {
        c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71, c80, c81, c90, c91,
        ca0, ca1, cb0, cb1, cc0, cc1, cd0, cd1};
    tile_store(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

AVX512_FUNC static void micro_avx512(int k, const void *a, const void *b, float *c, int ldc, int m, int n,
                                     float beta, const float *bias_m, const float *bias_n) {
    micro_tile_avx512(k, a, b, c, ldc, m, n, beta, bias_m, bias_n, NULL, 0);
}

// GemmKernelInfo.micro_fetch: fetch_bytes (<= 64 per k step) spread evenly over the k loop.
AVX512_FUNC static void micro_fetch_avx512(int k, const void *a, const void *b, float *c, int ldc, int m, int n,
                                           float beta, const float *bias_m, const float *bias_n, const char *fetch,
                                           int fetch_bytes) {
    int step = (fetch_bytes + k - 1) / k;
    micro_tile_avx512(k, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, step < 64 ? step : 64);
}

// The narrow tile for a micro-panel of B with at most 16 real columns (a 4x4 map's 16
// pixels): two A micro-panels (28 rows) against the first 16 columns, 28 FMAs per k step
// that all count, where the 14 x 32 tile would spend half of its FMAs on zero columns.
// Each C element gets the same FMA chain (p increasing from 0) and the same epilogue as in
// micro_avx512, so the bits are those of two micro_avx512 calls.
AVX512_FUNC static void micro_narrow_avx512(int k, const void *va0, const void *va1, const void *vb, float *c, int ldc,
                                            int m, int n, float beta, const float *bias_m, const float *bias_n) {
    const float *a0 = va0, *a1 = va1, *b = vb;
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps(), c03 = _mm512_setzero_ps(), c04 = _mm512_setzero_ps(), c05 = _mm512_setzero_ps(), c06 = _mm512_setzero_ps();
    __m512 c07 = _mm512_setzero_ps(), c08 = _mm512_setzero_ps(), c09 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps(), c13 = _mm512_setzero_ps();
    __m512 c14 = _mm512_setzero_ps(), c15 = _mm512_setzero_ps(), c16 = _mm512_setzero_ps(), c17 = _mm512_setzero_ps(), c18 = _mm512_setzero_ps(), c19 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps();
    __m512 c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps(), c23 = _mm512_setzero_ps(), c24 = _mm512_setzero_ps(), c25 = _mm512_setzero_ps(), c26 = _mm512_setzero_ps(), c27 = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        // Both A micro-panels stream from memory (a 4x4 map's weights are used by one tile):
        // fetch 2 KB ahead in each (past a1's end is the next pair's a0).
        _mm_prefetch((const char *)(a0 + 512), _MM_HINT_T0);
        _mm_prefetch((const char *)(a1 + 512), _MM_HINT_T0);
        c00 = _mm512_fmadd_ps(_mm512_set1_ps(a0[0]), b0, c00);
        c01 = _mm512_fmadd_ps(_mm512_set1_ps(a0[1]), b0, c01);
        c02 = _mm512_fmadd_ps(_mm512_set1_ps(a0[2]), b0, c02);
        c03 = _mm512_fmadd_ps(_mm512_set1_ps(a0[3]), b0, c03);
        c04 = _mm512_fmadd_ps(_mm512_set1_ps(a0[4]), b0, c04);
        c05 = _mm512_fmadd_ps(_mm512_set1_ps(a0[5]), b0, c05);
        c06 = _mm512_fmadd_ps(_mm512_set1_ps(a0[6]), b0, c06);
        c07 = _mm512_fmadd_ps(_mm512_set1_ps(a0[7]), b0, c07);
        c08 = _mm512_fmadd_ps(_mm512_set1_ps(a0[8]), b0, c08);
        c09 = _mm512_fmadd_ps(_mm512_set1_ps(a0[9]), b0, c09);
        c10 = _mm512_fmadd_ps(_mm512_set1_ps(a0[10]), b0, c10);
        c11 = _mm512_fmadd_ps(_mm512_set1_ps(a0[11]), b0, c11);
        c12 = _mm512_fmadd_ps(_mm512_set1_ps(a0[12]), b0, c12);
        c13 = _mm512_fmadd_ps(_mm512_set1_ps(a0[13]), b0, c13);
        c14 = _mm512_fmadd_ps(_mm512_set1_ps(a1[0]), b0, c14);
        c15 = _mm512_fmadd_ps(_mm512_set1_ps(a1[1]), b0, c15);
        c16 = _mm512_fmadd_ps(_mm512_set1_ps(a1[2]), b0, c16);
        c17 = _mm512_fmadd_ps(_mm512_set1_ps(a1[3]), b0, c17);
        c18 = _mm512_fmadd_ps(_mm512_set1_ps(a1[4]), b0, c18);
        c19 = _mm512_fmadd_ps(_mm512_set1_ps(a1[5]), b0, c19);
        c20 = _mm512_fmadd_ps(_mm512_set1_ps(a1[6]), b0, c20);
        c21 = _mm512_fmadd_ps(_mm512_set1_ps(a1[7]), b0, c21);
        c22 = _mm512_fmadd_ps(_mm512_set1_ps(a1[8]), b0, c22);
        c23 = _mm512_fmadd_ps(_mm512_set1_ps(a1[9]), b0, c23);
        c24 = _mm512_fmadd_ps(_mm512_set1_ps(a1[10]), b0, c24);
        c25 = _mm512_fmadd_ps(_mm512_set1_ps(a1[11]), b0, c25);
        c26 = _mm512_fmadd_ps(_mm512_set1_ps(a1[12]), b0, c26);
        c27 = _mm512_fmadd_ps(_mm512_set1_ps(a1[13]), b0, c27);
        a0 += MR;
        a1 += MR;
        b += NR;
    }
    const __m512 acc[2 * MR] = {
        c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
        c20, c21, c22, c23, c24, c25, c26, c27};
    tile_store_narrow(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

// The online-softmax step of GemmKernelInfo, 16 query columns at a time.
AVX512_FUNC static void softmax_step_avx512(float *s, int rows, float *m, float *l, float *corr) {
    for (int h = 0; h < NR; h += 16) {
        __m512 m_old = _mm512_loadu_ps(m + h), m_new;
        __m512 shift = softmax_shift(s + h, rows, m_old, &m_new);
        __m512 c = exp512(_mm512_sub_ps(m_old, shift)), sum = _mm512_setzero_ps();
        for (int r = 0; r < rows; r++) {
            float *sr = s + (long)r * NR + h;
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sr), shift));
            _mm512_storeu_ps(sr, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_storeu_ps(l + h, _mm512_fmadd_ps(_mm512_loadu_ps(l + h), c, sum));
        _mm512_storeu_ps(m + h, m_new);
        _mm512_storeu_ps(corr + h, c);
    }
}

// One A micro-panel from m <= 14 rows: 16 columns of every row at a time (rows 14, 15 and
// those past m are zeros), transposed, then column p's 14 values stored at dst + p*14.
AVX512_FUNC static void pack_a_rows_avx512(const float *src, int64_t lda, int m, int kc, float *dst) {
    for (int pb = 0; pb < kc; pb += 16) {
        int pn = kc - pb < 16 ? kc - pb : 16;
        __mmask16 cols = first_lanes16(pn);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            // the rows are far apart (lda): fetch each row's next 16 values two steps ahead
            if (i < m) _mm_prefetch((const char *)(src + i * lda + pb + 32), _MM_HINT_T0);
            r[i] = i < m ? _mm512_maskz_loadu_ps(cols, src + i * lda + pb) : _mm512_setzero_ps();
        }
        transpose16(r);
        for (int q = 0; q < pn; q++) _mm512_mask_storeu_ps(dst + (size_t)(pb + q) * MR, (__mmask16)0x3FFF, r[q]);
    }
}

// GemmKernelInfo.scale_columns: o[d*ld + j] *= corr[j], 16 columns at a time.
AVX512_FUNC static void scale_columns_avx512(float *o, int rows, int width, int ld, const float *corr) {
    for (int j = 0; j < width; j += 16) {
        __mmask16 k = first_lanes16(width - j);
        __m512 c = _mm512_maskz_loadu_ps(k, corr + j);
        for (int d = 0; d < rows; d++) {
            float *od = o + (size_t)d * ld + j;
            _mm512_mask_storeu_ps(od, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, od), c));
        }
    }
}

// GemmKernelInfo.finish_rows: out[j*ld_out + d] = o[d*ld + j] * inv[j], by 16 x 16 blocks
// transposed in registers (rows and queries past the ends are masked).
AVX512_FUNC static void finish_rows_avx512(const float *o, int rows, int nq, int ld, const float *inv, float *out,
                                           int64_t ld_out) {
    for (int j0 = 0; j0 < nq; j0 += 16) {
        int jn = nq - j0 < 16 ? nq - j0 : 16;
        __mmask16 kj = first_lanes16(jn);
        for (int d0 = 0; d0 < rows; d0 += 16) {
            int dn = rows - d0 < 16 ? rows - d0 : 16;
            __mmask16 kd = first_lanes16(dn);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < dn ? _mm512_maskz_loadu_ps(kj, o + (size_t)(d0 + i) * ld + j0) : _mm512_setzero_ps();
            transpose16(r);  // r[j] = o[d0..d0+15][j0 + j]
            for (int j = 0; j < jn; j++)
                _mm512_mask_storeu_ps(out + (j0 + j) * ld_out + d0, kd, _mm512_mul_ps(r[j], _mm512_set1_ps(inv[j0 + j])));
        }
    }
}

static const GemmKernelOps k_avx512_ops = {
    .kpack = 1, .pack_a = gemm_pack_a_f32, .pack_b = gemm_pack_b_f32,
    // a multiply-add costs ~1/32 cycle (vector FMA), packing a float ~1 cycle, streaming a float of
    // weights packed at load ~1/4 cycle (every thread whose blocks need those rows reads them)
    .fma_per_cycle = 32.0, .pack_cost = 1.0, .stream_cost = 0.25, .shared_b_words = (size_t)2 << 20,
    .micro = micro_avx512, .micro_narrow = micro_narrow_avx512, .micro_fetch = micro_fetch_avx512,
    .pack_a_rows = pack_a_rows_avx512, .softmax_step = softmax_step_avx512, .scale_columns = scale_columns_avx512,
    .finish_rows = finish_rows_avx512, .conv_pack_b_s1 = conv_pack_b_s1_avx512,
    .widen_f16 = gemm_widen_f16_avx512,
};
static const GemmKernelInfo k_avx512 = {.name = "avx512", .mr = MR, .nr = NR, .mc = 168, .kc = 384, .nc = 4096,
                                        .ops = &k_avx512_ops};

const GemmKernelInfo *gemm_kernel_avx512(void) { return &k_avx512; }

#else
const GemmKernelInfo *gemm_kernel_avx512(void) { return 0; }
#endif
