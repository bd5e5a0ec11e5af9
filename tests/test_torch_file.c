// PyTorch checkpoints: the zip reader, the restricted unpickler and the tensor views.
// - every checkpoint made by weights_tools/make_torch_checkpoints.py with Debian's torch
//   (tests/data/torch/X) gives exactly the tensors torch itself wrote to X.expected.safetensors
//   (names, dtypes, shapes, bytes), and the plain top-level values X.expected.json lists;
// - every hostile file in tests/data/torch/hostile is refused with a message naming it;
// - hand-assembled pickles and zip archives check opcodes and ZIP64 records one by one.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/json.h"
#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/torch_file.h"
#include "io/zip.h"
#include "tests/test_util.h"

#define DATA "tests/data/torch"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// The tensors of `path` against those torch wrote to `expected` (a safetensors file).
static void compare_with_expected(const char *path, const char *expected) {
    SafeTensors got, want;
    if (st_open(&got, path)) { CHECK(0, "%s: %s", path, sd_last_error()); return; }
    if (st_open(&want, expected)) { CHECK(0, "%s: %s", expected, sd_last_error()); st_close(&got); return; }
    CHECK(got.count == want.count, "%s: %d tensors, expected %d", path, got.count, want.count);
    for (int i = 0; i < want.count; i++) {
        const StEntry *w = &want.entries[i], *g = st_find(&got, w->name);
        if (!g) { CHECK(0, "%s: no tensor '%s'", path, w->name); continue; }
        int same_shape = g->ndim == w->ndim;
        for (int d = 0; same_shape && d < w->ndim; d++) same_shape = g->shape[d] == w->shape[d];
        CHECK(g->dtype == w->dtype && same_shape, "%s: '%s' is %s/%dd, expected %s/%dd", path, w->name,
              dtype_name(g->dtype), g->ndim, dtype_name(w->dtype), w->ndim);
        if (g->dtype != w->dtype || !same_shape) continue;
        size_t bytes = (size_t)w->numel * (size_t)dtype_size(w->dtype);
        CHECK(memcmp(g->data, w->data, bytes) == 0, "%s: '%s' has other bytes than torch wrote", path, w->name);
        // the loader's float view agrees too (f16/bf16/ints converted)
        if (w->numel > 0 && w->dtype != DT_BOOL) {
            float *a = (float *)malloc((size_t)w->numel * sizeof(float)), *b = (float *)malloc((size_t)w->numel * sizeof(float));
            st_entry_to_f32(g, a);
            st_entry_to_f32(w, b);
            CHECK(memcmp(a, b, (size_t)w->numel * sizeof(float)) == 0, "%s: '%s' converts differently", path, w->name);
            free(a);
            free(b);
        }
    }
    st_close(&got);
    st_close(&want);
}

// X.expected.json's "top_level": plain values become metadata entries rendered as Python would.
static void compare_top_level(const char *path, const char *json_path) {
    JsonValue j;
    if (json_parse_file(json_path, &j)) { CHECK(0, "%s", sd_last_error()); return; }
    const JsonValue *top = json_get(&j, "top_level");
    SafeTensors st;
    if (!top || top->type != JSON_OBJECT || st_open(&st, path)) { json_free(&j); return; }
    for (int i = 0; i < top->count; i++) {
        const char *type = NULL, *m = st_metadata(&st, top->keys[i]);
        json_get_string(&top->items[i], "type", NULL, &type);
        const JsonValue *v = json_get(&top->items[i], "value");
        if (!type || !v) continue;
        char want[512] = "";
        if (!strcmp(type, "int")) snprintf(want, sizeof(want), "%.0f", v->number);
        else if (!strcmp(type, "bool")) snprintf(want, sizeof(want), "%s", v->boolean ? "True" : "False");
        else if (!strcmp(type, "None")) snprintf(want, sizeof(want), "None");
        else if (!strcmp(type, "str") && strlen(v->string) <= 60) snprintf(want, sizeof(want), "'%s'", v->string);
        else if (!strcmp(type, "float")) {
            CHECK(m && strtod(m, NULL) == v->number, "%s: top-level '%s' = %s, expected %.17g", path, top->keys[i],
                  m ? m : "(absent)", v->number);
            continue;
        } else continue;
        CHECK(m && !strcmp(m, want), "%s: top-level '%s' = %s, expected %s", path, top->keys[i], m ? m : "(absent)", want);
    }
    st_close(&st);
    json_free(&j);
}

