// GEO-Bench task folders: the pickled sample attribute, partitions, label files and one
// sample's bands and label (geobench.h). The export is in geobench_export.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "io/file.h"
#include "io/geobench.h"
#include "io/image.h"
#include "io/json.h"
#include "io/pickle.h"
#include "io/tiff_bands.h"

int gb_sample_meta(const H5File *f, GbSampleMeta *m) {
    memset(m, 0, sizeof(*m));
    const H5Attr *a = h5_find_attr(f->root_attrs, f->num_root_attrs, "pickle");
    if (!a) return 0;  // no attribute: nothing to say
    if (!a->str || a->count != 1)
        return sd_errorf("%s: attribute 'pickle' is not a string (a GEO-Bench sample's is the repr of a pickle)",
                         f->path);
    return gb_meta_parse(f->path, a->str[0], a->str_len[0], m);
}

void gb_list_bands(const H5File *f, char *out, size_t size) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < f->num_datasets && n + 1 < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s'%s'", i ? ", " : "", f->datasets[i].name);
}

// ---- the task folder ---------------------------------------------------------------------------

typedef struct {
    const char *name;
    int index;
} NameIndex;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const NameIndex *)a)->name, ((const NameIndex *)b)->name);
}

// Index of `name` among the partition's samples (sorted copy), or -1.
static int find_sample(const NameIndex *sorted, int n, const char *name) {
    NameIndex key = {name, 0};
    const NameIndex *hit = bsearch(&key, sorted, (size_t)n, sizeof(NameIndex), cmp_name);
    return hit ? hit->index : -1;
}

static int file_exists(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp) fclose(fp);
    return fp != NULL;
}

// task_specs.pkl: TaskSpecifications(label_type=Classification(n_classes, class_names), ...),
// all inert placeholders; their BUILD state dicts hold the fields. Missing or empty: nothing.
static int read_task_specs(GbTask *t) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/task_specs.pkl", t->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!file_exists(path) || read_whole_file(path, &buf, &len, (size_t)1 << 26) || len == 0) {
        free(buf);
        sd_clear_error();
        return 0;
    }
    PickleDoc doc;
    pickle_doc_init(&doc);
    PyValue *root = NULL;
    int rc = pickle_load(&doc, path, buf, len, NULL, &root, NULL);
    const PyValue *lt = NULL, *names = NULL, *n = NULL;
    if (rc == 0 && root->kind == PY_OBJECT && root->state && root->state->kind == PY_DICT)
        lt = py_dict_get(root->state, "label_type");
    if (lt && lt->kind == PY_OBJECT && lt->state && lt->state->kind == PY_DICT) {
        n = py_dict_get(lt->state, "n_classes");
        names = py_dict_get(lt->state, "class_names");
        if (!names || names->kind == PY_NONE) names = py_dict_get(lt->state, "class_name");  // multi-label's field
    }
    if (n && n->kind == PY_INT && n->i > 0 && n->i <= GB_MAX_CLASSES) t->num_classes = (int)n->i;
    if (rc == 0 && names && (names->kind == PY_LIST || names->kind == PY_TUPLE) && names->count == t->num_classes) {
        t->class_names = calloc((size_t)names->count, sizeof(char *));
        for (int i = 0; t->class_names && i < names->count; i++)
            t->class_names[i] = strdup(names->items[i]->kind == PY_STR ? names->items[i]->s : "?");
    }
    pickle_doc_free(&doc);
    free(buf);
    return rc;
}

