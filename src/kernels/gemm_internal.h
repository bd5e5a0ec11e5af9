// GEMM internals (BLIS-style): the kernel context, the problem the loop nest runs, and the
// pieces the kernels (gemm*.c, conv*.c, attention.c) and their tests share. Models do not
// need these: they use kernels.h.
//
// One loop nest (gemm.c) runs every ISA and datatype. What differs is a column of the
// kernel context (GemmKernelInfo): the register tile and cache blocks, the micro-kernels,
// and the datatype - how many k values one packed 32-bit word holds (1: an f32; 2: a bf16
// k pair for vdpbf16ps) and the packers that write the operands in that layout.
#ifndef SD_GEMM_INTERNAL_H
#define SD_GEMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

// One run of a convolution's output pixels on one output row inside a micro-panel.
typedef struct {
    int oh, ow, count, col;  // output row, first output column, length, first column in the micro-panel
} PixelRun;
// The n output pixels first_pixel.. of a micro-panel (Wo pixels per output row) split into runs
// along output rows, at most max_runs; returns the number of runs (conv.c, conv_avx512.c).
int conv_split_runs(int first_pixel, int n, int Wo, PixelRun *runs, int max_runs);

// Packs columns [j0, j0 + nc) x rows [p0, p0 + kc) of an implicit B matrix into
// ceil(nc/nr) micro-panels of kc x nr floats (columns past nc are zeros).
typedef void (*GemmPackB)(const void *ctx, int p0, int kc, int j0, int nc, int nr, float *dst);
// The same B panel straight in bf16 k pairs (the bf16 kernel set's layout, nr = 32):
// dst[jr*kp + q*32 + j] = pair (B[p0+2q][j0+jr+j], B[p0+2q+1][j0+jr+j]), kp = ceil(kc/2).
typedef void (*GemmPackBPairs)(const void *ctx, int p0, int kc, int j0, int nc, uint32_t *dst);

// The general problem: C[M,N] = alpha op(A) B + bias_m[i] + bias_n[j] + beta C, where B is either
// the plain matrix op(b) (b, ldb, trans_b) or, when pack_b is not NULL, produced by pack_b(pack_b_ctx, ...)
// (convolution's implicit im2col). OpenMP over a static grid of output blocks; the reduction over k
// has a fixed order, so the bits do not depend on the thread count. Build it with designated
// initialisers (fields left out are 0 / NULL).
typedef struct {
    int M, N, K;
    const float *a;
    int lda, trans_a;
    float alpha;
    const float *b;
    int ldb, trans_b;
    GemmPackB pack_b;
    const void *pack_b_ctx;
    const float *bias_m, *bias_n;
    float beta;
    float *c;
    int ldc;
    // When set, A (resp. B) comes from weights packed at load instead of a/lda/trans_a (resp.
    // b/ldb/trans_b): packed_a as A (as_b 0), packed_b as B with its rows as B's columns (as_b 1).
    const GemmPackedWeights *packed_a, *packed_b;
    // Optional, read by the bf16 kernel set only: B made straight in k pairs from pack_b_ctx
    // (the bf16 convolution); the f32 kernel sets use pack_b.
    GemmPackBPairs pack_b_pairs;
} GemmProblem;

// A micro-kernel computes one mr x nr tile from a packed A micro-panel (k packed words of mr
// rows: a[p*mr + i]) and a packed B micro-panel (k words of nr columns: b[p*nr + j]); a word
// is one f32 (kpack 1) or a bf16 k pair (kpack 2, summed as even*even + odd*odd by vdpbf16ps):
//   acc[i][j] = sum_p a[p*mr+i] * b[p*nr+j]   (p in increasing order)
//   v = acc + bias_m[i] + bias_n[j]           (each bias may be NULL)
//   C[i][j] = beta != 0 ? beta * C[i][j] + v : v,   for i < m, j < n only.
typedef void (*GemmMicroKernel)(int k, const void *a, const void *b, float *c, int ldc, int m, int n, float beta,
                                const float *bias_m, const float *bias_n);
// The A block rows [i0, i0+mc) x columns [p0, p0+kc) of alpha*op(A) (g->a, or g->packed_a
// packed for another kernel set) in micro-panels of mr rows: word (i, q) of panel ir/mr at
// dst[ir*kw + q*mr + i], kw = ceil(kc/kpack); rows past M are zeros.
typedef void (*GemmPackA)(const GemmKernelInfo *ki, const GemmProblem *g, int i0, int mc, int p0, int kc, void *dst);
// The B panel rows [p0, p0+kc) x columns [j0, j0+nc) of op(B) (or of the problem's implicit B)
// in micro-panels of nr columns: dst[jr*kw + q*nr + j]; columns past nc are zeros. scratch:
// ki->scratch_floats floats the packer may use.
typedef void (*GemmPackBPanel)(const GemmKernelInfo *ki, const GemmProblem *g, int p0, int kc, int j0, int nc,
                               void *dst, float *scratch);

