// The portable packers: the f32 kernel sets' A blocks and B panels (per call), weights
// packed once at load for the f32 sets (gemm_pack_weights, or rounded to f16 in the same layout:
// gemm_pack_weights_f16) and rounded to bf16 for the bf16 set (gemm_bf16_pack_weights; the
// roundings are core/half.h's f16_from_f32 and bf16_from_f32).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "core/runtime.h"
#include "kernels/gemm_internal.h"

// ---- The f32 sets' packers (per call) -----------------------------------------------

// A block rows [i0, i0+mc) x cols [p0, p0+kc) of alpha*op(A) into micro-panels of mr rows:
// dst[(ir/mr)*kc*mr + p*mr + i]. Rows past M are zeros.
void gemm_pack_a_f32(const GemmKernelInfo *ki, const GemmProblem *g, int i0, int mc, int p0, int kc, void *vdst) {
    const int mr = ki->mr;
    void (*ki_pack_rows)(const float *, int64_t, int, int, float *) = ki->ops->pack_a_rows;
    float *dst = vdst;
    for (int ir = 0; ir < mc; ir += mr) {
        int m = mc - ir < mr ? mc - ir : mr;
        float *d = dst + (size_t)ir * kc;
        if (g->packed_a) {
            // Packed for another kernel set (or alpha != 1): read it back element by element.
            for (int i = 0; i < m; i++)
                for (int p = 0; p < kc; p++) d[p * mr + i] = g->alpha * gemm_packed_at(g->packed_a, i0 + ir + i, p0 + p);
        } else if (!g->trans_a) {
            // A row-major M x K: row i is contiguous in p. The rows are far apart (lda), too
            // short for the hardware prefetcher: fetch the next micro-panel's rows ahead.
            if (ir + mr < mc) {
                for (int i = 0; i < mr && ir + mr + i < mc; i++) {
                    const char *next = (const char *)(g->a + (int64_t)(i0 + ir + mr + i) * g->lda + p0);
                    for (int off = 0; off < kc * 4; off += 64) __builtin_prefetch(next + off, 0, 3);
                }
            }
            if (ki_pack_rows && g->alpha == 1.0f) {
                ki_pack_rows(g->a + (int64_t)(i0 + ir) * g->lda + p0, g->lda, m, kc, d);
                continue;  // rows past m are zeros already
            }
            // 16 columns (one cache line of each row) at a time: a row's line is read in one go,
            // so rows that alias in L1 (lda a multiple of 1024 floats) do not evict each other,
            // and the stores stay within 16 * mr floats.
            const float *src = g->a + (int64_t)(i0 + ir) * g->lda + p0;
            const int64_t lda = g->lda;
            const float alpha = g->alpha;
            for (int pb = 0; pb < kc; pb += 16) {
                int pn = kc - pb < 16 ? kc - pb : 16;
                for (int i = 0; i < m; i++) {
                    const float *row = src + i * lda + pb;
                    float *out = d + (size_t)pb * mr + i;
                    if (alpha == 1.0f)
                        for (int q = 0; q < pn; q++) out[q * mr] = row[q];
                    else
                        for (int q = 0; q < pn; q++) out[q * mr] = alpha * row[q];
                }
            }
        } else {
            // A is K x M: for each p the mr values are contiguous.
            for (int p = 0; p < kc; p++) {
                const float *src = g->a + (int64_t)(p0 + p) * g->lda + i0 + ir;
                for (int i = 0; i < m; i++) d[p * mr + i] = g->alpha * src[i];
            }
        }
        for (int i = m; i < mr; i++)
            for (int p = 0; p < kc; p++) d[p * mr + i] = 0.0f;
    }
}

