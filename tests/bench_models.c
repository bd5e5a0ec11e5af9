// `make bench`, whole models: the SD 2.1 UNet, the SD VAE encoder and the OpenCLIP-H text encoder
// at their real sizes with random weights made here, loaded by the real loaders, timed forward
// (best of N after a warm-up), with GFLOP/s, % of the machine's FMA peak, peak RSS, and the
// ratio to PyTorch when weights_tools/bench_models_pytorch.py has written its timings
// (build/bench_models_pytorch.json, or $SATDIFUSER_TORCH_MODELS_JSON).
//
// Usage: bench_models [--quick] [--only NAME] [--reps N]
//   NAME: a prefix of text, vae256, vae512, unet32, unet64, extract ("unet" runs both UNets);
//   each model with bf16 has NAME_bf16 (bf16 alone) and NAME_pair (f32 and bf16 alternated)
//   --quick: unet32, vae256 and text only.
//
// Weights: build/bench_models/<model>/{config.json, weights.safetensors} ($SATDIFUSER_BENCH_CACHE
// moves the folder), written once (fixed seed, PyTorch's default init scale) and reused. A model
// is skipped with a message when the disk or the memory lacks room for it.
//
// Every case runs in its own child process (fork before any OpenMP thread exists), so that the
// peak RSS wait4() reports is that case's alone (mmapped weights count once touched) and a crash
// is reported instead of ending the bench.
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "tests/test_env.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/clip.h"
#include "models/nn.h"
#include "models/ddim.h"
#include "models/features.h"
#include "models/unet.h"
#include "models/vae.h"

#include "tests/bench_peak.h"

static double load_average(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = -1.0;
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1.0;
        fclose(f);
    }
    return l1;
}

// MemAvailable in bytes (0 if unknown).
static double mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0.0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

#include "tests/bench_models_weights.h"

#include "tests/bench_flops.h"

// ---- The cases, each run in a child process ------------------------------------------------------------

typedef enum { CASE_TEXT, CASE_VAE, CASE_UNET, CASE_EXTRACT } CaseKind;

typedef struct {
    const char *key;   // for --only
    const char *name;  // printed, and the key in the PyTorch JSON
    CaseKind kind;
    int size;          // image side (VAE, extract) or latent side (UNet)
    int reps;          // timed runs after one warm-up
    int quick;         // part of --quick
    int bf16;          // 1: bf16 compute (nn_set_precision), compared with the f32 case of the same key
                       // prefix; BENCH_PAIR: both models loaded, their forwards alternated
} BenchCase;

enum { BENCH_PAIR = 2 };

static const BenchCase CASES[] = {
    {"text", "text_encoder 1x77", CASE_TEXT, 77, 5, 1, 0},
    {"vae256", "vae_encoder 256x256", CASE_VAE, 256, 3, 1, 0},
    {"unet32", "unet 32x32", CASE_UNET, 32, 3, 1, 0},
    {"unet32_bf16", "unet 32x32 bf16", CASE_UNET, 32, 3, 0, 1},
    {"unet32_pair", "unet 32x32 f32|bf16", CASE_UNET, 32, 5, 0, BENCH_PAIR},
    {"vae512", "vae_encoder 512x512", CASE_VAE, 512, 2, 0, 0},
    {"vae512_bf16", "vae_encoder 512 bf16", CASE_VAE, 512, 2, 0, 1},
    {"vae512_pair", "vae_encoder 512 f32|bf16", CASE_VAE, 512, 3, 0, BENCH_PAIR},
    {"unet64", "unet 64x64", CASE_UNET, 64, 2, 0, 0},
    {"unet64_bf16", "unet 64x64 bf16", CASE_UNET, 64, 2, 0, 1},
    {"unet64_pair", "unet 64x64 f32|bf16", CASE_UNET, 64, 3, 0, BENCH_PAIR},
    {"extract", "extract 256x256", CASE_EXTRACT, 256, 2, 0, 0},
};

