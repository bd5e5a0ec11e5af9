// satdifuser extract: images -> feature cache (one safetensors file per image).
//
// The list of images is sorted by output name, split by --shard, and each image
// whose feature file is missing is extracted and written atomically (temporary
// file + rename). An existing file is checked (whole, same settings) and
// skipped, so a stopped run is resumed by running the same command again.
// SIGINT / SIGTERM stop the run between UNet calls: the image in progress is
// dropped, nothing half-written is left behind.
// The job's logic - the inputs and their names, the settings each file records,
// the state of a target - is library code (models/extract_job.h); this file
// parses the options, loads and batches the images, and prints the progress.
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/feature_cache.h"
#include "io/image.h"
#include "io/outdir.h"
#include "kernels/kernels.h"
#include "models/extract_job.h"
#include "models/features.h"
#include "models/nn.h"
#include "models/pack.h"
#include "models/preprocess.h"
#include "io/geobench.h"
#include "cli/shard.h"
#include "cli/extract_check.h"
#include "cli/preprocess_args.h"

static void extract_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser extract --model DIR --input IMG|LIST|DIR --out DIR [options]\n\n"
            "VAE-encodes each image, DDIM-inverts its latent and stores the UNet decoder features\n"
            "(SatDiFuser's feature pyramid) as OUT/<name>.safetensors, one file per image.\n\n"
            "  --model DIR          diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/,\n"
            "                       tokenizer/, scheduler/); weights as safetensors or PyTorch .bin (sharded\n"
            "                       too), f32, f16 or bf16\n"
            "  --unet DIR           take the UNet from this folder instead of MODEL/unet (DiffusionSat's\n"
            "                       release: --unet ROOT/checkpoint-150000/unet)\n"
            "  --input PATH         an image (PNG, TIFF/GeoTIFF, NPY), a folder (searched recursively for\n"
            "                       .png .tif .tiff .npy), or a text file listing images, one per line\n"
            "                       (relative paths are relative to the list's folder; '#' starts a comment),\n"
            "                       or a GEO-Bench task folder (<sample>.hdf5, default_partition.json: every\n"
            "                       sample of --partition, as `geobench export` writes it, <sample>.safetensors)\n"
            "  --partition NAME     GEO-Bench: NAME_partition.json (default: default)\n"
            "  --out DIR            feature cache folder; <name> is the image's path relative to the input\n"
            "                       folder (or list), without its extension\n"
            "  --size N             target size after resizing, a multiple of 8 (default 256; 512 for SD 2.1 768)\n"
            "  --resize shorter|exact  shorter (default, the original's torchvision Resize(N)): the shorter side\n"
            "                       becomes N, the longer one keeps the aspect ratio; exact: Resize((N, N)), both\n"
            "                       sides N (the aspect ratio is not kept)\n"
            "  --crop center|none   center: after the resize, the centre N x N (torchvision CenterCrop(N)), so\n"
            "                       images of any aspect ratio give features of one shape; none (default, as the\n"
            "                       original)\n"
            "  --prompt TEXT        text condition (default \"A satellite image\")\n"
            "  --steps N            DDIM inference steps (default 50)\n"
            "  --save-steps LIST    step indices to save, the original's save_timesteps (default 47,45,40:\n"
            "                       UNet calls at t = 21, 61, 161); the walk stops after steps - min(LIST) calls\n"
            "  --save-t LIST        the same given as UNet timesteps (e.g. 21,61,161)\n"
            "  --layers LIST        up_blocks module name suffixes to capture (default attn1,conv2)\n"
            "  --latent mean|sample posterior mean (default) or a sample; --seed N for the sample (default 0)\n"
            "  --prediction epsilon|config  use the UNet output as epsilon (default, as the original) or\n"
            "                       convert it by the scheduler's prediction_type (v_prediction)\n"
            "  --dtype f32|f16      storage precision of the features (computation is float32)\n"
            "  --precision f32|bf16|f16  precision of the linear and conv layers (default f32; bf16 needs\n"
            "                       AVX512_BF16 or arm64 FEAT_BF16: ~1.8x faster, ~1%% relative error in the\n"
            "                       features; f16: weights kept as IEEE half, half their memory, f32 compute;\n"
            "                       docs/bf16.md)\n"
            "  --bands LIST         1-based R,G,B bands (default: 1,2,3 for 3-4 bands, 4,3,2 for 12-13 bands);\n"
            "                       band names too for GEO-Bench samples and GeoTIFFs with GDAL band descriptions\n"
            "  --scale MODE         how samples become [0, 1], per band (x = clip((v - offset) / range, 0, 1)):\n"
            "                       auto (default): 8-bit /255, 16-bit PNG /65535, other integers /4095, floats\n"
            "                       clipped; a warning names each band that lost pixels to clipping\n"
            "                       4095 | 255 | 65535 | clip: that divisor (clip: none)\n"
            "                       minmax: this image's min and max; percentile:LO,HI (e.g. 2,98): its\n"
            "                       percentiles (numpy 'linear'); minmax:STATS.json: {\"min\":[..],\"max\":[..]}\n"
            "                       for the whole dataset. Each feature file records what was applied ('scaling')\n"
            "  --shard K/N          process only the images i with i mod N == K (K from 0), over the sorted list;\n"
            "                       auto: K/N of a SLURM array job (SLURM_ARRAY_TASK_ID, _MIN/_MAX/_STEP/_COUNT)\n"
            "  --batch B            run up to B images of one size through the VAE and the UNet together\n"
            "                       (default 1; the features are the same bits as one by one, and larger\n"
            "                       products keep the cores busier at the small 8x8 / 4x4 UNet levels)\n"
            "  --quiet              no progress lines\n"
            "  --check              compute nothing: list the images whose feature file is missing,\n"
            "                       half-written or made with other settings (exit 0 when none is)\n"
            "Progress goes to stderr. Exit status: 0 all done, 1 some image failed, 2 usage or model error,\n"
            "130/143 stopped by SIGINT/SIGTERM (rerun the same command to resume).\n");
}

