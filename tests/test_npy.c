// NPY reader/writer tests: numpy-written files in tests/data (big-endian,
// Fortran order, v2.0/v3.0 headers, 0-D, empty, float16, bool), malformed
// headers, truncation at every length, writer round trips, and (when present)
// the third-party files of ../shared/data/npy against npy/index.json
// (header facts, SHA-256 of the payload, min/max/sum, first values).
#include "tests/test_util.h"

#include <stdint.h>
#include <unistd.h>

#include "core/error.h"
#include "io/image.h"
#include "io/json.h"
#include "io/npy.h"

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

// ---------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), to compare payloads with the index's digests.

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void sha256_hex(const uint8_t *data, size_t n, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t full = n / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha256_block(h, data + i);
    uint8_t tail[128] = {0};
    size_t rest = n - full, tl = rest + 9 <= 64 ? 64 : 128;
    memcpy(tail, data + full, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < tl; i += 64) sha256_block(h, tail + i);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", h[i]);
}

// ---------------------------------------------------------------------------

static int parse_text(const char *header_dict, const uint8_t *payload, size_t payload_len, NpyArray *a) {
    // Builds a v1.0 file around a header text (no padding rules enforced by the reader).
    size_t hl = strlen(header_dict);
    uint8_t *buf = (uint8_t *)malloc(10 + hl + payload_len + 1);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hl & 255), buf[9] = (uint8_t)(hl >> 8);
    memcpy(buf + 10, header_dict, hl);
    if (payload_len) memcpy(buf + 10 + hl, payload, payload_len);
    sd_clear_error();
    int rc = npy_parse(buf, 10 + hl + payload_len, a);
    free(buf);
    return rc;
}

static void expect_error(const char *header, size_t payload_len, const char *needle) {
    static const uint8_t zeros[256] = {0};
    static uint8_t twos[4] = {2, 2, 2, 2};
    NpyArray a;
    int rc = parse_text(header, strstr(header, "b1") ? twos : zeros, payload_len, &a);
    CHECK(rc != 0 && a.data == NULL && strstr(sd_last_error(), needle) != NULL, "header %s: expected '%s', got '%s'",
          header, needle, rc ? sd_last_error() : "success");
    npy_free(&a);
}

static void test_malformed(void) {
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 23, "data bytes");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 25, "data bytes");
    expect_error("{'descr': '<f4', 'fortran_order': False, }\n", 0, "exactly one");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\n", 8, "unexpected key");
    expect_error("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", 8, "unsupported descr");
    expect_error("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", 8, "unsupported descr");
    expect_error("{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }\n", 20, "unsupported descr");
    expect_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", 4, "structured");
    expect_error("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }\n", 4, "True or False");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 4, "non-negative");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9), }\n", 4, "too large");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 4, "overflows");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }\n", 4, "dimensions");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }\n", 8, "tuple");
    expect_error("['descr']\n", 0, "dict");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x\n", 4, "after the dict");
    expect_error("{'descr': '<f4' 'fortran_order': False}\n", 4, "expected ','");
    expect_error("{'descr' '<f4', 'fortran_order': False}\n", 4, "expected ':'");
    expect_error("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }\n", 2, "bool");
    NpyArray a;
    static const uint8_t v9[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0, 0, 0};
    CHECK(npy_parse(v9, sizeof(v9), &a) != 0 && strstr(sd_last_error(), "version 9"), "%s", sd_last_error());
    static const uint8_t magic[16] = {0x93, 'N', 'U', 'M', 'P', 'X', 1, 0, 0, 0};
    CHECK(npy_parse(magic, sizeof(magic), &a) != 0 && strstr(sd_last_error(), "magic"), "%s", sd_last_error());
    static const uint8_t hlen[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f};
    CHECK(npy_parse(hlen, sizeof(hlen), &a) != 0 && strstr(sd_last_error(), "header of"), "%s", sd_last_error());
    CHECK(npy_read("/nonexistent/x.npy", &a) != 0 && strstr(sd_last_error(), "/nonexistent/x.npy"), "missing file");

    // A Fortran-order array is transposed to C order.
    const float f[6] = {0, 3, 1, 4, 2, 5};  // column-major (2, 3) of [[0,1,2],[3,4,5]]
    const uint16_t one = 1;  // f is in host byte order: say so in the descr
    const char *fortran_hdr = *(const uint8_t *)&one == 1 ? "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n"
                                                          : "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }\n";
    CHECK(parse_text(fortran_hdr, (const uint8_t *)f, 24, &a) == 0, "fortran: %s", sd_last_error());
    int ok = a.data != NULL;
    for (int i = 0; ok && i < 6; i++) ok = ((float *)a.data)[i] == (float)i;
    CHECK(ok && a.was_fortran_order, "fortran order transposed");
    npy_free(&a);
}