typedef struct {
    int status;  // 0 ran, 1 skipped, 2 failed
    int threads, reps;
    double best, mean, load_s;
    double peak1, peak_all;  // the peak child only
    int nonfinite;           // non-finite values in the last output
    int have_err;            // bf16 cases: error against the f32 case's output (same input)
    double err_rms, err_max; // ||bf16 - f32|| / ||f32||, max |bf16 - f32| / max |f32|
    // pair cases: the bf16 model's best time; the per-pair f32/bf16 ratios' median, min and max
    double best2, ratio_median, ratio_min, ratio_max;
    char msg[1024];
} ChildResult;

static const char *g_cache = "build/bench_models";

// Where the f32 case keeps its output for the bf16 case of the same model and size.
static void output_path(const BenchCase *c, char *buf, size_t size) {
    size_t n = strcspn(c->key, "_");
    snprintf(buf, size, "%s/output_%.*s.f32", g_cache, (int)n, c->key);
}

static float *rand_buffer(int64_t n, uint64_t seed, float scale) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; x && i < n; i++) x[i] = scale * uniform_pm1(&seed);
    return x;
}

static int count_nonfinite(const float *x, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

typedef struct {
    const BenchCase *c;
    UNet unet;
    VaeEncoder vae;
    ClipTextModel text;
    DdimScheduler sched;
    Arena arena;
    float *in, *ctx, *out, *out2;
    int64_t *ids;
    int64_t n_out;
} Run;

static int64_t g_ids[CLIP_L];

// One forward (or one whole extraction) of the case.
static int run_once(Run *r) {
    const int s = r->c->size;
    switch (r->c->kind) {
    case CASE_TEXT: return clip_text_forward(&r->text, r->ids, 1, CLIP_L, r->out, NULL, &r->arena);
    case CASE_VAE: return vae_encode(&r->vae, r->in, 1, s, s, r->out, r->out2, NULL, &r->arena);
    case CASE_UNET: {
        float t = 21.0f;
        return unet_forward(&r->unet, r->in, 1, s, s, &t, r->ctx, UNET_L, NULL, NULL, &r->arena, r->out);
    }
    case CASE_EXTRACT: {
        // What `satdifuser extract` does for one image: VAE posterior mean, the prompt embedding, then
        // the DDIM inversion walk (10 UNet calls through unet_run) with the attn1/conv2 captures.
        int h, w;
        vae_latent_size(&r->vae, s, s, &h, &w);
        if (vae_encode(&r->vae, r->in, 1, s, s, r->out2, NULL, NULL, &r->arena)) return -1;
        vae_latent(r->out2, NULL, (int64_t)4 * h * w, r->vae.scaling_factor, 0, 0, r->out2);
        if (clip_text_forward(&r->text, r->ids, 1, CLIP_L, r->ctx, NULL, &r->arena)) return -1;
        ExtractOptions o;
        extract_options_default(&o);
        FeaturePyramid p;
        int rc = features_from_latent(&r->unet, &r->sched, &o, r->out2, h, w, r->ctx, CLIP_L, 0, &p);
        if (rc == 0) r->n_out = tensor_numel(&p.feats[0]), memcpy(r->out, p.feats[0].data, 4 * (size_t)r->n_out);
        feature_pyramid_free(&p);
        return rc;
    }
    }
    return -1;
}

static int load_models(Run *r, SafeTensors *st_u, SafeTensors *st_v, SafeTensors *st_t, int *opened) {
    const BenchCase *c = r->c;
    int need_u = c->kind == CASE_UNET || c->kind == CASE_EXTRACT, need_v = c->kind == CASE_VAE || c->kind == CASE_EXTRACT;
    int need_t = c->kind == CASE_TEXT || c->kind == CASE_EXTRACT;
    JsonValue cfg;
    if (need_u) {
        if (json_parse_file(g_unet.config_path, &cfg) || st_open(st_u, g_unet.weights_path)) return -1;
        opened[0] = 1;
        int rc = unet_load(&r->unet, &cfg, st_u, "", 0);
        json_free(&cfg);
        if (rc) return -1;
        opened[3] = 1;
    }
    if (need_v) {
        if (json_parse_file(g_vae.config_path, &cfg) || st_open(st_v, g_vae.weights_path)) return -1;
        opened[1] = 1;
        int rc = vae_encoder_load(&r->vae, &cfg, st_v, "");
        json_free(&cfg);
        if (rc) return -1;
        opened[4] = 1;
    }
    if (need_t) {
        ClipTextConfig tc;
        if (json_parse_file(g_clip.config_path, &cfg)) return -1;
        int rc = clip_text_config_from_json(&cfg, &tc);
        json_free(&cfg);
        if (rc || st_open(st_t, g_clip.weights_path)) return -1;
        opened[2] = 1;
        if (clip_text_load(&r->text, &tc, st_t, "")) return -1;
        opened[5] = 1;
    }
    return 0;
}

// The models of one case, loaded, with the inputs and buffers of its forward; what to close.
typedef struct {
    Run r;
    SafeTensors st_u, st_v, st_t;
    int opened[6];
    int ddim;  // the extraction's scheduler is made
} LoadedRun;

// Loads the case's models (in the precision nn_set_precision chose) and makes its inputs, the
// same for every load (fixed seeds). 0, or -1 with msg set; close_run frees either way.
static int open_run(LoadedRun *L, const BenchCase *c, double *load_s, char *msg, size_t msg_size) {
    memset(L, 0, sizeof(*L));
    Run *r = &L->r;
    r->c = c;
    const int s = c->size;
    double t0 = sd_now();
    if (load_models(r, &L->st_u, &L->st_v, &L->st_t, L->opened)) {
        snprintf(msg, msg_size, "load: %s", sd_last_error());
        return -1;
    }
    *load_s = sd_now() - t0;
    int64_t n_in = 0;
    switch (c->kind) {
    case CASE_TEXT:
        r->n_out = (int64_t)CLIP_L * CLIP_D;
        break;
    case CASE_VAE: {
        int h, w;
        vae_latent_size(&r->vae, s, s, &h, &w);
        n_in = (int64_t)3 * s * s;
        r->n_out = (int64_t)4 * h * w;
        break;
    }
    case CASE_UNET:
        n_in = (int64_t)4 * s * s;
        r->n_out = unet_output_floats(&r->unet, 1, s, s);
        break;
    case CASE_EXTRACT: {
        DdimConfig dc;
        ddim_config_default(&dc);
        if (ddim_init(&r->sched, &dc)) {
            snprintf(msg, msg_size, "scheduler: %s", sd_last_error());
            return -1;
        }
        L->ddim = 1;
        n_in = (int64_t)3 * s * s;
        r->n_out = (int64_t)4 << 20;  // room for the largest feature map (1, C, H, W)
        break;
    }
    }
    r->in = rand_buffer(n_in > 0 ? n_in : 1, 1, 1.0f);                  // images and latents in [-1, 1]
    r->ctx = rand_buffer((int64_t)UNET_L * UNET_CTX, 2, 1.7f);          // std ~1, as a LayerNorm output
    r->out = malloc((size_t)r->n_out * sizeof(float));
    r->out2 = malloc((size_t)r->n_out * sizeof(float) + 4096 * 64);
    r->ids = g_ids;
    arena_init(&r->arena, 0);  // it takes its size in the warm-up run
    if (!r->in || !r->ctx || !r->out || !r->out2) {
        snprintf(msg, msg_size, "out of memory");
        return -1;
    }
    return 0;
}

static void close_run(LoadedRun *L) {
    Run *r = &L->r;
    arena_free(&r->arena);
    free(r->in);
    free(r->ctx);
    free(r->out);
    free(r->out2);
    if (L->ddim) ddim_free(&r->sched);
    if (L->opened[3]) unet_free(&r->unet);
    if (L->opened[4]) vae_encoder_free(&r->vae);
    if (L->opened[5]) clip_text_free(&r->text);
    if (L->opened[0]) st_close(&L->st_u);
    if (L->opened[1]) st_close(&L->st_v);
    if (L->opened[2]) st_close(&L->st_t);
    memset(L, 0, sizeof(*L));
}

// ||out - ref|| / ||ref|| and max |out - ref| / max |ref| into res.
static void output_error(const float *out, const float *ref, int64_t n, ChildResult *res) {
    double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(d) > dmax) dmax = fabs(d);
        if (fabs(ref[i]) > rmax) rmax = fabs(ref[i]);
    }
    res->have_err = 1;
    res->err_rms = r2 > 0 ? sqrt(d2 / r2) : 0;
    res->err_max = rmax > 0 ? dmax / rmax : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The f32 and the bf16 models of one case loaded side by side and their forwards alternated
