// Converting a single-file Stable Diffusion checkpoint (LDM/CompVis layout) into a diffusers
// pipeline folder (see convert.h). The name mapping is ldm_plan.c. This file writes the folder: the
// weights of each part (streamed tensor by tensor from the mapped checkpoint, so memory stays small),
// the config files (copied from --config-from DIR, or built from the tensor shapes with SD 1.x/2.x
// defaults), the scheduler, model_index.json and the tokenizer files. Everything goes to
// OUT.tmp.<pid> first; the folder is loaded back with the real loaders, then renamed to OUT. A
// stopped or failed conversion leaves no OUT and no temporary folder.
#include "convert/convert.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json.h"
#include "io/torch_file.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"

static int should_stop(const ConvertOptions *o) { return o->should_stop && o->should_stop(o->ctx); }

// ---------------------------------------------------------------------------
// Files.

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// buf = a/b, or an error when it does not fit.
static int path_join(char *buf, size_t size, const char *a, const char *b) {
    int n = snprintf(buf, size, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= size) return sd_errorf("%s/%s: path too long", a, b);
    return 0;
}

// rm -r of a folder this conversion created.
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[CONVERT_PATH_LEN];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (path_join(p, sizeof(p), dir, e->d_name)) continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    return 0;
}

static int close_file(FILE *f, const char *path, int ok) {
    ok = fflush(f) == 0 && ok;
    ok = (fsync(fileno(f)) == 0 || errno == EINVAL) && ok;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : sd_errorf("%s: write failed: %s", path, strerror(errno));
}

static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return sd_errorf("%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return sd_errorf("%s: cannot create: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (ferror(in)) ok = 0;
    fclose(in);
    return close_file(out, dst, ok);
}

// ---------------------------------------------------------------------------
// The weights of one part as a safetensors file, written tensor by tensor. Names sorted, header
// {"name":{"dtype":..,"shape":[..],"data_offsets":[a,b]},...,"__metadata__":{"format":"pt"}}
// padded with spaces to 8 bytes, as the safetensors library writes it.

static DType output_dtype(const LdmTensor *t, ConvertDtype mode) {
    if (mode == CONVERT_DTYPE_F32) return DT_F32;
    if (mode == CONVERT_DTYPE_F16) return DT_F16;
    return t->src->dtype == DT_F16 ? DT_F16 : DT_F32;  // bf16 widens exactly; f64 is rounded to f32
}

typedef struct {
    char *s;
    size_t n, cap;
} Text;

static int text_add(Text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int text_add(Text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (len < 0) return sd_errorf("formatting failed");
        if (t->s && t->n + (size_t)len < t->cap) {
            t->n += (size_t)len;
            return 0;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->n + (size_t)len + 1) cap *= 2;
        char *p = (char *)realloc(t->s, cap);
        if (!p) return sd_errorf("out of memory");
        t->s = p;
        t->cap = cap;
    }
}

