// Image preprocessing (see preprocess.h). References: SatDiFuser
// datasets/m_eurosat.py & co. (band choice, /4095, clip, Resize, Normalize),
// torchvision 0.14 transforms.functional_tensor.resize (output size), and
// aten/src/ATen/native/cpu/UpSampleKernel.cpp (_upsample_bilinear2d_aa).
#include "models/preprocess.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "kernels/kernels.h"

void preprocess_options_default(PreprocessOptions *o) {
    memset(o, 0, sizeof(*o));
    o->n_bands = 0;
    o->scale = SCALE_DIV4095;
    o->size = 256;
    o->antialias = 1;
}

int preprocess_choose_bands(const PreprocessOptions *o, int C, const char *source, int bands[PRE_MAX_BANDS]) {
    if (o->n_bands > 0) {
        if (o->n_bands != 3) return sd_errorf("%s: %d bands selected, expected 3 (R,G,B)", source, o->n_bands);
        for (int k = 0; k < 3; k++) {
            if (o->bands[k] < 1 || o->bands[k] > C)
                return sd_errorf("%s: has %d band%s, band %d was asked for (bands %d,%d,%d)", source, C, C == 1 ? "" : "s",
                                 o->bands[k], o->bands[0], o->bands[1], o->bands[2]);
            bands[k] = o->bands[k];
        }
        return 0;
    }
    if (C == 3 || C == 4) {  // RGB or RGBA (alpha dropped)
        bands[0] = 1, bands[1] = 2, bands[2] = 3;
        return 0;
    }
    if (C == 12 || C == 13) {  // Sentinel-2: B04, B03, B02
        bands[0] = 4, bands[1] = 3, bands[2] = 2;
        return 0;
    }
    return sd_errorf("%s: has %d band%s; give the R,G,B bands with --bands (e.g. --bands 1,1,1 for a gray image)", source, C,
                     C == 1 ? "" : "s");
}

void preprocess_resize_shape(int H, int W, int size, int *Ho, int *Wo) {
    // torchvision: short, long = (w, h) if w <= h else (h, w);
    // new_long = int(size * long / short) (Python true division, truncated).
    int shorter = W <= H ? W : H, longer = W <= H ? H : W;
    int new_long = (int)((double)((int64_t)size * longer) / (double)shorter);
    if (W <= H) {
        *Wo = size;
        *Ho = new_long;
    } else {
        *Wo = new_long;
        *Ho = size;
    }
}

// ---------------------------------------------------------------------------
// Antialiased bilinear resampling along one dimension.

typedef struct {
    int out_size, taps;  // taps: the most input samples an output sample reads
    int *xmin, *xsize;   // per output index
    float *weights;      // (out_size, taps), normalised
} AaWeights;

// HelperInterpLinear::aa_filter: the triangle 1 - |x| on [-1, 1].
static float aa_triangle(float x) {
    if (x < 0.0f) x = -x;
    if (x < 1.0f) return (float)(1.0 - (double)x);
    return 0.0f;
}

// HelperInterpBase::_compute_indices_weights_aa with scalar_t = float, written
// with the same mixed float/double arithmetic so the weights match bit for bit.
static int aa_weights(int in_size, int out_size, AaWeights *aw) {
    memset(aw, 0, sizeof(*aw));
    float scale = (float)in_size / (float)out_size;  // area_pixel_compute_scale, align_corners false
    float support = scale >= 1.0f ? (float)(1.0 * (double)scale) : 1.0f;  // (interp_size * 0.5) * scale, interp_size 2
    int taps = (int)ceilf(support) * 2 + 1;
    float invscale = scale >= 1.0f ? (float)(1.0 / (double)scale) : 1.0f;
    aw->out_size = out_size;
    aw->taps = taps;
    aw->xmin = (int *)malloc((size_t)out_size * sizeof(int));
    aw->xsize = (int *)malloc((size_t)out_size * sizeof(int));
    aw->weights = (float *)calloc((size_t)out_size * (size_t)taps, sizeof(float));
    if (!aw->xmin || !aw->xsize || !aw->weights) return sd_errorf("out of memory");
    for (int i = 0; i < out_size; i++) {
        float center = (float)((double)scale * ((double)i + 0.5));
        int64_t lo = (int64_t)((double)(center - support) + 0.5);
        int64_t hi = (int64_t)((double)(center + support) + 0.5);
        int64_t xmin = lo > 0 ? lo : 0;
        int64_t xsize = (hi < in_size ? hi : in_size) - xmin;
        if (xsize > taps) xsize = taps;
        if (xsize < 1) xsize = 1;  // cannot happen for valid sizes; keeps the loops safe
        float *w = aw->weights + (size_t)i * (size_t)taps;
        float total = 0.0f;
        for (int64_t j = 0; j < xsize; j++) {
            float d = (float)(j + xmin) - center;  // int64 - float in float
            w[j] = aa_triangle((float)(((double)d + 0.5) * (double)invscale));
            total += w[j];
        }
        if (total != 0.0f)
            for (int64_t j = 0; j < xsize; j++) w[j] /= total;
        aw->xmin[i] = (int)xmin;
        aw->xsize[i] = (int)xsize;
    }
    return 0;
}

