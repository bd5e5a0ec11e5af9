// PNG reader/writer tests: CRC, writer round trips, truncation and corruption
// of small files at every offset, the size limit, our own files in tests/data,
// and (when present) every PNG of ../shared/data against its ground truth.
#include "tests/test_util.h"

#include "core/error.h"
#include "io/image.h"
#include "io/json.h"
#include "io/npy.h"
#include "io/png.h"

static const char *data_root(void) {
    static const char *candidates[] = {"/work/shared/data", "../shared/data"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/MANIFEST.md", candidates[i]);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return candidates[i];
        }
    }
    return NULL;
}

// Parses an index.json. Some entries quote decoder messages holding "\u0000",
// which src/io/json.c refuses: those escapes become "\u0001" first.
static int parse_index(const char *path, JsonValue *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = (char *)malloc(n > 0 ? (size_t)n : 1);
    size_t len = fread(text, 1, (size_t)n, f);
    fclose(f);
    for (size_t i = 0; i + 6 <= len; i++)
        if (memcmp(text + i, "\\u0000", 6) == 0) text[i + 5] = '1';
    int rc = json_parse(text, len, path, out);
    free(text);
    return rc;
}

// Pixels equal to an NPY array of shape (H, W, C) or (H, W) and matching dtype.
static int same_as_npy(const void *pix, int bytes_per_sample, int h, int w, int c, const NpyArray *a, char *why,
                       size_t why_len) {
    NpyDtype want = bytes_per_sample == 2 ? NPY_UINT16 : NPY_UINT8;
    if (a->dtype != want) {
        snprintf(why, why_len, "dtype %s, expected %s", npy_dtype_name(want), npy_dtype_name(a->dtype));
        return 0;
    }
    int shape_ok = (a->ndim == 3 && a->shape[0] == h && a->shape[1] == w && a->shape[2] == c) ||
                   (a->ndim == 2 && c == 1 && a->shape[0] == h && a->shape[1] == w);
    if (!shape_ok) {
        snprintf(why, why_len, "shape %dx%dx%d differs from the npy's", h, w, c);
        return 0;
    }
    size_t n = (size_t)h * (size_t)w * (size_t)c * (size_t)bytes_per_sample;
    if (memcmp(pix, a->data, n) != 0) {
        size_t i = 0;
        while (((const uint8_t *)pix)[i] == ((const uint8_t *)a->data)[i]) i++;
        snprintf(why, why_len, "first differing byte %zu (pixel %zu)", i, i / (size_t)bytes_per_sample / (size_t)c);
        return 0;
    }
    return 1;
}

// ---------------------------------------------------------------------------

static void test_crc(void) {
    CHECK(png_crc32(0, (const uint8_t *)"123456789", 9) == 0xCBF43926u, "CRC-32 check value");
    CHECK(png_crc32(0, (const uint8_t *)"IEND", 4) == 0xAE426082u, "CRC of IEND");
}

