// safetensors: round trip, exact f16/bf16 conversion, and every malformed file
// we could think of rejected with a message naming the file and the tensor.
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "tests/test_util.h"

static char g_dir[256];

// Writes a raw file: 8-byte header length, header text, then `data_len` bytes of data.
static const char *write_raw(const char *name, const char *header, uint64_t declared_len, size_t data_len) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(declared_len >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xFF), f);
    fclose(f);
    return path;
}

static int opens(const char *path) {
    SafeTensors st;
    int rc = st_open(&st, path);
    if (rc == 0) st_close(&st);
    return rc == 0;
}

static void expect_reject(const char *name, const char *header, size_t data_len, const char *must_mention) {
    const char *path = write_raw(name, header, strlen(header), data_len);
    sd_clear_error();
    CHECK(!opens(path), "%s: malformed file accepted", name);
    CHECK(strstr(sd_last_error(), name) != NULL, "%s: error names the file: '%s'", name, sd_last_error());
    if (must_mention) CHECK(strstr(sd_last_error(), must_mention) != NULL, "%s: error mentions '%s': '%s'", name, must_mention, sd_last_error());
}

static void test_roundtrip(void) {
    float a[6] = {1, -2, 3.5f, 1e-8f, 65504.0f, -0.0f};
    int64_t ids[3] = {0, 49406, -5};
    StWriteEntry e[3];
    memset(e, 0, sizeof(e));
    e[0].name = "layer.weight"; e[0].dtype = DT_F32; e[0].ndim = 2; e[0].shape[0] = 2; e[0].shape[1] = 3; e[0].data = a;
    e[1].name = "layer.half"; e[1].dtype = DT_F16; e[1].ndim = 1; e[1].shape[0] = 6; e[1].data = a;
    e[2].name = "ids"; e[2].dtype = DT_I64; e[2].ndim = 1; e[2].shape[0] = 3; e[2].data = ids;
    const char *keys[] = {"prompt"}, *vals[] = {"A \"satellite\" image\n"};
    char path[512];
    snprintf(path, sizeof(path), "%s/rt.safetensors", g_dir);
    CHECK(st_write(path, e, 3, keys, vals, 1) == 0, "write: %s", sd_last_error());
    SafeTensors st;
    CHECK(st_open(&st, path) == 0, "open: %s", sd_last_error());
    CHECK(st.count == 3, "3 tensors");
    Tensor t;
    int shape[2] = {2, 3};
    // a view into the mapping on little-endian hosts; a converted copy on big-endian ones (s390x)
    const uint16_t one = 1;
    const int host_le = *(const unsigned char *)&one == 1;
    CHECK(st_load(&st, "layer.weight", 2, shape, &t) == 0 && t.owns_data == !host_le,
          "f32 is a view into the mapping (little-endian hosts only)");
    CHECK(t.data && memcmp(t.data, a, sizeof(a)) == 0, "f32 values");
    tensor_free(&t);
    CHECK(st_load(&st, "layer.half", 0, NULL, &t) == 0 && t.owns_data == 1, "f16 converted");
    CHECK(t.data[0] == 1.0f && t.data[2] == 3.5f && t.data[4] == 65504.0f && t.data[3] == 0.0f, "f16 values (1e-8 flushes to 0)");
    tensor_free(&t);
    int64_t back[3];
    CHECK(st_entry_to_i64(&st, st_find(&st, "ids"), back) == 0 && back[1] == 49406 && back[2] == -5, "i64 values");
    CHECK(st_metadata(&st, "prompt") && strcmp(st_metadata(&st, "prompt"), vals[0]) == 0, "metadata string with quotes");
    int wrong[2] = {3, 2};
    sd_clear_error();
    CHECK(st_load(&st, "layer.weight", 2, wrong, &t) != 0 && strstr(sd_last_error(), "expected (3, 2)"), "shape mismatch: %s", sd_last_error());
    CHECK(st_load(&st, "layer.weigth", 0, NULL, &t) != 0 && strstr(sd_last_error(), "nearest: 'layer.weight'"),
          "missing name lists near names: %s", sd_last_error());
    st_close(&st);
    char tmpname[600];
    snprintf(tmpname, sizeof(tmpname), "%s.tmp.%d", path, (int)getpid());
    CHECK(access(tmpname, F_OK) != 0, "no temporary file left behind");
    CHECK(st_write("/nonexistent-dir/x.safetensors", e, 1, NULL, NULL, 0) != 0, "unwritable path is an error");
}

