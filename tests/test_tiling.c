// Scene tiling (models/tiling.h), the TIFF row reader and the TIFF writer:
//   - window positions and the cross-fade ramps against their definitions;
//   - tiles_run with synthetic window models: a per-pixel model must give back its per-pixel
//     answer everywhere (every window crop and the row streaming right), a per-window vote must
//     give, at each pixel, the window of largest weight (computed here from the ramp formula);
//     nodata pixels, stopping;
//   - tiff_read_rows equals slices of tiff_read on every test TIFF (strips, tiles, planar, MM);
//   - the GeoTIFF tags of tests/data/scene/rgb_byte_crop.tif as tifffile wrote them, and
//     tiff_encode -> tiff_decode round trips (pixels, palette photometric, every GeoTIFF tag).
#include "tests/test_util.h"

#include "core/error.h"
#include "io/tiff.h"
#include "io/tiff_write.h"
#include "models/tiling.h"

#define SCENE "tests/data/scene/rgb_byte_crop.tif"

static void test_positions(void) {
    struct { int n, tile, overlap, count, pos[8]; } cases[] = {
        {120, 32, 8, 5, {0, 24, 48, 72, 88}}, {100, 32, 8, 4, {0, 24, 48, 68}}, {32, 32, 8, 1, {0}},
        {56, 32, 8, 2, {0, 24}}, {96, 32, 0, 3, {0, 32, 64}}, {97, 32, 0, 4, {0, 32, 64, 65}},
        {33, 32, 31, 2, {0, 1}},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        int *pos, n;
        int rc = tile_positions(cases[k].n, cases[k].tile, cases[k].overlap, &pos, &n);
        int same = rc == 0 && n == cases[k].count;
        for (int i = 0; same && i < n; i++) same = pos[i] == cases[k].pos[i];
        CHECK(same, "positions of %d on %d (overlap %d): rc %d, %d windows", cases[k].tile, cases[k].n,
              cases[k].overlap, rc, n);
        free(pos);
    }
    int *pos, n;
    CHECK(tile_positions(100, 32, 32, &pos, &n) != 0, "overlap = tile refused");
    CHECK(tile_positions(20, 32, 8, &pos, &n) != 0, "tile over the image refused");
    // Ramps: 1 away from the sides, (i + 0.5) / K at a side with a neighbour, and two
    // neighbours K apart sum to 1 over their overlap.
    int T = 32, K = 8;
    float worst = 0.0f;
    for (int j = 0; j < K; j++) {
        float s = tile_ramp(T - K + j, T, K, 1, 0) + tile_ramp(j, T, K, 0, 1);
        worst = fabsf(s - 1.0f) > worst ? fabsf(s - 1.0f) : worst;
    }
    CHECK(worst < 1e-6f, "cross-fade sums to 1 (worst %g)", worst);
    CHECK(tile_ramp(0, T, K, 1, 1) == 1.0f && tile_ramp(T - 1, T, K, 1, 1) == 1.0f, "no ramp at the image's edges");
    CHECK(tile_ramp(0, T, K, 0, 0) == 0.5f / K && tile_ramp(16, T, K, 0, 0) == 1.0f && tile_ramp(T - 1, T, K, 0, 0) == 0.5f / K,
          "ramp values");
    CHECK(tile_ramp(5, T, 0, 0, 0) == 1.0f, "no overlap: weight 1");
}

// Synthetic models. Per pixel: class = band 0's value mod C (probability 1).
typedef struct {
    int classes, calls, stop_after;
} Synth;

static int per_pixel(void *ctx, const float *win, int bands, int tile, float *probs) {
    Synth *s = (Synth *)ctx;
    (void)bands;
    size_t n = (size_t)tile * tile;
    memset(probs, 0, n * (size_t)s->classes * sizeof(float));
    for (size_t q = 0; q < n; q++) probs[(size_t)((int)win[q] % s->classes) * n + q] = 1.0f;
    s->calls++;
    return 0;
}

