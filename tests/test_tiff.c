// TIFF reader tests: our own small files in tests/data (BigTIFF, MM, tiles,
// planar, LZW/Deflate/PackBits, predictors 2 and 3 on 16/32/64-bit samples),
// truncation and corruption of a small file at every offset, malformed
// headers, and (when present) every TIFF of ../shared/data against its
// ground-truth .npy and its .json facts.
#include "tests/test_util.h"

#include <sys/resource.h>

#include "core/error.h"
#include "io/image.h"
#include "io/json.h"
#include "io/npy.h"
#include "io/tiff.h"

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

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = (uint8_t *)malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

// Samples equal to a (bands, H, W) npy of the same dtype.
static int same_as_npy(const TiffImage *img, const NpyArray *a, char *why, size_t why_len) {
    if (a->dtype != img->dtype) {
        snprintf(why, why_len, "dtype %s, ground truth %s", npy_dtype_name(img->dtype), npy_dtype_name(a->dtype));
        return 0;
    }
    if (a->ndim != 3 || a->shape[0] != img->bands || a->shape[1] != img->height || a->shape[2] != img->width) {
        snprintf(why, why_len, "shape (%d, %d, %d) differs from the ground truth", img->bands, img->height, img->width);
        return 0;
    }
    size_t n = (size_t)a->count * (size_t)a->itemsize;
    if (memcmp(img->data, a->data, n) != 0) {
        size_t i = 0;
        while (((const uint8_t *)img->data)[i] == ((const uint8_t *)a->data)[i]) i++;
        size_t s = i / (size_t)a->itemsize, hw = (size_t)img->height * (size_t)img->width;
        snprintf(why, why_len, "first difference at band %zu row %zu col %zu", s / hw, s % hw / (size_t)img->width,
                 s % (size_t)img->width);
        return 0;
    }
    return 1;
}

// ---------------------------------------------------------------------------

typedef struct {
    const char *name;
    int bigtiff, big_endian, tiled, compression, predictor, planar;
    int has_geo, epsg, has_nodata;
    double nodata;
} OwnFile;

static void test_own_files(void) {
    static const OwnFile files[] = {
        {"tiff_mm_i16_lzw_pred2_tiled_planar", 0, 1, 1, 5, 2, 2, 0, 0, 0, 0},
        {"tiff_f64_deflate_pred3_geo", 0, 0, 0, 8, 3, 1, 1, 32631, 1, -9999.0},
        {"tiff_bigmm_u16_packbits", 1, 1, 0, 32773, 1, 1, 0, 0, 0, 0},
        {"tiff_u32_zip32946_pred2_rgb", 0, 0, 1, 32946, 2, 1, 0, 0, 0, 0},
        {"tiff_mm_f32_lzw_pred3_rgb", 0, 1, 0, 5, 3, 1, 0, 0, 0, 0},
        {"tiff_i8_none_point", 0, 0, 0, 1, 1, 1, 1, 4326, 1, NAN},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const OwnFile *f = &files[i];
        char path[256], npath[256], why[160] = "";
        snprintf(path, sizeof(path), "tests/data/%s.tif", f->name);
        snprintf(npath, sizeof(npath), "tests/data/%s.npy", f->name);
        TiffImage img;
        NpyArray a;
        int rc = tiff_read(path, &img);
        CHECK(rc == 0, "%s: %s", path, sd_last_error());
        if (rc) continue;
        CHECK(npy_read(npath, &a) == 0, "%s", sd_last_error());
        CHECK(a.data && same_as_npy(&img, &a, why, sizeof(why)), "%s: %s", path, why);
        CHECK(img.bigtiff == f->bigtiff && img.big_endian == f->big_endian && img.tiled == f->tiled &&
                  img.compression == f->compression && img.predictor == f->predictor && img.planar == f->planar,
              "%s: file facts", path);
        CHECK(img.has_geotransform == f->has_geo && img.epsg == f->epsg && img.has_nodata == f->has_nodata,
              "%s: geo facts (geotransform %d, epsg %d, nodata %d)", path, img.has_geotransform, img.epsg,
              img.has_nodata);
        if (f->has_nodata)
            CHECK(isnan(f->nodata) ? isnan(img.nodata) : img.nodata == f->nodata, "%s: nodata %g", path, img.nodata);
        if (i == 1) {  // pixel-is-area: origin as written
            const double want[6] = {500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0};
            for (int k = 0; k < 6; k++) CHECK(img.geotransform[k] == want[k], "geotransform[%d] %g", k, img.geotransform[k]);
        }
        if (i == 5) {  // pixel-is-point: GDAL moves the origin half a pixel up-left
            const double want[6] = {9.875, 0.25, 0.0, 45.125, 0.0, -0.25};
            for (int k = 0; k < 6; k++) CHECK(img.geotransform[k] == want[k], "geotransform[%d] %g", k, img.geotransform[k]);
            CHECK(img.pixel_is_point == 1, "pixel is point");
        }
        npy_free(&a);
        tiff_free(&img);
    }
}

