// A profiling build of the CLI (issue 20): where an extraction's time goes, per stage and, inside
// the VAE and the UNet, per operator and resolution level, with the FLOPs of each so its % of the
// FMA peak is known. Nothing in the library changes: tests/prof_build.sh links the same objects
// with `ld --wrap=SYMBOL` for the functions below, so a call from another object file goes to
// __wrap_SYMBOL, which times the real __real_SYMBOL around it (calls inside one object file are not
// seen; they count in their caller's self time). The results are the same bits as satdifuser's
// (the wrappers only read the clock). At exit the tables go to stderr (or to $PROF_OUT).
//
// Accounting: a stack of open calls; each key (stage | level | operator) gets its calls, its
// inclusive wall time, its self time (inclusive minus the wrapped calls inside it), its FLOPs
// (conv 2*N*Cout*Cin*kh*kw*Ho*Wo, linear 2*rows*in*out, attention 4*B*heads*Nq*Nk*d: as
// tests/bench_flops.h) and the bytes an element-wise operator must move at least (norms: read
// twice, write once; add: 2 reads 1 write; activations: 1 read 1 write). Only the main thread
// outside parallel regions is timed. The stage's CPU time (user+sys of the process) is kept
// beside its wall time.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "models/nn.h"
#include "models/unet_blocks.h"
#include "models/transformer2d.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/clip.h"
#include "models/pipeline.h"
#include "models/ddim.h"
#include "models/pyramid.h"
#include "models/capture.h"
#include "models/preprocess.h"
#include "io/feature_cache.h"
#include "io/image.h"
#include "heads/head.h"
#include "train/adam.h"
#include "train/dataset.h"
#include "train/trainer.h"
#include "tests/bench_peak.h"

#define MAXKEYS 512
#define MAXDEPTH 64

typedef struct {
    char key[96];
    long calls;
    double incl, self, flops, bytes, cpu, cpu_self;  // wall inclusive / self, process CPU inclusive / self
} Slot;

typedef struct {
    int slot;
    double t0, child, cpu0, child_cpu;
    int level_h, level_w, B;  // a block's map (0: none)
} Frame;

static Slot g_slots[MAXKEYS];
static int g_nslots;
static Frame g_stack[MAXDEPTH];
static int g_depth;
static const char *g_stage = "other";
static int g_unet_calls;
static double g_unet_call_s[256];
static int g_registered;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void report(void);

static int slot_of(const char *key) {
    for (int i = 0; i < g_nslots; i++)
        if (!strcmp(g_slots[i].key, key)) return i;
    if (g_nslots == MAXKEYS) return MAXKEYS - 1;
    snprintf(g_slots[g_nslots].key, sizeof(g_slots[0].key), "%s", key);
    return g_nslots++;
}

static int timed(void) { return !omp_in_parallel() && omp_get_thread_num() == 0 && g_depth < MAXDEPTH; }

// The innermost block's map, else the operator's own (h, w), as "32x32".
static void level_name(int h, int w, char *buf, int size) {
    for (int d = g_depth - 1; d >= 0; d--)
        if (g_stack[d].level_h) {
            h = g_stack[d].level_h, w = g_stack[d].level_w;
            break;
        }
    if (h > 0) snprintf(buf, (size_t)size, "%dx%d", h, w);
    else snprintf(buf, (size_t)size, "-");
}

static void enter(const char *op, int h, int w, int block_h, int block_w, int B, int stage_level) {
    if (!g_registered) {
        g_registered = 1;
        atexit(report);
    }
    char lv[32], key[96];
    level_name(h, w, lv, sizeof(lv));
    if (stage_level) snprintf(key, sizeof(key), "%s", op);
    else snprintf(key, sizeof(key), "%s|%s|%s", g_stage, lv, op);
    Frame *f = &g_stack[g_depth++];
    f->slot = slot_of(key);
    f->child = f->child_cpu = 0.0;
    f->level_h = block_h, f->level_w = block_w, f->B = B;
    f->cpu0 = cpu_s();
    f->t0 = now_s();
}

