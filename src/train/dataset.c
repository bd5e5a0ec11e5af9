#include "train/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/png.h"
#include "io/npy.h"
#include "io/safetensors.h"

void dataset_file(const Dataset *d, const char *image_id, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s.safetensors", d->dir, image_id);
}

static int parse_meta(const SafeTensors *st, const char *key, JsonValue *out) {
    const char *text = st_metadata(st, key);
    if (!text) return sd_errorf("%s: metadata '%s' missing (is it a feature file of `satdifuser extract`?)", st->path, key);
    char src[600];
    snprintf(src, sizeof(src), "%s metadata '%s'", st->path, key);
    return json_parse(text, strlen(text), src, out);
}

// The shape of a segmentation mask file (PNG or NPY) without keeping its pixels.
static int mask_size(const char *path, int *h, int *w) {
    size_t len = strlen(path);
    if (len > 4 && !strcmp(path + len - 4, ".npy")) {
        NpyArray a;
        if (npy_read(path, &a)) return SD_FAIL;
        // an empty (0-row) mask would make every target empty; a size past int would wrap in the casts
        int ok = a.ndim == 2 && a.shape[0] >= 1 && a.shape[1] >= 1 && a.shape[0] <= 2147483647 && a.shape[1] <= 2147483647;
        *h = ok ? (int)a.shape[0] : 0;
        *w = ok ? (int)a.shape[1] : 0;
        npy_free(&a);
        return ok ? 0 : sd_errorf("%s: a mask must be a 2-D (H, W) array of sizes 1..2^31-1", path);
    }
    PngImage img;
    if (png_read(path, &img)) return SD_FAIL;
    *h = img.height;
    *w = img.width;
    png_free(&img);
    return 0;
}

// Every label of every split against num_classes (and every mask's size), before
// train writes its run folder or spends time training: a bad class index would
// otherwise only show at the first batch that holds it.
static int check_labels(const Dataset *d) {
    const LabelSet *ls = d->labels;
    if (ls->task != LABELS_SEGMENTATION) return labels_check_classes(ls);
    int64_t *mask = (int64_t *)malloc((size_t)d->mask_h * d->mask_w * sizeof(int64_t));
    if (!mask) return sd_errorf("out of memory for a %dx%d mask", d->mask_w, d->mask_h);
    int rc = 0;
    for (int r = 0; r < ls->count && !rc; r++) {
        rc = labels_load_mask(ls, r, d->mask_h, d->mask_w, d->ignore_value, d->ignore_index, mask);
        int h = 0, w = 0;
        if (rc && mask_size(ls->rows[r].mask_path, &h, &w) == 0 && (h != d->mask_h || w != d->mask_w)) {
            // masks of other sizes: the head predicts one map size (the first mask's); say how many differ
            int n_bad = 0, h2, w2;
            for (int k = r; k < ls->count; k++)
                n_bad += mask_size(ls->rows[k].mask_path, &h2, &w2) == 0 && (h2 != d->mask_h || w2 != d->mask_w);
            sd_errorf("%s:%d: segmentation masks of different sizes: '%s' (image '%s') is %dx%d where the first, "
                      "'%s' (image '%s'), is %dx%d; %d of %d masks differ. The head predicts one map size (the "
                      "first mask's) and per-image mask sizes are not supported: give the masks one size (and "
                      "their images one aspect ratio, or extract with --resize exact) before training",
                      ls->path, ls->rows[r].line, ls->rows[r].mask_path, ls->rows[r].image, w, h,
                      ls->rows[0].mask_path, ls->rows[0].image, d->mask_w, d->mask_h, n_bad, ls->count);
        } else if (rc) {
            sd_error_context("%s:%d: image '%s'", ls->path, ls->rows[r].line, ls->rows[r].image);
        }
    }
    free(mask);
    return rc;
}

// The settings a feature file was made with that must agree across a training set: how the
// images were scaled and resized, and how the features were computed. "scaling" is per image
// (its numbers differ by design); its "mode" must agree.
static const char *const k_settings[] = {"preprocessing", "scaling.mode", "model_fingerprint", "prompt",
                                         "num_inference_steps", "save_timesteps", "layer_suffixes", "latent",
                                         "output_handling", "compute_precision"};
enum { N_SETTINGS = sizeof(k_settings) / sizeof(k_settings[0]) };