static void test_fixtures(void) {
    DIR *d = opendir(DATA);
    CHECK(d != NULL, "%s: cannot list", DATA);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".expected.safetensors")) continue;
        char src[512], expected[512], json[600];
        snprintf(expected, sizeof(expected), "%s/%s", DATA, e->d_name);
        snprintf(src, sizeof(src), "%s/%.*s", DATA, (int)(strlen(e->d_name) - strlen(".expected.safetensors")), e->d_name);
        snprintf(json, sizeof(json), "%s.expected.json", src);
        if (access(src, R_OK) != 0) continue;  // values of another file (diffusionsat_tiny_*)
        compare_with_expected(src, expected);
        if (access(json, R_OK) == 0) compare_top_level(src, json);
        n++;
    }
    closedir(d);
    CHECK(n >= 10, "only %d checkpoint fixtures found in %s", n, DATA);
}

static void test_hostile(void) {
    DIR *d = opendir(DATA "/hostile");
    CHECK(d != NULL, "%s/hostile: cannot list", DATA);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || ends_with(e->d_name, ".md") || !strncmp(e->d_name, "control_", 8)) continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/hostile/%s", DATA, e->d_name);
        SafeTensors st;
        sd_clear_error();
        int rc = st_open(&st, path);
        if (rc == 0) st_close(&st);
        CHECK(rc != 0, "%s: a hostile file was accepted", path);
        CHECK(strstr(sd_last_error(), e->d_name) != NULL, "%s: the message does not name the file: %s", path, sd_last_error());
        if (strstr(e->d_name, "system") || strstr(e->d_name, "eval") || strstr(e->d_name, "exec") ||
            strstr(e->d_name, "popen") || strstr(e->d_name, "import"))
            CHECK(strstr(sd_last_error(), "refused") != NULL, "%s: not refused by name: %s", path, sd_last_error());
        n++;
    }
    closedir(d);
    CHECK(n >= 15, "only %d hostile files found", n);
}

// ---------------------------------------------------------------------------
// Hand-assembled pickles.

static int load_bytes(const unsigned char *p, size_t n, PickleDoc *doc, PyValue **root) {
    pickle_doc_init(doc);
    return pickle_load(doc, "test.pkl", p, n, NULL, root, NULL);
}