// allow_repeat: a sample listed in two splits is kept once (extract), else refused (export).
static int read_partition(GbTask *t, int allow_repeat) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s_partition.json", t->dir, t->partition);
    if (!file_exists(path))
        return sd_errorf("%s: no partition '%s' in the task folder (%s_partition.json is missing)", path,
                         t->partition, t->partition);
    JsonValue js;
    if (json_parse_file(path, &js)) return -1;
    int rc = 0;
    static const char *keys[3][2] = {{"train", NULL}, {"valid", "val"}, {"test", NULL}};
    int total = 0;
    for (int s = 0; s < 3; s++)
        for (int k = 0; k < 2 && keys[s][k]; k++) {
            const JsonValue *a = json_get(&js, keys[s][k]);
            if (a && a->type == JSON_ARRAY) total += a->count;
            else if (a) rc = sd_errorf("%s: '%s' is not a list of sample names", path, keys[s][k]);
        }
    t->names = calloc((size_t)(total ? total : 1), sizeof(char *));
    t->split = calloc((size_t)(total ? total : 1), sizeof(int));
    if (!t->names || !t->split) rc = sd_errorf("out of memory");
    for (int s = 0; s < 3 && rc == 0; s++)
        for (int k = 0; k < 2 && keys[s][k] && rc == 0; k++) {
            const JsonValue *a = json_get(&js, keys[s][k]);
            for (int i = 0; a && i < a->count && rc == 0; i++) {
                const char *name = a->items[i].type == JSON_STRING ? a->items[i].string : NULL;
                if (!name || !name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                    rc = sd_errorf("%s: '%s' entry %d is not a sample name", path, keys[s][k], i);
                else if (!(t->names[t->num_samples] = strdup(name))) rc = sd_errorf("out of memory");
                else t->split[t->num_samples++] = s;
            }
        }
    json_free(&js);
    if (rc == 0 && t->num_samples == 0) rc = sd_errorf("%s: the partition lists no sample", path);
    // each sample once (labels.csv lists an image once)
    NameIndex *sorted = rc == 0 ? malloc(sizeof(NameIndex) * (size_t)t->num_samples) : NULL;
    if (rc == 0 && !sorted) rc = sd_errorf("out of memory");
    for (int i = 0; rc == 0 && i < t->num_samples; i++) sorted[i] = (NameIndex){t->names[i], i};
    if (rc == 0) qsort(sorted, (size_t)t->num_samples, sizeof(NameIndex), cmp_name);
    static const char *split_names[] = {"train", "valid", "test"};
    for (int i = 1; rc == 0 && i < t->num_samples; i++)
        if (strcmp(sorted[i - 1].name, sorted[i].name) == 0 && allow_repeat) {
            t->split[sorted[i].index] = -1;  // removed below
        } else if (strcmp(sorted[i - 1].name, sorted[i].name) == 0)
            rc = sd_errorf("%s: sample '%s' is listed twice (in '%s' and in '%s'); a sample belongs to one split",
                           path, sorted[i].name, split_names[t->split[sorted[i - 1].index]],
                           split_names[t->split[sorted[i].index]]);
    free(sorted);
    if (rc == 0 && allow_repeat) {  // drop the repeats, keep the partition order
        int k = 0;
        for (int i = 0; i < t->num_samples; i++) {
            if (t->split[i] < 0) {
                free(t->names[i]);
                continue;
            }
            t->names[k] = t->names[i];
            t->split[k++] = t->split[i];
        }
        t->num_samples = k;
    }
    return rc;
}