// Truncations and single-byte corruptions of a small compressed file: either a
// clean error or (for corrupt bytes inside pixel data) a decoded image; never
// a crash or an out-of-bounds access (run under `make asan`).
static void test_truncation(void) {
    size_t len;
    uint8_t *buf = read_bytes("tests/data/tiff_mm_i16_lzw_pred2_tiled_planar.tif", &len);
    CHECK(buf != NULL, "own TIFF present");
    if (!buf) return;
    int rejected = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = (uint8_t *)malloc(cut ? cut : 1);
        memcpy(part, buf, cut);
        TiffImage img;
        sd_clear_error();
        int rc = tiff_decode(part, cut, &img);
        if (rc != 0 && sd_last_error()[0]) rejected++;
        tiff_free(&img);
        free(part);
    }
    // The pixel data comes first and the IFD last: every cut loses the IFD.
    CHECK(rejected == (int)len, "%d of %zu truncations rejected", rejected, len);
    int errors = 0;
    for (size_t i = 0; i < len; i++) {
        for (int flip = 1; flip < 256; flip <<= 2) {
            buf[i] ^= (uint8_t)flip;
            TiffImage img;
            if (tiff_decode(buf, len, &img) != 0) errors++;
            tiff_free(&img);
            buf[i] ^= (uint8_t)flip;
        }
    }
    printf("corruptions of a %zu-byte TIFF: %d of %zu rejected, the rest decoded without faults\n", len, errors,
           4 * len);
    CHECK(errors > 0, "some corruptions rejected");
    free(buf);
}

static void test_malformed(void) {
    TiffImage img;
    static const uint8_t not_tiff[8] = {'P', 'K', 3, 4, 0, 0, 0, 0};
    CHECK(tiff_decode(not_tiff, 8, &img) != 0 && strstr(sd_last_error(), "not a TIFF"), "%s", sd_last_error());
    // II*, IFD at 8 with one entry pointing far past the end.
    uint8_t f[8 + 2 + 12 + 4] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0};
    uint8_t *e = f + 10;
    e[0] = 0x11, e[1] = 0x01;  // 273 StripOffsets
    e[2] = 4;                  // LONG
    e[4] = 200;                // count 200 -> 800 bytes at offset...
    e[8] = 0xff, e[9] = 0xff, e[10] = 0xff, e[11] = 0x7f;
    CHECK(tiff_decode(f, sizeof(f), &img) != 0 && strstr(sd_last_error(), "past the end"), "%s", sd_last_error());
    e[4] = 1;  // one inline value: then width/height are missing
    CHECK(tiff_decode(f, sizeof(f), &img) != 0 && strstr(sd_last_error(), "ImageWidth"), "%s", sd_last_error());
    f[4] = 100;  // IFD offset outside the file
    CHECK(tiff_decode(f, sizeof(f), &img) != 0, "%s", sd_last_error());
}

