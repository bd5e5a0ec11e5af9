// satdifuser convert: a single-file Stable Diffusion checkpoint in the original LDM/CompVis
// layout (SD 1.x / 2.x .safetensors, e.g. v2-1_512-ema-pruned.safetensors) -> a diffusers
// pipeline folder that `satdifuser extract --model` loads.
//
// The name mapping is src/convert/ldm_plan.c. This file writes the folder: the weights of each part
// (streamed tensor by tensor from the mapped checkpoint, so memory stays small), the config files
// (copied from --config-from DIR, or built from the tensor shapes with SD 1.x/2.x defaults), the
// scheduler, model_index.json and the tokenizer files. Everything goes to OUT.tmp.<pid> first; the
// folder is loaded back with the real loaders, then renamed to OUT. A stopped or failed
// conversion leaves no OUT and no temporary folder.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/json.h"
#include "convert/ldm_plan.h"
#include "io/safetensors.h"
#include "io/torch_file.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"

#define PATH_LEN 4096

static void convert_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser convert --from FILE --out DIR [options]\n"
            "       satdifuser convert --from FILE --out FILE.safetensors [--key PATH] [--force]\n\n"
            "Converts a single-file Stable Diffusion checkpoint in the original LDM/CompVis layout\n"
            "(model.diffusion_model.*, first_stage_model.*, cond_stage_model.*: SD 1.x with CLIP-L, SD 2.x\n"
            "with OpenCLIP) into a diffusers pipeline folder for `satdifuser extract --model DIR`.\n"
            "With --out FILE.safetensors it writes instead the tensors of any checkpoint, dtypes and values\n"
            "unchanged, as one safetensors file (docs/pytorch-checkpoints.md).\n\n"
            "  --from FILE          the checkpoint: .safetensors, or a PyTorch .ckpt / .pt / .pth / .bin (read\n"
            "                       without Python; a Lightning .ckpt's weights are its \"state_dict\")\n"
            "  --out DIR            the pipeline folder to create (must not exist, unless --force)\n"
            "  --out FILE.safetensors  write the checkpoint's tensors, named by their dotted paths\n"
            "  --key PATH           only the tensors under this entry, named relative to it (\"decoder_net\" for\n"
            "                       SatDiFuser run.py's checkpoints, \"state_dict\", dotted paths for nesting)\n"
            "  --config-from DIR    take unet/, vae/, text_encoder/ config.json, scheduler/ and model_index.json\n"
            "                       from an existing diffusers folder of the same model (checked against the\n"
            "                       shapes), and its tokenizer/ unless --tokenizer; otherwise the configs are\n"
            "                       built from the tensor shapes with SD 1.x/2.x defaults\n"
            "  --tokenizer DIR      copy vocab.json, merges.txt (and tokenizer_config.json,\n"
            "                       special_tokens_map.json when there) from DIR into OUT/tokenizer\n"
            "  --dtype f32|f16      weights precision (default: as stored, bf16/f64 as f32)\n"
            "  --ema                convert the UNet's EMA copies (model_ema.*) instead of its weights\n"
            "  --prediction-type T  epsilon (default: SD 1.x, SD 2.x base 512) or v_prediction (SD 2.x 768)\n"
            "  --image-size N       the model's training resolution, for sample_size (default 512)\n"
            "  --force              replace an existing OUT\n"
            "  --no-verify          do not load the converted folder back before renaming it into place\n"
            "  --quiet              print nothing but errors\n"
            "Exit status: 0 done, 1 conversion failed (nothing written), 2 usage error, 130/143 stopped by\n"
            "SIGINT/SIGTERM (nothing written).\n");
}

// ---------------------------------------------------------------------------
// Signals: a stop request is honoured between chunks of tensor data.

static volatile sig_atomic_t g_stop_signal = 0;
static long g_test_stop_after = -1;  // test hook: SIGTERM to ourselves after this many tensors
static long g_tensors_written = 0;

static void on_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL);
}

// ---------------------------------------------------------------------------
// Files.

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

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

// rm -r of a folder this command created.
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_LEN];
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

typedef enum { DTYPE_KEEP, DTYPE_F32, DTYPE_F16 } DtypeMode;