static void test_pickle_opcodes(void) {
    PickleDoc doc;
    PyValue *r;
    // protocol 2: {'a': 1, 'b': -2, 'c': 300, 'd': 2**40, 'e': -1 (LONG1), 'f': 1.5, 'g': True, 'h': None}
    static const unsigned char p1[] = {
        0x80, 2, '}', 'q', 0, '(',
        'X', 1, 0, 0, 0, 'a', 'K', 1,
        'X', 1, 0, 0, 0, 'b', 'J', 0xfe, 0xff, 0xff, 0xff,
        'X', 1, 0, 0, 0, 'c', 'M', 0x2c, 0x01,
        'X', 1, 0, 0, 0, 'd', 0x8a, 6, 0, 0, 0, 0, 0, 1,
        'X', 1, 0, 0, 0, 'e', 0x8a, 1, 0xff,
        'X', 1, 0, 0, 0, 'f', 'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
        'X', 1, 0, 0, 0, 'g', 0x88,
        'X', 1, 0, 0, 0, 'h', 'N',
        'u', '.'};
    int rc = load_bytes(p1, sizeof(p1), &doc, &r);
    CHECK(rc == 0 && r->kind == PY_DICT && r->count == 16, "protocol-2 dict: %s", sd_last_error());
    if (rc == 0) {
        const PyValue *v;
        CHECK((v = py_dict_get(r, "a")) && v->kind == PY_INT && v->i == 1, "BININT1");
        CHECK((v = py_dict_get(r, "b")) && v->kind == PY_INT && v->i == -2, "BININT sign");
        CHECK((v = py_dict_get(r, "c")) && v->kind == PY_INT && v->i == 300, "BININT2");
        CHECK((v = py_dict_get(r, "d")) && v->kind == PY_INT && v->i == ((int64_t)1 << 40), "LONG1 6 bytes");
        CHECK((v = py_dict_get(r, "e")) && v->kind == PY_INT && v->i == -1, "LONG1 negative");
        CHECK((v = py_dict_get(r, "f")) && v->kind == PY_FLOAT && v->f == 1.5, "BINFLOAT is big-endian");
        CHECK((v = py_dict_get(r, "g")) && v->kind == PY_BOOL && v->i == 1, "NEWTRUE");
        CHECK((v = py_dict_get(r, "h")) && v->kind == PY_NONE, "NONE");
    }
    pickle_doc_free(&doc);

    // protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, a list shared through the memo, TUPLE2, EMPTY_SET/ADDITEMS
    // ([x, x, (1, 2), {3}] with x = [] memoized once)
    static const unsigned char p2[] = {
        0x80, 4, 0x95, 19, 0, 0, 0, 0, 0, 0, 0,
        ']', 0x94, '(', ']', 0x94, 'h', 1, 'K', 1, 'K', 2, 0x86, 0x8f, '(', 'K', 3, 0x90, 'e', '.'};
    rc = load_bytes(p2, sizeof(p2), &doc, &r);
    CHECK(rc == 0 && r->kind == PY_LIST && r->count == 4, "protocol 4 list: %s", sd_last_error());
    if (rc == 0 && r->count == 4) {
        CHECK(r->items[0] == r->items[1], "MEMOIZE / BINGET share one value");
        CHECK(r->items[2]->kind == PY_TUPLE && r->items[2]->count == 2 && r->items[2]->items[1]->i == 2, "TUPLE2");
        CHECK(r->items[3]->kind == PY_SET && r->items[3]->count == 1, "EMPTY_SET + ADDITEMS");
    }
    pickle_doc_free(&doc);

    // STACK_GLOBAL of collections.OrderedDict + REDUCE + SETITEMS, and an unknown class left inert
    static const unsigned char p3[] = {
        0x80, 4, 0x8c, 11, 'c', 'o', 'l', 'l', 'e', 'c', 't', 'i', 'o', 'n', 's', 0x8c, 11, 'O', 'r', 'd', 'e', 'r', 'e',
        'd', 'D', 'i', 'c', 't', 0x93, ')', 'R', '(', 0x8c, 1, 'k', 'c', 'm', 'y', 'm', 'o', 'd', '\n', 'T', '\n', ')',
        0x81, '}', 0x8c, 1, 'x', 'K', 7, 's', 'b', 'u', '.'};
    rc = load_bytes(p3, sizeof(p3), &doc, &r);
    CHECK(rc == 0 && r->kind == PY_DICT && r->count == 2, "OrderedDict by STACK_GLOBAL: %s", sd_last_error());
    if (rc == 0) {
        const PyValue *o = py_dict_get(r, "k");
        CHECK(o && o->kind == PY_OBJECT && py_is_global(o->cls, "mymod.T"), "unknown class -> placeholder");
        CHECK(o && o->state && py_dict_get(o->state, "x") && py_dict_get(o->state, "x")->i == 7, "BUILD state kept");
    }
    pickle_doc_free(&doc);

    // MARK then DICT on an empty stack: an empty dict (found by fuzz_pickle: NULL + 0 under UBSan)
    static const unsigned char mark_dict[] = {'(', 'd', '.'};
    rc = load_bytes(mark_dict, sizeof(mark_dict), &doc, &r);
    CHECK(rc == 0 && r->kind == PY_DICT && r->count == 0, "MARK DICT on an empty stack: %s", sd_last_error());
    pickle_doc_free(&doc);

    // refusals
    static const unsigned char os_system[] = {0x80, 2, 'c', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n',
                                              'X', 4, 0, 0, 0, 't', 'r', 'u', 'e', 0x85, 'R', '.'};
    rc = load_bytes(os_system, sizeof(os_system), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "refused") && strstr(sd_last_error(), "os.system"), "os.system: %s",
          sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char builtins_eval[] = {0x80, 4, 0x8c, 8, 'b', 'u', 'i', 'l', 't', 'i', 'n', 's',
                                                  0x8c, 4, 'e', 'v', 'a', 'l', 0x93, '.'};
    rc = load_bytes(builtins_eval, sizeof(builtins_eval), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "builtins.eval"), "builtins.eval: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char bad_get[] = {0x80, 2, 'h', 5, '.'};
    rc = load_bytes(bad_get, sizeof(bad_get), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "memo"), "GET of an unset memo entry: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char huge_put[] = {0x80, 2, 'N', 'r', 0xff, 0xff, 0xff, 0x7f, '.'};
    rc = load_bytes(huge_put, sizeof(huge_put), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "memo index"), "PUT at 2^31: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char empty_stop[] = {0x80, 2, '.'};
    rc = load_bytes(empty_stop, sizeof(empty_stop), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "STOP"), "STOP on an empty stack: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char pop_mark[] = {0x80, 2, 'N', '1', '.'};
    rc = load_bytes(pop_mark, sizeof(pop_mark), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "MARK"), "POP_MARK without MARK: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char long_string[] = {0x80, 2, 'X', 0xff, 0xff, 0xff, 0x7f, 'a', '.'};
    rc = load_bytes(long_string, sizeof(long_string), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "truncated"), "a 2 GB string in 9 bytes: %s", sd_last_error());
    pickle_doc_free(&doc);
    static const unsigned char truncated[] = {0x80, 2, 'J', 1, 2};
    rc = load_bytes(truncated, sizeof(truncated), &doc, &r);
    CHECK(rc != 0 && strstr(sd_last_error(), "truncated"), "truncated BININT: %s", sd_last_error());
    pickle_doc_free(&doc);
    // 100000 nested lists parse (the machine has no recursion) ...
    size_t depth = 100000, n = 0;
    unsigned char *deep = (unsigned char *)malloc(2 * depth + 8);
    deep[n++] = 0x80, deep[n++] = 2;
    for (size_t i = 0; i < depth; i++) deep[n++] = ']';
    for (size_t i = 1; i < depth; i++) deep[n++] = 'a';
    deep[n++] = '.';
    rc = load_bytes(deep, n, &doc, &r);
    CHECK(rc == 0, "100000-deep list: %s", sd_last_error());
    pickle_doc_free(&doc);
    free(deep);
}

