// The bf16 kernel set (AVX512_BF16, vdpbf16ps): gemm.c's loop nest with operands in bf16 k
// pairs. vdpbf16ps does, per f32 lane j,
//   acc[j] += a[2j] * b[2j] + a[2j+1] * b[2j+1]        (a, b: 32 bf16 each)
// so both packed operands hold one 32-bit word per (row or column, k pair) (kpack = 2):
//   packed A micro-panel: a[q * MR + i] = pair (A[i][2q], A[i][2q+1])
//   packed B micro-panel: b[q * NR + j] = pair (B[2q][j], B[2q+1][j])
// and the micro-kernel broadcasts A's word of row i against B's 16-word vectors.
// The weight operand is packed once (gemm_bf16_pack_weights, gemm_pack.c) in exactly these
// micro-panels, for all of K; the f32 operand is rounded and packed call by call by this
// file's packers. Also the pieces of the bf16 attention (attention.c).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/gemm_avx512_tile.h"

#define BF16_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

enum { MR = GEMM_BF16_MR, NR = GEMM_BF16_NR };  // register tile: 14 rows x 32 columns = 28 zmm accumulators
// Cache blocks (measured: docs/benchmarks.md, "bf16 blocking"): an A block MC x KC in L2
// (224 KiB of bf16); a B panel KC x NC, packed (side A: 2 MiB, in L2/L3) or the packed weights
// (side BT: only read, so as wide as the A block's packing is worth). KC is even (whole
// pairs), MC a multiple of MR, NC of NR.
enum { MC = 112, KC = 1024, NC_A = 1024, NC_BT = 4096 };

int gemm_bf16_supported(void) {
    // cached: -1 not known yet, else the answer; read and written atomically (any thread may ask)
    static int cached = -1;
    int v;
#pragma omp atomic read
    v = cached;
    if (v < 0) {
        __builtin_cpu_init();
        v = sd_cpu_isa() == ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#pragma omp atomic write
        cached = v;
    }
    return v;
}

// ---- The micro-kernel ----------------------------------------------------------------------
// C tile (m <= MR rows, n <= NR columns) from kp k pairs of a packed A micro-panel
// (a[q*MR + i]) and a packed B micro-panel (b[q*NR + j]):
//   acc[i][j] = sum_q dot(a[q*MR+i], b[q*NR+j])  (q increasing);  v = acc + bias_m[i] + bias_n[j]
//   C[i][j] = beta != 0 ? beta * C[i][j] + v : v.

// acc += dot of the broadcast A word with the B vector
BF16_FUNC static inline __m512 dp(__m512 acc, const uint32_t *a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32((int)*a), (__m512bh)b);
}

