// `make bench`, training (issue 20): one training step - forward + cross-entropy + backward + Adam,
// the calls src/train/trainer.c makes for one batch - of each fuser x head pair (GW, LW, MoE with
// the linear classifier and with UPerNet) at the real feature sizes of SD 2.1 / DiffusionSat:
//   21 streams per timestep: 6 x 320 @ 32x32, 6 x 640 @ 16x16, 6 x 1280 @ 8x8, 3 x 1280 @ 4x4,
//   3 timesteps (save_timesteps 47, 45, 40), projection_dim 384, batch 8, random features,
//   10 classes (linear), 7 classes at 256x256 (UPerNet: channels 512, pool scales 1,2,3,6).
// The MoE (8 experts, top-2) runs in its dense warm-up phase (all experts; the first 100 steps of a
// classifier run, 166 of a segmenter's, under the released "calls" counter): the bench's few steps
// stay in it, on both sides.
// Best of N after a warm-up step, at the thread count in use (SATDIFUSER_THREADS or all cores);
// the forward, backward (loss included) and Adam parts of the best step are printed too.
// Sanity line: one step from the same start at 1 and at N threads gives bit-identical parameters
// (tests/test_head_backward.c and the golden train_* cases prove it; this repeats it at the real size).
// Also: reading a batch of 8 cached feature files (src/train/dataset.c) in f32 and f16, from files
// written once into build/bench_train/ (SATDIFUSER_BENCH_CACHE moves it) by src/io/feature_cache.c.
//
// Ratios against PyTorch 1.13 running the ORIGINAL SatDiFuser modules on the same shapes:
// weights_tools/bench_train_pytorch.py writes build/bench_train_pytorch.json
// ($SATDIFUSER_TORCH_TRAIN_JSON); ratio = torch time / C time (target >= 1.5).
//
// Usage: bench_train [--reps N] [--only PREFIX] [--check all|first|none] [--no-read]
//   PREFIX of gw_linear, lw_linear, moe_linear, gw_upernet, lw_upernet, moe_upernet;
//   --check: which pairs get the 1-vs-N-threads step (default first: gw_linear and gw_upernet,
//   a 1-thread MoE step takes minutes on a busy machine).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/runtime.h"
#include "tests/test_env.h"
#include "heads/head.h"
#include "io/feature_cache.h"
#include "io/json.h"
#include "io/labels.h"
#include "train/adam.h"
#include "train/dataset.h"
#include "train/init.h"
#include "train/losses.h"

#define BATCH 8
#define NT 3
#define NS 4
#define OUT_HW 256
static const int SCALE_W[NS] = {32, 16, 8, 4};
static const int SCALE_C[NS] = {6 * 320, 6 * 640, 6 * 1280, 3 * 1280};
static const char *FEATURE_DIMS = "{\"32\": [320, 320, 320, 320, 320, 320], \"16\": [640, 640, 640, 640, 640, 640], "
                                  "\"8\": [1280, 1280, 1280, 1280, 1280, 1280], \"4\": [1280, 1280, 1280]}";
static const char *SAVE_TIMESTEPS = "[47, 45, 40]";

typedef struct {
    const char *name;   // also the key of the PyTorch JSON
    const char *fuser;  // gw, lw, moe
    int seg;            // 0: linear classifier, 10 classes; 1: UPerNet, 7 classes at 256x256
    int reps;           // timed steps after the warm-up
} Pair;

static const Pair PAIRS[] = {
    {"gw_linear", "gw", 0, 5},  {"lw_linear", "lw", 0, 5},  {"moe_linear", "moe", 0, 3},
    {"gw_upernet", "gw", 1, 4}, {"lw_upernet", "lw", 1, 4}, {"moe_upernet", "moe", 1, 3},
};
#define NPAIRS ((int)(sizeof(PAIRS) / sizeof(PAIRS[0])))

static double load_average(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = -1.0;
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1.0;
        fclose(f);
    }
    return l1;
}