static void aa_free(AaWeights *aw) {
    free(aw->xmin);
    free(aw->xsize);
    free(aw->weights);
}

// out = src[xmin] w0; out += src[xmin + j] wj for j = 1 .. n-1, in order, as
// aten's interpolate_aa_single_dim. Its x86-64 build (GCC, AVX2+FMA) runs the
// loop vectorised in blocks of 4 terms (products rounded, then added in
// order) and the last (n-1) mod 4 terms as fused multiply-adds; doing the same
// makes the result bit-identical to torch 1.13.1 (measured on Debian's build).
static inline float aa_dot(const float *src, long stride, const float *w, int n) {
    float acc = src[0] * w[0];
    int j = 1, blocked = 1 + (n - 1) / 4 * 4;
    for (; j < blocked; j++) {
        float p = src[(long)j * stride] * w[j];
        acc = acc + p;
    }
    for (; j < n; j++) acc = fmaf(src[(long)j * stride], w[j], acc);
    return acc;
}

int resize_bilinear_antialias(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo) {
    if (H < 1 || W < 1 || Ho < 1 || Wo < 1) return sd_errorf("resize: bad sizes %dx%d -> %dx%d", H, W, Ho, Wo);
    long planes = (long)N * C;
    if (H == Ho && W == Wo) {
        memcpy(y, x, (size_t)planes * (size_t)H * (size_t)W * sizeof(float));
        return 0;
    }
    AaWeights ww, wh;
    memset(&ww, 0, sizeof(ww));
    memset(&wh, 0, sizeof(wh));
    float *tmp = NULL;
    int rc = 0;
    const float *src = x;
    // Width pass (the contiguous dimension) first, as aten does.
    if (W != Wo) {
        if (aa_weights(W, Wo, &ww)) {
            rc = -1;
            goto done;
        }
        float *dst = y;
        if (H != Ho) {
            tmp = (float *)malloc((size_t)planes * (size_t)H * (size_t)Wo * sizeof(float));
            if (!tmp) {
                rc = sd_errorf("out of memory");
                goto done;
            }
            dst = tmp;
        }
        long rows = planes * H;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < rows; r++) {
            const float *in = x + r * W;
            float *out = dst + r * Wo;
            for (int i = 0; i < Wo; i++) out[i] = aa_dot(in + ww.xmin[i], 1, ww.weights + (size_t)i * ww.taps, ww.xsize[i]);
        }
        src = dst;
    }
    if (H != Ho) {
        if (aa_weights(H, Ho, &wh)) {
            rc = -1;
            goto done;
        }
#pragma omp parallel for schedule(static)
        for (long p = 0; p < planes; p++) {
            const float *in = src + p * (long)H * Wo;
            float *out = y + p * (long)Ho * Wo;
            for (int i = 0; i < Ho; i++) {
                const float *w = wh.weights + (size_t)i * wh.taps;
                const float *base = in + (long)wh.xmin[i] * Wo;
                for (int c = 0; c < Wo; c++) out[(long)i * Wo + c] = aa_dot(base + c, Wo, w, wh.xsize[i]);
            }
        }
    }
done:
    free(tmp);
    aa_free(&ww);
    aa_free(&wh);
    return rc;
}

// ---------------------------------------------------------------------------