// label_map.json ({"<class>": [sample names]}) and label_stats.json ({"<sample>": [numbers]}).
static int read_label_files(GbTask *t, const NameIndex *sorted) {
    char path[4096];
    int rc = 0;
    snprintf(path, sizeof(path), "%s/label_map.json", t->dir);
    if (file_exists(path)) {
        JsonValue js;
        if (json_parse_file(path, &js)) return -1;
        t->cls = malloc(sizeof(int64_t) * (size_t)t->num_samples);
        if (!t->cls) rc = sd_errorf("out of memory");
        for (int i = 0; rc == 0 && i < t->num_samples; i++) t->cls[i] = -1;
        if (rc == 0 && js.type != JSON_OBJECT) rc = sd_errorf("%s: expected an object class -> sample names", path);
        for (int c = 0; rc == 0 && c < js.count; c++) {
            char *end = NULL;
            long k = strtol(js.keys[c], &end, 10);
            if (*end || end == js.keys[c] || k < 0 || k >= GB_MAX_CLASSES)
                k = c;  // class names as keys: their order gives the index
            const JsonValue *a = &js.items[c];
            if (a->type != JSON_ARRAY) rc = sd_errorf("%s: class '%s' is not a list of sample names", path, js.keys[c]);
            for (int i = 0; rc == 0 && i < a->count; i++) {
                int s = a->items[i].type == JSON_STRING ? find_sample(sorted, t->num_samples, a->items[i].string) : -1;
                if (s < 0) continue;  // a sample of another partition
                if (t->cls[s] >= 0 && t->cls[s] != k)
                    rc = sd_errorf("%s: sample '%s' is in class %lld and in class %ld", path, t->names[s],
                                   (long long)t->cls[s], k);
                t->cls[s] = k;
            }
        }
        json_free(&js);
        if (rc) return rc;
    }
    snprintf(path, sizeof(path), "%s/label_stats.json", t->dir);
    if (file_exists(path)) {
        JsonValue js;
        if (json_parse_file(path, &js)) return -1;
        t->stats = calloc((size_t)t->num_samples, sizeof(double *));
        if (!t->stats) rc = sd_errorf("out of memory");
        for (int e = 0; rc == 0 && e < js.count && js.type == JSON_OBJECT; e++) {
            int s = find_sample(sorted, t->num_samples, js.keys[e]);
            const JsonValue *a = &js.items[e];
            if (s < 0) continue;
            if (a->type != JSON_ARRAY || a->count < 1 || a->count > GB_MAX_CLASSES ||
                (t->num_stats && a->count != t->num_stats))
                rc = sd_errorf("%s: sample '%s': expected a list of %d numbers", path, js.keys[e], t->num_stats);
            else if (!(t->stats[s] = malloc(sizeof(double) * (size_t)a->count))) rc = sd_errorf("out of memory");
            for (int i = 0; rc == 0 && i < a->count; i++) {
                if (a->items[i].type != JSON_NUMBER) rc = sd_errorf("%s: sample '%s': entry %d is not a number", path,
                                                                    js.keys[e], i);
                else t->stats[s][i] = a->items[i].number;
            }
            if (rc == 0) t->num_stats = a->count;
        }
        json_free(&js);
    }
    return rc;
}

int gb_task_open(GbTask *t, const char *dir, const char *partition) {
    memset(t, 0, sizeof(*t));
    t->dir = strdup(dir);
    t->partition = strdup(partition && partition[0] ? partition : "default");
    if (!t->dir || !t->partition) return sd_errorf("out of memory");
    int rc = read_partition(t, 0);
    NameIndex *sorted = rc == 0 ? malloc(sizeof(NameIndex) * (size_t)t->num_samples) : NULL;
    if (rc == 0 && !sorted) rc = sd_errorf("out of memory");
    for (int i = 0; rc == 0 && i < t->num_samples; i++) sorted[i] = (NameIndex){t->names[i], i};
    if (rc == 0) qsort(sorted, (size_t)t->num_samples, sizeof(NameIndex), cmp_name);
    if (rc == 0) rc = read_label_files(t, sorted);
    free(sorted);
    if (rc == 0) rc = read_task_specs(t);
    // The task type: a `label` dataset makes it segmentation; else label_map.json or an int
    // label in the pickle, classification; a vector label or multi-hot stats, multi-label.
    H5File f;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.hdf5", t->dir, rc == 0 ? t->names[0] : "");
    if (rc == 0 && h5_open(&f, path) == 0) {
        GbSampleMeta m;
        int seg = h5_find(&f, "label") != NULL;
        if (gb_sample_meta(&f, &m) == 0) {
            if (seg) t->type = GB_TASK_SEG;
            else if (t->cls || m.has_label == 1) t->type = GB_TASK_CLS;
            else if (m.has_label == 2) t->type = GB_TASK_MULTILABEL;
            else if (t->stats) {
                t->type = GB_TASK_CLS;
                for (int s = 0; s < t->num_samples; s++) {
                    int ones = 0;
                    for (int i = 0; t->stats[s] && i < t->num_stats; i++) ones += t->stats[s][i] != 0;
                    if (t->stats[s] && ones != 1) t->type = GB_TASK_MULTILABEL;
                }
            } else {
                rc = sd_errorf("%s: no label for the task: no 'label' dataset, no label_map.json or label_stats.json "
                               "in %s, no 'label' in the pickled attribute", path, t->dir);
            }
            if (!t->num_classes && t->type != GB_TASK_SEG && t->num_stats) t->num_classes = t->num_stats;
            if (!t->num_classes && t->type == GB_TASK_SEG && t->num_stats) t->num_classes = t->num_stats;
            if (t->type == GB_TASK_MULTILABEL && m.has_label == 2 && !t->num_classes) t->num_classes = m.label_len;
            gb_sample_meta_free(&m);
        } else {
            rc = sd_error_context("sample '%s'", t->names[0]);
        }
        h5_close(&f);
    } else if (rc == 0) {
        rc = sd_error_context("task %s, sample '%s'", dir, t->names[0]);
    }
    if (rc) gb_task_free(t);
    return rc;
}

