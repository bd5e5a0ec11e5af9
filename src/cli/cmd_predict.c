// satdifuser predict: one image to a class (classification) or a segmentation
// map (PNG with a palette), with a trained head.
//
// The image goes through exactly the extraction the head was trained on: the
// settings recorded in RUN_DIR/features_meta.json (prompt, steps, save steps,
// layers, latent, preprocessing) are passed to `satdifuser extract`, which
// writes the feature file to a temporary folder; the head then runs on it.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/preprocess_args.h"
#include "cli/predict_scene.h"
#include "core/error.h"
#include "heads/head.h"
#include "io/json.h"
#include "io/outdir.h"
#include "figures/figures.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "models/extract_job.h"  // PROMPT_EMBEDDING_NAME
#include "train/checkpoint.h"

static void predict_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser predict --model DIR --head RUN_DIR --input IMG --out PRED [--weights FILE]\n"
            "                          [--tile N [--overlap K]]\n\n"
            "Runs the frozen diffusion backbone on IMG with the extraction settings the head was trained\n"
            "on (RUN_DIR/features_meta.json), then the head (RUN_DIR/best.safetensors or --weights).\n"
            "Segmentation: PRED is NAME.png, a PNG of class indices with a colour palette, at the image's\n"
            "size; NAME.tif, a TIFF with the palette and the input GeoTIFF's georeferencing tags (plus\n"
            "NAME_preview.png); or NAME.npy, (H, W) uint8. Classification: PRED must be NAME.json, the\n"
            "class, its name and the scores (also printed). Class names come from the training labels\n"
            "(RUN_DIR/classes.json).\n"
            "  --bands LIST, --scale MODE, --size N, --resize shorter|exact, --crop center|none,\n"
            "  --precision f32|bf16|f16  replace the run's preprocessing or precision for this image, as\n"
            "                    `satdifuser extract` takes them (extract --help; one parser for both);\n"
            "                    e.g. --bands 4,3,2 for a 13-band scene of a head trained on RGB\n"
            "  --unet DIR        the UNet's folder when it is not MODEL/unet (DiffusionSat's release:\n"
            "                    --unet ROOT/checkpoint-150000/unet)\n"
            "  --features FILE   use an existing feature file instead of extracting (then --model and\n"
            "                    --input are not needed)\n"
            "  --tile N          a scene of any size (segmentation): the model runs on N x N windows of\n"
            "                    the image at its own resolution (N: the run's --size keeps it; other N are\n"
            "                    resized to it), the windows' class probabilities are cross-faded over\n"
            "                    their overlap, the map is written at the scene's full size; the scene is\n"
            "                    read a row of windows at a time (docs/scenes.md)\n"
            "  --overlap K       pixels shared by neighbouring windows (default N/8), 0 <= K < N\n"
            "  --moe-counter continue|restart   an MoE head's call counters: continue from\n"
            "                    RUN_DIR/moe_counter.json as train's final test (default), or start at 0\n");
}

// Reads a string value of the metadata JSON object, or NULL.
static const char *meta_string(const JsonValue *meta, const char *key) {
    const JsonValue *v = json_get(meta, key);
    return v && v->type == JSON_STRING ? v->string : NULL;
}

