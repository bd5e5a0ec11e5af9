// The feature extractor (see features.h): image -> VAE latent -> DDIM inversion walk with the UNet's
// captures -> feature pyramid. References: SatDiFuser run.py (latent), archs/ldm_extractor.py
// (generalized_steps).
#include "models/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void extract_options_default(ExtractOptions *o) {
    memset(o, 0, sizeof(*o));
    o->prompt = "A satellite image";
    ddim_walk_options_default(&o->walk);
    o->n_suffixes = 2;
    o->suffixes[0] = "attn1";
    o->suffixes[1] = "conv2";
}

int features_from_latents(const UNet *unet, DdimScheduler *sched, const ExtractOptions *o, const float *latents, int B,
                          int h, int w, const float *text, int L, int keep_history, FeaturePyramid *out) {
    for (int b = 0; b < B; b++) memset(&out[b], 0, sizeof(out[b]));
    if (B < 1) return sd_errorf("features_from_latents: batch %d", B);
    if (keep_history && B != 1) return sd_errorf("features_from_latents: the latent history is kept for batch 1 only");
    DdimWalk walk;
    ModuleCaptures cap = {0};
    char **paths = NULL;
    int n_paths = 0, rc = -1, have_layout = 0;
    const int C = unet->in_channels, D = unet->cross_attention_dim[0];
    const int64_t n = (int64_t)C * h * w;  // one latent
    float *x = NULL, *eps = NULL, *context = NULL, *timesteps = NULL;
    // One scratch arena for the whole walk: it takes its size in the first UNet call (growing), and a fresh
    // one per call would fault its pages in each time.
    Arena arena = {0};
    if (ddim_walk_plan(sched, &o->walk, &walk)) return -1;
    for (int b = 0; b < B; b++) {
        out[b].n_steps = walk.n_save;
        for (int k = 0; k < walk.n_save; k++) {
            out[b].save_index[k] = walk.save_index[k];
            out[b].save_t[k] = walk.save_t[k];
        }
    }
    if (unet_up_block_paths(unet, o->suffixes, o->n_suffixes, &paths, &n_paths)) goto done;
    if (n_paths == 0) {
        sd_errorf("no up_blocks module ends in the chosen layer names (%s%s%s)", o->n_suffixes ? o->suffixes[0] : "",
                  o->n_suffixes > 1 ? ", " : "", o->n_suffixes > 1 ? o->suffixes[1] : "");
        goto done;
    }
    if (captures_init(&cap, (const char *const *)paths, n_paths)) goto done;
    // the B latents walk together: one UNet call of batch B per step, the same t and prompt for all
    x = (float *)malloc((size_t)(n * B) * sizeof(float));
    eps = (float *)malloc((size_t)unet_output_floats(unet, B, h, w) * sizeof(float));
    context = (float *)malloc((size_t)B * (size_t)L * (size_t)D * sizeof(float));
    timesteps = (float *)malloc((size_t)B * sizeof(float));
    int shape[4] = {1, C, h, w};
    if (!x || !eps || !context || !timesteps) {
        sd_errorf("out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) {
        if (tensor_alloc(&out[b].latent, 4, shape, "latent")) goto done;
        memcpy(out[b].latent.data, latents + b * n, (size_t)n * sizeof(float));
        memcpy(context + (size_t)b * L * D, text, (size_t)L * D * sizeof(float));
    }
    memcpy(x, latents, (size_t)(n * B) * sizeof(float));
    for (int b = 0; b < B; b++) {
        out[b].feats = (Tensor *)calloc((size_t)(walk.n_save * PYRAMID_MAX_SCALES + 1), sizeof(Tensor));
        if (!out[b].feats) { sd_errorf("out of memory"); goto done; }
    }
    if (keep_history && !(out->noisy_latents = (Tensor *)calloc((size_t)walk.n_calls + 1, sizeof(Tensor)))) {
        sd_errorf("out of memory");
        goto done;
    }
    for (int i = 0; i < walk.n_calls; i++) {
        const DdimCall *c = &walk.calls[i];
        if (o->should_stop && o->should_stop(o->stop_ctx)) {
            sd_errorf("interrupted");
            goto done;
        }
        int save = c->save_slot >= 0;
        for (int b = 0; b < B; b++) timesteps[b] = c->t_unet;
        if (save) captures_clear(&cap);
        if (unet_forward(unet, x, B, h, w, timesteps, context, L, NULL, save ? &cap : NULL, &arena, eps)) {
            sd_error_context("UNet call %d (t = %g)", i, (double)c->t_unet);
            goto done;
        }
        if (save) {
            if (captures_check_filled(&cap, "unet")) goto done;
            if (!have_layout) {  // from the first captures; every batch element has the same
                if (pyramid_layout(unet, &cap, h, w, &out[0])) goto done;
                for (int b = 1; b < B; b++)
                    if (pyramid_copy_layout(&out[b], &out[0])) goto done;
                have_layout = 1;
            }
            for (int b = 0; b < B; b++)
                if (pyramid_fill(&out[b], &cap, c->save_slot, b)) goto done;
        }
        if (c->advance) {
            ddim_step(&walk, c, x, eps, x, NULL, n * B);  // element-wise: each latent as alone
            if (keep_history) {
                if (tensor_alloc(&out->noisy_latents[out->n_noisy], 4, shape, "noisy latent")) goto done;
                memcpy(out->noisy_latents[out->n_noisy++].data, x, (size_t)n * sizeof(float));
            }
        }
    }
    rc = 0;
done:
    arena_free(&arena);
    captures_free(&cap);
    if (paths) unet_paths_free(paths, n_paths);
    free(x);
    free(eps);
    free(context);
    free(timesteps);
    ddim_walk_free(&walk);
    if (rc)
        for (int b = 0; b < B; b++) feature_pyramid_free(&out[b]);
    return rc;
}

int features_from_latent(const UNet *unet, DdimScheduler *sched, const ExtractOptions *o, const float *latent, int h,
                         int w, const float *text, int L, int keep_history, FeaturePyramid *out) {
    return features_from_latents(unet, sched, o, latent, 1, h, w, text, L, keep_history, out);
}

int features_extract_batch(DiffusionModel *m, const ExtractOptions *o, const Tensor *images, FeaturePyramid *out) {
    const int B = images->ndim == 4 ? images->shape[0] : 0;
    for (int b = 0; b < B; b++) memset(&out[b], 0, sizeof(out[b]));
    if (images->ndim != 4 || B < 1 || images->shape[1] != m->vae.in_channels)
        return sd_errorf("extract: images must be (B, %d, H, W)", m->vae.in_channels);
    const int H = images->shape[2], W = images->shape[3];
    const float *text;
    if (diffusion_model_prompt(m, o->prompt, &text)) return -1;
    int h, w;
    vae_latent_size(&m->vae, H, W, &h, &w);
    const int64_t n = (int64_t)m->vae.latent_channels * h * w;  // one latent
    float *mean = (float *)malloc((size_t)(n * B) * sizeof(float));
    float *logvar = (float *)malloc((size_t)(n * B) * sizeof(float));
    float *z0 = (float *)malloc((size_t)(n * B) * sizeof(float));
    int rc = -1;
    if (!mean || !logvar || !z0) {
        sd_errorf("out of memory");
        goto done;
    }
    if (m->vae.latent_channels != m->unet.in_channels) {
        sd_errorf("the VAE makes %d latent channels, the UNet takes %d", m->vae.latent_channels, m->unet.in_channels);
        goto done;
    }
    // z0 = latent_dist.mean (or .sample()) * scaling_factor; a sample draws the same noise for each
    // image as when it is extracted alone
    if (vae_encode_run(&m->vae, images->data, B, H, W, mean, logvar, NULL)) goto done;
    for (int b = 0; b < B; b++) vae_latent(mean + b * n, logvar + b * n, n, m->vae.scaling_factor, o->latent_sample, o->seed, z0 + b * n);
    rc = features_from_latents(&m->unet, &m->scheduler, o, z0, B, h, w, text, m->L, 0, out);
done:
    free(mean);
    free(logvar);
    free(z0);
    return rc;
}

int features_extract(DiffusionModel *m, const ExtractOptions *o, const Tensor *image, FeaturePyramid *out) {
    memset(out, 0, sizeof(*out));
    if (image->ndim != 4 || image->shape[0] != 1 || image->shape[1] != m->vae.in_channels)
        return sd_errorf("extract: image must be (1, %d, H, W)", m->vae.in_channels);
    return features_extract_batch(m, o, image, out);
}