static int write_weights(const char *path, const LdmPlan *plan, LdmPart part, const ConvertOptions *o,
                         int *stopped) {
    const ConvertDtype mode = o->dtype;
    int first = -1, last = -1;  // the plan is sorted by part, then name
    for (int i = 0; i < plan->count; i++)
        if (plan->tensors[i].part == part) {
            if (first < 0) first = i;
            last = i;
        }
    if (first < 0) return sd_errorf("%s: no tensors for %s", path, ldm_part_folder[part]);
    Text h = {0};
    size_t offset = 0;
    int fail = text_add(&h, "{");
    for (int i = first; i <= last && !fail; i++) {
        const LdmTensor *t = &plan->tensors[i];
        DType dt = output_dtype(t, mode);
        size_t bytes = (size_t)t->numel * (size_t)dtype_size(dt);
        char quoted[2 * LDM_NAME_MAX + 8];
        json_escape(t->name, quoted, sizeof(quoted));
        fail |= text_add(&h, "%s%s:{\"dtype\":\"%s\",\"shape\":[", i > first ? "," : "", quoted, dtype_name(dt));
        for (int d = 0; d < t->ndim; d++) fail |= text_add(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        fail |= text_add(&h, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        offset += bytes;
    }
    fail |= text_add(&h, ",\"__metadata__\":{\"format\":\"pt\"}}");
    while (!fail && h.n % 8 != 0) fail |= text_add(&h, " ");
    if (fail) {
        free(h.s);
        return SD_FAIL;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h.s);
        return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)h.n >> (8 * i)) & 0xFF);
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.s, 1, h.n, f) == h.n;
    free(h.s);
    enum { CHUNK = 1 << 16 };
    float *buf = (float *)malloc(CHUNK * sizeof(float));
    if (!buf) ok = 0;
    for (int i = first; i <= last && ok && !(*stopped = should_stop(o)); i++) {
        const LdmTensor *t = &plan->tensors[i];
        DType dt = output_dtype(t, mode);
        for (int64_t k = 0; k < t->numel && ok && !(*stopped = should_stop(o)); k += CHUNK) {
            int64_t n = t->numel - k < CHUNK ? t->numel - k : CHUNK;
            if (ldm_tensor_read(t, k, n, dt, buf)) {
                free(buf);
                fclose(f);
                return sd_error_context("%s", path);
            }
            ok = fwrite(buf, (size_t)dtype_size(dt), (size_t)n, f) == (size_t)n;
        }
        if (ok && !*stopped && o->on_tensor) o->on_tensor(o->ctx);  // a whole tensor written
    }
    free(buf);
    if (*stopped || (*stopped = should_stop(o))) {
        fclose(f);
        return SD_FAIL;
    }
    return close_file(f, path, ok);
}

// ---------------------------------------------------------------------------
// Config files built from the shapes: the values diffusers 0.17 / transformers 4.31 write for
// Stable Diffusion (stabilityai/stable-diffusion-2-1, runwayml/stable-diffusion-v1-5).

// "key": [ints] or [strings], one item a line (json.dump(indent=2) style); `more`: a key follows.
static void json_ints(FILE *f, const char *key, const int *v, int n, int more) {
    fprintf(f, "  \"%s\": [", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n    %d", i ? "," : "", v[i]);
    fprintf(f, "\n  ]%s\n", more ? "," : "");
}

static void json_names(FILE *f, const char *key, const char *const *v, int n, int more) {
    fprintf(f, "  \"%s\": [", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n    \"%s\"", i ? "," : "", v[i]);
    fprintf(f, "\n  ]%s\n", more ? "," : "");
}

static int groups_fit(const int *widths, int n, int groups) {
    for (int i = 0; i < n; i++)
        if (widths[i] % groups != 0) return 0;
    return 1;
}

static int write_unet_config(const char *path, const LdmShapes *s, int image_size) {
    const int n = s->unet_levels;
    if (!groups_fit(s->block_out_channels, n, 32))
        return sd_errorf(
            "the UNet's widths are not multiples of SD's 32 GroupNorm groups: cannot guess its config, "
            "give --config-from DIR (a diffusers folder of this model)");
    int heads[LDM_MAX_LEVELS];
    const char *down[LDM_MAX_LEVELS], *up[LDM_MAX_LEVELS];
    for (int l = 0; l < n; l++) {
        heads[l] = ldm_default_heads(s->cross_attention_dim, s->block_out_channels[l]);
        down[l] = s->down_attention[l] ? "CrossAttnDownBlock2D" : "DownBlock2D";
        up[l] = s->up_attention[l] ? "CrossAttnUpBlock2D" : "UpBlock2D";
    }
    FILE *f = fopen(path, "w");
    if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.17.0\",\n");
    fprintf(f, "  \"act_fn\": \"silu\",\n");
    json_ints(f, "attention_head_dim", heads, n, 1);  // diffusers 0.17: the number of heads
    json_ints(f, "block_out_channels", s->block_out_channels, n, 1);
    fprintf(f, "  \"center_input_sample\": false,\n  \"cross_attention_dim\": %d,\n", s->cross_attention_dim);
    json_names(f, "down_block_types", down, n, 1);
    fprintf(f, "  \"downsample_padding\": 1,\n  \"dual_cross_attention\": false,\n  \"flip_sin_to_cos\": true,\n");
    fprintf(f, "  \"freq_shift\": 0,\n  \"in_channels\": %d,\n  \"layers_per_block\": %d,\n", s->in_channels,
            s->layers_per_block);
    fprintf(f, "  \"mid_block_scale_factor\": 1,\n  \"mid_block_type\": \"UNetMidBlock2DCrossAttn\",\n");
    fprintf(f, "  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n");
    fprintf(f, "  \"only_cross_attention\": false,\n  \"out_channels\": %d,\n", s->out_channels);
    fprintf(f, "  \"resnet_time_scale_shift\": \"default\",\n  \"sample_size\": %d,\n", image_size / 8);
    if (s->time_embed_dim != 4 * s->block_out_channels[0])
        fprintf(f, "  \"time_embedding_dim\": %d,\n", s->time_embed_dim);
    if (s->transformer_depth > 1) fprintf(f, "  \"transformer_layers_per_block\": %d,\n", s->transformer_depth);
    json_names(f, "up_block_types", up, n, 1);
    // SD 2.1 needs float32 attention in half precision (diffusers sets it for 2.1); it never hurts.
    fprintf(f, "  \"upcast_attention\": %s,\n", s->cross_attention_dim == 1024 ? "true" : "false");
    fprintf(f, "  \"use_linear_projection\": %s\n}\n", s->use_linear_projection ? "true" : "false");
    return close_file(f, path, !ferror(f));
}