void gb_task_free(GbTask *t) {
    for (int i = 0; i < t->num_samples; i++) {
        free(t->names[i]);
        if (t->stats) free(t->stats[i]);
    }
    for (int i = 0; t->class_names && i < t->num_classes; i++) free(t->class_names[i]);
    free(t->class_names);
    free(t->names);
    free(t->split);
    free(t->cls);
    free(t->stats);
    free(t->dir);
    free(t->partition);
    memset(t, 0, sizeof(*t));
}

// ---- one sample ---------------------------------------------------------------------------------

void gb_sample_free(GbSample *s) {
    free(s->image);
    free(s->mask);
    free(s->label_vec);
    for (int i = 0; i < GB_MAX_BANDS; i++) free(s->band_names[i]);
    memset(s, 0, sizeof(*s));
}

// Splits "a, b,c" into trimmed names.
static int split_bands(const char *list, char **out, int *n, const char *where) {
    *n = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ')) p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (len == 0) return sd_errorf("%s: --bands '%s' has an empty band name", where, list);
        if (*n == GB_MAX_BANDS) return sd_errorf("%s: more than %d bands", where, GB_MAX_BANDS);
        out[*n] = malloc(len + 1);
        if (!out[*n]) return sd_errorf("out of memory");
        memcpy(out[*n], p, len);
        out[*n][len] = 0;
        (*n)++;
        if (!e) break;
        p = e + 1;
    }
    return *n ? 0 : sd_errorf("%s: no band named", where);
}

