// `make bench`: the machine's fp32 FMA peak measured here, then GFLOP/s and
// % of peak of GEMM, conv3x3 and attention at the UNet's and VAE's real
// shapes, and the ratio to PyTorch when weights_tools/bench_pytorch.py has
// written its timings (build/bench_pytorch.json, or $SATDIFUSER_TORCH_JSON).
// Usage: bench_kernels [--quick] [--only gemm|conv|attention]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/runtime.h"
#include "tests/test_env.h"
#include "io/json.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"

#include "tests/bench_peak.h"

// The 1-minute load average: other processes on the machine make every number lower.
static void print_load(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = -1.0;
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1.0;
        fclose(f);
    }
    if (l1 >= 0.0) printf("load average at %s: %.2f (this bench's own threads count too)\n", when, l1);
}

// ---- PyTorch timings (seconds per op, by name) ------------------------------------------

static JsonValue g_torch;
static int g_have_torch = 0;

static double torch_seconds(const char *name) {
    if (!g_have_torch) return 0.0;
    const JsonValue *ops = json_get(&g_torch, "ops");
    const JsonValue *v = ops ? json_get(ops, name) : NULL;
    return v && v->type == JSON_NUMBER ? v->number : 0.0;
}

// ---- Timing and the table ------------------------------------------------------------

typedef void (*BenchFn)(void *ctx);

// Best wall time of at least 5 runs and min_total seconds (after one warm-up run): the best
// run is the one least disturbed by other processes on a shared machine.
static double time_best(BenchFn fn, void *ctx, double min_total) {
    fn(ctx);
    double best = 1e30, total = 0.0;
    for (int rep = 0; rep < 5 || total < min_total; rep++) {
        double t0 = sd_now();
        fn(ctx);
        double t = sd_now() - t0;
        total += t;
        if (t < best) best = t;
        if (rep >= 50) break;
    }
    return best;
}

static double g_peak = 0.0, g_min_total = 1.0;

static void report(const char *name, double flops, double seconds) {
    double gf = flops / seconds * 1e-9;
    double ts = torch_seconds(name);
    printf("%-44s %9.2f ms %8.1f GFLOP/s %6.1f%%", name, seconds * 1e3, gf, 100.0 * gf / g_peak);
    if (ts > 0.0) printf("   torch %9.2f ms  %5.2fx", ts * 1e3, ts / seconds);
    printf("\n");
    fflush(stdout);
}

// Inputs in [-1, 1).
static float *rand_floats(size_t n, unsigned seed) { return bench_rand_floats(n, seed, 1.0f, 0.0f); }

// ---- GEMM ----------------------------------------------------------------------------

typedef struct {
    int ta, tb, M, N, K;
    float *A, *B, *C;
} GemmCtx;

static void run_gemm(void *p) {
    GemmCtx *g = p;
    sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->ta ? g->M : g->K, g->B, g->tb ? g->K : g->N, 0.0f, g->C,
          g->N);
}

// The same product with both operands packed at load (GemmPackedWeights): no packing in the
// timed call, so the row shows what the micro-kernels and the cache blocking reach alone.
typedef struct {
    GemmProblem problem;
    GemmPackedWeights a, b;
} PrepackedGemmCtx;

static void run_gemm_prepacked(void *p) {
    PrepackedGemmCtx *g = p;
    gemm_run(&g->problem);
}

static void bench_gemm_prepacked(const GemmCtx *g) {
    PrepackedGemmCtx pg;
    memset(&pg, 0, sizeof(pg));
    float *bt = malloc((size_t)g->N * g->K * sizeof(float));  // B^T: the layout packs B's columns as rows
    if (!bt) return;
    for (int p = 0; p < g->K; p++)
        for (int j = 0; j < g->N; j++) bt[(size_t)j * g->K + p] = g->B[(size_t)p * g->N + j];
    if (gemm_pack_weights(&pg.a, g->A, g->M, g->K, 0) == 0 && gemm_pack_weights(&pg.b, bt, g->N, g->K, 1) == 0) {
        pg.problem = (GemmProblem){.M = g->M, .N = g->N, .K = g->K, .alpha = 1.0f, .c = g->C, .ldc = g->N,
                                   .packed_a = &pg.a, .packed_b = &pg.b};
        char name[96];
        snprintf(name, sizeof(name), "gemm %dx%dx%d [A, B packed at load]", g->M, g->N, g->K);
        report(name, 2.0 * g->M * g->N * g->K, time_best(run_gemm_prepacked, &pg, g_min_total));
    }
    gemm_packed_weights_free(&pg.a);
    gemm_packed_weights_free(&pg.b);
    free(bt);
}

