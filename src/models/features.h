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
//      ascending; in a block all attn1, then all conv2), widths largest first (pyramid.h)
//
//   DiffusionModel m;  diffusion_model_load(&m, "pipeline_dir", NULL, 0, NULL);   // pipeline.h
//   ExtractOptions o;  extract_options_default(&o);
//   FeaturePyramid p;  features_extract(&m, &o, &image, &p);   // p.feats[i * p.n_scales + s]
//   feature_pyramid_free(&p); diffusion_model_free(&m);
#ifndef SD_FEATURES_H
#define SD_FEATURES_H

#include <stdint.h>

#include "core/tensor.h"
#include "models/ddim.h"
#include "models/pipeline.h"
#include "models/pyramid.h"
#include "models/unet.h"

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

#endif
