// Preprocessing options shared by extract and predict (see preprocess_args.h).
#include "cli/preprocess_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"

static const char *const k_options[] = {"--bands", "--scale", "--size", "--resize", "--crop"};

void pre_args_default(PreArgs *p) {
    memset(p, 0, sizeof(*p));
    p->scale = "auto";
    p->size = 256;
    p->resize = RESIZE_SHORTER;
    p->crop = 0;
}

int pre_args_is_option(const char *opt) {
    for (size_t k = 0; k < sizeof(k_options) / sizeof(k_options[0]); k++)
        if (!strcmp(opt, k_options[k])) return 1;
    return 0;
}

// "2,98" -> 2, 98 (the percentiles of --scale percentile:LO,HI).
static int parse_percentiles(const char *s, double *lo, double *hi) {
    char *end = NULL;
    errno = 0;
    *lo = strtod(s, &end);
    if (errno || end == s || *end != ',') return -1;
    const char *t = end + 1;
    *hi = strtod(t, &end);
    if (errno || end == t || *end) return -1;
    return *lo >= 0.0 && *lo < *hi && *hi <= 100.0 ? 0 : -1;
}

static int check_scale(const char *v) {
    double lo, hi;
    if (!strcmp(v, "auto") || !strcmp(v, "4095") || !strcmp(v, "255") || !strcmp(v, "65535") || !strcmp(v, "clip") ||
        !strcmp(v, "minmax") || !strcmp(v, "percentile"))
        return 0;
    if (!strncmp(v, "minmax:", 7) && v[7]) return 0;
    if (!strncmp(v, "percentile:", 11)) {
        if (parse_percentiles(v + 11, &lo, &hi) == 0) return 0;
        return sd_errorf("--scale '%s': expected percentile:LOW,HIGH with 0 <= LOW < HIGH <= 100 (e.g. percentile:2,98)",
                         v);
    }
    return sd_errorf("--scale '%s': expected auto, 4095, 255, 65535, clip, minmax, minmax:STATS.json or "
                     "percentile:LOW,HIGH",
                     v);
}

int pre_args_take(PreArgs *p, const char *opt, const char *val) {
    if (!pre_args_is_option(opt)) return 0;
    if (!strcmp(opt, "--bands")) {
        p->bands = val;
    } else if (!strcmp(opt, "--scale")) {
        if (check_scale(val)) return -1;
        p->scale = val;
    } else if (!strcmp(opt, "--size")) {
        char *end = NULL;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || !*val || *end || v < 8 || v > 8192)
            return sd_errorf("--size '%s': expected a whole number from 8 to 8192", val);
        if (v % 8) return sd_errorf("--size %ld: must be a multiple of 8 (the VAE downsamples by 8)", v);
        p->size = (int)v;
    } else if (!strcmp(opt, "--resize")) {
        if (!strcmp(val, "shorter")) p->resize = RESIZE_SHORTER;
        else if (!strcmp(val, "exact")) p->resize = RESIZE_EXACT;
        else return sd_errorf("--resize '%s': expected shorter (the shorter side becomes --size, as the original) or "
                              "exact (both sides become --size)", val);
    } else {
        if (!strcmp(val, "center") || !strcmp(val, "centre")) p->crop = 1;
        else if (!strcmp(val, "none")) p->crop = 0;
        else return sd_errorf("--crop '%s': expected center (the centre --size x --size after the resize) or none", val);
    }
    return 1;
}