// B panel rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into micro-panels of nr columns.
void gemm_pack_b_plain(const GemmProblem *g, int p0, int kc, int j0, int nc, int nr, float *dst) {
    if (g->packed_b) {
        // Packed for another kernel set: read it back element by element.
        for (int jr = 0; jr < nc; jr += nr) {
            int n = nc - jr < nr ? nc - jr : nr;
            float *d = dst + (size_t)jr * kc;
            for (int p = 0; p < kc; p++)
                for (int j = 0; j < nr; j++)
                    d[(size_t)p * nr + j] = j < n ? gemm_packed_at(g->packed_b, j0 + jr + j, p0 + p) : 0.0f;
        }
        return;
    }
    if (!g->trans_b) {
        // Row by row, so that each source row is read in one contiguous sweep (rows are ldb apart:
        // walking one micro-panel down the rows would miss cache on every row).
        for (int p = 0; p < kc; p++) {
            const float *src = g->b + (int64_t)(p0 + p) * g->ldb + j0;
            for (int jr = 0; jr < nc; jr += nr) {
                int n = nc - jr < nr ? nc - jr : nr;
                gemm_copy_pad(dst + (size_t)jr * kc + (size_t)p * nr, src + jr, n, nr);
            }
        }
        return;
    }
    // B stored N x K (e.g. nn.Linear weights): column j of op(B) is row j of b. As in pack_a,
    // 16 columns of p (one cache line of each source row) at a time.
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        const float *src = g->b + (int64_t)(j0 + jr) * g->ldb + p0;
        for (int pb = 0; pb < kc; pb += 16) {
            int pn = kc - pb < 16 ? kc - pb : 16;
            for (int j = 0; j < n; j++) {
                const float *row = src + (int64_t)j * g->ldb + pb;
                float *out = d + (size_t)pb * nr + j;
                for (int q = 0; q < pn; q++) out[q * nr] = row[q];
            }
        }
        for (int j = n; j < nr; j++)
            for (int p = 0; p < kc; p++) d[(size_t)p * nr + j] = 0.0f;
    }
}

// The B panel of any problem: the implicit B's callback (a convolution's im2col) or op(B).
void gemm_pack_b_f32(const GemmKernelInfo *ki, const GemmProblem *g, int p0, int kc, int j0, int nc, void *dst,
                     float *scratch) {
    (void)scratch;
    if (g->pack_b) g->pack_b(g->pack_b_ctx, p0, kc, j0, nc, ki->nr, dst);
    else gemm_pack_b_plain(g, p0, kc, j0, nc, ki->nr, dst);
}

void gemm_packed_layout(GemmPackedWeights *pw, const GemmKernelInfo *ki, int rows, int K, int as_b, void *data) {
    const int width = as_b ? ki->nr : ki->mr;
    memset(pw, 0, sizeof(*pw));
    pw->kernel = ki;
    pw->rows = rows;
    pw->K = K;
    pw->width = width;
    pw->kc = ki->kc;
    pw->padded_rows = (rows + width - 1) / width * width;
    pw->as_b = as_b;
    pw->data = (float *)data;  // f32 or bf16-pair words, 4 bytes each
}

// ---- Weights packed once ---------------------------------------------------------------

// W (rows x K) into ki's layout for weights (panels of `width` rows, k blocks of ki->kc), as f32
// (d32) or rounded to f16 (d16, the other NULL). Returns the number of values that became inf
// (beyond f16's range), 0 for f32.
static long long pack_panels(const GemmKernelInfo *ki, const float *W, int rows, int K, int width, float *d32,
                             uint16_t *d16) {
    const int KC = ki->kc, panels = (rows + width - 1) / width, padded = panels * width;
    const size_t values = (size_t)padded * (size_t)K;
    long long overflow = 0;
    // k block by k block, panel by panel (the order the GEMM reads them: a block of panels for one
    // k block is one contiguous stream); inside a panel 16 columns (one cache line of each source
    // row) at a time.
    const int kblocks = (K + KC - 1) / KC;
    // threads only for big weights: waking them costs more than packing a small one
#pragma omp parallel for collapse(2) schedule(static) reduction(+ : overflow) if (values > ((size_t)1 << 20))
    for (int kb = 0; kb < kblocks; kb++) {
        for (int q = 0; q < panels; q++) {
            int pc = kb * KC, kc = K - pc < KC ? K - pc : KC;
            size_t at = (size_t)pc * padded + (size_t)q * width * kc;
            int r0 = q * width, n = rows - r0 < width ? rows - r0 : width;
            for (int pb = 0; pb < kc; pb += 16) {
                int pn = kc - pb < 16 ? kc - pb : 16;
                for (int i = 0; i < width; i++) {
                    size_t o = at + (size_t)pb * width + i;
                    const float *row = i < n ? W + (int64_t)(r0 + i) * K + pc + pb : W;
                    if (d32 && i < n) {
                        for (int t = 0; t < pn; t++) d32[o + (size_t)t * width] = row[t];
                    } else if (d32) {
                        for (int t = 0; t < pn; t++) d32[o + (size_t)t * width] = 0.0f;
                    } else {
                        for (int t = 0; t < pn; t++) {
                            uint16_t h = i < n ? f16_from_f32(row[t]) : 0;
                            overflow += (h & 0x7C00u) == 0x7C00u;  // inf (NaN weights are refused at load)
                            d16[o + (size_t)t * width] = h;
                        }
                    }
                }
            }
        }
    }
    return overflow;
}