// A kernel set's code and datatype (GemmKernelInfo.ops; the set's name and blocking are in
// kernels.h, public because the layout of weights packed for it depends on them).
typedef struct GemmKernelOps {
    int nc_in_place;   // the B panel's width when B is weights read in place (0: nc)
    // The datatype: k values per packed 32-bit word (1: f32; 2: bf16 k pairs, kc even) and the
    // packers that write A and B in that layout (with scratch_floats floats of scratch).
    int kpack;
    GemmPackA pack_a;
    GemmPackBPanel pack_b;
    int scratch_floats;
    // gemm_choose_grid's cost model: multiply-adds per cycle (one vector instruction), cycles per
    // value to pack an operand per call, and to stream one read in place (weights packed at load).
    double fma_per_cycle, pack_cost, stream_cost;
    // Largest B (in words) packed once for all row blocks when the grid has one column of
    // blocks (gemm.c, shared_b_panel); 0: never.
    size_t shared_b_words;
    // The layout of weights packed for this set: 0, k block by k block of kc (gemm_pack_weights,
    // kernels.h); 1, each micro-panel holding all of K (Bf16Packed, kernels.h).
    int weights_whole_k;
    GemmMicroKernel micro;
    // Optional (NULL: not used): the tile for a B micro-panel with n <= nr/2 real columns, two A
    // micro-panels a0 (rows 0..mr-1) and a1 (rows mr..2mr-1) at once, m <= 2*mr rows stored.
    // Same sums in the same order as two `micro` calls, so the same bits.
    void (*micro_narrow)(int k, const void *a0, const void *a1, const void *b, float *c, int ldc, int m, int n,
                         float beta, const float *bias_m, const float *bias_n);
    // Optional (NULL: `micro`, no fetch): `micro`, and while it runs, fetch_bytes bytes from
    // `fetch` brought into cache, spread over its k loop (at most 64 bytes, one line, per k step).
    // gemm.c uses it for weights packed as B: the next micro-panel, a slice per tile.
    void (*micro_fetch)(int k, const void *a, const void *b, float *c, int ldc, int m, int n, float beta,
                        const float *bias_m, const float *bias_n, const char *fetch, int fetch_bytes);
    // f32 sets. Optional (NULL: gemm_f16.c's portable loop): dst[i] = the f32 of the IEEE half
    // src[i], i < n (exact). The loop nest widens f16 weights (GemmPackedWeights.half) block by
    // block with it: F16C on x86 (vcvtph2ps), FCVTL on arm64.
    void (*widen_f16)(const uint16_t *src, float *dst, size_t n);
    // f32 sets. Optional (NULL: gemm_pack.c's portable loop): one micro-panel of A from m <= mr
    // rows of a row-major matrix (row i at src + i*lda), kc columns: dst[p*mr + i] = src[i*lda + p],
    // rows m..mr-1 zero.
    void (*pack_a_rows)(const float *src, int64_t lda, int m, int kc, float *dst);
    // f32 sets. One online-softmax step over scores s[r*nr + j] (r < rows keys, j < nr queries), per query j:
    //   m' = max(m, max_r s);  corr = exp(m - m');  s = exp(s - m');  l = l*corr + sum_r s;  m = m'.
    // A column still all -inf keeps m = -inf and gets s = 0, corr = 0 (attention.c).
    void (*softmax_step)(float *s, int rows, float *m, float *l, float *corr);
    // f32 sets. Optional (NULL: attention.c's portable loops), the attention's running output O^T
    // (o[d*ld + j], d < rows head dims, j queries): scale_columns does o[d*ld + j] *= corr[j]
    // for j < width (the online softmax's rescale); finish_rows writes
    // out[j*ld_out + d] = o[d*ld + j] * inv[j] for j < nq (O / l, back in rows of queries).
    // The same multiplications as the loops, so the same bits.
    void (*scale_columns)(float *o, int rows, int width, int ld, const float *corr);
    void (*finish_rows)(const float *o, int rows, int nq, int ld, const float *inv, float *out, int64_t ld_out);
    // f32 sets. Optional (NULL: conv.c's portable packer): a convolution's implicit im2col for stride
    // 1 and kernel widths <= 8 (ConvPackCtx), for maps narrower than a micro-panel.
    GemmPackB conv_pack_b_s1;
} GemmKernelOps;

