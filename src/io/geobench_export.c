// satdifuser geobench export: a GEO-Bench task folder to the project's own inputs
// (images/<sample>.npy float32 (C, H, W), masks/<sample>.npy, labels.csv as
// docs/labels-format.md describes). Everything goes to a temporary folder beside OUT that
// is renamed to OUT at the end, so a failure leaves nothing half-written.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/geobench.h"
#include "io/npy.h"

// Removes the files of one level of `dir` (the export's own files) and the folder.
static void remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4352];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_export(const char *tmp) {
    char sub[4300];
    snprintf(sub, sizeof(sub), "%s/images", tmp);
    remove_flat(sub);
    snprintf(sub, sizeof(sub), "%s/masks", tmp);
    remove_flat(sub);
    remove_flat(tmp);
}

// 1 if path is a folder with nothing in it, 0 if it does not exist, -1 otherwise.
static int empty_or_missing(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return -1;
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n ? -1 : 1;
}

// A class name on the '# classes:' line: commas separate names there, so they become ';'.
static void put_class_name(FILE *fp, const char *name) {
    for (const char *p = name; *p; p++) fputc(*p == ',' ? ';' : (*p == '\n' || *p == '\r') ? ' ' : *p, fp);
}

int gb_export(const char *dir, const char *out, const char *partition, const char *bands, int images,
              GbExportProgress progress, void *user) {
    int state = empty_or_missing(out);
    if (state < 0)
        return sd_errorf("--out %s: exists and is not an empty folder (choose a new folder; nothing is overwritten)",
                         out);
    GbTask t;
    if (gb_task_open(&t, dir, partition)) return -1;
    char tmp[4200], path[4400];
    snprintf(tmp, sizeof(tmp), "%s.partial-%ld", out, (long)getpid());
    int rc = 0;
    if (mkdir(tmp, 0777) != 0) rc = sd_errorf("%s: cannot create the folder: %s", tmp, strerror(errno));
    snprintf(path, sizeof(path), "%s/images", tmp);
    if (rc == 0 && images && mkdir(path, 0777) != 0) rc = sd_errorf("%s: cannot create the folder: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/masks", tmp);
    if (rc == 0 && t.type == GB_TASK_SEG && mkdir(path, 0777) != 0)
        rc = sd_errorf("%s: cannot create the folder: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/labels.csv", tmp);
    FILE *csv = rc == 0 ? fopen(path, "w") : NULL;
    if (rc == 0 && !csv) rc = sd_errorf("%s: cannot write: %s", path, strerror(errno));
    static const char *task_names[] = {"cls", "multilabel", "seg"};
    static const char *splits[] = {"train", "val", "test"};
    if (rc == 0) {
        fprintf(csv, "# GEO-Bench task %s, partition %s (satdifuser geobench export), task %s", dir, t.partition,
                task_names[t.type]);
        if (t.num_classes) fprintf(csv, ", %d classes", t.num_classes);
        fprintf(csv, "\n");
        if (t.class_names) {
            fprintf(csv, "# classes: ");
            for (int c = 0; c < t.num_classes; c++) {
                if (c) fputc(',', csv);
                put_class_name(csv, t.class_names[c]);
            }
            fprintf(csv, "\n");
        }
        fprintf(csv, "image,split,label\n");
    }
    char first_bands[GB_MAX_BANDS * 64] = "";
    for (int i = 0; rc == 0 && i < t.num_samples; i++) {
        GbSample s;
        if (gb_load_sample(&t, i, bands, &s)) {
            rc = -1;
            break;
        }
        // every image of one export has the same bands in the same order
        char these[sizeof(first_bands)];
        size_t n = 0;
        these[0] = 0;
        for (int b = 0; b < s.C && n + 1 < sizeof(these); b++)
            n += (size_t)snprintf(these + n, sizeof(these) - n, b ? ",%s" : "%s", s.band_names[b]);
        if (i == 0) memcpy(first_bands, these, sizeof(these));
        else if (strcmp(these, first_bands) != 0)
            rc = sd_errorf("%s/%s.hdf5: bands_order is %s but sample '%s' has %s; name the bands with --bands", dir,
                           t.names[i], these, t.names[0], first_bands);
        int64_t shape[3] = {s.C, s.H, s.W};
        snprintf(path, sizeof(path), "%s/images/%s.npy", tmp, t.names[i]);
        if (rc == 0 && images) rc = npy_write(path, NPY_FLOAT32, 3, shape, s.image);
        if (rc == 0 && t.type == GB_TASK_SEG) {
            // masks as uint8 when every value fits (the label loader reads any integer NPY)
            size_t npx = (size_t)s.mask_h * (size_t)s.mask_w;
            int small = 1;
            for (size_t k = 0; k < npx; k++) small &= s.mask[k] >= 0 && s.mask[k] <= 255;
            uint8_t *u8 = small ? malloc(npx) : NULL;
            for (size_t k = 0; u8 && k < npx; k++) u8[k] = (uint8_t)s.mask[k];
            int64_t mshape[2] = {s.mask_h, s.mask_w};
            snprintf(path, sizeof(path), "%s/masks/%s.npy", tmp, t.names[i]);
            rc = small && !u8 ? sd_errorf("out of memory")
                              : npy_write(path, small ? NPY_UINT8 : NPY_INT64, 2, mshape, small ? (void *)u8 : (void *)s.mask);
            free(u8);
            fprintf(csv, "%s,%s,masks/%s.npy\n", t.names[i], splits[t.split[i]], t.names[i]);
        } else if (rc == 0 && t.type == GB_TASK_CLS) {
            fprintf(csv, "%s,%s,%lld\n", t.names[i], splits[t.split[i]], (long long)s.label);
        } else if (rc == 0) {
            fprintf(csv, "%s,%s,", t.names[i], splits[t.split[i]]);
            int k = 0;
            int nc = t.num_classes ? t.num_classes : t.num_stats;
            for (int c = 0; c < nc; c++)
                if (s.label_vec[c]) fprintf(csv, k++ ? ";%d" : "%d", c);
            fprintf(csv, "\n");
        }
        gb_sample_free(&s);
        if (progress && (i + 1) % 1000 == 0) progress(user, i + 1, t.num_samples, 0, t.partition, task_names[t.type]);
    }
    if (csv && fclose(csv) != 0 && rc == 0) rc = sd_errorf("%s/labels.csv: write failed", tmp);
    if (rc == 0 && state == 1 && rmdir(out) != 0) rc = sd_errorf("%s: cannot replace the empty folder: %s", out,
                                                                  strerror(errno));
    if (rc == 0 && rename(tmp, out) != 0) rc = sd_errorf("%s: cannot rename %s to it: %s", out, tmp, strerror(errno));
    if (rc) remove_export(tmp);
    else if (progress)
        progress(user, t.num_samples, t.num_samples, 1, t.partition, task_names[t.type]);
    gb_task_free(&t);
    return rc;
}