// The short tiles for a last micro-panel of 1-4 or 5-8 real rows (M = 64 tokens: 4 x 14 + 8;
// 16 tokens: 14 + 2), as in gemm_avx512.c: only `rows` rows of the A micro-panel (still packed
// MR wide), the same dot products in the same order per C element, so the same bits.
BF16_FUNC static inline __attribute__((always_inline)) void micro_short_bf16(
    const int rows, int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta,
    const float *bias_m, const float *bias_n, const char *fetch, int fetch_step) {
    __m512 acc[2 * 8];
#pragma GCC unroll 16
    for (int i = 0; i < 2 * rows; i++) acc[i] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++) {
        __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);
        // with 1-4 rows (side BT: B is the weight) each B value is read once, from memory:
        // fetch it 4 KB ahead
        _mm_prefetch((const char *)(rows <= 4 ? b + 1024 : b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + MR * 64), _MM_HINT_T0);
        if (fetch_step) _mm_prefetch(fetch + (long)q * fetch_step, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            acc[2 * i] = dp(acc[2 * i], a + i, b0);
            acc[2 * i + 1] = dp(acc[2 * i + 1], a + i, b1);
        }
        a += MR;
        b += NR;
    }
    tile_store(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

// The narrow tile for a B micro-panel with at most 16 real columns (a 4x4 map's 16 pixels):
// two A micro-panels (28 rows) against the first 16 columns, where the 14 x 32 tile would
// spend half of its dot products on zero columns. Same sums per C element as micro_bf16.
BF16_FUNC static void micro_narrow_bf16(int kp, const void *va0, const void *va1, const void *vb, float *c,
                                        int ldc, int m, int n, float beta, const float *bias_m, const float *bias_n) {
    const uint32_t *a0 = va0, *a1 = va1, *b = vb;
    __m512 acc[2 * MR];
#pragma GCC unroll 28
    for (int i = 0; i < 2 * MR; i++) acc[i] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++) {
        __m512i b0 = _mm512_loadu_si512(b);
        // side A (a 4x4 map's conv): both A micro-panels are weights streaming from memory,
        // used by this one tile: 3.5 KiB ahead in each
        _mm_prefetch((const char *)(a0 + MR * 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(a1 + MR * 64), _MM_HINT_T0);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            acc[i] = dp(acc[i], a0 + i, b0);
            acc[MR + i] = dp(acc[MR + i], a1 + i, b0);
        }
        a0 += MR;
        a1 += MR;
        b += NR;
    }
    tile_store_narrow(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

// The tile, and while it runs (fetch_step > 0) one cache line fetched per k pair at
// fetch + q * fetch_step (the next weight micro-panel of side BT, as gemm.c does for f32).
BF16_FUNC static inline __attribute__((always_inline)) void micro_tile_bf16(
    int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta, const float *bias_m,
    const float *bias_n, const char *fetch, int fetch_step) {
    if (m <= 4) {
        micro_short_bf16(4, kp, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, fetch_step);
        return;
    }
    if (m <= 8) {
        micro_short_bf16(8, kp, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, fetch_step);
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
    for (int q = 0; q < kp; q++) {
        __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);
        // Packed weights of side A stream from memory when N is small (each A panel meets only
        // N/32 B panels): fetch 64 pairs (3.5 KiB) ahead (docs/benchmarks.md, "Prefetch").
        _mm_prefetch((const char *)(a + MR * 64), _MM_HINT_T0);
        if (fetch_step) _mm_prefetch(fetch + (long)q * fetch_step, _MM_HINT_T0);
        c00 = dp(c00, a + 0, b0);  c01 = dp(c01, a + 0, b1);
        c10 = dp(c10, a + 1, b0);  c11 = dp(c11, a + 1, b1);
        c20 = dp(c20, a + 2, b0);  c21 = dp(c21, a + 2, b1);
        c30 = dp(c30, a + 3, b0);  c31 = dp(c31, a + 3, b1);
        c40 = dp(c40, a + 4, b0);  c41 = dp(c41, a + 4, b1);
        c50 = dp(c50, a + 5, b0);  c51 = dp(c51, a + 5, b1);
        c60 = dp(c60, a + 6, b0);  c61 = dp(c61, a + 6, b1);
        c70 = dp(c70, a + 7, b0);  c71 = dp(c71, a + 7, b1);
        c80 = dp(c80, a + 8, b0);  c81 = dp(c81, a + 8, b1);
        c90 = dp(c90, a + 9, b0);  c91 = dp(c91, a + 9, b1);
        ca0 = dp(ca0, a + 10, b0); ca1 = dp(ca1, a + 10, b1);
        cb0 = dp(cb0, a + 11, b0); cb1 = dp(cb1, a + 11, b1);
        cc0 = dp(cc0, a + 12, b0); cc1 = dp(cc1, a + 12, b1);
        cd0 = dp(cd0, a + 13, b0); cd1 = dp(cd1, a + 13, b1);
        a += MR;
        b += NR;
    }
    const __m512 acc[2 * MR] = {
        c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71, c80, c81, c90, c91,
        ca0, ca1, cb0, cb1, cc0, cc1, cd0, cd1};
    tile_store(c, ldc, m, n, acc, beta, bias_m, bias_n);
}

BF16_FUNC static void micro_bf16(int kp, const void *a, const void *b, float *c, int ldc, int m, int n,
                                 float beta, const float *bias_m, const float *bias_n) {
    micro_tile_bf16(kp, a, b, c, ldc, m, n, beta, bias_m, bias_n, NULL, 0);
}

// micro_bf16, and fetch_bytes (at most 64 per k pair) from `fetch` spread evenly over its loop.
BF16_FUNC static void micro_fetch_bf16(int kp, const void *a, const void *b, float *c, int ldc, int m, int n,
                                       float beta, const float *bias_m, const float *bias_n, const char *fetch,
                                       int fetch_bytes) {
    int step = (fetch_bytes + kp - 1) / kp;
    micro_tile_bf16(kp, a, b, c, ldc, m, n, beta, bias_m, bias_n, fetch, step < 64 ? step : 64);
}

// ---- Rounding and packing the f32 operand ----------------------------------------------------

// 16 words: word j = pair (even[j], odd[j]), both rounded to nearest even by vcvtne2ps2bf16.
BF16_FUNC static inline __m512i pair_words16(__m512 even, __m512 odd) {
    // cvtne2ps gives bf16 lanes 0..15 = even, 16..31 = odd; interleave them: lane 2j = even[j], 2j+1 = odd[j].
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

// width (<= 32) words: word j < n = pair (even[j], odd[j]) (odd may be NULL: zeros), words n.. = 0.
BF16_FUNC static inline void pack_pair_rows(const float *even, const float *odd, int n, int width, uint32_t *dst) {
    for (int h = 0; h < width; h += 16) {
        __mmask16 k = first_lanes16(n - h);
        __m512 e = _mm512_maskz_loadu_ps(k, even + h);
        __m512 o = odd ? _mm512_maskz_loadu_ps(k, odd + h) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(dst + h, first_lanes16(width - h), pair_words16(e, o));
    }
}

// 32 contiguous values of a row times scale (those past `left` read as 0) rounded to 32 bf16 in
// k order: already 16 pair words (src[2q], src[2q+1]). scale = 1 changes no bits.
BF16_FUNC static inline __m512 round_pairs32(const float *src, int left, __m512 scale) {
    __m512 lo = _mm512_maskz_loadu_ps(first_lanes16(left), src);
    __m512 hi = left > 16 ? _mm512_maskz_loadu_ps(first_lanes16(left - 16), src + 16) : _mm512_setzero_ps();
    return (__m512)_mm512_cvtne2ps_pbh(_mm512_mul_ps(hi, scale), _mm512_mul_ps(lo, scale));
}

// `rows` rows of kc contiguous values (ld apart) times scale, as a panel of `width` rows and
// ceil(kc/2) pair words: dst[q*width + i] = pair (scale*src[i][2q], scale*src[i][2q+1]); rows
// [rows, width) are zeros. 16 rows at a time: 32 values of each round to 16 pair words in k
// order, and the 16 vectors are transposed so that pair q of the 16 rows is one vector.
BF16_FUNC static void pack_rows_transposed(const float *src, int64_t ld, int rows, int kc, float scale, uint32_t *dst,
                                           int width) {
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int i0 = 0; i0 < width; i0 += 16) {
        __mmask16 lanes = first_lanes16(width - i0);
        for (int t = 0; t < kc; t += 32) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                if (i0 + i >= rows) {
                    r[i] = _mm512_setzero_ps();
                    continue;
                }
                const float *row = src + (int64_t)(i0 + i) * ld + t;
                // the rows are activations just written by another layer, often not in L2:
                // fetch this row's next 32 values (two t steps ahead) while these round
                _mm_prefetch((const char *)(row + 64), _MM_HINT_T0);
                _mm_prefetch((const char *)(row + 80), _MM_HINT_T0);
                r[i] = round_pairs32(row, kc - t, vscale);
            }
            transpose16(r);
            int pairs = (kc - t + 1) / 2 < 16 ? (kc - t + 1) / 2 : 16;
            for (int q = 0; q < pairs; q++)
                _mm512_mask_storeu_ps(dst + (size_t)(t / 2 + q) * width + i0, lanes, r[q]);
        }
    }
}

