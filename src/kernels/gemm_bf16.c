// The bf16 GEMM: gemm.c's blocked loops (Goto/BLIS) with operands in bf16 k
// pairs and a vdpbf16ps micro-kernel. vdpbf16ps does, per f32 lane j,
//   acc[j] += a[2j] * b[2j] + a[2j+1] * b[2j+1]        (a, b: 32 bf16 each)
// so both packed operands hold one 32-bit word per (row or column, k pair):
//   packed A micro-panel: a[q * MR + i] = pair (A[i][2q], A[i][2q+1])
//   packed B micro-panel: b[q * NR + j] = pair (B[2q][j], B[2q+1][j])
// and the micro-kernel broadcasts A's word of row i against B's 16-word vectors.
// The weight operand is packed once (gemm_bf16_pack_weights) in exactly these
// micro-panels, for all of K; the f32 operand is rounded and packed call by call.
// Every C element is summed over k pairs in increasing order, block of KC by
// block (first block: + bias, beta; later ones: + C), whatever the thread grid:
// the bits do not depend on the thread count.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/gemm_bf16.h"

enum { MR = 14, NR = 32 };          // register tile: 14 rows x 32 columns = 28 zmm accumulators
// Cache blocks, measured on Zen 5 (KC 768..1024 x MC 112..168 are all within noise): an A
// block MC x KC in L2 (224 KiB of bf16); a B panel KC x NC, packed (side A: 2 MiB, in L2/L3;
// 1024 rather than 4096 columns made M=320, N=4096 5% faster) or the packed weights (side
// BT: only read, so as wide as the A block's packing is worth). KC is even (whole pairs), MC
// a multiple of MR, NC of NR.
enum { MC = 112, KC = 1024, NC_A = 1024, NC_BT = 4096 };
enum { KCP = KC / 2 };

// ---- Rounding (portable) --------------------------------------------------------------

uint16_t bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN: keep it, make it quiet
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          // zero, subnormal: signed zero
    u += 0x7FFFu + ((u >> 16) & 1u);  // to nearest, ties to even (a carry into the exponent is right, up to inf)
    return (uint16_t)(u >> 16);
}

float f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t pair_word(float even, float odd) {
    return (uint32_t)bf16_from_f32(even) | (uint32_t)bf16_from_f32(odd) << 16;
}

// ---- Packed weights (portable: done once per weight) ------------------------------------

int gemm_bf16_pack_weights(Bf16Packed *p, const float *w, int rows, int K, int side) {
    memset(p, 0, sizeof *p);
    if (rows < 0 || K < 0 || (side != GEMM_BF16_A && side != GEMM_BF16_BT) || (!w && rows > 0 && K > 0))
        return sd_errorf("gemm_bf16_pack_weights: bad arguments rows=%d K=%d side=%d", rows, K, side);
    int panel = side == GEMM_BF16_A ? MR : NR;
    int kpairs = (K + 1) / 2, panels = (rows + panel - 1) / panel;
    size_t words = (size_t)panels * panel * kpairs;
    p->rows = rows;
    p->K = K;
    p->side = side;
    p->panel = panel;
    p->kpairs = kpairs;
    if (words == 0) return 0;
    // 2 MiB pages where the system has them: 4 KiB page faults cost ~14 us each in this VM,
    // 100 ms for a 1280 x 11520 weight, five times the packing itself.
    void *mem = sd_alloc_large(words * sizeof(uint32_t));
    if (!mem) return sd_errorf("gemm_bf16_pack_weights: out of memory for %d x %d bf16 weights", rows, K);
    p->data = mem;
    p->bytes = words * sizeof(uint32_t);
    // Pair by pair: the panel is written in order, its rows are read as `panel` sequential streams.
    for (int P = 0; P < panels; P++) {
        uint32_t *d = p->data + (size_t)P * kpairs * panel;
        for (int q = 0; q < kpairs; q++) {
            for (int r = 0; r < panel; r++) {
                int row = P * panel + r;
                if (row < rows) {
                    const float *src = w + (int64_t)row * K + 2 * q;
                    *d++ = pair_word(src[0], 2 * q + 1 < K ? src[1] : 0.0f);
                } else {
                    *d++ = 0;
                }
            }
        }
    }
    return 0;
}