// (f32, bf16, f32, bf16, ...): both see the same phases of a shared machine, so their ratio
// is steadier than that of two cases run a minute apart. best = f32, best2 = bf16.
static void child_pair(const BenchCase *c, ChildResult *res) {
    LoadedRun L[2];
    memset(L, 0, sizeof(L));
    for (int p = 0; p < 2; p++) {
        if (nn_set_precision(p ? NN_BF16 : NN_F32)) {
            res->status = 1;
            snprintf(res->msg, sizeof(res->msg), "%s", sd_last_error());
            goto done;
        }
        double load_s = 0.0;
        if (open_run(&L[p], c, &load_s, res->msg, sizeof(res->msg))) goto done;
        res->load_s += load_s;
        if (run_once(&L[p].r)) {  // warm-up
            snprintf(res->msg, sizeof(res->msg), "forward (%s): %s", p ? "bf16" : "f32", sd_last_error());
            goto done;
        }
    }
    double best[2] = {1e30, 1e30}, total[2] = {0.0, 0.0}, ratio[64];
    const int reps = c->reps < 64 ? c->reps : 64;
    for (int k = 0; k < reps; k++) {
        double t[2];
        for (int p = 0; p < 2; p++) {
            double t1 = sd_now();
            if (run_once(&L[p].r)) {
                snprintf(res->msg, sizeof(res->msg), "forward (%s): %s", p ? "bf16" : "f32", sd_last_error());
                goto done;
            }
            t[p] = sd_now() - t1;
            total[p] += t[p];
            if (t[p] < best[p]) best[p] = t[p];
        }
        ratio[k] = t[0] / t[1];
        printf("    pair %d: f32 %.3f s, bf16 %.3f s: %.2fx\n", k + 1, t[0], t[1], ratio[k]);
        fflush(stdout);
    }
    qsort(ratio, (size_t)reps, sizeof(double), cmp_double);
    res->reps = reps;
    res->best = best[0];
    res->mean = total[0] / reps;
    res->best2 = best[1];
    res->ratio_min = ratio[0];
    res->ratio_max = ratio[reps - 1];
    res->ratio_median = reps % 2 ? ratio[reps / 2] : 0.5 * (ratio[reps / 2 - 1] + ratio[reps / 2]);
    res->nonfinite = count_nonfinite(L[0].r.out, L[0].r.n_out) + count_nonfinite(L[1].r.out, L[1].r.n_out);
    output_error(L[1].r.out, L[0].r.out, L[0].r.n_out, res);
    res->status = 0;
done:
    close_run(&L[0]);
    close_run(&L[1]);
}