static void bench_gemm(int quick) {
    // M x N x K (+ trans flags): square, the UNet's convs as GEMMs (Cout x HW x Cin*9), its linear layers.
    static const struct {
        const char *what;
        int ta, tb, M, N, K;
    } cases[] = {
        {"square", 0, 0, 1024, 1024, 1024},
        {"square", 0, 0, 2048, 2048, 2048},
        {"conv 320 @64x64", 0, 0, 320, 4096, 2880},
        {"conv 320 @32x32", 0, 0, 320, 1024, 2880},
        {"conv 640 @32x32", 0, 0, 640, 1024, 5760},
        {"conv 640 @16x16", 0, 0, 640, 256, 5760},
        {"conv 1280 @16x16", 0, 0, 1280, 256, 11520},
        {"conv 1280 @8x8", 0, 0, 1280, 64, 11520},
        {"linear 320->320, 4096 tokens", 0, 1, 4096, 320, 320},
        {"linear 320->2560 (GEGLU), 4096 tok", 0, 1, 4096, 2560, 320},
        {"linear 1280->320 (ff out), 4096 tok", 0, 1, 4096, 320, 1280},
        {"linear 640->640, 1024 tokens", 0, 1, 1024, 640, 640},
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    printf("\nGEMM (C = A B, f32, %s)\n", gemm_kernel_info()->name);
    for (int i = 0; i < n; i++) {
        if (quick && i >= 3) break;
        GemmCtx g = {cases[i].ta, cases[i].tb, cases[i].M, cases[i].N, cases[i].K, NULL, NULL, NULL};
        g.A = rand_floats((size_t)g.M * g.K, 1);
        g.B = rand_floats((size_t)g.K * g.N, 2);
        g.C = rand_floats((size_t)g.M * g.N, 3);
        char name[96];
        snprintf(name, sizeof(name), "gemm %dx%dx%d%s", g.M, g.N, g.K, g.tb ? " (B^T)" : "");
        double t = time_best(run_gemm, &g, g_min_total);
        char label[160];
        snprintf(label, sizeof(label), "%s", name);
        report(label, 2.0 * g.M * g.N * g.K, t);
        printf("    (%s)\n", cases[i].what);
        if (!strcmp(cases[i].what, "square")) bench_gemm_prepacked(&g);
        free(g.A);
        free(g.B);
        free(g.C);
    }
}

// ---- Convolution ---------------------------------------------------------------------

typedef struct {
    int Cin, H, W, Cout, k, stride, pt, pl, pb, pr;
    float *x, *w, *b, *y;
    GemmPackedWeights packed;  // the weight packed once, as the models hold it
} ConvCtx;

static void run_conv(void *p) {
    ConvCtx *c = p;
    Conv2dGeometry g = {c->k, c->k, c->stride, c->pt, c->pl, c->pb, c->pr};
    conv2d_forward(c->x, 1, c->Cin, c->H, c->W, c->w, c->b, c->Cout, g, c->y);
}

static void run_conv_packed(void *p) {
    ConvCtx *c = p;
    Conv2dGeometry g = {c->k, c->k, c->stride, c->pt, c->pl, c->pb, c->pr};
    conv2d_forward_packed(c->x, 1, c->Cin, c->H, c->W, &c->packed, c->b, c->Cout, g, c->y);
}

static void bench_conv(int quick) {
    static const struct {
        const char *what;
        int Cin, HW, Cout, k, stride, pt, pl, pb, pr;
    } cases[] = {
        {"UNet conv_in, 64x64 latent", 4, 64, 320, 3, 1, 1, 1, 1, 1},
        {"UNet res 320, 64x64 latent", 320, 64, 320, 3, 1, 1, 1, 1, 1},
        {"UNet res 320, 32x32 latent", 320, 32, 320, 3, 1, 1, 1, 1, 1},
        {"UNet res 640, 32x32", 640, 32, 640, 3, 1, 1, 1, 1, 1},
        {"UNet res 640, 16x16", 640, 16, 640, 3, 1, 1, 1, 1, 1},
        {"UNet res 1280, 16x16", 1280, 16, 1280, 3, 1, 1, 1, 1, 1},
        {"UNet res 1280, 8x8", 1280, 8, 1280, 3, 1, 1, 1, 1, 1},
        {"UNet downsample 320, 64->32", 320, 64, 320, 3, 2, 1, 1, 1, 1},
        {"UNet 1x1 shortcut 320->640, 32x32", 320, 32, 640, 1, 1, 0, 0, 0, 0},
        {"VAE conv_in 3->128, 256x256", 3, 256, 128, 3, 1, 1, 1, 1, 1},
        {"VAE res 128, 256x256", 128, 256, 128, 3, 1, 1, 1, 1, 1},
        {"VAE down 128, 256->128 (pad 0,1)", 128, 256, 128, 3, 2, 0, 0, 1, 1},
        {"VAE res 256, 128x128", 256, 128, 256, 3, 1, 1, 1, 1, 1},
        {"VAE res 512, 64x64", 512, 64, 512, 3, 1, 1, 1, 1, 1},
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    printf("\nConvolution (N=1, f32, implicit GEMM; each shape twice: the weight packed on every call,\n"
           "then [packed] the weight packed once beforehand, as the models run it)\n");
    for (int i = 0; i < n; i++) {
        if (quick && i >= 3) break;
        ConvCtx c = {cases[i].Cin, cases[i].HW, cases[i].HW, cases[i].Cout, cases[i].k, cases[i].stride,
                     cases[i].pt, cases[i].pl, cases[i].pb, cases[i].pr, NULL, NULL, NULL, NULL, {0}};
        int Ho = conv_out_size(c.H, c.k, c.stride, c.pt, c.pb), Wo = conv_out_size(c.W, c.k, c.stride, c.pl, c.pr);
        c.x = rand_floats((size_t)c.Cin * c.H * c.W, 4);
        c.w = rand_floats((size_t)c.Cout * c.Cin * c.k * c.k, 5);
        c.b = rand_floats((size_t)c.Cout, 6);
        c.y = rand_floats((size_t)c.Cout * Ho * Wo, 7);
        char name[128];
        snprintf(name, sizeof(name), "conv%dx%d s%d %d->%d @%dx%d", c.k, c.k, c.stride, c.Cin, c.Cout, c.H, c.W);
        double flops = 2.0 * c.Cout * Ho * Wo * (double)c.Cin * c.k * c.k;
        report(name, flops, time_best(run_conv, &c, g_min_total));
        if (gemm_pack_weights(&c.packed, c.w, c.Cout, c.Cin * c.k * c.k, 0) == 0) {
            char packed_name[160];
            snprintf(packed_name, sizeof(packed_name), "%s [packed]", name);
            report(packed_name, flops, time_best(run_conv_packed, &c, g_min_total));
            gemm_packed_weights_free(&c.packed);
        }
        printf("    (%s)\n", cases[i].what);
        free(c.x);
        free(c.w);
        free(c.b);
        free(c.y);
    }
}

// ---- Attention ---------------------------------------------------------------------

typedef struct {
    int heads, Nq, Nk, hd, causal;
    float *q, *k, *v, *o;
    Arena *arena;
} AttnCtx;

static void run_attention(void *p) {
    AttnCtx *a = p;
    attention_forward(a->q, a->k, a->v, a->o, 1, a->heads, a->Nq, a->Nk, a->hd, 1.0f / sqrtf((float)a->hd),
                      a->causal, a->arena);
}

static void run_attention_bf16(void *p) {
    AttnCtx *a = p;
    attention_forward_bf16(a->q, a->k, a->v, a->o, 1, a->heads, a->Nq, a->Nk, a->hd, 1.0f / sqrtf((float)a->hd),
                           a->causal, a->arena);
}

static void bench_attention(int quick, Arena *arena) {
    static const struct {
        const char *what;
        int heads, Nq, Nk, hd;
    } cases[] = {
        {"UNet self-attn 320 ch, 32x32 latent", 5, 1024, 1024, 64},
        {"UNet self-attn 640 ch, 32x32", 10, 1024, 1024, 64},
        {"UNet self-attn 320 ch, 64x64 latent", 5, 4096, 4096, 64},
        {"UNet self-attn 640 ch, 64x64 (hypoth.)", 10, 4096, 4096, 64},
        {"UNet cross-attn to 77 tokens, 64x64", 5, 4096, 77, 64},
        {"VAE mid attention 512 ch, 64x64", 1, 4096, 4096, 512},
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    printf("\nAttention (B=1, f32, online softmax; FLOPs = 4 Nq Nk hd heads; [bf16]: the products in bf16,\n"
           "as a bf16 model runs it, %% of the f32 peak)\n");
    for (int i = 0; i < n; i++) {
        if (quick && i >= 2) break;
        AttnCtx a = {cases[i].heads, cases[i].Nq, cases[i].Nk, cases[i].hd, 0, NULL, NULL, NULL, NULL, arena};
        size_t D = (size_t)a.heads * a.hd;
        a.q = rand_floats(a.Nq * D, 8);
        a.k = rand_floats(a.Nk * D, 9);
        a.v = rand_floats(a.Nk * D, 10);
        a.o = rand_floats(a.Nq * D, 11);
        char name[128];
        snprintf(name, sizeof(name), "attention h%d Nq%d Nk%d hd%d", a.heads, a.Nq, a.Nk, a.hd);
        double flops = 4.0 * a.Nq * (double)a.Nk * a.hd * a.heads;
        report(name, flops, time_best(run_attention, &a, g_min_total));
        if (gemm_bf16_supported()) {
            char bf16_name[160];
            snprintf(bf16_name, sizeof(bf16_name), "%s [bf16]", name);
            report(bf16_name, flops, time_best(run_attention_bf16, &a, g_min_total));
        }
        printf("    (%s)\n", cases[i].what);
        free(a.q);
        free(a.k);
        free(a.v);
        free(a.o);
    }
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    }
    if (quick) g_min_total = 0.2;
    int threads = test_env_apply();
    if (threads < 1) {
        fprintf(stderr, "bench: %s\n", "bad SATDIFUSER_THREADS");
        return 1;
    }
    SdIsa isa = sd_cpu_isa();
    const char *torch_path = getenv("SATDIFUSER_TORCH_JSON");
    if (!torch_path) torch_path = "build/bench_pytorch.json";
    FILE *tf = fopen(torch_path, "rb");
    if (tf) {
        fclose(tf);
        g_have_torch = json_parse_file(torch_path, &g_torch) == 0;
    }

    print_load("start");
    // Peak = one core's register-only FMA rate x threads (the cores are alike); the all-threads
    // run is printed too, it is lower when other processes share the machine.
    double peak1 = measure_peak(isa, 1);
    double peak_all = measure_peak(isa, threads);
    g_peak = peak1 * threads;
    printf("satdifuser kernel bench: ISA %s, kernel %s, %d threads\n", sd_isa_name(isa), gemm_kernel_info()->name,
           threads);
    printf("fp32 FMA peak (register-only loop): %.1f GFLOP/s per core; peak used for %% below: %.1f x %d = %.1f GFLOP/s\n",
           peak1, peak1, threads, g_peak);
    printf("(all %d threads at once measured %.1f GFLOP/s)\n", threads, peak_all);
    if (g_have_torch) {
        const char *cfg = NULL;
        json_get_string(&g_torch, "torch", "?", &cfg);
        printf("PyTorch timings from %s (torch %s); ratio = torch time / our time (>1: we are faster)\n", torch_path,
               cfg ? cfg : "?");
    } else {
        printf("no PyTorch timings (%s): run `python3 weights_tools/bench_pytorch.py` for the ratios\n", torch_path);
    }
    printf("%-44s %12s %16s %7s\n", "op", "time", "speed", "% peak");

    Arena arena;
    if (arena_init(&arena, (size_t)256 << 20) != 0) return 1;
    if (!only || !strcmp(only, "gemm")) bench_gemm(quick);
    if (!only || !strcmp(only, "conv")) bench_conv(quick);
    if (!only || !strcmp(only, "attention")) bench_attention(quick, &arena);

    // The machine may be shared: measure the peak again and keep the higher one.
    double peak_end = measure_peak(isa, 1);
    printf("\nFMA peak again at the end: %.1f GFLOP/s per core (%% of peak above used %.1f per core)\n", peak_end,
           peak1);
    print_load("end");

    // Whole forwards (UNet at 32x32 and 64x64 latents, VAE encoder at 256 and 512, text
    // encoder) with random weights belong here once the models exist; see docs/benchmarks.md.
    printf("\nWhole-model forwards: build/tests/bench_models (make bench runs it next; docs/benchmarks-models.md).\n");
    arena_free(&arena);
    if (g_have_torch) json_free(&g_torch);
    return 0;
}