static int write_vae_config(const char *path, const LdmShapes *s, int image_size) {
    const int n = s->vae_levels;
    if (!groups_fit(s->vae_block_out_channels, n, 32))
        return sd_errorf(
            "the VAE's widths are not multiples of SD's 32 GroupNorm groups: cannot guess its config, "
            "give --config-from DIR (a diffusers folder of this model)");
    const char *down[LDM_MAX_LEVELS], *up[LDM_MAX_LEVELS];
    for (int l = 0; l < n; l++) down[l] = "DownEncoderBlock2D", up[l] = "UpDecoderBlock2D";
    FILE *f = fopen(path, "w");
    if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.17.0\",\n");
    fprintf(f, "  \"act_fn\": \"silu\",\n");
    json_ints(f, "block_out_channels", s->vae_block_out_channels, n, 1);
    json_names(f, "down_block_types", down, n, 1);
    fprintf(f, "  \"in_channels\": %d,\n  \"latent_channels\": %d,\n  \"layers_per_block\": %d,\n", s->vae_in_channels,
            s->latent_channels, s->vae_layers_per_block);
    fprintf(f, "  \"norm_num_groups\": 32,\n  \"out_channels\": %d,\n  \"sample_size\": %d,\n", s->vae_out_channels,
            image_size);
    fprintf(f, "  \"scaling_factor\": 0.18215,\n");
    json_names(f, "up_block_types", up, n, 0);
    fprintf(f, "}\n");
    return close_file(f, path, !ferror(f));
}

static int write_text_config(const char *path, const LdmShapes *s, int f16) {
    if (s->hidden_size % 64 != 0)
        return sd_errorf(
            "text encoder hidden_size %d: not a multiple of the 64-wide heads of CLIP / OpenCLIP, cannot "
            "guess num_attention_heads: give --config-from DIR (a diffusers folder of this model)",
            s->hidden_size);
    int openclip = s->text_kind == LDM_TEXT_OPENCLIP;
    FILE *f = fopen(path, "w");
    if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n  \"architectures\": [\n    \"CLIPTextModel\"\n  ],\n  \"attention_dropout\": 0.0,\n");
    fprintf(f, "  \"bos_token_id\": 0,\n  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n");
    fprintf(f, "  \"hidden_act\": \"%s\",\n",
            openclip ? "gelu" : "quick_gelu");  // OpenCLIP-H: GELU; CLIP-L: x*sigmoid(1.702x)
    fprintf(f, "  \"hidden_size\": %d,\n  \"initializer_factor\": 1.0,\n  \"initializer_range\": 0.02,\n",
            s->hidden_size);
    fprintf(f, "  \"intermediate_size\": %d,\n  \"layer_norm_eps\": 1e-05,\n", s->intermediate_size);
    fprintf(f, "  \"max_position_embeddings\": %d,\n  \"model_type\": \"clip_text_model\",\n",
            s->max_position_embeddings);
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n", s->hidden_size / 64,
            s->num_hidden_layers);
    fprintf(f, "  \"pad_token_id\": 1,\n  \"projection_dim\": %d,\n  \"torch_dtype\": \"%s\",\n", s->projection_dim,
            f16 ? "float16" : "float32");
    fprintf(f, "  \"transformers_version\": \"4.31.0\",\n  \"vocab_size\": %d\n}\n", s->vocab_size);
    return close_file(f, path, !ferror(f));
}