void gemm_bf16_packed_free(Bf16Packed *p) {
    free(p->data);
    memset(p, 0, sizeof *p);
}

// Arguments shared by every build (checked before the CPU test, so that a caller's
// mistake is reported the same way everywhere).
static int check_problem(const GemmProblem *g, const Bf16Packed *w) {
    if (w->side != GEMM_BF16_A && w->side != GEMM_BF16_BT)
        return sd_errorf("gemm_bf16_run: weights packed for unknown side %d", w->side);
    if (g->alpha != 1.0f) return sd_errorf("gemm_bf16_run: alpha must be 1, got %g", (double)g->alpha);
    if (w->side == GEMM_BF16_A && (w->rows != g->M || w->K != g->K))
        return sd_errorf("gemm_bf16_run: side-A weights are %d x %d, the problem needs M x K = %d x %d", w->rows, w->K,
                         g->M, g->K);
    if (w->side == GEMM_BF16_BT && (w->rows != g->N || w->K != g->K))
        return sd_errorf("gemm_bf16_run: side-BT weights are %d x %d, the problem needs N x K = %d x %d", w->rows,
                         w->K, g->N, g->K);
    // The f32 operand cannot come from f32 weights packed at load (that is the weight's side).
    if ((w->side == GEMM_BF16_A && g->packed_b) || (w->side == GEMM_BF16_BT && g->packed_a))
        return sd_errorf("gemm_bf16_run: the f32 operand must be a plain matrix or pack_b, not packed f32 weights");
    if (w->side == GEMM_BF16_A && !g->pack_b && !g->b && g->K > 0 && g->N > 0)
        return sd_errorf("gemm_bf16_run: side A needs B (g->b or g->pack_b)");
    if (w->side == GEMM_BF16_BT && !g->a && g->K > 0 && g->M > 0)
        return sd_errorf("gemm_bf16_run: side BT needs A (g->a)");
    return 0;
}

int linear_forward_bf16(const float *x, const Bf16Packed *W, const float *b, float *y, int rows) {
    GemmProblem g = {.M = rows, .N = W->rows, .K = W->K, .a = x, .lda = W->K, .alpha = 1.0f, .bias_n = b,
                     .beta = 0.0f, .c = y, .ldc = W->rows};
    return gemm_bf16_run(&g, W);
}