// The label of a classification / multi-label sample from every source that has it.
static int sample_label(const GbTask *t, int idx, const GbSampleMeta *m, GbSample *s, const char *path) {
    const double *st = t->stats ? t->stats[idx] : NULL;
    if (t->type == GB_TASK_CLS) {
        int64_t label = -1;
        const char *from = NULL;
        if (t->cls && t->cls[idx] >= 0) label = t->cls[idx], from = "label_map.json";
        if (m->has_label == 1) {
            if (from && m->label != label)
                return sd_errorf("%s: the pickled 'label' is %lld but %s says %lld", path, (long long)m->label, from,
                                 (long long)label);
            label = m->label, from = "the pickled 'label'";
        }
        if (st) {
            int best = -1, ones = 0;
            for (int i = 0; i < t->num_stats; i++)
                if (st[i] != 0) ones++, best = i;
            if (ones != 1) {
                if (!from) return sd_errorf("%s: label_stats.json is not one-hot for this sample", path);
            } else if (from && best != label) {
                return sd_errorf("%s: label_stats.json says class %d but %s says %lld", path, best, from,
                                 (long long)label);
            } else {
                label = best, from = "label_stats.json";
            }
        }
        if (!from) return sd_errorf("%s: no label (not in label_map.json, no pickled 'label', no label stats)", path);
        if (label < 0 || (t->num_classes && label >= t->num_classes) || label >= GB_MAX_CLASSES)
            return sd_errorf("%s: label %lld is outside 0..%d", path, (long long)label,
                             (t->num_classes ? t->num_classes : GB_MAX_CLASSES) - 1);
        s->label = label;
        return 0;
    }
    int n = t->num_classes ? t->num_classes : (m->has_label == 2 ? m->label_len : t->num_stats);
    if (n <= 0) return sd_errorf("%s: no label (no pickled 'label' vector, no label stats)", path);
    s->label_vec = calloc((size_t)n, sizeof(int64_t));
    if (!s->label_vec) return sd_errorf("out of memory");
    int have = 0;
    if (m->has_label == 2) {
        if (m->label_len != n) return sd_errorf("%s: the pickled 'label' has %d entries, expected %d", path,
                                                m->label_len, n);
        for (int i = 0; i < n; i++) {
            if (m->label_vec[i] != 0 && m->label_vec[i] != 1)
                return sd_errorf("%s: the pickled 'label' entry %d is %lld, expected 0 or 1", path, i,
                                 (long long)m->label_vec[i]);
            s->label_vec[i] = m->label_vec[i];
        }
        have = 1;
    }
    if (st) {
        if (t->num_stats != n) return sd_errorf("%s: label_stats.json has %d entries, expected %d", path, t->num_stats, n);
        for (int i = 0; i < n; i++) {
            if (st[i] != 0 && st[i] != 1)
                return sd_errorf("%s: label_stats.json entry %d is %g, expected 0 or 1", path, i, st[i]);
            if (have && s->label_vec[i] != (int64_t)st[i])
                return sd_errorf("%s: label_stats.json and the pickled 'label' disagree on class %d", path, i);
            s->label_vec[i] = (int64_t)st[i];
        }
        have = 1;
    }
    if (!have) return sd_errorf("%s: no label (no pickled 'label' vector, no label stats)", path);
    return 0;
}

