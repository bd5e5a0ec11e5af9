// The feature extractor (see features.h). References: SatDiFuser run.py
// (latent), archs/ldm_extractor.py (get_tokens_embedding, generalized_steps,
// collect_layers, collect_feats).
#include "models/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "core/error.h"
#include "models/pack.h"

// ---------------------------------------------------------------------------
// Loading a diffusers pipeline folder.

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// The weight files a component folder may hold, in the order they are preferred:
// safetensors wins over a PyTorch .bin when both exist (diffusers and transformers
// do the same), a single file over a sharded one.
static const char *const UNET_WEIGHT_FILES[] = {
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.bin.index.json", NULL};
static const char *const TEXT_WEIGHT_FILES[] = {
    "model.safetensors", "model.fp16.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model.fp16.bin", "pytorch_model.bin.index.json", NULL};

const char *const *diffusion_weight_file_names(int text_encoder) {
    return text_encoder ? TEXT_WEIGHT_FILES : UNET_WEIGHT_FILES;
}

// The first of the candidate weight files present in the component folder `dir`.
static int find_weights(const char *dir, const char *const *names, char *out, size_t size) {
    for (int i = 0; names[i]; i++) {
        snprintf(out, size, "%s/%s", dir, names[i]);
        if (file_exists(out)) return 0;
    }
    return sd_errorf("%s: no weights file (looked for %s, %s, %s, %s and their fp16 / sharded forms)", dir, names[0],
                     names[2], names[3], names[5]);
}

// FNV-1a over a file's size and its first and last bytes (a weights file is too big to read whole).
static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_file(uint64_t h, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return h;
    unsigned char buf[1 << 14];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    h = fnv1a(h, (const unsigned char *)&size, sizeof(size));
    fseek(f, 0, SEEK_SET);
    for (long done = 0; done < (1L << 20);) {  // first MB
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (!n) break;
        h = fnv1a(h, buf, n);
        done += (long)n;
    }
    if (size > (1L << 20) && fseek(f, size - (long)(1 << 16), SEEK_SET) == 0)  // last 64 KB
        for (int k = 0; k < 4; k++) {
            size_t n = fread(buf, 1, sizeof(buf), f);
            if (!n) break;
            h = fnv1a(h, buf, n);
        }
    fclose(f);
    return h;
}

uint64_t diffusion_model_fingerprint(const char *dir, const char *unet_dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) return model_pack_fingerprint(dir);
    static const char *const configs[] = {"vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json",
                                          "tokenizer/merges.txt", "scheduler/scheduler_config.json"};
    uint64_t h = 0xcbf29ce484222325ull;
    char path[8192], unet[4096];
    if (unet_dir) snprintf(unet, sizeof(unet), "%s", unet_dir);
    else snprintf(unet, sizeof(unet), "%s/unet", dir);
    snprintf(path, sizeof(path), "%s/config.json", unet);
    h = hash_file(h, path);
    for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++) {
        snprintf(path, sizeof(path), "%s/%s", dir, configs[k]);
        h = hash_file(h, path);
    }
    for (int f = 0; f < 3; f++) {
        const char *const *names = diffusion_weight_file_names(f == 2);
        for (int i = 0; names[i]; i++) {
            if (f == 0) snprintf(path, sizeof(path), "%s/%s", unet, names[i]);
            else snprintf(path, sizeof(path), "%s/%s/%s", dir, f == 1 ? "vae" : "text_encoder", names[i]);
            h = hash_file(h, path);
        }
    }
    return h;
}

// DiffusionSat's release has no unet/ at its root: the UNet is in checkpoint-<step>/unet.
static int explain_missing_unet(const char *dir) {
    DIR *d = opendir(dir);
    char found[1024] = "";
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (!strncmp(e->d_name, "checkpoint-", 11)) {
                char sub[4096];
                struct stat sb;
                snprintf(sub, sizeof(sub), "%s/%s/unet", dir, e->d_name);
                if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode) && strcmp(e->d_name, found) > 0)
                    snprintf(found, sizeof(found), "%s", e->d_name);  // the last in name order
            }
        closedir(d);
    }
    if (found[0])
        return sd_errorf("%s has no unet/ folder but has %s/unet (a DiffusionSat release layout): pass --unet %s/%s/unet",
                         dir, found, dir, found);
    return sd_errorf("%s/unet: missing (the pipeline folder needs unet/, or give the UNet folder with --unet DIR)", dir);
}

