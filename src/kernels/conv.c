// Convolution as an implicit GEMM over B samples at once:
//   Y[Cout, B*Ho*Wo] = W[Cout, Cin*KH*KW] * X_col[Cin*KH*KW, B*Ho*Wo] + bias
// where X_col[(ci,kh,kw), (n,oh,ow)] = x[n, ci, oh*s - pad_top + kh, ow*s - pad_left + kw]
// (zero outside the map). X_col never exists: the GEMM asks for one kc x nc
// panel at a time (pack_conv_b below writes it straight into the packed
// layout), so the only workspace is the GEMM's own pack buffers (and, for
// B > 1, the Cout x B*Ho*Wo result before it is scattered to NCHW). A 1x1
// stride-1 unpadded conv of one sample is a plain GEMM on x.
// Small maps run all samples in one GEMM (B = N): a 4x4 map is 16 columns per sample, and one
// image per GEMM streams the weights once per image (weight-bound: docs/benchmarks-models.md).
// Each output element is summed over K in the same order whatever the number of columns, so the
// bits are those of one sample per call (tests/test_conv_batch.c).
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

Conv2dGeometry conv_geometry(int kernel, int stride, int pad) {
    Conv2dGeometry g = {kernel, kernel, stride, pad, pad, pad, pad};
    return g;
}

int conv_out_size(int in, int kernel, int stride, int pad_before, int pad_after) {
    return (in + pad_before + pad_after - kernel) / stride + 1;
}

enum { MAX_SEGMENTS = 80 };

// Short copies and zero fills (a run is at most nr floats): fixed 8-float
// chunks that the compiler turns into vector moves instead of libc calls.
static inline void copy_floats(float *dst, const float *src, int n) {
    for (; n >= 8; n -= 8, dst += 8, src += 8) memcpy(dst, src, 8 * sizeof(float));
    for (int t = 0; t < n; t++) dst[t] = src[t];
}

static inline void zero_floats(float *dst, int n) {
    static const float zeros[8] = {0};
    for (; n >= 8; n -= 8, dst += 8) memcpy(dst, zeros, 8 * sizeof(float));
    for (int t = 0; t < n; t++) dst[t] = 0.0f;
}

int conv_split_runs(int first_pixel, int n, int Wo, PixelRun *runs, int max_runs) {
    int nruns = 0;
    for (int col = 0; col < n && nruns < max_runs;) {
        int pix = first_pixel + col, oh = pix / Wo, ow = pix % Wo;
        int cnt = Wo - ow < n - col ? Wo - ow : n - col;
        runs[nruns].oh = oh;
        runs[nruns].ow = ow;
        runs[nruns].count = cnt;
        runs[nruns].col = col;
        nruns++;
        col += cnt;
    }
    return nruns;
}