// The per-ISA kernel sets (NULL where not compiled in: NEON on x86, AVX on ARM).
const GemmKernelInfo *gemm_kernel_scalar(void);
const GemmKernelInfo *gemm_kernel_avx2(void);
const GemmKernelInfo *gemm_kernel_avx512(void);
const GemmKernelInfo *gemm_kernel_neon(void);
// The bf16 set (vdpbf16ps, 14 x 32 tiles); NULL off x86-64. Run only when gemm_bf16_supported().
const GemmKernelInfo *gemm_kernel_avx512_bf16(void);
// The arm64 bf16 set (BFMLALT/BFMLALB, the same layout and sums; gemm_neon_bf16.c); NULL off arm64.
const GemmKernelInfo *gemm_kernel_neon_bf16(void);
// Its register tile, which is also the panel width of Bf16Packed weights (side A: 14 rows, side BT: 32).
enum { GEMM_BF16_MR = 14, GEMM_BF16_NR = 32 };

void gemm_run(const GemmProblem *p);
// The bf16 GEMM (kernels.h: Bf16Packed): gemm_run's contract (C = op(A) B + bias_m[i] + bias_n[j] + beta C, B plain or via
// g->pack_b), except that the weight operand comes from w: side A ignores g->a,
// lda, trans_a, packed_a; side BT ignores g->b, ldb, trans_b, pack_b, packed_b.
// g->alpha must be 1, and the other operand cannot be f32 packed weights (side A:
// packed_b, side BT: packed_a must be NULL). That operand (f32) is rounded to bf16
// while it is packed. Products are summed in f32 by vdpbf16ps, k pairs in increasing
// order, in blocks of a fixed size: the bits do not depend on the thread count.
// Returns 0, or -1 via sd_errorf (CPU without AVX512_BF16, shapes that do not match
// w, alpha != 1, out of memory).
int gemm_bf16_run(const GemmProblem *g, const Bf16Packed *w);
// The loop nest with kernel set ki (gemm.c): 0, or -1 when there is no memory for the pack
// buffers (then nothing was computed). Packed weights whose `kernel` is ki are read in place.
int gemm_run_with(const GemmProblem *g, const GemmKernelInfo *ki);

// Splits C (M x N, tiles mr x nr) into a tm x tn grid of blocks for `threads` threads: the least
// padded work plus operand handling per thread, cost per thread = rows*cols*K/fma_per_cycle +
// (a_cost*rows + b_cost*cols)*K (a_cost/b_cost: cycles per float to pack or stream A/B). Twice
// as many blocks as threads are preferred when they cost about the same, so that a thread
// slowed down by another process hands blocks to the others.
void gemm_choose_grid(int M, int N, int K, int threads, int mr, int nr, double fma_per_cycle, double a_cost,
                      double b_cost, int *tm_out, int *tn_out);
// The threads a product gets: 1 when it is small (<= 2 MFLOP and at most 1 MB of weights packed
// at load, weight_bytes) or called inside a parallel region (*nested = 1 then: it must not use
// the per-thread pools), else all of OpenMP's (at most 256).
int gemm_threads_for(const GemmProblem *g, double weight_bytes, int *nested);
// C = bias_m[i] + bias_n[j] + beta*C (C not read if beta == 0): a product with K = 0.
void gemm_bias_beta(const GemmProblem *g);

// ---- Packers (gemm_pack.c) --------------------------------------------------------------
// The f32 kernel sets' pack_a / pack_b (portable; pack_a uses ki->pack_a_rows where set).
void gemm_pack_a_f32(const GemmKernelInfo *ki, const GemmProblem *g, int i0, int mc, int p0, int kc, void *dst);
void gemm_pack_b_f32(const GemmKernelInfo *ki, const GemmProblem *g, int p0, int kc, int j0, int nc, void *dst,
                     float *scratch);
// op(B) alone (not an implicit B), micro-panels of nr columns (gemm.c's no-workspace path too).
void gemm_pack_b_plain(const GemmProblem *g, int p0, int kc, int j0, int nc, int nr, float *dst);
// One micro-panel row: dst[0, n) = src[0, n), dst[n, width) = 0 (gemm_pack.c's B panels,
// attention.c's V^T panels). Fixed 8-float chunks: vector moves, not a libc call per row.
static inline void gemm_copy_pad(float *dst, const float *src, int n, int width) {
    int t = 0;
    for (; t + 8 <= n; t += 8) memcpy(dst + t, src + t, 8 * sizeof(float));
    for (; t < n; t++) dst[t] = src[t];
    for (; t < width; t++) dst[t] = 0.0f;
}
// The layout description of rows x K values at data, packed for ki (gemm_pack_weights' layout,
// kernels.h: panels of ki->nr rows (as_b) or ki->mr, k block by k block of ki->kc).
void gemm_packed_layout(GemmPackedWeights *pw, const GemmKernelInfo *ki, int rows, int K, int as_b, void *data);