// Runs `satdifuser extract` for one image into tmp_dir with the run's settings.
// `user` (n_user strings, option and value pairs: --bands/--scale/--precision) go last, so they replace the
// run's values: extract's own parser reads them (one parser for both commands). *size: the resize target.
static int extract_to(const char *model, const char *unet, const char *image, const char *tmp_dir, const JsonValue *meta,
                      char **user, int n_user, int *size_out) {
    char *argv[64];
    int argc = 0;
    char steps_list[256] = "", layers_list[256] = "", seed_s[32] = "";
    argv[argc++] = (char *)"--model";
    argv[argc++] = (char *)model;
    if (unet) {
        argv[argc++] = (char *)"--unet";
        argv[argc++] = (char *)unet;
    }
    argv[argc++] = (char *)"--input";
    argv[argc++] = (char *)image;
    argv[argc++] = (char *)"--out";
    argv[argc++] = (char *)tmp_dir;
    argv[argc++] = (char *)"--quiet";
    JsonValue list;
    const char *s;
    if ((s = meta_string(meta, "prompt"))) { argv[argc++] = (char *)"--prompt"; argv[argc++] = (char *)s; }
    if ((s = meta_string(meta, "num_inference_steps"))) { argv[argc++] = (char *)"--steps"; argv[argc++] = (char *)s; }
    // JSON lists "[47, 45, 40]" / "[\"attn1\", \"conv2\"]" become "47,45,40" / "attn1,conv2"
    const char *keys[2] = {"save_timesteps", "layer_suffixes"};
    char *outs[2] = {steps_list, layers_list};
    const char *opts[2] = {"--save-steps", "--layers"};
    for (int k = 0; k < 2; k++) {
        if (!(s = meta_string(meta, keys[k]))) continue;
        if (json_parse(s, strlen(s), keys[k], &list) || list.type != JSON_ARRAY) { json_free(&list); return sd_errorf("features_meta.json: bad '%s'", keys[k]); }
        size_t n = 0;
        for (int i = 0; i < list.count; i++) {
            if (list.items[i].type == JSON_NUMBER) n += (size_t)snprintf(outs[k] + n, 256 - n, "%s%d", i ? "," : "", (int)list.items[i].number);
            else if (list.items[i].type == JSON_STRING) n += (size_t)snprintf(outs[k] + n, 256 - n, "%s%s", i ? "," : "", list.items[i].string);
        }
        json_free(&list);
        argv[argc++] = (char *)opts[k];
        argv[argc++] = outs[k];
    }
    if ((s = meta_string(meta, "latent")) && !strncmp(s, "sample:", 7)) {
        snprintf(seed_s, sizeof(seed_s), "%s", s + 7);
        argv[argc++] = (char *)"--latent";
        argv[argc++] = (char *)"sample";
        argv[argc++] = (char *)"--seed";
        argv[argc++] = seed_s;
    }
    if ((s = meta_string(meta, "compute_precision")) && (!strcmp(s, "bf16") || !strcmp(s, "f16"))) {
        argv[argc++] = (char *)"--precision";
        argv[argc++] = (char *)s;
    }
    if ((s = meta_string(meta, "output_handling")) && !strcmp(s, "config")) {
        argv[argc++] = (char *)"--prediction";
        argv[argc++] = (char *)"config";
    }
    PreArgv recorded;  // the run's --bands/--scale/--size/--resize/--crop (cli/preprocess_args.h)
    if ((s = meta_string(meta, "preprocessing")) && pre_args_from_json(s, &recorded) == 0) {
        for (int k = 0; k < recorded.argc; k++) argv[argc++] = recorded.argv[k];
        *size_out = recorded.size;
    }
    for (int k = 0; k < n_user; k++) argv[argc++] = user[k];
    argv[argc] = NULL;
    int rc = cmd_extract(argc, argv);
    return rc == 0 ? 0 : sd_errorf("%s: feature extraction failed (see the messages above)", image);
}

// Loads feat.<i>.<s> of a feature file into `in` (batch 1); the buffers are malloc'd into bufs.
static int load_features(const char *path, const HeadConfig *hc, FusionInput *in, float **bufs, int *nbufs, int *src_h,
                         int *src_w) {
    SafeTensors st;
    if (st_open(&st, path)) return SD_FAIL;
    memset(in, 0, sizeof(*in));
    in->B = 1;
    *nbufs = 0;
    int rc = 0;
    char name[64];
    for (int i = 0; i < hc->layout.num_timesteps && !rc; i++) {
        for (int s = 0; s < hc->layout.num_scales && !rc; s++) {
            snprintf(name, sizeof(name), "feat.%d.%d", i, s);
            const StEntry *e;
            if ((rc = st_require(&st, name, &e))) break;
            int nd = e->ndim;
            if (nd < 3 || e->shape[nd - 3] != hc->layout.scale_channels[s] || e->shape[nd - 1] != hc->layout.width[s]) {
                if (nd >= 3 && e->shape[nd - 3] == hc->layout.scale_channels[s])  // the width alone differs
                    rc = sd_errorf("%s: '%s' is %lld wide where the head's features were %d: the image has another "
                                   "aspect ratio than the training images (extract's default --resize shorter keeps "
                                   "it); a head trained on features of extract --crop center or --resize exact takes "
                                   "images of any aspect ratio (predict repeats the option)", path, name,
                                   (long long)e->shape[nd - 1], hc->layout.width[s]);
                else
                    rc = sd_errorf("%s: '%s' does not match the head's feature layout (%d channels at width %d): was "
                                   "it extracted with the same model and layers?", path, name,
                                   hc->layout.scale_channels[s], hc->layout.width[s]);
                break;
            }
            float *buf = (float *)malloc((size_t)e->numel * sizeof(float));
            if (!buf) { rc = sd_errorf("out of memory"); break; }
            bufs[(*nbufs)++] = buf;
            st_entry_to_f32(e, buf);
            in->feat[i][s] = buf;
            in->H[s] = (int)e->shape[nd - 2];
            in->W[s] = (int)e->shape[nd - 1];
        }
    }
    *src_h = *src_w = 0;
    const char *shape = st_metadata(&st, "source_shape");
    JsonValue v;
    if (!rc && shape && json_parse(shape, strlen(shape), "source_shape", &v) == 0) {
        if (v.type == JSON_ARRAY && v.count == 3) {
            *src_h = (int)v.items[1].number;
            *src_w = (int)v.items[2].number;
        }
        json_free(&v);
    }
    st_close(&st);
    return rc;
}