int pre_args_options(const PreArgs *p, PreprocessOptions *o, double **stats_min, double **stats_max, int *band_names) {
    preprocess_options_default(o);
    *stats_min = *stats_max = NULL;
    o->size = p->size;
    o->resize = p->resize;
    o->crop = p->crop;
    *band_names = p->bands && strspn(p->bands, "0123456789, ") != strlen(p->bands);  // names: per image
    if (p->bands && !*band_names) {
        char buf[256];
        if (strlen(p->bands) >= sizeof(buf)) return sd_errorf("--bands: list too long");
        strcpy(buf, p->bands);
        o->n_bands = 0;
        for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", ")) {
            char *end = NULL;
            long v = strtol(tok, &end, 10);
            if (*end || v < 1 || v > 100000) return sd_errorf("--bands '%s': '%s' is not a band number", p->bands, tok);
            if (o->n_bands == 3) return sd_errorf("--bands '%s': give 3 bands (R,G,B)", p->bands);
            o->bands[o->n_bands++] = (int)v;
        }
        if (o->n_bands != 3) return sd_errorf("--bands '%s': give 3 bands (R,G,B)", p->bands);
    }
    const char *s = p->scale;
    if (!strcmp(s, "4095") || !strcmp(s, "auto")) o->scale = SCALE_DIV4095;  // auto: decided per image
    else if (!strcmp(s, "255")) o->scale = SCALE_DIV255;
    else if (!strcmp(s, "65535")) o->scale = SCALE_DIV65535;
    else if (!strcmp(s, "clip")) o->scale = SCALE_CLIP;
    else if (!strcmp(s, "minmax")) o->scale = SCALE_IMAGE_MINMAX;
    else if (!strcmp(s, "percentile")) o->scale = SCALE_PERCENTILE, o->pct_lo = 2.0, o->pct_hi = 98.0;
    else if (!strncmp(s, "percentile:", 11)) {
        o->scale = SCALE_PERCENTILE;
        if (parse_percentiles(s + 11, &o->pct_lo, &o->pct_hi)) return check_scale(s);
    } else if (!strncmp(s, "minmax:", 7)) {
        o->scale = SCALE_MINMAX;
        if (preprocess_load_stats(s + 7, stats_min, stats_max, &o->stats_count)) return -1;
        o->stats_min = *stats_min, o->stats_max = *stats_max;
    } else {
        return check_scale(s);
    }
    return 0;
}

ScaleMode pre_args_auto_scale(const Image *img, const char **why) {
    if (img->is_float) {
        *why = "floats are taken as reflectance in [0, 1]";
        return SCALE_CLIP;
    }
    if (img->src_dtype_bits == 8) {
        *why = "8-bit samples: /255";
        return SCALE_DIV255;
    }
    if (img->src_dtype_bits == 16 && img->format && !strcmp(img->format, "PNG")) {
        *why = "16-bit PNG samples span 0..65535: /65535";
        return SCALE_DIV65535;
    }
    *why = "integers over 8 bits are taken as Sentinel-2 reflectance: /4095";
    return SCALE_DIV4095;
}

int pre_args_json(const PreArgs *p, char *buf, size_t size) {
    char bands[300], scale[600];
    json_escape(p->bands ? p->bands : "auto", bands, sizeof(bands));
    json_escape(p->scale, scale, sizeof(scale));
    int n = snprintf(buf, size,
                     "{\"bands\": %s, \"scale\": %s, \"size\": %d, \"resize\": \"torchvision Resize(%s, bilinear, "
                     "antialias=True)\", %s\"normalize\": \"(x - 0.5) / 0.5\"}",
                     bands, scale, p->size, p->resize == RESIZE_EXACT ? "(size, size)" : "size",
                     p->crop ? "\"crop\": \"torchvision CenterCrop(size)\", " : "");
    return n < 0 || (size_t)n >= size ? sd_errorf("preprocessing options too long") : 0;
}

int pre_args_from_json(const char *json, PreArgv *out) {
    memset(out, 0, sizeof(*out));
    JsonValue pre;
    if (json_parse(json, strlen(json), "preprocessing", &pre)) return -1;
    const char *bands = NULL, *scale = NULL, *resize = NULL, *crop = NULL;
    int size = 0;
    json_get_string(&pre, "bands", NULL, &bands);
    json_get_string(&pre, "scale", NULL, &scale);
    json_get_string(&pre, "resize", NULL, &resize);
    json_get_string(&pre, "crop", NULL, &crop);
    json_get_int(&pre, "size", 0, &size);
    int t = 0;
    if (bands && strcmp(bands, "auto")) {
        out->argv[out->argc++] = (char *)"--bands";
        snprintf(out->text[t], sizeof(out->text[t]), "%s", bands);
        out->argv[out->argc++] = out->text[t++];
    }
    if (scale) {
        out->argv[out->argc++] = (char *)"--scale";
        snprintf(out->text[t], sizeof(out->text[t]), "%s", scale);
        out->argv[out->argc++] = out->text[t++];
    }
    if (size > 0) {
        out->argv[out->argc++] = (char *)"--size";
        snprintf(out->text[t], sizeof(out->text[t]), "%d", size);
        out->argv[out->argc++] = out->text[t++];
        out->size = size;
    }
    if (resize && strstr(resize, "(size, size)")) {
        out->argv[out->argc++] = (char *)"--resize";
        out->argv[out->argc++] = (char *)"exact";
    }
    if (crop) {
        out->argv[out->argc++] = (char *)"--crop";
        out->argv[out->argc++] = (char *)"center";
    }
    json_free(&pre);
    return 0;
}

