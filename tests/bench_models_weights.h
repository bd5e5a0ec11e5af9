// The random full-size models of bench_models.c: their configs, their weight lists in the
// diffusers / transformers state_dict names (with PyTorch's default init scales), and the
// streamed writer of build/bench_models/<model>/{config.json, weights.safetensors}.
// Included once, by tests/bench_models.c (each bench is one program; this keeps that file short).
#ifndef SD_TESTS_BENCH_MODELS_WEIGHTS_H
#define SD_TESTS_BENCH_MODELS_WEIGHTS_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json.h"
#include "io/safetensors.h"

// ---- The weights: (name, shape, init) lists in the diffusers / transformers state_dict names -------

typedef enum { INIT_WEIGHT, INIT_BIAS, INIT_NORM_WEIGHT, INIT_NORM_BIAS, INIT_EMBEDDING } InitKind;

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    InitKind kind;
    int fan_in;
} WeightSpec;

typedef struct {
    WeightSpec *items;
    int n, cap;
    int64_t floats;
} SpecList;

static void spec_add(SpecList *l, InitKind kind, int fan_in, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->items = realloc(l->items, (size_t)l->cap * sizeof(WeightSpec));
        if (!l->items) {
            fprintf(stderr, "bench_models: out of memory\n");
            exit(1);
        }
    }
    WeightSpec *s = &l->items[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof(s->name), fmt, ap);
    va_end(ap);
    s->kind = kind;
    s->fan_in = fan_in;
    s->ndim = ndim;
    s->numel = 1;
    for (int i = 0; i < ndim; i++) s->numel *= (s->shape[i] = shape[i]);
    l->floats += s->numel;
}

static void add_linear(SpecList *l, const char *name, int in, int out, int bias) {
    spec_add(l, INIT_WEIGHT, in, 2, (int64_t[]){out, in}, "%s.weight", name);
    if (bias) spec_add(l, INIT_BIAS, in, 1, (int64_t[]){out}, "%s.bias", name);
}

static void add_conv(SpecList *l, const char *name, int cin, int cout, int k) {
    spec_add(l, INIT_WEIGHT, cin * k * k, 4, (int64_t[]){cout, cin, k, k}, "%s.weight", name);
    spec_add(l, INIT_BIAS, cin * k * k, 1, (int64_t[]){cout}, "%s.bias", name);
}

static void add_norm(SpecList *l, const char *name, int channels) {
    spec_add(l, INIT_NORM_WEIGHT, 0, 1, (int64_t[]){channels}, "%s.weight", name);
    spec_add(l, INIT_NORM_BIAS, 0, 1, (int64_t[]){channels}, "%s.bias", name);
}

// name + "." + leaf in a small static ring (for the add_* calls below).
static const char *sub(const char *name, const char *leaf) {
    static char ring[8][160];
    static int k = 0;
    char *b = ring[k++ & 7];
    size_t n = strlen(name), m = strlen(leaf);
    if (n + 1 + m >= sizeof(ring[0])) n = m = 0;  // never: the names here are short
    memcpy(b, name, n);
    b[n] = '.';
    memcpy(b + n + 1, leaf, m + 1);
    return b;
}

// ResnetBlock2D: norm1, conv1, [time_emb_proj], norm2, conv2, [conv_shortcut when cin != cout].
static void add_resnet(SpecList *l, const char *name, int cin, int cout, int temb) {
    add_norm(l, sub(name, "norm1"), cin);
    add_conv(l, sub(name, "conv1"), cin, cout, 3);
    if (temb) add_linear(l, sub(name, "time_emb_proj"), temb, cout, 1);
    add_norm(l, sub(name, "norm2"), cout);
    add_conv(l, sub(name, "conv2"), cout, cout, 3);
    if (cin != cout) add_conv(l, sub(name, "conv_shortcut"), cin, cout, 1);
}

