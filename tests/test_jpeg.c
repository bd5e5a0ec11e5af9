// JPEG reader tests: every file of tests/data/jpeg (written by
// weights_tools/make_jpeg_test_data.py) against libjpeg-turbo's pixels as decoded by
// Debian's python3-pil, pixel by pixel; corrupt and unsupported files refused
// without a crash; truncation at every offset of a small file; image_load of a JPEG.
#include "tests/test_util.h"

#include "core/error.h"
#include "io/image.h"
#include "io/jpeg.h"
#include "io/npy.h"

#define DIR "tests/data/jpeg"

// The largest |ours - PIL| over all samples, or -1 if the shapes differ.
static int max_diff(const JpegImage *img, const NpyArray *a, size_t *ndiff) {
    int c = a->ndim == 3 ? (int)a->shape[2] : 1;
    if (a->dtype != NPY_UINT8 || a->ndim < 2 || a->shape[0] != img->height || a->shape[1] != img->width ||
        c != img->channels)
        return -1;
    const uint8_t *ref = (const uint8_t *)a->data;
    size_t n = (size_t)img->width * img->height * c;
    int m = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)img->pixels[i] - (int)ref[i]);
        *ndiff += d != 0;
        if (d > m) m = d;
    }
    return m;
}

static void test_files(void) {
    FILE *f = fopen(DIR "/index.txt", "r");
    CHECK(f != NULL, "cannot open %s/index.txt", DIR);
    if (!f) return;
    char line[256];
    int ok = 0, refused = 0, any = 0, worst = 0;
    while (fgets(line, sizeof(line), f)) {
        char name[200], kind[16], path[512];
        if (line[0] == '#' || sscanf(line, "%199s %15s", name, kind) != 2) continue;
        snprintf(path, sizeof(path), "%s/%s", DIR, name);
        JpegImage img;
        sd_clear_error();
        int rc = jpeg_read(path, &img);
        if (!strcmp(kind, "ok")) {
            CHECK(rc == 0, "%s: %s", path, sd_last_error());
            if (rc) continue;
            char npy[512];
            snprintf(npy, sizeof(npy), "%s/%.*s.npy", DIR, (int)strlen(name) - 4, name);
            NpyArray a;
            CHECK(npy_read(npy, &a) == 0, "%s: %s", npy, sd_last_error());
            size_t ndiff = 0;
            int m = max_diff(&img, &a, &ndiff);
            // libjpeg's islow IDCT, upsampling and colour tables are reproduced: bit-exact
            CHECK(m == 0, "%s: max |ours - PIL| = %d over %zu of %zu samples (shape ok: %d)", name, m, ndiff,
                  (size_t)img.width * img.height * img.channels, m >= 0);
            printf("  %-32s %4dx%-4d %d ch  max |ours - PIL| = %d\n", name, img.width, img.height, img.channels, m);
            if (m > worst) worst = m;
            npy_free(&a);
            jpeg_free(&img);
            ok++;
        } else if (!strcmp(kind, "refuse")) {
            CHECK(rc != 0, "%s: a corrupt/unsupported file was decoded", path);
            CHECK(rc == 0 || strstr(sd_last_error(), path) != NULL, "%s: message without the file: %s", path,
                  sd_last_error());
            if (rc) printf("  %-32s refused: %s\n", name, sd_last_error() + strlen(path) + 2);
            if (!rc) jpeg_free(&img);
            refused++;
        } else {
            // bit flips in the entropy data: refused, or an image of the declared size (no crash either way)
            CHECK(rc != 0 || (img.pixels && img.width == 48 && img.height == 40), "%s: decoded to %dx%d", path,
                  img.width, img.height);
            if (!rc) jpeg_free(&img);
            any++;
        }
    }
    fclose(f);
    CHECK(ok >= 20 && refused >= 20 && any >= 10, "index.txt lists %d ok, %d refuse, %d any files", ok, refused, any);
    printf("jpeg files: %d compared (largest difference %d), %d refused, %d bit-flipped without a crash\n", ok, worst,
           refused, any);
}