static int load_json(const char *dir, const char *sub, const char *file, JsonValue *out) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, file);
    if (!file_exists(path)) return sd_errorf("%s: missing (the pipeline folder needs %s/%s)", path, sub, file);
    return json_parse_file(path, out);
}

// The text encoder of m->dir (its config into m->text_config, its weights into m->text).
static int load_text_encoder(DiffusionModel *m) {
    if (m->is_pack) return model_pack_load_text_encoder(m);
    JsonValue cfg;
    char path[8192], sub[4096];
    if (load_json(m->dir, "text_encoder", "config.json", &cfg)) return SD_FAIL;
    int rc = clip_text_config_from_json(&cfg, &m->text_config);
    json_free(&cfg);
    if (rc) return sd_error_context("%s/text_encoder/config.json", m->dir);
    snprintf(sub, sizeof(sub), "%s/text_encoder", m->dir);
    if (find_weights(sub, TEXT_WEIGHT_FILES, path, sizeof(path)) || st_open(&m->text_st, path)) return SD_FAIL;
    if (clip_text_load(&m->text, &m->text_config, &m->text_st, NULL)) {
        st_close(&m->text_st);
        return sd_error_context("%s", sub);
    }
    m->loaded_text = 1;
    return 0;
}

static void release_text_encoder(DiffusionModel *m) {
    if (m->loaded_text) clip_text_free(&m->text);
    st_close(&m->text_st);
    m->loaded_text = 0;
}