static void test_writer(void) {
    const float f[6] = {0.5f, -1.0f, 3.25f, 1e30f, -0.0f, 7.0f};
    const int64_t shape[2] = {2, 3};
    uint8_t *buf;
    size_t len;
    CHECK(npy_encode(NPY_FLOAT32, 2, shape, f, &buf, &len) == 0, "encode f32");
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK(len == 128 + 24 && memcmp(buf + 10, want, strlen(want)) == 0 && buf[127] == '\n', "numpy's header layout");
    NpyArray a;
    CHECK(npy_parse(buf, len, &a) == 0 && a.dtype == NPY_FLOAT32 && a.ndim == 2 && a.data_offset == 128 &&
              memcmp(a.data, f, 24) == 0,
          "f32 round trip");
    npy_free(&a);
    free(buf);
    // Every truncation of the file is an error.
    CHECK(npy_encode(NPY_UINT8, 1, (const int64_t[]){5}, "abcde", &buf, &len) == 0, "encode u8");
    int all = 1;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = (uint8_t *)malloc(cut ? cut : 1);
        memcpy(part, buf, cut);
        sd_clear_error();
        if (npy_parse(part, cut, &a) == 0 || !sd_last_error()[0]) all = 0;
        npy_free(&a);
        free(part);
    }
    CHECK(all, "every truncation of a %zu-byte NPY rejected", len);
    CHECK(memcmp(buf + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 57) == 0, "1-D shape text");
    free(buf);
    // int64 through a file, 0-D and 4-D shapes.
    char path[64];
    snprintf(path, sizeof(path), "/tmp/satdifuser_test_npy_%d.npy", (int)getpid());
    const int64_t big[3] = {-5, INT64_MAX, 1234567890123LL};
    CHECK(npy_write(path, NPY_INT64, 1, (const int64_t[]){3}, big) == 0, "write: %s", sd_last_error());
    CHECK(npy_read(path, &a) == 0 && a.dtype == NPY_INT64 && a.count == 3 && memcmp(a.data, big, 24) == 0, "int64 file");
    npy_free(&a);
    CHECK(npy_write(path, NPY_FLOAT32, 0, NULL, f) == 0 && npy_read(path, &a) == 0 && a.ndim == 0 && a.count == 1 &&
              ((float *)a.data)[0] == 0.5f,
          "0-D file");
    npy_free(&a);
    const int64_t s4[4] = {1, 2, 1, 3};
    CHECK(npy_write(path, NPY_FLOAT32, 4, s4, f) == 0 && npy_read(path, &a) == 0 && a.ndim == 4 && a.shape[3] == 3 &&
              memcmp(a.data, f, 24) == 0,
          "4-D file");
    npy_free(&a);
    remove(path);
}

static void test_own_files(void) {
    NpyArray a;
    float *v = NULL;
    CHECK(npy_read("tests/data/npy_be_i2.npy", &a) == 0 && a.dtype == NPY_INT16 && a.ndim == 2, "%s", sd_last_error());
    int ok = a.data && a.count == 6;
    for (int i = 0; ok && i < 6; i++) ok = ((int16_t *)a.data)[i] == i * -1000 + 7;
    CHECK(ok, "big-endian int16 values");
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_fortran_f8.npy", &a) == 0 && a.was_fortran_order && a.shape[2] == 4, "fortran");
    ok = a.data && a.count == 24;
    for (int i = 0; ok && i < 24; i++) ok = ((double *)a.data)[i] == i * 0.5;
    CHECK(ok, "Fortran-order float64 values in C order");
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_v2_u1_scalar.npy", &a) == 0 && a.version_major == 2 && a.ndim == 0 &&
              a.count == 1 && ((uint8_t *)a.data)[0] == 42,
          "v2.0 0-D uint8: %s", sd_last_error());
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_v3_empty_f4.npy", &a) == 0 && a.version_major == 3 && a.ndim == 2 &&
              a.shape[0] == 0 && a.shape[1] == 3 && a.count == 0,
          "v3.0 empty array: %s", sd_last_error());
    CHECK(a.data && npy_to_float32(&a, &v) == 0, "empty to float");
    free(v);
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_f2_special.npy", &a) == 0 && a.dtype == NPY_FLOAT16, "f2");
    CHECK(a.data && npy_to_float32(&a, &v) == 0, "f2 to float");
    if (v) {
        CHECK(v[0] == 1.5f && v[1] == -2.0f && v[2] == 65504.0f && isinf(v[4]) && v[4] > 0 && v[5] == 0.0f &&
                  signbit(v[5]),
              "float16 values");
        CHECK(fabsf(v[3] - 5.96e-8f) < 1e-9f, "float16 subnormal %g", v[3]);  // 6e-8 rounds to 1 * 2^-24
    }
    free(v);
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_be_f4_4d.npy", &a) == 0 && a.ndim == 4 && a.dtype == NPY_FLOAT32, "be f4 4-D");
    ok = a.data && a.count == 12;
    for (int i = 0; ok && i < 12; i++) ok = ((float *)a.data)[i] == (float)i - 5.25f;
    CHECK(ok, "big-endian float32 values");
    npy_free(&a);
    CHECK(npy_read("tests/data/npy_b1.npy", &a) == 0 && a.dtype == NPY_BOOL && a.count == 3, "bool");
    CHECK(a.data && npy_to_float32(&a, &v) == 0 && v[0] == 1.0f && v[1] == 0.0f && v[2] == 1.0f, "bool values");
    free(v);
    npy_free(&a);
}