// xorshift64* uniform in [-1, 1)
static float urand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((*s * 0x2545F4914F6CDD1Dull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

// Features like the UNet's: a per-(sample, channel) offset plus noise, |x| of order 1.
static void fill_features(float *x, int B, int C, int HW, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float off = 0.5f * urand(&s);
            float *p = x + ((int64_t)b * C + c) * HW;
            for (int k = 0; k < HW; k++) p[k] = off + 1.7f * urand(&s);
        }
}

// ---- FLOPs ----------------------------------------------------------------------------------------------
// Convolution multiply-adds x 2 of one forward (BottleneckBlock Phi: 1x1 c->P/4, 3x3 P/4->P/4, 1x1 P/4->P,
// 1x1 shortcut c->P; LW gate 1x1 P->K; MoE: 8 experts per scale on all its channels + the 3x3 gate conv
// C_s->8; UPerNet: laterals, PPM, bottleneck, FPN convs, fpn_bottleneck, conv_seg). A step is the forward,
// dX and dW of every conv (2x the forward) less the dX of the convs reading the frozen features.
static void step_flops(const Pair *p, double *fwd, double *step) {
    const double B = BATCH, P = 384, cb = 96, ch = 512;
    double f = 0.0, first = 0.0;  // first: the convs reading the features (no input gradient)
    for (int s = 0; s < NS; s++) {
        double hw = (double)SCALE_W[s] * SCALE_W[s];
        int L = s == 3 ? 3 : 6;
        double c = SCALE_C[s] / L;
        if (!strcmp(p->fuser, "moe")) {
            double C = SCALE_C[s];
            f += NT * (8 * 2 * B * hw * (C * cb + cb * cb * 9 + cb * P + C * P) + 2 * B * hw * C * 9 * 8);
            first += NT * 8 * 2 * B * hw * (C * cb + C * P) + NT * 2 * B * hw * C * 9 * 8;
        } else {
            f += NT * L * 2 * B * hw * (c * cb + cb * cb * 9 + cb * P + c * P);
            first += NT * L * 2 * B * hw * (c * cb + c * P);
            if (!strcmp(p->fuser, "lw")) f += 2 * B * hw * P * NT * L;
        }
    }
    if (p->seg) {
        double u = 0.0;
        for (int s = 0; s < 3; s++) {
            double hw = (double)SCALE_W[s] * SCALE_W[s];
            u += 2 * B * hw * P * ch + 2 * B * hw * ch * ch * 9;  // lateral, fpn conv
        }
        for (int k = 1; k <= 6; k++)
            if (k != 4 && k != 5) u += 2 * B * k * k * P * ch;  // PPM 1, 2, 3, 6
        u += 2 * B * 16 * (P + 4 * ch) * ch * 9 + 2 * B * 1024 * 4 * ch * ch * 9 + 2 * B * 1024 * ch * 7;
        f += u;
    }
    *fwd = f;
    *step = 3 * f - first;
}

// ---- the model ---------------------------------------------------------------------------------------

typedef struct {
    HeadModel m;
    Adam adam;
    AdamConfig acfg;
    int C, HW;
} Model;

static int build_model(Model *x, const Pair *p) {
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"task\": \"%s\", \"fuser\": \"%s\", \"feature_dims\": %s, \"save_timesteps\": %s,"
             " \"projection_dim\": 384, \"num_classes\": %d, \"num_experts\": 8, \"top_k\": 2,"
             " \"output_shape\": [%d, %d], \"channels\": 512, \"pool_scales\": [1, 2, 3, 6]}",
             p->seg ? "segmentation" : "classification", p->fuser, FEATURE_DIMS, SAVE_TIMESTEPS, p->seg ? 7 : 10,
             OUT_HW, OUT_HW);
    memset(x, 0, sizeof(*x));
    JsonValue j;
    HeadConfig hc;
    if (json_parse(text, strlen(text), "bench config", &j)) return -1;
    int rc = head_config_from_json(&hc, &j);
    json_free(&j);
    if (rc || head_model_init(&x->m, &hc)) return -1;
    head_init_weights(&x->m.params, 42);
    if (params_alloc_grads(&x->m.params) || adam_init(&x->adam, &x->m.params)) return -1;
    x->acfg = adam_config_default(0.01, 0.0);  // run.py: lr 0.01, op_weight_decay 0
    x->C = hc.num_classes;
    x->HW = p->seg ? OUT_HW * OUT_HW : 1;
    return 0;
}

