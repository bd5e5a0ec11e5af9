// One GEMM for everything, BLIS-style (Goto's algorithm):
//   for jc over N in steps of nc:              B panel  kc x nc   (L3)
//     for pc over K in steps of kc:            pack B panel
//       for ic over M in steps of mc:          A block  mc x kc   (L2), pack it
//         for jr over nc in steps of nr:       B micro-panel kc x nr (L1)
//           for ir over mc in steps of mr:     micro-kernel: mr x nr tile of C in registers
// Only the micro-kernel (gemm_<isa>.c) differs between ISAs. C is cut into a
// grid of blocks (about two per thread) that the threads take in turn; each C
// element is summed over k in the same order (kc block by kc block, p
// increasing) whatever the grid and whichever thread, so the bits do not
// depend on the thread count.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/kernels.h"

// ---- Kernel selection --------------------------------------------------------

static const GemmKernelInfo *kernel_for_isa(int isa) {
    switch (isa) {
    case ISA_AVX512: return gemm_kernel_avx512();
    case ISA_AVX2: return gemm_kernel_avx2();
    case ISA_NEON: return gemm_kernel_neon();
    case ISA_SCALAR: return gemm_kernel_scalar();
    default: return NULL;
    }
}

static const GemmKernelInfo *g_forced = NULL;

int gemm_force_isa(int isa) {
    if (isa < 0) {
        g_forced = NULL;
        return 0;
    }
    SdIsa best = sd_cpu_isa();
    // x86 paths are ordered scalar < avx2 < avx512; NEON is only available where it is the best.
    int ok = isa == ISA_SCALAR || (isa == ISA_NEON ? best == ISA_NEON : best != ISA_NEON && isa <= (int)best);
    const GemmKernelInfo *k = ok ? kernel_for_isa(isa) : NULL;
    if (!k) return -1;
    g_forced = k;
    return 0;
}

const GemmKernelInfo *gemm_kernel_info(void) {
    if (g_forced) return g_forced;
    static const GemmKernelInfo *cached = NULL;
    if (!cached) {
        const GemmKernelInfo *k = kernel_for_isa(sd_cpu_isa());
        cached = k ? k : gemm_kernel_scalar();
    }
    return cached;
}

// ---- Packing -------------------------------------------------------------------

