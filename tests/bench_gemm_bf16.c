// `make bench`: the bf16 GEMM (vdpbf16ps, src/kernels/gemm_avx512_bf16.c) against the f32
// GEMM at the same shapes (f32 packing its weights per call, f32 with weights packed
// at load, bf16), timed in turn in the same run (so that load from other processes
// hits all alike), best run of each. Prints GFLOP/s, % of the measured peaks (f32 FMA
// and bf16 vdpbf16ps register loops) and the ratio bf16 / packed f32 per shape.
// Usage: bench_gemm_bf16 [--quick]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "tests/test_env.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"

#include "tests/bench_peak.h"

#if defined(__x86_64__)
// 16 independent register-only vdpbf16ps chains (12 do not hide its latency on Zen 5):
// 16 x 16 lanes x 2 pairs x 2 flops per step.
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_flops(long iters, float seed) {
    __m512 x[16];
    for (int j = 0; j < 16; j++) x[j] = _mm512_set1_ps(seed + (float)j);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x33803380);
    for (long i = 0; i < iters; i++) {
        x[0] = _mm512_dpbf16_ps(x[0], a, b); x[1] = _mm512_dpbf16_ps(x[1], a, b);
        x[2] = _mm512_dpbf16_ps(x[2], a, b); x[3] = _mm512_dpbf16_ps(x[3], a, b);
        x[4] = _mm512_dpbf16_ps(x[4], a, b); x[5] = _mm512_dpbf16_ps(x[5], a, b);
        x[6] = _mm512_dpbf16_ps(x[6], a, b); x[7] = _mm512_dpbf16_ps(x[7], a, b);
        x[8] = _mm512_dpbf16_ps(x[8], a, b); x[9] = _mm512_dpbf16_ps(x[9], a, b);
        x[10] = _mm512_dpbf16_ps(x[10], a, b); x[11] = _mm512_dpbf16_ps(x[11], a, b);
        x[12] = _mm512_dpbf16_ps(x[12], a, b); x[13] = _mm512_dpbf16_ps(x[13], a, b);
        x[14] = _mm512_dpbf16_ps(x[14], a, b); x[15] = _mm512_dpbf16_ps(x[15], a, b);
    }
    __m512 s = x[0];
    for (int j = 1; j < 16; j++) s = _mm512_add_ps(s, x[j]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * 16 * 16 * 4;
}

// One core's bf16 peak: the best of 5 short runs.
static double measure_bf16_peak(void) {
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = sd_now(), f = dpbf16_flops(10 * 1000 * 1000L, 1.0f + rep);
        double gf = f / (sd_now() - t0) * 1e-9;
        if (gf > best) best = gf;
    }
    return best;
}
#else
static double measure_bf16_peak(void) { return 0.0; }
#endif

// Inputs in [-1, 1).
static float *rand_floats(size_t n, unsigned seed) { return bench_rand_floats(n, seed, 1.0f, 0.0f); }

// ---- A 3x3 stride-1 pad-1 convolution's implicit im2col, for gemm_run and gemm_bf16_run alike ----

typedef struct {
    const float *x;  // Cin x H x W
    int H, W;
} Im2colCtx;

static void pack_im2col3x3(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const Im2colCtx *cx = vctx;
    const int H = cx->H, W = cx->W;
    int oh[64], ow[64];  // the micro-panel's output pixels (nr <= 64)
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        for (int j = 0; j < n; j++) {
            oh[j] = (j0 + jr + j) / W;
            ow[j] = (j0 + jr + j) % W;
        }
        int ci = p0 / 9, kh = p0 / 3 % 3, kw = p0 % 3;
        for (int p = 0; p < kc; p++) {
            const float *plane = cx->x + (size_t)ci * H * W;
            float *row = d + (size_t)p * nr;
            for (int j = 0; j < n; j++) {
                int ih = oh[j] + kh - 1, iw = ow[j] + kw - 1;
                row[j] = ih >= 0 && ih < H && iw >= 0 && iw < W ? plane[ih * W + iw] : 0.0f;
            }
            for (int j = n; j < nr; j++) row[j] = 0.0f;
            if (++kw == 3) {
                kw = 0;
                if (++kh == 3) {
                    kh = 0;
                    ci++;
                }
            }
        }
    }
}

// ---- Timing ----------------------------------------------------------------------

typedef void (*RunFn)(void *ctx);

static double g_peak_f32 = 0.0, g_peak_bf16 = 0.0;
static int g_quick = 0;

