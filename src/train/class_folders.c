// Labels from class folders: see class_folders.h.
#include "train/class_folders.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"
#include "train/dataset.h"

typedef struct {
    char *id;     // relative path without the extension
    char *path;   // relative path (for errors)
    int cls;      // index into the sorted class names (set after the scan)
    int split;
} FolderItem;

typedef struct {
    FolderItem *items;
    int n, cap, skipped_root;
} FolderList;

static int has_data_extension(const char *name) {
    static const char *const ext[] = {".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg", ".safetensors"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t k = 0; k < sizeof(ext) / sizeof(ext[0]); k++)
        if (!strcasecmp(dot, ext[k])) return 1;
    return 0;
}

static int add_item(FolderList *l, const char *rel) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        FolderItem *it = (FolderItem *)realloc(l->items, (size_t)cap * sizeof(FolderItem));
        if (!it) return sd_errorf("out of memory");
        l->items = it, l->cap = cap;
    }
    FolderItem *it = &l->items[l->n];
    memset(it, 0, sizeof(*it));
    it->path = strdup(rel);
    it->id = strdup(rel);
    if (!it->path || !it->id) { free(it->path); free(it->id); return sd_errorf("out of memory"); }
    *strrchr(it->id, '.') = '\0';
    l->n++;
    return 0;
}

// A data file in a class folder becomes an item; one at the root is counted apart.
static int on_file(void *ctx, const char *rel, const char *full, const char *name) {
    FolderList *l = (FolderList *)ctx;
    (void)full;
    if (!has_data_extension(name)) return 0;
    if (!strchr(rel, '/')) {
        l->skipped_root++;  // not in a class folder (e.g. the cache's prompt embedding)
        return 0;
    }
    return add_item(l, rel);
}

static int cmp_item(const void *a, const void *b) { return strcmp(((const FolderItem *)a)->id, ((const FolderItem *)b)->id); }

// The class of an id: its first path component (written into buf).
static void class_of(const char *id, char *buf, size_t size) {
    size_t n = (size_t)(strchr(id, '/') - id);
    if (n >= size) n = size - 1;
    memcpy(buf, id, n);
    buf[n] = '\0';
}