// A block rows [i0, i0+mc) x cols [p0, p0+kc) of alpha*op(A) into micro-panels of mr rows:
// dst[(ir/mr)*kc*mr + p*mr + i]. Rows past M are zeros.
static void pack_a(const GemmProblem *g, int i0, int mc, int p0, int kc, int mr,
                   void (*ki_pack_rows)(const float *, int64_t, int, int, float *), float *dst) {
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

// Copies n floats in fixed 8-float chunks (vector moves, not a libc call per
// micro-panel row) and zero-fills up to `width`.
static inline void copy_pad(float *dst, const float *src, int n, int width) {
    int t = 0;
    for (; t + 8 <= n; t += 8) memcpy(dst + t, src + t, 8 * sizeof(float));
    for (; t < n; t++) dst[t] = src[t];
    for (; t < width; t++) dst[t] = 0.0f;
}

// B panel rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into micro-panels of nr columns.
static void pack_b_plain(const GemmProblem *g, int p0, int kc, int j0, int nc, int nr, float *dst) {
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
                copy_pad(dst + (size_t)jr * kc + (size_t)p * nr, src + jr, n, nr);
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
static void pack_b_panel(const GemmProblem *g, int p0, int kc, int j0, int nc, int nr, float *dst) {
    if (g->pack_b) g->pack_b(g->pack_b_ctx, p0, kc, j0, nc, nr, dst);
    else pack_b_plain(g, p0, kc, j0, nc, nr, dst);
}

// ---- Per-thread pack buffers -----------------------------------------------------
// Kept between calls (like a BLAS library's workspace): one block per thread,
// allocated by that thread, grown when a larger blocking asks for more.

enum { MAX_POOL_THREADS = 256 };
static void *g_pool[MAX_POOL_THREADS];
static size_t g_pool_bytes[MAX_POOL_THREADS];

static float *pool_get(int tid, size_t floats, float **to_free) {
    *to_free = NULL;
    if (tid >= 0 && tid < MAX_POOL_THREADS)
        return (float *)sd_kept_buffer(&g_pool[tid], &g_pool_bytes[tid], floats * sizeof(float));
    void *p = NULL;
    if (posix_memalign(&p, 64, floats * sizeof(float)) != 0) return NULL;
    *to_free = (float *)p;
    return (float *)p;
}

// ---- The blocked loops for one thread's block of C -------------------------------

// 1 if the packed weights are in this kernel set's layout and can be read in place.
static int packed_in_place(const GemmPackedWeights *pw, const GemmKernelInfo *ki, float alpha) {
    return pw && pw->kernel == ki && alpha == 1.0f;
}

static void gemm_block(const GemmProblem *g, const GemmKernelInfo *ki, int m0, int m1, int n0, int n1, float *ap,
                       float *bp) {
    const int mr = ki->mr, nr = ki->nr, MC = ki->mc, KC = ki->kc, NC = ki->nc, K = g->K;
    // Weights packed at load are read in place: the micro-panel of rows [i, i+mr) for the k block
    // starting at pc is at data + pc*padded_rows + i*kc (see gemm_pack_weights; i a multiple of mr).
    const float *a_packed = packed_in_place(g->packed_a, ki, g->alpha) ? g->packed_a->data : NULL;
    const float *b_packed = packed_in_place(g->packed_b, ki, 1.0f) ? g->packed_b->data : NULL;
    for (int jc = n0; jc < n1; jc += NC) {
        int nc = n1 - jc < NC ? n1 - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            if (!b_packed) pack_b_panel(g, pc, kc, jc, nc, nr, bp);
            // The first k block applies beta and the biases; later ones accumulate into C.
            int first = pc == 0;
            float beta = first ? g->beta : 1.0f;
            for (int ic = m0; ic < m1; ic += MC) {
                int mc = m1 - ic < MC ? m1 - ic : MC;
                // Weights packed as B stream from memory (a linear's): the first of the `tiles`
                // tiles on a micro-panel would fetch it at two lines per k step, more than one
                // core's share of DRAM, and the others find it in L2. Instead each tile fetches its
                // slice of the next micro-panel while it runs: an even stream (64 x 1280 x 1280
                // from memory +7-14%).
                const int tiles = (mc + mr - 1) / mr;
                const int fetch = b_packed && ki->micro_fetch && tiles >= 2;
                const int slice = (int)(((size_t)nr * kc * sizeof(float) + tiles - 1) / tiles);
                if (!a_packed) pack_a(g, ic, mc, pc, kc, mr, ki->pack_a_rows, ap);
                for (int jr = 0; jr < nc; jr += nr) {
                    int n = nc - jr < nr ? nc - jr : nr;
                    const float *bias_n = first && g->bias_n ? g->bias_n + jc + jr : NULL;
                    const float *b = b_packed ? b_packed + (size_t)pc * g->packed_b->padded_rows + (size_t)(jc + jr) * kc
                                              : bp + (size_t)jr * kc;
                    const int narrow = ki->micro_narrow && 2 * n <= nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int m = mc - ir < mr ? mc - ir : mr;
                        const float *bias_m = first && g->bias_m ? g->bias_m + ic + ir : NULL;
                        const float *a = a_packed ? a_packed + (size_t)pc * g->packed_a->padded_rows + (size_t)(ic + ir) * kc
                                                  : ap + (size_t)ir * kc;
                        float *c = g->c + (int64_t)(ic + ir) * g->ldc + jc + jr;
                        if (narrow && mc - ir > mr) {
                            // two A micro-panels against a half-empty B micro-panel (their A data is
                            // mr*kc floats apart in both the packed weights and the pack buffer)
                            int m2 = mc - ir < 2 * mr ? mc - ir : 2 * mr;
                            ki->micro_narrow(kc, a, a + (size_t)mr * kc, b, c, g->ldc, m2, n, beta, bias_m, bias_n);
                            ir += mr;
                            continue;
                        }
                        if (fetch && jr + nr < nc)
                            ki->micro_fetch(kc, a, b, c, g->ldc, m, n, beta, bias_m, bias_n,
                                            (const char *)(b + (size_t)nr * kc) + (size_t)(ir / mr) * slice, slice);
                        else
                            ki->micro(kc, a, b, c, g->ldc, m, n, beta, bias_m, bias_n);
                    }
                }
            }
        }
    }
}