static double leave(double flops, double bytes, int stage_level) {
    double t = now_s(), c = cpu_s();
    (void)stage_level;
    Frame *f = &g_stack[--g_depth];
    double dt = t - f->t0, dc = c - f->cpu0;
    Slot *s = &g_slots[f->slot];
    s->calls++;
    s->incl += dt;
    s->self += dt - f->child;
    s->cpu += dc;
    s->cpu_self += dc - f->child_cpu;
    s->flops += flops;
    s->bytes += bytes;
    if (g_depth > 0) {
        g_stack[g_depth - 1].child += dt;
        g_stack[g_depth - 1].child_cpu += dc;
    }
    return dt;
}

// ---- stages ------------------------------------------------------------------------------------------

#define STAGE(name, call)                                   \
    do {                                                    \
        if (!timed()) return call;                          \
        const char *saved = g_stage;                        \
        g_stage = name;                                     \
        enter(name, 0, 0, 0, 0, 0, 1);                      \
        __typeof__(call) rc_ = call;                        \
        leave(0, 0, 1);                                     \
        g_stage = saved;                                    \
        return rc_;                                         \
    } while (0)

int __real_gb_image_load(const char *path, Image *img);
int __wrap_gb_image_load(const char *path, Image *img) { STAGE("image load", __real_gb_image_load(path, img)); }

int __real_preprocess_image_report(const float *src, int C, int H, int W, const PreprocessOptions *o,
                                   const char *source, Tensor *out, PreprocessReport *rep);
int __wrap_preprocess_image_report(const float *src, int C, int H, int W, const PreprocessOptions *o,
                                   const char *source, Tensor *out, PreprocessReport *rep) {
    STAGE("preprocess", __real_preprocess_image_report(src, C, H, W, o, source, out, rep));
}

int __real_clip_text_forward_run(const ClipTextModel *m, const int64_t *ids, int batch, int seq_len, float *out,
                                 ModuleCaptures *cap);
int __wrap_clip_text_forward_run(const ClipTextModel *m, const int64_t *ids, int batch, int seq_len, float *out,
                                 ModuleCaptures *cap) {
    STAGE("text encoder", __real_clip_text_forward_run(m, ids, batch, seq_len, out, cap));
}

int __real_diffusion_model_load(DiffusionModel *m, const char *dir, const char *unet_dir, int use_metadata,
                                const char *prompt);
int __wrap_diffusion_model_load(DiffusionModel *m, const char *dir, const char *unet_dir, int use_metadata,
                                const char *prompt) {
    STAGE("model load (with the prompt's embedding)", __real_diffusion_model_load(m, dir, unet_dir, use_metadata, prompt));
}

int __real_vae_encode_run(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
                          ModuleCaptures *cap);
int __wrap_vae_encode_run(const VaeEncoder *v, const float *image, int B, int H, int W, float *mean, float *logvar,
                          ModuleCaptures *cap) {
    STAGE("vae encoder", __real_vae_encode_run(v, image, B, H, W, mean, logvar, cap));
}

int __real_unet_forward(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps,
                        const float *context, int L, const float *metadata, ModuleCaptures *cap, Arena *arena,
                        float *out);
int __wrap_unet_forward(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps,
                        const float *context, int L, const float *metadata, ModuleCaptures *cap, Arena *arena,
                        float *out) {
    if (!timed()) return __real_unet_forward(u, sample, B, h, w, timesteps, context, L, metadata, cap, arena, out);
    const char *saved = g_stage;
    g_stage = "unet";
    enter("unet", 0, 0, 0, 0, 0, 1);
    int rc = __real_unet_forward(u, sample, B, h, w, timesteps, context, L, metadata, cap, arena, out);
    double dt = leave(0, 0, 1);
    if (g_unet_calls < 256) g_unet_call_s[g_unet_calls] = dt;
    g_unet_calls++;
    g_stage = saved;
    return rc;
}

void __real_ddim_step(const DdimWalk *w, const DdimCall *c, const float *x, const float *eps, float *x_next,
                      float *x0, int64_t n);