static void test_half_conversions(void) {
    int exact = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t v = (uint16_t)h;
        float f = f32_from_f16(v);
        if (isnan(f)) continue;
        if (f16_from_f32(f) != v) { exact = 0; break; }
    }
    CHECK(exact, "every finite f16 survives f16 -> f32 -> f16");
    CHECK(f32_from_f16(0x3C00) == 1.0f && f32_from_f16(0xC000) == -2.0f && f32_from_f16(0x0001) == 5.9604644775390625e-08f,
          "f16 one, minus two, smallest subnormal");
    CHECK(isinf(f32_from_f16(0x7C00)) && isnan(f32_from_f16(0x7E00)), "f16 inf and nan");
    CHECK(f16_from_f32(1.0f + 1.0f / 2048.0f) == 0x3C00, "ties round to even");
    CHECK(f16_from_f32(70000.0f) == 0x7C00, "overflow to inf");
    CHECK(f32_from_bf16(0x3F80) == 1.0f && f32_from_bf16(0xC0A0) == -5.0f, "bf16 values");
}

static void test_malformed(void) {
    // header length past the end of the file
    const char *p = write_raw("len_past_eof.safetensors", "{}", 1000, 0);
    CHECK(!opens(p) && strstr(sd_last_error(), "past the end"), "header length past EOF: %s", sd_last_error());
    p = write_raw("len_huge.safetensors", "{}", (uint64_t)1 << 62, 0);
    CHECK(!opens(p) && strstr(sd_last_error(), "limit"), "absurd header length: %s", sd_last_error());
    expect_reject("not_json.safetensors", "{\"a\": ", 0, "invalid JSON");
    expect_reject("not_object.safetensors", "[1, 2]", 0, "not a JSON object");
    expect_reject("bad_dtype.safetensors", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype");
    expect_reject("no_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape");
    expect_reject("neg_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w'");
    expect_reject("frac_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w'");
    expect_reject("size_mismatch.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, "needs 16");
    expect_reject("past_end.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end");
    expect_reject("reversed.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "data_offsets");
    expect_reject("overlap.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_reject("bad_offsets.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    expect_reject("huge_shape.safetensors",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "too large");
    expect_reject("bad_meta.safetensors", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__");
    expect_reject("nan_json.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,4]}}", 4, "invalid JSON");
    p = write_raw("tiny.safetensors", "", 0, 0);
    FILE *f = fopen(p, "wb"); fwrite("abc", 1, 3, f); fclose(f);
    CHECK(!opens(p) && strstr(sd_last_error(), "too short"), "3-byte file: %s", sd_last_error());
    CHECK(!opens("/nonexistent.safetensors"), "missing file");

    // Every truncation of a valid file is rejected (or, at the full length, accepted).
    float a[4] = {1, 2, 3, 4};
    StWriteEntry e;
    memset(&e, 0, sizeof(e));
    e.name = "w"; e.dtype = DT_F32; e.ndim = 1; e.shape[0] = 4; e.data = a;
    char full[512], cut[512];
    snprintf(full, sizeof(full), "%s/full.safetensors", g_dir);
    snprintf(cut, sizeof(cut), "%s/cut.safetensors", g_dir);
    st_write(full, &e, 1, NULL, NULL, 0);
    FILE *in = fopen(full, "rb");
    unsigned char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    int all = 1;
    for (size_t len = 0; len < n; len++) {
        FILE *o = fopen(cut, "wb");
        fwrite(buf, 1, len, o);
        fclose(o);
        if (opens(cut)) all = 0;
    }
    CHECK(all, "every truncation of a %zu-byte file rejected", n);
    CHECK(opens(full), "the full file opens");
}

// Found while fuzzing (docs/fuzzing.md).
static void test_fuzz_regressions(void) {
    // Two tensors of the same name: the JSON parser refuses it and names the key
    // (the check used to compare every key with all earlier ones: quadratic).
    expect_reject("dup_name.safetensors",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate key \"w\"");
    // st_require's nearest names with names longer than its 1 KB buffer: the
    // next snprintf started past the end of the buffer.
    static char names[3][1501];
    float a[1] = {1};
    StWriteEntry e[3];
    memset(e, 0, sizeof(e));
    for (int i = 0; i < 3; i++) {
        memset(names[i], 'a' + i, 1500);
        names[i][1500] = '\0';
        e[i].name = names[i], e[i].dtype = DT_F32, e[i].ndim = 1, e[i].shape[0] = 1, e[i].data = a;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/long_names.safetensors", g_dir);
    CHECK(st_write(path, e, 3, NULL, NULL, 0) == 0, "write: %s", sd_last_error());
    SafeTensors st;
    CHECK(st_open(&st, path) == 0, "open: %s", sd_last_error());
    const StEntry *found;
    CHECK(st_require(&st, "x", &found) != 0 && strstr(sd_last_error(), "no tensor named 'x' (3 tensors; nearest: 'aaa"),
          "%.120s", sd_last_error());
    st_close(&st);
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/sd_test_st_%d", (int)getpid());
    mkdir(g_dir, 0755);
    test_roundtrip();
    test_half_conversions();
    test_malformed();
    test_fuzz_regressions();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return test_report("test_safetensors");
}