// The three paths in turn (after a warm-up run of each): f32 packing its weights per call,
// f32 with weights packed at load (what the models run), bf16. At least 3 runs each and about
// `budget` seconds in all; the best run of each; the ratio is bf16 against packed f32.
static void bench_three(const char *name, double flops, RunFn f32, RunFn f32p, RunFn bf16, void *ctx) {
    RunFn fn[3] = {f32, f32p, bf16};
    double budget = g_quick ? 0.2 : 0.8, best[3] = {1e30, 1e30, 1e30}, total = 0.0;
    for (int v = 0; v < 3; v++) fn[v](ctx);
    for (int rep = 0; rep < 3 || (total < budget && rep < 40); rep++) {
        for (int v = 0; v < 3; v++) {
            double t0 = sd_now();
            fn[v](ctx);
            double t = sd_now() - t0;
            if (t < best[v]) best[v] = t;
            total += t;
        }
    }
    double gf[3];
    for (int v = 0; v < 3; v++) gf[v] = flops / best[v] * 1e-9;
    printf("%-36s %6.1f %4.0f%% | %8.2f ms %6.1f %4.0f%% | %8.2f ms %6.1f %4.0f%% | %5.2fx\n", name, gf[0],
           100.0 * gf[0] / g_peak_f32, best[1] * 1e3, gf[1], 100.0 * gf[1] / g_peak_f32, best[2] * 1e3, gf[2],
           100.0 * gf[2] / g_peak_bf16, best[1] / best[2]);
    fflush(stdout);
}

static void die(const char *what) {
    fprintf(stderr, "bench_gemm_bf16: %s: %s\n", what, sd_last_error());
    exit(1);
}

// One GEMM: g is the f32 problem (weights as a plain matrix), pw the same weights packed for
// the f32 kernel (as A for side A, as B^T for side BT), w for the bf16 kernel.
typedef struct {
    GemmProblem g;
    GemmPackedWeights pw;
    Bf16Packed w;
} Case;

static void run_f32(void *ctx) { gemm_run(&((Case *)ctx)->g); }

static void run_f32_packed(void *ctx) {
    Case *c = ctx;
    GemmProblem g = c->g;
    if (c->w.side == GEMM_BF16_A) g.packed_a = &c->pw;
    else g.packed_b = &c->pw;
    gemm_run(&g);
}

static void run_bf16(void *ctx) {
    Case *c = ctx;
    if (gemm_bf16_run(&c->g, &c->w) != 0) die("gemm_bf16_run");
}

static void bench_case(const char *name, Case *c, const float *W, int rows, int side) {
    if (gemm_pack_weights(&c->pw, W, rows, c->g.K, side == GEMM_BF16_BT) != 0) die("gemm_pack_weights");
    if (gemm_bf16_pack_weights(&c->w, W, rows, c->g.K, side) != 0) die("gemm_bf16_pack_weights");
    bench_three(name, 2.0 * c->g.M * c->g.N * c->g.K, run_f32, run_f32_packed, run_bf16, c);
    gemm_packed_weights_free(&c->pw);
    gemm_bf16_packed_free(&c->w);
}

// C[M,N] = W[M,K] X[K,N] (side A), X plain or through the im2col callback.
static void bench_side_a(const char *name, int M, int N, int K, const Im2colCtx *conv) {
    float *W = rand_floats((size_t)M * K, 1), *X = conv ? NULL : rand_floats((size_t)K * N, 2);
    float *C = rand_floats((size_t)M * N, 3);
    Case c;
    memset(&c, 0, sizeof c);
    c.g.M = M;
    c.g.N = N;
    c.g.K = K;
    c.g.a = W;
    c.g.lda = K;
    c.g.alpha = 1.0f;
    c.g.b = X;
    c.g.ldb = N;
    if (conv) {
        c.g.pack_b = pack_im2col3x3;
        c.g.pack_b_ctx = conv;
    }
    c.g.c = C;
    c.g.ldc = N;
    bench_case(name, &c, W, M, GEMM_BF16_A);
    free(W);
    free(X);
    free(C);
}

// y[rows, out] = x[rows, in] W^T (side BT, nn.Linear).
static void bench_linear(const char *name, int rows, int in, int out) {
    float *W = rand_floats((size_t)out * in, 4), *X = rand_floats((size_t)rows * in, 5);
    float *Y = rand_floats((size_t)rows * out, 6);
    Case c;
    memset(&c, 0, sizeof c);
    c.g.M = rows;
    c.g.N = out;
    c.g.K = in;
    c.g.a = X;
    c.g.lda = in;
    c.g.alpha = 1.0f;
    c.g.b = W;
    c.g.ldb = in;
    c.g.trans_b = 1;
    c.g.c = Y;
    c.g.ldc = out;
    bench_case(name, &c, W, out, GEMM_BF16_BT);
    free(W);
    free(X);
    free(Y);
}

// y = conv3x3(x) + b, stride 1, pad 1, one sample: conv2d_forward, conv2d_forward_packed, conv2d_forward_bf16.
typedef struct {
    const float *x, *wt, *bias;
    float *y;
    GemmPackedWeights pw;
    Bf16Packed w;
    int Cin, H, W, Cout;
} ConvCase;