static void free_model(Model *x) {
    adam_free(&x->adam);
    head_model_free(&x->m);
}

typedef struct {
    double fwd, bwd, adam, total;
    float loss;
} StepTime;

// trainer.c's inner loop for one batch.
static int train_step(Model *x, const FusionInput *in, const int64_t *labels, float *dlogits, StepTime *t) {
    double t0 = sd_now();
    params_zero_grads(&x->m.params);
    head_model_set_mode(&x->m, 1, 1);
    if (head_model_forward(&x->m, in)) return -1;
    double t1 = sd_now();
    size_t nlog = (size_t)in->B * x->C * x->HW;
    memset(dlogits, 0, nlog * sizeof(float));
    if (cross_entropy_loss(&t->loss, dlogits, head_model_logits(&x->m), labels, in->B, x->C, x->HW, -100) ||
        head_model_backward(&x->m, dlogits))
        return -1;
    double t2 = sd_now();
    if (adam_step(&x->adam, &x->m.params, &x->acfg)) return -1;
    double t3 = sd_now();
    t->fwd = t1 - t0;
    t->bwd = t2 - t1;
    t->adam = t3 - t2;
    t->total = t3 - t0;
    return 0;
}

// Every parameter, buffer and counter, concatenated (for the 1-vs-N-threads comparison).
static float *snapshot(const ParamSet *ps, size_t *n_out) {
    size_t n = 0;
    for (int i = 0; i < ps->count; i++) n += ps->items[i]->kind == PARAM_COUNTER ? 2 : (size_t)ps->items[i]->numel;
    float *s = (float *)malloc(n * sizeof(float));
    if (!s) return NULL;
    size_t k = 0;
    for (int i = 0; i < ps->count; i++) {
        const Param *p = ps->items[i];
        if (p->kind == PARAM_COUNTER) {
            memcpy(s + k, &p->counter, sizeof(int64_t));
            k += 2;
        } else {
            memcpy(s + k, p->data, (size_t)p->numel * sizeof(float));
            k += (size_t)p->numel;
        }
    }
    *n_out = n;
    return s;
}

// One step from a fresh model at 1 thread and at `threads`: 1 if the parameters are bit-identical,
// 0 if not, -1 on error. times[0], times[1]: the two steps' times.
static int check_threads(const Pair *p, const FusionInput *in, const int64_t *labels, float *dlogits, int threads,
                         double times[2], int64_t *n_params) {
    float *snap[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    int ok = -1;
    for (int r = 0; r < 2; r++) {
        Model x;
        StepTime t;
        sd_threads_set(r == 0 ? 1 : threads);
        int rc = build_model(&x, p) || train_step(&x, in, labels, dlogits, &t);
        if (!rc) {
            snap[r] = snapshot(&x.m.params, &n[r]);
            times[r] = t.total;
            *n_params = params_count_weights(&x.m.params);
        }
        free_model(&x);
        if (rc || !snap[r]) goto done;
    }
    ok = n[0] == n[1] && memcmp(snap[0], snap[1], n[0] * sizeof(float)) == 0;
done:
    sd_threads_set(threads);
    free(snap[0]);
    free(snap[1]);
    return ok;
}

// ---- reading cached features -------------------------------------------------------------------------

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

// BATCH feature files (f16 or f32) and a labels CSV in dir, written when absent. Returns the bytes.
static int64_t write_cache(const char *dir, int f16, const float *const *feat0) {
    char path[4096];
    mkdir(dir, 0755);
    int64_t bytes = 0;
    FeatureMeta meta;
    feature_meta_init(&meta);
    int rc = feature_meta_set(&meta, "feature_dims", FEATURE_DIMS) || feature_meta_set(&meta, "save_timesteps", SAVE_TIMESTEPS) ||
             feature_meta_set(&meta, "dtype", f16 ? "float16" : "float32");
    for (int b = 0; b < BATCH && !rc; b++) {
        snprintf(path, sizeof(path), "%s/img%d.safetensors", dir, b);
        if (file_size(path) <= 0) {
            // image b's tensors: batch item b of the random batch (the files differ from one another)
            Tensor t[NT * NS];
            for (int i = 0; i < NT; i++)
                for (int s = 0; s < NS; s++) {
                    int64_t per = (int64_t)SCALE_C[s] * SCALE_W[s] * SCALE_W[s];
                    t[i * NS + s] = tensor_view4((float *)feat0[i * NS + s] + b * per, 1, SCALE_C[s], SCALE_W[s], SCALE_W[s]);
                }
            rc = feature_cache_write(path, t, NT, NS, NULL, f16, &meta);
        }
        bytes += file_size(path);
    }
    feature_meta_free(&meta);
    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "image,split,label\n");
    for (int b = 0; b < BATCH; b++) fprintf(f, "img%d,train,%d\n", b, b % 10);
    fclose(f);
    return bytes;
}

