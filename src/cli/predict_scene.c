// predict --tile N [--overlap K]: the frozen backbone and a segmentation head run window by window
// over a scene of any size (models/tiling.h: positions, cross-fade of the probabilities, bounded
// memory), the class map written at the scene's full resolution (GeoTIFF with the input's
// georeferencing and a palette, plus a preview PNG; or a palette PNG).
//
// Each window goes through what `predict` does to one image: the run's extraction settings
// (RUN/features_meta.json) and preprocessing (cli/preprocess_args.h, the parser extract uses), the
// feature pyramid (features_extract, in this process: the model is loaded once), the head with its
// output at the window's size, and the MoE call counters reset to the same value before every
// window, so a window's probabilities are those `predict` gives for that window cut out alone.
#include "cli/predict_scene.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/preprocess_args.h"
#include "core/error.h"
#include "core/half.h"
#include "core/runtime.h"
#include "heads/head.h"
#include "io/npy.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "io/tiff.h"
#include "io/tiff_write.h"
#include "models/features.h"
#include "models/nn.h"
#include "models/preprocess.h"
#include "models/tiling.h"
#include "train/checkpoint.h"

void predict_palette_colour(int c, unsigned char rgb[3]) {
    static const unsigned char base[10][3] = {{31, 119, 180}, {44, 160, 44},  {255, 127, 14}, {214, 39, 40},
                                              {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                              {188, 189, 34},  {23, 190, 207}};
    for (int k = 0; k < 3; k++) rgb[k] = (unsigned char)((base[c % 10][k] + 37 * (c / 10)) & 0xFF);
}

// ---------------------------------------------------------------------------
// Signals: the first SIGINT/SIGTERM stops between windows (and between UNet calls) and nothing
// is written; a second one kills (the handler puts the default back).

static volatile sig_atomic_t g_scene_signal = 0;

static void on_scene_signal(int sig) {
    g_scene_signal = sig;
    signal(sig, SIG_DFL);
}

static int scene_should_stop(void *ctx) {
    (void)ctx;
    return g_scene_signal != 0;
}

static long g_test_stop_after = -1;  // test hook: SIGINT to ourselves after this many windows

// ---------------------------------------------------------------------------
// The model on one window.

typedef struct {
    DiffusionModel model;
    int model_loaded;
    ExtractOptions eo;
    char layer_buf[256], seed_text[32];
    PreprocessOptions po;
    double *stats_min, *stats_max;
    HeadModel head;
    HeadConfig hc;
    int64_t moe_steps[FUSION_MAX_SCALES];  // the counters every window starts from
    int f16;                               // the run's features were stored as f16: round as the cache did
    const char *input;
    // progress
    double t0, last_print;
    int tty;
} SceneCtx;

static int scene_window(void *vctx, const float *win, int bands, int tile, float *probs) {
    SceneCtx *c = (SceneCtx *)vctx;
    Tensor x;
    memset(&x, 0, sizeof(x));
    if (preprocess_image(win, bands, tile, tile, &c->po, c->input, &x)) return -1;
    FeaturePyramid p;
    memset(&p, 0, sizeof(p));
    int rc = features_extract(&c->model, &c->eo, &x, &p);
    tensor_free(&x);
    if (rc) {
        feature_pyramid_free(&p);
        return -1;
    }
    const FeatureLayout *fl = &c->hc.layout;
    FusionInput in;
    memset(&in, 0, sizeof(in));
    in.B = 1;
    if (p.n_steps != fl->num_timesteps || p.n_scales != fl->num_scales)
        rc = sd_errorf("the model gives %d steps x %d scales, the head takes %d x %d: was the head trained on this "
                       "model's features?", p.n_steps, p.n_scales, fl->num_timesteps, fl->num_scales);
    for (int i = 0; !rc && i < p.n_steps; i++)
        for (int s = 0; !rc && s < p.n_scales; s++) {
            Tensor *t = &p.feats[i * p.n_scales + s];
            if (t->shape[1] != fl->scale_channels[s] || t->shape[3] != fl->width[s]) {
                rc = sd_errorf("feature scale %d is %d channels at width %d, the head takes %d at width %d: was it "
                               "trained on this model's features at this size?", s, t->shape[1], t->shape[3],
                               fl->scale_channels[s], fl->width[s]);
                break;
            }
            if (c->f16)  // the feature cache stored f16: the head was trained (and predict runs) on these values
                for (int64_t k = 0; k < tensor_numel(t); k++) t->data[k] = f32_from_f16(f16_from_f32(t->data[k]));
            in.feat[i][s] = t->data;
            in.H[s] = t->shape[2];
            in.W[s] = t->shape[3];
        }
    if (!rc && c->hc.fuser.kind == FUSER_MOE)
        for (int s = 0; s < c->head.fuser.moe.num_scales; s++) c->head.fuser.moe.scales[s].global_step = c->moe_steps[s];
    if (!rc) rc = head_model_forward(&c->head, &in);
    if (!rc) {  // softmax over the classes at each pixel
        const float *lg = head_model_logits(&c->head);
        int C = c->hc.num_classes;
        size_t n = (size_t)tile * tile;
        for (size_t q = 0; q < n; q++) {
            float mx = lg[q];
            for (int k = 1; k < C; k++) mx = lg[(size_t)k * n + q] > mx ? lg[(size_t)k * n + q] : mx;
            float sum = 0.0f;
            for (int k = 0; k < C; k++) sum += probs[(size_t)k * n + q] = expf(lg[(size_t)k * n + q] - mx);
            for (int k = 0; k < C; k++) probs[(size_t)k * n + q] /= sum;
        }
    }
    feature_pyramid_free(&p);
    return rc;
}

static void hms(double s, char *buf, size_t size) {
    long t = (long)(s + 0.5);
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

// Progress on stderr: one updated line on a terminal, plain lines (every 10 s, and the first and
// last window) otherwise, so a log file stays readable.
static void scene_progress(void *vctx, const TileProgress *p) {
    SceneCtx *c = (SceneCtx *)vctx;
    double now = sd_now(), el = now - c->t0, each = el / p->done;
    int last = p->done == p->total;
    if (!c->tty && !last && p->done > 1 && now - c->last_print < 10.0 && g_test_stop_after < 0) return;
    c->last_print = now;
    if (g_test_stop_after >= 0 && p->done >= g_test_stop_after) raise(SIGINT);
    char eta[32], spent[32];
    hms(each * (p->total - p->done), eta, sizeof(eta));
    hms(el, spent, sizeof(spent));
    fprintf(stderr, "%s[%d/%d windows, row %d/%d] %.1f%%, %.2f s per window, %s spent, %s left%s", c->tty ? "\r" : "",
            p->done, p->total, p->row + 1, p->rows, 100.0 * p->done / p->total, each, spent, eta,
            c->tty && !last ? "   " : "\n");
    fflush(stderr);
}

// ---------------------------------------------------------------------------
// Options from the run: RUN/features_meta.json as `extract` recorded it.

static const char *meta_str(const JsonValue *meta, const char *key) {
    const JsonValue *v = json_get(meta, key);
    return v && v->type == JSON_STRING ? v->string : NULL;
}

static int scene_options(SceneCtx *c, const JsonValue *meta, const SceneArgs *a, const SceneSource *src, int *size) {
    ExtractOptions *o = &c->eo;
    extract_options_default(o);
    o->should_stop = scene_should_stop;
    const char *s;
    if ((s = meta_str(meta, "prompt"))) o->prompt = s;
    if ((s = meta_str(meta, "num_inference_steps"))) o->walk.num_inference_steps = atoi(s);
    JsonValue list;
    if ((s = meta_str(meta, "save_timesteps"))) {
        if (json_parse(s, strlen(s), "save_timesteps", &list) || list.type != JSON_ARRAY || list.count < 1 ||
            list.count > DDIM_MAX_SAVE) {
            json_free(&list);
            return sd_errorf("features_meta.json: bad 'save_timesteps'");
        }
        o->walk.n_save = list.count;
        for (int k = 0; k < list.count; k++) o->walk.save_index[k] = (int)list.items[k].number;
        json_free(&list);
    }
    if ((s = meta_str(meta, "layer_suffixes"))) {
        if (json_parse(s, strlen(s), "layer_suffixes", &list) || list.type != JSON_ARRAY) {
            json_free(&list);
            return sd_errorf("features_meta.json: bad 'layer_suffixes'");
        }
        size_t n = 0;
        o->n_suffixes = 0;
        for (int k = 0; k < list.count && o->n_suffixes < EXTRACT_MAX_SUFFIXES; k++) {
            if (list.items[k].type != JSON_STRING || n + strlen(list.items[k].string) + 1 > sizeof(c->layer_buf)) continue;
            strcpy(c->layer_buf + n, list.items[k].string);
            o->suffixes[o->n_suffixes++] = c->layer_buf + n;
            n += strlen(list.items[k].string) + 1;
        }
        json_free(&list);
    }
    if ((s = meta_str(meta, "latent")) && !strncmp(s, "sample:", 7)) {
        o->latent_sample = 1;
        o->seed = strtoull(s + 7, NULL, 10);
    }
    if ((s = meta_str(meta, "output_handling")) && !strcmp(s, "config")) o->walk.output_handling = DDIM_OUTPUT_BY_CONFIG;
    c->f16 = (s = meta_str(meta, "dtype")) && !strcmp(s, "f16");
    int precision = (s = meta_str(meta, "compute_precision")) && (!strcmp(s, "bf16") || !strcmp(s, "f16"))
                        ? nn_precision_parse(s, "compute_precision") : NN_F32;
    // Preprocessing: the run's record, then predict's own options (--bands --scale --size --resize
    // --crop), through extract's parser (cli/preprocess_args.h): the same meanings and errors.
    PreArgs pa;
    pre_args_default(&pa);
    PreArgv pv;
    memset(&pv, 0, sizeof(pv));
    if ((s = meta_str(meta, "preprocessing")) && pre_args_from_json(s, &pv)) return sd_error_context("features_meta.json");
    for (int k = 0; k + 1 < pv.argc; k += 2)
        if (pre_args_take(&pa, pv.argv[k], pv.argv[k + 1]) < 0) return sd_error_context("features_meta.json");
    for (int k = 0; k + 1 < a->n_user; k += 2) {
        const char *opt = a->user[k], *val = a->user[k + 1];
        if (!strcmp(opt, "--precision")) {
            if ((precision = nn_precision_parse(val, "--precision")) < 0) return -1;
        } else if (pre_args_take(&pa, opt, val) < 0) {
            return -1;
        }
    }
    int band_names = 0;
    if (pre_args_options(&pa, &c->po, &c->stats_min, &c->stats_max, &band_names)) return -1;
    if (band_names) return sd_errorf("--bands '%s': band names are for GEO-Bench samples; give band numbers", pa.bands);
    if (c->po.scale == SCALE_IMAGE_MINMAX || c->po.scale == SCALE_PERCENTILE)
        return sd_errorf("--scale %s: every window must be scaled with the same, fixed numbers (a per-image scaling "
                         "would differ from window to window): give 4095, 255, 65535, clip, minmax:STATS.json "
                         "(per-band min and max) or auto", pa.scale);
    if (!strcmp(pa.scale, "auto")) {  // from the file's sample type, as extract
        const char *why;
        c->po.scale = pre_args_auto_scale(&src->facts, &why);
        fprintf(stderr, "scale: auto, %s\n", why);
    }
    *size = pa.size;
    int bands[PRE_MAX_BANDS];  // the bands exist: said now, not at the first window
    if (preprocess_choose_bands(&c->po, src->bands, a->input, bands)) return -1;
    return nn_set_precision(precision);
}

// ---------------------------------------------------------------------------
// Writing the map.

static const char *extension(const char *path) {
    const char *base = strrchr(path, '/'), *dot;
    base = base ? base + 1 : path;
    dot = strrchr(base, '.');
    return dot ? dot : "";
}

int predict_write_map(const char *out, const uint8_t *map, int W, int H, int C, int nodata_class, const char *georef,
                      const JsonValue *names) {
    unsigned char palette[256 * 3];
    memset(palette, 0, sizeof(palette));  // no data and unused entries: black
    for (int c = 0; c < C; c++) predict_palette_colour(c, palette + 3 * c);
    int npal = nodata_class >= C ? nodata_class + 1 : C;
    const char *ext = extension(out);
    uint8_t *png = NULL;
    size_t png_len = 0;
    if (!strcasecmp(ext, ".npy")) {  // (H, W) uint8 for numpy
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", out, (long)getpid());
        int64_t shape[2] = {H, W};
        if (npy_write(tmp, NPY_UINT8, 2, shape, map)) { unlink(tmp); return -1; }
        if (rename(tmp, out)) { unlink(tmp); return sd_errorf("%s: cannot rename into place: %s", out, strerror(errno)); }
        return 0;
    }
    if (!strcasecmp(ext, ".png")) {
        if (png_encode(map, W, H, 1, palette, npal, &png, &png_len)) return sd_error_context("%s", out);
        int rc = write_file_atomic(out, png, png_len);
        free(png);
        return rc;
    }
    // GeoTIFF: the georeferencing tags of the input, when it is a (Geo)TIFF on the same grid.
    TiffReader *r = NULL;
    TiffImage info;
    memset(&info, 0, sizeof(info));
    if (georef && tiff_open(georef, &r, &info) == 0 && (info.width != W || info.height != H)) {
        tiff_close(r);  // another grid: its tags would put the map in the wrong place
        r = NULL;
        memset(&info, 0, sizeof(info));
    }
    sd_clear_error();
    char desc[4096];
    size_t n = (size_t)snprintf(desc, sizeof(desc), "satdifuser class map; classes:");
    const JsonValue *list = names && names->type == JSON_OBJECT ? json_get(names, "class_names") : NULL;
    for (int c = 0; c < C && n < sizeof(desc); c++) {
        if (list && c < list->count) n += (size_t)snprintf(desc + n, sizeof(desc) - n, "%s %d %s", c ? "," : "", c, list->items[c].string);
        else n += (size_t)snprintf(desc + n, sizeof(desc) - n, "%s %d", c ? "," : "", c);
    }
    if (nodata_class >= 0 && n < sizeof(desc)) snprintf(desc + n, sizeof(desc) - n, "; %d no data", nodata_class);
    TiffWriteImage ti;
    memset(&ti, 0, sizeof(ti));
    ti.width = W, ti.height = H, ti.channels = 1, ti.pixels = map;
    ti.palette_rgb = palette, ti.palette_size = npal;
    ti.deflate = 1;
    ti.geo = r ? &info.geo : NULL;
    ti.description = desc;
    ti.has_nodata = nodata_class >= 0;
    ti.nodata = nodata_class;
    int rc = tiff_write(out, &ti);
    tiff_close(r);
    if (rc) return rc;
    // The preview: every f-th pixel (the centre of each f x f block), at most 2048 on the longer side.
    int f = ((W > H ? W : H) + 2047) / 2048;
    if (f < 1) f = 1;
    int pw = (W + f - 1) / f, ph = (H + f - 1) / f;
    uint8_t *pv = (uint8_t *)malloc((size_t)pw * ph);
    if (!pv) return sd_errorf("out of memory");
    for (int y = 0; y < ph; y++) {
        int sy = y * f + f / 2 < H ? y * f + f / 2 : H - 1;
        for (int x = 0; x < pw; x++) {
            int sx = x * f + f / 2 < W ? x * f + f / 2 : W - 1;
            pv[(size_t)y * pw + x] = map[(size_t)sy * W + sx];
        }
    }
    char path[4200];
    snprintf(path, sizeof(path), "%.*s_preview.png", (int)(strlen(out) - strlen(ext)), out);
    rc = png_encode(pv, pw, ph, 1, palette, npal, &png, &png_len);
    free(pv);
    if (!rc) rc = write_file_atomic(path, png, png_len);
    free(png);
    if (!rc) printf("  preview %dx%d (1 pixel in %d): %s\n", pw, ph, f, path);
    return rc;
}

// ---------------------------------------------------------------------------

int predict_scene(const SceneArgs *a) {
    SceneCtx c;
    memset(&c, 0, sizeof(c));
    c.input = a->input;
    SceneSource src;
    memset(&src, 0, sizeof(src));
    JsonValue cfg, meta, names;
    memset(&cfg, 0, sizeof(cfg));
    memset(&meta, 0, sizeof(meta));
    memset(&names, 0, sizeof(names));
    uint8_t *map = NULL;
    int status = 2, head_ready = 0, size = 0;
    char path[4200];

    snprintf(path, sizeof(path), "%s/head_config.json", a->run);
    if (json_parse_file(path, &cfg)) goto fail;
    if (head_config_from_json(&c.hc, &cfg)) { sd_error_context("%s", path); goto fail; }
    if (c.hc.task != TASK_SEGMENTATION) {
        sd_errorf("--tile needs a segmentation head (%s is a %s head): a class per image needs no windows",
                  a->run, head_task_name(c.hc.task));
        goto fail;
    }
    if (c.hc.num_classes > 255) { sd_errorf("%d classes do not fit an 8-bit map", c.hc.num_classes); goto fail; }
    snprintf(path, sizeof(path), "%s/classes.json", a->run);
    if (access(path, F_OK) == 0 && json_parse_file(path, &names)) goto fail;
    snprintf(path, sizeof(path), "%s/features_meta.json", a->run);
    if (json_parse_file(path, &meta)) goto fail;
    if (scene_open(&src, a->input)) goto fail;
    if (a->tile > src.width || a->tile > src.height) {
        sd_errorf("--tile %d: %s is %dx%d, smaller than one window; predict it without --tile (or give a smaller "
                  "--tile)", a->tile, a->input, src.width, src.height);
        goto fail;
    }
    if (scene_options(&c, &meta, a, &src, &size)) goto fail;
    if (size > 0 && size != a->tile)
        fprintf(stderr, "note: the head was trained at --size %d: each %dx%d window is resized to %dx%d before the "
                        "model sees it (--tile %d keeps the scene's resolution)\n", size, a->tile, a->tile, size, size, size);
    status = 1;
    // The head, its output at the window's size.
    c.hc.output_h = c.hc.output_w = a->tile;
    if (head_model_init(&c.head, &c.hc)) goto fail;
    head_ready = 1;
    snprintf(path, sizeof(path), "%s/best.safetensors", a->run);
    if (head_model_load(&c.head, a->weights ? a->weights : path)) goto fail;
    int found = 0;
    if (!a->moe_restart && moe_counter_read(a->run, &c.head, &found)) goto fail;
    if (c.hc.fuser.kind == FUSER_MOE)
        for (int s = 0; s < c.head.fuser.moe.num_scales; s++) c.moe_steps[s] = c.head.fuser.moe.scales[s].global_step;
    head_model_set_mode(&c.head, 0, 0);
    if (diffusion_model_load(&c.model, a->model, a->unet, 0, c.eo.prompt)) goto fail;
    c.model_loaded = 1;
    if (!(map = (uint8_t *)malloc((size_t)src.width * (size_t)src.height))) {
        sd_errorf("out of memory for a %dx%d class map", src.width, src.height);
        goto fail;
    }
    int *xs, *ys, nx, ny;
    if (tile_positions(src.width, a->tile, a->overlap, &xs, &nx)) goto fail;
    if (tile_positions(src.height, a->tile, a->overlap, &ys, &ny)) { free(xs); goto fail; }
    free(xs), free(ys);
    fprintf(stderr, "predict: %s, %dx%d pixels, %d bands: %d x %d windows of %d (overlap %d, stride %d), %d classes -> %s\n",
            a->input, src.width, src.height, src.bands, nx, ny, a->tile, a->overlap, a->tile - a->overlap,
            c.hc.num_classes, a->out);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_scene_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.tty = isatty(2);
    const char *hook = getenv("SATDIFUSER_TEST_STOP_AFTER");
    if (hook) g_test_stop_after = strtol(hook, NULL, 10);
    c.t0 = c.last_print = sd_now();
    TileJob job;
    memset(&job, 0, sizeof(job));
    job.src = &src;
    job.tile = a->tile, job.overlap = a->overlap, job.classes = c.hc.num_classes;
    job.window = scene_window, job.ctx = &c;
    job.should_stop = scene_should_stop, job.progress = scene_progress;
    job.nodata_class = src.facts.has_nodata ? 255 : -1;
    job.classmap = map;
    int rc = tiles_run(&job);
    if (rc == 1 || g_scene_signal) {
        fprintf(stderr, "%spredict: stopped by signal %d; nothing written\n", c.tty ? "\n" : "", (int)g_scene_signal);
        status = 128 + (int)g_scene_signal;
        goto done;
    }
    if (rc) goto fail;
    double secs = sd_now() - c.t0, km2 = (double)src.width * src.height * 100.0 / 1e6;  // at 10 m per pixel
    if (predict_write_map(a->out, map, src.width, src.height, c.hc.num_classes, job.nodata_class, a->input, &names))
        goto fail;
    printf("segmentation map %dx%d (%d classes%s) written to %s\n", src.width, src.height, c.hc.num_classes,
           job.nodata_class >= 0 ? ", 255 = no data" : "", a->out);
    long long counts[256] = {0};
    for (size_t q = 0; q < (size_t)src.width * src.height; q++) counts[map[q]]++;
    const JsonValue *list = names.type == JSON_OBJECT ? json_get(&names, "class_names") : NULL;
    for (int k = 0; k < 256; k++)
        if (counts[k])
            printf("  class %d %s: %.1f%% of the pixels\n", k, k == job.nodata_class ? "(no data)" : list && k < list->count ? list->items[k].string : "",
                   100.0 * counts[k] / ((double)src.width * src.height));
    printf("  %d windows in %.1f s (%.3f s each): %.4g km^2 per hour at 10 m per pixel (%.4g km^2 here)\n", nx * ny,
           secs, secs / (nx * ny), km2 / secs * 3600.0, km2);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "satdifuser predict: %s\n", sd_last_error());
done:
    if (c.model_loaded) diffusion_model_free(&c.model);
    if (head_ready) head_model_free(&c.head);
    scene_close(&src);
    free(map);
    free(c.stats_min);
    free(c.stats_max);
    json_free(&cfg);
    json_free(&meta);
    json_free(&names);
    return status;
}
