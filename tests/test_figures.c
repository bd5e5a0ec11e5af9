// Figures (src/figures): pixels of figures drawn from known numbers against independent
// expectations (colours written here as the published hex values, glyphs as ASCII art), every PNG
// decoded back with src/io/png.c, the PCA's power iteration against a Jacobi eigen-decomposition,
// and the errors of bad input (missing run files, an image id not in the cache, mismatched sizes).
#include "tests/test_util.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "figures/canvas.h"
#include "figures/colormap.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/pca.h"
#include "figures/plots.h"
#include "heads/head.h"
#include "io/json.h"
#include "io/feature_cache.h"
#include "io/npy.h"
#include "io/png.h"

static char g_dir[256];

static int same_rgb(Rgb a, int r, int g, int b) { return a.r == r && a.g == g && a.b == b; }

// Decodes a PNG with the project's decoder into RGB; 0 on success.
static int decode_rgb(const char *path, uint8_t **rgb, int *w, int *h) {
    PngImage img;
    if (png_read(path, &img)) return -1;
    int ok = img.color_type == 2 && img.bit_depth == 8 && img.channels == 3;
    *w = img.width;
    *h = img.height;
    *rgb = ok ? (uint8_t *)malloc((size_t)img.width * img.height * 3) : NULL;
    if (*rgb) memcpy(*rgb, img.pixels, (size_t)img.width * img.height * 3);
    png_free(&img);
    return *rgb ? 0 : -1;
}

static void test_canvas(void) {
    Canvas c;
    CHECK(canvas_init(&c, 20, 10, RGB_BLACK) == 0, "init");
    canvas_free(&c);
    CHECK(canvas_init(&c, 0, 10, RGB_BLACK) == -1 && strstr(sd_last_error(), "figure size"), "bad size refused");
    canvas_init(&c, 20, 10, RGB_BLACK);
    // alpha: 0.5 * 255 + 0.5 * 0 = 127.5 -> 128 (round to nearest); 0.25 * 200 + 0.75 * 40 = 80
    canvas_blend(&c, 1, 1, RGB_WHITE, 0.5f);
    CHECK(same_rgb(canvas_get(&c, 1, 1), 128, 128, 128), "blend 50%% white over black");
    canvas_fill_rect(&c, 2, 2, 1, 1, (Rgb){40, 40, 40}, 1.0f);
    canvas_blend(&c, 2, 2, (Rgb){200, 0, 40}, 0.25f);
    CHECK(same_rgb(canvas_get(&c, 2, 2), 80, 30, 40), "blend 25%%");
    canvas_blend(&c, -1, 50, RGB_WHITE, 1.0f);  // clipped, no crash
    // a horizontal line covers exactly its pixels; a 45-degree diagonal its diagonal
    canvas_fill_rect(&c, 0, 0, 20, 10, RGB_BLACK, 1.0f);
    canvas_line(&c, 3, 5, 12, 5, RGB_WHITE, 1, 1.0f);
    int n = 0, bad = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) {
            int on = canvas_get(&c, x, y).r == 255;
            n += on;
            bad += on != (y == 5 && x >= 3 && x <= 12);
        }
    CHECK(n == 10 && bad == 0, "horizontal line: %d pixels, %d misplaced", n, bad);
    canvas_fill_rect(&c, 0, 0, 20, 10, RGB_BLACK, 1.0f);
    canvas_line(&c, 9, 9, 0, 0, RGB_WHITE, 1, 1.0f);
    n = bad = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) {
            int on = canvas_get(&c, x, y).r == 255;
            n += on;
            bad += on != (x == y);
        }
    CHECK(n == 10 && bad == 0, "diagonal line: %d pixels, %d misplaced", n, bad);
    canvas_free(&c);
    // a filled right triangle (0,0) (40,0) (0,40): the pixels whose centre (i+0.5, j+0.5) is inside, the
    // hypotenuse x + y = 40 excluded (i + j + 1 < 40, i.e. i + j <= 38): sum_{j=0}^{38} (39 - j) = 780
    canvas_init(&c, 50, 50, RGB_BLACK);
    float xs[3] = {0, 40, 0}, ys[3] = {0, 0, 40};
    canvas_fill_polygon(&c, xs, ys, 3, RGB_WHITE, 1.0f);
    n = 0;
    for (int y = 0; y < 50; y++)
        for (int x = 0; x < 50; x++) n += canvas_get(&c, x, y).r == 255;
    CHECK(n == 780, "triangle area: %d pixels, expected 780", n);
    canvas_free(&c);
}

// Glyphs as ASCII art (the 5 x 7 HD44780 shapes), independent of the byte table.
static const char *k_art_A[7] = {".XXX.", "X...X", "X...X", "X...X", "XXXXX", "X...X", "X...X"};
static const char *k_art_L[7] = {"X....", "X....", "X....", "X....", "X....", "X....", "XXXXX"};
static const char *k_art_7[7] = {"XXXXX", "....X", "...X.", "..X..", ".X...", ".X...", ".X..."};
static const char *k_art_0[7] = {".XXX.", "X...X", "X..XX", "X.X.X", "XX..X", "X...X", ".XXX."};

