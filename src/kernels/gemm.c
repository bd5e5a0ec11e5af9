// One GEMM for everything, BLIS-style (Goto's algorithm):
//   for jc over N in steps of nc:              B panel  kc x nc   (L3)
//     for pc over K in steps of kc:            pack B panel
//       for ic over M in steps of mc:          A block  mc x kc   (L2), pack it
//         for jr over nc in steps of nr:       B micro-panel kc x nr (L1)
//           for ir over mc in steps of mr:     micro-kernel: mr x nr tile of C in registers
// The loop nest sees neither an ISA nor a datatype: the kernel set (GemmKernelInfo,
// gemm_internal.h) brings the tile and block sizes, the micro-kernels and the packers, and
// the datatype as the number of k values in one packed 32-bit word (1: f32, 2: bf16 k
// pairs). C is cut into a grid of blocks (about two per thread) that the threads take in
// turn; each C element is summed over k in the same order (kc block by kc block, p
// increasing) whatever the grid and whichever thread, so the bits do not depend on the
// thread count.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/gemm_internal.h"
#include "kernels/reference.h"

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

// The forced set is the calling host thread's (threadprivate, like the buffers below): two host
// threads may run different paths at once (the library's contexts set it per call, src/api).
// A thread inside a parallel region without a choice of its own (a worker running a GEMM called
// inside the region) takes the latest choice of any thread, kept atomically: its master's,
// unless two host threads force different paths at that moment (then that nested GEMM may run
// the other path, whose results are as valid). The automatic choice is looked up per call (a
// switch) rather than cached in a global.
static int g_forced_isa = -1;
#pragma omp threadprivate(g_forced_isa)
static int g_forced_isa_latest = -1;

int gemm_force_isa(int isa) {
    if (isa < 0) {
        isa = -1;
    } else {
        SdIsa best = sd_cpu_isa();
        // x86 paths are ordered scalar < avx2 < avx512; NEON is only available where it is the best.
        int ok = isa == ISA_SCALAR || (isa == ISA_NEON ? best == ISA_NEON : best != ISA_NEON && isa <= (int)best);
        if (!ok || !kernel_for_isa(isa)) return -1;
    }
    g_forced_isa = isa;
#pragma omp atomic write
    g_forced_isa_latest = isa;
    return 0;
}

const GemmKernelInfo *gemm_kernel_info(void) {
    int forced = g_forced_isa;
#ifdef _OPENMP
    if (forced < 0 && omp_in_parallel()) {
#pragma omp atomic read
        forced = g_forced_isa_latest;
    }
#endif
    const GemmKernelInfo *k = kernel_for_isa(forced >= 0 ? forced : (int)sd_cpu_isa());
    return k ? k : gemm_kernel_scalar();
}

// ---- Per-thread pack buffers -----------------------------------------------------
// Kept between calls (like a BLAS library's workspace): one block per thread of the team,
// all allocated by the calling thread before any work, grown when a larger blocking asks for
// more. They belong to the calling (host) thread: threadprivate, like the shared B panel below
// and the bf16 convolution's input copy (conv.c), so two host threads calling the library at
// once each have their own and both run at full speed; the team's threads reach their block
// through the caller's array. (A mutex-protected single owner would bound the memory, but leave
// every other caller a fresh heap workspace per product: page faults on each call.) The price:
// each host thread keeps its buffers (~6.5 MB per OpenMP thread with AVX-512) until it calls
// gemm_free_thread_buffers().

enum { MAX_POOL_THREADS = 256 };
static void *g_pool[MAX_POOL_THREADS];
static size_t g_pool_bytes[MAX_POOL_THREADS];
#pragma omp threadprivate(g_pool, g_pool_bytes)

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

// A packed word is 4 bytes: one f32, or one bf16 k pair.
static inline const void *words_at(const void *base, size_t words) { return (const char *)base + words * 4; }

// k values -> packed words for kernel set ki
static inline int kwords(const GemmKernelInfo *ki, int k) { return (k + ki->ops->kpack - 1) / ki->ops->kpack; }

// 1 if the packed weights are in this kernel set's layout and can be read in place.
static int packed_in_place(const GemmPackedWeights *pw, const GemmKernelInfo *ki, float alpha) {
    return pw && pw->kernel == ki && alpha == 1.0f && !pw->half;
}