void gemm_bias_beta(const GemmProblem *g) {
    for (int i = 0; i < g->M; i++) {
        float *c = g->c + (int64_t)i * g->ldc;
        for (int j = 0; j < g->N; j++) {
            float v = (g->bias_m ? g->bias_m[i] : 0.0f) + (g->bias_n ? g->bias_n[j] : 0.0f);
            c[j] = g->beta != 0.0f ? g->beta * c[j] + v : v;
        }
    }
}

int gemm_threads_for(const GemmProblem *g, double weight_bytes, int *nested) {
#ifdef _OPENMP
    // Small products and calls from inside a parallel region run on the calling thread.
    *nested = omp_in_parallel();
    // A product with few FLOPs but a big weight packed at load (a time-embedding projection:
    // 1 row x 1280 x 1280) is bound by reading that weight from memory: all cores read faster.
    double flops = 2.0 * g->M * g->N * g->K;
    int threads = !*nested && (flops > 2e6 || weight_bytes > 1e6) ? omp_get_max_threads() : 1;
    return threads > MAX_POOL_THREADS ? MAX_POOL_THREADS : threads;
#else
    (void)g, (void)weight_bytes;
    *nested = 0;
    return 1;
#endif
}

// K == 0, or no memory for the pack buffers: C = bias + beta*C, then C += alpha op(A) B with
// no workspace but a 64-float stack row of B (a slow path that should never run in practice).
static void gemm_unblocked(const GemmProblem *g) {
    gemm_bias_beta(g);
    float brow[64];
    for (int j0 = 0; j0 < g->N; j0 += 64) {
        int nc = g->N - j0 < 64 ? g->N - j0 : 64;
        for (int p = 0; p < g->K; p++) {
            pack_b_panel(g, p, 1, j0, nc, 64, brow);
            for (int i = 0; i < g->M; i++) {
                float a = g->alpha * (g->packed_a  ? gemm_packed_at(g->packed_a, i, p)
                                      : g->trans_a ? g->a[(int64_t)p * g->lda + i]
                                                   : g->a[(int64_t)i * g->lda + p]);
                float *c = g->c + (int64_t)i * g->ldc + j0;
                for (int j = 0; j < nc; j++) c[j] += a * brow[j];
            }
        }
    }
}

void gemm_choose_grid(int M, int N, int K, int threads, int mr, int nr, double fma_per_cycle, double a_cost,
                      double b_cost, int *tm_out, int *tn_out) {
    double best = 0.0;
    int bm = 1, bn = threads, found = 0;
    int panels_m = (M + mr - 1) / mr, panels_n = (N + nr - 1) / nr;
    for (int per_thread = 2; per_thread >= 1; per_thread--) {
        int blocks = threads * per_thread;
        for (int tm = 1; tm <= blocks; tm++) {
            if (blocks % tm) continue;
            int tn = blocks / tm;
            if (tm > panels_m || tn > panels_n) continue;
            double rows = (double)((panels_m + tm - 1) / tm) * mr;
            double cols = (double)((panels_n + tn - 1) / tn) * nr;
            double cost = per_thread * (rows * cols * K / fma_per_cycle + (a_cost * rows + b_cost * cols) * K);
            if (per_thread == 2) cost *= 0.97;
            if (!found || cost < best) {
                best = cost;
                bm = tm;
                bn = tn;
                found = 1;
            }
        }
    }
    *tm_out = bm;
    *tn_out = bn;
}

// The description of rows x K floats at data in the layout of gemm_pack_weights (kernels.h):
// panels of ki->nr rows (as_b) or ki->mr rows, k block by k block of ki->kc.
static void packed_layout(GemmPackedWeights *pw, const GemmKernelInfo *ki, int rows, int K, int as_b, float *data) {
    const int width = as_b ? ki->nr : ki->mr;
    memset(pw, 0, sizeof(*pw));
    pw->kernel = ki;
    pw->rows = rows;
    pw->K = K;
    pw->width = width;
    pw->kc = ki->kc;
    pw->padded_rows = (rows + width - 1) / width * width;
    pw->as_b = as_b;
    pw->data = data;
}

// The shared B panel (gemm_run): one buffer kept between calls, used only by the calling
// thread's gemm_run (a nested call runs on one thread and never shares). Returns -1 when B is
// too big to be worth it (over 8 MB) or there is no memory, and the blocks pack B themselves.
static void *g_shared_b;
static size_t g_shared_b_bytes;