// Writes X_col rows [p0, p0+kc) x columns [j0, j0+nc) as micro-panels of nr columns.
void conv_pack_b(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const ConvPackCtx *cx = vctx;
    const int H = cx->H, W = cx->W, KH = cx->KH, KW = cx->KW, s = cx->stride, Wo = cx->Wo;
    PixelRun runs[MAX_SEGMENTS];
    const float *sample_x[MAX_SEGMENTS];  // each run's sample
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        int nruns = conv_split_runs(j0 + jr, n, Wo, runs, MAX_SEGMENTS);
        for (int r = 0; r < nruns; r++) {  // global output row -> (sample, row)
            sample_x[r] = cx->x + (size_t)(runs[r].oh / cx->Ho) * cx->sample;
            runs[r].oh %= cx->Ho;
        }
        int ci = (p0 / KW) / KH, kh = (p0 / KW) % KH, kw = p0 % KW;
        for (int p = 0; p < kc; p++) {
            float *row = d + (size_t)p * nr;
            for (int r = 0; r < nruns; r++) {
                const float *plane = sample_x[r] + (size_t)ci * H * W;
                float *out = row + runs[r].col;
                int cnt = runs[r].count;
                int ih = runs[r].oh * s - cx->pad_top + kh;
                if (ih < 0 || ih >= H) {
                    zero_floats(out, cnt);
                    continue;
                }
                const float *in = plane + (size_t)ih * W;
                int iw0 = runs[r].ow * s - cx->pad_left + kw;  // input column of the run's first pixel
                if (s == 1) {
                    // zeros left of the map, a contiguous copy, zeros right of it
                    int lo = iw0 < 0 ? -iw0 : 0;
                    if (lo > cnt) lo = cnt;
                    int hi = W - iw0 < cnt ? W - iw0 : cnt;
                    if (hi < lo) hi = lo;
                    zero_floats(out, lo);
                    copy_floats(out + lo, in + iw0 + lo, hi - lo);
                    zero_floats(out + hi, cnt - hi);
                } else {
                    for (int t = 0; t < cnt; t++) {
                        int iw = iw0 + t * s;
                        out[t] = iw >= 0 && iw < W ? in[iw] : 0.0f;
                    }
                }
            }
            zero_floats(row + n, nr - n);
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

// The batched result (Cout x B*Ho*Wo) before its scatter to NCHW: the calling thread's, kept
// between calls up to 32 MB (as the bf16 input copy below); a nested call allocates its own.
enum { BATCH_CACHE_MAX = 32 << 20 };
static void *g_batch_cache;
static size_t g_batch_cache_bytes;
#pragma omp threadprivate(g_batch_cache, g_batch_cache_bytes)

// Maps of fewer output pixels than this run all the samples in one GEMM. At 32x32 (1024 columns)
// one image already fills the GEMM's column blocks; below it the weights are streamed once per
// GEMM, so B images per GEMM stream them B times less (measured: docs/benchmarks-models.md).
enum { CONV_BATCH_MAX_PIXELS = 1024 };

// The weight is either a plain (Cout, Cin*kh*kw) matrix or packed at load (f32 or f16).
static void conv_run(const float *x, int N, int Cin, int H, int W, const float *weight,
                     const GemmPackedWeights *packed, const float *bias, int Cout, Conv2dGeometry g, float *y) {
    if (sd_reference_path()) {  // $SATDIFUSER_ISA=reference: the direct 7-loop convolution
        reference_conv2d(x, N, Cin, H, W, weight, packed, bias, Cout, g, y);
        return;
    }
    int Ho = conv_out_size(H, g.kernel_h, g.stride, g.pad_top, g.pad_bottom);
    int Wo = conv_out_size(W, g.kernel_w, g.stride, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0 || N <= 0) return;
    const int K = Cin * g.kernel_h * g.kernel_w, HoWo = Ho * Wo;
    int is_1x1 = g.kernel_h == 1 && g.kernel_w == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_left == 0 &&
                 g.pad_bottom == 0 && g.pad_right == 0;
    // B samples per GEMM: all of them on a small map, when the result buffer can be had
    int B = N > 1 && HoWo < CONV_BATCH_MAX_PIXELS && (int64_t)N * HoWo <= INT32_MAX / 2 ? N : 1;
    int nested = 0;
#ifdef _OPENMP
    nested = omp_in_parallel();
#endif
    size_t cbytes = (size_t)Cout * B * HoWo * sizeof(float);
    int cached = !nested && cbytes <= BATCH_CACHE_MAX;
    float *cbuf = NULL;
    if (B > 1) {
        cbuf = cached ? sd_kept_buffer(&g_batch_cache, &g_batch_cache_bytes, cbytes) : malloc(cbytes);
        if (!cbuf) B = 1;  // no memory for it: one sample per GEMM, the same bits
    }
    const GemmKernelInfo *ki = gemm_kernel_info();
    for (int n0 = 0; n0 < N; n0 += B) {
        const float *xn = x + (int64_t)n0 * Cin * H * W;
        float *yn = y + (int64_t)n0 * Cout * HoWo;
        ConvPackCtx cx = {.x = xn, .H = H, .W = W, .KH = g.kernel_h, .KW = g.kernel_w, .stride = g.stride,
                          .pad_top = g.pad_top, .pad_left = g.pad_left, .Ho = Ho, .Wo = Wo,
                          .sample = (size_t)Cin * H * W};
        GemmProblem p = {.M = Cout, .N = B * HoWo, .K = K, .a = weight, .lda = K, .alpha = 1.0f, .bias_m = bias,
                         .beta = 0.0f, .c = B > 1 ? cbuf : yn, .ldc = B * HoWo, .packed_a = packed};
        if (is_1x1 && B == 1) {
            p.b = xn;  // x is already the Cin x HW matrix
            p.ldb = H * W;
        } else {
            p.pack_b = conv_pack_b;
            p.pack_b_ctx = &cx;
            // The kernel set's own packer only for maps narrower than a micro-panel (16x16, 8x8,
            // 4x4: several runs per panel); on 32- and 64-wide maps (one run of 32) the plain
            // copies measured faster (docs/benchmarks.md, "Packing").
            if (g.stride == 1 && Wo < 32 && g.kernel_w <= CONV_S1_MAX_KW && ki->ops->conv_pack_b_s1)
                p.pack_b = ki->ops->conv_pack_b_s1;
        }
        gemm_run(&p);
        if (B > 1) {
            // y[n][co][:] = C[co][n*HoWo : (n+1)*HoWo]
            for (int co = 0; co < Cout; co++)
                for (int n = 0; n < B; n++)
                    memcpy(yn + ((size_t)n * Cout + co) * HoWo, cbuf + ((size_t)co * B + n) * HoWo,
                           (size_t)HoWo * sizeof(float));
        }
    }
    if (B > 1 && !cached) free(cbuf);
}

void conv2d_forward(const float *x, int N, int Cin, int H, int W, const float *weight, const float *bias, int Cout,
                    Conv2dGeometry g, float *y) {
    conv_run(x, N, Cin, H, W, weight, NULL, bias, Cout, g, y);
}

void conv2d_forward_packed(const float *x, int N, int Cin, int H, int W, const GemmPackedWeights *weight,
                           const float *bias, int Cout, Conv2dGeometry g, float *y) {
    conv_run(x, N, Cin, H, W, NULL, weight, bias, Cout, g, y);
}

// ---- bf16 compute ------------------------------------------------------------------------
// The same implicit GEMM with the bf16 kernel set: each sample is rounded to bf16 once into a
// zero-padded copy xp (conv_round_plane_avx512), from which the B panels are made straight in
// k pairs (conv_pack_b_pairs_avx512). The values are those of conv_pack_b rounded to bf16, so
// the result has the bits of gemm_bf16_run with an f32 im2col pack_b (tests/test_gemm_bf16.c).
// One sample per GEMM here (not batched like conv_run: the padded copy and ConvPairsCtx are per sample).

// The padded bf16 input, kept between calls up to 32 MB (a UNet's maps; the VAE's 512x512 ones
// are allocated per call): a fresh buffer each call was a fresh set of pages for the kernel to
// fault in and zero. The calling thread's own (threadprivate, as gemm.c's pack buffers: two host
// threads converting at once do not share it); a nested call allocates its own.
enum { PLANE_CACHE_MAX = 32 << 20 };
static void *g_plane_cache;
static size_t g_plane_cache_bytes;
#pragma omp threadprivate(g_plane_cache, g_plane_cache_bytes)

void conv_free_thread_buffers(void) {
    free(g_plane_cache);
    g_plane_cache = NULL;
    g_plane_cache_bytes = 0;
    free(g_batch_cache);
    g_batch_cache = NULL;
    g_batch_cache_bytes = 0;
}

int conv2d_forward_bf16(const float *x, int N, int Cin, int H, int W, const Bf16Packed *weight, const float *bias,
                        int Cout, Conv2dGeometry g, float *y) {
    const int KH = g.kernel_h, KW = g.kernel_w, K = Cin * KH * KW;
    if (weight->side != GEMM_BF16_A || weight->rows != Cout || weight->K != K)
        return sd_errorf("conv2d_forward_bf16: weights packed as side %d, %d x %d; the conv needs side A, %d x %d",
                         weight->side, weight->rows, weight->K, Cout, K);
    if (!gemm_kernel_avx512_bf16() && !gemm_kernel_neon_bf16())
        return sd_errorf("conv2d_forward_bf16: no bf16 kernel in this build (x86-64 with AVX512_BF16, arm64 with FEAT_BF16)");
    if (!gemm_bf16_supported())
        return sd_errorf("conv2d_forward_bf16: this CPU has no AVX512_BF16 (or AVX-512 is not in use)");
    int Ho = conv_out_size(H, KH, g.stride, g.pad_top, g.pad_bottom);
    int Wo = conv_out_size(W, KW, g.stride, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0 || N <= 0) return 0;
    GemmProblem p = {.M = Cout, .N = Ho * Wo, .K = K, .alpha = 1.0f, .bias_m = bias, .beta = 0.0f, .ldc = Ho * Wo};
    int is_1x1 = KH == 1 && KW == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 &&
                 g.pad_right == 0;
    if (is_1x1) {
        // x is already the Cin x HW matrix B
        for (int n = 0; n < N; n++) {
            p.b = x + (int64_t)n * Cin * H * W;
            p.ldb = H * W;
            p.c = y + (int64_t)n * Cout * Ho * Wo;
            if (gemm_bf16_run(&p, weight) != 0) return -1;
        }
        return 0;
    }
    if (!gemm_kernel_avx512_bf16()) {
        // arm64 (gemm_neon_bf16.c): the f32 im2col, rounded to pairs by the set's B packer: the
        // same values as the padded bf16 copy, so the same bits
        for (int n = 0; n < N; n++) {
            ConvPackCtx cx = {.x = x + (int64_t)n * Cin * H * W, .H = H, .W = W, .KH = KH, .KW = KW,
                              .stride = g.stride, .pad_top = g.pad_top, .pad_left = g.pad_left, .Ho = Ho, .Wo = Wo,
                              .sample = (size_t)Cin * H * W};
            p.pack_b = conv_pack_b;
            p.pack_b_ctx = &cx;
            p.c = y + (int64_t)n * Cout * Ho * Wo;
            if (gemm_bf16_run(&p, weight) != 0) return -1;
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
    ConvPairsCtx cx = {.xp = xp, .koff = koff, .Wp = Wp, .stride = g.stride, .Wo = Wo};
    p.pack_b_pairs = conv_pack_b_pairs_avx512;
    p.pack_b_ctx = &cx;
    int rc = 0;
    for (int n = 0; n < N && rc == 0; n++) {
        const float *xn = x + (int64_t)n * Cin * H * W;
        // channels handed out dynamically: a thread slowed by another process leaves them to the others
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) if (threads > 1)
        for (int ci = 0; ci < Cin; ci++)
            conv_round_plane_avx512(xn + (size_t)ci * H * W, H, W, g.pad_top, g.pad_left, Hp, Wp, xp + (size_t)ci * Hp * Wp);
        p.c = y + (int64_t)n * Cout * Ho * Wo;
        rc = gemm_bf16_run(&p, weight);
    }
    if (!cached) free(xp);
    free(koff);
    return rc;
}