void __wrap_ddim_step(const DdimWalk *w, const DdimCall *c, const float *x, const float *eps, float *x_next,
                      float *x0, int64_t n) {
    if (!timed()) {
        __real_ddim_step(w, c, x, eps, x_next, x0, n);
        return;
    }
    enter("ddim step", 0, 0, 0, 0, 0, 1);
    __real_ddim_step(w, c, x, eps, x_next, x0, n);
    leave(0, 0, 1);
}

int __real_pyramid_fill(FeaturePyramid *p, const ModuleCaptures *cap, int slot, int b);
int __wrap_pyramid_fill(FeaturePyramid *p, const ModuleCaptures *cap, int slot, int b) {
    STAGE("feature pyramid (copy of the captures)", __real_pyramid_fill(p, cap, slot, b));
}

int __real_feature_cache_write(const char *path, const Tensor *feats, int n_steps, int n_scales,
                               const Tensor *latent, int f16, const FeatureMeta *meta);
int __wrap_feature_cache_write(const char *path, const Tensor *feats, int n_steps, int n_scales,
                               const Tensor *latent, int f16, const FeatureMeta *meta) {
    STAGE("feature file write", __real_feature_cache_write(path, feats, n_steps, n_scales, latent, f16, meta));
}

// ---- blocks (their maps name the level of the operators inside) --------------------------------------

int __real_resnet_block_forward(const ResnetBlock2D *r, const float *x, const float *temb, float *out, int B, int H,
                                int W, Arena *arena, ModuleCaptures *cap, const char *path);
int __wrap_resnet_block_forward(const ResnetBlock2D *r, const float *x, const float *temb, float *out, int B, int H,
                                int W, Arena *arena, ModuleCaptures *cap, const char *path) {
    if (!timed()) return __real_resnet_block_forward(r, x, temb, out, B, H, W, arena, cap, path);
    enter("resnet (rest)", H, W, H, W, B, 0);
    int rc = __real_resnet_block_forward(r, x, temb, out, B, H, W, arena, cap, path);
    leave(0, 0, 0);
    return rc;
}

int __real_transformer2d_forward(const Transformer2D *t, float *x, int B, int H, int W, const float *context, int L,
                                 Arena *arena, ModuleCaptures *cap, const char *path);
int __wrap_transformer2d_forward(const Transformer2D *t, float *x, int B, int H, int W, const float *context, int L,
                                 Arena *arena, ModuleCaptures *cap, const char *path) {
    if (!timed()) return __real_transformer2d_forward(t, x, B, H, W, context, L, arena, cap, path);
    enter("transformer (rest: GEGLU product, proj_out add, copies)", H, W, H, W, B, 0);
    int rc = __real_transformer2d_forward(t, x, B, H, W, context, L, arena, cap, path);
    leave(0, 0, 0);
    return rc;
}

int __real_downsample_forward(const Downsample2D *d, const float *x, float *out, int B, int H, int W);
int __wrap_downsample_forward(const Downsample2D *d, const float *x, float *out, int B, int H, int W) {
    if (!timed()) return __real_downsample_forward(d, x, out, B, H, W);
    enter("downsample (rest)", H, W, H, W, B, 0);
    int rc = __real_downsample_forward(d, x, out, B, H, W);
    leave(0, 0, 0);
    return rc;
}

int __real_upsample_forward(const Upsample2D *u, const float *x, float *out, int B, int H, int W, int Ho, int Wo,
                            Arena *arena);
int __wrap_upsample_forward(const Upsample2D *u, const float *x, float *out, int B, int H, int W, int Ho, int Wo,
                            Arena *arena) {
    if (!timed()) return __real_upsample_forward(u, x, out, B, H, W, Ho, Wo, arena);
    enter("upsample (rest: nearest copy)", Ho, Wo, Ho, Wo, B, 0);
    int rc = __real_upsample_forward(u, x, out, B, H, W, Ho, Wo, arena);
    leave(0, 4.0 * B * u->channels * ((double)H * W + (double)Ho * Wo), 0);
    return rc;
}

// ---- operators -------------------------------------------------------------------------------------

