// Image loading front end: sniff the format, decode, convert to float (C, H, W).
#include "io/image.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/jpeg.h"
#include "io/npy.h"
#include "io/png.h"
#include "io/tiff.h"

enum { FORMAT_UNKNOWN, FORMAT_PNG, FORMAT_TIFF, FORMAT_NPY, FORMAT_JPEG };

// The decoded formats by their signatures.
static int format_of(const uint8_t *head, size_t n) {
    if (n >= 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0) return FORMAT_PNG;
    if (n >= 4 && (memcmp(head, "II*\0", 4) == 0 || memcmp(head, "MM\0*", 4) == 0 || memcmp(head, "II+\0", 4) == 0 ||
                   memcmp(head, "MM\0+", 4) == 0))
        return FORMAT_TIFF;
    if (n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) return FORMAT_NPY;
    if (n >= 3 && memcmp(head, "\xff\xd8\xff", 3) == 0) return FORMAT_JPEG;
    return FORMAT_UNKNOWN;
}

// Other formats a user may hand us, by their signatures, to name them in the error.
static const char *other_format(const uint8_t *h, size_t n) {
    static const struct { const char *magic; size_t len, at; const char *name; } known[] = {
        {"\xff\xd8\xff", 3, 0, "a JPEG image"},
        {"\x89HDF\r\n\x1a\n", 8, 0, "an HDF5 file"},
        {"GIF8", 4, 0, "a GIF image"},
        {"WEBP", 4, 8, "a WebP image"},
        {"\0\0\0\x0cjP  ", 8, 0, "a JPEG 2000 image"},
        {"\xffO\xffQ", 4, 0, "a JPEG 2000 codestream"},
        {"PK\x03\x04", 4, 0, "a zip archive (a PyTorch checkpoint?)"},
        {"\x1f\x8b", 2, 0, "a gzip file"},
        {"BZh", 3, 0, "a bzip2 file"},
        {"\xfd" "7zXZ", 5, 0, "an xz file"},
        {"%PDF", 4, 0, "a PDF document"},
        {"CDF\x01", 4, 0, "a NetCDF file"},
        {"CDF\x02", 4, 0, "a NetCDF file"},
        {"\x80\x02", 2, 0, "a Python pickle"},
    };
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
        if (n >= known[k].at + known[k].len && !memcmp(h + known[k].at, known[k].magic, known[k].len)) return known[k].name;
    if (n >= 10 && h[8] == '{' && h[9] == '"' && h[4] == 0 && h[5] == 0 && h[6] == 0 && h[7] == 0)
        return "a safetensors file";  // 8-byte little-endian header length, then the JSON header
    if (n >= 2 && h[0] == 'B' && h[1] == 'M') return "a BMP image";
    return NULL;
}

int image_file_kind(const char *path, char *what, int size) {
    uint8_t head[4096];
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof(head), f);
    fclose(f);
    int format = format_of(head, n);
    if (format != FORMAT_UNKNOWN) {
        snprintf(what, (size_t)size, "%s",
                 format == FORMAT_PNG ? "PNG" : format == FORMAT_TIFF ? "TIFF" : format == FORMAT_JPEG ? "JPEG" : "NPY");
        return IMAGE_FILE_IMAGE;
    }
    // text: no NUL and at most 1% control bytes other than tab, newline, carriage return, form feed
    size_t control = 0;
    int nul = 0;
    for (size_t i = 0; i < n; i++) {
        nul |= head[i] == 0;
        control += head[i] < 32 && head[i] != '\t' && head[i] != '\n' && head[i] != '\r' && head[i] != '\f';
    }
    const char *name = other_format(head, n);
    if (!nul && control * 100 <= n && !(name && n >= 2 && head[0] >= 0x80)) {
        snprintf(what, (size_t)size, "text");
        return IMAGE_FILE_TEXT;
    }
    if (name) snprintf(what, (size_t)size, "%s", name);
    else snprintf(what, (size_t)size, "binary data (starts with %02x %02x %02x %02x)", n > 0 ? head[0] : 0,
                  n > 1 ? head[1] : 0, n > 2 ? head[2] : 0, n > 3 ? head[3] : 0);
    return IMAGE_FILE_OTHER;
}