// Per window: the k-th window called (row order) votes for class k everywhere.
static int per_window(void *ctx, const float *win, int bands, int tile, float *probs) {
    Synth *s = (Synth *)ctx;
    (void)win, (void)bands;
    size_t n = (size_t)tile * tile;
    memset(probs, 0, n * (size_t)s->classes * sizeof(float));
    for (size_t q = 0; q < n; q++) probs[(size_t)s->calls * n + q] = 1.0f;
    s->calls++;
    return 0;
}

static int stop_now(void *ctx) {
    Synth *s = (Synth *)ctx;
    return s->calls >= s->stop_after;
}

// The ramp as tiling.h defines it, written again here.
static float ramp_def(int i, int T, int K, int first, int last) {
    float r = 1.0f;
    if (K > 0 && !first && i < K) r = ((float)i + 0.5f) / (float)K;
    if (K > 0 && !last && T - 1 - i < K) {
        float q = ((float)(T - 1 - i) + 0.5f) / (float)K;
        r = q < r ? q : r;
    }
    return r;
}

static void test_run(void) {
    TiffImage full;
    if (tiff_read(SCENE, &full)) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    const uint8_t *px = (const uint8_t *)full.data;  // (3, 100, 120)
    int W = full.width, H = full.height;
    size_t plane = (size_t)W * H;
    SceneSource src;
    CHECK(scene_open(&src, SCENE) == 0 && src.is_tiff && src.width == 120 && src.height == 100 && src.bands == 3 &&
              src.facts.src_dtype_bits == 8 && src.facts.has_nodata && src.facts.nodata == 0.0,
          "scene_open: %s", sd_last_error());
    uint8_t *map = (uint8_t *)malloc(plane);
    int tiles[][2] = {{32, 8}, {32, 0}, {40, 13}, {100, 99}};
    for (int t = 0; t < 4; t++) {
        Synth s = {7, 0, 1 << 30};
        TileJob job;
        memset(&job, 0, sizeof(job));
        job.src = &src, job.tile = tiles[t][0], job.overlap = tiles[t][1], job.classes = 7;
        job.window = per_pixel, job.ctx = &s, job.nodata_class = 255, job.classmap = map;
        int rc = tiles_run(&job);
        long bad = 0, nodata = 0;
        for (size_t q = 0; q < plane; q++) {
            int all0 = px[q] == 0 && px[plane + q] == 0 && px[2 * plane + q] == 0;
            int want = all0 ? 255 : px[q] % 7;
            nodata += all0;
            bad += map[q] != want;
        }
        CHECK(rc == 0 && bad == 0 && nodata == 1805, "per-pixel model, tile %d overlap %d: rc %d, %ld pixels differ",
              tiles[t][0], tiles[t][1], rc, bad);
    }
    // Per-window votes: the window of largest weight wins (ties: the first).
    {
        int T = 32, K = 8, *xs, *ys, nx, ny;
        tile_positions(W, T, K, &xs, &nx);
        tile_positions(H, T, K, &ys, &ny);
        Synth s = {nx * ny, 0, 1 << 30};
        TileJob job;
        memset(&job, 0, sizeof(job));
        job.src = &src, job.tile = T, job.overlap = K, job.classes = nx * ny;
        job.window = per_window, job.ctx = &s, job.nodata_class = -1, job.classmap = map;
        int rc = tiles_run(&job);
        long bad = 0, seen_mixed = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int best = -1, cover = 0;
                float bw = -1.0f;
                for (int r = 0; r < ny; r++)
                    for (int q = 0; q < nx; q++) {
                        if (x < xs[q] || x >= xs[q] + T || y < ys[r] || y >= ys[r] + T) continue;
                        cover++;
                        float w = ramp_def(y - ys[r], T, K, r == 0, r == ny - 1) * ramp_def(x - xs[q], T, K, q == 0, q == nx - 1);
                        if (w > bw) bw = w, best = r * nx + q;
                    }
                seen_mixed += cover > 1;
                bad += map[(size_t)y * W + x] != best;
            }
        CHECK(rc == 0 && s.calls == nx * ny && bad == 0 && seen_mixed > 0,
              "per-window votes: rc %d, %d calls, %ld pixels differ from the largest weight", rc, s.calls, bad);
        free(xs), free(ys);
        // Stopping between windows.
        Synth st = {nx * ny, 0, 3};
        job.ctx = &st;
        job.should_stop = stop_now;
        CHECK(tiles_run(&job) == 1 && st.calls == 3, "should_stop: tiles_run returns 1 after 3 windows (%d)", st.calls);
    }
    // Too many classes for the map.
    {
        Synth s = {300, 0, 1 << 30};
        TileJob job;
        memset(&job, 0, sizeof(job));
        job.src = &src, job.tile = 32, job.overlap = 8, job.classes = 300, job.window = per_pixel, job.ctx = &s;
        job.classmap = map;
        CHECK(tiles_run(&job) == -1 && strstr(sd_last_error(), "classes"), "300 classes refused: %s", sd_last_error());
    }
    free(map);
    scene_close(&src);
    tiff_free(&full);
}