typedef struct {
    double best, mean;
    int64_t bytes;
    int ok;
} ReadResult;

static ReadResult time_read(const char *dir, int reps, const float *const *feat0) {
    ReadResult r = {0, 0, 0, 0};
    char path[4096];
    r.bytes = write_cache(dir, strstr(dir, "f16") != NULL, feat0);
    if (r.bytes < 0) {
        fprintf(stderr, "bench_train: writing %s: %s\n", dir, sd_last_error());
        return r;
    }
    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    LabelSet ls;
    Dataset d;
    if (labels_load(path, LABELS_CLASSIFICATION, &ls)) return r;
    if (dataset_open(&d, dir, &ls, BATCH, 255)) {
        labels_free(&ls);
        fprintf(stderr, "bench_train: %s\n", sd_last_error());
        return r;
    }
    int rows[BATCH];
    for (int b = 0; b < BATCH; b++) rows[b] = b;
    FusionInput in;
    double best = 1e30, sum = 0.0;
    int ok = dataset_load_batch(&d, rows, BATCH, &in) == 0;  // warm-up: page cache
    for (int k = 0; k < reps && ok; k++) {
        double t0 = sd_now();
        ok = dataset_load_batch(&d, rows, BATCH, &in) == 0;
        double t = sd_now() - t0;
        sum += t;
        if (t < best) best = t;
    }
    dataset_close(&d);
    labels_free(&ls);
    r.ok = ok;
    r.best = best;
    r.mean = sum / reps;
    return r;
}

// ---- main ----------------------------------------------------------------------------------------------

typedef struct {
    const Pair *p;
    int ran, check;  // check: -2 not run, -1 error, 0 differ, 1 identical
    double best, mean, check_t[2];
    StepTime best_t;
    int64_t n_params;
    float loss0, loss_last;
} Row;