// Side A: the B panel rows [p0, p0+kc) x columns [j0, j0+nc) of op(B) (or of pack_b's
// implicit B) as micro-panels of NR columns and kp = ceil(kc/2) pairs: dst[jr*kp + q*NR + j].
BF16_FUNC static void pack_b_bf16(const GemmKernelInfo *ki, const GemmProblem *g, int p0, int kc, int j0, int nc,
                                  void *vdst, float *scratch) {
    (void)ki;
    uint32_t *dst = vdst;
    const int kp = (kc + 1) / 2;
    if (g->pack_b_pairs) {
        // made in pairs already (the bf16 convolution: conv_pack_b_pairs_avx512)
        g->pack_b_pairs(g->pack_b_ctx, p0, kc, j0, nc, dst);
    } else if (g->pack_b) {
        // The implicit B (im2col) one micro-panel at a time into kc x NR floats, then to pairs.
        for (int jr = 0; jr < nc; jr += NR) {
            int n = nc - jr < NR ? nc - jr : NR;
            g->pack_b(g->pack_b_ctx, p0, kc, j0 + jr, n, NR, scratch);
            uint32_t *d = dst + (size_t)jr * kp;
            for (int q = 0; q < kp; q++) {
                const float *even = scratch + (size_t)2 * q * NR;
                pack_pair_rows(even, 2 * q + 1 < kc ? even + NR : NULL, NR, NR, d + (size_t)q * NR);
            }
        }
    } else if (!g->trans_b) {
        // B is K x N: rows 2q and 2q+1 give the pairs; each source row is read in one sweep over nc.
        for (int q = 0; q < kp; q++) {
            const float *even = g->b + (int64_t)(p0 + 2 * q) * g->ldb + j0;
            const float *odd = 2 * q + 1 < kc ? even + g->ldb : NULL;
            for (int jr = 0; jr < nc; jr += NR) {
                int n = nc - jr < NR ? nc - jr : NR;
                pack_pair_rows(even + jr, odd ? odd + jr : NULL, n, NR, dst + (size_t)jr * kp + (size_t)q * NR);
            }
        }
    } else {
        // B stored N x K: column j of op(B) is a contiguous row of b.
        for (int jr = 0; jr < nc; jr += NR) {
            int n = nc - jr < NR ? nc - jr : NR;
            pack_rows_transposed(g->b + (int64_t)(j0 + jr) * g->ldb + p0, g->ldb, n, kc, 1.0f, dst + (size_t)jr * kp, NR);
        }
    }
}

