#include "io/labels.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/error.h"
#include "io/npy.h"
#include "io/png.h"

const char *label_task_name(LabelTask t) {
    return t == LABELS_CLASSIFICATION ? "classification" : t == LABELS_MULTILABEL ? "multilabel" : "segmentation";
}

int label_task_from_name(const char *name, LabelTask *out) {
    if (!strcmp(name, "cls") || !strcmp(name, "classification")) *out = LABELS_CLASSIFICATION;
    else if (!strcmp(name, "multilabel") || !strcmp(name, "multi_label_classification")) *out = LABELS_MULTILABEL;
    else if (!strcmp(name, "seg") || !strcmp(name, "segmentation")) *out = LABELS_SEGMENTATION;
    else return sd_errorf("task '%s': expected cls, multilabel or seg", name);
    return 0;
}

const char *split_name(SplitKind s) { return s == SPLIT_TRAIN ? "train" : s == SPLIT_VAL ? "val" : "test"; }

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static int parse_index(const char *s, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > 100000) return SD_FAIL;
    *out = (int)v;
    return 0;
}

void labels_free(LabelSet *ls) {
    for (int i = 0; i < ls->count; i++) {
        free(ls->rows[i].image);
        free(ls->rows[i].labels);
        free(ls->rows[i].mask_path);
    }
    free(ls->rows);
    if (ls->class_names)
        for (int i = 0; i < ls->num_names; i++) free(ls->class_names[i]);
    free(ls->class_names);
    free(ls->path);
    memset(ls, 0, sizeof(*ls));
}

// Splits s at every `sep` (empty fields kept, unlike strtok, which would merge
// "a,,b" into two fields and shift the later ones). Returns the field count;
// fields past max are not stored but counted.
static int split_fields(char *s, char sep, char **f, int max) {
    int n = 0;
    for (;;) {
        char *e = strchr(s, sep);
        if (e) *e = '\0';
        if (n < max) f[n] = trim(s);
        n++;
        if (!e) return n;
        s = e + 1;
    }
}

static int parse_class_names(LabelSet *ls, char *list, int lineno) {
    int n = 1;
    for (char *p = list; *p; p++) n += *p == ',';
    ls->class_names = (char **)calloc((size_t)n, sizeof(char *));
    if (!ls->class_names) return sd_errorf("out of memory");
    ls->num_classes = n;
    ls->num_names = n;
    char **f = (char **)calloc((size_t)n, sizeof(char *));
    if (!f) return sd_errorf("out of memory");
    split_fields(list, ',', f, n);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        // an empty name ("a,,b", a trailing comma) would shift the names of the later classes
        if (!*f[i]) rc = sd_errorf("%s:%d: class name %d of %d is empty", ls->path, lineno, i, n);
        else if (!(ls->class_names[i] = strdup(f[i]))) rc = sd_errorf("out of memory");
    }
    free(f);
    return rc;
}

// An image id is a path relative to the feature cache (class folders: "Forest/Forest_1"): no
// absolute path, no empty, "." or ".." component, so <cache>/<id>.safetensors stays inside the cache.
static const char *bad_image_id(const char *id) {
    if (id[0] == '/') return "an absolute path (ids are relative to the feature folder)";
    for (const char *c = id; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0) return "empty path component";
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return "'.' and '..' are not allowed (ids are relative to the feature folder)";
        if (!e) break;
        if (!e[1]) return "ends with '/'";
        c = e + 1;
    }
    return NULL;
}

// Parses one data line into row r. `dir` is the CSV's folder.
static int parse_row(LabelSet *ls, char *line, int lineno, const char *dir, LabelRow *row) {
    char *f[3];
    int n = split_fields(line, ',', f, 3);
    if (n > 3) return sd_errorf("%s:%d: more than 3 fields (image,split,label)", ls->path, lineno);
    if (n == 2 && ls->task == LABELS_MULTILABEL) f[n++] = (char *)"";  // no labels on
    if (n != 3) return sd_errorf("%s:%d: expected 3 fields (image,split,label), got %d", ls->path, lineno, n);
    if (!*f[0]) return sd_errorf("%s:%d: empty image id", ls->path, lineno);
    const char *why = bad_image_id(f[0]);
    if (why) return sd_errorf("%s:%d: image id '%s': %s", ls->path, lineno, f[0], why);
    if (!strcmp(f[1], "train")) row->split = SPLIT_TRAIN;
    else if (!strcmp(f[1], "val")) row->split = SPLIT_VAL;
    else if (!strcmp(f[1], "test")) row->split = SPLIT_TEST;
    else return sd_errorf("%s:%d: split '%s': expected train, val or test", ls->path, lineno, f[1]);
    row->image = strdup(f[0]);
    if (!row->image) return sd_errorf("out of memory");
    if (ls->task == LABELS_CLASSIFICATION) {
        if (parse_index(f[2], &row->label))
            return sd_errorf("%s:%d: label '%s' is not a class index", ls->path, lineno, f[2]);
    } else if (ls->task == LABELS_MULTILABEL) {
        int count = *f[2] ? 1 : 0;
        for (char *p = f[2]; *p; p++) count += *p == ';';
        row->labels = (int *)calloc((size_t)(count ? count : 1), sizeof(int));
        if (!row->labels) return sd_errorf("out of memory");
        char *s2 = NULL;
        for (char *tok = strtok_r(f[2], ";", &s2); tok; tok = strtok_r(NULL, ";", &s2)) {
            if (parse_index(trim(tok), &row->labels[row->num_labels]))
                return sd_errorf("%s:%d: label '%s' is not a class index", ls->path, lineno, tok);
            row->num_labels++;
        }
    } else {
        if (!*f[2]) return sd_errorf("%s:%d: empty mask path", ls->path, lineno);
        size_t len = strlen(dir) + strlen(f[2]) + 2;
        row->mask_path = (char *)malloc(len);
        if (!row->mask_path) return sd_errorf("out of memory");
        if (f[2][0] == '/') snprintf(row->mask_path, len, "%s", f[2]);
        else snprintf(row->mask_path, len, "%s/%s", dir, f[2]);
    }
    return 0;
}