int gb_load_sample(const GbTask *t, int idx, const char *bands, GbSample *s) {
    memset(s, 0, sizeof(*s));
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.hdf5", t->dir, t->names[idx]);
    if (!file_exists(path))
        return sd_errorf("%s: sample '%s' of partition '%s' has no file", path, t->names[idx], t->partition);
    H5File f;
    if (h5_open(&f, path)) return sd_error_context("sample '%s'", t->names[idx]);
    GbSampleMeta m;
    int rc = gb_sample_meta(&f, &m), nb = 0;
    if (rc == 0 && bands && bands[0]) {
        rc = split_bands(bands, s->band_names, &nb, path);
    } else if (rc == 0) {
        for (int i = 0; i < m.num_bands; i++)
            if (strncmp(m.bands[i], "label", 5) != 0) s->band_names[nb++] = strdup(m.bands[i]);
        if (nb == 0) rc = sd_errorf("%s: no bands_order in the pickled attribute; name the bands with --bands", path);
    }
    s->C = nb;
    float *band = NULL;
    for (int b = 0; rc == 0 && b < nb; b++) {
        const char *real = gb_resolve_band(&m, s->band_names[b]);  // an alt name ("red") -> its band
        const H5Dataset *d = h5_find(&f, real ? real : s->band_names[b]);
        if (!d) {
            char have[2048];
            gb_list_bands(&f, have, sizeof(have));
            rc = sd_errorf("%s: sample '%s' has no band '%s'; it has %s", path, t->names[idx], s->band_names[b], have);
            break;
        }
        if (d->ndim != 2 || d->shape[0] == 0 || d->shape[1] == 0 || d->shape[0] > 65536 || d->shape[1] > 65536) {
            rc = sd_errorf("%s: band '%s' has %d dimensions or an empty / huge size, expected (H, W)", path,
                           d->name, d->ndim);
            break;
        }
        if (b == 0) {
            s->H = (int)d->shape[0];
            s->W = (int)d->shape[1];
            s->image = malloc(sizeof(float) * (size_t)nb * (size_t)s->H * (size_t)s->W);
            if (!s->image) rc = sd_errorf("out of memory");
        } else if ((int)d->shape[0] != s->H || (int)d->shape[1] != s->W) {
            rc = sd_errorf("%s: band '%s' is %llux%llu but band '%s' is %dx%d (bands of one image share a size)",
                           path, d->name, (unsigned long long)d->shape[0], (unsigned long long)d->shape[1],
                           s->band_names[0], s->H, s->W);
        }
        if (rc == 0 && (rc = h5_read_f32(&f, d, &band)) == 0)
            memcpy(s->image + (size_t)b * (size_t)s->H * (size_t)s->W, band, sizeof(float) * (size_t)s->H * (size_t)s->W);
        free(band);
        band = NULL;
    }
    if (rc == 0 && t->type == GB_TASK_SEG) {
        const H5Dataset *d = h5_find(&f, "label");
        void *raw = NULL;
        if (!d) rc = sd_errorf("%s: sample '%s' has no 'label' dataset (the task's masks)", path, t->names[idx]);
        else if (d->type.kind != H5T_INT || d->ndim != 2)
            rc = sd_errorf("%s: 'label' is not a 2-D integer dataset", path);
        else if (!(rc = h5_read(&f, d, &raw))) {
            s->mask_h = (int)d->shape[0];
            s->mask_w = (int)d->shape[1];
            size_t n = (size_t)s->mask_h * (size_t)s->mask_w;
            s->mask = malloc(sizeof(int64_t) * n);
            NpyArray a;
            memset(&a, 0, sizeof(a));
            a.dtype = d->type.npy;
            a.itemsize = d->type.size;
            for (size_t i = 0; s->mask && i < n; i++) {
                const uint8_t *p = (const uint8_t *)raw + i * (size_t)a.itemsize;
                int64_t v = 0;
                switch (a.dtype) {
                case NPY_INT8: v = *(const int8_t *)p; break;
                case NPY_UINT8: v = *p; break;
                case NPY_INT16: { int16_t x; memcpy(&x, p, 2); v = x; } break;
                case NPY_UINT16: { uint16_t x; memcpy(&x, p, 2); v = x; } break;
                case NPY_INT32: { int32_t x; memcpy(&x, p, 4); v = x; } break;
                case NPY_UINT32: { uint32_t x; memcpy(&x, p, 4); v = x; } break;
                default: { memcpy(&v, p, 8); } break;  // int64 / uint64
                }
                s->mask[i] = v;
            }
            if (!s->mask) rc = sd_errorf("out of memory");
            // label_stats.json of a segmentation task: the fraction of pixels of each class
            const double *st = t->stats ? t->stats[idx] : NULL;
            for (int c = 0; rc == 0 && st && c < t->num_stats; c++) {
                size_t count = 0;
                for (size_t i = 0; i < n; i++) count += s->mask[i] == c;
                if (fabs((double)count / (double)n - st[c]) > 1e-6)
                    rc = sd_errorf("%s: 'label' has %.6f of its pixels in class %d but label_stats.json says %.6f",
                                   path, (double)count / (double)n, c, st[c]);
            }
            for (size_t i = 0; rc == 0 && st && i < n; i++)
                if (s->mask[i] < 0 || s->mask[i] >= t->num_stats)
                    rc = sd_errorf("%s: 'label' pixel %zu is %lld, outside the %d classes of label_stats.json", path,
                                   i, (long long)s->mask[i], t->num_stats);
        }
        free(raw);
    } else if (rc == 0) {
        rc = sample_label(t, idx, &m, s, path);
    }
    gb_sample_meta_free(&m);
    h5_close(&f);
    if (rc) gb_sample_free(s);
    return rc;
}