static void test_roundtrip(void) {
    unsigned long long s = 7;
    int sizes[][2] = {{1, 1}, {7, 5}, {33, 17}, {64, 64}};
    for (int k = 0; k < 4; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        for (int c = 1; c <= 4; c++) {
            if (c == 2) continue;
            size_t n = (size_t)w * h * c;
            uint8_t *pix = (uint8_t *)malloc(n);
            for (size_t i = 0; i < n; i++) pix[i] = (uint8_t)((test_rand(&s) + 1.0f) * 2.0f) * 60;  // few values
            uint8_t *buf;
            size_t len;
            int rc = png_encode(pix, w, h, c, NULL, 0, &buf, &len);
            CHECK(rc == 0, "encode %dx%dx%d: %s", w, h, c, sd_last_error());
            if (rc) {
                free(pix);
                continue;
            }
            PngImage img;
            rc = png_decode(buf, len, &img);
            CHECK(rc == 0, "decode own %dx%dx%d: %s", w, h, c, sd_last_error());
            if (!rc) {
                CHECK(img.width == w && img.height == h && img.channels == c && img.bit_depth == 8, "header");
                CHECK(memcmp(img.pixels, pix, n) == 0, "round trip %dx%dx%d", w, h, c);
            }
            png_free(&img);
            free(buf);
            free(pix);
        }
    }
    // Palette image (a segmentation map) and its RGBA expansion.
    uint8_t pal[6 * 3] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0, 9, 99, 199};
    int w = 40, h = 30;
    uint8_t *lab = (uint8_t *)malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) lab[y * w + x] = (uint8_t)((x / 7 + y / 5) % 6);
    uint8_t *buf;
    size_t len;
    CHECK(png_encode(lab, w, h, 1, pal, 6, &buf, &len) == 0, "encode palette: %s", sd_last_error());
    PngImage img;
    CHECK(png_decode(buf, len, &img) == 0, "decode palette: %s", sd_last_error());
    CHECK(img.color_type == 3 && img.palette_size == 6, "palette header");
    CHECK(img.pixels && memcmp(img.pixels, lab, (size_t)w * h) == 0, "palette indices round trip");
    void *rgba;
    int bps;
    CHECK(png_to_rgba(&img, &rgba, &bps) == 0 && bps == 1, "palette to rgba");
    int ok = 1;
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = (const uint8_t *)rgba + 4 * i;
        if (memcmp(p, pal + 3 * lab[i], 3) != 0 || p[3] != 255) ok = 0;
    }
    CHECK(ok, "palette colours");
    free(rgba);
    png_free(&img);
    CHECK(len < 400, "label map compresses (%zu bytes)", len);

    // Every truncation of a valid file is rejected with a message, never a crash.
    int all_rejected = 1;
    for (size_t cut = 0; cut < len; cut++) {
        sd_clear_error();
        uint8_t *part = (uint8_t *)malloc(cut ? cut : 1);  // exact size so ASan sees over-reads
        memcpy(part, buf, cut);
        if (png_decode(part, cut, &img) == 0 || sd_last_error()[0] == '\0') {
            all_rejected = 0;
            printf("truncation at %zu accepted\n", cut);
        }
        png_free(&img);
        free(part);
    }
    CHECK(all_rejected, "every truncation of a %zu-byte PNG rejected", len);
    // Every single-byte corruption is caught (signature or a CRC).
    int all_caught = 1;
    uint8_t *bad = (uint8_t *)malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, buf, len);
        bad[i] ^= 0x21;
        if (png_decode(bad, len, &img) == 0) {
            all_caught = 0;
            printf("corruption at byte %zu accepted\n", i);
        }
        png_free(&img);
    }
    CHECK(all_caught, "every corrupted byte of a %zu-byte PNG rejected", len);
    free(bad);
    free(buf);
    // Bad arguments.
    CHECK(png_encode(lab, w, h, 2, NULL, 0, &buf, &len) != 0, "2-channel encode refused");
    lab[5] = 6;
    CHECK(png_encode(lab, w, h, 1, pal, 6, &buf, &len) != 0, "out-of-palette index refused");
    free(lab);
}