// tiff_read_rows in blocks of `step` rows equals the whole image's rows.
static int rows_match(const char *path, int step) {
    TiffImage full, info;
    TiffReader *r;
    if (tiff_read(path, &full)) return 0;
    if (tiff_open(path, &r, &info)) { tiff_free(&full); return 0; }
    size_t rowb = (size_t)full.width * full.bytes_per_sample;
    uint8_t *buf = (uint8_t *)malloc(rowb * (size_t)step * full.bands);
    int ok = info.width == full.width && info.height == full.height && info.bands == full.bands && info.dtype == full.dtype;
    for (int y = 0; ok && y < full.height; y += step) {
        int n = full.height - y < step ? full.height - y : step;
        ok = tiff_read_rows(r, y, n, buf) == 0;
        for (int b = 0; ok && b < full.bands; b++)
            ok = !memcmp(buf + (size_t)b * n * rowb, (uint8_t *)full.data + ((size_t)b * full.height + y) * rowb, n * rowb);
    }
    if (ok) ok = tiff_read_rows(r, full.height - 1, 2, buf) != 0 && strstr(sd_last_error(), "rows");
    free(buf);
    tiff_close(r);
    tiff_free(&full);
    return ok;
}

static void test_rows(void) {
    const char *files[] = {SCENE, "tests/data/tiff_bigmm_u16_packbits.tif", "tests/data/tiff_f64_deflate_pred3_geo.tif",
                           "tests/data/tiff_i8_none_point.tif", "tests/data/tiff_mm_f32_lzw_pred3_rgb.tif",
                           "tests/data/tiff_mm_i16_lzw_pred2_tiled_planar.tif", "tests/data/tiff_u32_zip32946_pred2_rgb.tif"};
    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++)
        for (int step = 1; step <= 13; step += 6)
            CHECK(rows_match(files[k], step), "%s: rows by %d equal the whole image (%s)", files[k], step, sd_last_error());
}

static int same_doubles(const double *a, int na, const double *b, int nb) {
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof(double)));
}

static int same_geo(const TiffGeoTags *a, const TiffGeoTags *b) {
    return same_doubles(a->pixel_scale, a->n_pixel_scale, b->pixel_scale, b->n_pixel_scale) &&
           same_doubles(a->tiepoint, a->n_tiepoint, b->tiepoint, b->n_tiepoint) &&
           same_doubles(a->transformation, a->n_transformation, b->transformation, b->n_transformation) &&
           same_doubles(a->double_params, a->n_double_params, b->double_params, b->n_double_params) &&
           a->n_key_directory == b->n_key_directory &&
           !memcmp(a->key_directory, b->key_directory, (size_t)a->n_key_directory * 2) &&
           a->n_ascii_params == b->n_ascii_params && !memcmp(a->ascii_params, b->ascii_params, (size_t)a->n_ascii_params);
}

