// Scene-scale inference by windows (tiling.h): window positions, blending ramps, the image read
// by rows, and the loop that accumulates probabilities in a buffer of one window row.
#include "models/tiling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int tile_positions(int n, int tile, int overlap, int **pos, int *count) {
    *pos = NULL, *count = 0;
    if (tile < 1 || overlap < 0 || overlap >= tile || tile > n)
        return sd_errorf("tiling: window %d with overlap %d on %d pixels", tile, overlap, n);
    int stride = tile - overlap, cap = (n - tile) / stride + 2;
    int *p = (int *)malloc((size_t)cap * sizeof(int));
    if (!p) return sd_errorf("out of memory");
    int k = 0;
    for (int x = 0; x + tile < n; x += stride) p[k++] = x;
    p[k++] = n - tile;  // the last window ends at the edge (moved back when the stride overshoots)
    *pos = p, *count = k;
    return 0;
}

float tile_ramp(int i, int tile, int overlap, int first, int last) {
    float r = 1.0f;
    if (overlap <= 0) return r;
    // Pixel centres: (i + 0.5) / overlap rises over the first `overlap` pixels. Two neighbours
    // `overlap` apart cross-fade: (j + 0.5) / K + (K - j - 0.5) / K = 1.
    if (!first && i < overlap) r = ((float)i + 0.5f) / (float)overlap;
    if (!last && i >= tile - overlap) {
        float q = ((float)(tile - i) - 0.5f) / (float)overlap;
        if (q < r) r = q;
    }
    return r;
}

// ---------------------------------------------------------------------------
// The image, by rows.