// ---------------------------------------------------------------------------
// Signals: the first one asks the run to stop; a second one kills.

static volatile sig_atomic_t g_stop_signal = 0;

static void on_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL);
}

static int should_stop(void *ctx) {
    (void)ctx;
    return g_stop_signal != 0;
}

// ---------------------------------------------------------------------------
// Options.

typedef struct {
    const char *model, *unet, *input, *out, *prompt, *layers, *save_steps, *save_t, *partition;
    PreArgs pre;  // --bands --scale --size --resize --crop (cli/preprocess_args.h, shared with predict)
    int steps, latent_sample, f16, shard_k, shard_n, quiet, by_config, precision, batch, check;
    uint64_t seed;
} Args;

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi)
        return sd_errorf("%s '%s': expected a whole number from %ld to %ld", opt, s, lo, hi);
    *out = v;
    return 0;
}

// "47,45,40" -> ints.
static int parse_list(const char *opt, const char *s, int *vals, int max, int *n, long lo, long hi) {
    *n = 0;
    char buf[512];
    if (strlen(s) >= sizeof(buf)) return sd_errorf("%s: list too long", opt);
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long v;
        if (*n == max) return sd_errorf("%s: at most %d values", opt, max);
        if (parse_int(opt, tok, lo, hi, &v)) return -1;
        vals[(*n)++] = (int)v;
    }
    if (*n == 0) return sd_errorf("%s: empty list", opt);
    return 0;
}

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof(*a));
    a->prompt = "A satellite image";
    pre_args_default(&a->pre);
    a->steps = 50;
    a->shard_n = 1;
    a->batch = 1;
    a->layers = "attn1,conv2";
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        long v;
        if (!strcmp(o, "--quiet")) { a->quiet = 1; continue; }
        if (!strcmp(o, "--check")) { a->check = 1; continue; }
        if (o[0] != '-' || o[1] != '-') return sd_errorf("unexpected argument '%s'", o);
        if (i + 1 >= argc) return sd_errorf("%s: missing value", o);
        const char *val = argv[++i];
        int taken = pre_args_take(&a->pre, o, val);
        if (taken < 0) return -1;
        if (taken) continue;
        if (!strcmp(o, "--model")) a->model = val;
        else if (!strcmp(o, "--unet")) a->unet = val;
        else if (!strcmp(o, "--input")) a->input = val;
        else if (!strcmp(o, "--out")) a->out = val;
        else if (!strcmp(o, "--prompt")) a->prompt = val;
        else if (!strcmp(o, "--partition")) a->partition = val;
        else if (!strcmp(o, "--layers")) a->layers = val;
        else if (!strcmp(o, "--save-steps")) a->save_steps = val;
        else if (!strcmp(o, "--save-t")) a->save_t = val;
        else if (!strcmp(o, "--batch")) {
            if (parse_int(o, val, 1, 64, &v)) return -1;
            a->batch = (int)v;
        } else if (!strcmp(o, "--steps")) {
            if (parse_int(o, val, 1, 1000, &v)) return -1;
            a->steps = (int)v;
        } else if (!strcmp(o, "--seed")) {
            if (parse_int(o, val, 0, 2147483647L, &v)) return -1;
            a->seed = (uint64_t)v;
        } else if (!strcmp(o, "--latent")) {
            if (!strcmp(val, "mean")) a->latent_sample = 0;
            else if (!strcmp(val, "sample")) a->latent_sample = 1;
            else return sd_errorf("--latent '%s': expected mean or sample", val);
        } else if (!strcmp(o, "--prediction")) {
            if (!strcmp(val, "epsilon")) a->by_config = 0;
            else if (!strcmp(val, "config")) a->by_config = 1;
            else return sd_errorf("--prediction '%s': expected epsilon or config", val);
        } else if (!strcmp(o, "--dtype")) {
            if (!strcmp(val, "f32")) a->f16 = 0;
            else if (!strcmp(val, "f16")) a->f16 = 1;
            else return sd_errorf("--dtype '%s': expected f32 or f16", val);
        } else if (!strcmp(o, "--precision")) {
            if ((a->precision = nn_precision_parse(val, "--precision")) < 0) return -1;
        } else if (!strcmp(o, "--shard")) {
            int k, n, used = 0;
            if (!strcmp(val, "auto")) {  // SLURM job arrays (cli/shard.c)
                if (shard_from_slurm(&k, &n)) return -1;
            } else if (sscanf(val, "%d/%d%n", &k, &n, &used) != 2 || val[used] || n < 1 || k < 0 || k >= n)
                return sd_errorf("--shard '%s': expected K/N with 0 <= K < N (K counts from 0)", val);
            a->shard_k = k, a->shard_n = n;
        } else {
            return sd_errorf("unknown option '%s'", o);
        }
    }
    if (!a->model || !a->input || !a->out) return sd_errorf("--model, --input and --out are required");
    if (a->save_steps && a->save_t) return sd_errorf("give --save-steps or --save-t, not both");
    return 0;
}