static void test_geo_and_writer(void) {
    TiffImage src;
    if (tiff_read(SCENE, &src)) { CHECK(0, "%s", sd_last_error()); return; }
    // What tifffile wrote (weights_tools/make_scene_test_data.py; values read back by tifffile).
    const TiffGeoTags *g = &src.geo;
    double tie[6] = {0, 0, 0, 137989.55120101137, 2814913.328690808, 0};
    CHECK(g->n_tiepoint == 6 && !memcmp(g->tiepoint, tie, sizeof(tie)), "tiepoint as written");
    CHECK(g->n_pixel_scale == 3 && g->pixel_scale[0] == 300.0379266750948 && g->pixel_scale[1] == 300.041782729805,
          "pixel scale as written");
    CHECK(g->n_key_directory == 32 && g->key_directory[0] == 1 && g->key_directory[3] == 7 && g->key_directory[31] == 9001,
          "key directory: %d values", g->n_key_directory);
    CHECK(g->n_ascii_params == 30 && !memcmp(g->ascii_params, "WGS 84 / UTM zone 18N|WGS 84|", 30),
          "ascii params: %d bytes", g->n_ascii_params);
    CHECK(g->n_double_params == 1 && g->double_params[0] == 0.0 && g->n_transformation == 0, "double params");
    // A class map with the palette and these tags, both codings, decoded again.
    int W = src.width, H = src.height;
    uint8_t *map = (uint8_t *)malloc((size_t)W * H);
    for (int q = 0; q < W * H; q++) map[q] = (uint8_t)(((const uint8_t *)src.data)[q] % 5);
    uint8_t pal[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int deflate = 0; deflate <= 1; deflate++) {
        TiffWriteImage wi;
        memset(&wi, 0, sizeof(wi));
        wi.width = W, wi.height = H, wi.channels = 1, wi.pixels = map, wi.palette_rgb = pal, wi.palette_size = 5;
        wi.deflate = deflate, wi.geo = g, wi.description = "test", wi.has_nodata = 1, wi.nodata = 255;
        uint8_t *buf;
        size_t len;
        TiffImage back;
        int rc = tiff_encode(&wi, &buf, &len);
        CHECK(rc == 0 && tiff_decode(buf, len, &back) == 0, "encode/decode (deflate %d): %s", deflate, sd_last_error());
        if (rc) continue;
        CHECK(back.width == W && back.height == H && back.bands == 1 && back.dtype == NPY_UINT8 && back.photometric == 3 &&
                  back.compression == (deflate ? 8 : 1) && !memcmp(back.data, map, (size_t)W * H),
              "round trip pixels and header (deflate %d)", deflate);
        CHECK(same_geo(&back.geo, g) && back.has_geotransform && back.epsg == 32618 && back.has_nodata && back.nodata == 255,
              "round trip GeoTIFF tags (deflate %d)", deflate);
        CHECK(!memcmp(back.geotransform, src.geotransform, sizeof(src.geotransform)), "same geotransform");
        tiff_free(&back);
        free(buf);
    }
    // RGB without tags; a bad palette.
    TiffWriteImage wi;
    memset(&wi, 0, sizeof(wi));
    wi.width = W, wi.height = H, wi.channels = 3, wi.pixels = (const uint8_t *)src.data;  // planes read as rows: any bytes do
    uint8_t *buf;
    size_t len;
    TiffImage back;
    CHECK(tiff_encode(&wi, &buf, &len) == 0 && tiff_decode(buf, len, &back) == 0 && back.bands == 3 &&
              back.photometric == 2 && !back.has_geotransform && back.geo.n_key_directory == 0,
          "RGB round trip: %s", sd_last_error());
    size_t n = (size_t)W * H * 3, diff = 0;
    for (size_t i = 0; i < n; i++) {  // interleaved in the file, band-major when decoded
        size_t pix = i / 3, band = i % 3;
        diff += ((uint8_t *)back.data)[band * (size_t)W * H + pix] != ((const uint8_t *)src.data)[i];
    }
    CHECK(diff == 0, "RGB samples (%zu differ)", diff);
    tiff_free(&back);
    free(buf);
    wi.channels = 1, wi.palette_rgb = pal, wi.palette_size = 0;
    CHECK(tiff_encode(&wi, &buf, &len) != 0, "an empty palette is refused");
    free(map);
    tiff_free(&src);
}

int main(void) {
    test_positions();
    test_run();
    test_rows();
    test_geo_and_writer();
    return test_report("test_tiling");
}
