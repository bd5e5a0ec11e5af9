// The feature extractor of SatDiFuser (SPEC.md sections 2, 3, 5, 6): a frozen
// diffusers pipeline turns an image into the UNet decoder feature pyramid at a
// few DDIM inversion steps.
//
//   image (1, 3, H, W) in [-1, 1]
//   -> VAE encoder: z0 = posterior mean * scaling_factor (or a seeded sample)
//   -> text encoder(prompt) -> (1, 77, D), computed once per model and prompt
//   -> DDIM inversion of z0 (ddim.h); at each save step the UNet call captures
//      every up_blocks module whose name ends in a chosen suffix (attn1, conv2)
//   -> captures grouped by spatial width, concatenated on channels (block
//      ascending; in a block all attn1, then all conv2), widths largest first
//
//   DiffusionModel m;  diffusion_model_load(&m, "pipeline_dir");
//   ExtractOptions o;  extract_options_default(&o);
//   FeaturePyramid p;  features_extract(&m, &o, &image, &p);   // p.feats[i * p.n_scales + s]
//   feature_pyramid_free(&p); diffusion_model_free(&m);
#ifndef SD_FEATURES_H
#define SD_FEATURES_H

#include <stdint.h>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "models/bpe.h"
#include "models/clip.h"
#include "models/ddim.h"
#include "models/unet.h"
#include "models/vae.h"

// A diffusers pipeline folder: model_index.json, unet/, vae/, text_encoder/,
// tokenizer/, scheduler/ (each with its config and weights: safetensors or PyTorch .bin,
// f32, f16 or bf16).
typedef struct {
    char *dir;
    SafeTensors unet_st, vae_st, text_st;  // must outlive the models (f32 weights are views)
    UNet unet;
    VaeEncoder vae;
    ClipTextModel text;        // loaded while needed (see release_text)
    ClipTextConfig text_config;
    ClipTokenizer tokenizer;
    int max_length;            // tokenizer model_max_length (77)
    DdimScheduler scheduler;
    JsonValue scheduler_config;
    // The prompt embedding, computed once per prompt.
    char *cached_prompt;
    float *cached_embedding;   // (1, L, D)
    int L, D;
    int loaded_unet, loaded_vae, loaded_text, loaded_tok, loaded_sched;
    int release_text;          // 1: the text encoder is freed once a prompt is embedded (reloaded for another)
    // A packed model file (models/pack.h) instead of a folder: every part's weights are in pack_st.
    int is_pack;
    SafeTensors pack_st;
    int pack_repacked;         // weights read back from another kernel set's layout and packed again
} DiffusionModel;

// Loads every part; a missing or broken part is an error naming the file. dir may also be a
// packed model file (models/pack.h: `satdifuser pack`), loaded by mapping it. Each component
// folder may hold safetensors, PyTorch .bin or sharded (*.index.json) weights.
// unet_dir: the UNet's folder when it is not dir/unet (DiffusionSat's release keeps it in
// ROOT/checkpoint-150000/unet), or NULL.
// use_metadata: as unet_load (-1 follows the config; SatDiFuser uses 0).
// prompt: when not NULL, the text encoder is loaded first, this prompt embedded (cached) and the
// text encoder freed before the UNet and VAE are loaded: it is needed once per prompt, and the
// SD 2.1 text encoder is 1.36 GB in f32. A later call with another prompt loads it again.
int diffusion_model_load(DiffusionModel *m, const char *dir, const char *unet_dir, int use_metadata, const char *prompt);
// A hash of the model's configs, tokenizer and weight files (sizes and first / last bytes): two
// checkpoints of one architecture get different ones. Feature files record it; a packed model file
// (models/pack.h) records the one of the folder it was packed from, so its features match that folder's.
uint64_t diffusion_model_fingerprint(const char *dir, const char *unet_dir);
// m->scheduler from m->scheduler_config (already parsed); source names it in messages. Sets loaded_sched.
int diffusion_model_init_scheduler(DiffusionModel *m, const char *source);
// The weight file names a component folder may hold, in order of preference
// (NULL-terminated): the UNet's and VAE's (text_encoder 0) or the text encoder's (1).
const char *const *diffusion_weight_file_names(int text_encoder);
void diffusion_model_free(DiffusionModel *m);

// The prompt embedding text_encoder(tokenizer(prompt, padding="max_length",
// truncation=True))[0] (1, L, D), cached: the pointer stays valid until the
// next call with another prompt or diffusion_model_free.
int diffusion_model_prompt(DiffusionModel *m, const char *prompt, const float **embedding);

#define EXTRACT_MAX_SUFFIXES 8

typedef struct {
    const char *prompt;           // "A satellite image"
    DdimWalkOptions walk;         // 50 steps, save 47, 45, 40, output as epsilon
    int n_suffixes;
    const char *suffixes[EXTRACT_MAX_SUFFIXES];  // "attn1", "conv2"
    int latent_sample;            // 0: posterior mean (default); 1: a sample with `seed`
    uint64_t seed;
    // Called before each UNet call; returning non-zero stops the extraction
    // (Ctrl-C). May be NULL.
    int (*should_stop)(void *ctx);
    void *stop_ctx;
} ExtractOptions;

void extract_options_default(ExtractOptions *o);

#define PYRAMID_MAX_SCALES 8
#define PYRAMID_MAX_LAYERS 64

typedef struct {
    int n_steps;                  // save steps (o.walk.n_save)
    int save_index[DDIM_MAX_SAVE];
    int save_t[DDIM_MAX_SAVE];    // UNet timestep of each save
    int n_scales;
    int scale_h[PYRAMID_MAX_SCALES], scale_w[PYRAMID_MAX_SCALES], scale_c[PYRAMID_MAX_SCALES];
    int n_layers;
    char *layer_path[PYRAMID_MAX_LAYERS];   // in concatenation order within each scale
    int layer_scale[PYRAMID_MAX_LAYERS];
    int layer_channels[PYRAMID_MAX_LAYERS];
    Tensor *feats;                // n_steps * n_scales, (1, C_s, H_s, W_s)
    Tensor latent;                // (1, 4, h, w) z0
    Tensor *noisy_latents;        // optional history: latent after each walking call (NULL unless asked)
    int n_noisy;
} FeaturePyramid;

// Runs the extraction of one image (1, 3, H, W) in [-1, 1].
int features_extract(DiffusionModel *m, const ExtractOptions *o, const Tensor *image, FeaturePyramid *out);
// The same for B images of one size (B, 3, H, W) at once: out[0..B) (one VAE call and one UNet call
// per step for all of them). Every image's features have the bits of its own features_extract: the
// layers are per sample, and each output element of a product sums over K in the same order whatever
// the number of rows (tests/test_extract_batch.c).
int features_extract_batch(DiffusionModel *m, const ExtractOptions *o, const Tensor *images, FeaturePyramid *out);

// The same from a given clean latent and text embedding (no VAE, no text
// encoder): what the ddim_inversion golden cases run. keep_history: fill
// out->noisy_latents with x after every advancing call.
int features_from_latent(const UNet *unet, DdimScheduler *sched, const ExtractOptions *o, const float *latent, int h,
                         int w, const float *text, int L, int keep_history, FeaturePyramid *out);
// B latents (B, C, h, w) walked together (text: one (L, D) embedding for all): out[0..B).
// keep_history needs B = 1.
int features_from_latents(const UNet *unet, DdimScheduler *sched, const ExtractOptions *o, const float *latents, int B,
                          int h, int w, const float *text, int L, int keep_history, FeaturePyramid *out);

void feature_pyramid_free(FeaturePyramid *p);

#endif