// --out by extension: a segmentation map is a PNG, a class a JSON file; anything else is refused
// before the image is computed (a JSON file named .png helps nobody).
static int check_out_extension(const char *out, HeadTask task) {
    const char *base = strrchr(out, '/'), *dot;
    base = base ? base + 1 : out;
    dot = strrchr(base, '.');
    const char *ext = dot ? dot : "";
    int seg = task == TASK_SEGMENTATION;
    if (seg && (!strcasecmp(ext, ".png") || !strcasecmp(ext, ".tif") || !strcasecmp(ext, ".tiff") || !strcasecmp(ext, ".npy")))
        return 0;
    if (!seg && !strcasecmp(ext, ".json")) return 0;
    if (seg)
        return sd_errorf("--out %s: a segmentation head writes a map of class indices with a palette: give "
                         "--out NAME.png, NAME.tif (GeoTIFF) or NAME.npy", out);
    return sd_errorf("--out %s: a %s head writes JSON (the class, its name and the scores): give --out NAME.json", out,
                     head_task_name(task));
}

// RUN/classes.json ({"class_names": [...]}, written by train when the labels name the classes), or
// an empty value when absent. A count other than the head's is an error.
static int read_class_names(const char *run, int num_classes, JsonValue *names) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/classes.json", run);
    memset(names, 0, sizeof(*names));
    if (access(path, F_OK) != 0) return 0;
    JsonValue j;
    if (json_parse_file(path, &j)) return SD_FAIL;
    const JsonValue *list = json_get(&j, "class_names");
    int ok = list && list->type == JSON_ARRAY && list->count == num_classes;
    for (int c = 0; ok && c < list->count; c++) ok = list->items[c].type == JSON_STRING;
    if (!ok) {
        json_free(&j);
        return sd_errorf("%s: expected \"class_names\": a list of %d strings (the head's classes)", path, num_classes);
    }
    *names = j;
    return 0;
}