// Side BT: the A block rows [i0, i0+mc) x columns [p0, p0+kc) of op(A) as micro-panels of
// MR rows and kp pairs: dst[ir*kp + q*MR + i]. Rows past mc are zeros.
BF16_FUNC static void pack_a_bf16(const GemmKernelInfo *ki, const GemmProblem *g, int i0, int mc, int p0, int kc,
                                  void *vdst) {
    (void)ki;
    uint32_t *dst = vdst;
    const int kp = (kc + 1) / 2;
    for (int ir = 0; ir < mc; ir += MR) {
        int m = mc - ir < MR ? mc - ir : MR;
        uint32_t *d = dst + (size_t)ir * kp;
        if (!g->trans_a) {
            // A is M x K: each row is contiguous in k.
            pack_rows_transposed(g->a + (int64_t)(i0 + ir) * g->lda + p0, g->lda, m, kc, 1.0f, d, MR);
        } else {
            // A is K x M: for each k the MR values are contiguous.
            for (int q = 0; q < kp; q++) {
                const float *even = g->a + (int64_t)(p0 + 2 * q) * g->lda + i0 + ir;
                pack_pair_rows(even, 2 * q + 1 < kc ? even + g->lda : NULL, m, MR, d + (size_t)q * MR);
            }
        }
    }
}

// ---- The pieces attention.c uses for its bf16 path ------------------------------------------

void gemm_bf16_micro(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta) {
    micro_bf16(kp, a, b, c, ldc, m, n, beta, NULL, NULL);
}

void gemm_bf16_pair_rows(const float *even, const float *odd, int n, int width, uint32_t *dst) {
    pack_pair_rows(even, odd, n, width, dst);
}