int __real_nn_conv2d(const NnConv2d *c, const float *x, int N, int H, int W, float *y);
int __wrap_nn_conv2d(const NnConv2d *c, const float *x, int N, int H, int W, float *y) {
    if (!timed()) return __real_nn_conv2d(c, x, N, H, W, y);
    int Ho, Wo;
    nn_conv2d_out_size(c, H, W, &Ho, &Wo);
    char op[48];
    snprintf(op, sizeof(op), "conv%dx%d%s", c->geom.kernel_h, c->geom.kernel_w, c->geom.stride > 1 ? " stride 2" : "");
    enter(op, H, W, 0, 0, N, 0);
    int rc = __real_nn_conv2d(c, x, N, H, W, y);
    double k = (double)c->geom.kernel_h * c->geom.kernel_w;
    leave(2.0 * N * c->cout * c->cin * k * Ho * Wo, 4.0 * c->cout * c->cin * k, 0);  // bytes: the weights
    return rc;
}

static const char *linear_name(int rows) {
    // rows of the 77-token context (cross-attention K/V) or of the block's map
    for (int d = g_depth - 1; d >= 0; d--)
        if (g_stack[d].level_h)
            return rows == g_stack[d].B * g_stack[d].level_h * g_stack[d].level_w ? "linear" : "linear (other rows)";
    return "linear";
}

int __real_nn_linear(const NnLinear *l, const float *x, float *y, int rows);
int __wrap_nn_linear(const NnLinear *l, const float *x, float *y, int rows) {
    if (!timed()) return __real_nn_linear(l, x, y, rows);
    enter(linear_name(rows), 0, 0, 0, 0, 0, 0);
    int rc = __real_nn_linear(l, x, y, rows);
    leave(2.0 * rows * l->in * l->out, 4.0 * l->in * l->out, 0);
    return rc;
}

int __real_nn_linear_channels_first(const NnLinear *l, const float *x, float *y, int rows);
int __wrap_nn_linear_channels_first(const NnLinear *l, const float *x, float *y, int rows) {
    if (!timed()) return __real_nn_linear_channels_first(l, x, y, rows);
    enter("linear", 0, 0, 0, 0, 0, 0);
    int rc = __real_nn_linear_channels_first(l, x, y, rows);
    leave(2.0 * rows * l->in * l->out, 4.0 * l->in * l->out, 0);
    return rc;
}

static int side_of(int HW) { return (int)(sqrt((double)HW) + 0.5); }

void __real_nn_groupnorm(const NnGroupNorm *g, const float *x, float *y, int N, int HW);
void __wrap_nn_groupnorm(const NnGroupNorm *g, const float *x, float *y, int N, int HW) {
    if (!timed()) {
        __real_nn_groupnorm(g, x, y, N, HW);
        return;
    }
    enter("groupnorm", side_of(HW), side_of(HW), 0, 0, N, 0);
    __real_nn_groupnorm(g, x, y, N, HW);
    leave(0, 12.0 * N * g->channels * HW, 0);
}

void __real_nn_groupnorm_silu(const NnGroupNorm *g, const float *x, float *y, const float *bias, int N, int HW);
void __wrap_nn_groupnorm_silu(const NnGroupNorm *g, const float *x, float *y, const float *bias, int N, int HW) {
    if (!timed()) {
        __real_nn_groupnorm_silu(g, x, y, bias, N, HW);
        return;
    }
    enter("groupnorm+silu", side_of(HW), side_of(HW), 0, 0, N, 0);
    __real_nn_groupnorm_silu(g, x, y, bias, N, HW);
    leave(0, 12.0 * N * g->channels * HW, 0);
}

void __real_nn_layernorm(const NnLayerNorm *l, const float *x, float *y, int rows);
void __wrap_nn_layernorm(const NnLayerNorm *l, const float *x, float *y, int rows) {
    if (!timed()) {
        __real_nn_layernorm(l, x, y, rows);
        return;
    }
    enter("layernorm", 0, 0, 0, 0, 0, 0);
    __real_nn_layernorm(l, x, y, rows);
    leave(0, 12.0 * rows * l->dim, 0);
}