int gemm_pack_weights(GemmPackedWeights *pw, const float *W, int rows, int K, int as_b) {
    memset(pw, 0, sizeof(*pw));
    if (rows <= 0 || K <= 0) return sd_errorf("gemm_pack_weights: bad shape %d x %d", rows, K);
    const GemmKernelInfo *ki = gemm_kernel_info();
    const int width = as_b ? ki->nr : ki->mr;
    size_t floats = gemm_packed_floats(rows, K, width);
    float *data = (float *)sd_alloc_large(floats * sizeof(float));
    if (!data) return sd_errorf("out of memory packing a %d x %d weight (%.1f MB)", rows, K, floats * 4.0 / 1e6);
    pack_panels(ki, W, rows, K, width, data, NULL);
    gemm_packed_layout(pw, ki, rows, K, as_b, data);
    return 0;
}

int gemm_pack_weights_f16(GemmPackedWeights *pw, const float *W, int rows, int K, int as_b) {
    memset(pw, 0, sizeof(*pw));
    if (rows <= 0 || K <= 0) return sd_errorf("gemm_pack_weights_f16: bad shape %d x %d", rows, K);
    const GemmKernelInfo *ki = gemm_kernel_info();
    const int width = as_b ? ki->nr : ki->mr;
    size_t halves = gemm_packed_floats(rows, K, width);
    uint16_t *half = (uint16_t *)sd_alloc_large(halves * sizeof(uint16_t));
    if (!half) return sd_errorf("out of memory packing a %d x %d f16 weight (%.1f MB)", rows, K, halves * 2.0 / 1e6);
    long long overflow = pack_panels(ki, W, rows, K, width, NULL, half);
    if (overflow) {
        free(half);
        return sd_errorf("%lld values of a %d x %d weight are beyond f16's range (|w| > 65504): it needs f32", overflow,
                         rows, K);
    }
    gemm_packed_layout(pw, ki, rows, K, as_b, NULL);
    pw->half = half;
    return 0;
}

void gemm_packed_weights_free(GemmPackedWeights *pw) {
    if (!pw->borrowed) {
        free(pw->data);
        free(pw->half);
    }
    memset(pw, 0, sizeof(*pw));
}

void gemm_packed_weights_view(GemmPackedWeights *pw, const float *data, int rows, int K, int as_b) {
    gemm_packed_layout(pw, gemm_kernel_info(), rows, K, as_b, (float *)(uintptr_t)data);
    pw->borrowed = 1;
}

void gemm_packed_weights_view_f16(GemmPackedWeights *pw, const uint16_t *half, int rows, int K, int as_b) {
    gemm_packed_layout(pw, gemm_kernel_info(), rows, K, as_b, NULL);
    pw->half = (uint16_t *)(uintptr_t)half;
    pw->borrowed = 1;
}

size_t gemm_packed_floats(int rows, int K, int width) {
    return (size_t)((rows + width - 1) / width * width) * (size_t)K;
}

float gemm_packed_at(const GemmPackedWeights *pw, int r, int p) {
    int w = pw->width, pc = p / pw->kc * pw->kc, kc = pw->K - pc < pw->kc ? pw->K - pc : pw->kc;
    size_t at = (size_t)pc * pw->padded_rows + (size_t)(r / w) * w * kc + (size_t)(p - pc) * w + r % w;
    return pw->half ? f32_from_f16(pw->half[at]) : pw->data[at];
}

static uint32_t pair_word(float even, float odd) {
    return (uint32_t)bf16_from_f32(even) | (uint32_t)bf16_from_f32(odd) << 16;
}

// ---- Weights rounded to bf16 and packed once (Bf16Packed, kernels.h) ------------------------

int gemm_bf16_pack_weights(Bf16Packed *p, const float *w, int rows, int K, int side) {
    memset(p, 0, sizeof *p);
    if (rows < 0 || K < 0 || (side != GEMM_BF16_A && side != GEMM_BF16_BT) || (!w && rows > 0 && K > 0))
        return sd_errorf("gemm_bf16_pack_weights: bad arguments rows=%d K=%d side=%d", rows, K, side);
    int panel = side == GEMM_BF16_A ? GEMM_BF16_MR : GEMM_BF16_NR;
    int kpairs = (K + 1) / 2, panels = (rows + panel - 1) / panel;
    size_t words = (size_t)panels * panel * kpairs;
    p->rows = rows;
    p->K = K;
    p->side = side;
    p->panel = panel;
    p->kpairs = kpairs;
    if (words == 0) return 0;
    // 2 MiB pages where the system has them: 4 KiB page faults cost more than the packing
    // itself (docs/benchmarks.md, "Weights packed at load").
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