// ---- extract --input TASKDIR ------------------------------------------------------------------

int gb_is_task_dir(const char *dir, const char *partition) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s_partition.json", dir, partition && partition[0] ? partition : "default");
    return file_exists(path);
}

int gb_partition_open(GbTask *t, const char *dir, const char *partition) {
    memset(t, 0, sizeof(*t));
    t->dir = strdup(dir);
    t->partition = strdup(partition && partition[0] ? partition : "default");
    if (!t->dir || !t->partition) return sd_errorf("out of memory");
    int rc = read_partition(t, 1);
    if (rc) gb_task_free(t);
    return rc;
}

// The non-label names of bands_order (or, without the attribute, every 2-D dataset but `label`).
static int default_bands(const H5File *f, char **names, int *n) {
    GbSampleMeta m;
    if (gb_sample_meta(f, &m)) return -1;
    *n = 0;
    for (int i = 0; i < m.num_bands; i++)
        if (strncmp(m.bands[i], "label", 5) != 0) names[(*n)++] = strdup(m.bands[i]);
    int from_pickle = m.num_bands;
    gb_sample_meta_free(&m);
    for (int i = 0; from_pickle == 0 && i < f->num_datasets && *n < GB_MAX_BANDS; i++)
        if (strcmp(f->datasets[i].name, "label") != 0 && f->datasets[i].ndim == 2)
            names[(*n)++] = strdup(f->datasets[i].name);
    return *n ? 0 : sd_errorf("%s: no bands (no bands_order, no 2-D dataset)", f->path);
}

int gb_image_load(const char *path, Image *img) {
    memset(img, 0, sizeof(*img));
    FILE *fp = fopen(path, "rb");
    unsigned char sig[8] = {0};
    size_t got = fp ? fread(sig, 1, 8, fp) : 0;
    if (fp) fclose(fp);
    if (!h5_is_hdf5(sig, got)) return image_load(path, img);
    H5File f;
    if (h5_open(&f, path)) return -1;
    char *names[GB_MAX_BANDS] = {0};
    int n = 0, rc = default_bands(&f, names, &n);
    float *band = NULL;
    for (int b = 0; rc == 0 && b < n; b++) {
        const H5Dataset *d = h5_find(&f, names[b]);
        if (!d || d->ndim != 2 || d->shape[0] == 0 || d->shape[1] == 0 || d->shape[0] > 65536 || d->shape[1] > 65536 ||
            (b > 0 && (d->shape[0] != (uint64_t)img->height || d->shape[1] != (uint64_t)img->width))) {
            rc = sd_errorf("%s: band '%s' is missing, not 2-D or not the size of the first band", path, names[b]);
            break;
        }
        if (b == 0) {
            img->height = (int)d->shape[0];
            img->width = (int)d->shape[1];
            img->data = malloc(sizeof(float) * (size_t)n * (size_t)img->height * (size_t)img->width);
            if (!img->data) rc = sd_errorf("out of memory");
        }
        size_t hw = (size_t)img->height * (size_t)img->width;
        if (rc == 0 && (rc = h5_read_f32(&f, d, &band)) == 0) memcpy(img->data + (size_t)b * hw, band, hw * sizeof(float));
        free(band);
        band = NULL;
    }
    // as `geobench export` writes it: float32 samples (so --scale auto clips, as for its NPY)
    img->channels = n;
    img->src_dtype_bits = 32;
    img->is_float = 1;
    for (int b = 0; b < n; b++) free(names[b]);
    h5_close(&f);
    if (rc) image_free(img);
    return rc;
}