static const char *class_name(const JsonValue *names, int c, char *buf, size_t size) {
    const JsonValue *list = names->type == JSON_OBJECT ? json_get(names, "class_names") : NULL;
    if (list && c < list->count) return list->items[c].string;
    snprintf(buf, size, "%d", c);
    return buf;
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *unet = NULL, *run = NULL, *input = NULL, *out = NULL, *weights = NULL, *features = NULL;
    int moe_restart = 0, n_user = 0, tile = 0, overlap = -1;
    char *user[14];  // the preprocessing options and --precision with their values, for extract
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { predict_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "satdifuser predict: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--unet")) unet = v;
        else if (!strcmp(a, "--head")) run = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--features")) features = v;
        else if (pre_args_is_option(a) || !strcmp(a, "--precision")) {  // extract's options (one parser)
            for (int k = 0; k < n_user; k += 2)
                if (!strcmp(user[k], a)) { fprintf(stderr, "satdifuser predict: %s given twice\n", a); return 2; }
            user[n_user++] = argv[i - 1];
            user[n_user++] = argv[i];
        }
        else if (!strcmp(a, "--tile") || !strcmp(a, "--overlap")) {
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < (a[2] == 't' ? 8 : 0) || n > 65536) {
                fprintf(stderr, "satdifuser predict: %s '%s': expected a whole number of pixels %s\n", a, v,
                        a[2] == 't' ? "from 8 to 65536" : "from 0 (no overlap) to below --tile");
                return 2;
            }
            if (a[2] == 't') tile = (int)n;
            else overlap = (int)n;
        }
        else if (!strcmp(a, "--moe-counter") && (!strcmp(v, "continue") || !strcmp(v, "restart"))) moe_restart = v[0] == 'r';
        else if (!strcmp(a, "--moe-counter")) { fprintf(stderr, "satdifuser predict: --moe-counter '%s': expected continue or restart\n", v); return 2; }
        else { fprintf(stderr, "satdifuser predict: unknown option '%s'\n", a); predict_usage(stderr); return 2; }
    }
    if (!run || !out || (!features && (!model || !input))) { predict_usage(stderr); return 2; }
    if (features && n_user) {
        fprintf(stderr, "satdifuser predict: %s applies to an extraction, not to --features\n", user[0]);
        return 2;
    }
    if (overlap >= 0 && !tile) {
        fprintf(stderr, "satdifuser predict: --overlap is the overlap of --tile windows: give --tile N too\n");
        return 2;
    }
    if (tile && overlap >= tile) {
        fprintf(stderr, "satdifuser predict: --overlap %d must be smaller than --tile %d (windows move by tile - "
                        "overlap pixels)\n", overlap, tile);
        return 2;
    }
    if (tile && features) {
        fprintf(stderr, "satdifuser predict: --tile runs the model on windows of --input; it cannot use --features\n");
        return 2;
    }
    if (outfile_check(out, "--out")) {  // before the image is computed
        fprintf(stderr, "satdifuser predict: %s\n", sd_last_error());
        return 2;
    }

    char path[4096], tmp_dir[4096] = "", feat_path[4096], num[16];
    JsonValue cfg_json, meta, names;
    memset(&cfg_json, 0, sizeof(cfg_json));
    memset(&meta, 0, sizeof(meta));
    memset(&names, 0, sizeof(names));
    int size = 0;
    HeadModel m;
    memset(&m, 0, sizeof(m));
    float *bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    int nbufs = 0, rc = 1;
    unsigned char *pixels = NULL;

    snprintf(path, sizeof(path), "%s/head_config.json", run);
    if (json_parse_file(path, &cfg_json)) goto done;
    HeadConfig hc;
    if (head_config_from_json(&hc, &cfg_json)) { sd_error_context("%s", path); goto done; }
    if (check_out_extension(out, hc.task)) { rc = 2; goto done; }  // before the image is computed
    if (tile) {  // a scene, window by window (predict_scene.c)
        SceneArgs sa = {model, unet, run, input, out, weights, tile, overlap >= 0 ? overlap : tile / 8, moe_restart,
                        user, n_user};
        json_free(&cfg_json);
        return predict_scene(&sa);
    }
    if (read_class_names(run, hc.num_classes, &names)) goto done;
    if (features) {
        snprintf(feat_path, sizeof(feat_path), "%s", features);
    } else {
        snprintf(path, sizeof(path), "%s/features_meta.json", run);
        if (json_parse_file(path, &meta)) goto done;
        snprintf(tmp_dir, sizeof(tmp_dir), "%s.features.tmp.%d", out, (int)getpid());
        if (extract_to(model, unet, input, tmp_dir, &meta, user, n_user, &size)) goto done;
        // the file's name is the image's stem
        const char *base = strrchr(input, '/');
        base = base ? base + 1 : input;
        const char *dot = strrchr(base, '.');
        int len = dot ? (int)(dot - base) : (int)strlen(base);
        snprintf(feat_path, sizeof(feat_path), "%s/%.*s.safetensors", tmp_dir, len, base);
    }
    int src_h, src_w;
    FusionInput in;
    if (load_features(feat_path, &hc, &in, bufs, &nbufs, &src_h, &src_w)) goto done;
    int shorter = src_h < src_w ? src_h : src_w;
    if (size > 0 && shorter > 2 * size)  // a scene, not a chip: say what the model saw
        fprintf(stderr, "note: %s is %dx%d; as the training images, it was resized to %d on its shorter side (%.1fx "
                        "smaller) before the model saw it\n", input, src_w, src_h, size, (double)shorter / size);
    if (hc.task == TASK_SEGMENTATION && src_h > 0 && src_w > 0) {  // the map at the image's own size
        hc.output_h = src_h;
        hc.output_w = src_w;
    }
    if (head_model_init(&m, &hc)) goto done;
    snprintf(path, sizeof(path), "%s/best.safetensors", run);
    if (head_model_load(&m, weights ? weights : path)) goto done;
    int found = 0;  // MoE: the call counters go on from where train's final test started (checkpoint.h)
    if (!moe_restart && moe_counter_read(run, &m, &found)) goto done;
    head_model_set_mode(&m, 0, 0);
    if (head_model_forward(&m, &in)) goto done;
    const float *logits = head_model_logits(&m);
    int C = hc.num_classes;
    if (hc.task == TASK_SEGMENTATION) {
        int H = hc.output_h, W = hc.output_w;
        pixels = (unsigned char *)malloc((size_t)H * W);
        if (!pixels) { sd_errorf("out of memory"); goto done; }
        if (C > 256) { sd_errorf("%d classes do not fit an 8-bit palette PNG", C); goto done; }
        long counts[256] = {0};
        for (int p = 0; p < H * W; p++) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (logits[(int64_t)c * H * W + p] > logits[(int64_t)best * H * W + p]) best = c;
            pixels[p] = (unsigned char)best;
            counts[best]++;
        }
        if (predict_write_map(out, pixels, W, H, C, -1, input, &names)) goto done;
        printf("segmentation map %dx%d (%d classes) written to %s\n", W, H, C, out);
        if (input && !strcasecmp(out + strlen(out) - 4, ".png")) {  // a picture of it without being asked: the map over the image with a legend (figure 6)
            char overlay[4200];
            snprintf(overlay, sizeof(overlay), "%.*s_overlay.png", (int)(strlen(out) - 4), out);
            OverlayFigure fig;
            memset(&fig, 0, sizeof(fig));
            fig.pred = out;
            fig.input = input;
            fig.num_classes = C;
            fig.alpha = 0.5f;
            if (fig_overlay(&fig, overlay)) fprintf(stderr, "warning: no overlay picture: %s\n", sd_last_error());
            else printf("  overlay over the image: %s\n", overlay);
        }
        for (int c = 0; c < C; c++)
            if (counts[c])
                printf("  class %d %s: %.1f%% of the pixels\n", c, class_name(&names, c, num, sizeof(num)),
                       100.0 * counts[c] / (H * W));
    } else {
        FILE *f = fopen(out, "w");
        if (!f) { sd_errorf("%s: cannot write: %s", out, strerror(errno)); goto done; }
        int best = 0;
        for (int c = 1; c < C; c++)
            if (logits[c] > logits[best]) best = c;
        // softmax (single-label) or sigmoid (multi-label) scores
        double mx = logits[best], sum = 0.0;
        for (int c = 0; c < C; c++) sum += exp(logits[c] - mx);
        char esc[1024];
        json_escape(class_name(&names, best, num, sizeof(num)), esc, sizeof(esc));
        fprintf(f, "{\"task\": \"%s\", \"class\": %d, \"class_name\": %s, \"scores\": [", head_task_name(hc.task),
                best, esc);
        double p_best = 0.0;
        for (int c = 0; c < C; c++) {
            double p = hc.task == TASK_MULTILABEL ? 1.0 / (1.0 + exp(-logits[c])) : exp(logits[c] - mx) / sum;
            if (c == best) p_best = p;
            fprintf(f, "%s%.6g", c ? ", " : "", p);
        }
        fprintf(f, "], \"class_names\": [");
        for (int c = 0; c < C; c++) {
            json_escape(class_name(&names, c, num, sizeof(num)), esc, sizeof(esc));
            fprintf(f, "%s%s", c ? ", " : "", esc);
        }
        fprintf(f, "]");
        if (hc.task == TASK_MULTILABEL) {  // the classes the head says are present (sigmoid > 0.5, as the metrics)
            fprintf(f, ", \"present\": [");
            for (int c = 0, k = 0; c < C; c++)
                if (logits[c] > 0.0f) fprintf(f, "%s%d", k++ ? ", " : "", c);
            fprintf(f, "]");
        }
        fprintf(f, "}\n");
        int bad = fclose(f) != 0;
        if (bad) { sd_errorf("%s: write failed", out); goto done; }
        printf("class %d %s (%s %.3f; all scores in %s)\n", best, class_name(&names, best, num, sizeof(num)),
               hc.task == TASK_MULTILABEL ? "sigmoid" : "softmax", p_best, out);
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "satdifuser predict: %s\n", sd_last_error());
    if (tmp_dir[0]) {  // remove the temporary feature file, the prompt embedding beside it, and the folder
        unlink(feat_path);
        snprintf(path, sizeof(path), "%s/%s.safetensors", tmp_dir, PROMPT_EMBEDDING_NAME);
        unlink(path);
        rmdir(tmp_dir);
    }
    for (int i = 0; i < nbufs; i++) free(bufs[i]);
    free(pixels);
    head_model_free(&m);
    json_free(&cfg_json);
    json_free(&meta);
    json_free(&names);
    return rc;
}