// 1 if the packed weights are f16 in this kernel set's layout: each block is widened to f32 into
// the pack buffer where f32 weights would have been read in place (the same floats in the same
// places as the f32 weights rounded to f16).
static int packed_widened(const GemmPackedWeights *pw, const GemmKernelInfo *ki, float alpha) {
    return pw && pw->kernel == ki && alpha == 1.0f && pw->half;
}

// f16 weights: the rows [r, r + count) (count a multiple of the panel width, or up to
// padded_rows) of the k block at pc (kc long) widened into dst, the layout the packers write
// (panel after panel, kc * width floats each): one contiguous run of the packed halves.
static void widen_block(const GemmKernelInfo *ki, const GemmPackedWeights *pw, int r, int count, int pc, int kc,
                        float *dst) {
    int end = r + (count + pw->width - 1) / pw->width * pw->width;
    if (end > pw->padded_rows) end = pw->padded_rows;
    gemm_widen_f16(ki, pw->half + (size_t)pc * pw->padded_rows + (size_t)r * kc, dst, (size_t)(end - r) * kc);
}

// Weights read in place: where the micro-panel of rows [r, r + width) starts for the k block at
// pc (kw words long), and how far on the next micro-panel starts (*next, in words).
static const void *panel_at(const GemmPackedWeights *pw, int r, int pc, int kw, size_t *next) {
    const GemmKernelInfo *ki = pw->kernel;
    if (ki->ops->weights_whole_k) {
        // each micro-panel holds all of K: width words per k step
        size_t kall = (size_t)kwords(ki, pw->K);
        *next = (size_t)pw->width * kall;
        return words_at(pw->data, (size_t)r * kall + (size_t)(pc / ki->ops->kpack) * pw->width);
    }
    // k block by k block: block pc starts at pc * padded_rows, its panels kw * width words each
    *next = (size_t)pw->width * kw;
    return words_at(pw->data, (size_t)(pc / ki->ops->kpack) * pw->padded_rows + (size_t)r * kw);
}