// Transformer2DModel with linear projections and one BasicTransformerBlock (GEGLU feed-forward).
static void add_transformer(SpecList *l, const char *name, int C, int ctx) {
    char b[160];
    add_norm(l, sub(name, "norm"), C);
    add_linear(l, sub(name, "proj_in"), C, C, 1);
    snprintf(b, sizeof(b), "%s.transformer_blocks.0", name);
    add_norm(l, sub(b, "norm1"), C);
    add_linear(l, sub(b, "attn1.to_q"), C, C, 0);
    add_linear(l, sub(b, "attn1.to_k"), C, C, 0);
    add_linear(l, sub(b, "attn1.to_v"), C, C, 0);
    add_linear(l, sub(b, "attn1.to_out.0"), C, C, 1);
    add_norm(l, sub(b, "norm2"), C);
    add_linear(l, sub(b, "attn2.to_q"), C, C, 0);
    add_linear(l, sub(b, "attn2.to_k"), ctx, C, 0);
    add_linear(l, sub(b, "attn2.to_v"), ctx, C, 0);
    add_linear(l, sub(b, "attn2.to_out.0"), C, C, 1);
    add_norm(l, sub(b, "norm3"), C);
    add_linear(l, sub(b, "ff.net.0.proj"), C, 8 * C, 1);
    add_linear(l, sub(b, "ff.net.2"), 4 * C, C, 1);
    add_linear(l, sub(name, "proj_out"), C, C, 1);
}

// SD 2.1 (stabilityai/stable-diffusion-2-1 unet/config.json); diffusers 0.17 reads attention_head_dim as
// the number of heads: 5, 10, 20, 20 heads of 64 channels.
static const int UNET_C[4] = {320, 640, 1280, 1280};
enum { UNET_BLOCKS = 4, UNET_LAYERS = 2, UNET_CTX = 1024, UNET_TEMB = 1280, UNET_L = 77 };
static const char UNET_CONFIG[] =
    "{\"_class_name\": \"UNet2DConditionModel\", \"act_fn\": \"silu\", \"attention_head_dim\": [5, 10, 20, 20],\n"
    " \"block_out_channels\": [320, 640, 1280, 1280], \"center_input_sample\": false, \"cross_attention_dim\": 1024,\n"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", "
    "\"DownBlock2D\"],\n"
    " \"downsample_padding\": 1, \"dual_cross_attention\": false, \"flip_sin_to_cos\": true, \"freq_shift\": 0,\n"
    " \"in_channels\": 4, \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05,\n"
    " \"norm_num_groups\": 32, \"num_class_embeds\": null, \"only_cross_attention\": false, \"out_channels\": 4,\n"
    " \"sample_size\": 96, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", "
    "\"CrossAttnUpBlock2D\"],\n"
    " \"use_linear_projection\": true, \"upcast_attention\": true}\n";

static void unet_specs(SpecList *l) {
    char b[96];
    add_conv(l, "conv_in", 4, UNET_C[0], 3);
    add_linear(l, "time_embedding.linear_1", UNET_C[0], UNET_TEMB, 1);
    add_linear(l, "time_embedding.linear_2", UNET_TEMB, UNET_TEMB, 1);
    int out = UNET_C[0];
    for (int i = 0; i < UNET_BLOCKS; i++) {
        int in = out;
        out = UNET_C[i];
        for (int j = 0; j < UNET_LAYERS; j++) {
            snprintf(b, sizeof(b), "down_blocks.%d.resnets.%d", i, j);
            add_resnet(l, b, j == 0 ? in : out, out, UNET_TEMB);
            snprintf(b, sizeof(b), "down_blocks.%d.attentions.%d", i, j);
            if (i < UNET_BLOCKS - 1) add_transformer(l, b, out, UNET_CTX);
        }
        snprintf(b, sizeof(b), "down_blocks.%d.downsamplers.0.conv", i);
        if (i < UNET_BLOCKS - 1) add_conv(l, b, out, out, 3);
    }
    const int CL = UNET_C[UNET_BLOCKS - 1];
    add_resnet(l, "mid_block.resnets.0", CL, CL, UNET_TEMB);
    add_transformer(l, "mid_block.attentions.0", CL, UNET_CTX);
    add_resnet(l, "mid_block.resnets.1", CL, CL, UNET_TEMB);
    out = CL;
    for (int i = 0; i < UNET_BLOCKS; i++) {
        int r = UNET_BLOCKS - 1 - i, prev = out;
        out = UNET_C[r];
        int in = UNET_C[r > 0 ? r - 1 : 0];
        for (int j = 0; j < UNET_LAYERS + 1; j++) {
            int skip = j == UNET_LAYERS ? in : out;
            snprintf(b, sizeof(b), "up_blocks.%d.resnets.%d", i, j);
            add_resnet(l, b, (j == 0 ? prev : out) + skip, out, UNET_TEMB);
            snprintf(b, sizeof(b), "up_blocks.%d.attentions.%d", i, j);
            if (i > 0) add_transformer(l, b, out, UNET_CTX);
        }
        snprintf(b, sizeof(b), "up_blocks.%d.upsamplers.0.conv", i);
        if (i < UNET_BLOCKS - 1) add_conv(l, b, out, out, 3);
    }
    add_norm(l, "conv_norm_out", UNET_C[0]);
    add_conv(l, "conv_out", UNET_C[0], 4, 3);
}