// image_load on NPY arrays: (H, W, C) vs (C, H, W), leading 1s, refusals.
static void test_image_load(void) {
    char path[64];
    snprintf(path, sizeof(path), "/tmp/satdifuser_test_img_%d.npy", (int)getpid());
    float v[60];
    for (int i = 0; i < 60; i++) v[i] = (float)i;
    Image im;
    // (5, 4, 3): last dimension smallest -> (H, W, C)
    CHECK(npy_write(path, NPY_FLOAT32, 3, (const int64_t[]){5, 4, 3}, v) == 0, "write");
    CHECK(image_load(path, &im) == 0 && im.channels == 3 && im.height == 5 && im.width == 4 && im.is_float &&
              im.src_dtype_bits == 32 && im.data[1 * 20 + 2 * 4 + 3] == v[(2 * 4 + 3) * 3 + 1],
          "HWC auto: %s", sd_last_error());
    image_free(&im);
    CHECK(image_load_npy_layout(path, IMAGE_NPY_CHW, &im) == 0 && im.channels == 5 && im.data[17] == 17.0f,
          "forced CHW");
    image_free(&im);
    // (1, 3, 4, 5) uint8 -> (3, 4, 5)
    uint8_t u[60];
    for (int i = 0; i < 60; i++) u[i] = (uint8_t)(i * 4);
    CHECK(npy_write(path, NPY_UINT8, 4, (const int64_t[]){1, 3, 4, 5}, u) == 0, "write");
    CHECK(image_load(path, &im) == 0 && im.channels == 3 && im.height == 4 && im.width == 5 && !im.is_float &&
              im.src_dtype_bits == 8 && im.data[59] == 236.0f,
          "(1, C, H, W): %s", sd_last_error());
    image_free(&im);
    CHECK(npy_write(path, NPY_UINT8, 4, (const int64_t[]){2, 3, 2, 5}, u) == 0, "write");
    CHECK(image_load(path, &im) != 0 && strstr(sd_last_error(), "select one image"), "%s", sd_last_error());
    CHECK(npy_write(path, NPY_UINT8, 1, (const int64_t[]){60}, u) == 0, "write");
    CHECK(image_load(path, &im) != 0 && strstr(sd_last_error(), "2-D"), "%s", sd_last_error());
    CHECK(npy_write(path, NPY_UINT8, 2, (const int64_t[]){0, 5}, u) == 0, "write");
    CHECK(image_load(path, &im) != 0 && strstr(sd_last_error(), "empty"), "%s", sd_last_error());
    remove(path);
}