// Reproducers found while fuzzing (tests/data/fuzz, docs/fuzzing.md): each must
// be refused with a message naming the problem.
static void test_fuzz_regressions(void) {
    static const struct {
        const char *file, *msg;
    } cases[] = {
        // 1x1 image, 16 bands, 2^30 x 2^30 tiles: the tile byte size wrapped to 0 in
        // 64 bits, a 0-byte buffer was allocated and the copy read past it
        {"tiff_tile_overflow.tif", "tile of 1073741824x1073741824 pixels of 16 bytes is too large"},
        {"tiff_tile_overflow_pred.tif", "too large"},  // same with predictor 2 (wrote past it)
        // 2^30 x 2^30 x 16 bands, planar, 1x1 tiles: image size and tile count wrapped to 0,
        // a 0-byte buffer was returned as the image
        {"tiff_size_wrap.tif", "over the limit"},
        // a 2 GiB uncompressed strip backed by 16 bytes: 2 GiB were allocated before failing
        {"tiff_strip_past_data.tif", "chunk 0: 16 bytes of data (compression none) cannot decode to the 2147483648"},
        // found by fuzz_tiff: a 1.5 KB file declaring a 256x256x10825 16-bit image whose
        // first tile lies past the end: 1.4 GB were allocated before the check
        {"tiff_chunk_past_eof_oom.tif", "chunk 0: 29790 bytes at offset 31283 run past the end of the file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "tests/data/fuzz/%s", cases[i].file);
        TiffImage img;
        int rc = tiff_read(path, &img);
        CHECK(rc != 0 && img.data == NULL && strstr(sd_last_error(), cases[i].msg) && strstr(sd_last_error(), path),
              "%s must be rejected with '%s': %s", path, cases[i].msg, rc ? sd_last_error() : "decoded");
        if (rc == 0) tiff_free(&img);
    }
}

// ---------------------------------------------------------------------------

static void test_image_load(void) {
    Image im;
    NpyArray a;
    int rc = image_load("tests/data/tiff_f64_deflate_pred3_geo.tif", &im);
    CHECK(rc == 0 && im.channels == 1 && im.src_dtype_bits == 64 && im.is_float && im.has_nodata &&
              im.nodata == -9999.0,
          "float64 GeoTIFF: %s", sd_last_error());
    if (!rc && npy_read("tests/data/tiff_f64_deflate_pred3_geo.npy", &a) == 0) {
        int same = 1;
        for (int i = 0; i < 35; i++) {
            float want = (float)((const double *)a.data)[i];
            same &= isnan(want) ? isnan(im.data[i]) : im.data[i] == want;
        }
        CHECK(same, "float64 TIFF as floats");
        npy_free(&a);
    }
    image_free(&im);
    rc = image_load("tests/data/tiff_mm_i16_lzw_pred2_tiled_planar.tif", &im);
    CHECK(rc == 0 && im.channels == 2 && im.height == 18 && im.width == 20 && im.is_signed && im.src_dtype_bits == 16,
          "int16 planar TIFF: %s", sd_last_error());
    if (!rc && npy_read("tests/data/tiff_mm_i16_lzw_pred2_tiled_planar.npy", &a) == 0) {
        CHECK(im.data[360 + 17 * 20 + 19] == ((const int16_t *)a.data)[360 + 17 * 20 + 19], "last sample of band 1");
        npy_free(&a);
    }
    image_free(&im);
    // A 122-byte sparse TIFF (one strip of byte count 0) of 16384x16384 8-bit
    // samples: all zeros, legal. image_load wrote every float and so committed
    // 1 GiB of RAM (peak RSS 1.3 GB; 8 GiB for a 46340x46340 file); zero samples
    // are now left as untouched calloc pages.
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss0 = ru.ru_maxrss;
    rc = image_load("tests/data/fuzz/image_sparse_tiff_rss.tif", &im);
    CHECK(rc == 0 && im.channels == 1 && im.height == 16384 && im.width == 16384 && im.src_dtype_bits == 8,
          "sparse TIFF: %s", sd_last_error());
    if (!rc) {
        CHECK(im.data[0] == 0.0f && im.data[(size_t)16384 * 16384 - 1] == 0.0f && !signbit(im.data[12345]),
              "sparse TIFF samples are +0");
        getrusage(RUSAGE_SELF, &ru);
#if defined(__SANITIZE_ADDRESS__)
        (void)rss0;  // ASan's allocator and shadow memory change the RSS
#else
        CHECK(ru.ru_maxrss - rss0 < 700L * 1024, "sparse TIFF: peak RSS grew by %ld MB (the floats were written)",
              (ru.ru_maxrss - rss0) / 1024);
#endif
    }
    image_free(&im);
}

static int json_number_equal(double got, const JsonValue *v) {
    if (v->type == JSON_STRING && strcmp(v->string, "nan") == 0) return isnan(got);
    if (v->type != JSON_NUMBER) return 0;
    return got == v->number || fabs(got - v->number) <= 1e-9 * fabs(v->number);
}

static void test_shared(const char *root) {
    static const char *files[] = {
        "eo-learn/import-tiff-test1.tiff", "eo-learn/import-tiff-test2.tiff", "image-tiff/BigTIFF.tif",
        "image-tiff/BigTIFFLong.tif", "image-tiff/BigTIFFMotorola.tif", "image-tiff/geo-5b.tif", "image-tiff/int16.tif",
        "image-tiff/int16_zstd.tif", "image-tiff/issue_69_lzw.tiff", "image-tiff/issue_69_packbits.tiff",
        "image-tiff/ladoga.tif", "image-tiff/minisblack-1c-16b.tiff", "image-tiff/oxford.tif",
        "image-tiff/predictor-3-gray-f32.tif", "image-tiff/predictor-3-rgb-f32.tif",
        "image-tiff/seq/seq-1c-16b-bigendian.tiff", "image-tiff/seq/seq-1c-16b-deflate.tiff",
        "image-tiff/seq/seq-1c-16b-lzw.tiff", "image-tiff/seq/seq-1c-16b-multistrip.tiff",
        "image-tiff/seq/seq-1c-16b-tiled.tiff", "image-tiff/seq/seq-1c-32f-deflate-fpredict.tiff",
        "image-tiff/seq/seq-1c-32f.tiff", "image-tiff/seq/seq-1c-8b-lzw-hpredict.tiff",
        "image-tiff/seq/seq-1c-8b-multipage.tiff", "image-tiff/seq/seq-1c-8b-packbits.tiff",
        "image-tiff/seq/seq-1c-8b-tiled-bigtiff.tiff", "image-tiff/seq/seq-1c-8b-tiled-deflate.tiff",
        "image-tiff/seq/seq-1c-8b-tiled-lzw.tiff", "image-tiff/seq/seq-1c-i16.tiff", "image-tiff/seq/seq-1c-i32.tiff",
        "image-tiff/seq/seq-3c-16b-bigtiff.tiff", "image-tiff/seq/seq-3c-8b-bigendian.tiff",
        "image-tiff/seq/seq-3c-8b-lzw.tiff", "image-tiff/seq/seq-3c-8b-tiled.tiff",
        "image-tiff/seq/seq-4c-16b-rgba.tiff", "image-tiff/tiled-oversize-gray-i8.tif", "image-tiff/tiled-rgb-u8.tif",
        "image-tiff/usda_naip_256_webp_z3.tif", "libtiff/deflate-last-strip-extra-data.tiff", "rasterio/RGB.byte.tif",
        "rasterio/byte.tif", "rasterio/float.tif", "rasterio/float32.tif", "rasterio/float_nan.tif",
        "rasterio/float_raster_with_nodata.tif", "rasterio/rgb_deflate.tif", "rasterio/rgb_lzw.tif",
        "rasterio/rotated.tif", "rio-tiler/cog_gradient.tif", "rio-tiler/cog_rgb.tif", "rio-tiler/cog_tags.tif",
        "rio-tiler/colorado_CL_1.tif", "rio-tiler/red.tif", "rio-tiler/web.tif",
        "torchgeo/eurosat_ms_layout_Forest_1.tif",
    };
    int nfiles = (int)(sizeof(files) / sizeof(files[0]));
    int decoded = 0, rejected = 0, geo_checked = 0, nodata_checked = 0, epsg_checked = 0, failures = 0;
    for (int i = 0; i < nfiles; i++) {
        char path[600], jpath[600], npath[600], why[200] = "";
        snprintf(path, sizeof(path), "%s/tiff/%s", root, files[i]);
        snprintf(jpath, sizeof(jpath), "%s", path);
        char *dot = strrchr(jpath, '.');
        strcpy(dot, ".json");
        JsonValue facts;
        if (json_parse_file(jpath, &facts) != 0) {
            CHECK(0, "%s", sd_last_error());
            failures++;
            continue;
        }
        const char *expected = "decode", *gt = NULL;
        json_get_string(&facts, "expected", "decode", &expected);
        json_get_string(&facts, "gt_npy", NULL, &gt);
        TiffImage img;
        sd_clear_error();
        int rc = tiff_read(path, &img);
        if (strncmp(expected, "reject", 6) == 0) {
            const char *codec = NULL;
            json_get_string(&facts, "compression", "", &codec);
            int ok = rc != 0 && strstr(sd_last_error(), codec) != NULL;
            CHECK(ok, "%s must be rejected naming %s: %s", path, codec, sd_last_error());
            if (ok) {
                rejected++;
                printf("  rejected %s: %s\n", files[i], strstr(sd_last_error(), "compression"));
            } else {
                failures++;
            }
            json_free(&facts);
            tiff_free(&img);
            continue;
        }
        CHECK(rc == 0, "%s: %s", path, sd_last_error());
        if (rc) {
            failures++;
            json_free(&facts);
            continue;
        }
        strcpy(npath, path);
        if (gt) strcpy(strrchr(npath, '/') + 1, gt);
        else strcpy(strrchr(npath, '.'), ".npy");
        NpyArray a;
        int good = 0;
        if (npy_read(npath, &a) == 0) {
            good = same_as_npy(&img, &a, why, sizeof(why));
            CHECK(good, "%s: %s", path, why);
            npy_free(&a);
        } else {
            CHECK(0, "%s", sd_last_error());
        }
        // Facts: geotransform, nodata, EPSG code.
        const JsonValue *g = json_get(&facts, "geotransform");
        if (g && g->type == JSON_ARRAY && g->count == 6) {
            int same = img.has_geotransform;
            for (int k = 0; same && k < 6; k++) same = json_number_equal(img.geotransform[k], &g->items[k]);
            // GDAL reports (0, 1, 0, 0, 0, 1) for files without georeferencing.
            int identity = g->items[0].number == 0 && g->items[1].number == 1 && g->items[5].number == 1;
            if (!img.has_geotransform && identity) same = 1;
            CHECK(same, "%s: geotransform (%.10g, %.10g, %g, %.10g, %g, %.10g) differs from GDAL's", path,
                  img.geotransform[0], img.geotransform[1], img.geotransform[2], img.geotransform[3],
                  img.geotransform[4], img.geotransform[5]);
            good &= same;
            if (img.has_geotransform) geo_checked++;
        }
        const JsonValue *nd = json_get(&facts, "nodata");
        if (nd && nd->type == JSON_ARRAY && nd->count > 0) {
            int same = img.has_nodata && json_number_equal(img.nodata, &nd->items[0]);
            CHECK(same, "%s: nodata %g (present %d) differs from GDAL's", path, img.nodata, img.has_nodata);
            good &= same;
            nodata_checked++;
        } else {
            CHECK(!img.has_nodata, "%s: nodata %g found, GDAL reports none", path, img.nodata);
        }
        double epsg;
        if (json_get_double(&facts, "crs_epsg", 0.0, &epsg) == 0 && epsg > 0 && img.epsg) {
            CHECK(img.epsg == (int)epsg, "%s: EPSG %d, GDAL says %g", path, img.epsg, epsg);
            epsg_checked++;
        }
        if (good) decoded++;
        else failures++;
        json_free(&facts);
        tiff_free(&img);
    }
    printf("shared TIFFs: %d decoded equal to GDAL, %d rejected (unsupported codec), %d failures; facts checked: "
           "%d geotransforms, %d nodata, %d EPSG codes\n",
           decoded, rejected, failures, geo_checked, nodata_checked, epsg_checked);
    CHECK(decoded == 52 && rejected == 3, "expected 52 decoded + 3 rejected of %d", nfiles);
}

int main(void) {
    test_own_files();
    test_truncation();
    test_malformed();
    test_fuzz_regressions();
    test_image_load();
    const char *root = data_root();
    if (root) test_shared(root);
    else printf("SKIP shared TIFF data: neither /work/shared/data nor ../shared/data exists\n");
    return test_report("test_tiff");
}