// Every prefix of a small progressive file and of a baseline one: refused (the ones that end
// past the last scan's data aside), never a crash.
static void test_truncation(void) {
    const char *names[] = {DIR "/progressive_gray.jpg", DIR "/restart_420.jpg"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(names[k], "rb");
        CHECK(f != NULL, "cannot open %s", names[k]);
        if (!f) continue;
        uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        int decoded = 0;
        for (size_t len = 0; len < n; len++) {
            JpegImage img;
            if (jpeg_decode(buf, len, "prefix", &img) == 0) {
                decoded++;
                jpeg_free(&img);
            }
        }
        // only the prefixes lacking just (part of) the EOI marker of the sequential file decode
        CHECK(decoded <= (k == 0 ? 0 : 2), "%s: %d truncated prefixes decoded", names[k], decoded);
    }
}

// A progressive file followed by n more DC refinement scans (1 bit per block each): the scan
// count is capped at 1000, so that a few bytes per scan cannot buy a walk over the whole frame.
static void test_scan_cap(void) {
    FILE *f = fopen(DIR "/progressive_gray.jpg", "rb");
    CHECK(f != NULL, "cannot open progressive_gray.jpg");
    if (!f) return;
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    size_t sof = 0, scans = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (buf[i] == 0xFF && buf[i + 1] == 0xC2 && !sof) sof = i;
        if (buf[i] == 0xFF && buf[i + 1] == 0xDA) scans++;
    }
    CHECK(sof > 0 && n > 2 && buf[n - 2] == 0xFF && buf[n - 1] == 0xD9, "progressive_gray.jpg: no SOF2 or EOI");
    if (!sof) return;
    int extra[2] = {1000 - (int)scans, 1001 - (int)scans};
    for (int k = 0; k < 2; k++) {
        size_t len = n - 2 + (size_t)extra[k] * 14 + 2;
        uint8_t *b = (uint8_t *)malloc(len), *p = b + n - 2;
        memcpy(b, buf, n - 2);
        for (int s = 0; s < extra[k]; s++, p += 14) {
            // SOS: 1 component (the frame's), Ss = Se = 0, Ah = 1, Al = 0; 30 blocks = 30 bits of data
            const uint8_t sos[14] = {0xFF, 0xDA, 0, 8, 1, buf[sof + 10], 0, 0, 0, 0x10, 0, 0, 0, 0};
            memcpy(p, sos, 14);
        }
        p[0] = 0xFF, p[1] = 0xD9;
        JpegImage img;
        int rc = jpeg_decode(b, len, "many_scans", &img);
        if (k == 0) CHECK(rc == 0, "1000 scans: %s", sd_last_error());
        else CHECK(rc != 0 && strstr(sd_last_error(), "more than 1000 scans"), "1001 scans: rc %d, %s", rc, sd_last_error());
        if (!rc) jpeg_free(&img);
        free(b);
    }
}

static void test_image_load(void) {
    Image img;
    int rc = image_load(DIR "/rgb_420.jpg", &img);
    CHECK(rc == 0, "image_load of a JPEG: %s", sd_last_error());
    if (rc) return;
    CHECK(img.channels == 3 && img.height == 40 && img.width == 48 && img.src_dtype_bits == 8,
          "image_load: %dx%dx%d, %d bits", img.channels, img.height, img.width, img.src_dtype_bits);
    NpyArray a;
    if (npy_read(DIR "/rgb_420.npy", &a) == 0) {
        const uint8_t *ref = (const uint8_t *)a.data;
        int same = 1;
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 48; x++)
                for (int c = 0; c < 3; c++)
                    same &= img.data[(size_t)c * 40 * 48 + (size_t)y * 48 + x] == (float)ref[(y * 48 + x) * 3 + c];
        CHECK(same, "image_load: planar floats differ from PIL's pixels");
        npy_free(&a);
    }
    image_free(&img);
}

int main(void) {
    test_files();
    test_truncation();
    test_scan_cap();
    test_image_load();
    return test_report("test_jpeg");
}