// The checkpoint's `betas` buffer, when there, gives T, beta_start and beta_end; *worst: its largest
// relative deviation from the scaled_linear schedule betas = linspace(sqrt(start), sqrt(end), T)^2.
static int read_betas(const SafeTensors *st, ConvertJob *j) {
    j->beta_start = 0.00085, j->beta_end = 0.012, j->train_steps = 1000, j->betas_error = 0;
    const StEntry *e = st_find(st, "betas");
    if (!e || e->ndim != 1 || e->numel < 2 || e->numel > 100000) return 0;
    float *b = (float *)malloc((size_t)e->numel * sizeof(float));
    if (!b) return sd_errorf("out of memory");
    if (st_entry_to_f32(e, b)) {
        free(b);
        return SD_FAIL;
    }
    int T = (int)e->numel;
    double start = b[0], end = b[T - 1], worst = 0;
    for (int i = 0; i < T; i++) {
        double r = sqrt(start) + (sqrt(end) - sqrt(start)) * i / (T - 1);
        double err = fabs(b[i] - r * r) / (r * r);
        if (err > worst) worst = err;
    }
    free(b);
    j->train_steps = T, j->beta_start = start, j->beta_end = end, j->betas_error = worst;
    return 0;
}

// SD's DDIM settings (stabilityai/stable-diffusion-2-1 scheduler_config.json), with the schedule of
// the checkpoint's betas (read_betas).
static int write_scheduler_config(const char *path, const ConvertJob *j, const char *prediction) {
    const double start = j->beta_start, end = j->beta_end;
    const int T = j->train_steps;
    FILE *f = fopen(path, "w");
    if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"_diffusers_version\": \"0.17.0\",\n");
    fprintf(f, "  \"beta_end\": %.7g,\n  \"beta_schedule\": \"scaled_linear\",\n  \"beta_start\": %.7g,\n", end, start);
    fprintf(f, "  \"clip_sample\": false,\n  \"clip_sample_range\": 1.0,\n  \"dynamic_thresholding_ratio\": 0.995,\n");
    fprintf(f, "  \"num_train_timesteps\": %d,\n  \"prediction_type\": \"%s\",\n", T, prediction);
    fprintf(f, "  \"rescale_betas_zero_snr\": false,\n  \"sample_max_value\": 1.0,\n  \"set_alpha_to_one\": false,\n");
    fprintf(f, "  \"skip_prk_steps\": true,\n  \"steps_offset\": 1,\n  \"thresholding\": false,\n");
    fprintf(f, "  \"timestep_spacing\": \"leading\",\n  \"trained_betas\": null\n}\n");
    return close_file(f, path, !ferror(f));
}

static int write_model_index(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
    fprintf(f,
            "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": \"0.17.0\",\n"
            "  \"feature_extractor\": [\n    null,\n    null\n  ],\n  \"requires_safety_checker\": false,\n"
            "  \"safety_checker\": [\n    null,\n    null\n  ],\n"
            "  \"scheduler\": [\n    \"diffusers\",\n    \"DDIMScheduler\"\n  ],\n"
            "  \"text_encoder\": [\n    \"transformers\",\n    \"CLIPTextModel\"\n  ],\n"
            "  \"tokenizer\": [\n    \"transformers\",\n    \"CLIPTokenizer\"\n  ],\n"
            "  \"unet\": [\n    \"diffusers\",\n    \"UNet2DConditionModel\"\n  ],\n"
            "  \"vae\": [\n    \"diffusers\",\n    \"AutoencoderKL\"\n  ]\n}\n");
    return close_file(f, path, !ferror(f));
}