int linear_forward_bf16_cf(const float *x, const Bf16Packed *W, const float *b, float *y, int rows) {
    GemmProblem g = {.M = rows, .N = W->rows, .K = W->K, .a = x, .lda = rows, .trans_a = 1, .alpha = 1.0f,
                     .bias_n = b, .beta = 0.0f, .c = y, .ldc = W->rows};
    return gemm_bf16_run(&g, W);
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/gemm_avx512_tile.h"

#define BF16_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

int gemm_bf16_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = sd_cpu_isa() == ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
    }
    return cached;
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
BF16_FUNC static void micro_narrow_bf16(int kp, const uint32_t *a0, const uint32_t *a1, const uint32_t *b, float *c,
                                        int ldc, int m, int n, float beta, const float *bias_m, const float *bias_n) {
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
        // N/32 B panels): fetch 64 pairs (3.5 KiB) ahead. 1280x64x11520 went from 260 to 350 GFLOP/s.
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

BF16_FUNC static void micro_bf16(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n,
                                 float beta, const float *bias_m, const float *bias_n) {
    micro_tile_bf16(kp, a, b, c, ldc, m, n, beta, bias_m, bias_n, NULL, 0);
}

// micro_bf16, and fetch_bytes (at most 64 per k pair) from `fetch` spread evenly over its loop.
BF16_FUNC static void micro_fetch_bf16(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n,
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
BF16_FUNC static void pack_b_bf16(const GemmProblem *g, int p0, int kc, int j0, int nc, uint32_t *dst,
                                  float *scratch) {
    const int kp = (kc + 1) / 2;
    if (g->pack_b) {
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
BF16_FUNC static void pack_a_bf16(const GemmProblem *g, int i0, int mc, int p0, int kc, uint32_t *dst) {
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

// ---- The blocked loops for one block of C ----------------------------------------------------

// Side A's B panel written straight in pairs (the bf16 convolution): rows [p0, p0+kc) x
// columns [j0, j0+nc) as micro-panels of NR columns, dst[jr*kp + q*NR + j], kp = ceil(kc/2).
typedef void (*PackPairsB)(const void *ctx, int p0, int kc, int j0, int nc, uint32_t *dst);

typedef struct {
    const GemmProblem *g;
    const Bf16Packed *w;
    PackPairsB pack_pairs;  // side A: when set, makes the B panel instead of g->b / g->pack_b
    const void *pack_pairs_ctx;
    uint32_t *pack;         // side A: the B panel (KCP x NC_A words); side BT: the A block (MC x KCP words)
    float *scratch;         // side A with pack_b: one f32 micro-panel, KC x NR
} BlockArgs;

BF16_FUNC static void gemm_bf16_block(const BlockArgs *ba, int m0, int m1, int n0, int n1) {
    const GemmProblem *g = ba->g;
    const Bf16Packed *w = ba->w;
    const int side_a = w->side == GEMM_BF16_A;
    const size_t panel_words = (size_t)w->kpairs * w->panel;  // one weight micro-panel, all of K
    const int NC = side_a ? NC_A : NC_BT;
    for (int jc = n0; jc < n1; jc += NC) {
        int nc = n1 - jc < NC ? n1 - jc : NC;
        for (int pc = 0; pc < g->K; pc += KC) {
            int kc = g->K - pc < KC ? g->K - pc : KC;
            int kp = (kc + 1) / 2;
            if (side_a && ba->pack_pairs) ba->pack_pairs(ba->pack_pairs_ctx, pc, kc, jc, nc, ba->pack);
            else if (side_a) pack_b_bf16(g, pc, kc, jc, nc, ba->pack, ba->scratch);
            // The first k block applies beta and the biases; later ones accumulate into C.
            int first = pc == 0;
            float beta = first ? g->beta : 1.0f;
            for (int ic = m0; ic < m1; ic += MC) {
                int mc = m1 - ic < MC ? m1 - ic : MC;
                // side BT: the weights are B and stream from memory; each of the `tiles` tiles on
                // a micro-panel fetches its slice of the next one (gemm.c's gemm_block says why)
                const int tiles = (mc + MR - 1) / MR;
                const int fetch = !side_a && tiles >= 2;
                const int slice = (int)(((size_t)kp * NR * sizeof(uint32_t) + tiles - 1) / tiles);
                if (!side_a) pack_a_bf16(g, ic, mc, pc, kc, ba->pack);
                for (int jr = 0; jr < nc; jr += NR) {
                    int n = nc - jr < NR ? nc - jr : NR;
                    const float *bias_n = first && g->bias_n ? g->bias_n + jc + jr : NULL;
                    const uint32_t *b = side_a ? ba->pack + (size_t)jr * kp
                                               : w->data + (size_t)((jc + jr) / NR) * panel_words + (size_t)(pc / 2) * NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int m = mc - ir < MR ? mc - ir : MR;
                        const float *bias_m = first && g->bias_m ? g->bias_m + ic + ir : NULL;
                        // the A micro-panel of rows [ic+ir, +MR): the next one is panel_words (weights)
                        // or MR*kp (the pack buffer) further
                        const size_t next = side_a ? panel_words : (size_t)MR * kp;
                        const uint32_t *a = side_a ? w->data + (size_t)((ic + ir) / MR) * panel_words + (size_t)(pc / 2) * MR
                                                   : ba->pack + (size_t)ir * kp;
                        float *c = g->c + (int64_t)(ic + ir) * g->ldc + jc + jr;
                        if (2 * n <= NR && mc - ir > MR) {
                            // a half-empty B micro-panel (a 4x4 map): two A micro-panels at once
                            int m2 = mc - ir < 2 * MR ? mc - ir : 2 * MR;
                            micro_narrow_bf16(kp, a, a + next, b, c, g->ldc, m2, n, beta, bias_m, bias_n);
                            ir += MR;
                            continue;
                        }
                        if (fetch && jr + NR < nc)
                            micro_fetch_bf16(kp, a, b, c, g->ldc, m, n, beta, bias_m, bias_n,
                                             (const char *)(b + panel_words) + (size_t)(ir / MR) * slice, slice);
                        else
                            micro_bf16(kp, a, b, c, g->ldc, m, n, beta, bias_m, bias_n);
                    }
                }
            }
        }
    }
}

// ---- Per-thread workspace, kept between calls (like gemm.c's) -------------------------------

enum { MAX_POOL_THREADS = 256 };
enum { PACK_WORDS = KCP * (NC_A > MC ? NC_A : MC), SCRATCH_FLOATS = KC * NR };
static void *g_pool[MAX_POOL_THREADS];

// A workspace: pack_words words of packed operand, then SCRATCH_FLOATS floats of scratch.
static size_t workspace_bytes(size_t pack_words) {
    return pack_words * sizeof(uint32_t) + (size_t)SCRATCH_FLOATS * sizeof(float);
}

// The pool's workspaces fit any problem.
static void *pool_get(int tid) {
    if (!g_pool[tid]) g_pool[tid] = sd_alloc_large(workspace_bytes(PACK_WORDS));
    return g_pool[tid];
}

// The packed-operand words one problem needs (for the heap workspace of a nested call).
static size_t pack_words_for(const GemmProblem *g, const Bf16Packed *w) {
    size_t kp = (size_t)((g->K < KC ? g->K : KC) + 1) / 2;
    if (w->side == GEMM_BF16_A) return kp * (size_t)(((g->N < NC_A ? g->N : NC_A) + NR - 1) / NR * NR);
    return kp * (size_t)(((g->M < MC ? g->M : MC) + MR - 1) / MR * MR);
}

static BlockArgs block_args(const GemmProblem *g, const Bf16Packed *w, PackPairsB pack_pairs, const void *ctx,
                            void *workspace, size_t pack_words) {
    BlockArgs ba = {g, w, pack_pairs, ctx, (uint32_t *)workspace, (float *)((uint32_t *)workspace + pack_words)};
    return ba;
}

// K == 0: C = bias_m + bias_n + beta C.
// The product with checked arguments; pack_pairs (side A only) may replace g->b / g->pack_b.
static int gemm_bf16_drive(const GemmProblem *g, const Bf16Packed *w, PackPairsB pack_pairs, const void *ctx) {
    if (g->M <= 0 || g->N <= 0) return 0;
    if (g->K <= 0) {
        gemm_bias_beta(g);
        return 0;
    }
    // the weights are bf16 (2 bytes), read once from memory
    int nested, threads = gemm_threads_for(g, 2.0 * w->rows * w->K, &nested);
    // Workspace first (on this thread), so that running out of memory is known before any work.
    if (nested) {
        void *ws = NULL;
        size_t words = pack_words_for(g, w);
        if (posix_memalign(&ws, 64, workspace_bytes(words)) != 0) return sd_errorf("gemm_bf16_run: out of memory");
        BlockArgs ba = block_args(g, w, pack_pairs, ctx, ws, words);
        gemm_bf16_block(&ba, 0, g->M, 0, g->N);
        free(ws);
        return 0;
    }
    for (int t = 0; t < threads; t++)
        if (!pool_get(t)) return sd_errorf("gemm_bf16_run: out of memory for the pack buffers");
    if (threads <= 1) {
        BlockArgs ba = block_args(g, w, pack_pairs, ctx, g_pool[0], PACK_WORDS);
        gemm_bf16_block(&ba, 0, g->M, 0, g->N);
        return 0;
    }
#ifdef _OPENMP
    // Blocks are handed out dynamically: each C element is still computed by one thread in the
    // same order (the blocking does not depend on the thread), so the bits do not change.
    int tm, tn;
    // a multiply-add costs ~1/64 cycle (vdpbf16ps), rounding and packing a float ~1/2, reading a
    // weight ~1/8: side A packs each block's B panel, side BT its A block; the weights are only read
    const int side_a = w->side == GEMM_BF16_A;
    gemm_choose_grid(g->M, g->N, g->K, threads, MR, NR, 64.0, side_a ? 0.125 : 0.5, side_a ? 0.5 : 0.125, &tm, &tn);
    const int panels_m = (g->M + MR - 1) / MR, panels_n = (g->N + NR - 1) / NR;
#pragma omp parallel num_threads(threads)
    {
        BlockArgs ba = block_args(g, w, pack_pairs, ctx, g_pool[omp_get_thread_num()], PACK_WORDS);
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < tm * tn; blk++) {
            int ti = blk / tn, tj = blk % tn;
            int m0 = (int)((int64_t)panels_m * ti / tm) * MR, m1 = (int)((int64_t)panels_m * (ti + 1) / tm) * MR;
            int n0 = (int)((int64_t)panels_n * tj / tn) * NR, n1 = (int)((int64_t)panels_n * (tj + 1) / tn) * NR;
            if (m1 > g->M) m1 = g->M;
            if (n1 > g->N) n1 = g->N;
            if (m0 < m1 && n0 < n1) gemm_bf16_block(&ba, m0, m1, n0, n1);
        }
    }
#endif
    return 0;
}

int gemm_bf16_run(const GemmProblem *g, const Bf16Packed *w) {
    if (check_problem(g, w) != 0) return -1;
    if (!gemm_bf16_supported()) return sd_errorf("gemm_bf16_run: this CPU has no AVX512_BF16 (or AVX-512 is not in use)");
    return gemm_bf16_drive(g, w, NULL, NULL);
}

// ---- Convolution: the B panel made in pairs from a padded bf16 copy of the input ----------------
// X_col[(ci,kh,kw), (oh,ow)] = xp[ci][oh*s + kh][ow*s + kw], where xp is the sample rounded to bf16
// once and zero-padded (Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right): no bounds
// tests, and with stride 1 a run of output pixels along one row is a contiguous run of xp.
// The values are those of conv.c's implicit im2col rounded to bf16, so the result has the
// bits of gemm_bf16_run with an f32 im2col pack_b (tests/test_gemm_bf16.c checks it).

typedef struct {
    const uint16_t *xp;   // Cin x Hp x Wp
    const int32_t *koff;  // per k = (ci, kh, kw): ci*Hp*Wp + kh*Wp + kw
    int Wp, stride, Wo;
} ConvPairsCtx;

// Micro-panels packed together (NC_A / NR: the whole panel).
enum { PANEL_GROUP = NC_A / NR };

typedef struct {
    int nruns;
    PixelRun run[NR];  // conv_split_runs
    int32_t base[NR];  // offset in xp of run r's first pixel at kh = kw = 0
} PixelRuns;

// Row k of X_col over a micro-panel's pixels as 32 bf16 lanes (lanes past the pixels are 0).
BF16_FUNC static inline __m512i conv_row(const ConvPairsCtx *cx, int k, const PixelRuns *pr, uint16_t *tmp) {
    const uint16_t *src = cx->xp + cx->koff[k];
    if (cx->stride == 1) {
        // One masked load per run into lanes [col, col+count): lane L reads src[base + L - col]
        // (base >= col because Wp >= Wo, so the address is inside xp; masked lanes are not read).
        __m512i v = _mm512_setzero_si512();
        for (int r = 0; r < pr->nruns; r++) {
            __mmask32 lanes = (__mmask32)((((uint64_t)1 << pr->run[r].count) - 1) << pr->run[r].col);
            v = _mm512_mask_loadu_epi16(v, lanes, src + pr->base[r] - pr->run[r].col);
        }
        return v;
    }
    memset(tmp, 0, NR * sizeof(uint16_t));
    for (int r = 0; r < pr->nruns; r++) {
        const uint16_t *in = src + pr->base[r];
        for (int t = 0; t < pr->run[r].count; t++) tmp[pr->run[r].col + t] = in[t * cx->stride];
    }
    return _mm512_loadu_si512(tmp);
}

BF16_FUNC static void pack_conv_pairs(const void *vctx, int p0, int kc, int j0, int nc, uint32_t *dst) {
    const ConvPairsCtx *cx = vctx;
    const int kp = (kc + 1) / 2, s = cx->stride, Wo = cx->Wo;
    // word j of the low / high half = (row 2q lane j, row 2q+1 lane j), j = 0..15 / 16..31
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                        37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24, 55, 23, 54, 22,
                                        53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
    uint16_t tmp[NR];
    // k outside, the micro-panels inside: for one k row the loads of consecutive panels are
    // consecutive pixels of xp (a stream the prefetchers follow), where panel by panel they
    // jumped over Cin planes and 3 rows. Packing 3x3, 128 -> 128 @512x512 went from 66 to 32 ms.
    for (int jg = 0; jg < nc; jg += PANEL_GROUP * NR) {
        int npan = (nc - jg + NR - 1) / NR < PANEL_GROUP ? (nc - jg + NR - 1) / NR : PANEL_GROUP;
        PixelRuns prs[PANEL_GROUP];
        for (int g = 0; g < npan; g++) {
            int jr = jg + g * NR, n = nc - jr < NR ? nc - jr : NR;
            PixelRuns *pr = &prs[g];
            pr->nruns = conv_split_runs(j0 + jr, n, Wo, pr->run, NR);
            for (int r = 0; r < pr->nruns; r++) pr->base[r] = (pr->run[r].oh * cx->Wp + pr->run[r].ow) * s;
        }
        for (int q = 0; q < kp; q++) {
            for (int g = 0; g < npan; g++) {
                uint32_t *d = dst + (size_t)(jg + g * NR) * kp + (size_t)q * NR;
                // a new input channel every kh*kw rows is a plane not read yet: fetch the pixels
                // of the k row 8 rows (4 pairs) ahead, the first and last of each run
                if (s == 1 && 2 * q + 8 < kc) {
                    const uint16_t *ahead = cx->xp + cx->koff[p0 + 2 * q + 8];
                    for (int r = 0; r < prs[g].nruns; r++) {
                        _mm_prefetch((const char *)(ahead + prs[g].base[r]), _MM_HINT_T0);
                        _mm_prefetch((const char *)(ahead + prs[g].base[r] + prs[g].run[r].count - 1), _MM_HINT_T0);
                    }
                }
                __m512i even = conv_row(cx, p0 + 2 * q, &prs[g], tmp);
                __m512i odd = 2 * q + 1 < kc ? conv_row(cx, p0 + 2 * q + 1, &prs[g], tmp) : _mm512_setzero_si512();
                _mm512_storeu_si512(d, _mm512_permutex2var_epi16(even, lo, odd));
                _mm512_storeu_si512(d + 16, _mm512_permutex2var_epi16(even, hi, odd));
            }
        }
    }
}

// One channel of the sample into its zero-padded bf16 plane.
BF16_FUNC static void round_padded_plane(const float *x, int H, int W, int pad_top, int pad_left, int Hp, int Wp,
                                         uint16_t *plane) {
    memset(plane, 0, (size_t)Hp * Wp * sizeof(uint16_t));
    for (int h = 0; h < H; h++) {
        const float *src = x + (size_t)h * W;
        uint16_t *out = plane + (size_t)(h + pad_top) * Wp + pad_left;
        for (int t = 0; t < W; t += 16) {
            __mmask16 k = first_lanes16(W - t);
            __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + t));
            _mm256_mask_storeu_epi16(out + t, k, (__m256i)b);
        }
    }
}

// The padded bf16 input, kept between calls up to 32 MB (a UNet's maps; the VAE's 512x512 ones
// are allocated per call): a fresh buffer each call was a fresh set of pages for the kernel to
// fault in and zero (the calling thread's only; a nested call allocates its own).
enum { PLANE_CACHE_MAX = 32 << 20 };
static void *g_plane_cache;
static size_t g_plane_cache_bytes;

int conv2d_forward_bf16(const float *x, int N, int Cin, int H, int W, const Bf16Packed *weight, const float *bias,
                        int Cout, Conv2dGeometry g, float *y) {
    const int KH = g.kernel_h, KW = g.kernel_w, K = Cin * KH * KW;
    if (weight->side != GEMM_BF16_A || weight->rows != Cout || weight->K != K)
        return sd_errorf("conv2d_forward_bf16: weights packed as side %d, %d x %d; the conv needs side A, %d x %d",
                         weight->side, weight->rows, weight->K, Cout, K);
    if (!gemm_bf16_supported())
        return sd_errorf("conv2d_forward_bf16: this CPU has no AVX512_BF16 (or AVX-512 is not in use)");
    int Ho = conv_out_size(H, KH, g.stride, g.pad_top, g.pad_bottom);
    int Wo = conv_out_size(W, KW, g.stride, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0 || N <= 0) return 0;
    GemmProblem p;
    memset(&p, 0, sizeof p);
    p.M = Cout;
    p.N = Ho * Wo;
    p.K = K;
    p.alpha = 1.0f;
    p.bias_m = bias;
    p.ldc = Ho * Wo;
    int is_1x1 = KH == 1 && KW == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 &&
                 g.pad_right == 0;
    if (is_1x1) {
        // x is already the Cin x HW matrix B
        for (int n = 0; n < N; n++) {
            p.b = x + (int64_t)n * Cin * H * W;
            p.ldb = H * W;
            p.c = y + (int64_t)n * Cout * Ho * Wo;
            if (gemm_bf16_drive(&p, weight, NULL, NULL) != 0) return -1;
        }
        return 0;
    }
    const int Hp = H + g.pad_top + g.pad_bottom, Wp = W + g.pad_left + g.pad_right;
    if ((int64_t)Cin * Hp * Wp >= INT32_MAX) return sd_errorf("conv2d_forward_bf16: input of %d x %d x %d too large", Cin, Hp, Wp);
    int threads = 1, nested = 0;
#ifdef _OPENMP
    nested = omp_in_parallel();
    if (!nested) threads = omp_get_max_threads();
#endif
    size_t xp_bytes = (size_t)Cin * Hp * Wp * sizeof(uint16_t);
    int cached = !nested && xp_bytes <= PLANE_CACHE_MAX;
    uint16_t *xp = cached ? sd_kept_buffer(&g_plane_cache, &g_plane_cache_bytes, xp_bytes) : sd_alloc_large(xp_bytes);
    int32_t *koff = malloc((size_t)K * sizeof(int32_t));
    if (!xp || !koff) {
        if (!cached) free(xp);
        free(koff);
        return sd_errorf("conv2d_forward_bf16: out of memory for a %d x %d x %d bf16 input", Cin, Hp, Wp);
    }
    for (int ci = 0, k = 0; ci < Cin; ci++)  // k = (ci*KH + kh)*KW + kw
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) koff[k++] = (int32_t)(((int64_t)ci * Hp + kh) * Wp + kw);
    ConvPairsCtx cx = {xp, koff, Wp, g.stride, Wo};
    int rc = 0;
    for (int n = 0; n < N && rc == 0; n++) {
        const float *xn = x + (int64_t)n * Cin * H * W;
        // channels handed out dynamically: a thread slowed by another process leaves them to the others
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) if (threads > 1)
        for (int ci = 0; ci < Cin; ci++)
            round_padded_plane(xn + (size_t)ci * H * W, H, W, g.pad_top, g.pad_left, Hp, Wp, xp + (size_t)ci * Hp * Wp);
        p.c = y + (int64_t)n * Cout * Ho * Wo;
        rc = gemm_bf16_drive(&p, weight, pack_conv_pairs, &cx);
    }
    if (!cached) free(xp);
    free(koff);
    return rc;
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

#else  // not x86-64: no bf16 kernel

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

int gemm_bf16_run(const GemmProblem *g, const Bf16Packed *w) {
    if (check_problem(g, w) != 0) return -1;
    return sd_errorf("gemm_bf16_run: no bf16 kernel in this build (x86-64 with AVX512_BF16 only)");
}

int conv2d_forward_bf16(const float *x, int N, int Cin, int H, int W, const Bf16Packed *weight, const float *bias,
                        int Cout, Conv2dGeometry g, float *y) {
    (void)x, (void)N, (void)Cin, (void)H, (void)W, (void)weight, (void)bias, (void)Cout, (void)g, (void)y;
    return sd_errorf("conv2d_forward_bf16: no bf16 kernel in this build (x86-64 with AVX512_BF16 only)");
}

#endif