// ---------------------------------------------------------------------------
// Hand-assembled zip archives.

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { put16(p, v & 0xFFFF), put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)v), put32(p + 4, (uint32_t)(v >> 32)); }

// One stored entry "a/x" holding "hello"; zip64: sizes and offset only in ZIP64 records.
static size_t make_zip(unsigned char *b, int zip64, int method) {
    size_t n = 0;
    put32(b, 0x04034b50), put16(b + 8, (unsigned)method), put16(b + 26, 3), put16(b + 28, 0);
    memcpy(b + 30, "a/x", 3);
    memcpy(b + 33, "hello", 5);
    n = 38;
    size_t cd = n;
    memset(b + n, 0, 46 + 3 + 28);
    put32(b + n, 0x02014b50), put16(b + n + 10, (unsigned)method), put16(b + n + 28, 3);
    memcpy(b + n + 46, "a/x", 3);
    if (zip64) {
        put32(b + n + 20, 0xFFFFFFFFu), put32(b + n + 24, 0xFFFFFFFFu), put32(b + n + 42, 0xFFFFFFFFu);
        put16(b + n + 30, 28);
        unsigned char *x = b + n + 49;
        put16(x, 1), put16(x + 2, 24), put64(x + 4, 5), put64(x + 12, 5), put64(x + 20, 0);
        n += 46 + 3 + 28;
    } else {
        put32(b + n + 20, 5), put32(b + n + 24, 5), put32(b + n + 42, 0);
        n += 46 + 3;
    }
    size_t cd_size = n - cd;
    if (zip64) {
        size_t end64 = n;
        memset(b + n, 0, 56 + 20);
        put32(b + n, 0x06064b50), put64(b + n + 4, 44), put64(b + n + 24, 1), put64(b + n + 32, 1);
        put64(b + n + 40, cd_size), put64(b + n + 48, cd);
        n += 56;
        put32(b + n, 0x07064b50), put64(b + n + 8, end64), put32(b + n + 16, 1);
        n += 20;
    }
    memset(b + n, 0, 22);
    put32(b + n, 0x06054b50);
    put16(b + n + 8, zip64 ? 0xFFFF : 1), put16(b + n + 10, zip64 ? 0xFFFF : 1);
    put32(b + n + 12, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size), put32(b + n + 16, zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
    return n + 22;
}

static void test_zip(void) {
    unsigned char b[512];
    for (int zip64 = 0; zip64 < 2; zip64++) {
        size_t n = make_zip(b, zip64, 0);
        ZipArchive z;
        int rc = zip_open(&z, "mem.zip", b, n);
        CHECK(rc == 0, "zip%s: %s", zip64 ? "64" : "", sd_last_error());
        if (rc) continue;
        const ZipEntry *e = zip_find(&z, "a/x");
        const unsigned char *data;
        uint64_t size;
        CHECK(e && zip_entry_data(&z, e, &data, &size) == 0 && size == 5 && !memcmp(data, "hello", 5),
              "zip%s: entry data", zip64 ? "64" : "");
        zip_close(&z);
        ZipArchive t;  // cut anywhere: an error, never a crash
        int refused = 1;
        for (size_t cut = 0; cut < n; cut++) {
            if (zip_open(&t, "cut.zip", b, cut) == 0) {
                refused = 0;
                zip_close(&t);
            }
        }
        CHECK(refused, "zip%s: a truncated archive opened", zip64 ? "64" : "");
    }
    size_t n = make_zip(b, 0, 8);  // deflate
    ZipArchive z;
    CHECK(zip_open(&z, "deflate.zip", b, n) == 0, "deflate entry listed");
    const unsigned char *data;
    uint64_t size;
    CHECK(zip_entry_data(&z, &z.entries[0], &data, &size) != 0 && strstr(sd_last_error(), "compressed"),
          "deflate entry refused: %s", sd_last_error());
    zip_close(&z);
}

// Views, Lightning nesting and --key paths on the committed fixtures.
static void test_views_and_keys(void) {
    SafeTensors st;
    int rc = st_open_torch(&st, DATA "/runpy_head_cls.pth", "decoder_net");
    CHECK(rc == 0 && st.count > 0, "runpy_head_cls.pth --key decoder_net: %s", sd_last_error());
    for (int i = 0; rc == 0 && i < st.count; i++)
        CHECK(strncmp(st.entries[i].name, "decoder_net.", 12) != 0, "names are relative to the key: %s", st.entries[i].name);
    if (rc == 0) st_close(&st);
    rc = st_open_torch(&st, DATA "/runpy_head_cls.pth", "no_such_entry");
    CHECK(rc != 0 && strstr(sd_last_error(), "no_such_entry"), "a missing key is named: %s", sd_last_error());
    rc = st_open_torch(&st, DATA "/runpy_head_cls.pth", "epoch");
    CHECK(rc != 0 && strstr(sd_last_error(), "no tensors"), "a key without tensors: %s", sd_last_error());
    rc = st_open_weights(&st, DATA "/lightning.ckpt");
    CHECK(rc == 0 && st.count > 0, "lightning.ckpt weights: %s", sd_last_error());
    for (int i = 0; rc == 0 && i < st.count; i++)
        CHECK(strncmp(st.entries[i].name, "state_dict.", 11) != 0, "Lightning weights are the state_dict's: %s",
              st.entries[i].name);
    if (rc == 0) st_close(&st);
    // a sharded index of .bin files lists every shard's tensors
    rc = st_open(&st, "tests/data/diffusionsat_tiny/text_encoder/pytorch_model.bin.index.json");
    CHECK(rc == 0 && st.count > 2, "sharded .bin index: %s", sd_last_error());
    if (rc == 0) st_close(&st);
}

int main(void) {
    test_pickle_opcodes();
    test_zip();
    test_fixtures();
    test_views_and_keys();
    test_hostile();
    printf("test_torch_file: %d passed, %d failed\n", g_test_passed, g_test_failed);
    printf("RESULT %d %d\n", g_test_passed, g_test_failed);
    return g_test_failed ? 1 : 0;
}
