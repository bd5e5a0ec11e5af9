// Helpers shared by the figures: images for display, run folder files. See figures.h.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "figures/figures.h"
#include "io/image.h"

int figure_run_file(const char *run_dir, const char *name, const char *made_by, char *path, size_t size) {
    struct stat sb;
    if (stat(run_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return sd_errorf("%s: not a run folder (no such directory)", run_dir);
    snprintf(path, size, "%s/%s", run_dir, name);
    if (stat(path, &sb) != 0) return sd_errorf("%s: no %s in the run folder (%s writes it)", run_dir, name, made_by);
    return 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

// "3,2,1" -> bands[0..n) (1-based); n is 1 or 3.
static int parse_bands(const char *s, int C, const char *path, int *bands, int *n) {
    *n = 0;
    if (!s) {
        if (C >= 3) { bands[0] = 1; bands[1] = 2; bands[2] = 3; *n = 3; }
        else { bands[0] = 1; *n = 1; }
        return 0;
    }
    const char *p = s;
    while (*p && *n < 3) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1) return sd_errorf("--bands '%s': expected 1 or 3 band numbers from 1, e.g. 3,2,1", s);
        if (v > C) return sd_errorf("--bands '%s': %s has %d band%s", s, path, C, C == 1 ? "" : "s");
        bands[(*n)++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return sd_errorf("--bands '%s': expected numbers separated by commas", s);
    }
    if (*p || (*n != 1 && *n != 3)) return sd_errorf("--bands '%s': expected 1 or 3 band numbers", s);
    return 0;
}

int figure_load_rgb(const char *path, const char *bands_arg, uint8_t **rgb, int *w, int *h) {
    Image img;
    *rgb = NULL;
    if (image_load(path, &img)) return SD_FAIL;
    int bands[3], nb;
    if (parse_bands(bands_arg, img.channels, path, bands, &nb)) { image_free(&img); return SD_FAIL; }
    int64_t hw = (int64_t)img.height * img.width;
    uint8_t *out = (uint8_t *)malloc((size_t)hw * 3);
    float *sorted = (float *)malloc((size_t)hw * sizeof(float));
    if (!out || !sorted) {
        free(out);
        free(sorted);
        image_free(&img);
        return sd_errorf("out of memory for %s", path);
    }
    for (int k = 0; k < nb; k++) {
        const float *x = img.data + (int64_t)(bands[k] - 1) * hw;
        int64_t n = 0;
        for (int64_t p = 0; p < hw; p++)
            if (isfinite(x[p]) && !(img.has_nodata && x[p] == (float)img.nodata)) sorted[n++] = x[p];
        double lo = 0, hi = 1;
        if (n) {
            qsort(sorted, (size_t)n, sizeof(float), cmp_float);
            lo = sorted[(int64_t)(0.02 * (n - 1))];
            hi = sorted[(int64_t)(0.98 * (n - 1))];
            if (!(hi > lo)) { lo = sorted[0]; hi = sorted[n - 1]; }
        }
        for (int64_t p = 0; p < hw; p++) {
            double t = hi > lo ? (x[p] - lo) / (hi - lo) : 0.5;
            if (!isfinite(t)) t = 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            uint8_t v = (uint8_t)(t * 255.0 + 0.5);
            if (nb == 1) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = v;
            else out[3 * p + k] = v;
        }
    }
    *w = img.width;
    *h = img.height;
    *rgb = out;
    free(sorted);
    image_free(&img);
    return 0;
}