static void child_case(const void *arg, ChildResult *res) {
    const BenchCase *c = (const BenchCase *)arg;
    LoadedRun L;
    memset(&L, 0, sizeof(L));
    res->threads = test_env_apply();
    res->status = 2;
    if (c->bf16 == BENCH_PAIR) {
        child_pair(c, res);
        return;
    }
    if (c->bf16 && nn_set_precision(NN_BF16)) {
        res->status = 1;
        snprintf(res->msg, sizeof(res->msg), "%s", sd_last_error());
        return;
    }
    if (open_run(&L, c, &res->load_s, res->msg, sizeof(res->msg))) goto done;
    Run *r = &L.r;
    // One warm-up run: faults the weights in from the page cache and sizes every buffer.
    if (run_once(r)) {
        snprintf(res->msg, sizeof(res->msg), "forward: %s", sd_last_error());
        goto done;
    }
    double best = 1e30, total = 0.0;
    for (int k = 0; k < c->reps; k++) {
        double t1 = sd_now();
        if (run_once(r)) {
            snprintf(res->msg, sizeof(res->msg), "forward: %s", sd_last_error());
            goto done;
        }
        double t = sd_now() - t1;
        printf("    run %d: %.3f s\n", k + 1, t);
        fflush(stdout);
        total += t;
        if (t < best) best = t;
    }
    res->reps = c->reps;
    res->best = best;
    res->mean = total / c->reps;
    res->nonfinite = count_nonfinite(r->out, r->n_out);
    res->status = 0;
    {
        // Same input every time (fixed seeds): the f32 case saves its output, the bf16 case compares.
        char path[1024];
        output_path(c, path, sizeof(path));
        if (!c->bf16) {
            FILE *f = fopen(path, "wb");
            if (f) {
                fwrite(r->out, sizeof(float), (size_t)r->n_out, f);
                fclose(f);
            }
        } else {
            float *ref = malloc((size_t)r->n_out * sizeof(float));
            FILE *f = ref ? fopen(path, "rb") : NULL;
            if (f && fread(ref, sizeof(float), (size_t)r->n_out, f) == (size_t)r->n_out)
                output_error(r->out, ref, r->n_out, res);
            if (f) fclose(f);
            free(ref);
        }
    }
done:
    close_run(&L);
}