// The tokenizer's settings: SD 2.x pads with "!" (OpenCLIP's tokenizer pads with id 0), SD 1.x
// with the end token. The BPE vocabulary itself (vocab.json, merges.txt) is not in a checkpoint.
static int write_tokenizer_settings(const char *dir, int openclip, int config_too, int map_too) {
    char path[CONVERT_PATH_LEN];
    const char *pad = openclip ? "!" : "<|endoftext|>";
    if (config_too) {
        if (path_join(path, sizeof(path), dir, "tokenizer_config.json")) return SD_FAIL;
        FILE *f = fopen(path, "w");
        if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
        fprintf(f,
                "{\n  \"add_prefix_space\": false,\n  \"bos_token\": \"<|startoftext|>\",\n  \"do_lower_case\": true,\n"
                "  \"eos_token\": \"<|endoftext|>\",\n  \"errors\": \"replace\",\n  \"model_max_length\": 77,\n"
                "  \"pad_token\": \"%s\",\n  \"tokenizer_class\": \"CLIPTokenizer\",\n"
                "  \"unk_token\": \"<|endoftext|>\"\n}\n",
                pad);
        if (close_file(f, path, !ferror(f))) return SD_FAIL;
    }
    if (map_too) {
        if (path_join(path, sizeof(path), dir, "special_tokens_map.json")) return SD_FAIL;
        FILE *f = fopen(path, "w");
        if (!f) return sd_errorf("%s: cannot create: %s", path, strerror(errno));
        fprintf(f,
                "{\n  \"bos_token\": \"<|startoftext|>\",\n  \"eos_token\": \"<|endoftext|>\",\n"
                "  \"pad_token\": \"%s\",\n  \"unk_token\": \"<|endoftext|>\"\n}\n",
                pad);
        if (close_file(f, path, !ferror(f))) return SD_FAIL;
    }
    return 0;
}

// Copies the tokenizer from `src` (NULL: none), else writes its settings only. *complete: 1 when
// vocab.json and merges.txt are there.
static int write_tokenizer(const char *dir, const char *src, int openclip, int *complete) {
    char a[CONVERT_PATH_LEN], b[CONVERT_PATH_LEN];
    *complete = 0;
    if (make_dir(dir)) return SD_FAIL;
    int have_config = 0, have_map = 0;
    if (src) {
        static const char *const needed[2] = {"vocab.json", "merges.txt"};
        for (int i = 0; i < 2; i++) {
            if (path_join(a, sizeof(a), src, needed[i]) || path_join(b, sizeof(b), dir, needed[i])) return SD_FAIL;
            if (!is_file(a)) return sd_errorf("%s: missing (a tokenizer folder has vocab.json and merges.txt)", a);
            if (copy_file(a, b)) return SD_FAIL;
        }
        static const char *const settings[2] = {"tokenizer_config.json", "special_tokens_map.json"};
        for (int i = 0; i < 2; i++) {
            if (path_join(a, sizeof(a), src, settings[i]) || path_join(b, sizeof(b), dir, settings[i])) return SD_FAIL;
            if (!is_file(a)) continue;
            if (copy_file(a, b)) return SD_FAIL;
            *(i == 0 ? &have_config : &have_map) = 1;
        }
        *complete = 1;
    }
    return write_tokenizer_settings(dir, openclip, !have_config, !have_map);
}

// ---------------------------------------------------------------------------
// --config-from: the configs of an existing diffusers folder, checked against the checkpoint.

static int check_int(const char *path, const JsonValue *cfg, const char *key, int want) {
    int v;
    if (json_get_int(cfg, key, want, &v)) return sd_error_context("%s", path);
    if (v != want) return sd_errorf("%s: '%s' is %d, the checkpoint's tensors say %d", path, key, v, want);
    return 0;
}