int __real_attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                             int Nk, int head_dim, float scale, int causal, Arena *scratch);
int __wrap_attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                             int Nk, int head_dim, float scale, int causal, Arena *scratch) {
    if (!timed()) return __real_attention_forward(q, k, v, out, B, heads, Nq, Nk, head_dim, scale, causal, scratch);
    enter(Nq == Nk ? "attention (self)" : "attention (cross)", 0, 0, 0, 0, 0, 0);
    int rc = __real_attention_forward(q, k, v, out, B, heads, Nq, Nk, head_dim, scale, causal, scratch);
    leave(4.0 * B * heads * (double)Nq * Nk * head_dim, 0, 0);
    return rc;
}

#define ELTWISE(name, label, args, call_args, bytes)  \
    void __real_##name args;                          \
    void __wrap_##name args {                         \
        if (!timed()) {                               \
            __real_##name call_args;                  \
            return;                                   \
        }                                             \
        enter(label, 0, 0, 0, 0, 0, 0);               \
        __real_##name call_args;                      \
        leave(0, bytes, 0);                           \
    }

ELTWISE(add_inplace, "add", (float *y, const float *x, int64_t n), (y, x, n), 12.0 * n)
ELTWISE(silu_inplace, "silu", (float *x, int64_t n), (x, n), 8.0 * n)
ELTWISE(gelu_inplace, "gelu", (float *x, int64_t n), (x, n), 8.0 * n)

int __real_captures_offer(ModuleCaptures *c, const char *prefix, const char *suffix, const float *data, int ndim,
                          const int *shape);
int __wrap_captures_offer(ModuleCaptures *c, const char *prefix, const char *suffix, const float *data, int ndim,
                          const int *shape) {
    if (!timed()) return __real_captures_offer(c, prefix, suffix, data, ndim, shape);
    enter("capture copy", 0, 0, 0, 0, 0, 0);
    int rc = __real_captures_offer(c, prefix, suffix, data, ndim, shape);
    leave(0, 0, 0);
    return rc;
}

// ---- report ------------------------------------------------------------------------------------------

static int by_key(const void *a, const void *b) { return strcmp(((const Slot *)a)->key, ((const Slot *)b)->key); }

static void report(void) {
    FILE *o = stderr;
    const char *path = getenv("PROF_OUT");
    if (path && *path && !(o = fopen(path, "w"))) o = stderr;
    int threads = omp_get_max_threads();
    double peak = measure_peak(sd_cpu_isa(), 1) * threads * 1e9;  // as bench_models: one core's rate x threads
    fprintf(o, "# prof_wrap: %d threads, FMA peak %.1f GFLOP/s (%d x one core's register-only loop)\n", threads,
            peak * 1e-9, threads);
    fprintf(o, "\n## stages (inclusive; self: outside the wrapped calls)\n%-44s %6s %9s %9s %6s %9s %8s %6s %8s\n", "stage",
            "calls", "wall s", "cpu s", "util", "GFLOP", "GFLOP/s", "%peak", "self s");
    // the FLOPs of a stage: its operators' (keys "stage|level|op")
    for (int i = 0; i < g_nslots; i++) {
        Slot *s = &g_slots[i];
        if (strchr(s->key, '|')) continue;
        double fl = 0.0;
        size_t n = strlen(s->key);
        for (int j = 0; j < g_nslots; j++)
            if (!strncmp(g_slots[j].key, s->key, n) && g_slots[j].key[n] == '|') fl += g_slots[j].flops;
        fprintf(o, "%-44s %6ld %9.3f %9.3f %5.0f%% %9.1f %8.1f %5.1f%% %8.3f\n", s->key, s->calls, s->incl, s->cpu,
                100.0 * s->cpu / (threads * s->incl + 1e-12), fl * 1e-9, fl / (s->incl + 1e-12) * 1e-9,
                100.0 * fl / (s->incl + 1e-12) / peak, s->self);
    }
    qsort(g_slots, (size_t)g_nslots, sizeof(Slot), by_key);
    fprintf(o, "\n## operators, self time (stage | level | operator; GB/s: the least bytes moved, conv/linear: weight MB)\n");
    fprintf(o, "%-66s %6s %8s %8s %8s %7s %6s %6s %8s\n", "key", "calls", "self s", "cpu s", "GFLOP", "GFLOP/s", "%peak",
            "%pkcpu", "GB/s|wMB");
    for (int i = 0; i < g_nslots; i++) {
        Slot *s = &g_slots[i];
        if (!strchr(s->key, '|')) continue;
        int gemm = s->flops > 0;
        // %pkcpu: FLOPs per CPU-second against one core's peak (what the threads did while they ran)
        fprintf(o, "%-66s %6ld %8.4f %8.4f %8.2f %7.1f %5.1f%% %5.1f%% %8.1f\n", s->key, s->calls, s->self, s->cpu_self,
                s->flops * 1e-9, s->flops / (s->self + 1e-12) * 1e-9, 100.0 * s->flops / (s->self + 1e-12) / peak,
                100.0 * s->flops / (s->cpu_self + 1e-12) / (peak / threads),
                gemm ? s->bytes / s->calls * 1e-6 : s->bytes / (s->self + 1e-12) * 1e-9);
    }
    fprintf(o, "\n## UNet calls (wall s):");
    for (int i = 0; i < g_unet_calls && i < 256; i++) fprintf(o, " %.3f", g_unet_call_s[i]);
    fprintf(o, "\n");
    if (o != stderr) fclose(o);
}