// A setting of an open feature file, or "(none)"; scaling.mode is read from the "scaling" JSON,
// with the reason --scale auto gave ("255 (auto: 8-bit samples: /255)").
static void file_setting(const SafeTensors *st, const char *key, char *buf, size_t size) {
    const char *text = st_metadata(st, !strcmp(key, "scaling.mode") ? "scaling" : key);
    snprintf(buf, size, "%s", text ? text : "(none)");
    if (!text || strcmp(key, "scaling.mode")) return;
    JsonValue j;
    const char *mode = NULL, *why = NULL;
    if (json_parse(text, strlen(text), "scaling", &j)) return;
    json_get_string(&j, "mode", NULL, &mode);
    json_get_string(&j, "auto", NULL, &why);
    if (mode && why) snprintf(buf, size, "%s (auto: %s)", mode, why);
    else if (mode) snprintf(buf, size, "%s", mode);
    json_free(&j);
}

// Shape groups of a cache: a few distinct shapes with a count and an example file each.
typedef struct {
    char shape[96], src[96];
    int count, example;
} ShapeGroup;
enum { MAX_SHAPE_GROUPS = 4 };

// Every labelled file has the first file's feature shapes and settings, checked when the dataset opens
// (the headers only). Shapes: a batch holds one shape, and images of other aspect ratios give other
// feature sizes; the error names the first file that differs, both shapes, both source images' sizes,
// the shapes found and the extract options that make them agree. Settings (k_settings): files made
// with another scaling, size or model are refused, naming two files and the setting, unless
// allow_mixed (then one warning).
static int check_files(Dataset *d, int allow_mixed) {
    const LabelSet *ls = d->labels;
    char path[4096], name[64], first[96] = "", bad_src[96] = "", bad_shape[160] = "";
    int bad_row = -1, bad_s = 0, n_bad = 0, n_groups = 0, more_groups = 0;
    ShapeGroup groups[MAX_SHAPE_GROUPS];
    char *first_set[N_SETTINGS] = {0};
    int set_row = -1, set_key = 0, n_set = 0;
    char set_have[1024] = "";
    int rc = 0;
    for (int r = 0; r < ls->count && !rc; r++) {
        SafeTensors st;
        dataset_file(d, ls->rows[r].image, path, sizeof(path));
        if (st_open(&st, path)) { rc = SD_FAIL; break; }
        int differs = 0;
        long long shape0[3] = {0, 0, 0};
        for (int i = 0; i < d->num_timesteps && !differs && !rc; i++)
            for (int s = 0; s < d->num_scales && !differs; s++) {
                snprintf(name, sizeof(name), "feat.%d.%d", i, s);
                const StEntry *e;
                if (st_require(&st, name, &e)) { rc = SD_FAIL; break; }
                int nd = e->ndim;
                if (i == 0 && s == 0 && nd >= 3)
                    shape0[0] = e->shape[nd - 3], shape0[1] = e->shape[nd - 2], shape0[2] = e->shape[nd - 1];
                differs = nd < 3 || e->shape[nd - 3] != d->C[s] || e->shape[nd - 2] != d->H[s] || e->shape[nd - 1] != d->W[s] ||
                          e->numel != (int64_t)d->C[s] * d->H[s] * d->W[s];
                if (differs && bad_row < 0) bad_s = s;
                if (differs && bad_row < 0)
                    snprintf(bad_shape, sizeof(bad_shape), "'%s' of shape (%lld, %lld, %lld)", name,
                             nd >= 3 ? (long long)e->shape[nd - 3] : 0LL, nd >= 2 ? (long long)e->shape[nd - 2] : 0LL,
                             (long long)e->shape[nd - 1]);
            }
        if (rc) { st_close(&st); break; }
        const char *src = st_metadata(&st, "source_shape");
        if (r == 0) snprintf(first, sizeof(first), "%s", src ? src : "?");
        if (differs && bad_row < 0) {
            bad_row = r;
            snprintf(bad_src, sizeof(bad_src), "%s", src ? src : "?");
        }
        n_bad += differs;
        // the shape groups (by feat.0.0's shape)
        char key[96];
        snprintf(key, sizeof(key), "(%lld, %lld, %lld)", shape0[0], shape0[1], shape0[2]);
        int g = 0;
        while (g < n_groups && strcmp(groups[g].shape, key)) g++;
        if (g < n_groups) groups[g].count++;
        else if (n_groups < MAX_SHAPE_GROUPS) {
            snprintf(groups[g].shape, sizeof(groups[g].shape), "%s", key);
            snprintf(groups[g].src, sizeof(groups[g].src), "%s", src ? src : "?");
            groups[g].count = 1, groups[g].example = r;
            n_groups++;
        } else more_groups = 1;
        // the settings
        int set_differs = 0;
        for (int k = 0; k < N_SETTINGS; k++) {
            char have[1024];
            file_setting(&st, k_settings[k], have, sizeof(have));
            if (r == 0) {
                first_set[k] = strdup(have);
                if (!first_set[k]) rc = sd_errorf("out of memory");
            } else if (!set_differs && first_set[k] && strcmp(have, first_set[k]) &&
                       !(!strcmp(k_settings[k], "scaling.mode") && (!strcmp(have, "(none)") || !strcmp(first_set[k], "(none)")))) {
                // (a file of an older version records no scaling: not a difference)
                set_differs = 1;
                if (set_row < 0) set_row = r, set_key = k, snprintf(set_have, sizeof(set_have), "%s", have);
            }
        }
        n_set += set_differs;
        const char *pre = st_metadata(&st, "preprocessing");
        if (ls->task == LABELS_SEGMENTATION && pre && strstr(pre, "\"crop\"") && !rc)
            rc = sd_errorf("%s: extracted with --crop center: its features cover the centre of the image, its mask '%s' "
                           "the whole image, so the map and the mask would not line up. For segmentation extract with "
                           "--resize exact (the map is resized back to each mask) or without --crop",
                           path, ls->rows[r].mask_path);
        st_close(&st);
    }
    if (!rc && bad_row >= 0) {
        char list[1024] = "";
        size_t n = 0;
        for (int g = 0; g < n_groups && n < sizeof(list); g++)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d file%s of %s (e.g. '%s', image %s)", g ? "; " : "",
                                  groups[g].count, groups[g].count == 1 ? "" : "s", groups[g].shape,
                                  ls->rows[groups[g].example].image, groups[g].src);
        rc = sd_errorf("feature files of different sizes: '%s' has %s where '%s' (the first) has (%d, %d, %d); %d of "
                       "%d files differ from the first (source images [bands, height, width] %s vs %s). feat.0.0 shapes: "
                       "%s%s. A batch holds one shape: images of other aspect ratios keep them through extract's "
                       "default --resize shorter (the original's); extract again with --crop center (the centre N x "
                       "N after the resize) or --resize exact (stretched to N x N) to give every image one shape",
                       ls->rows[bad_row].image, bad_shape, ls->rows[0].image, d->C[bad_s], d->H[bad_s], d->W[bad_s], n_bad,
                       ls->count, bad_src, first, list, more_groups ? "; and more" : "");
    }
    if (!rc && set_row >= 0) {
        const char *what = k_settings[set_key];
        char msg[3072];
        snprintf(msg, sizeof(msg),
                 "feature files made with different settings: '%s' has %s '%s' where '%s' (the first) has '%s'; %d of "
                 "%d files differ from the first. %s",
                 ls->rows[set_row].image, !strcmp(what, "scaling.mode") ? "scaling mode" : what, set_have,
                 ls->rows[0].image, first_set[set_key], n_set, ls->count,
                 !strcmp(what, "scaling.mode")
                     ? "Images scaled differently (e.g. --scale auto on 8-bit and 16-bit files) do not look alike to "
                       "the model: extract them again with one --scale (percentile:2,98 or minmax scale each image "
                       "to its own range)"
                     : "Extract them again with the same options into one folder");
        if (allow_mixed) {
            size_t n = strlen(msg);
            snprintf(msg + n, sizeof(msg) - n, " (allowed by --allow-mixed-preprocessing)");
            if (!(d->warning = strdup(msg))) rc = sd_errorf("out of memory");
        } else rc = sd_errorf("%s, or accept the mix with --allow-mixed-preprocessing", msg);
    }
    for (int k = 0; k < N_SETTINGS; k++) free(first_set[k]);
    return rc;
}