static void run_conv_f32(void *ctx) {
    ConvCase *c = ctx;
    conv2d_forward(c->x, 1, c->Cin, c->H, c->W, c->wt, c->bias, c->Cout, conv_geometry(3, 1, 1), c->y);
}

static void run_conv_f32_packed(void *ctx) {
    ConvCase *c = ctx;
    conv2d_forward_packed(c->x, 1, c->Cin, c->H, c->W, &c->pw, c->bias, c->Cout, conv_geometry(3, 1, 1), c->y);
}

static void run_conv_bf16(void *ctx) {
    ConvCase *c = ctx;
    if (conv2d_forward_bf16(c->x, 1, c->Cin, c->H, c->W, &c->w, c->bias, c->Cout, conv_geometry(3, 1, 1), c->y) != 0)
        die("conv2d_forward_bf16");
}

static void bench_conv(const char *name, int Cin, int H, int W, int Cout) {
    float *x = rand_floats((size_t)Cin * H * W, 11), *wt = rand_floats((size_t)Cout * Cin * 9, 12);
    float *bias = rand_floats((size_t)Cout, 13), *y = rand_floats((size_t)Cout * H * W, 14);
    ConvCase c;
    memset(&c, 0, sizeof c);
    c.x = x;
    c.wt = wt;
    c.bias = bias;
    c.y = y;
    c.Cin = Cin;
    c.H = H;
    c.W = W;
    c.Cout = Cout;
    if (gemm_pack_weights(&c.pw, wt, Cout, Cin * 9, 0) != 0) die("gemm_pack_weights");
    if (gemm_bf16_pack_weights(&c.w, wt, Cout, Cin * 9, GEMM_BF16_A) != 0) die("gemm_bf16_pack_weights");
    bench_three(name, 2.0 * Cout * H * W * Cin * 9, run_conv_f32, run_conv_f32_packed, run_conv_bf16, &c);
    gemm_packed_weights_free(&c.pw);
    gemm_bf16_packed_free(&c.w);
    free(x);
    free(wt);
    free(bias);
    free(y);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) g_quick |= !strcmp(argv[i], "--quick");
    int threads = test_env_apply();
    if (threads < 1) {
        fprintf(stderr, "bench_gemm_bf16: bad SATDIFUSER_THREADS\n");
        return 1;
    }
    if (!gemm_bf16_supported()) {
        printf("bench_gemm_bf16: skipped (this CPU or build has no AVX512_BF16, or AVX-512 is not in use)\n");
        return 0;
    }
    double t_start = sd_now();
    g_peak_f32 = measure_peak(ISA_AVX512, 1) * threads;
    g_peak_bf16 = measure_bf16_peak() * threads;
    printf("\nbf16 GEMM bench: %d threads, f32 kernel %s; peaks (register loops x threads): f32 FMA %.0f, "
           "bf16 vdpbf16ps %.0f GFLOP/s\n",
           threads, gemm_kernel_info()->name, g_peak_f32, g_peak_bf16);
    printf("GF/s and %% of peak (f32 of the f32 peak, bf16 of the bf16 peak); ratio = packed f32 time / bf16 time\n");
    printf("%-36s %-11s | %-25s | %-25s | bf16/f32\n", "shape (M x N x K)", "f32 per-call", "f32 packed weights",
           "bf16");
    bench_side_a("gemm 1024^3", 1024, 1024, 1024, NULL);
    bench_side_a("gemm 2048^3", 2048, 2048, 2048, NULL);
    bench_side_a("conv-shape gemm 320x4096x2880", 320, 4096, 2880, NULL);
    bench_side_a("conv-shape gemm 640x1024x5760", 640, 1024, 5760, NULL);
    bench_side_a("conv-shape gemm 1280x256x11520", 1280, 256, 11520, NULL);
    bench_side_a("conv-shape gemm 1280x64x11520", 1280, 64, 11520, NULL);
    // 3x3 convolutions at the UNet's shapes: conv2d_forward (f32, conv.c) against conv2d_forward_bf16.
    bench_conv("conv3x3 320->320 @64x64", 320, 64, 64, 320);
    bench_conv("conv3x3 640->640 @32x32", 640, 32, 32, 640);
    bench_conv("conv3x3 1280->1280 @16x16", 1280, 16, 16, 1280);
    bench_conv("conv3x3 1280->1280 @8x8", 1280, 8, 8, 1280);
    // The generic pack_b path (an f32 im2col callback, the same for both) at the first shape.
    float *x = rand_floats((size_t)320 * 64 * 64, 7);
    Im2colCtx conv = {x, 64, 64};
    bench_side_a("conv3x3 320 @64x64 via f32 pack_b", 320, 4096, 2880, &conv);
    free(x);
    bench_linear("linear rows 4096, 320 -> 320", 4096, 320, 320);
    bench_linear("linear rows 1024, 640 -> 5120", 1024, 640, 5120);
    printf("bench_gemm_bf16: %.1f s\n", sd_now() - t_start);
    return 0;
}