// SD's AutoencoderKL (encoder half and quant_conv; the decoder is not needed by the extractor).
static const int VAE_C[4] = {128, 256, 512, 512};
static const char VAE_CONFIG[] =
    "{\"_class_name\": \"AutoencoderKL\", \"act_fn\": \"silu\", \"block_out_channels\": [128, 256, 512, 512],\n"
    " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
    "\"DownEncoderBlock2D\"],\n"
    " \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32,\n"
    " \"out_channels\": 3, \"sample_size\": 768, \"scaling_factor\": 0.18215,\n"
    " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}\n";

static void vae_specs(SpecList *l) {
    char b[96];
    add_conv(l, "encoder.conv_in", 3, VAE_C[0], 3);
    int out = VAE_C[0];
    for (int i = 0; i < 4; i++) {
        int in = out;
        out = VAE_C[i];
        for (int j = 0; j < 2; j++) {
            snprintf(b, sizeof(b), "encoder.down_blocks.%d.resnets.%d", i, j);
            add_resnet(l, b, j == 0 ? in : out, out, 0);
        }
        snprintf(b, sizeof(b), "encoder.down_blocks.%d.downsamplers.0.conv", i);
        if (i < 3) add_conv(l, b, out, out, 3);
    }
    add_resnet(l, "encoder.mid_block.resnets.0", 512, 512, 0);
    add_norm(l, "encoder.mid_block.attentions.0.group_norm", 512);
    add_linear(l, "encoder.mid_block.attentions.0.to_q", 512, 512, 1);
    add_linear(l, "encoder.mid_block.attentions.0.to_k", 512, 512, 1);
    add_linear(l, "encoder.mid_block.attentions.0.to_v", 512, 512, 1);
    add_linear(l, "encoder.mid_block.attentions.0.to_out.0", 512, 512, 1);
    add_resnet(l, "encoder.mid_block.resnets.1", 512, 512, 0);
    add_norm(l, "encoder.conv_norm_out", 512);
    add_conv(l, "encoder.conv_out", 512, 8, 3);
    add_conv(l, "quant_conv", 8, 8, 1);
}

// OpenCLIP ViT-H/14 text tower as SD 2.x ships it (23 layers: the last one is dropped).
enum { CLIP_VOCAB = 49408, CLIP_D = 1024, CLIP_MLP = 4096, CLIP_LAYERS = 23, CLIP_HEADS = 16, CLIP_L = 77 };
static const char CLIP_CONFIG[] =
    "{\"architectures\": [\"CLIPTextModel\"], \"hidden_act\": \"gelu\", \"hidden_size\": 1024,\n"
    " \"intermediate_size\": 4096, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77,\n"
    " \"num_attention_heads\": 16, \"num_hidden_layers\": 23, \"projection_dim\": 512, \"vocab_size\": 49408}\n";