static int sniff(const char *path, int *format) {
    uint8_t head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf("cannot open %s", path);
    size_t n = fread(head, 1, sizeof(head), f);
    fclose(f);
    *format = format_of(head, n);
    if (*format == FORMAT_UNKNOWN) {
        char what[96];
        if (image_file_kind(path, what, sizeof(what)) < 0) return -1;
        return sd_errorf("%s: unknown image format: %s (satdifuser reads PNG, JPEG, TIFF/GeoTIFF, NPY)", path, what);
    }
    return 0;
}

static int alloc_image(Image *img, int c, int h, int w, const char *path) {
    img->channels = c, img->height = h, img->width = w;
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    // calloc: zero pages stay untouched (see load_tiff)
    img->data = (float *)calloc(n ? n : 1, sizeof(float));
    if (!img->data) return sd_errorf("%s: out of memory for a %dx%dx%d float image", path, c, h, w);
    return 0;
}

static int load_png(const char *path, Image *img) {
    PngImage p;
    if (png_read(path, &p)) return -1;
    size_t hw = (size_t)p.width * (size_t)p.height;
    int rc = 0;
    if (p.color_type == 3) {
        // Palette -> RGB, or RGBA when any entry is not opaque.
        int alpha = 0;
        for (int i = 0; i < p.palette_size; i++) alpha |= p.palette[i][3] != 255;
        int c = alpha ? 4 : 3;
        rc = alloc_image(img, c, p.height, p.width, path);
        const uint8_t *idx = (const uint8_t *)p.pixels;
        for (size_t i = 0; !rc && i < hw; i++) {
            static const uint8_t black[4] = {0, 0, 0, 255};  // out-of-range index (see png.h)
            const uint8_t *e = idx[i] < p.palette_size ? p.palette[idx[i]] : black;
            for (int k = 0; k < c; k++) img->data[(size_t)k * hw + i] = e[k];
        }
        img->src_dtype_bits = 8;
    } else {
        int c = p.channels;
        rc = alloc_image(img, c, p.height, p.width, path);
        // Gray below 8 bits: v * 255 / (2^d - 1), as for display.
        float scale = p.bit_depth < 8 ? 255.0f / (float)((1 << p.bit_depth) - 1) : 1.0f;
        for (size_t i = 0; !rc && i < hw; i++)
            for (int k = 0; k < c; k++) {
                size_t s = i * (size_t)c + (size_t)k;
                float v = p.bytes_per_sample == 2 ? (float)((const uint16_t *)p.pixels)[s]
                                                  : (float)((const uint8_t *)p.pixels)[s] * scale;
                img->data[(size_t)k * hw + i] = v;
            }
        img->src_dtype_bits = p.bit_depth == 16 ? 16 : 8;
    }
    png_free(&p);
    return rc;
}

// 8-bit gray or RGB (YCbCr converted as libjpeg does), interleaved -> planar floats 0..255.
static int load_jpeg(const char *path, Image *img) {
    JpegImage j;
    if (jpeg_read(path, &j)) return -1;
    int rc = alloc_image(img, j.channels, j.height, j.width, path);
    size_t hw = (size_t)j.width * (size_t)j.height;
    for (size_t i = 0; !rc && i < hw; i++)
        for (int k = 0; k < j.channels; k++) img->data[(size_t)k * hw + i] = j.pixels[i * (size_t)j.channels + (size_t)k];
    img->src_dtype_bits = 8;
    jpeg_free(&j);
    return rc;
}