// ---------------------------------------------------------------------------

static void format_seconds(double s, char *buf, size_t size) {
    long t = (long)(s + 0.5);
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

// One image of a group: loaded and preprocessed, then its features.
typedef struct {
    const ExtractItem *item;
    const char *target;
    Image img;
    Tensor x;            // (1, 3, H, W) in [-1, 1]
    int bands[3];
    char scaling[1024];  // the "scaling" metadata: what --scale did to each band
    int rc;              // 0 written, -1 failed (sd_last_error() was printed)
} GroupImage;

// Files whose scaling clipped pixels or made a band constant: listed, and counted past the list.
enum { SCALING_WARN_FILES = 20 };
static int g_scaling_listed, g_scaling_unlisted;

static int prepare_one(const PreprocessOptions *pre, const Args *a, GroupImage *g) {
    if (gb_image_load(g->item->path, &g->img)) return -1;  // GEO-Bench HDF5 samples too (io/geobench.h)
    PreprocessOptions po = *pre;
    if (a->pre.bands && pre->n_bands == 0 && gb_band_indices(g->item->path, a->pre.bands, po.bands, 3, &po.n_bands))
        return -1;  // --bands by name
    const char *why = NULL;
    int is_auto = !strcmp(a->pre.scale, "auto");
    if (is_auto) po.scale = pre_args_auto_scale(&g->img, &why);
    po.has_nodata = g->img.has_nodata, po.nodata = g->img.nodata;  // left out of minmax / percentile statistics
    if (preprocess_choose_bands(&po, g->img.channels, g->item->path, g->bands)) return -1;
    PreprocessReport rep;
    if (preprocess_image_report(g->img.data, g->img.channels, g->img.height, g->img.width, &po, g->item->path, &g->x,
                                &rep))
        return -1;
    char mode[600];
    const char *slash = strrchr(a->pre.scale, '/');  // minmax:STATS.json: the file's name, not where it was
    preprocess_scale_name(&po, po.scale == SCALE_MINMAX ? (slash ? slash + 1 : a->pre.scale + 7) : NULL, mode,
                          sizeof(mode));
    // the first SCALING_WARN_FILES files are listed; a folder of thousands gets a count at the end
    if (pre_scaling_warn(g->item->path, mode, is_auto, why, &rep, g_scaling_listed < SCALING_WARN_FILES)) {
        if (g_scaling_listed < SCALING_WARN_FILES && ++g_scaling_listed == SCALING_WARN_FILES)
            fprintf(stderr, "(further scaling warnings are counted, not listed)\n");
        else if (g_scaling_listed == SCALING_WARN_FILES)
            g_scaling_unlisted++;
    }
    return pre_scaling_json(mode, is_auto, why, &rep, g->scaling, sizeof(g->scaling));
}

// Extracts up to --batch images: each is loaded and preprocessed, then consecutive images of one
// size go through the VAE and the UNet together (features_extract_batch: the same bits as one by
// one) and each file is written. g[i].rc tells which failed; their messages are printed here.
static void extract_group(DiffusionModel *m, const ExtractJob *job, const PreprocessOptions *pre, const Args *a,
                          const FeatureMeta *expect, GroupImage *g, int n) {
    for (int i = 0; i < n; i++) {
        g[i].rc = prepare_one(pre, a, &g[i]);
        if (g[i].rc) fprintf(stderr, "error: %s\n", sd_last_error());
    }
    for (int i = 0; i < n;) {
        if (g[i].rc) { i++; continue; }
        int k = i + 1;  // [i, k): images of one size
        while (k < n && !g[k].rc && g[k].x.shape[2] == g[i].x.shape[2] && g[k].x.shape[3] == g[i].x.shape[3]) k++;
        int B = k - i, rc = -1;
        const int64_t per = tensor_numel(&g[i].x);
        Tensor batch = {0};
        FeaturePyramid *p = (FeaturePyramid *)calloc((size_t)B, sizeof(FeaturePyramid));
        if (p && tensor_alloc(&batch, 4, (int[4]){B, g[i].x.shape[1], g[i].x.shape[2], g[i].x.shape[3]}, "batch") == 0) {
            for (int b = 0; b < B; b++) memcpy(batch.data + b * per, g[i + b].x.data, (size_t)per * sizeof(float));
            rc = features_extract_batch(m, job->o, &batch, p);
        } else if (!p) {
            sd_errorf("out of memory");
        }
        char why[2048];
        snprintf(why, sizeof(why), "%s", sd_last_error());
        for (int b = 0; b < B; b++) {
            GroupImage *gi = &g[i + b];
            if (rc) {
                gi->rc = -1;
                if (!g_stop_signal) fprintf(stderr, "error: %s: %s\n", gi->item->path, why);
                continue;
            }
            ExtractSource src = {.path = gi->item->path, .channels = gi->img.channels, .height = gi->img.height,
                                 .width = gi->img.width, .bands = {gi->bands[0], gi->bands[1], gi->bands[2]},
                                 .scaling = gi->scaling};
            gi->rc = extract_write_features(gi->target, &p[b], job, expect, &src);
            if (gi->rc) fprintf(stderr, "error: %s\n", sd_last_error());
            feature_pyramid_free(&p[b]);
        }
        tensor_free(&batch);
        free(p);
        i = k;
    }
    for (int i = 0; i < n; i++) {
        tensor_free(&g[i].x);
        image_free(&g[i].img);
    }
}

// The counters of a run and the images waiting for their group.
typedef struct {
    int mine, seen, done_count, failed, embedding_kept;
    double t0;
    long test_stop_after;
    GroupImage *group;
    int n_group;
} RunState;

// Extracts the waiting group, then counts and reports each image.
static void flush_group(DiffusionModel *m, const ExtractJob *job, const PreprocessOptions *pre, const Args *a,
                        const FeatureMeta *expect, RunState *r) {
    if (r->n_group == 0) return;
    double ti = sd_now();
    extract_group(m, job, pre, a, expect, r->group, r->n_group);
    double each = (sd_now() - ti) / r->n_group;
    for (int i = 0; i < r->n_group; i++) {
        GroupImage *g = &r->group[i];
        if (g->rc) {
            if (!g_stop_signal) r->failed++;
        } else {
            r->done_count++;
            // once this run's settings have produced a file, its prompt embedding goes beside it
            if (!r->embedding_kept) {
                if (extract_keep_prompt_embedding(m, job, a->out)) fprintf(stderr, "warning: %s\n", sd_last_error());
                else r->embedding_kept = 1;
            }
            if (!a->quiet) {
                double now = sd_now(), rate = r->done_count / (now - r->t0 > 1e-9 ? now - r->t0 : 1e-9);
                char left[32];
                format_seconds((r->mine - r->seen) / rate, left, sizeof(left));
                fprintf(stderr, "[%d/%d] %s (%.2f s%s; %.3g images/s, %s left)\n", r->seen - r->n_group + i + 1, r->mine,
                        g->item->name, each, r->n_group > 1 ? " each, batched" : "", rate, left);
            }
        }
        free((char *)g->target);
        memset(g, 0, sizeof(*g));
    }
    r->n_group = 0;
    if (r->test_stop_after >= 0 && r->done_count >= r->test_stop_after) raise(SIGTERM);
}

int cmd_extract(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            extract_usage(stdout);
            return 0;
        }
    Args a;
    g_scaling_listed = g_scaling_unlisted = 0;  // (predict calls extract in the same process)
    if (parse_args(argc, argv, &a)) {
        fprintf(stderr, "satdifuser extract: %s\n\n", sd_last_error());
        extract_usage(stderr);
        return 2;
    }
    if (outdir_check(a.out, "--out")) {  // before any image is computed (issue 18)
        fprintf(stderr, "satdifuser extract: %s\n", sd_last_error());
        return 2;
    }
    int status = 2, failed = 0, done_count = 0, skipped = 0;
    ExtractInputs list = {0};
    DiffusionModel model;
    memset(&model, 0, sizeof(model));
    int model_loaded = 0;
    FeatureMeta expect;
    feature_meta_init(&expect);
    DdimWalk walk = {0};
    double *stats_min = NULL, *stats_max = NULL;

    ExtractOptions o;
    extract_options_default(&o);
    o.prompt = a.prompt;
    o.walk.num_inference_steps = a.steps;
    o.walk.output_handling = a.by_config ? DDIM_OUTPUT_BY_CONFIG : DDIM_OUTPUT_AS_EPSILON;
    o.latent_sample = a.latent_sample;
    o.seed = a.seed;
    o.should_stop = should_stop;
    char layer_buf[256];
    snprintf(layer_buf, sizeof(layer_buf), "%s", a.layers);
    o.n_suffixes = 0;
    for (char *tok = strtok(layer_buf, ","); tok; tok = strtok(NULL, ","))
        if (o.n_suffixes < EXTRACT_MAX_SUFFIXES) o.suffixes[o.n_suffixes++] = tok;
    PreprocessOptions pre;
    int band_names = 0;
    if (pre_args_options(&a.pre, &pre, &stats_min, &stats_max, &band_names)) goto usage;
    (void)band_names;  // names are resolved per image (prepare_one)

    if (extract_inputs_collect(a.input, a.partition, &list)) goto fail;
    if (nn_set_precision(a.precision)) goto fail;
    if (diffusion_model_load(&model, a.model, a.unet, 0, a.prompt)) goto fail;
    model_loaded = 1;
    if (model.pack_repacked && !a.quiet) {
        char note[4400];
        model_pack_note(&model, note, sizeof(note));
        fprintf(stderr, "%s\n", note);
    }
    if (a.save_steps || a.save_t) {
        int vals[DDIM_MAX_SAVE], n;
        if (parse_list(a.save_steps ? "--save-steps" : "--save-t", a.save_steps ? a.save_steps : a.save_t, vals, DDIM_MAX_SAVE,
                       &n, -1, 100000))
            goto usage;
        o.walk.n_save = n;
        if (ddim_set_timesteps(&model.scheduler, a.steps)) goto fail;
        for (int k = 0; k < n; k++) {
            o.walk.save_index[k] = a.save_t ? ddim_index_for_timestep(&model.scheduler, a.steps, vals[k]) : vals[k];
            if (o.walk.save_index[k] < 0) goto fail;
        }
    }
    if (ddim_walk_plan(&model.scheduler, &o.walk, &walk)) goto fail;  // checks the save steps up front
    char pre_json[2048];
    if (pre_args_json(&a.pre, pre_json, sizeof(pre_json))) goto fail;
    ExtractJob job = {.model = a.model, .unet = a.unet, .o = &o, .walk = &walk, .f16 = a.f16, .precision = a.precision,
                      .preprocessing = pre_json, .tool_version = SATDIFUSER_VERSION};
    if (extract_job_meta(&job, &expect)) goto fail;  // what every file records and a rerun must match
    if (a.check) {  // list what is missing, half-written or made otherwise; compute nothing (extract_check.c)
        const char **names = (const char **)malloc(sizeof(char *) * (size_t)list.n);
        if (!names) { sd_errorf("out of memory"); goto fail; }
        for (int i = 0; i < list.n; i++) names[i] = list.items[i].name;
        status = extract_check(a.out, names, list.n, a.shard_k, a.shard_n, &expect);
        free(names);
        goto cleanup;
    }
    if (extract_mkdirs(a.out)) goto fail;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    long test_stop_after = -1;  // test hook: SIGTERM to ourselves after this many files
    const char *hook = getenv("SATDIFUSER_TEST_STOP_AFTER");
    if (hook) test_stop_after = strtol(hook, NULL, 10);

    int mine = 0;
    for (int i = 0; i < list.n; i++) mine += i % a.shard_n == a.shard_k;
    if (!a.quiet)
        fprintf(stderr, "extract: %d image%s%s, %d call%s of the UNet each, features at t = %s -> %s\n", mine,
                mine == 1 ? "" : "s", a.shard_n > 1 ? " in this shard" : "", walk.n_calls, walk.n_calls == 1 ? "" : "s",
                feature_meta_get(&expect, "save_t"), a.out);
    RunState run;
    memset(&run, 0, sizeof(run));
    run.mine = mine;
    run.t0 = sd_now();
    run.test_stop_after = test_stop_after;
    run.group = (GroupImage *)calloc((size_t)a.batch, sizeof(GroupImage));
    if (!run.group) { sd_errorf("out of memory"); goto fail; }
    for (int i = 0; i < list.n && !g_stop_signal; i++) {
        if (i % a.shard_n != a.shard_k) continue;
        const ExtractItem *it = &list.items[i];
        run.seen++;
        char target[8192];
        ExtractFileState state = EXTRACT_FILE_OTHER;  // resume: a file made with these settings is kept
        if (extract_target_path(a.out, it->name, target, sizeof(target)) == 0)
            state = extract_file_state(target, &expect, NULL, 0, NULL);
        if (state == EXTRACT_FILE_DONE) {
            skipped++;
            if (!run.embedding_kept && extract_keep_prompt_embedding(&model, &job, a.out) == 0) run.embedding_kept = 1;
            continue;
        }
        if (state == EXTRACT_FILE_OTHER || extract_prepare_target(target)) {  // other settings, broken; no folder
            fprintf(stderr, "error: %s\n", sd_last_error());
            failed++;
            continue;
        }
        GroupImage *g = &run.group[run.n_group];
        g->item = it;
        if (!(g->target = strdup(target))) { sd_errorf("out of memory"); goto fail; }
        if (++run.n_group == a.batch) flush_group(&model, &job, &pre, &a, &expect, &run);
    }
    if (!g_stop_signal) flush_group(&model, &job, &pre, &a, &expect, &run);
    for (int i = 0; i < run.n_group; i++) free((char *)run.group[i].target);  // a stop left them waiting
    free(run.group);
    done_count = run.done_count;
    failed += run.failed;
    if (g_stop_signal) {
        fprintf(stderr, "extract: stopped by signal %d after %d new file%s; run the same command again to resume\n",
                (int)g_stop_signal, done_count, done_count == 1 ? "" : "s");
        status = 128 + (int)g_stop_signal;
        goto cleanup;
    }
    if (g_scaling_unlisted)
        fprintf(stderr, "warning: %d more image%s had pixels clipped by --scale %s (not listed; each file's 'scaling' "
                        "metadata has the counts)\n", g_scaling_unlisted, g_scaling_unlisted == 1 ? "" : "s", a.pre.scale);
    if (!a.quiet || failed)
        fprintf(stderr, "extract: %d written, %d already done, %d failed (%.1f s)\n", done_count, skipped, failed,
                sd_now() - run.t0);
    status = failed ? 1 : 0;
    goto cleanup;
usage:
    fprintf(stderr, "satdifuser extract: %s\n", sd_last_error());
    status = 2;
    goto cleanup;
fail:
    fprintf(stderr, "satdifuser extract: %s\n", sd_last_error());
    status = 2;
cleanup:
    ddim_walk_free(&walk);
    feature_meta_free(&expect);
    if (model_loaded) diffusion_model_free(&model);
    extract_inputs_free(&list);
    free(stats_min);
    free(stats_max);
    return status;
}
