// satdifuser convert: a single-file Stable Diffusion checkpoint in the original LDM/CompVis
// layout (SD 1.x / 2.x .safetensors, e.g. v2-1_512-ema-pruned.safetensors) -> a diffusers
// pipeline folder that `satdifuser extract --model` loads; or any checkpoint's tensors -> one
// safetensors file (--out FILE.safetensors). The arguments and the printing; the conversion is
// src/convert/convert.c (the name mapping src/convert/ldm_plan.c).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "convert/convert.h"
#include "core/error.h"

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

static int stop_requested(void *ctx) {
    (void)ctx;
    return g_stop_signal != 0;
}

static void tensor_written(void *ctx) {
    (void)ctx;
    g_tensors_written++;
    if (g_test_stop_after >= 0 && g_tensors_written >= g_test_stop_after) raise(SIGTERM);
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

// --out FILE.safetensors: the checkpoint's tensors, dtypes and bytes unchanged.
static int convert_tensors(const char *from, const char *key, const char *out, int force, int quiet) {
    struct stat sb;
    if (stat(out, &sb) == 0 && !force) {
        fprintf(stderr, "satdifuser convert: %s exists: choose another --out or pass --force to replace it\n", out);
        return 2;
    }
    int count;
    if (convert_tensors_file(from, key, out, &count)) {
        fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
        return 1;
    }
    if (!quiet) printf("wrote %s: %d tensors%s%s\n", out, count, key ? " under " : "", key ? key : "");
    return 0;
}

// ---------------------------------------------------------------------------

typedef struct {
    ConvertOptions c;
    int force, quiet;
} Args;

static int parse_args(int argc, char **argv, Args *args) {
    memset(args, 0, sizeof(*args));
    ConvertOptions *a = &args->c;
    convert_options_default(a);
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--ema")) {
            a->ema = 1;
            continue;
        }
        if (!strcmp(o, "--force")) {
            args->force = 1;
            continue;
        }
        if (!strcmp(o, "--no-verify")) {
            a->verify = 0;
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            args->quiet = 1;
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
                a->dtype = CONVERT_DTYPE_F32;
            else if (!strcmp(v, "f16"))
                a->dtype = CONVERT_DTYPE_F16;
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
    if (n == 0 || n + 32 >= CONVERT_PATH_LEN / 2) return sd_errorf("--out '%s': not a usable path", a->out);
    return 0;
}

int cmd_convert(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            convert_usage(stdout);
            return 0;
        }
    Args args;
    if (parse_args(argc, argv, &args)) {
        fprintf(stderr, "satdifuser convert: %s\n\n", sd_last_error());
        convert_usage(stderr);
        return 2;
    }
    ConvertOptions *a = &args.c;
    size_t out_len = strlen(a->out);
    if (out_len > 12 && !strcmp(a->out + out_len - 12, ".safetensors"))
        return convert_tensors(a->from, a->key, a->out, args.force, args.quiet);
    char out[CONVERT_PATH_LEN];
    snprintf(out, sizeof(out), "%s", a->out);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = 0;
    if (strlen(out) + 32 >= sizeof(out)) {
        fprintf(stderr, "satdifuser convert: --out %s: path too long\n", out);
        return 2;
    }
    if (a->config_from && !is_dir(a->config_from)) {
        fprintf(stderr, "satdifuser convert: --config-from %s: not a folder\n", a->config_from);
        return 2;
    }
    if (a->tokenizer && !is_dir(a->tokenizer)) {
        fprintf(stderr, "satdifuser convert: --tokenizer %s: not a folder\n", a->tokenizer);
        return 2;
    }
    struct stat sb;
    if (stat(out, &sb) == 0 && !args.force) {
        fprintf(stderr, "satdifuser convert: %s exists: choose another --out or pass --force to replace it\n", out);
        return 2;
    }

    ConvertJob j;
    if (convert_open(&j, a)) {
        fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
        return 1;
    }
    const LdmLayout *L = &j.plan.layout;
    if (!args.quiet) {
        printf("%s: SD %s checkpoint (%s text encoder), UNet %d levels x %d, VAE %d levels x %d%s\n", a->from,
               L->text_kind == LDM_TEXT_OPENCLIP ? "2.x" : "1.x",
               L->text_kind == LDM_TEXT_OPENCLIP ? "OpenCLIP" : "CLIP", L->unet_levels, L->unet_layers_per_block,
               L->vae_levels, L->vae_layers_per_block, L->vae_has_decoder ? " + decoder" : " (no decoder)");
        if (L->ema_tensors > 100 && !a->ema)
            printf(
                "  it also has EMA weights (model_ema.*): converting the non-EMA ones; --ema converts the EMA ones\n");
        if (!j.have[3] && j.betas_error > 1e-4)
            fprintf(stderr,
                    "convert: warning: the checkpoint's betas are not a scaled_linear schedule (relative "
                    "error %.2g): check scheduler/scheduler_config.json\n",
                    j.betas_error);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const char *hook = getenv("SATDIFUSER_TEST_STOP_AFTER");
    if (hook) g_test_stop_after = strtol(hook, NULL, 10);
    a->should_stop = stop_requested;
    a->on_tensor = tensor_written;

    int status = 0;
    if (convert_write(&j, a)) {
        if (g_stop_signal) {
            fprintf(stderr, "satdifuser convert: stopped by signal %d: nothing written\n", (int)g_stop_signal);
            status = 128 + (int)g_stop_signal;
        } else {
            fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
            status = 1;
        }
    } else if (!args.quiet) {
        int n[LDM_PARTS] = {0};
        for (int i = 0; i < j.plan.count; i++) n[j.plan.tensors[i].part]++;
        printf("wrote %s: unet %d tensors, vae %d, text_encoder %d (%d of %d layers)%s\n", out, n[LDM_UNET], n[LDM_VAE],
               n[LDM_TEXT], L->text_layers_kept, L->text_layers, a->verify ? ", loads back" : "");
        printf("  configs: %s\n", a->config_from ? "from --config-from (missing ones built from the shapes)"
                                                 : "built from the tensor shapes with SD defaults");
        printf("  %d checkpoint tensors not converted%s\n", j.plan.ignored, j.plan.ignored ? ":" : "");
        for (int i = 0; i < j.plan.n_skipped; i++)
            printf("    %4d  %s (%s%s)\n", j.plan.skipped[i].count, j.plan.skipped[i].why, j.plan.skipped[i].example,
                   j.plan.skipped[i].count > 1 ? ", ..." : "");
        if (!j.tokenizer_complete)
            printf(
                "  the tokenizer must be added: copy vocab.json and merges.txt (the CLIP BPE files of the model, "
                "e.g. stabilityai/stable-diffusion-2-1 tokenizer/) into %s/tokenizer/ (or rerun with --tokenizer "
                "DIR)\n",
                out);
    }
    convert_close(&j);
    return status;
}