void gemm_bf16_rows_to_panel(const float *src, int64_t ld, int rows, int kc, float scale, uint32_t *dst, int width) {
    pack_rows_transposed(src, ld, rows, kc, scale, dst, width);
}

// The AVX-512 online-softmax step (softmax_step_avx512) and the pairing of P's rows
// (gemm_bf16_pair_rows) in one pass over the 32-column score tile: rows 2p and 2p+1 are
// exponentiated, added to the column sums in row order, and stored as pair row p in place
// (p <= 2p: its f32 values were read already; each 16-column half is written only by its
// own pass). Same exps, sums and rounding as the two steps, so the same bits.
BF16_FUNC void gemm_bf16_softmax_pairs(float *s, int rows, float *m, float *l, float *corr) {
    uint32_t *pairs = (uint32_t *)s;
    for (int h = 0; h < NR; h += 16) {
        __m512 m_old = _mm512_loadu_ps(m + h), m_new;
        __m512 shift = softmax_shift(s + h, rows, m_old, &m_new);
        __m512 c = exp512(_mm512_sub_ps(m_old, shift)), sum = _mm512_setzero_ps();
        for (int p = 0; 2 * p < rows; p++) {
            __m512 even = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + (size_t)2 * p * NR + h), shift));
            __m512 odd = _mm512_setzero_ps();
            sum = _mm512_add_ps(sum, even);
            if (2 * p + 1 < rows) {
                odd = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + (size_t)(2 * p + 1) * NR + h), shift));
                sum = _mm512_add_ps(sum, odd);
            }
            _mm512_storeu_si512(pairs + (size_t)p * NR + h, pair_words16(even, odd));
        }
        _mm512_storeu_ps(l + h, _mm512_fmadd_ps(_mm512_loadu_ps(l + h), c, sum));
        _mm512_storeu_ps(m + h, m_new);
        _mm512_storeu_ps(corr + h, c);
    }
}


static const GemmKernelOps k_avx512_bf16_ops = {
    .nc_in_place = NC_BT, .kpack = 2, .pack_a = pack_a_bf16, .pack_b = pack_b_bf16, .scratch_floats = KC * NR,
    // a multiply-add costs ~1/64 cycle (vdpbf16ps), rounding and packing a float ~1/2, reading a
    // weight ~1/8: side A packs each block's B panel, side BT its A block; the weights are only read
    .fma_per_cycle = 64.0, .pack_cost = 0.5, .stream_cost = 0.125,
    .shared_b_words = 0,  // not measured for bf16: every block packs its B panel
    .weights_whole_k = 1, .micro = micro_bf16, .micro_narrow = micro_narrow_bf16, .micro_fetch = micro_fetch_bf16};
static const GemmKernelInfo k_avx512_bf16 = {
    .name = "avx512_bf16", .mr = MR, .nr = NR, .mc = MC, .kc = KC, .nc = NC_A, .ops = &k_avx512_bf16_ops};

const GemmKernelInfo *gemm_kernel_avx512_bf16(void) { return &k_avx512_bf16; }

#else  // not x86-64: no bf16 kernel

#if !defined(__aarch64__)  // arm64: gemm_neon_bf16.c's pieces (FEAT_BF16)
void gemm_bf16_micro(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta) {
    (void)kp, (void)a, (void)b, (void)c, (void)ldc, (void)m, (void)n, (void)beta;
}
void gemm_bf16_pair_rows(const float *even, const float *odd, int n, int width, uint32_t *dst) {
    (void)even, (void)odd, (void)n, (void)width, (void)dst;
}
void gemm_bf16_rows_to_panel(const float *src, int64_t ld, int rows, int kc, float scale, uint32_t *dst, int width) {
    (void)src, (void)ld, (void)rows, (void)kc, (void)scale, (void)dst, (void)width;
}
void gemm_bf16_softmax_pairs(float *s, int rows, float *m, float *l, float *corr) {
    (void)s, (void)rows, (void)m, (void)l, (void)corr;
}
int gemm_bf16_supported(void) { return 0; }
#endif

const GemmKernelInfo *gemm_kernel_avx512_bf16(void) { return NULL; }

#endif