static void child_peak(const void *arg, ChildResult *res) {
    (void)arg;
    res->threads = test_env_apply();
    if (res->threads < 1) {
        res->status = 2;
        snprintf(res->msg, sizeof(res->msg), "bad SATDIFUSER_THREADS");
        return;
    }
    res->peak1 = measure_peak(sd_cpu_isa(), 1);
    res->peak_all = measure_peak(sd_cpu_isa(), res->threads);
    snprintf(res->msg, sizeof(res->msg), "%s", sd_isa_name(sd_cpu_isa()));
}

// Runs fn in a child process; *maxrss_kb is that child's peak resident set (wait4).
static void run_in_child(void (*fn)(const void *, ChildResult *), const void *arg, ChildResult *res, long *maxrss_kb) {
    memset(res, 0, sizeof(*res));
    *maxrss_kb = 0;
    int fd[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fd) != 0) {
        res->status = 2;
        snprintf(res->msg, sizeof(res->msg), "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        ChildResult r;
        memset(&r, 0, sizeof(r));
        fn(arg, &r);
        fflush(stdout);
        ssize_t w = write(fd[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 3);
    }
    close(fd[1]);
    size_t got = 0;
    while (pid > 0 && got < sizeof(*res)) {
        ssize_t n = read(fd[0], (char *)res + got, sizeof(*res) - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    if (pid > 0 && wait4(pid, &status, 0, &ru) == pid) *maxrss_kb = ru.ru_maxrss;
    if (pid < 0 || got != sizeof(*res)) {
        res->status = 2;
        if (pid < 0) snprintf(res->msg, sizeof(res->msg), "fork: %s", strerror(errno));
        else if (WIFSIGNALED(status)) snprintf(res->msg, sizeof(res->msg), "child killed by signal %d", WTERMSIG(status));
        else snprintf(res->msg, sizeof(res->msg), "child exited with status %d", WEXITSTATUS(status));
    }
}

// ---- PyTorch timings ----------------------------------------------------------------------------------

static JsonValue g_torch;
static int g_have_torch = 0;

static double torch_seconds(const char *name) {
    const JsonValue *ops = g_have_torch ? json_get(&g_torch, "ops") : NULL;
    const JsonValue *v = ops ? json_get(ops, name) : NULL;
    return v && v->type == JSON_NUMBER ? v->number : 0.0;
}

// ---- main -------------------------------------------------------------------------------------------------

typedef struct {
    const BenchCase *c;
    ChildResult r;
    long rss_kb;
    double gflop, weights_bytes;
} Row;

int main(int argc, char **argv) {
    int quick = 0, reps = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--only text|vae256|vae512|unet32|unet64|extract|unet32_bf16|...] [--reps N]\n",
                    argv[0]);
            return 2;
        }
    }
    const char *cache = getenv("SATDIFUSER_BENCH_CACHE");
    if (!cache || !*cache) cache = "build/bench_models";
    g_cache = cache;
    const char *torch_path = getenv("SATDIFUSER_TORCH_MODELS_JSON");
    if (!torch_path || !*torch_path) torch_path = "build/bench_models_pytorch.json";
    if (access(torch_path, R_OK) == 0) g_have_torch = json_parse_file(torch_path, &g_torch) == 0;
    // Token ids of a short prompt padded as SD 2.x pads (BOS, words, EOS, then "!" = id 0).
    for (int i = 0; i < CLIP_L; i++) g_ids[i] = i == 0 ? 49406 : i < 6 ? 320 + 97 * i : i == 6 ? 49407 : 0;

    double load_start = load_average();
    printf("\nsatdifuser whole-model bench (random weights, f32, batch 1); load average at start: %.2f\n", load_start);
    ChildResult pk;
    long rss;
    run_in_child(child_peak, NULL, &pk, &rss);
    if (pk.status != 0) {
        fprintf(stderr, "bench_models: peak measurement failed: %s\n", pk.msg);
        return 1;
    }
    const double peak = pk.peak1 * pk.threads;
    printf("ISA %s, %d threads; fp32 FMA peak %.1f GFLOP/s per core (register-only loop), %% below of %.1f x %d = "
           "%.1f GFLOP/s (all threads at once measured %.1f)\n",
           pk.msg, pk.threads, pk.peak1, pk.peak1, pk.threads, peak, pk.peak_all);
    if (g_have_torch) {
        const char *ver = "?", *ct = "?", *ma = "?";
        int tt = 0;
        json_get_string(&g_torch, "torch", "?", &ver);
        json_get_string(&g_torch, "openblas_coretype", "?", &ct);
        json_get_string(&g_torch, "malloc", "?", &ma);
        json_get_int(&g_torch, "threads", 0, &tt);
        printf("PyTorch timings from %s (torch %s, %d threads, OPENBLAS_CORETYPE=%s, malloc %s);\n"
               "ratio = torch time / C time (>1: C faster)\n",
               torch_path, ver, tt, ct, ma);
        if (tt != pk.threads) printf("warning: torch ran with %d threads, this bench with %d\n", tt, pk.threads);
    } else {
        printf("no PyTorch timings (%s): run weights_tools/bench_models_pytorch.py for the ratios\n", torch_path);
    }

    const int n_cases = (int)(sizeof(CASES) / sizeof(CASES[0]));
    Row rows[sizeof(CASES) / sizeof(CASES[0])];
    int n_rows = 0, failures = 0;
    for (int i = 0; i < n_cases; i++) {
        const BenchCase *c = &CASES[i];
        if (quick && !c->quick) continue;
        if (only && strncmp(c->key, only, strlen(only)) != 0) continue;
        Row *row = &rows[n_rows++];
        memset(row, 0, sizeof(*row));
        row->c = c;
        BenchCase cc = *c;
        if (reps > 0) cc.reps = reps;
        ModelFiles *need[3] = {NULL, NULL, NULL};
        if (c->kind == CASE_TEXT || c->kind == CASE_EXTRACT) need[0] = &g_clip;
        if (c->kind == CASE_VAE || c->kind == CASE_EXTRACT) need[1] = &g_vae;
        if (c->kind == CASE_UNET || c->kind == CASE_EXTRACT) need[2] = &g_unet;
        const char *skip = NULL;
        for (int k = 0; k < 3; k++) {
            if (!need[k]) continue;
            if (prepare_model(need[k], cache) != 0) {
                skip = need[k]->why;
                break;
            }
            row->weights_bytes += need[k]->bytes;
        }
        // Weights (page cache, counted in RSS once touched) + activations + slack; a pair case
        // also holds the bf16 copy (half the bytes).
        double avail = mem_available(), need_bytes = row->weights_bytes * (c->bf16 == BENCH_PAIR ? 1.5 : 1.0) + 2e9;
        if (!skip && avail > 0 && avail < need_bytes) {
            snprintf(row->r.msg, sizeof(row->r.msg), "only %.1f GB of memory available, about %.1f GB needed",
                     avail * 1e-9, need_bytes * 1e-9);
            skip = row->r.msg;
        }
        switch (c->kind) {
        case CASE_TEXT: row->gflop = text_flops() * 1e-9; break;
        case CASE_VAE: row->gflop = vae_flops(c->size, c->size) * 1e-9; break;
        case CASE_UNET: row->gflop = unet_flops(c->size, c->size) * 1e-9; break;
        case CASE_EXTRACT:
            row->gflop = (vae_flops(c->size, c->size) + text_flops() + 10 * unet_flops(c->size / 8, c->size / 8)) * 1e-9;
            break;
        }
        if (skip) {
            char why[1024];
            snprintf(why, sizeof(why), "%s", skip);
            row->r.status = 1;
            snprintf(row->r.msg, sizeof(row->r.msg), "%s", why);
            printf("%s: SKIPPED: %s\n", c->name, why);
            continue;
        }
        printf("%s (%.1f GFLOP): warm-up + %d runs\n", c->name, row->gflop, cc.reps);
        run_in_child(child_case, &cc, &row->r, &row->rss_kb);
        if (row->r.status != 0) {
            printf("%s: FAILED: %s\n", c->name, row->r.msg);
            failures++;
        } else if (row->r.nonfinite) {
            printf("%s: warning: %d non-finite values in the output\n", c->name, row->r.nonfinite);
        }
    }

    run_in_child(child_peak, NULL, &pk, &rss);
    double load_end = load_average();
    printf("\nWhole-model forwards (best of N after a warm-up; GFLOP counted from the configs: conv 2*Cout*Cin*k*k*HoWo,\n"
           "linear 2*rows*in*out, attention 4*Nq*Nk*inner; RSS = the case's own process, weights mmapped included)\n");
    printf("%-20s %8s %9s %9s %8s %6s %9s %9s %10s %6s\n", "model", "GFLOP", "C best", "C mean", "GFLOP/s", "%peak",
           "RSS MiB", "-weights", "torch", "ratio");
    for (int i = 0; i < n_rows; i++) {
        const Row *w = &rows[i];
        if (w->c->bf16 == BENCH_PAIR && w->r.status == 0) continue;  // below, with the bf16 ratios
        if (w->r.status != 0) {
            printf("%-20s %8.1f   %s: %s\n", w->c->name, w->gflop, w->r.status == 1 ? "skipped" : "FAILED", w->r.msg);
            continue;
        }
        double gfs = w->gflop / w->r.best, ts = torch_seconds(w->c->name);
        double rss_mib = w->rss_kb / 1024.0;
        printf("%-20s %8.1f %8.3fs %8.3fs %8.1f %5.1f%% %9.0f %9.0f", w->c->name, w->gflop, w->r.best, w->r.mean, gfs,
               100.0 * gfs / peak, rss_mib, rss_mib - w->weights_bytes / 1048576.0);
        if (ts > 0.0) printf(" %9.3fs %5.2fx", ts, ts / w->r.best);
        printf("   (load %.1f s)\n", w->r.load_s);
    }
    // bf16 against f32, measured in this run: separate cases (a minute apart), then pair cases
    // (both models in one process, forwards alternated)
    printf("\nbf16 against f32 (ratio = f32 time / bf16 time)\n");
    for (int i = 0; i < n_rows; i++) {
        const Row *b = &rows[i];
        if (b->c->bf16 != 1 || b->r.status != 0) continue;
        size_t n = strcspn(b->c->key, "_");
        for (int j = 0; j < n_rows; j++) {
            const Row *f = &rows[j];
            if (f->c->bf16 || f->r.status != 0 || strlen(f->c->key) != n || strncmp(f->c->key, b->c->key, n)) continue;
            printf("%-20s bf16 %.3f s vs f32 %.3f s: %.2fx", b->c->name, b->r.best, f->r.best, f->r.best / b->r.best);
            if (b->r.have_err)
                printf("; output error vs f32: rms %.2e of rms output, max %.2e of max |output|", b->r.err_rms,
                       b->r.err_max);
            printf("\n");
        }
    }
    for (int i = 0; i < n_rows; i++) {
        const Row *w = &rows[i];
        if (w->c->bf16 != BENCH_PAIR || w->r.status != 0) continue;
        printf("%-20s alternated, %d pairs: f32 best %.3f s (%.1f%% of peak), bf16 best %.3f s: %.2fx; per pair median "
               "%.2fx, range %.2f-%.2fx; output error vs f32: rms %.2e, max %.2e\n",
               w->c->name, w->r.reps, w->r.best, 100.0 * w->gflop / w->r.best / peak, w->r.best2, w->r.best / w->r.best2,
               w->r.ratio_median, w->r.ratio_min, w->r.ratio_max, w->r.err_rms, w->r.err_max);
    }
    printf("FMA peak again at the end: %.1f GFLOP/s per core; load average at start %.2f, at end %.2f "
           "(this bench's own threads count too)\n",
           pk.peak1, load_start, load_end);
    if (g_have_torch) json_free(&g_torch);
    return failures ? 1 : 0;
}