static int load_tiff(const char *path, Image *img) {
    TiffImage t;
    if (tiff_read(path, &t)) return -1;
    int rc = alloc_image(img, t.bands, t.height, t.width, path);
    size_t n = (size_t)t.bands * (size_t)t.height * (size_t)t.width;
    // A sparse TIFF (chunks of byte count 0) of a few hundred bytes may declare up to
    // TIFF_MAX_PIXEL_BYTES of zeros, left as untouched calloc pages; writing every float
    // would commit 4-32x that (1.3 GB of RAM for a 122-byte 16384x16384 8-bit file).
    // So zero samples are skipped (the buffer is already +0.0); -0.0 is still written.
    for (size_t i = 0; !rc && i < n; i++) {
        float v = npy_sample_to_float(t.data, i, t.dtype);
        if (v != 0.0f || signbit(v)) img->data[i] = v;
    }
    img->src_dtype_bits = t.bytes_per_sample * 8;
    img->is_float = t.dtype == NPY_FLOAT32 || t.dtype == NPY_FLOAT64;
    img->is_signed = t.dtype == NPY_INT8 || t.dtype == NPY_INT16 || t.dtype == NPY_INT32 || t.dtype == NPY_INT64;
    img->has_nodata = t.has_nodata;
    img->nodata = t.nodata;
    tiff_free(&t);
    return rc;
}

static int load_npy(const char *path, ImageNpyLayout layout, Image *img) {
    NpyArray a;
    if (npy_read(path, &a)) return -1;
    // Drop leading dimensions of size 1: (1, C, H, W) -> (C, H, W).
    int first = 0;
    while (a.ndim - first > 3 && a.shape[first] == 1) first++;
    int nd = a.ndim - first;
    const int64_t *s = a.shape + first;
    int rc = 0, hwc = 0;
    int64_t c = 1, h = 0, w = 0;
    if (nd == 2) {
        h = s[0], w = s[1];
    } else if (nd == 3) {
        hwc = layout == IMAGE_NPY_HWC || (layout == IMAGE_NPY_AUTO && s[2] < s[0] && s[2] < s[1]);
        c = hwc ? s[2] : s[0], h = hwc ? s[0] : s[1], w = hwc ? s[1] : s[2];
    } else {
        char shape[160] = "";
        for (int k = 0; k < a.ndim; k++)
            snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), "%s%lld", k ? ", " : "", (long long)a.shape[k]);
        rc = sd_errorf("%s: an image must be a 2-D (H, W) or 3-D array, got shape (%s)%s", path, shape,
                       a.ndim > 3 ? ": select one image first" : "");
    }
    if (!rc && (c <= 0 || h <= 0 || w <= 0 || c > 65535 || h > 0x7fffffff || w > 0x7fffffff))
        rc = sd_errorf("%s: image shape %lldx%lldx%lld is empty or too large", path, (long long)c, (long long)h,
                       (long long)w);
    float *v = NULL;
    if (!rc) rc = npy_to_float32(&a, &v);
    if (!rc) rc = alloc_image(img, (int)c, (int)h, (int)w, path);
    if (!rc) {
        size_t hw = (size_t)h * (size_t)w;
        if (hwc) {
            for (size_t i = 0; i < hw; i++)
                for (size_t k = 0; k < (size_t)c; k++) img->data[k * hw + i] = v[i * (size_t)c + k];
        } else {
            memcpy(img->data, v, (size_t)c * hw * sizeof(float));
        }
        img->src_dtype_bits = a.itemsize * 8;
        img->is_float = a.dtype == NPY_FLOAT16 || a.dtype == NPY_FLOAT32 || a.dtype == NPY_FLOAT64;
        img->is_signed = a.dtype == NPY_INT8 || a.dtype == NPY_INT16 || a.dtype == NPY_INT32 || a.dtype == NPY_INT64;
    }
    free(v);
    npy_free(&a);
    return rc;
}

int image_load_npy_layout(const char *path, ImageNpyLayout layout, Image *img) {
    memset(img, 0, sizeof(*img));
    int format = 0, rc;
    if (sniff(path, &format)) return -1;
    if (format == FORMAT_PNG) rc = load_png(path, img), img->format = "PNG";
    else if (format == FORMAT_TIFF) rc = load_tiff(path, img), img->format = "TIFF";
    else if (format == FORMAT_JPEG) rc = load_jpeg(path, img), img->format = "JPEG";
    else rc = load_npy(path, layout, img), img->format = "NPY";
    if (rc) image_free(img);
    return rc;
}

int image_load(const char *path, Image *img) { return image_load_npy_layout(path, IMAGE_NPY_AUTO, img); }

void image_free(Image *img) {
    free(img->data);
    img->data = NULL;
}