// --bands by name for a GeoTIFF: its band descriptions (GDAL_METADATA), matched exactly, else
// ignoring case.
static int tiff_band_indices(const char *path, const char *list, int *idx, int max, int *n) {
    char *have[GB_MAX_BANDS] = {0}, *want[GB_MAX_BANDS] = {0};
    int nh = 0, nw = 0;
    int rc = tiff_band_names(path, have, GB_MAX_BANDS, &nh);
    if (rc == 0 && nh == 0)
        rc = sd_errorf("%s: --bands '%s' names bands, but the file has no band descriptions (GDAL_METADATA DESCRIPTION "
                       "items); give 1-based band numbers", path, list);
    if (rc == 0) rc = split_bands(list, want, &nw, path);
    if (rc == 0 && nw > max) rc = sd_errorf("%s: --bands '%s' names %d bands, at most %d", path, list, nw, max);
    for (int i = 0; rc == 0 && i < nw; i++) {
        idx[i] = 0;
        for (int k = 0; k < nh && !idx[i]; k++)
            if (have[k] && strcmp(want[i], have[k]) == 0) idx[i] = k + 1;
        for (int k = 0; k < nh && !idx[i]; k++)
            if (have[k] && strcasecmp(want[i], have[k]) == 0) idx[i] = k + 1;
        if (!idx[i]) {
            char names[2048];
            size_t m = 0;
            names[0] = 0;
            for (int k = 0; k < nh && m + 1 < sizeof(names); k++)
                m += (size_t)snprintf(names + m, sizeof(names) - m, "%s%d '%s'", k ? ", " : "", k + 1, have[k] ? have[k] : "");
            rc = sd_errorf("%s: no band described as '%s' (--bands); the descriptions are %s", path, want[i], names);
        }
    }
    *n = nw;
    for (int i = 0; i < GB_MAX_BANDS; i++) free(have[i]), free(want[i]);
    return rc;
}

int gb_band_indices(const char *path, const char *list, int *idx, int max, int *n) {
    FILE *fp = fopen(path, "rb");
    unsigned char sig[8] = {0};
    size_t got = fp ? fread(sig, 1, 8, fp) : 0;
    if (fp) fclose(fp);
    if (!h5_is_hdf5(sig, got)) {
        if (got >= 4 && ((sig[0] == 'I' && sig[1] == 'I') || (sig[0] == 'M' && sig[1] == 'M')))
            return tiff_band_indices(path, list, idx, max, n);
        return sd_errorf("%s: --bands '%s' names bands, which only GEO-Bench HDF5 samples and GeoTIFFs with band "
                         "descriptions have; give 1-based band numbers", path, list);
    }
    H5File f;
    if (h5_open(&f, path)) return -1;
    char *have[GB_MAX_BANDS] = {0}, *want[GB_MAX_BANDS] = {0};
    GbSampleMeta m;
    memset(&m, 0, sizeof(m));
    int nh = 0, nw = 0, rc = default_bands(&f, have, &nh);
    if (rc == 0) rc = gb_sample_meta(&f, &m);
    if (rc == 0) rc = split_bands(list, want, &nw, path);
    if (rc == 0 && nw > max) rc = sd_errorf("%s: --bands '%s' names %d bands, at most %d", path, list, nw, max);
    for (int i = 0; rc == 0 && i < nw; i++) {
        const char *real = gb_resolve_band(&m, want[i]);  // a band's own name or one of its alt_names
        idx[i] = 0;
        for (int k = 0; k < nh; k++)
            if (strcmp(real ? real : want[i], have[k]) == 0) idx[i] = k + 1;
        if (!idx[i]) {
            char names[2048];
            size_t m = 0;
            names[0] = 0;
            for (int k = 0; k < nh && m + 1 < sizeof(names); k++)
                m += (size_t)snprintf(names + m, sizeof(names) - m, "%s'%s'", k ? ", " : "", have[k]);
            rc = sd_errorf("%s: no band '%s' (--bands); the bands are %s", path, want[i], names);
        }
    }
    *n = nw;
    for (int i = 0; i < GB_MAX_BANDS; i++) free(have[i]), free(want[i]);
    gb_sample_meta_free(&m);
    h5_close(&f);
    return rc;
}