// A file whose IHDR is valid but whose size is over the limit.
static void test_size_limit(void) {
    uint8_t f[8 + 25 + 12];
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    memcpy(f, sig, 8);
    uint8_t *c = f + 8;
    c[0] = c[1] = c[2] = 0, c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    uint32_t w = 40000, h = 40000;
    c[8] = (uint8_t)(w >> 24), c[9] = (uint8_t)(w >> 16), c[10] = (uint8_t)(w >> 8), c[11] = (uint8_t)w;
    c[12] = (uint8_t)(h >> 24), c[13] = (uint8_t)(h >> 16), c[14] = (uint8_t)(h >> 8), c[15] = (uint8_t)h;
    c[16] = 16, c[17] = 6, c[18] = c[19] = c[20] = 0;
    uint32_t crc = png_crc32(0, c + 4, 17);
    c[21] = (uint8_t)(crc >> 24), c[22] = (uint8_t)(crc >> 16), c[23] = (uint8_t)(crc >> 8), c[24] = (uint8_t)crc;
    memcpy(f + 33, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    PngImage img;
    int rc = png_decode(f, sizeof(f), &img);
    CHECK(rc != 0 && strstr(sd_last_error(), "limit") != NULL, "40000x40000 RGBA16 refused: %s", sd_last_error());
}

// Our own small files: tests/data/<name>.png with <name>.raw.npy (+ .rgba.npy).
static void test_own_files(void) {
    static const char *names[] = {"png_gray2_adam7", "png_rgba16_adam7", "png_pal4_trns", "png_rgb8_filters",
                                  "png_gray16_trns", "png_ga8_stored"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[256], raw[256], rgba[256];
        snprintf(path, sizeof(path), "tests/data/%s.png", names[i]);
        snprintf(raw, sizeof(raw), "tests/data/%s.raw.npy", names[i]);
        snprintf(rgba, sizeof(rgba), "tests/data/%s.rgba.npy", names[i]);
        PngImage img;
        NpyArray a, b;
        int rc = png_read(path, &img);
        CHECK(rc == 0, "%s: %s", path, sd_last_error());
        if (rc) continue;
        char why[128] = "";
        CHECK(npy_read(raw, &a) == 0, "%s: %s", raw, sd_last_error());
        CHECK(a.data && same_as_npy(img.pixels, img.bytes_per_sample, img.height, img.width, img.channels, &a, why,
                                    sizeof(why)),
              "%s raw: %s", path, why);
        void *px;
        int bps;
        CHECK(png_to_rgba(&img, &px, &bps) == 0, "rgba");
        CHECK(npy_read(rgba, &b) == 0, "%s: %s", rgba, sd_last_error());
        CHECK(b.data && px && same_as_npy(px, bps, img.height, img.width, 4, &b, why, sizeof(why)), "%s rgba: %s",
              path, why);
        free(px);
        npy_free(&a);
        npy_free(&b);
        png_free(&img);
    }
}

// image_load on PNGs: palette -> RGB(A), low-bit gray scaled, 16-bit kept.
static void test_image_load(void) {
    Image im;
    NpyArray a;
    int rc = image_load("tests/data/png_pal4_trns.png", &im);
    CHECK(rc == 0 && im.channels == 4 && im.src_dtype_bits == 8 && !im.is_float, "palette with alpha: %s",
          sd_last_error());
    if (!rc && npy_read("tests/data/png_pal4_trns.rgba.npy", &a) == 0) {
        size_t hw = (size_t)im.height * (size_t)im.width;
        int same = 1;
        for (size_t i = 0; i < hw; i++)
            for (int k = 0; k < 4; k++) same &= im.data[k * hw + i] == ((const uint8_t *)a.data)[i * 4 + (size_t)k];
        CHECK(same, "palette image as (C, H, W) floats");
        npy_free(&a);
    }
    image_free(&im);
    rc = image_load("tests/data/png_gray2_adam7.png", &im);
    CHECK(rc == 0 && im.channels == 1 && im.src_dtype_bits == 8, "2-bit gray: %s", sd_last_error());
    if (!rc && npy_read("tests/data/png_gray2_adam7.raw.npy", &a) == 0) {
        int same = 1;
        for (int i = 0; i < im.height * im.width; i++) same &= im.data[i] == 85.0f * ((const uint8_t *)a.data)[i];
        CHECK(same, "2-bit gray scaled to 0..255");
        npy_free(&a);
    }
    image_free(&im);
    rc = image_load("tests/data/png_rgba16_adam7.png", &im);
    CHECK(rc == 0 && im.channels == 4 && im.src_dtype_bits == 16 && im.height == 3 && im.width == 5, "RGBA16: %s",
          sd_last_error());
    if (!rc && npy_read("tests/data/png_rgba16_adam7.raw.npy", &a) == 0) {
        CHECK(im.data[2 * 15 + 7] == ((const uint16_t *)a.data)[7 * 4 + 2], "RGBA16 sample (band 2, pixel 7)");
        npy_free(&a);
    }
    image_free(&im);
    rc = image_load("tests/data/demo/labels.csv", &im);  // a text file
    CHECK(rc != 0 && strstr(sd_last_error(), "unknown image format") && im.data == NULL, "%s", sd_last_error());
    rc = image_load("tests/data/no_such_file.png", &im);
    CHECK(rc != 0 && strstr(sd_last_error(), "no_such_file"), "%s", sd_last_error());
}

// ---------------------------------------------------------------------------
// Shared third-party data.

typedef struct {
    int decoded_ok, decode_fail, rejected_ok, reject_fail;
} Tally;

static void check_shared_file(const char *dir, const JsonValue *e, Tally *t) {
    const char *file = NULL, *expected = NULL, *raw = NULL, *rgba = NULL;
    json_get_string(e, "file", NULL, &file);
    json_get_string(e, "expected", "", &expected);
    json_get_string(e, "raw_npy", NULL, &raw);
    json_get_string(e, "rgba_npy", NULL, &rgba);
    if (!file) return;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    PngImage img;
    sd_clear_error();
    int rc = png_read(path, &img);
    if (strcmp(expected, "reject") == 0) {
        int ok = rc != 0 && sd_last_error()[0] != '\0';
        CHECK(ok, "%s should be rejected", path);
        if (ok) {
            t->rejected_ok++;
            printf("  rejected %-28s %s\n", file, sd_last_error() + strlen(dir) + 6);
        } else {
            t->reject_fail++;
        }
        png_free(&img);
        return;
    }
    // "decode", or the implementation-defined palette-index case: we decode.
    CHECK(rc == 0, "%s: %s", path, sd_last_error());
    if (rc) {
        t->decode_fail++;
        return;
    }
    int good = 1;
    char why[160] = "", npath[1024];
    if (raw) {
        NpyArray a;
        snprintf(npath, sizeof(npath), "%s/%s", dir, raw);
        if (npy_read(npath, &a) == 0) {
            int same = same_as_npy(img.pixels, img.bytes_per_sample, img.height, img.width, img.channels, &a, why,
                                   sizeof(why));
            CHECK(same, "%s raw samples: %s", path, why);
            good &= same;
            npy_free(&a);
        } else {
            CHECK(0, "%s", sd_last_error());
            good = 0;
        }
    }
    if (rgba) {
        NpyArray a;
        void *px = NULL;
        int bps;
        snprintf(npath, sizeof(npath), "%s/%s", dir, rgba);
        if (npy_read(npath, &a) == 0 && png_to_rgba(&img, &px, &bps) == 0) {
            int same = same_as_npy(px, bps, img.height, img.width, 4, &a, why, sizeof(why));
            CHECK(same, "%s rgba: %s", path, why);
            good &= same;
        } else {
            CHECK(0, "%s", sd_last_error());
            good = 0;
        }
        free(px);
        npy_free(&a);
    }
    if (good) t->decoded_ok++;
    else t->decode_fail++;
    png_free(&img);
}

static void test_shared(const char *root) {
    static const char *groups[] = {"pngsuite", "libpng-contrib", "libpng-contrib-interlaced", "image-png-extra"};
    Tally t = {0, 0, 0, 0};
    for (int g = 0; g < 4; g++) {
        char dir[512], idx[600];
        snprintf(dir, sizeof(dir), "%s/png/%s", root, groups[g]);
        snprintf(idx, sizeof(idx), "%s/index.json", dir);
        JsonValue index;
        if (parse_index(idx, &index) != 0) {
            CHECK(0, "%s", sd_last_error());
            continue;
        }
        for (int i = 0; i < index.count; i++) check_shared_file(dir, &index.items[i], &t);
        json_free(&index);
    }
    printf("shared PNGs: %d decoded and equal to ground truth, %d rejected as expected; %d decode failures, %d wrongly "
           "accepted\n",
           t.decoded_ok, t.rejected_ok, t.decode_fail, t.reject_fail);
    // 226 valid files + invalid_palette_index.png (implementation-defined: we decode it and
    // substitute opaque black for the out-of-range index), 22 corrupt files.
    CHECK(t.decoded_ok == 227 && t.rejected_ok == 22, "expected 227 decoded + 22 rejected");

    // Real-image PNGs derived from the satellite chips (Pillow-written, zlib level 6).
    static const char *sat[][2] = {
        {"satellite/chesapeake/id_000051.rgb.png", "satellite/chesapeake/id_000051.rgb.npy"},
        {"satellite/chesapeake/id_000051.label.png", "satellite/chesapeake/id_000051.label.npy"},
        {"satellite/chesapeake/id_000367.rgb.png", "satellite/chesapeake/id_000367.rgb.npy"},
        {"satellite/eo-learn/scene2.rgb.png", "satellite/eo-learn/scene2.rgb.npy"},
    };
    for (int i = 0; i < 4; i++) {
        char p[600], n[600], why[160] = "";
        snprintf(p, sizeof(p), "%s/%s", root, sat[i][0]);
        snprintf(n, sizeof(n), "%s/%s", root, sat[i][1]);
        PngImage img;
        NpyArray a;
        int rc = png_read(p, &img);
        CHECK(rc == 0, "%s: %s", p, sd_last_error());
        if (rc) continue;
        if (npy_read(n, &a) == 0) {
            CHECK(same_as_npy(img.pixels, img.bytes_per_sample, img.height, img.width, img.channels, &a, why,
                              sizeof(why)),
                  "%s: %s", p, why);
            npy_free(&a);
        } else {
            CHECK(0, "%s", sd_last_error());
        }
        png_free(&img);
    }
}

int main(void) {
    test_crc();
    test_roundtrip();
    test_size_limit();
    test_own_files();
    test_image_load();
    const char *root = data_root();
    if (root) test_shared(root);
    else printf("SKIP shared PNG data: neither /work/shared/data nor ../shared/data exists\n");
    return test_report("test_png");
}
