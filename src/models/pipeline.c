// A diffusers pipeline folder (or a packed model file) loaded as one bundle: UNet, VAE encoder,
// text encoder, tokenizer and DDIM scheduler, and the prompt embedding cached (see pipeline.h).
#include "models/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "core/error.h"
#include "models/pack.h"

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