int scene_is_tiff(const char *path) {
    unsigned char m[4] = {0, 0, 0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    if (n < 4) return 0;
    return (m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
           (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43));
}

int scene_open(SceneSource *s, const char *path) {
    memset(s, 0, sizeof(*s));
    if (scene_is_tiff(path)) {
        if (tiff_open(path, &s->tiff, &s->tiff_info)) return -1;
        const TiffImage *t = &s->tiff_info;
        s->is_tiff = 1;
        s->bands = t->bands, s->height = t->height, s->width = t->width;
        Image *f = &s->facts;  // what image_load would say of the file (io/image.c load_tiff)
        f->channels = t->bands, f->height = t->height, f->width = t->width;
        f->src_dtype_bits = t->bytes_per_sample * 8;
        f->is_float = t->dtype == NPY_FLOAT32 || t->dtype == NPY_FLOAT64;
        f->is_signed = t->dtype == NPY_INT8 || t->dtype == NPY_INT16 || t->dtype == NPY_INT32 || t->dtype == NPY_INT64;
        f->has_nodata = t->has_nodata;
        f->nodata = t->nodata;
        f->format = "TIFF";
        return 0;
    }
    if (image_load(path, &s->whole)) return -1;  // other formats: the whole image in memory
    s->bands = s->whole.channels, s->height = s->whole.height, s->width = s->whole.width;
    s->facts = s->whole;
    s->facts.data = NULL;
    return 0;
}

int scene_read_rows(SceneSource *s, int y0, int rows, float *out) {
    size_t plane = (size_t)rows * (size_t)s->width, n = plane * (size_t)s->bands;
    if (!s->is_tiff) {
        if (y0 < 0 || rows < 1 || y0 > s->height - rows) return sd_errorf("rows %d..%d of %d", y0, y0 + rows - 1, s->height);
        for (int b = 0; b < s->bands; b++)
            memcpy(out + (size_t)b * plane, s->whole.data + ((size_t)b * s->height + (size_t)y0) * s->width,
                   plane * sizeof(float));
        return 0;
    }
    size_t need = n * (size_t)s->tiff_info.bytes_per_sample;
    if (need > s->native_cap) {
        void *p = realloc(s->native, need);
        if (!p) return sd_errorf("out of memory for %d rows of %d x %d pixels", rows, s->width, s->bands);
        s->native = p, s->native_cap = need;
    }
    if (tiff_read_rows(s->tiff, y0, rows, s->native)) return -1;
    for (size_t i = 0; i < n; i++) out[i] = npy_sample_to_float(s->native, i, s->tiff_info.dtype);
    return 0;
}

void scene_close(SceneSource *s) {
    if (s->tiff) tiff_close(s->tiff);  // frees tiff_info's geo arrays too
    image_free(&s->whole);
    free(s->native);
    memset(s, 0, sizeof(*s));
}

// ---------------------------------------------------------------------------
// The loop.

// Classes of scene rows [a, b) from the accumulator (rows from acc_y0): argmax of the weighted
// sums (the common weight does not change it; ties: the lower class). strip holds the source rows
// from strip_y0, for the nodata test.
static void finalize_rows(const TileJob *job, const float *acc, int acc_y0, const float *strip, int strip_y0, int a,
                          int b) {
    const SceneSource *s = job->src;
    int W = s->width, C = job->classes, T = job->tile, B = s->bands;
    size_t plane = (size_t)T * (size_t)W, splane = plane;
    int nodata = job->nodata_class >= 0 && s->facts.has_nodata;
    float nd = (float)s->facts.nodata;
    int nd_nan = isnan(s->facts.nodata);
    for (int y = a; y < b; y++) {
        const float *row = acc + (size_t)(y - acc_y0) * W;
        uint8_t *out = job->classmap + (size_t)y * W;
        for (int x = 0; x < W; x++) {
            int best = 0;
            float bv = row[x];
            for (int c = 1; c < C; c++)
                if (row[(size_t)c * plane + x] > bv) bv = row[(size_t)c * plane + x], best = c;
            if (nodata) {
                int all = 1;
                for (int k = 0; k < B && all; k++) {
                    float v = strip[(size_t)k * splane + (size_t)(y - strip_y0) * W + x];
                    all = nd_nan ? isnan(v) : v == nd;
                }
                if (all) best = job->nodata_class;
            }
            out[x] = (uint8_t)best;
        }
    }
}

int tiles_run(const TileJob *job) {
    SceneSource *s = job->src;
    int W = s->width, H = s->height, T = job->tile, K = job->overlap, C = job->classes, B = s->bands;
    if (C < 1 || C > 255) return sd_errorf("tiling: %d classes (1..255 fit an 8-bit map)", C);
    int *xs = NULL, *ys = NULL, nx = 0, ny = 0, rc = -1;
    float *strip = NULL, *win = NULL, *probs = NULL, *acc = NULL, *wx = NULL, *wy = NULL;
    if (tile_positions(W, T, K, &xs, &nx) || tile_positions(H, T, K, &ys, &ny)) goto done;
    size_t plane = (size_t)T * (size_t)W;
    strip = (float *)malloc(plane * (size_t)B * sizeof(float));          // source rows of one window row
    win = (float *)malloc((size_t)T * T * (size_t)B * sizeof(float));    // one window
    probs = (float *)malloc((size_t)T * T * (size_t)C * sizeof(float));  // its probabilities
    acc = (float *)calloc(plane * (size_t)C, sizeof(float));             // weighted sums, rows [ys[r], ys[r] + T)
    wx = (float *)malloc((size_t)T * sizeof(float));
    wy = (float *)malloc((size_t)T * sizeof(float));
    if (!strip || !win || !probs || !acc || !wx || !wy) {
        sd_errorf("out of memory for the window buffers (%d x %d pixels, %d bands, %d classes)", T, W, B, C);
        goto done;
    }
    TileProgress pr = {0, nx * ny, 0, ny};
    for (int r = 0; r < ny; r++) {
        int y0 = ys[r];
        pr.row = r;
        if (scene_read_rows(s, y0, T, strip)) goto done;
        for (int j = 0; j < T; j++) wy[j] = tile_ramp(j, T, K, r == 0, r == ny - 1);
        for (int q = 0; q < nx; q++) {
            if (job->should_stop && job->should_stop(job->ctx)) { rc = 1; goto done; }
            int x0 = xs[q];
            for (int b = 0; b < B; b++)
                for (int j = 0; j < T; j++)
                    memcpy(win + ((size_t)b * T + j) * T, strip + (size_t)b * plane + (size_t)j * W + x0,
                           (size_t)T * sizeof(float));
            if (job->window(job->ctx, win, B, T, probs)) {
                sd_error_context("window at x %d, y %d (%d x %d)", x0, y0, T, T);
                goto done;
            }
            for (int i = 0; i < T; i++) wx[i] = tile_ramp(i, T, K, q == 0, q == nx - 1);
            for (int c = 0; c < C; c++)
                for (int j = 0; j < T; j++) {
                    float *dst = acc + (size_t)c * plane + (size_t)j * W + x0;
                    const float *src = probs + ((size_t)c * T + j) * T;
                    for (int i = 0; i < T; i++) dst[i] += wy[j] * wx[i] * src[i];
                }
            pr.done++;
            if (job->progress) job->progress(job->ctx, &pr);
        }
        // Rows above the next window row are final; the buffer moves down to that row.
        int next = r + 1 < ny ? ys[r + 1] : H;
        finalize_rows(job, acc, y0, strip, y0, y0, next);
        int d = next - y0;
        if (r + 1 < ny)
            for (int c = 0; c < C; c++) {
                float *p = acc + (size_t)c * plane;
                memmove(p, p + (size_t)d * W, (size_t)(T - d) * W * sizeof(float));
                memset(p + (size_t)(T - d) * W, 0, (size_t)d * W * sizeof(float));
            }
    }
    rc = 0;
done:
    free(xs), free(ys), free(strip), free(win), free(probs), free(acc), free(wx), free(wy);
    return rc;
}