// ---- training and evaluation (reproduce, train, eval) ----------------------------------------------
// The head's forward and the batch reading are keyed by the mode the trainer last set (train: the
// steps; eval: validation inside train_run, and eval's test pass).

static int g_head_training;

int __real_train_run(const TrainOptions *o);
int __wrap_train_run(const TrainOptions *o) { STAGE("train", __real_train_run(o)); }

int __real_evaluate(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out);
int __wrap_evaluate(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out) {
    STAGE("eval", __real_evaluate(m, d, rows, n, batch, out));
}

void __real_head_model_set_mode(HeadModel *m, int training, int keep);
void __wrap_head_model_set_mode(HeadModel *m, int training, int keep) {
    g_head_training = training;
    __real_head_model_set_mode(m, training, keep);
}

int __real_dataset_load_batch(Dataset *d, const int *rows, int n, FusionInput *in);
int __wrap_dataset_load_batch(Dataset *d, const int *rows, int n, FusionInput *in) {
    if (!timed()) return __real_dataset_load_batch(d, rows, n, in);
    enter(g_head_training ? "read a batch of feature files (training)" : "read a batch of feature files (validation/test)",
          0, 0, 0, 0, 0, 0);
    int rc = __real_dataset_load_batch(d, rows, n, in);
    leave(0, 0, 0);
    return rc;
}

int __real_head_model_forward(HeadModel *m, const FusionInput *in);
int __wrap_head_model_forward(HeadModel *m, const FusionInput *in) {
    if (!timed()) return __real_head_model_forward(m, in);
    enter(g_head_training ? "fuser + head forward (training)" : "fuser + head forward (validation/test)", 0, 0, 0, 0, 0,
          0);
    int rc = __real_head_model_forward(m, in);
    leave(0, 0, 0);
    return rc;
}

int __real_head_model_backward(HeadModel *m, const float *dlogits);
int __wrap_head_model_backward(HeadModel *m, const float *dlogits) {
    if (!timed()) return __real_head_model_backward(m, dlogits);
    enter("fuser + head backward", 0, 0, 0, 0, 0, 0);
    int rc = __real_head_model_backward(m, dlogits);
    leave(0, 0, 0);
    return rc;
}

int __real_adam_step(Adam *opt, ParamSet *ps, const AdamConfig *cfg);
int __wrap_adam_step(Adam *opt, ParamSet *ps, const AdamConfig *cfg) {
    if (!timed()) return __real_adam_step(opt, ps, cfg);
    enter("adam step", 0, 0, 0, 0, 0, 0);
    int rc = __real_adam_step(opt, ps, cfg);
    leave(0, 0, 0);
    return rc;
}