static void test_font(void) {
    const char *chars = "AL70";
    const char **art[4] = {k_art_A, k_art_L, k_art_7, k_art_0};
    for (int k = 0; k < 4; k++) {
        int bad = 0;
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 5; x++) bad += font_pixel(chars[k], x, y) != (art[k][y][x] == 'X');
        CHECK(bad == 0, "glyph '%c': %d pixels differ from its shape", chars[k], bad);
    }
    // draw_text renders the bitmap, at scale 2 each pixel a 2x2 block, the next glyph 12 pixels on
    Canvas c;
    canvas_init(&c, 40, 20, RGB_WHITE);
    draw_text(&c, 3, 2, "AL", RGB_BLACK, 2);
    int bad = 0;
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 40; x++) {
            int gx = x - 3, gy = y - 2, expect = 0;
            if (gy >= 0 && gy < 14 && gx >= 0 && gx < 10) expect = k_art_A[gy / 2][gx / 2] == 'X';
            if (gy >= 0 && gy < 14 && gx >= 12 && gx < 22) expect = k_art_L[gy / 2][(gx - 12) / 2] == 'X';
            bad += (canvas_get(&c, x, y).r == 0) != expect;
        }
    CHECK(bad == 0, "draw_text 'AL' at scale 2: %d pixels wrong", bad);
    CHECK(text_width("AL", 2) == 22 && text_width("", 1) == 0, "text width");
    // rotated: glyph column x goes up from the baseline, row y goes right
    canvas_fill_rect(&c, 0, 0, 40, 20, RGB_WHITE, 1.0f);
    draw_text_up(&c, 5, 15, "L", RGB_BLACK, 1);
    bad = 0;
    for (int gy = 0; gy < 7; gy++)
        for (int gx = 0; gx < 5; gx++) bad += (canvas_get(&c, 5 + gy, 15 - 1 - gx).r == 0) != (k_art_L[gy][gx] == 'X');
    CHECK(bad == 0, "rotated 'L': %d pixels wrong", bad);
    // every printable glyph has a pixel except the space; bytes outside draw '?'
    int empty = 0;
    for (int ch = 33; ch < 127; ch++) {
        int on = 0;
        for (int x = 0; x < 5; x++) on |= font_glyph(ch)[x];
        empty += !on;
    }
    CHECK(empty == 0 && font_glyph(200) == font_glyph('?'), "glyph table: %d empty glyphs", empty);
    canvas_free(&c);
}

static void test_colormaps(void) {
    // viridis: matplotlib's published end and quarter colours #440154 #3b528b #21918c #5ec962 #fde725
    CHECK(same_rgb(colormap_viridis(0.0), 0x44, 0x01, 0x54), "viridis(0)");
    CHECK(same_rgb(colormap_viridis(64 / 255.0), 0x3b, 0x52, 0x8b), "viridis(64/255)");
    CHECK(same_rgb(colormap_viridis(0.5), 0x21, 0x91, 0x8c), "viridis(0.5)");
    CHECK(same_rgb(colormap_viridis(192 / 255.0), 0x5e, 0xc9, 0x62), "viridis(192/255)");
    CHECK(same_rgb(colormap_viridis(1.0), 0xfd, 0xe7, 0x25) && same_rgb(colormap_viridis(7.0), 0xfd, 0xe7, 0x25), "viridis(1), clamped");
    CHECK(same_rgb(colormap_viridis(NAN), 128, 128, 128), "viridis(NaN) gray");
    // viridis is perceptually ordered: its luma rises monotonically
    int mono = 1;
    double prev = -1;
    for (int i = 0; i < 256; i++) {
        Rgb k = colormap_viridis(i / 255.0);
        double y = 0.2126 * k.r + 0.7152 * k.g + 0.0722 * k.b;
        mono &= y >= prev - 0.5;
        prev = y;
    }
    CHECK(mono, "viridis luma monotone");
    // RdBu: #053061 at -1, #f7f7f7 at 0, #67001f at +1
    CHECK(same_rgb(colormap_diverging(-1), 0x05, 0x30, 0x61) && same_rgb(colormap_diverging(0), 0xf7, 0xf7, 0xf7) &&
              same_rgb(colormap_diverging(1), 0x67, 0x00, 0x1f),
          "diverging ends and centre");
    // classes: predict's palette (tab10 with orange and green swapped)
    CHECK(same_rgb(colormap_class(0), 31, 119, 180) && same_rgb(colormap_class(1), 44, 160, 44) &&
              same_rgb(colormap_class(2), 255, 127, 14) && same_rgb(colormap_class(3), 214, 39, 40),
          "class colours");
}