static int check_ints(const char *path, const JsonValue *cfg, const char *key, const int *want, int n) {
    int v[LDM_MAX_LEVELS];
    if (!json_get(cfg, key)) return 0;
    if (json_get_int_list(cfg, key, n, v)) return sd_error_context("%s (the checkpoint has %d levels)", path, n);
    for (int i = 0; i < n; i++)
        if (v[i] != want[i])
            return sd_errorf("%s: '%s'[%d] is %d, the checkpoint's tensors say %d", path, key, i, v[i], want[i]);
    return 0;
}

static int check_config(const char *path, const JsonValue *cfg, LdmPart part, const LdmShapes *s) {
    if (part == LDM_UNET) {
        int lin;
        if (check_ints(path, cfg, "block_out_channels", s->block_out_channels, s->unet_levels) ||
            check_int(path, cfg, "layers_per_block", s->layers_per_block) ||
            check_int(path, cfg, "in_channels", s->in_channels) ||
            check_int(path, cfg, "out_channels", s->out_channels))
            return SD_FAIL;
        const JsonValue *c = json_get(cfg, "cross_attention_dim");
        if (c && c->type == JSON_NUMBER && check_int(path, cfg, "cross_attention_dim", s->cross_attention_dim))
            return SD_FAIL;
        if (json_get_bool(cfg, "use_linear_projection", 0, &lin)) return sd_error_context("%s", path);
        if (lin != s->use_linear_projection)
            return sd_errorf("%s: 'use_linear_projection' is %s, but proj_in is a %s in the checkpoint", path,
                             lin ? "true" : "false",
                             s->use_linear_projection ? "linear (SD 2.x)" : "1x1 conv (SD 1.x)");
        return 0;
    }
    if (part == LDM_VAE)
        return check_ints(path, cfg, "block_out_channels", s->vae_block_out_channels, s->vae_levels) ||
                       check_int(path, cfg, "layers_per_block", s->vae_layers_per_block) ||
                       check_int(path, cfg, "latent_channels", s->latent_channels) ||
                       check_int(path, cfg, "in_channels", s->vae_in_channels)
                   ? SD_FAIL
                   : 0;
    return check_int(path, cfg, "hidden_size", s->hidden_size) ||
                   check_int(path, cfg, "intermediate_size", s->intermediate_size) ||
                   check_int(path, cfg, "vocab_size", s->vocab_size) ||
                   check_int(path, cfg, "max_position_embeddings", s->max_position_embeddings)
               ? SD_FAIL
               : 0;
}

// ---------------------------------------------------------------------------
// The converted folder, loaded back with the loaders `satdifuser extract` uses.

static int verify_pipeline(const char *dir) {
    char sub[CONVERT_PATH_LEN], cpath[CONVERT_PATH_LEN], wpath[CONVERT_PATH_LEN];
    int rc = SD_FAIL, cross = 0, hidden = 0;
    for (int part = 0; part < LDM_PARTS; part++) {
        if (path_join(sub, sizeof(sub), dir, ldm_part_folder[part]) ||
            path_join(cpath, sizeof(cpath), sub, "config.json") ||
            path_join(wpath, sizeof(wpath), sub, ldm_part_file[part]))
            return SD_FAIL;
        JsonValue cfg;
        SafeTensors st;
        if (json_parse_file(cpath, &cfg)) return SD_FAIL;
        if (st_open(&st, wpath)) {
            json_free(&cfg);
            return SD_FAIL;
        }
        if (part == LDM_UNET) {
            UNet u;
            rc = unet_load(&u, &cfg, &st, "", -1);
            if (!rc) cross = u.cross_attention_dim[0], unet_free(&u);
        } else if (part == LDM_VAE) {
            VaeEncoder v;
            rc = vae_encoder_load(&v, &cfg, &st, "");
            if (!rc) vae_encoder_free(&v);
        } else {
            ClipTextConfig tc;
            ClipTextModel m;
            rc = clip_text_config_from_json(&cfg, &tc);
            if (!rc) rc = clip_text_load(&m, &tc, &st, NULL);
            if (!rc) hidden = tc.hidden_size, clip_text_free(&m);
        }
        st_close(&st);
        json_free(&cfg);
        if (rc) return sd_error_context("the converted %s does not load", ldm_part_folder[part]);
    }
    if (hidden != cross)
        return sd_errorf("the converted text encoder's hidden_size %d differs from the UNet's cross_attention_dim %d",
                         hidden, cross);
    return 0;
}