int dataset_open(Dataset *d, const char *features_dir, const LabelSet *labels, int max_batch, int ignore_value) {
    return dataset_open_mixed(d, features_dir, labels, max_batch, ignore_value, 0);
}

int dataset_open_mixed(Dataset *d, const char *features_dir, const LabelSet *labels, int max_batch, int ignore_value,
                       int allow_mixed) {
    memset(d, 0, sizeof(*d));
    d->dir = strdup(features_dir);
    d->labels = labels;
    d->max_batch = max_batch;
    d->ignore_value = ignore_value;
    d->ignore_index = -100;
    char path[4096];
    // every labelled image has a feature file
    for (int r = 0; r < labels->count; r++) {
        dataset_file(d, labels->rows[r].image, path, sizeof(path));
        FILE *f = fopen(path, "rb");
        if (!f) {
            sd_errorf("%s: no feature file for image '%s' (listed in %s): run `satdifuser extract` first", path,
                      labels->rows[r].image, labels->path);
            dataset_close(d);
            return SD_FAIL;
        }
        fclose(f);
    }
    SafeTensors st;
    dataset_file(d, labels->rows[0].image, path, sizeof(path));
    if (st_open(&st, path)) { dataset_close(d); return SD_FAIL; }
    int rc = parse_meta(&st, "feature_dims", &d->feature_dims) || parse_meta(&st, "save_timesteps", &d->save_timesteps) ||
             feature_layout_from_json(&d->layout, &d->feature_dims, &d->save_timesteps);
    if (rc) { sd_error_context("%s", path); st_close(&st); dataset_close(d); return SD_FAIL; }
    d->feature_dims_text = strdup(st_metadata(&st, "feature_dims"));
    d->save_timesteps_text = strdup(st_metadata(&st, "save_timesteps"));
    d->num_timesteps = d->layout.num_timesteps;
    d->num_scales = d->layout.num_scales;
    for (int s = 0; s < d->num_scales; s++) {
        char name[64];
        snprintf(name, sizeof(name), "feat.0.%d", s);
        const StEntry *e;
        if (st_require(&st, name, &e)) { st_close(&st); dataset_close(d); return SD_FAIL; }
        int nd = e->ndim;
        if (nd != 3 && !(nd == 4 && e->shape[0] == 1)) {
            sd_errorf("%s: tensor '%s' must be (C, H, W) or (1, C, H, W)", path, name);
            st_close(&st);
            dataset_close(d);
            return SD_FAIL;
        }
        // sizes 1..2^31-1 before the casts: a 0 height leaves no data (numel 0) for any
        // channel count, and (int) of 2^32 + 4 channels would then match a layout of 4
        for (int k = nd - 3; k < nd; k++)
            if (e->shape[k] < 1 || e->shape[k] > 2147483647) {
                sd_errorf("%s: tensor '%s' has dimension %d of size %lld, expected 1..2^31-1", path, name, k,
                          (long long)e->shape[k]);
                st_close(&st);
                dataset_close(d);
                return SD_FAIL;
            }
        d->C[s] = (int)e->shape[nd - 3];
        d->H[s] = (int)e->shape[nd - 2];
        d->W[s] = (int)e->shape[nd - 1];
        if (d->C[s] != d->layout.scale_channels[s] || d->W[s] != d->layout.width[s]) {
            sd_errorf("%s: tensor '%s' is (%d, %d, %d) but feature_dims says %d channels at width %d", path, name,
                      d->C[s], d->H[s], d->W[s], d->layout.scale_channels[s], d->layout.width[s]);
            st_close(&st);
            dataset_close(d);
            return SD_FAIL;
        }
        for (int i = 0; i < d->num_timesteps; i++) {
            d->feat[i][s] = (float *)malloc((size_t)max_batch * d->C[s] * d->H[s] * d->W[s] * sizeof(float));
            if (!d->feat[i][s]) { st_close(&st); dataset_close(d); return sd_errorf("out of memory for feature batches"); }
        }
    }
    st_close(&st);
    if (check_files(d, allow_mixed)) { dataset_close(d); return SD_FAIL; }
    if (labels->task == LABELS_SEGMENTATION) {
        if (mask_size(labels->rows[0].mask_path, &d->mask_h, &d->mask_w)) {
            dataset_close(d);  // e.g. a class index given where a segmentation run wants a mask path
            return sd_error_context("%s: image '%s': segmentation mask '%s'", labels->path, labels->rows[0].image,
                                    labels->rows[0].mask_path);
        }
        d->targets_i64 = (int64_t *)malloc((size_t)max_batch * d->mask_h * d->mask_w * sizeof(int64_t));
    } else if (labels->task == LABELS_MULTILABEL) {
        d->targets_f32 = (float *)malloc((size_t)max_batch * labels->num_classes * sizeof(float));
    } else {
        d->targets_i64 = (int64_t *)malloc((size_t)max_batch * sizeof(int64_t));
    }
    if (!d->targets_i64 && !d->targets_f32) { dataset_close(d); return sd_errorf("out of memory"); }
    if (check_labels(d)) { dataset_close(d); return SD_FAIL; }
    return 0;
}

