// satdifuser.h: the library face of satdifuser for programs that embed it (docs/library.md).
//
//   SdfContext *ctx;  sdf_context_new(NULL, &ctx);               // threads, precision, ISA
//   SdfModel *model;  sdf_model_load(ctx, "pipeline_dir", NULL, &model);
//   SdfHead *head;    sdf_head_load(ctx, "run_dir", NULL, &head);
//   SdfExtractOptions eo;  sdf_head_extract_options(head, &eo);  // as the head was trained
//   SdfFeatures *f;   sdf_extract(ctx, model, &eo, image, 3, H, W, &f);
//   SdfPrediction p;  sdf_predict(ctx, head, f, &p);              // p.classes, p.probs
//   sdf_prediction_free(&p); sdf_features_free(f); sdf_head_free(head);
//   sdf_model_free(model); sdf_context_free(ctx);
//
// Errors are values: every function that can fail returns an SdfStatus (SDF_OK = 0) and records a
// message naming the file, tensor or argument at fault, which sdf_last_error() gives back to the
// thread that called (each thread has its own). Nothing is printed: notes go to the context's
// notice callback.
//
// Threads: the settings live in the context the caller owns. Each call runs with the settings of the
// context it is given (they are set on the calling thread on entry and restored on return), so two
// host threads with their own contexts, models and heads may run at once. A model, head or features
// object is used by one thread at a time (it keeps caches: the prompt embedding, MoE counters); a
// context may be shared, as it is only read. Results do not depend on the thread count.
//
// Plain C99; link with libsatdifuser.a, -fopenmp and -lm.
#ifndef SATDIFUSER_H
#define SATDIFUSER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SDF_OK = 0,
    SDF_ERR_ARGUMENT = 1,     // a NULL or out-of-range argument, an option the library does not take
    SDF_ERR_UNSUPPORTED = 2,  // this CPU or build cannot do it (bf16 compute, an ISA path)
    SDF_ERR_FAILED = 3,       // the work failed: a missing or broken file, out of memory, ... (see the message)
} SdfStatus;

// The last message recorded on the calling thread ("" if none): what failed and why.
const char *sdf_last_error(void);

// ---- context -------------------------------------------------------------------------------

enum { SDF_F32 = 0, SDF_BF16 = 1, SDF_F16 = 2 };
enum { SDF_ISA_AUTO = -1, SDF_ISA_SCALAR = 0, SDF_ISA_AVX2 = 1, SDF_ISA_AVX512 = 2, SDF_ISA_NEON = 3 };

typedef struct {
    int threads;      // OpenMP threads of this context's calls (0, the default: every core)
    int precision;    // SDF_F32 (default), SDF_BF16: linear and conv products in bf16 (AVX512_BF16 or arm64
                      // FEAT_BF16 CPUs; ~1% relative error in the features, docs/bf16.md), or SDF_F16: linear
                      // and conv weights kept as IEEE half (half their memory), products in f32 (any CPU);
                      // applies to the models loaded
    int isa;          // SDF_ISA_AUTO (default: the best this CPU has) or a lower SIMD path, e.g. for tests
    // Notes that are not errors (a packed model file repacked for this CPU's kernels): one line of
    // text, no newline. NULL: dropped.
    void (*notice)(const char *message, void *user);
    void *notice_user;
} SdfOptions;

typedef struct SdfContext SdfContext;

void sdf_options_default(SdfOptions *o);
// opts NULL: the defaults. Checks the options (an ISA or precision the CPU lacks is SDF_ERR_UNSUPPORTED).
SdfStatus sdf_context_new(const SdfOptions *opts, SdfContext **out);
void sdf_context_free(SdfContext *ctx);
// Frees the calling thread's kept workspaces (the GEMM's pack buffers, kept between calls and owned
// by each host thread). Call it in a thread that used the library before the thread ends, else
// they leak; a later call on the thread allocates them again.
void sdf_thread_release(void);

// ---- model ---------------------------------------------------------------------------------

typedef struct SdfModel SdfModel;

// path: a diffusers pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a packed
// model file (`satdifuser pack`). unet_dir: the UNet's folder when it is not path/unet (DiffusionSat's
// release: ROOT/checkpoint-150000/unet), else NULL. Loaded in the context's precision and ISA: use the
// model with a context of the same ones.
SdfStatus sdf_model_load(SdfContext *ctx, const char *path, const char *unet_dir, SdfModel **out);
void sdf_model_free(SdfModel *model);