// Orders row indices by image id (qsort has no context argument: a file-scope pointer, the calling
// thread's own so that two host threads may load labels at once).
static const LabelRow *g_sort_rows;
#pragma omp threadprivate(g_sort_rows)
static int cmp_row_image(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(g_sort_rows[i].image, g_sort_rows[j].image);
    return c ? c : (i > j) - (i < j);
}

// Each image id once. Sorted, then neighbours compared: comparing every pair
// took 4 s for 50k rows (0.9 MB) and over a minute for 200k (3.6 MB).
static int check_duplicates(const LabelSet *ls) {
    int *idx = (int *)malloc((size_t)ls->count * sizeof(int));
    if (!idx) return sd_errorf("out of memory");
    for (int i = 0; i < ls->count; i++) idx[i] = i;
    g_sort_rows = ls->rows;
    qsort(idx, (size_t)ls->count, sizeof(int), cmp_row_image);
    int rc = 0;
    for (int k = 1; k < ls->count && !rc; k++) {
        const LabelRow *a = &ls->rows[idx[k - 1]], *b = &ls->rows[idx[k]];
        if (!strcmp(a->image, b->image))
            rc = sd_errorf("%s:%d: image '%s' is listed twice (also on line %d)", ls->path, b->line, b->image, a->line);
    }
    free(idx);
    return rc;
}

enum { LABELS_MAX_LINE = 8191 };  // bytes of a CSV line, newline included

int labels_load(const char *path, LabelTask task, LabelSet *out) {
    memset(out, 0, sizeof(*out));
    out->task = task;
    out->path = strdup(path);
    if (!out->path) return sd_errorf("out of memory");
    FILE *f = fopen(path, "r");
    if (!f) { int e = errno; labels_free(out); return sd_errorf("%s: cannot open: %s", path, strerror(e)); }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof(dir), ".");
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int lineno = 0, cap = 0, header_seen = 0, names_given = 0, max_label = -1;
    while ((len = getline(&line, &line_cap, f)) != -1) {
        lineno++;
        if (len > LABELS_MAX_LINE) { sd_errorf("%s:%d: line too long (over %d bytes)", path, lineno, LABELS_MAX_LINE); goto fail; }
        // a NUL byte would silently cut the line short (the rest of it ignored)
        if (strlen(line) != (size_t)len) { sd_errorf("%s:%d: NUL byte in the line (not a text file?)", path, lineno); goto fail; }
        char *s = trim(line);
        if (!*s) continue;
        if (s[0] == '#') {
            if (!strncmp(s, "# classes:", 10) && !names_given) {
                if (parse_class_names(out, s + 10, lineno)) goto fail;
                names_given = 1;
            }
            continue;
        }
        if (!header_seen) {
            header_seen = 1;
            if (!strncmp(s, "image,", 6)) continue;  // the column header
        }
        if (out->count == cap) {
            cap = cap ? cap * 2 : 64;
            LabelRow *rows = (LabelRow *)realloc(out->rows, (size_t)cap * sizeof(LabelRow));
            if (!rows) { sd_errorf("out of memory"); goto fail; }
            out->rows = rows;
        }
        LabelRow *row = &out->rows[out->count];
        memset(row, 0, sizeof(*row));
        row->line = lineno;
        out->count++;
        if (parse_row(out, s, lineno, dir, row)) goto fail;
        if (task == LABELS_CLASSIFICATION && row->label > max_label) max_label = row->label;
        for (int k = 0; k < row->num_labels; k++)
            if (row->labels[k] > max_label) max_label = row->labels[k];
    }
    free(line);
    line = NULL;
    fclose(f);
    f = NULL;
    if (out->count == 0) { sd_errorf("%s: no labelled images", path); goto fail; }
    if (!names_given) out->num_classes = max_label + 1;
    else if (max_label >= out->num_classes) {
        sd_errorf("%s: class index %d but only %d class names", path, max_label, out->num_classes);
        goto fail;
    }
    if (check_duplicates(out)) goto fail;
    return 0;