static void clip_specs(SpecList *l) {
    char b[96];
    spec_add(l, INIT_EMBEDDING, 0, 2, (int64_t[]){CLIP_VOCAB, CLIP_D}, "text_model.embeddings.token_embedding.weight");
    spec_add(l, INIT_EMBEDDING, 0, 2, (int64_t[]){CLIP_L, CLIP_D}, "text_model.embeddings.position_embedding.weight");
    for (int i = 0; i < CLIP_LAYERS; i++) {
        snprintf(b, sizeof(b), "text_model.encoder.layers.%d", i);
        add_norm(l, sub(b, "layer_norm1"), CLIP_D);
        add_linear(l, sub(b, "self_attn.q_proj"), CLIP_D, CLIP_D, 1);
        add_linear(l, sub(b, "self_attn.k_proj"), CLIP_D, CLIP_D, 1);
        add_linear(l, sub(b, "self_attn.v_proj"), CLIP_D, CLIP_D, 1);
        add_linear(l, sub(b, "self_attn.out_proj"), CLIP_D, CLIP_D, 1);
        add_norm(l, sub(b, "layer_norm2"), CLIP_D);
        add_linear(l, sub(b, "mlp.fc1"), CLIP_D, CLIP_MLP, 1);
        add_linear(l, sub(b, "mlp.fc2"), CLIP_MLP, CLIP_D, 1);
    }
    add_norm(l, "text_model.final_layer_norm", CLIP_D);
}

// ---- Writing the random weights file (streamed: never the whole model in memory) ------------------

#define WEIGHTS_SEED 20250601u
#define WEIGHTS_STAMP "bench_models v1 seed 20250601"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [-1, 1).
static float uniform_pm1(uint64_t *s) { return (float)(splitmix64(s) >> 40) * (1.0f / 8388608.0f) - 1.0f; }

// Values like PyTorch's default init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear,
// nn.Conv2d), norm weights 1 + U(-0.1, 0.1), norm biases U(-0.1, 0.1), embeddings of std 0.02. Each
// tensor's stream is seeded by its name, so the values do not depend on the order of the list.
static void fill_values(const WeightSpec *s, int64_t offset, float *dst, int64_t n, uint64_t *state) {
    if (offset == 0) {
        uint64_t h = 1469598103934665603ull ^ WEIGHTS_SEED;  // FNV-1a of the name
        for (const char *c = s->name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        *state = h;
    }
    float bound = s->fan_in > 0 ? 1.0f / sqrtf((float)s->fan_in) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float u = uniform_pm1(state);
        switch (s->kind) {
        case INIT_WEIGHT:
        case INIT_BIAS: dst[i] = u * bound; break;
        case INIT_NORM_WEIGHT: dst[i] = 1.0f + 0.1f * u; break;
        case INIT_NORM_BIAS: dst[i] = 0.1f * u; break;
        case INIT_EMBEDDING: dst[i] = 0.0346f * u; break;  // std 0.02 = 0.0346 / sqrt(3)
        }
    }
}

// The safetensors header: {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
// "__metadata__": {"generator": STAMP}}, padded with spaces to a multiple of 8 bytes.
static char *make_header(const SpecList *l, size_t *len) {
    size_t cap = (size_t)l->n * 256 + 256, n = 0;
    char *h = malloc(cap);
    if (!h) return NULL;
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"generator\":\"%s\"}", WEIGHTS_STAMP);
    int64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const WeightSpec *s = &l->items[i];
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", s->name);
        for (int d = 0; d < s->ndim; d++) n += (size_t)snprintf(h + n, cap - n, d ? ",%lld" : "%lld", (long long)s->shape[d]);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%lld,%lld]}", (long long)off,
                              (long long)(off + 4 * s->numel));
        off += 4 * s->numel;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8) h[n++] = ' ';
    *len = n;
    return h;
}