int main(int argc, char **argv) {
    int reps = 0, read = 1;
    const char *only = NULL, *check = "first";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc) check = argv[++i];
        else if (!strcmp(argv[i], "--no-read")) read = 0;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--only gw_linear|lw_linear|moe_linear|gw_upernet|lw_upernet|moe_upernet|PREFIX]"
                            " [--check all|first|none] [--no-read]\n", argv[0]);
            return 2;
        }
    }
    int threads = test_env_apply();
    if (threads < 1) {
        fprintf(stderr, "bench_train: %s\n", sd_last_error());
        return 1;
    }
    const char *cache = getenv("SATDIFUSER_BENCH_CACHE");
    char dir[2048];
    snprintf(dir, sizeof(dir), "%s", cache && *cache ? cache : "build");
    mkdir(dir, 0755);
    snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/bench_train");
    mkdir(dir, 0755);
    const char *torch_path = getenv("SATDIFUSER_TORCH_TRAIN_JSON");
    if (!torch_path || !*torch_path) torch_path = "build/bench_train_pytorch.json";
    JsonValue torch;
    int have_torch = access(torch_path, R_OK) == 0 && json_parse_file(torch_path, &torch) == 0;

    double load_start = load_average();
    printf("\nsatdifuser training-step bench: batch %d, 21 streams x %d timesteps (6x320@32, 6x640@16, 6x1280@8, "
           "3x1280@4), projection 384, Adam lr 0.01; %d threads, ISA %s; load average at start %.2f\n",
           BATCH, NT, threads, sd_isa_name(sd_cpu_isa()), load_start);

    // the batch: random features, labels
    float *feat[NT * NS];
    FusionInput in;
    memset(&in, 0, sizeof(in));
    in.B = BATCH;
    for (int i = 0; i < NT; i++)
        for (int s = 0; s < NS; s++) {
            int64_t n = (int64_t)BATCH * SCALE_C[s] * SCALE_W[s] * SCALE_W[s];
            feat[i * NS + s] = (float *)malloc((size_t)n * sizeof(float));
            if (!feat[i * NS + s]) { fprintf(stderr, "bench_train: out of memory\n"); return 1; }
            fill_features(feat[i * NS + s], BATCH, SCALE_C[s], SCALE_W[s] * SCALE_W[s], (uint64_t)(i * NS + s + 1));
            in.feat[i][s] = feat[i * NS + s];
            in.H[s] = in.W[s] = SCALE_W[s];
            in.C[s] = SCALE_C[s];
        }
    int64_t *labels = (int64_t *)malloc((size_t)BATCH * OUT_HW * OUT_HW * sizeof(int64_t));
    float *dlogits = (float *)malloc((size_t)BATCH * 10 * OUT_HW * OUT_HW * sizeof(float));
    if (!labels || !dlogits) { fprintf(stderr, "bench_train: out of memory\n"); return 1; }

    Row rows[NPAIRS];
    int failures = 0;
    for (int k = 0; k < NPAIRS; k++) {
        Row *w = &rows[k];
        memset(w, 0, sizeof(*w));
        w->p = &PAIRS[k];
        w->check = -2;
        if (only && strncmp(w->p->name, only, strlen(only)) != 0) continue;
        int C = w->p->seg ? 7 : 10, HW = w->p->seg ? OUT_HW * OUT_HW : 1;
        uint64_t s = 7 + (uint64_t)k;
        for (int64_t i = 0; i < (int64_t)BATCH * HW; i++) labels[i] = (int64_t)((urand(&s) + 1.0f) * 0.5f * C) % C;
        int n = reps > 0 ? reps : w->p->reps;
        int do_check = !strcmp(check, "all") || (!strcmp(check, "first") && !strcmp(w->p->fuser, "gw"));
        if (do_check) {
            printf("%s: one step at 1 and at %d threads from the same start...\n", w->p->name, threads);
            fflush(stdout);
            w->check = check_threads(w->p, &in, labels, dlogits, threads, w->check_t, &w->n_params);
            if (w->check < 0) {
                printf("%s: FAILED: %s\n", w->p->name, sd_last_error());
                failures++;
                continue;
            }
            printf("%s: parameters after one step at 1 and %d threads: %s (%.2f s, %.2f s)\n", w->p->name, threads,
                   w->check ? "bit-identical" : "DIFFERENT", w->check_t[0], w->check_t[1]);
            if (!w->check) failures++;
        }
        Model x;
        StepTime t;
        if (build_model(&x, w->p)) {
            printf("%s: FAILED: %s\n", w->p->name, sd_last_error());
            failures++;
            free_model(&x);
            continue;
        }
        w->n_params = params_count_weights(&x.m.params);
        printf("%s (%.2f M parameters): warm-up + %d steps\n", w->p->name, w->n_params * 1e-6, n);
        fflush(stdout);
        int rc = train_step(&x, &in, labels, dlogits, &t);
        w->loss0 = t.loss;
        if (!rc) {  // the same bits at any thread count and before / after a bit-identical speed change
            size_t nf = 0;
            float *snap = snapshot(&x.m.params, &nf);
            uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes
            const unsigned char *bytes = (const unsigned char *)snap;
            for (size_t i = 0; snap && i < nf * sizeof(float); i++) h = (h ^ bytes[i]) * 1099511628211ull;
            printf("    parameters after the warm-up step: FNV-1a %016llx (loss %.6f)\n", (unsigned long long)h, t.loss);
            free(snap);
        }
        double best = 1e30, sum = 0.0;
        for (int r = 0; r < n && !rc; r++) {
            rc = train_step(&x, &in, labels, dlogits, &t);
            printf("    step %d: %.3f s (forward %.3f, backward %.3f, adam %.3f), loss %.4f\n", r + 1, t.total, t.fwd,
                   t.bwd, t.adam, t.loss);
            fflush(stdout);
            sum += t.total;
            if (t.total < best) {
                best = t.total;
                w->best_t = t;
            }
            w->loss_last = t.loss;
        }
        free_model(&x);
        if (rc) {
            printf("%s: FAILED: %s\n", w->p->name, sd_last_error());
            failures++;
            continue;
        }
        w->ran = 1;
        w->best = best;
        w->mean = sum / n;
    }

    ReadResult rd[2];
    memset(rd, 0, sizeof(rd));
    if (read) {
        char sub[2100];
        for (int f16 = 0; f16 < 2; f16++) {
            snprintf(sub, sizeof(sub), "%s/%s", dir, f16 ? "f16" : "f32");
            rd[f16] = time_read(sub, 5, (const float *const *)feat);
        }
    }
    double load_end = load_average();

    printf("\nTraining steps (forward + loss + backward + Adam, batch %d; best of N after a warm-up; %d threads)\n",
           BATCH, threads);
    if (have_torch) {
        const char *ver = "?", *blas = "?";
        int tt = 0;
        json_get_string(&torch, "torch", "?", &ver);
        json_get_string(&torch, "blas", "?", &blas);
        json_get_int(&torch, "threads", 0, &tt);
        printf("PyTorch: %s (torch %s, %d threads, libblas %s); ratio = torch time / C time, target >= 1.5x\n",
               torch_path, ver, tt, blas);
        if (tt != threads) printf("warning: torch ran with %d threads, this bench with %d\n", tt, threads);
    } else {
        printf("no PyTorch timings (%s): run weights_tools/bench_train_pytorch.py for the ratios\n", torch_path);
    }
    printf("%-12s %8s %8s %8s %8s %8s %8s %8s %8s %8s %7s  %s\n", "pair", "params M", "GFLOP", "C best", "GFLOP/s", "C mean",
           "forward", "backward", "adam", "torch", "ratio", "1 vs N threads");
    const JsonValue *ops = have_torch ? json_get(&torch, "ops") : NULL;
    for (int k = 0; k < NPAIRS; k++) {
        const Row *w = &rows[k];
        if (!w->ran) continue;
        const JsonValue *v = ops ? json_get(ops, w->p->name) : NULL;
        double ts = v && v->type == JSON_NUMBER ? v->number : 0.0;
        double fwd_flop, step_flop;
        step_flops(w->p, &fwd_flop, &step_flop);
        printf("%-12s %8.2f %8.0f %7.3fs %8.1f %7.3fs %7.3fs %7.3fs %7.3fs", w->p->name, w->n_params * 1e-6, step_flop * 1e-9,
               w->best, step_flop * 1e-9 / w->best, w->mean, w->best_t.fwd, w->best_t.bwd, w->best_t.adam);
        if (ts > 0.0) printf(" %7.3fs %6.2fx%s", ts, ts / w->best, ts / w->best >= 1.5 ? "" : " (<1.5)");
        else printf(" %8s %7s", "-", "-");
        printf("  %s\n", w->check == -2 ? "not checked" : w->check == 1 ? "bit-identical" : "DIFFERENT");
    }
    if (read) {
        printf("\nReading a batch of %d cached feature files (%s, page cache warm; dataset_load_batch, best of 5)\n", BATCH, dir);
        for (int f16 = 0; f16 < 2; f16++) {
            if (!rd[f16].ok) { printf("  %s: FAILED\n", f16 ? "f16" : "f32"); failures++; continue; }
            printf("  %s: %.1f MB on disk, best %.3f s (mean %.3f s), %.0f MB/s of files, %.0f MB/s of f32 features\n",
                   f16 ? "f16" : "f32", rd[f16].bytes * 1e-6, rd[f16].best, rd[f16].mean, rd[f16].bytes * 1e-6 / rd[f16].best,
                   rd[0].ok ? rd[0].bytes * 1e-6 / rd[f16].best : 0.0);
        }
    }
    printf("load average at start %.2f, at end %.2f (this bench's own threads count too)\n", load_start, load_end);
    if (have_torch) json_free(&torch);
    for (int i = 0; i < NT * NS; i++) free(feat[i]);
    free(labels);
    free(dlogits);
    return failures ? 1 : 0;
}