// Moves the k-th smallest of a[0..n) to a[k], smaller ones before it, larger after (quickselect,
// median-of-three pivot; O(n) on average, a sort would be O(n log n) on a 10980^2 scene).
static void select_kth(float *a, long n, long k) {
    long lo = 0, hi = n - 1;
    while (hi > lo) {
        long mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j], a[j] = t;
                i++, j--;
            }
        }
        if (k <= j) hi = j;       // [lo, j] <= pivot
        else if (k >= i) lo = i;  // [i, hi] >= pivot
        else return;              // (j, i): equal to the pivot
    }
}

// numpy 1.24 _quantile with method 'linear' on float64 values: virtual index n q + (1 - q) - 1,
// gamma = index - floor(index), _lerp(a, b, gamma) (b - (b - a)(1 - gamma) for gamma >= 0.5).
// buf holds the n valid values and is reordered.
static double percentile_of(float *buf, long n, double p) {
    double q = p / 100.0;
    double vi = (double)n * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0;
    double prev = floor(vi);
    double gamma = vi - prev;
    long i0 = prev < 0 ? 0 : (prev > (double)(n - 1) ? n - 1 : (long)prev);
    long i1 = i0 + 1 < n ? i0 + 1 : n - 1;
    if (vi >= (double)(n - 1)) i0 = i1 = n - 1;  // numpy: past the last index both are the last
    select_kth(buf, n, i0);
    double a = buf[i0], b = a;
    if (i1 != i0) {  // the next value up: the smallest of the part after i0
        float m = buf[i0 + 1];
        for (long j = i0 + 2; j < n; j++)
            if (buf[j] < m) m = buf[j];
        b = m;
    }
    double diff = b - a;
    return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

// The values of a band that count for its statistics (not NaN, not nodata), copied to a new buffer.
static float *valid_values(const float *x, long n, int has_nodata, double nodata, long *count) {
    float *buf = (float *)malloc((size_t)(n ? n : 1) * sizeof(float));
    long k = 0;
    if (buf)
        for (long i = 0; i < n; i++)
            if (x[i] == x[i] && !(has_nodata && (double)x[i] == nodata)) buf[k++] = x[i];
    *count = k;
    return buf;
}

double preprocess_percentile(const float *x, long n, double p, int has_nodata, double nodata, int *found) {
    long k = 0;
    float *buf = valid_values(x, n, has_nodata, nodata, &k);
    *found = buf && k > 0;
    double v = *found ? percentile_of(buf, k, p) : 0.0;
    free(buf);
    return v;
}

void preprocess_scale_name(const PreprocessOptions *o, const char *stats, char *buf, int size) {
    switch (o->scale) {
    case SCALE_DIV4095: snprintf(buf, (size_t)size, "4095"); break;
    case SCALE_DIV255: snprintf(buf, (size_t)size, "255"); break;
    case SCALE_DIV65535: snprintf(buf, (size_t)size, "65535"); break;
    case SCALE_CLIP: snprintf(buf, (size_t)size, "clip"); break;
    case SCALE_MINMAX: snprintf(buf, (size_t)size, "minmax:%s", stats ? stats : "STATS"); break;
    case SCALE_IMAGE_MINMAX: snprintf(buf, (size_t)size, "minmax"); break;
    case SCALE_PERCENTILE: snprintf(buf, (size_t)size, "percentile:%g,%g", o->pct_lo, o->pct_hi); break;
    }
}

// offset and range of one band: x = (v - offset) / range. Divisions keep their own expression
// (v / 4095.0f, as numpy's float32 image / 4095) so the values stay bit-identical.
static int band_scaling(const float *band, long hw, const PreprocessOptions *o, int C, int k, int b, const char *source,
                        double *offset, double *range, int *constant) {
    *offset = 0.0, *range = 1.0, *constant = 0;
    if (o->scale == SCALE_DIV4095) *range = 4095.0;
    else if (o->scale == SCALE_DIV255) *range = 255.0;
    else if (o->scale == SCALE_DIV65535) *range = 65535.0;
    else if (o->scale == SCALE_MINMAX) {
        int s = o->stats_count == C ? b - 1 : k;
        *offset = o->stats_min[s];
        *range = o->stats_max[s] - o->stats_min[s];
        if (!((float)*range > 0.0f))
            return sd_errorf("%s: band %d: statistics max %g <= min %g", source, b, o->stats_max[s], o->stats_min[s]);
    } else if (o->scale == SCALE_IMAGE_MINMAX || o->scale == SCALE_PERCENTILE) {
        long n = 0;
        float *buf = valid_values(band, hw, o->has_nodata, o->nodata, &n);
        if (!buf) return sd_errorf("%s: out of memory", source);
        double lo = 0.0, hi = 0.0;
        if (n > 0 && o->scale == SCALE_IMAGE_MINMAX) {
            lo = hi = buf[0];
            for (long i = 1; i < n; i++) {
                if (buf[i] < lo) lo = buf[i];
                if (buf[i] > hi) hi = buf[i];
            }
        } else if (n > 0) {
            lo = percentile_of(buf, n, o->pct_lo);
            hi = percentile_of(buf, n, o->pct_hi);
        }
        free(buf);
        *offset = lo;
        *range = hi - lo;
        if (!((float)*range > 0.0f)) *constant = 1;  // one value (or none): the band becomes 0
    }
    return 0;
}

int preprocess_image(const float *src, int C, int H, int W, const PreprocessOptions *o, const char *source, Tensor *out) {
    return preprocess_image_report(src, C, H, W, o, source, out, NULL);
}

int preprocess_image_report(const float *src, int C, int H, int W, const PreprocessOptions *o, const char *source,
                            Tensor *out, PreprocessReport *rep) {
    memset(out, 0, sizeof(*out));
    PreprocessReport local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof(*rep));
    if (C < 1 || H < 1 || W < 1) return sd_errorf("%s: empty image (%d bands, %dx%d)", source, C, H, W);
    int bands[PRE_MAX_BANDS];
    if (preprocess_choose_bands(o, C, source, bands)) return -1;
    if (o->scale == SCALE_MINMAX && o->stats_count != C && o->stats_count != 3)
        return sd_errorf("%s: min-max statistics hold %d bands, the image has %d (need one per band, or 3 for the "
                         "selected bands)",
                         source, o->stats_count, C);
    if (o->scale == SCALE_PERCENTILE && !(o->pct_lo >= 0.0 && o->pct_lo < o->pct_hi && o->pct_hi <= 100.0))
        return sd_errorf("%s: percentiles %g, %g: need 0 <= low < high <= 100", source, o->pct_lo, o->pct_hi);
    long hw = (long)H * W;
    rep->pixels = hw;
    float *rgb = (float *)malloc((size_t)3 * (size_t)hw * sizeof(float));
    if (!rgb) return sd_errorf("%s: out of memory for a %dx%d image", source, H, W);
    for (int k = 0; k < 3; k++) {
        const float *band = src + (long)(bands[k] - 1) * hw;
        float *dst = rgb + (long)k * hw;
        double offset, range;
        int constant;
        if (band_scaling(band, hw, o, C, k, bands[k], source, &offset, &range, &constant)) {
            free(rgb);
            return -1;
        }
        rep->bands[k] = bands[k];
        rep->offset[k] = offset, rep->range[k] = range, rep->constant[k] = constant;
        // numpy float32: image / 4095, then np.clip(image, 0, 1).
        float lo = (float)offset, rng = (float)range;
        long below = 0, above = 0, nan = 0;
        for (long i = 0; i < hw; i++) {
            float v = band[i];
            if (o->scale == SCALE_DIV4095) v = v / 4095.0f;
            else if (o->scale == SCALE_DIV255) v = v / 255.0f;
            else if (o->scale == SCALE_DIV65535) v = v / 65535.0f;
            else if (o->scale != SCALE_CLIP) v = constant ? 0.0f : (v - lo) / rng;
            // np.clip keeps NaN; a NaN pixel would poison the VAE: map it to 0.
            if (v != v) v = 0.0f, nan++;
            else if (v < 0.0f) v = 0.0f, below++;
            else if (v > 1.0f) v = 1.0f, above++;
            dst[i] = v;
        }
        rep->clipped_low[k] = below, rep->clipped_high[k] = above, rep->nan[k] = nan;
    }
    int Ho = H, Wo = W;
    if (o->size > 0 && o->resize == RESIZE_EXACT) {
        Ho = Wo = o->size;
    } else if (o->size > 0) {
        // an aspect ratio past 16:1 would blow the long side up (a 1x4000 strip at size 256 is 256x1024000):
        // such an input is almost certainly a wrong band/axis order, so it is refused, not resized
        int shorter = W <= H ? W : H, longer = W <= H ? H : W;
        if ((int64_t)longer > (int64_t)16 * shorter) {
            free(rgb);
            return sd_errorf("%s: %dx%d pixels, an aspect ratio over 16:1; resizing its shorter side to %d would give "
                             "a %.0f-pixel long side (wrong axis order? crop the image first, or --resize exact)",
                             source, W, H, o->size, (double)o->size * longer / shorter);
        }
        preprocess_resize_shape(H, W, o->size, &Ho, &Wo);
    }
    // torchvision CenterCrop(size) after the resize: top = int(round((Ho - size) / 2.0)), Python's
    // round = half to even = rint in the default rounding mode.
    int Hc = Ho, Wc = Wo, top = 0, left = 0;
    if (o->crop && o->size > 0) {
        if (Ho > o->size) Hc = o->size, top = (int)rint((Ho - o->size) / 2.0);
        if (Wo > o->size) Wc = o->size, left = (int)rint((Wo - o->size) / 2.0);
    }
    int shape[4] = {1, 3, Hc, Wc};
    if (tensor_alloc(out, 4, shape, source)) {
        free(rgb);
        return -1;
    }
    int rc = 0;
    float *resized = out->data;
    if ((Hc != Ho || Wc != Wo) && !(resized = (float *)malloc((size_t)3 * (size_t)Ho * (size_t)Wo * sizeof(float)))) {
        free(rgb);
        tensor_free(out);
        return sd_errorf("%s: out of memory for a %dx%d image", source, Ho, Wo);
    }
    if (Ho == H && Wo == W) memcpy(resized, rgb, (size_t)3 * (size_t)hw * sizeof(float));
    else if (o->antialias) rc = resize_bilinear_antialias(rgb, resized, 1, 3, H, W, Ho, Wo);
    else resize_bilinear(rgb, resized, 1, 3, H, W, Ho, Wo, 0);
    free(rgb);
    if (resized != out->data) {
        for (int k = 0; k < 3 && !rc; k++)
            for (int y = 0; y < Hc; y++)
                memcpy(out->data + ((long)k * Hc + y) * Wc, resized + ((long)k * Ho + top + y) * Wo + left,
                       (size_t)Wc * sizeof(float));
        free(resized);
    }
    if (rc) {
        tensor_free(out);
        return sd_error_context("%s", source);
    }
    // transforms.Normalize([0.5], [0.5]): (x - 0.5) / 0.5.
    int64_t n = tensor_numel(out);
    for (int64_t i = 0; i < n; i++) out->data[i] = (out->data[i] - 0.5f) / 0.5f;
    return 0;
}