static void test_plots(void) {
    // heatmap: each cell's colour is viridis of its normalised value (checked away from its number)
    double v[6] = {0.0, 0.5, 1.0, 0.25, NAN, 0.75};
    const char *rows[2] = {"a", "b"}, *cols[3] = {"x", "y", "z"};
    Heatmap hm = {v, 2, 3, 0.0, 1.0, 0, rows, cols, "%.2f", 1.0, 40, 20, "title", "rows", "cols"};
    int w, h, cx, cy;
    heatmap_layout(&hm, &w, &h, &cx, &cy);
    Canvas c;
    canvas_init(&c, w + 10, h + 10, RGB_WHITE);
    heatmap_draw(&c, 5, 5, &hm);
    const int expect[6][3] = {{0x44, 0x01, 0x54}, {0x21, 0x91, 0x8c}, {0xfd, 0xe7, 0x25}, {0x3b, 0x52, 0x8b}, {128, 128, 128}, {0x5e, 0xc9, 0x62}};
    for (int i = 0; i < 6; i++) {
        int px = 5 + cx + (i % 3) * 40 + 2, py = 5 + cy + (i / 3) * 20 + 2;  // a corner of the cell, not the text
        Rgb k = canvas_get(&c, px, py);
        // 0.25 and 0.75 fall on entries 64 and 191 (round(63.75), round(191.25)): 191 is #5cc863 in the table
        if (i == 5) CHECK(same_rgb(k, 0x5c, 0xc8, 0x63), "cell 0.75: (%d,%d,%d)", k.r, k.g, k.b);
        else CHECK(same_rgb(k, expect[i][0], expect[i][1], expect[i][2]), "cell %d: (%d,%d,%d)", i, k.r, k.g, k.b);
    }
    // the number in a dark cell is white text: some white pixel inside cell 0, none of another colour but
    // the cell's own and white
    int white = 0, other = 0;
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 40; x++) {
            Rgb k = canvas_get(&c, 5 + cx + x, 5 + cy + y);
            if (same_rgb(k, 255, 255, 255)) white++;
            else if (!same_rgb(k, 0x44, 0x01, 0x54)) other++;
        }
    CHECK(white > 20 && other == 0, "cell text: %d white, %d other pixels", white, other);
    canvas_free(&c);
    // legend: each swatch has its class colour
    const char *names[3] = {"forest", "grass", "water"};
    Rgb cl[3] = {colormap_class(0), colormap_class(1), colormap_class(2)};
    canvas_init(&c, 120, 60, RGB_WHITE);
    int lh = legend_draw(&c, 4, 4, names, cl, 3, 10);
    CHECK(lh == legend_height(3, 10), "legend height");
    for (int i = 0; i < 3; i++) {
        Rgb k = canvas_get(&c, 4 + 5, 4 + i * 14 + 5);
        CHECK(same_rgb(k, cl[i].r, cl[i].g, cl[i].b), "legend swatch %d", i);
    }
    canvas_free(&c);
    // nice ticks
    double t[16];
    int n = nice_ticks(0.0, 1.0, 5, t, 16);
    CHECK(n == 6 && fabs(t[1] - 0.2) < 1e-12 && t[5] == 1.0, "ticks 0..1: %d", n);
    n = nice_ticks(3.0, 97.0, 5, t, 16);
    CHECK(n == 4 && t[0] == 20 && t[3] == 80, "ticks 3..97 (step 20): %d, %g..%g", n, t[0], t[n - 1]);
}

