// Golden handler for module "extract": the whole feature extraction of
// features.h (VAE mean latent, prompt embedding, DDIM inversion, grouped UNet
// decoder features) on input.image (B,3,H,W) in [-1,1], one image at a time.
// Weights are prefixed unet., vae., text_encoder.; vocab.json and merges.txt
// sit in the case folder. Outputs: latent, text_embedding, feat.<i>.<scale>.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/features.h"

static int read_options(GoldenCase *gc, ExtractOptions *o, DiffusionModel *m, const char **pad) {
    const JsonValue *cfg = gc->config, *v;
    extract_options_default(o);
    if (json_get_string(cfg, "prompt", "A satellite image", &o->prompt) ||
        json_get_int(cfg, "num_timesteps", 50, &o->walk.num_inference_steps))
        return -1;
    if ((v = json_get(cfg, "save_timesteps")) && v->type == JSON_ARRAY) {
        if (v->count > DDIM_MAX_SAVE) return sd_errorf("too many save_timesteps");
        o->walk.n_save = v->count;
        for (int k = 0; k < v->count; k++) o->walk.save_index[k] = (int)v->items[k].number;
    }
    if ((v = json_get(cfg, "layers")) && v->type == JSON_ARRAY) {
        if (v->count > EXTRACT_MAX_SUFFIXES) return sd_errorf("too many layers");
        o->n_suffixes = v->count;
        for (int k = 0; k < v->count; k++) o->suffixes[k] = v->items[k].string;
    }
    const char *latent = "mean";
    if (json_get_string(cfg, "latent", "mean", &latent)) return -1;
    if (strcmp(latent, "mean") != 0) return sd_errorf("config.latent '%s': only \"mean\" is comparable", latent);
    const JsonValue *tok = json_get(cfg, "tokenizer");
    *pad = "!";
    m->max_length = 77;
    if (tok && (json_get_string(tok, "pad_token", "!", pad) || json_get_int(tok, "model_max_length", 77, &m->max_length)))
        return -1;
    return 0;
}

int golden_case_extract(GoldenCase *gc) {
    DiffusionModel m;
    memset(&m, 0, sizeof(m));
    ExtractOptions o;
    Tensor image = {0};
    Tensor *feats = NULL;
    float *latents = NULL;
    int rc = -1, n_out = 0, B = 0;
    FeaturePyramid p = {0};
    const char *pad;
    char vocab[4096], merges[4096];
    DdimConfig scfg = {0};
    ClipTextConfig tcfg;

    if (read_options(gc, &o, &m, &pad)) goto done;
    if (unet_load(&m.unet, json_get(gc->config, "unet"), &gc->weights, "unet.", 0)) goto done;
    m.loaded_unet = 1;
    if (vae_encoder_load(&m.vae, json_get(gc->config, "vae"), &gc->weights, "vae.")) goto done;
    m.loaded_vae = 1;
    if (clip_text_config_from_json(json_get(gc->config, "text_encoder"), &tcfg) ||
        clip_text_load(&m.text, &tcfg, &gc->weights, "text_encoder."))
        goto done;
    m.loaded_text = 1;
    if (clip_tokenizer_load(&m.tokenizer, golden_path(gc, "vocab.json", vocab, sizeof(vocab)),
                            golden_path(gc, "merges.txt", merges, sizeof(merges)), pad))
        goto done;
    m.loaded_tok = 1;
    if (ddim_config_from_json(json_get(gc->config, "scheduler"), "config.scheduler", &scfg) || ddim_init(&m.scheduler, &scfg))
        goto done;
    m.loaded_sched = 1;

    if (golden_load(gc, "input.image", &image)) goto done;
    if (image.ndim != 4 || image.shape[1] != 3) {
        sd_errorf("input.image must be (B, 3, H, W)");
        goto done;
    }
    B = image.shape[0];
    const int H = image.shape[2], W = image.shape[3];
    const int64_t per_image = (int64_t)3 * H * W;
    for (int b = 0; b < B; b++) {
        Tensor one = tensor_view4(image.data + b * per_image, 1, 3, H, W);
        if (features_extract(&m, &o, &one, &p)) goto done;
        if (b == 0) {
            // Batch buffers, now that the pyramid's layout is known.
            n_out = p.n_steps * p.n_scales;
            feats = (Tensor *)calloc((size_t)n_out, sizeof(Tensor));
            latents = (float *)malloc((size_t)B * (size_t)tensor_numel(&p.latent) * sizeof(float));
            if (!feats || !latents) {
                sd_errorf("out of memory");
                goto done;
            }
            for (int k = 0; k < n_out; k++) {
                int shape[4] = {B, p.feats[k].shape[1], p.feats[k].shape[2], p.feats[k].shape[3]};
                if (tensor_alloc(&feats[k], 4, shape, "batch features")) goto done;
            }
        }
        int64_t nl = tensor_numel(&p.latent);
        memcpy(latents + b * nl, p.latent.data, (size_t)nl * sizeof(float));
        for (int k = 0; k < n_out; k++) {
            int64_t nf = tensor_numel(&p.feats[k]);
            memcpy(feats[k].data + b * nf, p.feats[k].data, (size_t)nf * sizeof(float));
        }
        if (b + 1 < B) feature_pyramid_free(&p);
    }
    rc = 0;
    if (golden_has(gc, "output.text_embedding"))
        golden_check(gc, "output.text_embedding", m.cached_embedding, 3, (int[3]){1, m.L, m.D});
    golden_check(gc, "output.latent", latents, 4, (int[4]){B, p.latent.shape[1], p.latent.shape[2], p.latent.shape[3]});
    for (int i = 0; i < p.n_steps; i++)
        for (int s = 0; s < p.n_scales; s++) {
            char name[64];
            snprintf(name, sizeof(name), "output.feat.%d.%d", i, s);
            golden_check_tensor(gc, name, &feats[i * p.n_scales + s]);
        }
done:
    feature_pyramid_free(&p);
    for (int k = 0; feats && k < n_out; k++) tensor_free(&feats[k]);
    free(feats);
    free(latents);
    tensor_free(&image);
    ddim_config_free(&scfg);
    // The weights belong to the case: free the parts, not the (unopened) files.
    if (m.loaded_unet) unet_free(&m.unet);
    if (m.loaded_vae) vae_encoder_free(&m.vae);
    if (m.loaded_text) clip_text_free(&m.text);
    if (m.loaded_tok) clip_tokenizer_free(&m.tokenizer);
    if (m.loaded_sched) ddim_free(&m.scheduler);
    free(m.cached_prompt);
    free(m.cached_embedding);
    return rc;
}
