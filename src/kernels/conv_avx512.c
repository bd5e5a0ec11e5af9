// The AVX-512 convolution packers: the f32 implicit im2col for narrow maps (stride 1) and
// the bf16 one, which reads k pairs from a padded bf16 copy of the input. conv.c chooses
// them (through the kernel set in use, or for bf16 compute) and runs the GEMM.
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/gemm_avx512_tile.h"

#define BF16_FUNC __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

// the bf16 set's micro-panel width, and the widest B panel it asks for (its nc)
enum { NR = GEMM_BF16_NR, NC_A = 1024 };

// ---- f32 ------------------------------------------------------------------------------------

// pack_conv_b for stride 1 with AVX-512, for micro-panels of 32 columns (the AVX-512 GEMM's
// nr): the same values in the same places (columns over one or more samples: ConvPackCtx). A run
// of output pixels on one output row reads one stretch of the input row; a masked load fetches it
// with the lanes left or right of the map (padding) as zeros, and no lane outside the map is read.
__attribute__((target("avx512f"))) void conv_pack_b_s1_avx512(const void *vctx, int p0, int kc, int j0, int nc, int nr,
                                                              float *dst) {
    if (nr != 32) {  // the GEMM's no-workspace fallback asks for 64-column rows
        conv_pack_b(vctx, p0, kc, j0, nc, nr, dst);
        return;
    }
    const ConvPackCtx *cx = vctx;
    const int H = cx->H, W = cx->W, KH = cx->KH, KW = cx->KW, Wo = cx->Wo;
    PixelRun runs[32];
    const float *sample_x[32];  // each run's sample
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        int nruns = conv_split_runs(j0 + jr, n, Wo, runs, 32);
        for (int r = 0; r < nruns; r++) {  // global output row -> (sample, row)
            sample_x[r] = cx->x + (size_t)(runs[r].oh / cx->Ho) * cx->sample;
            runs[r].oh %= cx->Ho;
        }
        // per run and kernel column: the lanes that fall inside the map (the mask of the 32)
        // and the input column that lane 0 would read
        uint32_t mask[32][CONV_S1_MAX_KW];
        int shift[32][CONV_S1_MAX_KW];
        for (int r = 0; r < nruns; r++) {
            for (int kw = 0; kw < KW; kw++) {
                int iw0 = runs[r].ow - cx->pad_left + kw, cnt = runs[r].count, col = runs[r].col;
                int first = iw0 < 0 ? -iw0 : 0, last = W - iw0 < cnt ? W - iw0 : cnt;
                mask[r][kw] = last > first ? (uint32_t)((((1ull << last) - 1) ^ ((1ull << first) - 1)) << col) : 0u;
                shift[r][kw] = iw0 - col;
            }
        }
        int ci = (p0 / KW) / KH, kh = (p0 / KW) % KH, kw = p0 % KW;
        for (int p = 0; p < kc; p++) {
            // the row of 32 values in two vectors, built run by run (runs do not overlap)
            __m512 lo16 = _mm512_setzero_ps(), hi16 = _mm512_setzero_ps();
            for (int r = 0; r < nruns; r++) {
                const float *plane = sample_x[r] + (size_t)ci * H * W;
                int ih = runs[r].oh - cx->pad_top + kh;
                uint32_t m = mask[r][kw];
                if (ih < 0 || ih >= H || !m) continue;  // a padding row or column: zeros
                // lane L reads input column L + shift; the address of lane 0 may lie before the
                // row (masked-off lanes are never read), so it is computed as an integer, not by
                // pointer arithmetic outside the array
                uintptr_t lane0 = (uintptr_t)(plane + (size_t)ih * W) + (uintptr_t)((intptr_t)shift[r][kw] * 4);
                if (m & 0xFFFFu) lo16 = _mm512_mask_loadu_ps(lo16, (__mmask16)(m & 0xFFFFu), (const void *)lane0);
                if (m >> 16) hi16 = _mm512_mask_loadu_ps(hi16, (__mmask16)(m >> 16), (const void *)(lane0 + 64));
            }
            _mm512_storeu_ps(d + (size_t)p * nr, lo16);
            _mm512_storeu_ps(d + (size_t)p * nr + 16, hi16);
            if (++kw == KW) {
                kw = 0;
                if (++kh == KH) {
                    kh = 0;
                    ci++;
                }
            }
        }
    }
}
// ---- bf16 -----------------------------------------------------------------------------------

// X_col[(ci,kh,kw), (oh,ow)] = xp[ci][oh*s + kh][ow*s + kw], where xp is the sample rounded to bf16
// once and zero-padded (Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right): no bounds
// tests, and with stride 1 a run of output pixels along one row is a contiguous run of xp.
// The values are those of conv.c's implicit im2col rounded to bf16, so the result has the
// bits of gemm_bf16_run with an f32 im2col pack_b (tests/test_gemm_bf16.c checks it).

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

BF16_FUNC void conv_pack_b_pairs_avx512(const void *vctx, int p0, int kc, int j0, int nc, uint32_t *dst) {
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
    // jumped over Cin planes and 3 rows (docs/benchmarks.md, "Packing").
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
BF16_FUNC void conv_round_plane_avx512(const float *x, int H, int W, int pad_top, int pad_left, int Hp, int Wp,
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

#else  // not x86-64: never called (no AVX-512 kernel set, no bf16 kernel set)

void conv_pack_b_s1_avx512(const void *ctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    conv_pack_b(ctx, p0, kc, j0, nc, nr, dst);
}
void conv_pack_b_pairs_avx512(const void *ctx, int p0, int kc, int j0, int nc, uint32_t *dst) {
    (void)ctx, (void)p0, (void)kc, (void)j0, (void)nc, (void)dst;
}
void conv_round_plane_avx512(const float *x, int H, int W, int pad_top, int pad_left, int Hp, int Wp,
                             uint16_t *plane) {
    (void)x, (void)H, (void)W, (void)pad_top, (void)pad_left, (void)Hp, (void)Wp, (void)plane;
}

#endif