// ---------------------------------------------------------------------------
// Loads DIR/<sub>/<file> when --config-from has it (*have = 1).
static int load_config_from(const char *dir, const char *sub, const char *file, JsonValue *cfg, int *have, char *path,
                            size_t size) {
    *have = 0;
    if (!dir) return 0;
    char folder[CONVERT_PATH_LEN];
    if (*sub ? path_join(folder, sizeof(folder), dir, sub) || path_join(path, size, folder, file)
             : path_join(path, size, dir, file))
        return SD_FAIL;
    if (!is_file(path)) return 0;
    if (json_parse_file(path, cfg)) return SD_FAIL;
    *have = 1;
    return 0;
}

// ---------------------------------------------------------------------------
// The conversion.

void convert_options_default(ConvertOptions *o) {
    memset(o, 0, sizeof(*o));
    o->prediction = "epsilon";
    o->verify = 1;
    o->image_size = 512;
}

static const char *const cfg_sub[LDM_PARTS + 2] = {"unet", "vae", "text_encoder", "scheduler", ""};
static const char *const cfg_file[LDM_PARTS + 2] = {"config.json", "config.json", "config.json",
                                                    "scheduler_config.json", "model_index.json"};

int convert_open(ConvertJob *j, const ConvertOptions *o) {
    memset(j, 0, sizeof(*j));
    snprintf(j->out, sizeof(j->out), "%s", o->out);
    for (size_t n = strlen(j->out); n > 1 && j->out[n - 1] == '/'; n--) j->out[n - 1] = 0;
    if (o->key ? st_open_torch(&j->st, o->from, o->key) : st_open_weights(&j->st, o->from)) return SD_FAIL;
    j->st_opened = 1;
    for (int i = 0; i < LDM_PARTS + 2; i++)
        if (load_config_from(o->config_from, cfg_sub[i], cfg_file[i], &j->cfg[i], &j->have[i], j->cfg_path[i],
                             CONVERT_PATH_LEN))
            goto fail;
    int text_layers = -1;  // the text encoder's config says how many layers to keep
    if (j->have[LDM_TEXT] && json_get_int(&j->cfg[LDM_TEXT], "num_hidden_layers", -1, &text_layers)) {
        sd_error_context("%s", j->cfg_path[LDM_TEXT]);
        goto fail;
    }
    if (ldm_plan_build(&j->st, text_layers, o->ema, &j->plan) || ldm_infer_shapes(&j->plan, &j->shapes)) goto fail;
    for (int p = 0; p < LDM_PARTS; p++)
        if (j->have[p] && check_config(j->cfg_path[p], &j->cfg[p], (LdmPart)p, &j->shapes)) goto fail;
    if (read_betas(&j->st, j)) goto fail;
    return 0;
fail:
    convert_close(j);
    return SD_FAIL;
}