static DType output_dtype(const LdmTensor *t, DtypeMode mode) {
    if (mode == DTYPE_F32) return DT_F32;
    if (mode == DTYPE_F16) return DT_F16;
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

static int write_weights(const char *path, const LdmPlan *plan, LdmPart part, DtypeMode mode) {
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
    for (int i = first; i <= last && ok && !g_stop_signal; i++) {
        const LdmTensor *t = &plan->tensors[i];
        DType dt = output_dtype(t, mode);
        for (int64_t k = 0; k < t->numel && ok && !g_stop_signal; k += CHUNK) {
            int64_t n = t->numel - k < CHUNK ? t->numel - k : CHUNK;
            if (ldm_tensor_read(t, k, n, dt, buf)) {
                free(buf);
                fclose(f);
                return sd_error_context("%s", path);
            }
            ok = fwrite(buf, (size_t)dtype_size(dt), (size_t)n, f) == (size_t)n;
        }
        g_tensors_written++;
        if (g_test_stop_after >= 0 && g_tensors_written >= g_test_stop_after) raise(SIGTERM);
    }
    free(buf);
    if (g_stop_signal) {
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

// SD's DDIM settings (stabilityai/stable-diffusion-2-1 scheduler_config.json). The schedule is
// scaled_linear: betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2; a checkpoint's `betas`
// buffer, when there, gives T, beta_start and beta_end (and is checked to be scaled_linear).
static int write_scheduler_config(const char *path, const SafeTensors *st, const char *prediction, int quiet) {
    double start = 0.00085, end = 0.012;
    int T = 1000;
    const StEntry *e = st_find(st, "betas");
    if (e && e->ndim == 1 && e->numel >= 2 && e->numel <= 100000) {
        float *b = (float *)malloc((size_t)e->numel * sizeof(float));
        if (!b) return sd_errorf("out of memory");
        if (st_entry_to_f32(st, e, b)) {
            free(b);
            return SD_FAIL;
        }
        T = (int)e->numel;
        start = b[0];
        end = b[T - 1];
        double worst = 0;
        for (int i = 0; i < T; i++) {
            double r = sqrt(start) + (sqrt(end) - sqrt(start)) * i / (T - 1);
            double err = fabs(b[i] - r * r) / (r * r);
            if (err > worst) worst = err;
        }
        free(b);
        if (worst > 1e-4 && !quiet)
            fprintf(stderr,
                    "convert: warning: the checkpoint's betas are not a scaled_linear schedule (relative "
                    "error %.2g): check scheduler/scheduler_config.json\n",
                    worst);
    }
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
    char path[PATH_LEN];
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
    char a[PATH_LEN], b[PATH_LEN];
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
    char sub[PATH_LEN], cpath[PATH_LEN], wpath[PATH_LEN];
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

typedef struct {
    const char *from, *out, *config_from, *tokenizer, *prediction, *key;
    DtypeMode dtype;
    int ema, force, verify, quiet, image_size;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof(*a));
    a->prediction = "epsilon";
    a->verify = 1;
    a->image_size = 512;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--ema")) {
            a->ema = 1;
            continue;
        }
        if (!strcmp(o, "--force")) {
            a->force = 1;
            continue;
        }
        if (!strcmp(o, "--no-verify")) {
            a->verify = 0;
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            a->quiet = 1;
            continue;
        }
        if (o[0] != '-' || o[1] != '-') return sd_errorf("unexpected argument '%s'", o);
        if (i + 1 >= argc) return sd_errorf("%s: missing value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--from"))
            a->from = v;
        else if (!strcmp(o, "--out"))
            a->out = v;
        else if (!strcmp(o, "--config-from"))
            a->config_from = v;
        else if (!strcmp(o, "--tokenizer"))
            a->tokenizer = v;
        else if (!strcmp(o, "--key"))
            a->key = v;
        else if (!strcmp(o, "--prediction-type")) {
            if (strcmp(v, "epsilon") && strcmp(v, "v_prediction"))
                return sd_errorf("--prediction-type '%s': expected epsilon or v_prediction", v);
            a->prediction = v;
        } else if (!strcmp(o, "--dtype")) {
            if (!strcmp(v, "f32"))
                a->dtype = DTYPE_F32;
            else if (!strcmp(v, "f16"))
                a->dtype = DTYPE_F16;
            else
                return sd_errorf("--dtype '%s': expected f32 or f16", v);
        } else if (!strcmp(o, "--image-size")) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (*end || n < 8 || n > 16384 || n % 8) return sd_errorf("--image-size '%s': a multiple of 8", v);
            a->image_size = (int)n;
        } else
            return sd_errorf("unknown option '%s'", o);
    }
    if (!a->from) return sd_errorf("--from FILE is required");
    if (!a->out) return sd_errorf("--out DIR is required");
    size_t n = strlen(a->out);
    while (n > 1 && a->out[n - 1] == '/') n--;
    if (n == 0 || n + 32 >= PATH_LEN / 2) return sd_errorf("--out '%s': not a usable path", a->out);
    return 0;
}