static void test_shared(const char *root) {
    char ipath[600];
    snprintf(ipath, sizeof(ipath), "%s/npy/index.json", root);
    JsonValue index;
    if (json_parse_file(ipath, &index) != 0) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    int matched = 0;
    for (int i = 0; i < index.count; i++) {
        const JsonValue *e = &index.items[i];
        const char *file = NULL, *descr = NULL, *sha = NULL;
        double dmin, dmax, dsum, nan_count, offset;
        json_get_string(e, "file", "", &file);
        json_get_string(e, "descr", "", &descr);
        json_get_string(e, "payload_sha256", "", &sha);
        json_get_double(e, "min", 0, &dmin);
        json_get_double(e, "max", 0, &dmax);
        json_get_double(e, "sum", 0, &dsum);
        json_get_double(e, "nan_count", 0, &nan_count);
        json_get_double(e, "data_offset", 0, &offset);
        char path[800];
        snprintf(path, sizeof(path), "%s/npy/%s", root, file);
        NpyArray a;
        int rc = npy_read(path, &a);
        CHECK(rc == 0, "%s: %s", path, sd_last_error());
        if (rc) continue;
        int good = 1;
        // dtype from the descr's kind and size
        char want_kind = descr[1];
        int want_size = atoi(descr + 2);
        const char *name = npy_dtype_name(a.dtype);
        char kind = strncmp(name, "bool", 4) == 0 ? 'b' : name[0] == 'u' ? 'u' : name[0] == 'i' ? 'i' : 'f';
        good &= kind == want_kind && a.itemsize == want_size && a.data_offset == (size_t)offset;
        const JsonValue *shape = json_get(e, "shape");
        good &= shape && shape->count == a.ndim;
        for (int k = 0; good && k < a.ndim; k++) good &= (double)a.shape[k] == shape->items[k].number;
        CHECK(good, "%s: descr %s / shape / offset differ", path, descr);
        // The index hashes the payload as stored, in the descr's byte order; npy_read gives host
        // order, so put the bytes back first (a no-op on a little-endian host for '<' files).
        char hex[65];
        size_t nbytes = (size_t)a.count * (size_t)a.itemsize;
        uint8_t *stored = (uint8_t *)malloc(nbytes ? nbytes : 1);
        if (!stored) { CHECK(0, "out of memory"); npy_free(&a); continue; }
        memcpy(stored, a.data, nbytes);
        const uint16_t one = 1;
        const int host_le = *(const uint8_t *)&one == 1, file_le = descr[0] != '>';
        if (host_le != file_le && a.itemsize > 1)
            for (int64_t k = 0; k < a.count; k++)
                for (int b = 0; b < a.itemsize / 2; b++) {
                    uint8_t *x = stored + (size_t)k * (size_t)a.itemsize, t = x[b];
                    x[b] = x[a.itemsize - 1 - b];
                    x[a.itemsize - 1 - b] = t;
                }
        sha256_hex(stored, nbytes, hex);
        free(stored);
        int same_sha = strcmp(hex, sha) == 0;
        CHECK(same_sha, "%s: payload sha256 %s, index %s", path, hex, sha);
        float *v;
        if (npy_to_float32(&a, &v) == 0) {
            double lo = INFINITY, hi = -INFINITY, sum = 0;
            int nans = 0;
            for (int64_t k = 0; k < a.count; k++) {
                if (isnan(v[k])) { nans++; continue; }
                lo = v[k] < lo ? v[k] : lo, hi = v[k] > hi ? v[k] : hi, sum += v[k];
            }
            int stats = nans == (int)nan_count && fabs(lo - dmin) <= 1e-6 * fabs(dmin) + 1e-7 &&
                        fabs(hi - dmax) <= 1e-6 * fabs(dmax) + 1e-7 && fabs(sum - dsum) <= 1e-5 * fabs(dsum) + 1e-6;
            const JsonValue *first = json_get(e, "first_values");
            for (int k = 0; first && k < first->count && k < a.count; k++)
                stats &= fabs(v[k] - first->items[k].number) <= 1e-6 * fabs(first->items[k].number) + 1e-7;
            CHECK(stats, "%s: min/max/sum/first values (%g %g %.9g) differ from the index (%g %g %.9g)", path, lo, hi,
                  sum, dmin, dmax, dsum);
            good &= stats;
            free(v);
        }
        good &= same_sha;
        matched += good;
        npy_free(&a);
    }
    printf("shared NPY files: %d of %d match npy/index.json (header, sha256 of payload, statistics)\n", matched,
           index.count);
    CHECK(matched == 11 && index.count == 11, "expected 11 files");
    json_free(&index);
}

int main(void) {
    char hex[65];
    sha256_hex((const uint8_t *)"abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "sha256 self-check");
    test_malformed();
    test_writer();
    test_own_files();
    test_image_load();
    const char *root = data_root();
    if (root) test_shared(root);
    else printf("SKIP shared NPY data: neither /work/shared/data nor ../shared/data exists\n");
    return test_report("test_npy");
}