static int shared_b_panel(GemmPackedWeights *pw, const GemmKernelInfo *ki, int N, int K) {
    size_t floats = (size_t)((N + ki->nr - 1) / ki->nr * ki->nr) * (size_t)K;
    if (floats > ((size_t)2 << 20)) return -1;
    float *data = (float *)sd_kept_buffer(&g_shared_b, &g_shared_b_bytes, floats * sizeof(float));
    if (!data) return -1;
    packed_layout(pw, ki, N, K, 1, data);
    return 0;
}

void gemm_run(const GemmProblem *g) {
    if (g->M <= 0 || g->N <= 0) return;
    if (g->K <= 0) {
        gemm_unblocked(g);
        return;
    }
    const GemmKernelInfo *ki = gemm_kernel_info();
    size_t a_floats = (size_t)ki->mc * ki->kc, b_floats = (size_t)ki->kc * (size_t)((ki->nc + ki->nr - 1) / ki->nr * ki->nr);
    // the bytes of weights packed at load, read once from memory
    double weight_bytes = g->packed_a || g->packed_b ? 4.0 * g->K * (g->packed_a ? g->M : g->N) : 0.0;
    int nested, threads = gemm_threads_for(g, weight_bytes, &nested);
    // Workspace first (on this thread), so that running out of memory is known before any work.
    float *extra = NULL;
    for (int t = 0; t < threads; t++) {
        if (!pool_get(nested ? -1 : t, a_floats + b_floats, &extra)) {
            gemm_unblocked(g);
            return;
        }
    }
    if (threads <= 1) {
        float *buf = nested ? extra : (float *)g_pool[0];
        gemm_block(g, ki, 0, g->M, 0, g->N, buf, buf + a_floats);
        free(extra);
        return;
    }
#ifdef _OPENMP
    // Blocks are handed out dynamically: each C element is still computed by one thread in the
    // same order (the blocking does not depend on the thread), so the bits do not change.
    int tm, tn;
    // a multiply-add costs ~1/32 cycle (vector FMA), packing a float ~1 cycle, streaming a float of
    // weights packed at load ~1/4 cycle (every thread whose blocks need those rows reads them)
    gemm_choose_grid(g->M, g->N, g->K, threads, ki->mr, ki->nr, 32.0,
                     packed_in_place(g->packed_a, ki, g->alpha) ? 0.25 : 1.0,
                     packed_in_place(g->packed_b, ki, 1.0f) ? 0.25 : 1.0, &tm, &tn);
    const int panels_m = (g->M + ki->mr - 1) / ki->mr, panels_n = (g->N + ki->nr - 1) / ki->nr;
    // A grid of row blocks only (tn == 1) would have every block pack all of B: when B is
    // small (a convolution on a 4x4 or 8x8 map: K x 16-64 pixels) it is packed once, all of
    // K, in the layout of weights packed at load, and read in place by every block.
    GemmProblem shared = *g;
    GemmPackedWeights shared_b;
    const GemmProblem *run = g;
    int pack_shared = tn == 1 && tm > 1 && !g->packed_b &&
                      shared_b_panel(&shared_b, ki, g->N, g->K) == 0;
    if (pack_shared) {
        shared.packed_b = &shared_b;
        run = &shared;
    }
    const int kblocks = (g->K + ki->kc - 1) / ki->kc;
#pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        if (pack_shared) {
#pragma omp for schedule(static)
            for (int kb = 0; kb < kblocks; kb++) {
                int pc = kb * ki->kc, kc = g->K - pc < ki->kc ? g->K - pc : ki->kc;
                pack_b_panel(g, pc, kc, 0, g->N, ki->nr, shared_b.data + (size_t)pc * shared_b.padded_rows);
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < tm * tn; blk++) {
            int ti = blk / tn, tj = blk % tn;
            int m0 = (int)((int64_t)panels_m * ti / tm) * ki->mr, m1 = (int)((int64_t)panels_m * (ti + 1) / tm) * ki->mr;
            int n0 = (int)((int64_t)panels_n * tj / tn) * ki->nr, n1 = (int)((int64_t)panels_n * (tj + 1) / tn) * ki->nr;
            if (m1 > g->M) m1 = g->M;
            if (n1 > g->N) n1 = g->N;
            if (m0 < m1 && n0 < n1) gemm_block(run, ki, m0, m1, n0, n1, (float *)g_pool[tid], (float *)g_pool[tid] + a_floats);
        }
    }
#endif
}

// ---- Public entry points ------------------------------------------------------------