// Loads DIR/<sub>/<file> when --config-from has it (*have = 1).
static int load_config_from(const char *dir, const char *sub, const char *file, JsonValue *cfg, int *have, char *path,
                            size_t size) {
    *have = 0;
    if (!dir) return 0;
    char folder[PATH_LEN];
    if (*sub ? path_join(folder, sizeof(folder), dir, sub) || path_join(path, size, folder, file)
             : path_join(path, size, dir, file))
        return SD_FAIL;
    if (!is_file(path)) return 0;
    if (json_parse_file(path, cfg)) return SD_FAIL;
    *have = 1;
    return 0;
}

int cmd_convert(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            convert_usage(stdout);
            return 0;
        }
    Args a;
    if (parse_args(argc, argv, &a)) {
        fprintf(stderr, "satdifuser convert: %s\n\n", sd_last_error());
        convert_usage(stderr);
        return 2;
    }
    size_t out_len = strlen(a.out);
    if (out_len > 12 && !strcmp(a.out + out_len - 12, ".safetensors"))
        return convert_tensors(a.from, a.key, a.out, a.force, a.quiet);
    char out[PATH_LEN], tmp[PATH_LEN], old[PATH_LEN], path[PATH_LEN], dir[PATH_LEN];
    snprintf(out, sizeof(out), "%s", a.out);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = 0;
    // The temporary folder and the place of a replaced OUT, beside OUT (the same file system).
    int n_tmp = snprintf(tmp, sizeof(tmp), "%s.tmp.%d", out, (int)getpid());
    int n_old = snprintf(old, sizeof(old), "%s.old.%d", out, (int)getpid());
    if (n_tmp < 0 || n_tmp >= (int)sizeof(tmp) || n_old < 0 || n_old >= (int)sizeof(old)) {
        fprintf(stderr, "satdifuser convert: --out %s: path too long\n", out);
        return 2;
    }
    if (a.config_from && !is_dir(a.config_from)) {
        fprintf(stderr, "satdifuser convert: --config-from %s: not a folder\n", a.config_from);
        return 2;
    }
    if (a.tokenizer && !is_dir(a.tokenizer)) {
        fprintf(stderr, "satdifuser convert: --tokenizer %s: not a folder\n", a.tokenizer);
        return 2;
    }
    struct stat sb;
    if (stat(out, &sb) == 0 && !a.force) {
        fprintf(stderr, "satdifuser convert: %s exists: choose another --out or pass --force to replace it\n", out);
        return 2;
    }

    int status = 1, tmp_made = 0, tokenizer_complete = 0;
    SafeTensors st;
    int st_opened = 0;
    LdmPlan plan;
    memset(&plan, 0, sizeof(plan));
    JsonValue cfg[LDM_PARTS + 2];  // unet, vae, text_encoder, scheduler, model_index
    int have[LDM_PARTS + 2] = {0};
    char cfg_path[LDM_PARTS + 2][PATH_LEN];
    static const char *const cfg_sub[LDM_PARTS + 2] = {"unet", "vae", "text_encoder", "scheduler", ""};
    static const char *const cfg_file[LDM_PARTS + 2] = {"config.json", "config.json", "config.json",
                                                        "scheduler_config.json", "model_index.json"};
    LdmShapes shapes;

    if (a.key ? st_open_torch(&st, a.from, a.key) : st_open_weights(&st, a.from)) goto fail;
    st_opened = 1;
    for (int i = 0; i < LDM_PARTS + 2; i++)
        if (load_config_from(a.config_from, cfg_sub[i], cfg_file[i], &cfg[i], &have[i], cfg_path[i], PATH_LEN))
            goto fail;
    int text_layers = -1;  // the text encoder's config says how many layers to keep
    if (have[LDM_TEXT] && json_get_int(&cfg[LDM_TEXT], "num_hidden_layers", -1, &text_layers)) {
        sd_error_context("%s", cfg_path[LDM_TEXT]);
        goto fail;
    }
    if (ldm_plan_build(&st, text_layers, a.ema, &plan) || ldm_infer_shapes(&plan, &shapes)) goto fail;
    for (int p = 0; p < LDM_PARTS; p++)
        if (have[p] && check_config(cfg_path[p], &cfg[p], (LdmPart)p, &shapes)) goto fail;
    const LdmLayout *L = &plan.layout;
    if (!a.quiet) {
        printf("%s: SD %s checkpoint (%s text encoder), UNet %d levels x %d, VAE %d levels x %d%s\n", a.from,
               L->text_kind == LDM_TEXT_OPENCLIP ? "2.x" : "1.x",
               L->text_kind == LDM_TEXT_OPENCLIP ? "OpenCLIP" : "CLIP", L->unet_levels, L->unet_layers_per_block,
               L->vae_levels, L->vae_layers_per_block, L->vae_has_decoder ? " + decoder" : " (no decoder)");
        if (L->ema_tensors > 100 && !a.ema)
            printf(
                "  it also has EMA weights (model_ema.*): converting the non-EMA ones; --ema converts the EMA ones\n");
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const char *hook = getenv("SATDIFUSER_TEST_STOP_AFTER");
    if (hook) g_test_stop_after = strtol(hook, NULL, 10);

    if (mkdir(tmp, 0755) != 0) {
        sd_errorf("%s: cannot create: %s", tmp, strerror(errno));
        goto fail;
    }
    tmp_made = 1;
    for (int p = 0; p < LDM_PARTS; p++) {
        if (path_join(dir, sizeof(dir), tmp, ldm_part_folder[p]) ||
            path_join(path, sizeof(path), dir, ldm_part_file[p]) || make_dir(dir) ||
            write_weights(path, &plan, (LdmPart)p, a.dtype))
            goto fail;
        if (path_join(path, sizeof(path), dir, "config.json")) goto fail;
        const LdmTensor *t = ldm_plan_find(&plan, LDM_TEXT, "text_model.final_layer_norm.weight");
        int f16 = t && output_dtype(t, a.dtype) == DT_F16;  // the text config's torch_dtype
        int rc = have[p]         ? copy_file(cfg_path[p], path)
                 : p == LDM_UNET ? write_unet_config(path, &shapes, a.image_size)
                 : p == LDM_VAE  ? write_vae_config(path, &shapes, a.image_size)
                                 : write_text_config(path, &shapes, f16);
        if (rc) goto fail;
    }
    if (path_join(dir, sizeof(dir), tmp, "scheduler") || path_join(path, sizeof(path), dir, "scheduler_config.json") ||
        make_dir(dir) ||
        (have[3] ? copy_file(cfg_path[3], path) : write_scheduler_config(path, &st, a.prediction, a.quiet)))
        goto fail;
    if (path_join(path, sizeof(path), tmp, "model_index.json")) goto fail;
    if (have[4] ? copy_file(cfg_path[4], path) : write_model_index(path)) goto fail;
    char tok_src[PATH_LEN];
    const char *tok = a.tokenizer;
    if (!tok && a.config_from) {
        if (path_join(tok_src, sizeof(tok_src), a.config_from, "tokenizer") ||
            path_join(path, sizeof(path), tok_src, "vocab.json"))
            goto fail;
        if (is_file(path)) tok = tok_src;
    }
    if (path_join(dir, sizeof(dir), tmp, "tokenizer")) goto fail;
    if (write_tokenizer(dir, tok, L->text_kind == LDM_TEXT_OPENCLIP, &tokenizer_complete)) goto fail;
    if (g_stop_signal) goto stopped;
    st_close(&st);  // everything is written: let the checkpoint's pages go before loading the result
    st_opened = 0;
    if (a.verify && verify_pipeline(tmp)) goto fail;
    if (g_stop_signal) goto stopped;

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
    tmp_made = 0;
    if (replaced) remove_tree(old);
    status = 0;
    if (!a.quiet) {
        int n[LDM_PARTS] = {0};
        for (int i = 0; i < plan.count; i++) n[plan.tensors[i].part]++;
        printf("wrote %s: unet %d tensors, vae %d, text_encoder %d (%d of %d layers)%s\n", out, n[LDM_UNET], n[LDM_VAE],
               n[LDM_TEXT], L->text_layers_kept, L->text_layers, a.verify ? ", loads back" : "");
        printf("  configs: %s\n", a.config_from ? "from --config-from (missing ones built from the shapes)"
                                                : "built from the tensor shapes with SD defaults");
        printf("  %d checkpoint tensors not converted%s\n", plan.ignored, plan.ignored ? ":" : "");
        for (int i = 0; i < plan.n_skipped; i++)
            printf("    %4d  %s (%s%s)\n", plan.skipped[i].count, plan.skipped[i].why, plan.skipped[i].example,
                   plan.skipped[i].count > 1 ? ", ..." : "");
        if (!tokenizer_complete)
            printf(
                "  the tokenizer must be added: copy vocab.json and merges.txt (the CLIP BPE files of the model, "
                "e.g. stabilityai/stable-diffusion-2-1 tokenizer/) into %s/tokenizer/ (or rerun with --tokenizer "
                "DIR)\n",
                out);
    }
    goto cleanup;
stopped:
    fprintf(stderr, "satdifuser convert: stopped by signal %d: nothing written\n", (int)g_stop_signal);
    status = 128 + (int)g_stop_signal;
    goto cleanup;
fail:
    if (g_stop_signal) goto stopped;
    fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
    status = 1;
cleanup:
    if (tmp_made) remove_tree(tmp);
    for (int i = 0; i < LDM_PARTS + 2; i++)
        if (have[i]) json_free(&cfg[i]);
    ldm_plan_free(&plan);
    if (st_opened) st_close(&st);
    return status;
}