static void gemm_block(const GemmProblem *g, const GemmKernelInfo *ki, int m0, int m1, int n0, int n1, void *ap,
                       void *bp, float *scratch) {
    const int mr = ki->mr, nr = ki->nr, MC = ki->mc, KC = ki->kc, K = g->K;
    // Weights packed at load are read in place (gemm_pack_weights, Bf16Packed: panel_at); f16
    // weights (gemm_pack_weights_f16) are widened block by block into the pack buffers instead of
    // being packed (an A block once per B panel, a B panel once per row block).
    const GemmPackedWeights *a_packed = packed_in_place(g->packed_a, ki, g->alpha) ? g->packed_a : NULL;
    const GemmPackedWeights *b_packed = packed_in_place(g->packed_b, ki, 1.0f) ? g->packed_b : NULL;
    const GemmPackedWeights *a_half = packed_widened(g->packed_a, ki, g->alpha) ? g->packed_a : NULL;
    const GemmPackedWeights *b_half = packed_widened(g->packed_b, ki, 1.0f) ? g->packed_b : NULL;
    const int NC = b_packed && ki->ops->nc_in_place ? ki->ops->nc_in_place : ki->nc;
    for (int jc = n0; jc < n1; jc += NC) {
        int nc = n1 - jc < NC ? n1 - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            int kw = kwords(ki, kc);  // the micro-kernels' k: packed words per row or column
            if (b_half) widen_block(ki, b_half, jc, nc, pc, kc, bp);
            else if (!b_packed) ki->ops->pack_b(ki, g, pc, kc, jc, nc, bp, scratch);
            // The first k block applies beta and the biases; later ones accumulate into C.
            int first = pc == 0;
            float beta = first ? g->beta : 1.0f;
            for (int ic = m0; ic < m1; ic += MC) {
                int mc = m1 - ic < MC ? m1 - ic : MC;
                // Weights packed as B stream from memory (a linear's): the first of the `tiles`
                // tiles on a micro-panel would fetch it at two lines per k step, more than one
                // core's share of DRAM, and the others find it in L2. Instead each tile fetches its
                // slice of the next micro-panel while it runs: an even stream (measured:
                // docs/benchmarks.md, "Even weight stream").
                const int tiles = (mc + mr - 1) / mr;
                const int fetch = b_packed && ki->ops->micro_fetch && tiles >= 2;
                const int slice = (int)(((size_t)nr * kw * 4 + tiles - 1) / tiles);
                if (a_half) widen_block(ki, a_half, ic, mc, pc, kc, ap);
                else if (!a_packed) ki->ops->pack_a(ki, g, ic, mc, pc, kc, ap);
                for (int jr = 0; jr < nc; jr += nr) {
                    int n = nc - jr < nr ? nc - jr : nr;
                    const float *bias_n = first && g->bias_n ? g->bias_n + jc + jr : NULL;
                    size_t b_next = (size_t)nr * kw;
                    const void *b = b_packed ? panel_at(b_packed, jc + jr, pc, kw, &b_next) : words_at(bp, (size_t)jr * kw);
                    const int narrow = ki->ops->micro_narrow && 2 * n <= nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int m = mc - ir < mr ? mc - ir : mr;
                        const float *bias_m = first && g->bias_m ? g->bias_m + ic + ir : NULL;
                        size_t a_next = (size_t)mr * kw;
                        const void *a = a_packed ? panel_at(a_packed, ic + ir, pc, kw, &a_next)
                                                 : words_at(ap, (size_t)ir * kw);
                        float *c = g->c + (int64_t)(ic + ir) * g->ldc + jc + jr;
                        if (narrow && mc - ir > mr) {
                            // two A micro-panels against a half-empty B micro-panel
                            int m2 = mc - ir < 2 * mr ? mc - ir : 2 * mr;
                            ki->ops->micro_narrow(kw, a, words_at(a, a_next), b, c, g->ldc, m2, n, beta, bias_m, bias_n);
                            ir += mr;
                            continue;
                        }
                        if (fetch && jr + nr < nc)
                            ki->ops->micro_fetch(kw, a, b, c, g->ldc, m, n, beta, bias_m, bias_n,
                                            (const char *)words_at(b, b_next) + (size_t)(ir / mr) * slice, slice);
                        else
                            ki->ops->micro(kw, a, b, c, g->ldc, m, n, beta, bias_m, bias_n);
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

// f32, no memory for the pack buffers: C = bias + beta*C, then C += alpha op(A) B with no
// workspace but a 64-float stack row of B (a slow path that should never run in practice).
static void gemm_unblocked(const GemmProblem *g) {
    gemm_bias_beta(g);
    float brow[64];
    for (int j0 = 0; j0 < g->N; j0 += 64) {
        int nc = g->N - j0 < 64 ? g->N - j0 : 64;
        for (int p = 0; p < g->K; p++) {
            if (g->pack_b) g->pack_b(g->pack_b_ctx, p, 1, j0, nc, 64, brow);
            else gemm_pack_b_plain(g, p, 1, j0, nc, 64, brow);
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

// The shared B panel (gemm_run_with): one buffer kept between calls, the calling thread's
// (threadprivate, as the pools above; a nested call runs on one thread and never shares).
// Returns -1 when B is too big to be worth it (over ki->ops->shared_b_words) or there is no memory,
// and the blocks pack B themselves.
static void *g_shared_b;
static size_t g_shared_b_bytes;
#pragma omp threadprivate(g_shared_b, g_shared_b_bytes)

void gemm_free_thread_buffers(void) {
    for (int t = 0; t < MAX_POOL_THREADS; t++) {
        free(g_pool[t]);
        g_pool[t] = NULL;
        g_pool_bytes[t] = 0;
    }
    free(g_shared_b);
    g_shared_b = NULL;
    g_shared_b_bytes = 0;
    conv_free_thread_buffers();
}

static int shared_b_panel(GemmPackedWeights *pw, const GemmKernelInfo *ki, int N, int K) {
    size_t words = (size_t)((N + ki->nr - 1) / ki->nr * ki->nr) * (size_t)kwords(ki, K);
    if (words > ki->ops->shared_b_words) return -1;
    void *data = sd_kept_buffer(&g_shared_b, &g_shared_b_bytes, words * 4);
    if (!data) return -1;
    gemm_packed_layout(pw, ki, N, K, 1, data);
    return 0;
}

int gemm_run_with(const GemmProblem *g, const GemmKernelInfo *ki) {
    if (g->M <= 0 || g->N <= 0) return 0;
    if (g->K <= 0) {
        gemm_bias_beta(g);
        return 0;
    }
    // Workspace per thread: the A block (mc x kc), the B panel (kc x nc) and the packers' scratch.
    const int kcw = kwords(ki, ki->kc);
    const size_t a_words = (size_t)ki->mc * kcw, b_words = (size_t)kcw * (size_t)((ki->nc + ki->nr - 1) / ki->nr * ki->nr);
    const size_t ws_words = a_words + b_words + (size_t)ki->ops->scratch_floats;
    // the bytes of weights packed at load, read once from memory (4 per word, 2 per f16 value)
    const GemmPackedWeights *pw = g->packed_a ? g->packed_a : g->packed_b;
    double bytes_per_value = pw && pw->half ? 2.0 : pw ? 4.0 / pw->kernel->ops->kpack : 0.0;
    double weight_bytes = bytes_per_value * g->K * (g->packed_a ? g->M : g->N);
    int nested, threads = gemm_threads_for(g, weight_bytes, &nested);
    // Workspace first (on this thread), so that running out of memory is known before any work.
    float *extra = NULL;
    for (int t = 0; t < threads; t++)
        if (!pool_get(nested ? -1 : t, ws_words, &extra)) return -1;
    if (threads <= 1) {
        float *buf = nested ? extra : (float *)g_pool[0];
        gemm_block(g, ki, 0, g->M, 0, g->N, buf, buf + a_words, buf + a_words + b_words);
        free(extra);
        return 0;
    }
#ifdef _OPENMP
    // Blocks are handed out dynamically: each C element is still computed by one thread in the
    // same order (the blocking does not depend on the thread), so the bits do not change.
    int tm, tn;
    // an operand read in place (or widened from f16: a streaming copy) costs stream_cost per value,
    // one packed per call pack_cost
    const int a_streams = packed_in_place(g->packed_a, ki, g->alpha) || packed_widened(g->packed_a, ki, g->alpha);
    const int b_streams = packed_in_place(g->packed_b, ki, 1.0f) || packed_widened(g->packed_b, ki, 1.0f);
    gemm_choose_grid(g->M, g->N, g->K, threads, ki->mr, ki->nr, ki->ops->fma_per_cycle,
                     a_streams ? ki->ops->stream_cost : ki->ops->pack_cost,
                     b_streams ? ki->ops->stream_cost : ki->ops->pack_cost, &tm, &tn);
    const int panels_m = (g->M + ki->mr - 1) / ki->mr, panels_n = (g->N + ki->nr - 1) / ki->nr;
    // A grid of row blocks only (tn == 1) would have every block pack all of B: when B is
    // small (a convolution on a 4x4 or 8x8 map: K x 16-64 pixels) it is packed once, all of
    // K, in the layout of weights packed at load, and read in place by every block.
    GemmProblem shared = *g;
    GemmPackedWeights shared_b;
    const GemmProblem *run = g;
    int pack_shared = tn == 1 && tm > 1 && !g->packed_b && shared_b_panel(&shared_b, ki, g->N, g->K) == 0;
    if (pack_shared) {
        shared.packed_b = &shared_b;
        run = &shared;
    }
    const int kblocks = (g->K + ki->kc - 1) / ki->kc;
    void **pool = g_pool;  // this thread's pool (inside the region g_pool is each thread's own)
#pragma omp parallel num_threads(threads)
    {
        float *buf = (float *)pool[omp_get_thread_num()];
        if (pack_shared) {
#pragma omp for schedule(static)
            for (int kb = 0; kb < kblocks; kb++) {
                int pc = kb * ki->kc, kc = g->K - pc < ki->kc ? g->K - pc : ki->kc;
                size_t next;
                ki->ops->pack_b(ki, g, pc, kc, 0, g->N, (void *)panel_at(&shared_b, 0, pc, kwords(ki, kc), &next),
                           buf + a_words + b_words);
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < tm * tn; blk++) {
            int ti = blk / tn, tj = blk % tn;
            int m0 = (int)((int64_t)panels_m * ti / tm) * ki->mr, m1 = (int)((int64_t)panels_m * (ti + 1) / tm) * ki->mr;
            int n0 = (int)((int64_t)panels_n * tj / tn) * ki->nr, n1 = (int)((int64_t)panels_n * (tj + 1) / tn) * ki->nr;
            if (m1 > g->M) m1 = g->M;
            if (n1 > g->N) n1 = g->N;
            if (m0 < m1 && n0 < n1) gemm_block(run, ki, m0, m1, n0, n1, buf, buf + a_words, buf + a_words + b_words);
        }
    }
#endif
    return 0;
}

void gemm_run(const GemmProblem *g) {
    if (sd_reference_path()) {  // $SATDIFUSER_ISA=reference: the plain triple loop
        reference_gemm(g);
        return;
    }
    if (gemm_run_with(g, gemm_kernel_info()) != 0) gemm_unblocked(g);
}

// ---- Public entry points ------------------------------------------------------------

void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
           int ldb, float beta, float *C, int ldc) {
    GemmProblem g = {.M = M, .N = N, .K = K, .a = A, .lda = lda, .trans_a = trans_a, .alpha = alpha, .b = B,
                     .ldb = ldb, .trans_b = trans_b, .beta = beta, .c = C, .ldc = ldc};
    gemm_run(&g);
}

void linear_forward(const float *x, const float *W, const float *b, float *y, int rows, int in, int out) {
    GemmProblem g = {.M = rows, .N = out, .K = in, .a = x, .lda = in, .alpha = 1.0f, .b = W, .ldb = in, .trans_b = 1,
                     .bias_n = b, .beta = 0.0f, .c = y, .ldc = out};
    gemm_run(&g);
}

// The backward of linear_forward: three products of the same shapes on the same GEMM, and the
// bias gradient summed in double (each element by one thread, in row order).
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int rows, int in, int out) {
    // dinp (rows x in) += dout (rows x out) W (out x in)
    if (dinp) sgemm(0, 0, rows, in, out, 1.0f, dout, out, weight, in, 1.0f, dinp, in);
    // dW (out x in) += dout^T (out x rows) inp (rows x in)
    if (dweight) sgemm(1, 0, out, in, rows, 1.0f, dout, out, inp, in, 1.0f, dweight, in);
    // db[o] += sum_r dout[r,o]
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < out; o++) {
            double acc = 0.0;
            for (int r = 0; r < rows; r++) acc += dout[(int64_t)r * out + o];
            dbias[o] += (float)acc;
        }
    }
}

void linear_forward_packed(const float *x, int ldx, const GemmPackedWeights *W, const float *b, float *y, int rows) {
    GemmProblem g = {.M = rows, .N = W->rows, .K = W->K, .a = x, .lda = ldx, .alpha = 1.0f, .bias_n = b,
                     .beta = 0.0f, .c = y, .ldc = W->rows, .packed_b = W};
    gemm_run(&g);
}

void linear_forward_packed_cf(const float *x, const GemmPackedWeights *W, const float *b, float *y, int rows) {
    GemmProblem g = {.M = rows, .N = W->rows, .K = W->K, .a = x, .lda = rows, .trans_a = 1, .alpha = 1.0f,
                     .bias_n = b, .beta = 0.0f, .c = y, .ldc = W->rows, .packed_b = W};
    gemm_run(&g);
}

// ---- bf16 compute: the same loop nest with the bf16 kernel set ------------------------

// Arguments shared by every build (checked before the CPU test, so that a caller's
// mistake is reported the same way everywhere).
static int check_bf16_problem(const GemmProblem *g, const Bf16Packed *w) {
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
    if (w->side == GEMM_BF16_A && !g->pack_b && !g->pack_b_pairs && !g->b && g->K > 0 && g->N > 0)
        return sd_errorf("gemm_bf16_run: side A needs B (g->b or g->pack_b)");
    if (w->side == GEMM_BF16_BT && !g->a && g->K > 0 && g->M > 0)
        return sd_errorf("gemm_bf16_run: side BT needs A (g->a)");
    return 0;
}

int gemm_bf16_run(const GemmProblem *g, const Bf16Packed *w) {
    if (check_bf16_problem(g, w) != 0) return -1;
    if (!gemm_bf16_supported()) return sd_errorf("gemm_bf16_run: this CPU has no AVX512_BF16 (or AVX-512 is not in use)");
    const GemmKernelInfo *ki = gemm_kernel_avx512_bf16() ? gemm_kernel_avx512_bf16() : gemm_kernel_neon_bf16();
    // the weights as packed weights of the bf16 set (each micro-panel all of K), read in place
    GemmPackedWeights pw;
    gemm_packed_layout(&pw, ki, w->rows, w->K, w->side == GEMM_BF16_BT, w->data);
    GemmProblem p = *g;
    if (w->side == GEMM_BF16_A) p.packed_a = &pw;
    else p.packed_b = &pw;
    if (gemm_run_with(&p, ki) != 0) return sd_errorf("gemm_bf16_run: out of memory for the pack buffers");
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