void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
           int ldb, float beta, float *C, int ldc) {
    GemmProblem g = {M, N, K, A, lda, trans_a, alpha, B, ldb, trans_b, NULL, NULL, NULL, NULL, beta, C, ldc, NULL, NULL};
    gemm_run(&g);
}

void linear_forward(const float *x, const float *W, const float *b, float *y, int rows, int in, int out) {
    GemmProblem g = {rows, out, in, x, in, 0, 1.0f, W, in, 1, NULL, NULL, NULL, b, 0.0f, y, out, NULL, NULL};
    gemm_run(&g);
}

void linear_forward_packed(const float *x, int ldx, const GemmPackedWeights *W, const float *b, float *y, int rows) {
    GemmProblem g = {rows, W->rows, W->K, x, ldx, 0, 1.0f, NULL, 0, 0, NULL, NULL, NULL, b, 0.0f, y, W->rows, NULL, W};
    gemm_run(&g);
}

void linear_forward_packed_cf(const float *x, const GemmPackedWeights *W, const float *b, float *y, int rows) {
    GemmProblem g = {rows, W->rows, W->K, x, rows, 1, 1.0f, NULL, 0, 0, NULL, NULL, NULL, b, 0.0f, y, W->rows, NULL, W};
    gemm_run(&g);
}

// ---- Weights packed once ---------------------------------------------------------------

int gemm_pack_weights(GemmPackedWeights *pw, const float *W, int rows, int K, int as_b) {
    memset(pw, 0, sizeof(*pw));
    if (rows <= 0 || K <= 0) return sd_errorf("gemm_pack_weights: bad shape %d x %d", rows, K);
    const GemmKernelInfo *ki = gemm_kernel_info();
    const int width = as_b ? ki->nr : ki->mr, KC = ki->kc;
    const int panels = (rows + width - 1) / width, padded = panels * width;
    size_t floats = (size_t)padded * (size_t)K;
    float *data = (float *)sd_alloc_large(floats * sizeof(float));
    if (!data) return sd_errorf("out of memory packing a %d x %d weight (%.1f MB)", rows, K, floats * 4.0 / 1e6);
    // k block by k block, panel by panel (the order the GEMM reads them: a block of panels for one
    // k block is one contiguous stream); inside a panel 16 columns (one cache line of each source
    // row) at a time.
    const int kblocks = (K + KC - 1) / KC;
    // threads only for big weights: waking them costs more than packing a small one
#pragma omp parallel for collapse(2) schedule(static) if (floats > ((size_t)1 << 20))
    for (int kb = 0; kb < kblocks; kb++) {
        for (int q = 0; q < panels; q++) {
            int pc = kb * KC, kc = K - pc < KC ? K - pc : KC;
            float *d = data + (size_t)pc * padded + (size_t)q * width * kc;
            int r0 = q * width, n = rows - r0 < width ? rows - r0 : width;
            for (int pb = 0; pb < kc; pb += 16) {
                int pn = kc - pb < 16 ? kc - pb : 16;
                for (int i = 0; i < width; i++) {
                    float *out = d + (size_t)pb * width + i;
                    if (i < n) {
                        const float *row = W + (int64_t)(r0 + i) * K + pc + pb;
                        for (int t = 0; t < pn; t++) out[t * width] = row[t];
                    } else {
                        for (int t = 0; t < pn; t++) out[t * width] = 0.0f;
                    }
                }
            }
        }
    }
    packed_layout(pw, ki, rows, K, as_b, data);
    return 0;
}

void gemm_packed_weights_free(GemmPackedWeights *pw) {
    if (!pw->borrowed) free(pw->data);
    memset(pw, 0, sizeof(*pw));
}

void gemm_packed_weights_view(GemmPackedWeights *pw, const float *data, int rows, int K, int as_b) {
    packed_layout(pw, gemm_kernel_info(), rows, K, as_b, (float *)(uintptr_t)data);
    pw->borrowed = 1;
}

size_t gemm_packed_floats(int rows, int K, int width) {
    return (size_t)((rows + width - 1) / width * width) * (size_t)K;
}

float gemm_packed_at(const GemmPackedWeights *pw, int r, int p) {
    int w = pw->width, pc = p / pw->kc * pw->kc, kc = pw->K - pc < pw->kc ? pw->K - pc : pw->kc;
    return pw->data[(size_t)pc * pw->padded_rows + (size_t)(r / w) * w * kc + (size_t)(p - pc) * w + r % w];
}