// ---- f16 weights (gemm_f16.c) --------------------------------------------------------------
// n halves at src widened to f32 at dst with ki's widen_f16 (or the portable loop).
void gemm_widen_f16(const GemmKernelInfo *ki, const uint16_t *src, float *dst, size_t n);
// The kernel sets' widen_f16: portable (core/half.h's f32_from_f16), and on x86-64 only the AVX2
// (F16C, the portable loop on a CPU without it) and AVX-512 ones, on arm64 only the NEON one.
void gemm_widen_f16_portable(const uint16_t *src, float *dst, size_t n);
void gemm_widen_f16_avx2(const uint16_t *src, float *dst, size_t n);
void gemm_widen_f16_avx512(const uint16_t *src, float *dst, size_t n);
void gemm_widen_f16_neon(const uint16_t *src, float *dst, size_t n);

// ---- The bf16 set's pieces attention.c and the tests use (gemm_avx512_bf16.c; on arm64
// gemm_neon_bf16.c, the same bits) ------------------------------------------------------------
// Call only when gemm_bf16_supported(). The 14 x 32 tile C = beta C + sum over kp pairs
// (panels as in Bf16Packed: a[q*14 + i], b[q*32 + j]); width (<= 32) words from two f32 rows
// (word j = pair (even[j], odd[j]), odd may be NULL: zeros, words n.. zero); `rows` f32 rows of
// kc values (ld apart) times scale as a panel of `width` rows: dst[q*width + i] = pair
// (scale*src[i][2q], scale*src[i][2q+1]), rows past `rows` zero.
void gemm_bf16_micro(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta);
void gemm_bf16_pair_rows(const float *even, const float *odd, int n, int width, uint32_t *dst);
void gemm_bf16_rows_to_panel(const float *src, int64_t ld, int rows, int kc, float scale, uint32_t *dst, int width);
// The online-softmax step (GemmKernelInfo.softmax_step of the AVX-512 set) on a 32-column score
// tile of `rows` rows, and P's rows paired in place (pair row p = gemm_bf16_pair_rows of rows
// 2p, 2p+1, at s + 32p): one pass, the same bits as the two steps.
void gemm_bf16_softmax_pairs(float *s, int rows, float *m, float *l, float *corr);

// ---- Convolution packers (conv.c, conv_avx512.c) --------------------------------------------
// An f32 convolution's implicit im2col over one or more samples (conv.c's pack_conv_b and the ISA
// ones): column j = n*Ho*Wo + oh*Wo + ow is sample n's output pixel (oh, ow); output rows never
// cross samples, so conv_split_runs' global row j / Wo is sample (j / Wo) / Ho, row (j / Wo) % Ho.
typedef struct {
    const float *x;  // the first sample, Cin x H x W; sample n at x + n * sample
    int H, W, KH, KW, stride, pad_top, pad_left, Ho, Wo;
    size_t sample;   // floats from one sample to the next (Cin * H * W)
} ConvPackCtx;
void conv_pack_b(const void *ctx, int p0, int kc, int j0, int nc, int nr, float *dst);
// (AVX-512) conv_pack_b for stride 1 and kernel widths up to CONV_S1_MAX_KW (the AVX-512 set's
// conv_pack_b_s1): the same values in the same places.
enum { CONV_S1_MAX_KW = 8 };
void conv_pack_b_s1_avx512(const void *ctx, int p0, int kc, int j0, int nc, int nr, float *dst);
// The bf16 convolution's input: the sample rounded to bf16 once and zero-padded, xp[ci][Hp][Wp]
// (Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right), and koff[k] = ci*Hp*Wp +
// kh*Wp + kw for k = (ci*KH + kh)*KW + kw.
typedef struct {
    const uint16_t *xp;
    const int32_t *koff;
    int Wp, stride, Wo;
} ConvPairsCtx;
// (AVX512_BF16) X_col[(ci,kh,kw), (oh,ow)] = xp[ci][oh*s + kh][ow*s + kw] in k pairs (GemmPackBPairs).
void conv_pack_b_pairs_avx512(const void *ctx, int p0, int kc, int j0, int nc, uint32_t *dst);
// Frees the calling thread's kept bf16 input copy (gemm_free_thread_buffers calls it).
void conv_free_thread_buffers(void);
// (AVX512_BF16) One H x W channel rounded to bf16 into its zero-padded Hp x Wp plane.
void conv_round_plane_avx512(const float *x, int H, int W, int pad_top, int pad_left, int Hp, int Wp,
                             uint16_t *plane);

#endif