// ---- features ------------------------------------------------------------------------------

#define SDF_MAX_SAVE 8

// The options of `satdifuser extract`, with its defaults (sdf_extract_options_default).
typedef struct {
    int size;                      // shorter side after resizing, a multiple of 8 (256)
    const char *prompt;            // text condition ("A satellite image")
    int steps;                     // DDIM inference steps (50)
    int n_save;                    // save steps (3: 47, 45, 40, the original's save_timesteps)
    int save_steps[SDF_MAX_SAVE];
    const char *layers;            // up_blocks module name suffixes to capture ("attn1,conv2")
    int latent_sample;             // 0: the posterior mean (default); 1: a sample drawn with `seed`
    uint64_t seed;
    int prediction_by_config;      // 0: UNet output as epsilon (default, as the original); 1: by the scheduler
} SdfExtractOptions;

void sdf_extract_options_default(SdfExtractOptions *o);

typedef struct SdfFeatures SdfFeatures;

// The feature pyramid of one image: `image` holds `channels` (3: R, G, B) planes of height x width
// float32 values already scaled to [0, 1] (values outside are clipped), planes one after the other.
// It is resized (shorter side to o->size, torchvision's antialiased bilinear), mapped to [-1, 1],
// VAE-encoded and DDIM-inverted; the UNet decoder features are kept at each save step. o NULL: the
// defaults. The same bits as `satdifuser extract --scale clip` on these bands.
SdfStatus sdf_extract(SdfContext *ctx, SdfModel *model, const SdfExtractOptions *o, const float *image, int channels,
                      int height, int width, SdfFeatures **out);
void sdf_features_free(SdfFeatures *f);

// The pyramid's layout: n_steps save steps x n_scales scales (widths largest first).
int sdf_features_steps(const SdfFeatures *f);
int sdf_features_scales(const SdfFeatures *f);
// The map of save step `step` at scale `scale`: channels x height x width floats (NULL if out of range).
const float *sdf_features_map(const SdfFeatures *f, int step, int scale, int *channels, int *height, int *width);
// Writes the features as a feature file (`satdifuser extract`'s format: feat.<step>.<scale>, latent),
// which `satdifuser predict --features` and `train` read.
SdfStatus sdf_features_save(SdfContext *ctx, const SdfFeatures *f, const char *path);

// ---- head ----------------------------------------------------------------------------------

typedef struct SdfHead SdfHead;

enum { SDF_TASK_CLASSIFICATION = 0, SDF_TASK_MULTILABEL = 1, SDF_TASK_SEGMENTATION = 2 };

// A trained head from a run folder (`satdifuser train --out RUN`): RUN/head_config.json and
// RUN/best.safetensors (or `weights`, when not NULL); an MoE head's counters from RUN/moe_counter.json.
SdfStatus sdf_head_load(SdfContext *ctx, const char *run_dir, const char *weights, SdfHead **out);
void sdf_head_free(SdfHead *head);
int sdf_head_task(const SdfHead *head);
int sdf_head_num_classes(const SdfHead *head);
// The class's name from RUN/classes.json, else its number as text.
const char *sdf_head_class_name(const SdfHead *head, int c);
// The extraction settings the head was trained on (RUN/features_meta.json): size, prompt, steps, save
// steps, layers, latent, prediction. The strings stay valid while the head lives.
SdfStatus sdf_head_extract_options(const SdfHead *head, SdfExtractOptions *o);

typedef struct {
    int task;            // SDF_TASK_*
    int num_classes;
    int height, width;   // segmentation: the map's size (the image's, as given to sdf_extract); else 1 x 1
    // Classification: softmax probabilities (multi-label: a sigmoid per class), num_classes values.
    // Segmentation: the softmax over the classes per pixel, num_classes x height x width.
    float *probs;
    // The class with the largest score: one value (classification; multi-label: the top one), or one per
    // pixel (segmentation, height x width), ties to the lower index, as `satdifuser predict`.
    int32_t *classes;
} SdfPrediction;

// Runs the head on the features (extracted with the head's settings: sdf_head_extract_options).
SdfStatus sdf_predict(SdfContext *ctx, SdfHead *head, const SdfFeatures *f, SdfPrediction *out);
void sdf_prediction_free(SdfPrediction *p);

#ifdef __cplusplus
}
#endif

#endif