int labels_from_folders(const char *dir, const double frac[3], uint64_t seed, const char *out_csv, const char *command,
                        ClassFolderSummary *summary) {
    memset(summary, 0, sizeof(*summary));
    double sum = 0.0;
    for (int k = 0; k < 3; k++) {
        if (!(frac[k] >= 0.0 && frac[k] <= 1.0)) return sd_errorf("--split: fraction %g is outside [0, 1]", frac[k]);
        sum += frac[k];
    }
    if (fabs(sum - 1.0) > 1e-6) return sd_errorf("--split: the fractions sum to %g, expected 1", sum);
    if (frac[0] <= 0.0 || frac[1] <= 0.0) return sd_errorf("--split: train and val need a fraction above 0 (train needs both)");
    FolderList l = {0};
    char **names = NULL, tmp[4200];
    int *idx = NULL, nc = 0, rc = SD_FAIL;
    FILE *f = NULL;
    tmp[0] = '\0';
    if (walk_files(dir, on_file, &l)) goto done;
    if (l.n == 0) {
        sd_errorf("%s: no image or feature files in class folders (DIR/<class>/<file>: .png .tif .tiff .npy .jpg "
                  ".jpeg .safetensors)%s", dir, l.skipped_root ? "; the files directly in it have no class folder" : "");
        goto done;
    }
    qsort(l.items, (size_t)l.n, sizeof(FolderItem), cmp_item);
    for (int i = 0; i < l.n; i++) {
        const char *id = l.items[i].id;
        // the CSV has no quoting: ',' would shift the fields, ';' is the multi-label separator
        if (strpbrk(id, ",;\n\r")) { sd_errorf("%s/%s: ',' ';' or a line break in the name cannot go into the labels CSV", dir, l.items[i].path); goto done; }
        if (i && !strcmp(id, l.items[i - 1].id)) {
            sd_errorf("%s/%s and %s/%s have the same id '%s' (one feature file): keep one", dir, l.items[i - 1].path, dir,
                      l.items[i].path, id);
            goto done;
        }
    }
    // classes in order of first appearance, then renumbered in sorted order (ImageFolder's)
    size_t count = (size_t)(unsigned)l.n;
    names = (char **)calloc(count, sizeof(char *));
    idx = (int *)malloc(count * sizeof(int));
    if (!names || !idx) { sd_errorf("out of memory"); goto done; }
    for (int i = 0; i < l.n; i++) {
        char c[4096];
        class_of(l.items[i].id, c, sizeof(c));
        int k = 0;
        while (k < nc && strcmp(names[k], c)) k++;
        if (k == nc && !(names[nc++] = strdup(c))) { sd_errorf("out of memory"); goto done; }
        l.items[i].cls = k;
    }
    int *order = idx;
    for (int k = 0; k < nc; k++) order[k] = k;
    for (int a = 1; a < nc; a++)  // insertion sort of the class indices by name (few classes)
        for (int b = a; b > 0 && strcmp(names[order[b - 1]], names[order[b]]) > 0; b--) {
            int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
        }
    int *rank = (int *)malloc((size_t)nc * sizeof(int));
    char **sorted = (char **)malloc((size_t)nc * sizeof(char *));
    if (!rank || !sorted) { free(rank); free(sorted); sd_errorf("out of memory"); goto done; }
    for (int k = 0; k < nc; k++) rank[order[k]] = k, sorted[k] = names[order[k]];
    for (int k = 0; k < nc; k++) names[k] = sorted[k];
    for (int i = 0; i < l.n; i++) l.items[i].cls = rank[l.items[i].cls];
    free(rank);
    free(sorted);
    // stratified split, per class in id order
    for (int c = 0; c < nc; c++) {
        int n = 0;
        for (int i = 0; i < l.n; i++)
            if (l.items[i].cls == c) idx[n++] = i;
        dataset_shuffle(idx, n, seed, c);
        int n_train = (int)floor(n * frac[0] + 0.5), n_trainval = (int)floor(n * (frac[0] + frac[1]) + 0.5);
        if (n_trainval > n) n_trainval = n;
        for (int j = 0; j < n; j++) l.items[idx[j]].split = j < n_train ? 0 : j < n_trainval ? 1 : 2;
    }
    // the CSV, written to a temporary file and renamed
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", out_csv, (int)getpid());
    f = fopen(tmp, "w");
    if (!f) { sd_errorf("%s: cannot write: %s", out_csv, strerror(errno)); tmp[0] = '\0'; goto done; }
    static const char *const split_names[3] = {"train", "val", "test"};
    fprintf(f, "# Labels of the class folders in %s (docs/labels-format.md): split %g/%g/%g per class, seed %llu\n", dir,
            frac[0], frac[1], frac[2], (unsigned long long)seed);
    if (command) fprintf(f, "# made by: %s\n", command);
    fprintf(f, "# classes: ");
    for (int c = 0; c < nc; c++) fprintf(f, "%s%s", c ? "," : "", names[c]);
    fprintf(f, "\nimage,split,label\n");
    for (int i = 0; i < l.n; i++) {
        fprintf(f, "%s,%s,%d\n", l.items[i].id, split_names[l.items[i].split], l.items[i].cls);
        summary->split_count[l.items[i].split]++;
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad || rename(tmp, out_csv) != 0) { sd_errorf("%s: write failed: %s", out_csv, strerror(errno)); goto done; }
    tmp[0] = '\0';
    summary->num_classes = nc;
    summary->count = l.n;
    summary->skipped_root = l.skipped_root;
    rc = 0;
done:
    if (f) fclose(f);
    if (tmp[0]) unlink(tmp);
    for (int k = 0; k < nc; k++) free(names[k]);
    free(names);
    free(idx);
    for (int i = 0; i < l.n; i++) free(l.items[i].id), free(l.items[i].path);
    free(l.items);
    return rc;
}