void dataset_close(Dataset *d) {
    for (int i = 0; i < FUSION_MAX_TIMESTEPS; i++)
        for (int s = 0; s < FUSION_MAX_SCALES; s++) free(d->feat[i][s]);
    free(d->targets_i64);
    free(d->targets_f32);
    json_free(&d->feature_dims);
    json_free(&d->save_timesteps);
    free(d->feature_dims_text);
    free(d->save_timesteps_text);
    free(d->dir);
    free(d->warning);
    memset(d, 0, sizeof(*d));
}

int dataset_load_batch(Dataset *d, const int *rows, int n, FusionInput *in) {
    if (n > d->max_batch) return sd_errorf("batch of %d, dataset opened for %d", n, d->max_batch);
    memset(in, 0, sizeof(*in));
    in->B = n;
    char path[4096], name[64];
    for (int b = 0; b < n; b++) {
        const LabelRow *row = &d->labels->rows[rows[b]];
        SafeTensors st;
        dataset_file(d, row->image, path, sizeof(path));
        if (st_open(&st, path)) return SD_FAIL;
        for (int i = 0; i < d->num_timesteps; i++) {
            for (int s = 0; s < d->num_scales; s++) {
                snprintf(name, sizeof(name), "feat.%d.%d", i, s);
                const StEntry *e;
                if (st_require(&st, name, &e)) { st_close(&st); return SD_FAIL; }
                int64_t want = (int64_t)d->C[s] * d->H[s] * d->W[s];
                int nd = e->ndim;
                if (e->numel != want || nd < 3 || e->shape[nd - 3] != d->C[s] || e->shape[nd - 2] != d->H[s] ||
                    e->shape[nd - 1] != d->W[s]) {
                    st_close(&st);
                    return sd_errorf("%s: tensor '%s' has another shape than the first feature file's (%d, %d, %d)",
                                     path, name, d->C[s], d->H[s], d->W[s]);
                }
                if (st_entry_to_f32(e, d->feat[i][s] + (int64_t)b * want)) { st_close(&st); return SD_FAIL; }
            }
        }
        st_close(&st);
        // labels
        if (d->labels->task == LABELS_CLASSIFICATION) {
            d->targets_i64[b] = row->label;
        } else if (d->labels->task == LABELS_MULTILABEL) {
            float *t = d->targets_f32 + (int64_t)b * d->labels->num_classes;
            for (int c = 0; c < d->labels->num_classes; c++) t[c] = 0.0f;
            for (int k = 0; k < row->num_labels; k++) {
                int c = row->labels[k];
                if (c < 0 || c >= d->labels->num_classes)  // checked at open too (num_classes may be set later)
                    return sd_errorf("%s:%d: class index %d is outside 0..%d", d->labels->path, row->line, c,
                                     d->labels->num_classes - 1);
                t[c] = 1.0f;
            }
        } else {
            if (labels_load_mask(d->labels, rows[b], d->mask_h, d->mask_w, d->ignore_value, d->ignore_index,
                                 d->targets_i64 + (int64_t)b * d->mask_h * d->mask_w))
                return SD_FAIL;
        }
    }
    for (int s = 0; s < d->num_scales; s++) {
        in->H[s] = d->H[s];
        in->W[s] = d->W[s];
        for (int i = 0; i < d->num_timesteps; i++) in->feat[i][s] = d->feat[i][s];
    }
    return 0;
}

void dataset_shuffle(int *idx, int n, uint64_t seed, int epoch) {
    uint64_t s = (seed + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)(epoch + 1) * 0xBF58476D1CE4E5B9ull);
    if (!s) s = 1;
    for (int i = n - 1; i > 0; i--) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 0x2545F4914F6CDD1Dull;
        int j = (int)(r % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