int preprocess_load_stats(const char *path, double **min, double **max, int *count) {
    *min = *max = NULL;
    *count = 0;
    JsonValue j;
    if (json_parse_file(path, &j)) return -1;
    const JsonValue *a = json_get(&j, "min"), *b = json_get(&j, "max");
    if (!a || !b || a->type != JSON_ARRAY || b->type != JSON_ARRAY || a->count != b->count || a->count < 1) {
        json_free(&j);
        return sd_errorf("%s: expected {\"min\": [...], \"max\": [...]} with one number per band in each", path);
    }
    int n = a->count;
    *min = (double *)malloc((size_t)n * sizeof(double));
    *max = (double *)malloc((size_t)n * sizeof(double));
    if (!*min || !*max) {
        json_free(&j);
        free(*min);
        free(*max);
        *min = *max = NULL;
        return sd_errorf("out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (a->items[i].type != JSON_NUMBER || b->items[i].type != JSON_NUMBER) {
            json_free(&j);
            free(*min);
            free(*max);
            *min = *max = NULL;
            return sd_errorf("%s: min[%d] / max[%d] is not a number", path, i, i);
        }
        (*min)[i] = a->items[i].number;
        (*max)[i] = b->items[i].number;
    }
    *count = n;
    json_free(&j);
    return 0;
}