fail:
    free(line);
    if (f) fclose(f);
    labels_free(out);
    return SD_FAIL;
}

int labels_split(const LabelSet *ls, SplitKind split, int *rows_out) {
    int n = 0;
    for (int i = 0; i < ls->count; i++)
        if (ls->rows[i].split == split) rows_out[n++] = i;
    return n;
}

int labels_set_num_classes(LabelSet *ls, int num_classes, const char *source) {
    if (num_classes < 1) return sd_errorf("%s: %d classes: expected at least 1", source, num_classes);
    if (ls->class_names && ls->num_names != num_classes)
        return sd_errorf("%s names %d class%s on its '# classes:' line, but %s has %d: give exactly one name per "
                         "class, in index order (or remove the line to use class numbers)",
                         ls->path, ls->num_names, ls->num_names == 1 ? "" : "es", source, num_classes);
    ls->num_classes = num_classes;
    return 0;
}

const char *labels_class_name(const LabelSet *ls, int c, char *buf, int size) {
    if (ls && ls->class_names && c >= 0 && c < ls->num_names) return ls->class_names[c];
    snprintf(buf, (size_t)size, "%d", c);
    return buf;
}

int labels_check_classes(const LabelSet *ls) {
    if (ls->task == LABELS_SEGMENTATION) return 0;
    for (int r = 0; r < ls->count; r++) {
        const LabelRow *row = &ls->rows[r];
        int n = ls->task == LABELS_CLASSIFICATION ? 1 : row->num_labels;
        for (int k = 0; k < n; k++) {
            int c = ls->task == LABELS_CLASSIFICATION ? row->label : row->labels[k];
            if (c < 0 || c >= ls->num_classes)
                return sd_errorf("%s:%d: image '%s': class index %d is outside 0..%d (num_classes %d)", ls->path,
                                 row->line, row->image, c, ls->num_classes - 1, ls->num_classes);
        }
    }
    return 0;
}

int labels_load_mask(const LabelSet *ls, int r, int expect_h, int expect_w, int ignore_value, int64_t ignore_index,
                     int64_t *out) {
    const char *p = ls->rows[r].mask_path;
    size_t len = strlen(p);
    int64_t n = (int64_t)expect_h * expect_w;
    if (len > 4 && !strcmp(p + len - 4, ".npy")) {
        NpyArray a;
        if (npy_read(p, &a)) return SD_FAIL;
        int ok = a.ndim == 2 && a.shape[0] == expect_h && a.shape[1] == expect_w;
        if (!ok) { npy_free(&a); return sd_errorf("%s: mask shape must be (%d, %d)", p, expect_h, expect_w); }
        float *v = NULL;
        if (npy_to_float32(&a, &v)) { npy_free(&a); return SD_FAIL; }
        npy_free(&a);
        for (int64_t i = 0; i < n; i++) {
            // |v| < 2^31 first: the cast of a larger float (or NaN) is undefined
            if (!(fabsf(v[i]) < 2147483648.0f) || v[i] != (float)(int64_t)v[i]) {
                sd_errorf("%s: mask value %g at row %lld, column %lld is not a class index", p, v[i],
                          (long long)(i / expect_w), (long long)(i % expect_w));
                free(v);
                return SD_FAIL;
            }
            out[i] = (int64_t)v[i];
        }
        free(v);
    } else {
        PngImage img;
        if (png_read(p, &img)) return SD_FAIL;
        if (img.channels != 1 || img.bytes_per_sample != 1 || img.width != expect_w || img.height != expect_h) {
            sd_errorf("%s: mask must be an 8-bit gray or palette PNG of %dx%d (got %dx%d, %d channels, %d-bit)", p,
                      expect_w, expect_h, img.width, img.height, img.channels, img.bit_depth);
            png_free(&img);
            return SD_FAIL;
        }
        const uint8_t *px = (const uint8_t *)img.pixels;
        for (int64_t i = 0; i < n; i++) out[i] = px[i];
        png_free(&img);
    }
    if (ls->num_classes <= 0) return sd_errorf("%s: the number of classes is unknown (add a '# classes:' line)", ls->path);
    for (int64_t i = 0; i < n; i++) {
        if (out[i] == ignore_value) out[i] = ignore_index;
        else if (out[i] < 0 || out[i] >= ls->num_classes)
            return sd_errorf("%s: pixel at row %lld, column %lld has class %lld, outside 0..%d (num_classes %d; "
                             "ignore value %d)", p, (long long)(i / expect_w), (long long)(i % expect_w),
                             (long long)out[i], ls->num_classes - 1, ls->num_classes, ignore_value);
    }
    return 0;
}