// Appends printf text to buf at *n (truncation is caught by the caller's final check).
static void put(char *buf, size_t size, size_t *n, const char *fmt, double v) {
    if (*n < size) *n += (size_t)snprintf(buf + *n, size - *n, fmt, v);
}

int pre_scaling_json(const char *mode, int is_auto, const char *auto_why, const PreprocessReport *r, char *buf,
                     size_t size) {
    char m[600], why[300] = "";
    json_escape(mode, m, sizeof(m));
    if (is_auto) {
        char w[256];
        json_escape(auto_why, w, sizeof(w));
        snprintf(why, sizeof(why), "\"auto\": %s, ", w);
    }
    size_t n = (size_t)snprintf(buf, size, "{\"mode\": %s, %s\"formula\": \"clip((v - offset) / range, 0, 1)\"", m, why);
    const char *names[6] = {"bands", "offset", "range", "clipped_low", "clipped_high", "nan"};
    for (int f = 0; f < 6; f++) {
        if (n < size) n += (size_t)snprintf(buf + n, size - n, ", \"%s\": [", names[f]);
        for (int k = 0; k < 3; k++) {
            double v = f == 0 ? r->bands[k] : f == 1 ? r->offset[k] : f == 2 ? r->range[k]
                     : f == 3 ? (double)r->clipped_low[k] : f == 4 ? (double)r->clipped_high[k] : (double)r->nan[k];
            put(buf, size, &n, k ? ", %.17g" : "%.17g", v);
        }
        if (n < size) n += (size_t)snprintf(buf + n, size - n, "]");
    }
    put(buf, size, &n, ", \"pixels\": %.17g}", (double)r->pixels);
    return n >= size ? sd_errorf("scaling record too long") : 0;
}

int pre_scaling_warn(const char *source, const char *mode, int is_auto, const char *auto_why, const PreprocessReport *r,
                     int print) {
    int said = 0;
    for (int k = 0; k < 3; k++) {
        int seen = 0;  // a band selected twice (--bands 1,1,1) is said once
        for (int j = 0; j < k; j++) seen |= r->bands[j] == r->bands[k];
        if (seen) continue;
        long long lost = r->clipped_low[k] + r->clipped_high[k];
        double pct = r->pixels ? 100.0 * (double)lost / (double)r->pixels : 0.0;
        int warn = r->constant[k] || (lost == r->pixels && r->pixels > 0) || (is_auto && lost > 0);
        said |= warn;
        if (!warn || !print) continue;
        if (r->constant[k]) {
            fprintf(stderr, "warning: %s: band %d has one value only: --scale %s made it 0 everywhere\n", source,
                    r->bands[k], mode);
        } else if (lost == r->pixels && r->pixels > 0) {
            fprintf(stderr, "warning: %s: band %d: every pixel (%lld) is outside [0, 1] after --scale %s%s%s%s: the "
                            "band became constant and its features carry nothing of the image; use --scale minmax or "
                            "percentile:2,98 (per image), or minmax:STATS.json (per dataset)\n",
                    source, r->bands[k], lost, is_auto ? "auto" : mode, is_auto ? " (" : "", is_auto ? auto_why : "",
                    is_auto ? ")" : "");
        } else if (is_auto && lost > 0) {
            fprintf(stderr, "warning: %s: band %d: %lld of %lld pixels (%.2f%%) clipped by --scale auto (%s: %lld below "
                            "0, %lld above 1); if that is not wanted, use --scale percentile:2,98 or minmax (per "
                            "image), 65535, or minmax:STATS.json (per dataset)\n",
                    source, r->bands[k], lost, r->pixels, pct, auto_why, r->clipped_low[k], r->clipped_high[k]);
        }
    }
    return said;
}