static int write_weights(const char *path, const SpecList *l) {
    char tmp[480];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    size_t hlen = 0;
    char *header = make_header(l, &hlen);
    float *buf = malloc((size_t)1 << 22);
    FILE *f = fopen(tmp, "wb");
    int ok = header && buf && f;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));  // little-endian u64
    ok = ok && fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    const int64_t chunk = ((int64_t)1 << 22) / 4;
    for (int i = 0; ok && i < l->n; i++) {
        uint64_t state = 0;
        for (int64_t o = 0; ok && o < l->items[i].numel; o += chunk) {
            int64_t m = l->items[i].numel - o < chunk ? l->items[i].numel - o : chunk;
            fill_values(&l->items[i], o, buf, m, &state);
            ok = fwrite(buf, sizeof(float), (size_t)m, f) == (size_t)m;
        }
    }
    if (f && fclose(f) != 0) ok = 0;
    free(header);
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "bench_models: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

typedef struct {
    const char *key;     // folder name in the cache
    const char *config;  // config.json text
    void (*specs)(SpecList *l);
    char dir[384], config_path[448], weights_path[448];
    double bytes;        // weights file data size
    int ready;           // 1: files present, 0: not yet, -1: skipped (no room)
    char why[1024];
} ModelFiles;

static ModelFiles g_unet = {"unet_sd21", UNET_CONFIG, unet_specs, "", "", "", 0, 0, ""};
static ModelFiles g_vae = {"vae_sd", VAE_CONFIG, vae_specs, "", "", "", 0, 0, ""};
static ModelFiles g_clip = {"text_openclip_h", CLIP_CONFIG, clip_specs, "", "", "", 0, 0, ""};

static int mkdirs(const char *path) {
    char p[512];
    snprintf(p, sizeof(p), "%s", path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
            *c = '/';
        }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

// Makes sure the model's config and weights exist in the cache (writing them once), or says why not.
static int prepare_model(ModelFiles *m, const char *cache) {
    if (m->ready) return m->ready > 0 ? 0 : -1;
    snprintf(m->dir, sizeof(m->dir), "%s/%s", cache, m->key);
    snprintf(m->config_path, sizeof(m->config_path), "%s/config.json", m->dir);
    snprintf(m->weights_path, sizeof(m->weights_path), "%s/weights.safetensors", m->dir);
    SpecList l = {0};
    m->specs(&l);
    m->bytes = 4.0 * (double)l.floats;
    int rc = -1;
    if (mkdirs(m->dir) != 0 || write_text(m->config_path, m->config) != 0) {
        snprintf(m->why, sizeof(m->why), "cannot write %s: %s", m->config_path, strerror(errno));
        goto done;
    }
    SafeTensors st;
    if (st_open(&st, m->weights_path) == 0) {
        const char *stamp = st_metadata(&st, "generator");
        int same = stamp && strcmp(stamp, WEIGHTS_STAMP) == 0 && st.count == l.n;
        st_close(&st);
        if (same) {
            printf("%s: reusing %s (%.2f GB)\n", m->key, m->weights_path, m->bytes * 1e-9);
            rc = 0;
            goto done;
        }
    }
    sd_clear_error();
    struct statvfs vfs;
    double free_bytes = statvfs(m->dir, &vfs) == 0 ? (double)vfs.f_bavail * (double)vfs.f_frsize : 0.0;
    if (free_bytes < m->bytes + 512e6) {
        snprintf(m->why, sizeof(m->why), "not enough free disk in %s for its random weights: %.2f GB free, %.2f GB needed",
                 m->dir, free_bytes * 1e-9, (m->bytes + 512e6) * 1e-9);
        goto done;
    }
    printf("%s: writing %d random tensors (%.2f GB) to %s ...\n", m->key, l.n, m->bytes * 1e-9, m->weights_path);
    fflush(stdout);
    double t0 = sd_now();
    if (write_weights(m->weights_path, &l) != 0) {
        snprintf(m->why, sizeof(m->why), "could not write %s (see above)", m->weights_path);
        goto done;
    }
    printf("%s: written in %.1f s\n", m->key, sd_now() - t0);
    rc = 0;
done:
    free(l.items);
    m->ready = rc == 0 ? 1 : -1;
    return rc;
}

#endif