// Jacobi eigenvalue algorithm (cyclic sweeps of plane rotations): the direct reference.
static void jacobi_eigen(double *a, int n, double *val, double *vec) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) vec[i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (fabs(a[p * n + q]) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                double tt = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(tt * tt + 1), sn = tt * cs;
                for (int k = 0; k < n; k++) {  // A = J^T A J
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = cs * akp - sn * akq;
                    a[k * n + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = cs * apk - sn * aqk;
                    a[q * n + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = vec[k * n + p], vkq = vec[k * n + q];
                    vec[k * n + p] = cs * vkp - sn * vkq;
                    vec[k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) val[i] = a[i * n + i];
}

static void test_pca(void) {
    // 6 channels x 200 pixels: x = A z with z of variances 9, 4, 1, 0.25, ... (distinct eigenvalues)
    enum { D = 6, HW = 200 };
    float x[D * HW];
    unsigned long long st = 12345;
    double mix[D][D];
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) mix[i][j] = test_rand(&st);
    for (int p = 0; p < HW; p++) {
        double z[D];
        for (int j = 0; j < D; j++) z[j] = test_rand(&st) * 3.0 / (1 << j);
        for (int i = 0; i < D; i++) {
            double s = 0.5 * i;  // a mean
            for (int j = 0; j < D; j++) s += mix[i][j] * z[j];
            x[i * HW + p] = (float)s;
        }
    }
    PcaAccum acc;
    CHECK(pca_accum_init(&acc, D) == 0, "accum init");
    pca_accum_add(&acc, x, HW);
    // the covariance itself, against the two-pass textbook formula
    double mean[D], cov[D * D], ref[D * D], m2[D] = {0};
    pca_covariance(&acc, mean, cov);
    for (int i = 0; i < D; i++) {
        for (int p = 0; p < HW; p++) m2[i] += x[i * HW + p];
        m2[i] /= HW;
    }
    double cerr = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int p = 0; p < HW; p++) s += (x[i * HW + p] - m2[i]) * (x[j * HW + p] - m2[j]);
            ref[i * D + j] = s / HW;
            cerr = fmax(cerr, fabs(ref[i * D + j] - cov[i * D + j]));
        }
    CHECK(cerr < 1e-9, "covariance vs two-pass: %.3g", cerr);
    PcaBasis b;
    CHECK(pca_fit(&acc, &b) == 0 && b.k == 3, "fit");
    double val[D], vec[D * D];
    jacobi_eigen(ref, D, val, vec);
    int order[D];
    for (int i = 0; i < D; i++) order[i] = i;
    for (int i = 1; i < D; i++)
        for (int j = i; j > 0 && val[order[j - 1]] < val[order[j]]; j--) { int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t; }
    for (int k = 0; k < 3; k++) {
        double lam = val[order[k]], dot = 0;
        for (int i = 0; i < D; i++) dot += b.vec[k * D + i] * vec[i * D + order[k]];
        CHECK(fabs(b.eigval[k] - lam) < 1e-7 * (1 + lam), "eigenvalue %d: %.10g vs Jacobi %.10g", k, b.eigval[k], lam);
        CHECK(fabs(fabs(dot) - 1) < 1e-6, "eigenvector %d: |cos| = %.10f", k, fabs(dot));
        int big = 0;
        for (int i = 1; i < D; i++) big = fabs(b.vec[k * D + i]) > fabs(b.vec[k * D + big]) ? i : big;
        CHECK(b.vec[k * D + big] > 0, "sign convention of component %d", k);
    }
    // pca_to_rgb follows c = clamp(0.5 + y / (4 sqrt(lambda))) for a pixel, y = v . (x - mean)
    uint8_t rgb[HW * 3];
    pca_to_rgb(&b, x, HW, rgb);
    int bad = 0;
    for (int p = 0; p < HW; p += 17)
        for (int k = 0; k < 3; k++) {
            double y = 0;
            for (int i = 0; i < D; i++) y += b.vec[k * D + i] * (x[i * HW + p] - mean[i]);
            double t = 0.5 + y / (4 * sqrt(b.eigval[k]));
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            bad += abs((int)rgb[3 * p + k] - (int)(t * 255 + 0.5)) > 1;
        }
    CHECK(bad == 0, "pca_to_rgb: %d channels off", bad);
    // a shared basis over two images = the basis of their pixels together
    PcaAccum a2;
    pca_accum_init(&a2, D);
    pca_accum_add(&a2, x, HW);  // "two images": the same pixels twice gives the same covariance
    pca_accum_add(&a2, x, HW);
    PcaBasis b2;
    pca_fit(&a2, &b2);
    double d = 0;
    for (int i = 0; i < 3 * D; i++) d = fmax(d, fabs(b2.vec[i] - b.vec[i]));
    CHECK(d < 1e-6, "two copies, same basis: %.3g", d);
    // the thread count does not change the covariance
    set_threads(1);
    PcaAccum a1;
    pca_accum_init(&a1, D);
    pca_accum_add(&a1, x, HW);
    set_threads(2);
    CHECK(memcmp(a1.cross, acc.cross, sizeof(double) * D * D) == 0, "covariance bits at 1 and 2 threads");
    pca_accum_free(&a1);
    pca_basis_free(&b2);
    pca_accum_free(&a2);
    pca_basis_free(&b);
    pca_accum_free(&acc);
    // fewer channels than 3, constant maps: no NaN, gray
    float flat[2 * 4] = {1, 1, 1, 1, 2, 2, 2, 2};
    pca_accum_init(&acc, 2);
    pca_accum_add(&acc, flat, 4);
    CHECK(pca_fit(&acc, &b) == 0 && b.k == 2, "2 channels: 2 components");
    pca_to_rgb(&b, flat, 4, rgb);
    CHECK(rgb[0] == 128 && rgb[1] == 128 && rgb[2] == 128, "a constant map is gray");
    pca_basis_free(&b);
    pca_accum_free(&acc);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_run_figures(void) {
    char run[512], path[700], out[700];
    snprintf(run, sizeof(run), "%s/run", g_dir);
    snprintf(out, sizeof(out), "%s/fig.png", g_dir);
    CHECK(fig_curves(run, out) == -1 && strstr(sd_last_error(), "not a run folder"), "no run folder: %s", sd_last_error());
    mkdir(run, 0755);
    CHECK(fig_curves(run, out) == -1 && strstr(sd_last_error(), "log.jsonl"), "no log: %s", sd_last_error());
    CHECK(fig_mixing(run, out) == -1 && strstr(sd_last_error(), "head_config.json"), "no head config: %s", sd_last_error());
    CHECK(fig_confusion(run, "test", out) == -1 && strstr(sd_last_error(), "confusion_test.json"), "no confusion: %s", sd_last_error());
    snprintf(path, sizeof(path), "%s/log.jsonl", run);
    write_text(path, "{\"event\": \"eval\", \"split\": \"val\", \"epoch\": 0, \"global_step\": 0, \"metric\": 0.1, \"loss\": 2}\n"
                     "{\"event\": \"step\", \"epoch\": 0, \"global_step\": 1, \"loss\": 1.5, \"lr\": 0.001}\n"
                     "{\"event\": \"step\", \"epoch\": 0, \"global_step\": 2, \"loss\": 1.2, \"lr\": 0.01}\n"
                     "{\"event\": \"eval\", \"split\": \"val\", \"epoch\": 1, \"global_step\": 2, \"metric\": 0.4, \"loss\": 1.1, \"best\": true}\n");
    CHECK(fig_curves(run, out) == 0, "curves: %s", sd_last_error());
    uint8_t *rgb = NULL;
    int w, h;
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0 && w > 300 && h > 100, "curves PNG decodes (%dx%d)", w, h);
    free(rgb);
    write_text(path, "{\"event\": \"step\", \"global_step\": 1, \"loss\": 1.5, \"lr\": 0.001}\n{\"event\": \"step\", \"loss\": [}\n");
    CHECK(fig_curves(run, out) == -1 && strstr(sd_last_error(), "line 2"), "bad log line named: %s", sd_last_error());
    // confusion: cells coloured by row-normalised value; the file's counts come back in the title numbers
    snprintf(path, sizeof(path), "%s/confusion_val.json", run);
    write_text(path, "{\"classes\": [\"a\", \"b\"], \"unit\": \"images\", \"counts\": [[3, 1], [0, 4]]}\n");
    CHECK(fig_confusion(run, "val", out) == 0, "confusion: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "confusion PNG decodes");
    // colours present: viridis(1.0) (row b: 4/4) and viridis(0) (row b: 0/4) and viridis(0.75) = entry 191
    int n1 = 0, n0 = 0, n75 = 0;
    for (int p = 0; rgb && p < w * h; p++) {
        const uint8_t *q = rgb + 3 * p;
        n1 += q[0] == 0xfd && q[1] == 0xe7 && q[2] == 0x25;
        n0 += q[0] == 0x44 && q[1] == 0x01 && q[2] == 0x54;
        n75 += q[0] == 0x5c && q[1] == 0xc8 && q[2] == 0x63;
    }
    CHECK(n1 > 500 && n0 > 500 && n75 > 500, "confusion colours: %d %d %d pixels", n1, n0, n75);
    free(rgb);
    write_text(path, "{\"classes\": [\"a\", \"b\"], \"counts\": [[3, 1]]}\n");
    CHECK(fig_confusion(run, "val", out) == -1 && strstr(sd_last_error(), "one row per class"), "bad counts: %s", sd_last_error());
    // mixing: a head config whose fuser is not gw is refused by name
    snprintf(path, sizeof(path), "%s/head_config.json", run);
    write_text(path, "{\"task\": \"classification\", \"fuser\": \"lw\", \"feature_dims\": {\"4\": [8]}, \"save_timesteps\": [47], "
                     "\"num_classes\": 2, \"projection_dim\": 384}");
    CHECK(fig_mixing(run, out) == -1 && strstr(sd_last_error(), "'lw'"), "mixing of lw refused: %s", sd_last_error());
    write_text(path, "{\"task\": \"classification\", \"fuser\": \"gw\", \"feature_dims\": {\"4\": [8]}, \"save_timesteps\": [47], "
                     "\"num_classes\": 2, \"projection_dim\": 384}");
    CHECK(fig_mixing(run, out) == -1 && strstr(sd_last_error(), "best.safetensors"), "mixing without weights: %s", sd_last_error());
}

// The hooks train and eval call: RUN/confusion_<split>.json with rows = label for both tasks (the
// segmentation matrix arrives with rows = prediction, as the original's), its PNG, the curves.
static void test_hooks(void) {
    char run[600], path[700];
    snprintf(run, sizeof(run), "%s/run_hooks", g_dir);
    mkdir(run, 0755);
    LabelSet ls;
    memset(&ls, 0, sizeof(ls));
    char n0[] = "water", n1[] = "land";
    char *names[2] = {n0, n1};
    ls.class_names = names;
    ls.num_names = 2;
    ls.num_classes = 2;
    EvalResult ev;
    memset(&ev, 0, sizeof(ev));
    float seg[4] = {5, 2, 7, 11};  // [pred][label]: pred 0 / label 1 = 2, pred 1 / label 0 = 7
    ev.task = LABELS_SEGMENTATION;
    ev.num_classes = 2;
    ev.seg_confusion = seg;
    figures_after_eval(run, "val", &ev, &ls);
    snprintf(path, sizeof(path), "%s/confusion_val.json", run);
    JsonValue j;
    CHECK(json_parse_file(path, &j) == 0, "confusion JSON written: %s", sd_last_error());
    const JsonValue *counts = json_get(&j, "counts"), *classes = json_get(&j, "classes");
    CHECK(counts && counts->count == 2 && counts->items[0].items[1].number == 7 && counts->items[1].items[0].number == 2 &&
              counts->items[0].items[0].number == 5 && counts->items[1].items[1].number == 11,
          "segmentation counts transposed to rows = label");
    CHECK(classes && classes->count == 2 && !strcmp(classes->items[1].string, "land"), "class names");
    json_free(&j);
    snprintf(path, sizeof(path), "%s/confusion_val.png", run);
    uint8_t *rgb = NULL;
    int w, h;
    CHECK(decode_rgb(path, &rgb, &w, &h) == 0, "confusion PNG written and decodes");
    free(rgb);
    int64_t cls[4] = {3, 1, 0, 4};  // [label][pred]
    memset(&ev, 0, sizeof(ev));
    ev.task = LABELS_CLASSIFICATION;
    ev.num_classes = 2;
    ev.confusion = cls;
    figures_after_eval(run, "test", &ev, &ls);
    snprintf(path, sizeof(path), "%s/confusion_test.json", run);
    CHECK(json_parse_file(path, &j) == 0, "classification confusion JSON");
    counts = json_get(&j, "counts");
    CHECK(counts && counts->items[0].items[1].number == 1 && counts->items[1].items[0].number == 0, "classification rows = label");
    json_free(&j);
    // curves: a run without log.jsonl gets a warning, not a failure or a file
    figures_after_train(run);
    snprintf(path, sizeof(path), "%s/training_curves.png", run);
    struct stat sb;
    CHECK(stat(path, &sb) != 0, "no curves without a log");
}

static void test_features_figure(void) {
    char dir[512], path[700], out[700];
    snprintf(dir, sizeof(dir), "%s/feats", g_dir);
    mkdir(dir, 0755);
    snprintf(out, sizeof(out), "%s/pca.png", g_dir);
    // 2 steps x 2 scales, 2 streams at scale 0 (3 + 2 channels, 4x4), 1 at scale 1 (2 channels, 2x2)
    FeatureMeta meta;
    feature_meta_init(&meta);
    feature_meta_set(&meta, "save_timesteps", "[47, 45]");
    feature_meta_set(&meta, "save_t", "[21, 41]");
    feature_meta_set(&meta, "feature_dims", "{\"4\": [3, 2], \"2\": [2]}");
    feature_meta_set(&meta, "scales", "[[4, 4], [2, 2]]");
    feature_meta_set(&meta, "layers", "[\"up_blocks.3.attentions.0.transformer_blocks.0.attn1\", \"up_blocks.3.resnets.0.conv2\", "
                                      "\"up_blocks.2.resnets.0.conv2\"]");
    const char *ids[2] = {"img_a", "img_b"};
    for (int n = 0; n < 2; n++) {
        Tensor feats[4];
        int s0[4] = {1, 5, 4, 4}, s1[4] = {1, 2, 2, 2};
        for (int i = 0; i < 4; i++) {
            tensor_alloc(&feats[i], 4, i % 2 ? s1 : s0, "feat");
            test_fill(feats[i].data, tensor_numel(&feats[i]), 7 + i + 10 * n);
        }
        snprintf(path, sizeof(path), "%s/%s.safetensors", dir, ids[n]);
        CHECK(feature_cache_write(path, feats, 2, 2, NULL, 0, &meta) == 0, "write features: %s", sd_last_error());
        for (int i = 0; i < 4; i++) tensor_free(&feats[i]);
    }
    feature_meta_free(&meta);
    FeatureFigure ff = {dir, ids, 2, -1, 32, NULL, NULL, NULL, NULL};
    CHECK(fig_features(&ff, out) == 0, "features figure: %s", sd_last_error());
    uint8_t *rgb = NULL;
    int w, h;
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0 && w >= 520, "features PNG decodes (%dx%d)", w, h);
    free(rgb);
    const char *missing[1] = {"img_zz"};
    FeatureFigure bad = {dir, missing, 1, -1, 32, NULL, NULL, NULL, NULL};
    CHECK(fig_features(&bad, out) == -1 && strstr(sd_last_error(), "'img_zz' is not in the feature cache"), "unknown id: %s", sd_last_error());
    FeatureFigure bad_scale = {dir, ids, 1, 5, 32, NULL, NULL, NULL, NULL};
    CHECK(fig_features(&bad_scale, out) == -1 && strstr(sd_last_error(), "--scale 5"), "bad scale: %s", sd_last_error());
    FeatureFigure no_dir = {"/nonexistent/feats", ids, 1, -1, 32, NULL, NULL, NULL, NULL};
    CHECK(fig_features(&no_dir, out) == -1 && strstr(sd_last_error(), "no such folder"), "no folder: %s", sd_last_error());
}

// A run folder with a head at its constructor values (mixing weights 1, gate convs 0): the softmax
// weights, gates and gate probabilities are then uniform, which the figures must show.
static int make_run_extra(const char *run, const char *fuser, const char *extra) {
    char cfg[700], path[700];
    snprintf(cfg, sizeof(cfg), "{\"task\": \"classification\", \"fuser\": \"%s\", \"feature_dims\": {\"4\": [3, 2], \"2\": [2]}, "
             "\"save_timesteps\": [47, 45], \"num_classes\": 2, \"projection_dim\": 8, \"fuser_projection_dim\": 8, "
             "\"num_norm_groups\": 1, \"num_experts\": 4, \"top_k\": 2%s}", fuser, extra);
    mkdir(run, 0755);
    snprintf(path, sizeof(path), "%s/head_config.json", run);
    write_text(path, cfg);
    JsonValue j;
    HeadConfig hc;
    HeadModel m;
    memset(&m, 0, sizeof(m));
    int rc = json_parse(cfg, strlen(cfg), "cfg", &j);
    if (!rc) rc = head_config_from_json(&hc, &j);
    if (!rc) rc = head_model_init(&m, &hc);
    snprintf(path, sizeof(path), "%s/best.safetensors", run);
    if (!rc) rc = head_model_save(&m, path);
    head_model_free(&m);
    json_free(&j);
    return rc;
}

static int make_run(const char *run, const char *fuser) { return make_run_extra(run, fuser, ""); }

static void test_fusion_figures(void) {
    char run[600], feats[600], out[700];
    snprintf(feats, sizeof(feats), "%s/feats", g_dir);
    snprintf(out, sizeof(out), "%s/fusion.png", g_dir);
    uint8_t *rgb = NULL;
    int w, h;
    // gw: all 3 streams x 2 timesteps get 1/6; lo == hi maps to the middle of viridis, #21918c
    snprintf(run, sizeof(run), "%s/run_gw", g_dir);
    CHECK(make_run(run, "gw") == 0, "gw run: %s", sd_last_error());
    CHECK(fig_mixing(run, out) == 0, "mixing: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "mixing PNG decodes");
    int mid = 0;
    for (int p = 0; rgb && p < w * h; p++) {
        const uint8_t *q = rgb + 3 * p;
        mid += q[0] == 0x21 && q[1] == 0x91 && q[2] == 0x8c;
    }
    // 6 cells of 40 x 22 minus their "16.67" text, plus the colour bar's middle rows
    CHECK(mid > 6 * 40 * 22 / 2, "uniform weights drawn in viridis(0.5): %d pixels", mid);
    free(rgb);
    CHECK(fig_gates(run, feats, "img_a", NULL, NULL, out, NULL, NULL) == -1 && strstr(sd_last_error(), "'gw'"), "gates of gw: %s", sd_last_error());
    // lw: zero gate convs give 1/K at every pixel
    snprintf(run, sizeof(run), "%s/run_lw", g_dir);
    CHECK(make_run(run, "lw") == 0, "lw run: %s", sd_last_error());
    CHECK(fig_gates(run, feats, "img_a", NULL, NULL, out, NULL, NULL) == 0, "gates: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "gates PNG decodes");
    free(rgb);
    CHECK(fig_gates(run, feats, "nope", NULL, NULL, out, NULL, NULL) == -1 && strstr(sd_last_error(), "'nope' is not in the feature cache"),
          "gates, unknown id: %s", sd_last_error());
    // moe: zero gate conv, uniform 1/E = 25%
    snprintf(run, sizeof(run), "%s/run_moe", g_dir);
    CHECK(make_run(run, "moe") == 0, "moe run: %s", sd_last_error());
    CHECK(fig_moe(run, feats, "img_b", NULL, "test", out) == 0, "moe: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "moe PNG decodes");
    free(rgb);
    CHECK(fig_moe(run, feats, NULL, NULL, "test", out) == -1 && strstr(sd_last_error(), "--id"), "moe without id or labels: %s", sd_last_error());
    // the three fusions side by side, one PCA basis
    char r_gw[600], r_lw[600];
    snprintf(r_gw, sizeof(r_gw), "%s/run_gw", g_dir);
    snprintf(r_lw, sizeof(r_lw), "%s/run_lw", g_dir);
    const char *runs[3] = {r_gw, r_lw, run}, *ids[2] = {"img_a", "img_b"};
    CHECK(fig_fused(runs, 3, feats, ids, 2, 0, out) == 0, "fused: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "fused PNG decodes");
    free(rgb);
    CHECK(fig_fused(runs, 3, feats, ids, 2, 4, out) == -1 && strstr(sd_last_error(), "--scale 4"), "fused, bad scale: %s", sd_last_error());
    // every expert's output: a dense call, so all 4 experts x 2 timesteps are drawn, uniform gates 25%
    CHECK(fig_experts(run, feats, "img_a", 0, out) == 0, "experts: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "experts PNG decodes");
    free(rgb);
    CHECK(fig_experts(r_gw, feats, "img_a", 0, out) == -1 && strstr(sd_last_error(), "'gw'"), "experts of gw: %s", sd_last_error());
    // single-stream runs: one curve per stream over the timesteps; their metrics.json are read
    char s1[600], s2[600], path[700];
    snprintf(s1, sizeof(s1), "%s/single_47", g_dir);
    snprintf(s2, sizeof(s2), "%s/single_45", g_dir);
    CHECK(make_run_extra(s1, "single", ", \"single_stream\": 1, \"single_timestep\": 47") == 0, "single run: %s", sd_last_error());
    CHECK(make_run_extra(s2, "single", ", \"single_stream\": 1, \"single_timestep\": 45") == 0, "single run 2");
    const char *sruns[2] = {s1, s2};
    CHECK(fig_single(sruns, 2, out) == -1 && strstr(sd_last_error(), "metrics.json"), "single without metrics: %s", sd_last_error());
    snprintf(path, sizeof(path), "%s/metrics.json", s1);
    write_text(path, "{\"accuracy\": 60}");
    snprintf(path, sizeof(path), "%s/metrics_test.json", s2);
    write_text(path, "{\"accuracy\": 75}");
    CHECK(fig_single(sruns, 2, out) == 0, "single: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "single PNG decodes");
    free(rgb);
    const char *mixed[2] = {s1, r_gw};
    CHECK(fig_single(mixed, 2, out) == -1 && strstr(sd_last_error(), "'gw'"), "single with a gw run: %s", sd_last_error());
}

// One softmax row against the full attention matrix, and figure 5 on the tiny pipeline: the query
// row's attn1 output recomputed from the figure's probabilities matches the model's own forward.
static void test_attention(void) {
    enum { N = 12, HEADS = 3, HD = 4, DIM = HEADS * HD };
    float Q[N * DIM], K[N * DIM], p[HEADS * N];
    test_fill(Q, N * DIM, 5);
    test_fill(K, N * DIM, 6);
    float scale = 0.5f;
    double worst = 0, rowsum_err = 0;
    for (int i = 0; i < N; i++) {
        CHECK(attention_row(Q + i * DIM, K, N, HEADS, HD, scale, p) == 0, "attention_row");
        for (int h = 0; h < HEADS; h++) {
            // the full matrix S = scale * Q_h K_h^T, a row-wise softmax, row i
            double S[N][N], sum = 0;
            for (int a = 0; a < N; a++)
                for (int b = 0; b < N; b++) {
                    double d = 0;
                    for (int k = 0; k < HD; k++) d += (double)Q[a * DIM + h * HD + k] * K[b * DIM + h * HD + k];
                    S[a][b] = scale * d;
                }
            for (int b = 0; b < N; b++) sum += exp(S[i][b]);
            double rs = 0;
            for (int b = 0; b < N; b++) {
                worst = fmax(worst, fabs(p[h * N + b] - exp(S[i][b]) / sum));
                rs += p[h * N + b];
            }
            rowsum_err = fmax(rowsum_err, fabs(rs - 1));
        }
    }
    CHECK(worst < 1e-6 && rowsum_err < 1e-5, "one row vs the full softmax: %.3g (row sums %.3g)", worst, rowsum_err);
    struct stat sb;
    if (stat("tests/data/tiny_pipeline/unet", &sb) != 0) {
        printf("SKIP figure 5: tests/data/tiny_pipeline not found (run from the repository root)\n");
        return;
    }
    char out[700];
    snprintf(out, sizeof(out), "%s/attention.png", g_dir);
    const char *layers[2] = {"up_blocks.3.attentions.0", "up_blocks.1.attentions.2"};  // 1 head; 3 heads
    for (int k = 0; k < 2; k++) {
        AttentionFigure af = {"tests/data/tiny_pipeline", NULL, "tests/data/demo/images/s4_r1_c1.npy", "3,2,1", "clip", 64,
                              NULL, layers[k], 45, 20, 8, -1.0};
        CHECK(fig_attention(&af, out) == 0, "attention %s: %s", layers[k], sd_last_error());
        CHECK(af.check >= 0 && af.check < 1e-5, "attention %s: recomputed attn1 output off by %.3g", layers[k], af.check);
        uint8_t *rgb = NULL;
        int w, h;
        CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "attention PNG decodes");
        free(rgb);
    }
    AttentionFigure bad = {"tests/data/tiny_pipeline", NULL, "tests/data/demo/images/s4_r1_c1.npy", NULL, NULL, 64, NULL, NULL, -1, 32, 0, 0};
    CHECK(fig_attention(&bad, out) == -1 && strstr(sd_last_error(), "outside the 32x32 image"), "query outside: %s", sd_last_error());
    bad.qx = 0;
    bad.layer = "up_blocks.0.attentions.0";
    CHECK(fig_attention(&bad, out) == -1 && strstr(sd_last_error(), "not in this UNet's decoder"), "layer without attention: %s", sd_last_error());
    bad.layer = "down_blocks.1";
    CHECK(fig_attention(&bad, out) == -1 && strstr(sd_last_error(), "expected up_blocks.B.attentions.J"), "bad layer name: %s", sd_last_error());
}

static void test_overlay(void) {
    // a 32x32 map of classes 0..2 (class 3 absent) over a gray-ramp image
    enum { S = 32 };
    uint8_t map[S * S];
    int count[4] = {0};
    for (int p = 0; p < S * S; p++) {
        map[p] = (uint8_t)((p % S) < 10 ? 0 : (p / S) < 16 ? 1 : 2);
        count[map[p]]++;
    }
    char pred[700], img[700], out[700];
    snprintf(pred, sizeof(pred), "%s/pred.png", g_dir);
    snprintf(img, sizeof(img), "%s/img.npy", g_dir);
    snprintf(out, sizeof(out), "%s/overlay.png", g_dir);
    uint8_t pal[4 * 3] = {31, 119, 180, 44, 160, 44, 255, 127, 14, 214, 39, 40};
    png_write(pred, map, S, S, 1, pal, 4);
    float pix[3 * S * S];
    for (int i = 0; i < 3 * S * S; i++) pix[i] = (float)((i % S) + (i / S % S)) / 64.0f;
    int64_t shape[3] = {3, S, S};
    npy_write(img, NPY_FLOAT32, 3, shape, pix);
    OverlayFigure o = {pred, img, NULL, NULL, NULL, 4, 0.5f, 0};
    CHECK(fig_overlay(&o, out) == 0, "overlay: %s", sd_last_error());
    uint8_t *rgb = NULL;
    int w, h;
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "overlay PNG decodes");
    // the opaque prediction panel (8x zoom: 64 pixels per map pixel) and one 12x12 legend swatch per class
    // hold each class's colour; nothing else does (the blended panel mixes it with the image)
    for (int c = 0; c < 4; c++) {
        Rgb k = colormap_class(c);
        int n = 0;
        for (int p = 0; rgb && p < w * h; p++) n += rgb[3 * p] == k.r && rgb[3 * p + 1] == k.g && rgb[3 * p + 2] == k.b;
        CHECK(n == 64 * count[c] + 144, "class %d colour: %d pixels, expected %d", c, n, 64 * count[c] + 144);
    }
    free(rgb);
    // a map of another size than the image, an RGB "map": clear errors
    png_write(pred, map, S, S / 2, 1, pal, 4);
    CHECK(fig_overlay(&o, out) == -1 && strstr(sd_last_error(), "32x16"), "size mismatch: %s", sd_last_error());
    uint8_t rgbmap[S * S * 3] = {0};
    png_write(pred, rgbmap, S, S, 3, NULL, 0);
    CHECK(fig_overlay(&o, out) == -1 && strstr(sd_last_error(), "class indices"), "RGB map refused: %s", sd_last_error());
    map[5] = 9;
    png_write(pred, map, S, S, 1, NULL, 0);
    CHECK(fig_overlay(&o, out) == -1 && strstr(sd_last_error(), "class index 9"), "index past the classes: %s", sd_last_error());
    // top-k: bars in class colours, the JSON checked
    char js[700];
    snprintf(js, sizeof(js), "%s/pred.json", g_dir);
    write_text(js, "{\"task\": \"classification\", \"class\": 2, \"scores\": [0.1, 0.2, 0.6, 0.1]}\n");
    CHECK(fig_topk(js, NULL, 2, out) == 0, "topk: %s", sd_last_error());
    CHECK(decode_rgb(out, &rgb, &w, &h) == 0, "topk PNG decodes");
    int n2 = 0, n1 = 0, n0 = 0;
    for (int p = 0; rgb && p < w * h; p++) {
        Rgb k2 = colormap_class(2), k1 = colormap_class(1), k0 = colormap_class(0);
        n2 += rgb[3 * p] == k2.r && rgb[3 * p + 1] == k2.g && rgb[3 * p + 2] == k2.b;
        n1 += rgb[3 * p] == k1.r && rgb[3 * p + 1] == k1.g && rgb[3 * p + 2] == k1.b;
        n0 += rgb[3 * p] == k0.r && rgb[3 * p + 1] == k0.g && rgb[3 * p + 2] == k0.b;
    }
    // bar lengths in proportion to the probabilities (0.6 : 0.2), the third class not drawn
    CHECK(n2 > 0 && n1 > 0 && n0 == 0 && fabs((double)n2 / n1 - 3.0) < 0.1, "topk bars: %d %d %d pixels", n2, n1, n0);
    free(rgb);
    write_text(js, "{\"task\": \"classification\", \"scores\": \"x\"}\n");
    CHECK(fig_topk(js, NULL, 2, out) == -1 && strstr(sd_last_error(), "scores"), "bad JSON: %s", sd_last_error());
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/satdifuser_test_figures_%d", (int)getpid());
    mkdir(g_dir, 0755);
    test_canvas();
    test_font();
    test_colormaps();
    test_plots();
    test_pca();
    test_run_figures();
    test_hooks();
    test_features_figure();
    test_fusion_figures();
    test_overlay();
    test_attention();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: %s not removed\n", g_dir);
    return test_report("test_figures");
}