int convert_write(ConvertJob *j, const ConvertOptions *o) {
    char tmp[CONVERT_PATH_LEN], old[CONVERT_PATH_LEN], path[CONVERT_PATH_LEN], dir[CONVERT_PATH_LEN];
    const char *out = j->out;
    const LdmLayout *L = &j->plan.layout;
    int tmp_made = 0;
    struct stat sb;
    // The temporary folder and the place of a replaced OUT, beside OUT (the same file system).
    int n_tmp = snprintf(tmp, sizeof(tmp), "%s.tmp.%d", out, (int)getpid());
    int n_old = snprintf(old, sizeof(old), "%s.old.%d", out, (int)getpid());
    if (n_tmp < 0 || n_tmp >= (int)sizeof(tmp) || n_old < 0 || n_old >= (int)sizeof(old))
        return sd_errorf("--out %s: path too long", out);
    if (mkdir(tmp, 0755) != 0) return sd_errorf("%s: cannot create: %s", tmp, strerror(errno));
    tmp_made = 1;
    for (int p = 0; p < LDM_PARTS; p++) {
        if (path_join(dir, sizeof(dir), tmp, ldm_part_folder[p]) ||
            path_join(path, sizeof(path), dir, ldm_part_file[p]) || make_dir(dir) ||
            write_weights(path, &j->plan, (LdmPart)p, o, &j->stopped))
            goto fail;
        if (path_join(path, sizeof(path), dir, "config.json")) goto fail;
        const LdmTensor *t = ldm_plan_find(&j->plan, LDM_TEXT, "text_model.final_layer_norm.weight");
        int f16 = t && output_dtype(t, o->dtype) == DT_F16;  // the text config's torch_dtype
        int rc = j->have[p]      ? copy_file(j->cfg_path[p], path)
                 : p == LDM_UNET ? write_unet_config(path, &j->shapes, o->image_size)
                 : p == LDM_VAE  ? write_vae_config(path, &j->shapes, o->image_size)
                                 : write_text_config(path, &j->shapes, f16);
        if (rc) goto fail;
    }
    if (path_join(dir, sizeof(dir), tmp, "scheduler") || path_join(path, sizeof(path), dir, "scheduler_config.json") ||
        make_dir(dir) || (j->have[3] ? copy_file(j->cfg_path[3], path) : write_scheduler_config(path, j, o->prediction)))
        goto fail;
    if (path_join(path, sizeof(path), tmp, "model_index.json")) goto fail;
    if (j->have[4] ? copy_file(j->cfg_path[4], path) : write_model_index(path)) goto fail;
    char tok_src[CONVERT_PATH_LEN];
    const char *tok = o->tokenizer;
    if (!tok && o->config_from) {
        if (path_join(tok_src, sizeof(tok_src), o->config_from, "tokenizer") ||
            path_join(path, sizeof(path), tok_src, "vocab.json"))
            goto fail;
        if (is_file(path)) tok = tok_src;
    }
    if (path_join(dir, sizeof(dir), tmp, "tokenizer")) goto fail;
    if (write_tokenizer(dir, tok, L->text_kind == LDM_TEXT_OPENCLIP, &j->tokenizer_complete)) goto fail;
    if ((j->stopped = should_stop(o))) goto fail;
    st_close(&j->st);  // everything is written: let the checkpoint's pages go before loading the result
    j->st_opened = 0;
    if (o->verify && verify_pipeline(tmp)) goto fail;
    if ((j->stopped = should_stop(o))) goto fail;

    // Into place: OUT appears whole or not at all.
    int replaced = 0;
    if (stat(out, &sb) == 0) {
        if (rename(out, old) != 0) {
            sd_errorf("%s: cannot move the existing folder aside: %s", out, strerror(errno));
            goto fail;
        }
        replaced = 1;
    }
    if (rename(tmp, out) != 0) {
        sd_errorf("%s: cannot rename %s to it: %s", out, tmp, strerror(errno));
        if (replaced) rename(old, out);
        goto fail;
    }
    if (replaced) remove_tree(old);
    return 0;
fail:
    if (j->stopped) sd_errorf("stopped: nothing written");
    if (tmp_made) remove_tree(tmp);
    return SD_FAIL;
}

void convert_close(ConvertJob *j) {
    for (int i = 0; i < LDM_PARTS + 2; i++)
        if (j->have[i]) json_free(&j->cfg[i]);
    ldm_plan_free(&j->plan);
    if (j->st_opened) st_close(&j->st);
    memset(j, 0, sizeof(*j));
}

int convert_tensors_file(const char *from, const char *key, const char *out, int *count) {
    SafeTensors st;
    *count = 0;
    if (key ? st_open_torch(&st, from, key) : st_open(&st, from)) return SD_FAIL;
    const char *keys[2] = {"converted_from", "key"};
    const char *vals[2] = {from, key ? key : ""};
    int rc = st_write_copy(&st, out, keys, vals, key ? 2 : 1);
    *count = st.count;
    st_close(&st);
    return rc;
}