int diffusion_model_load(DiffusionModel *m, const char *dir, const char *unet_dir, int use_metadata, const char *prompt) {
    memset(m, 0, sizeof(*m));
    if (model_pack_path_is_file(dir)) {
        if (unet_dir) return sd_errorf("--unet %s: a packed model file holds its UNet (--unet is for folders)", unet_dir);
        return model_pack_load(m, dir, use_metadata, prompt);
    }
    char path[8192], sub[4096];
    JsonValue cfg;
    m->dir = strdup(dir);
    if (!m->dir) return sd_errorf("out of memory");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        diffusion_model_free(m);
        return sd_errorf("%s: not a folder (--model wants a diffusers pipeline folder)", dir);
    }
    snprintf(path, sizeof(path), "%s/model_index.json", dir);
    if (!file_exists(path)) {
        diffusion_model_free(m);
        return sd_errorf("%s: missing: not a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, "
                         "tokenizer/, scheduler/)",
                         path);
    }
    // Text encoder and tokenizer first: with a prompt, its embedding is computed and the text
    // encoder freed before the UNet and the VAE are loaded (it is needed once per prompt).
    if (load_text_encoder(m)) goto fail;
    snprintf(path, sizeof(path), "%s/tokenizer", dir);
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        sd_errorf("%s: missing (the pipeline folder needs tokenizer/vocab.json and merges.txt)", path);
        goto fail;
    }
    if (clip_tokenizer_load_dir(&m->tokenizer, path, NULL, &m->max_length)) goto fail;
    m->loaded_tok = 1;
    if (m->max_length > m->text_config.max_position_embeddings) m->max_length = m->text_config.max_position_embeddings;
    if (prompt) {
        const float *emb;
        m->release_text = 1;
        if (diffusion_model_prompt(m, prompt, &emb)) goto fail;
    }
    // UNet: DIR/unet, or the folder --unet names (DiffusionSat: ROOT/checkpoint-150000/unet)
    if (unet_dir) {
        if (stat(unet_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            diffusion_model_free(m);
            return sd_errorf("--unet %s: not a folder (it wants a UNet folder with config.json and weights)", unet_dir);
        }
        snprintf(sub, sizeof(sub), "%s", unet_dir);
    } else {
        snprintf(sub, sizeof(sub), "%s/unet", dir);
        if (stat(sub, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            explain_missing_unet(dir);
            diffusion_model_free(m);
            return SD_FAIL;
        }
    }
    snprintf(path, sizeof(path), "%s/config.json", sub);
    if (!file_exists(path)) { sd_errorf("%s: missing (a UNet folder needs config.json)", path); goto fail; }
    if (json_parse_file(path, &cfg)) goto fail;
    if (find_weights(sub, UNET_WEIGHT_FILES, path, sizeof(path)) || st_open(&m->unet_st, path)) {
        json_free(&cfg);
        goto fail;
    }
    if (unet_load(&m->unet, &cfg, &m->unet_st, "", use_metadata)) {
        json_free(&cfg);
        sd_error_context("%s", sub);
        goto fail;
    }
    json_free(&cfg);
    m->loaded_unet = 1;
    // VAE encoder
    if (load_json(dir, "vae", "config.json", &cfg)) goto fail;
    snprintf(sub, sizeof(sub), "%s/vae", dir);
    if (find_weights(sub, UNET_WEIGHT_FILES, path, sizeof(path)) || st_open(&m->vae_st, path)) {
        json_free(&cfg);
        goto fail;
    }
    if (vae_encoder_load(&m->vae, &cfg, &m->vae_st, "")) {
        json_free(&cfg);
        sd_error_context("%s/vae", dir);
        goto fail;
    }
    json_free(&cfg);
    m->loaded_vae = 1;
    if (m->text_config.hidden_size != m->unet.cross_attention_dim[0]) {
        sd_errorf("%s: the text encoder's hidden_size %d differs from the UNet's cross_attention_dim %d", dir,
                  m->text_config.hidden_size, m->unet.cross_attention_dim[0]);
        goto fail;
    }
    // Scheduler
    if (load_json(dir, "scheduler", "scheduler_config.json", &m->scheduler_config)) goto fail;
    snprintf(path, sizeof(path), "%s/scheduler/scheduler_config.json", dir);
    if (diffusion_model_init_scheduler(m, path)) goto fail;
    return 0;
fail:
    diffusion_model_free(m);
    return -1;
}

int diffusion_model_init_scheduler(DiffusionModel *m, const char *source) {
    DdimConfig scfg;
    if (ddim_config_from_json(&m->scheduler_config, source, &scfg)) return SD_FAIL;
    int rc = ddim_init(&m->scheduler, &scfg);
    ddim_config_free(&scfg);
    if (rc) return SD_FAIL;
    m->loaded_sched = 1;
    return 0;
}

void diffusion_model_free(DiffusionModel *m) {
    if (m->loaded_unet) unet_free(&m->unet);
    if (m->loaded_vae) vae_encoder_free(&m->vae);
    release_text_encoder(m);
    if (m->loaded_tok) clip_tokenizer_free(&m->tokenizer);
    if (m->loaded_sched) ddim_free(&m->scheduler);
    json_free(&m->scheduler_config);
    st_close(&m->unet_st);
    st_close(&m->vae_st);
    if (m->is_pack) st_close(&m->pack_st);  // after the models: their weights point into it
    free(m->cached_prompt);
    free(m->cached_embedding);
    free(m->dir);
    memset(m, 0, sizeof(*m));
}

int diffusion_model_prompt(DiffusionModel *m, const char *prompt, const float **embedding) {
    if (m->cached_prompt && !strcmp(m->cached_prompt, prompt)) {
        *embedding = m->cached_embedding;
        return 0;
    }
    if (!m->loaded_text && load_text_encoder(m)) return sd_error_context("prompt '%s'", prompt);
    int L = m->max_length > 0 ? m->max_length : CLIP_MAX_LENGTH, D = m->text.config.hidden_size;
    int64_t *ids = (int64_t *)malloc((size_t)L * sizeof(int64_t));
    float *emb = (float *)malloc((size_t)L * (size_t)D * sizeof(float));
    char *copy = strdup(prompt);
    if (!ids || !emb || !copy) {
        free(ids), free(emb), free(copy);
        return sd_errorf("out of memory");
    }
    // get_tokens_embedding: padding="max_length", truncation=True; text_encoder(ids)[0].
    if (clip_tokenize(&m->tokenizer, prompt, L, ids) || clip_text_forward_run(&m->text, ids, 1, L, emb, NULL)) {
        free(ids), free(emb), free(copy);
        return sd_error_context("prompt '%s'", prompt);
    }
    free(ids);
    free(m->cached_prompt);
    free(m->cached_embedding);
    m->cached_prompt = copy;
    m->cached_embedding = emb;
    m->L = L;
    m->D = D;
    *embedding = emb;
    if (m->release_text) release_text_encoder(m);  // another prompt loads it again
    return 0;
}

// ---------------------------------------------------------------------------

void extract_options_default(ExtractOptions *o) {
    memset(o, 0, sizeof(*o));
    o->prompt = "A satellite image";
    ddim_walk_options_default(&o->walk);
    o->n_suffixes = 2;
    o->suffixes[0] = "attn1";
    o->suffixes[1] = "conv2";
}

void feature_pyramid_free(FeaturePyramid *p) {
    if (p->feats)
        for (int i = 0; i < p->n_steps * p->n_scales; i++) tensor_free(&p->feats[i]);
    free(p->feats);
    for (int i = 0; i < p->n_layers; i++) free(p->layer_path[i]);
    if (p->noisy_latents)
        for (int i = 0; i < p->n_noisy; i++) tensor_free(&p->noisy_latents[i]);
    free(p->noisy_latents);
    tensor_free(&p->latent);
    memset(p, 0, sizeof(*p));
}

// The spatial size the modules of up_blocks[i] run at: the size of down
// level n_blocks - 1 - i, each down block's Downsample2D (3x3, stride 2,
// padding 1) mapping n to (n - 1) / 2 + 1.
static void up_block_size(const UNet *u, int i, int h, int w, int *bh, int *bw) {
    int level = u->n_blocks - 1 - i;
    for (int k = 0; k < level; k++)
        if (u->down_blocks[k].has_sampler) {
            h = (h - 1) / 2 + 1;
            w = (w - 1) / 2 + 1;
        }
    *bh = h;
    *bw = w;
}

// The layout of the pyramid: which capture goes to which scale, from the
// first set of captures (collect_layer_dims). Scales sorted by width, largest
// first; within a scale, the capture order.
static int pyramid_layout(const UNet *u, const ModuleCaptures *cap, int h, int w, FeaturePyramid *p) {
    p->n_layers = cap->count;
    if (cap->count > PYRAMID_MAX_LAYERS) return sd_errorf("%d feature layers (at most %d)", cap->count, PYRAMID_MAX_LAYERS);
    int lh[PYRAMID_MAX_LAYERS], lw[PYRAMID_MAX_LAYERS];
    for (int k = 0; k < cap->count; k++) {
        const Tensor *t = &cap->items[k].value;
        const char *path = cap->items[k].path;
        int blk = -1;
        if (sscanf(path, "up_blocks.%d.", &blk) != 1 || blk < 0 || blk >= u->n_blocks)
            return sd_errorf("feature layer '%s' is not in up_blocks", path);
        up_block_size(u, blk, h, w, &lh[k], &lw[k]);
        if (t->ndim == 4) {
            if (t->shape[2] != lh[k] || t->shape[3] != lw[k])
                return sd_errorf("feature layer '%s' is %dx%d, expected %dx%d", path, t->shape[2], t->shape[3], lh[k], lw[k]);
            p->layer_channels[k] = t->shape[1];
        } else if (t->ndim == 3) {
            // attention output (B, h*w, C); the original takes w = sqrt(h*w) (square inputs only)
            if (t->shape[1] != lh[k] * lw[k])
                return sd_errorf("feature layer '%s' has %d positions, expected %dx%d", path, t->shape[1], lh[k], lw[k]);
            p->layer_channels[k] = t->shape[2];
        } else {
            return sd_errorf("feature layer '%s' has %d dims (expected 3 or 4)", path, t->ndim);
        }
        p->layer_path[k] = strdup(path);
        if (!p->layer_path[k]) return sd_errorf("out of memory");
    }
    // distinct widths, descending
    p->n_scales = 0;
    for (int k = 0; k < cap->count; k++) {
        int s = 0;
        while (s < p->n_scales && p->scale_w[s] != lw[k]) s++;
        if (s == p->n_scales) {
            if (p->n_scales == PYRAMID_MAX_SCALES) return sd_errorf("more than %d feature scales", PYRAMID_MAX_SCALES);
            p->scale_w[s] = lw[k];
            p->scale_h[s] = lh[k];
            p->scale_c[s] = 0;
            p->n_scales++;
        } else if (p->scale_h[s] != lh[k]) {
            return sd_errorf("feature layers of width %d have heights %d and %d", lw[k], p->scale_h[s], lh[k]);
        }
    }
    for (int a = 0; a < p->n_scales; a++)
        for (int b = a + 1; b < p->n_scales; b++)
            if (p->scale_w[b] > p->scale_w[a]) {
                int tw = p->scale_w[a], th = p->scale_h[a];
                p->scale_w[a] = p->scale_w[b], p->scale_h[a] = p->scale_h[b];
                p->scale_w[b] = tw, p->scale_h[b] = th;
            }
    for (int k = 0; k < cap->count; k++) {
        int s = 0;
        while (p->scale_w[s] != lw[k]) s++;
        p->layer_scale[k] = s;
        p->scale_c[s] += p->layer_channels[k];
    }
    return 0;
}

static int pyramid_copy_layout(FeaturePyramid *dst, const FeaturePyramid *src) {
    dst->n_layers = src->n_layers;
    dst->n_scales = src->n_scales;
    memcpy(dst->scale_h, src->scale_h, sizeof(dst->scale_h));
    memcpy(dst->scale_w, src->scale_w, sizeof(dst->scale_w));
    memcpy(dst->scale_c, src->scale_c, sizeof(dst->scale_c));
    memcpy(dst->layer_scale, src->layer_scale, sizeof(dst->layer_scale));
    memcpy(dst->layer_channels, src->layer_channels, sizeof(dst->layer_channels));
    for (int k = 0; k < src->n_layers; k++)
        if (!(dst->layer_path[k] = strdup(src->layer_path[k]))) return sd_errorf("out of memory");
    return 0;
}

// Concatenates one save step's captures of batch element b (of captures made at batch B) into its
// scales: feats[slot * n_scales + s] (1, C_s, H_s, W_s).
static int pyramid_fill(FeaturePyramid *p, const ModuleCaptures *cap, int slot, int b) {
    for (int s = 0; s < p->n_scales; s++) {
        Tensor *dst = &p->feats[slot * p->n_scales + s];
        int shape[4] = {1, p->scale_c[s], p->scale_h[s], p->scale_w[s]};
        if (tensor_alloc(dst, 4, shape, "feature pyramid")) return -1;
        int hw = p->scale_h[s] * p->scale_w[s], c0 = 0;
        for (int k = 0; k < p->n_layers; k++) {
            if (p->layer_scale[k] != s) continue;
            const Tensor *t = captures_get(cap, p->layer_path[k]);
            int C = p->layer_channels[k];
            if (!t || !t->data) return sd_errorf("feature layer '%s' was not captured", p->layer_path[k]);
            float *out = dst->data + (int64_t)c0 * hw;
            const float *src = t->data + (int64_t)b * C * hw;  // element b of (B, C, h, w) or (B, h*w, C)
            if (t->ndim == 4) {
                memcpy(out, src, (size_t)C * (size_t)hw * sizeof(float));
            } else {
                // (1, h*w, C) -> (1, C, h, w): reshape(B, h, w, C).permute(0, 3, 1, 2)
                for (int q = 0; q < hw; q++)
                    for (int c = 0; c < C; c++) out[(int64_t)c * hw + q] = src[(int64_t)q * C + c];
            }
            c0 += C;
        }
    }
    return 0;
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
