// HDF5 reader tests. Every file of tests/data/hdf5 was written by h5py (HDF5 1.10, Debian),
// with its expected arrays written by numpy (weights_tools/make_hdf5_test_data.py,
// tests/data/hdf5/index.json): each dataset's dtype, byte order, shape and bytes, each
// attribute's value, and the datasets the reader must refuse with the feature it names.
// Then the five real GEO-Bench samples of ../shared/data/geobench against their unpacked
// arrays (../shared/data/satellite/chesapeake), and damaged files (every truncation of a
// small file, byte flips) that must fail cleanly or read, never crash (run under ASan).
#include "tests/test_util.h"

#include <math.h>
#include <stdint.h>

#include "core/error.h"
#include "io/file.h"
#include "io/hdf5.h"
#include "io/json.h"
#include "io/npy.h"

#define DATA "tests/data/hdf5"

// numpy's dtype.str ("<i2", "|u1", ">f8") as (NpyDtype, big-endian).
static int parse_dtype(const char *s, NpyDtype *t, int *big) {
    static const char *codes[] = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"};
    for (int i = 0; i < NPY_DTYPE_COUNT; i++)
        if (strcmp(s + 1, codes[i]) == 0) {
            *t = (NpyDtype)i;
            *big = s[0] == '>';
            return 0;
        }
    return -1;
}

static void check_dataset(const H5File *f, const JsonValue *e) {
    const char *name = NULL, *dtype = NULL, *npy = NULL;
    json_get_string(e, "name", NULL, &name);
    json_get_string(e, "dtype", NULL, &dtype);
    json_get_string(e, "npy", NULL, &npy);
    const H5Dataset *d = h5_find(f, name);
    CHECK(d != NULL, "%s: dataset '%s' not found", f->path, name);
    if (!d) return;
    NpyDtype t;
    int big;
    CHECK(parse_dtype(dtype, &t, &big) == 0 && d->type.npy == t && (d->type.size == 1 || d->type.big_endian == big),
          "%s/%s: dtype %s, got npy %d big-endian %d", f->path, name, dtype, d->type.npy, d->type.big_endian);
    const JsonValue *shape = json_get(e, "shape");
    int same_shape = shape && shape->count == d->ndim;
    for (int i = 0; same_shape && i < d->ndim; i++) same_shape = (uint64_t)shape->items[i].number == d->shape[i];
    CHECK(same_shape, "%s/%s: shape differs (ndim %d)", f->path, name, d->ndim);
    char path[512];
    snprintf(path, sizeof(path), DATA "/%s", npy);
    NpyArray want;
    if (npy_read(path, &want)) {
        CHECK(0, "%s: %s", path, sd_last_error());
        return;
    }
    void *got = NULL;
    int rc = h5_read(f, d, &got);
    CHECK(rc == 0, "%s/%s: %s", f->path, name, sd_last_error());
    if (rc == 0) {
        CHECK((uint64_t)want.count == d->count && want.dtype == d->type.npy &&
                  memcmp(got, want.data, (size_t)want.count * (size_t)want.itemsize) == 0,
              "%s/%s: values differ from %s", f->path, name, path);
        float *f32 = NULL;
        CHECK(h5_read_f32(f, d, &f32) == 0, "%s/%s: read as float32: %s", f->path, name, sd_last_error());
        free(f32);
    }
    free(got);
    npy_free(&want);
}

static void check_attr(const H5File *f, const JsonValue *e) {
    const char *obj = NULL, *name = NULL, *str = NULL, *npy = NULL;
    json_get_string(e, "object", NULL, &obj);
    json_get_string(e, "name", NULL, &name);
    json_get_string(e, "string", NULL, &str);
    json_get_string(e, "npy", NULL, &npy);
    const H5Attr *a = NULL;
    if (strcmp(obj, "/") == 0) a = h5_find_attr(f->root_attrs, f->num_root_attrs, name);
    else {
        const H5Dataset *d = h5_find(f, obj);
        if (d) a = h5_find_attr(d->attrs, d->num_attrs, name);
    }
    CHECK(a != NULL, "%s: attribute '%s' of '%s' not found", f->path, name, obj);
    if (!a) return;
    if (str) {
        int ok = a->str && a->count == 1 && strlen(str) == a->str_len[0] &&
                 memcmp(a->str[0], str, a->str_len[0]) == 0;
        CHECK(ok, "%s: attribute '%s' of '%s': got '%s', expected '%s'", f->path, name, obj,
              a->str ? a->str[0] : "(no string)", str);
    } else {
        char path[512];
        snprintf(path, sizeof(path), DATA "/%s", npy);
        NpyArray want;
        if (npy_read(path, &want)) {
            CHECK(0, "%s: %s", path, sd_last_error());
            return;
        }
        CHECK(a->data && a->type.npy == want.dtype && (uint64_t)want.count == a->count &&
                  a->ndim == want.ndim && memcmp(a->data, want.data, (size_t)want.count * (size_t)want.itemsize) == 0,
              "%s: attribute '%s' of '%s' differs from %s", f->path, name, obj, path);
        npy_free(&want);
    }
}

static void check_refused(const H5File *f, const JsonValue *e) {
    const char *name = NULL, *feature = NULL;
    json_get_string(e, "name", NULL, &name);
    json_get_string(e, "feature", NULL, &feature);
    const H5Dataset *d = h5_find(f, name);
    CHECK(d != NULL, "%s: dataset '%s' (to be refused) not listed", f->path, name);
    if (!d) return;
    void *got = NULL;
    int rc = h5_read(f, d, &got);
    const char *msg = sd_last_error();
    CHECK(rc != 0 && strstr(msg, f->path) && strstr(msg, name) && strstr(msg, feature),
          "%s/%s: expected a refusal naming the file, dataset and '%s', got rc %d '%s'", f->path, name, feature, rc,
          msg);
    free(got);
}

static void test_index(void) {
    JsonValue idx;
    if (json_parse_file(DATA "/index.json", &idx)) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    for (int i = 0; i < idx.count; i++) {
        char path[512];
        snprintf(path, sizeof(path), DATA "/%s", idx.keys[i]);
        H5File f;
        if (h5_open(&f, path)) {
            CHECK(0, "%s", sd_last_error());
            continue;
        }
        const JsonValue *e = &idx.items[i];
        const JsonValue *ds = json_get(e, "datasets"), *at = json_get(e, "attributes"), *rf = json_get(e, "refused");
        int expected = ds->count + rf->count;
        CHECK(f.num_datasets == expected, "%s: %d datasets listed, expected %d", path, f.num_datasets, expected);
        for (int k = 0; k < ds->count; k++) check_dataset(&f, &ds->items[k]);
        for (int k = 0; k < at->count; k++) check_attr(&f, &at->items[k]);
        for (int k = 0; k < rf->count; k++) check_refused(&f, &rf->items[k]);
        h5_close(&f);
    }
    json_free(&idx);
}

// The real GEO-Bench samples: float32 bands k/255 of the uint8 image (R, G, B, NIR) and the
// int64 label of the uint8 mask.
static void test_geobench(void) {
    static const char *ids[] = {"id_000051", "id_000138", "id_000181", "id_000184", "id_000367"};
    static const char *bands[] = {"Red", "Green", "Blue", "NearInfrared"};
    const char *roots[] = {"/work/shared/data", "../shared/data"};
    const char *root = NULL;
    for (int i = 0; i < 2 && !root; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/geobench/cvpr_chesapeake_landcover/id_000051.hdf5", roots[i]);
        FILE *fp = fopen(p, "rb");
        if (fp) {
            fclose(fp);
            root = roots[i];
        }
    }
    if (!root) {
        printf("SKIP test_geobench: ../shared/data/geobench not found\n");
        return;
    }
    for (int s = 0; s < 5; s++) {
        char path[512], ipath[512], lpath[512];
        snprintf(path, sizeof(path), "%s/geobench/cvpr_chesapeake_landcover/%s.hdf5", root, ids[s]);
        snprintf(ipath, sizeof(ipath), "%s/satellite/chesapeake/%s.image.npy", root, ids[s]);
        snprintf(lpath, sizeof(lpath), "%s/satellite/chesapeake/%s.label.npy", root, ids[s]);
        H5File f;
        NpyArray img, lab;
        if (h5_open(&f, path)) {
            CHECK(0, "%s", sd_last_error());
            continue;
        }
        CHECK(npy_read(ipath, &img) == 0 && npy_read(lpath, &lab) == 0, "%s", sd_last_error());
        CHECK(f.num_datasets == 5, "%s: %d datasets", path, f.num_datasets);
        for (int b = 0; b < 4; b++) {
            const H5Dataset *d = h5_find(&f, bands[b]);
            float *v = NULL;
            CHECK(d && d->type.npy == NPY_FLOAT32 && d->ndim == 2 && d->shape[0] == 256 && d->shape[1] == 256,
                  "%s: band %s", path, bands[b]);
            if (!d || h5_read_f32(&f, d, &v)) {
                CHECK(0, "%s: %s", path, sd_last_error());
                continue;
            }
            const uint8_t *k = (const uint8_t *)img.data + (size_t)b * 65536;
            int bad = 0;
            for (int i = 0; i < 65536; i++) bad += fabsf(v[i] - k[i] / 255.0f) > 1e-6f;
            CHECK(bad == 0, "%s: band %s: %d pixels differ from %s", path, bands[b], bad, ipath);
            free(v);
        }
        const H5Dataset *l = h5_find(&f, "label");
        int64_t *lv = NULL;
        CHECK(l && l->type.npy == NPY_INT64 && h5_read(&f, l, (void **)&lv) == 0, "%s: label: %s", path,
              sd_last_error());
        if (lv) {
            int bad = 0;
            for (int i = 0; i < 65536; i++) bad += lv[i] != ((const uint8_t *)lab.data)[i];
            CHECK(bad == 0, "%s: label: %d pixels differ from %s", path, bad, lpath);
        }
        free(lv);
        const H5Attr *p = h5_find_attr(f.root_attrs, f.num_root_attrs, "pickle");
        CHECK(p && p->type.kind == H5T_VLEN_STRING && p->str && strncmp(p->str[0], "b'\\x80\\x04", 10) == 0,
              "%s: attribute 'pickle'", path);
        npy_free(&img);
        npy_free(&lab);
        h5_close(&f);
    }
}

// Opens and reads everything; returns 0 or -1 (used on damaged files: must not crash).
static int read_all(const char *name, const uint8_t *buf, size_t len) {
    H5File f;
    if (h5_open_mem(&f, name, buf, len)) return -1;
    int rc = 0;
    for (int i = 0; i < f.num_datasets; i++) {
        void *v = NULL;
        if (h5_read(&f, &f.datasets[i], &v)) rc = -1;
        free(v);
    }
    h5_close(&f);
    return rc;
}

static void test_damaged(void) {
    static const char *files[] = {DATA "/dtypes_earliest.h5", DATA "/dtypes_latest.h5",
                                  "tests/data/geobench/m-tiny-seg/s000_m-tiny-seg.hdf5"};
    for (int k = 0; k < 3; k++) {
        uint8_t *buf;
        size_t len;
        if (read_whole_file(files[k], &buf, &len, 0)) {
            CHECK(0, "%s", sd_last_error());
            continue;
        }
        CHECK(read_all(files[k], buf, len) == 0, "%s: whole file: %s", files[k], sd_last_error());
        // every 5th truncation
        int failed = 0, n = 0;
        size_t step = 5;
        for (size_t cut = 0; cut < len; cut += step, n++) {
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, buf, cut);
            failed += read_all("truncated", copy, cut) != 0;
            free(copy);
        }
        CHECK(failed > 0, "%s: no truncation failed", files[k]);
        // byte flips (deterministic positions and values)
        unsigned long long s = 12345 + (unsigned long long)k;
        for (int t = 0; t < 1500; t++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, buf, len);
            for (int j = 0; j < 4; j++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                copy[(s >> 16) % len] ^= (uint8_t)(1u << ((s >> 8) & 7));
            }
            read_all("flipped", copy, len);
            free(copy);
        }
        free(buf);
    }
    // fuzz_hdf5 found: a shuffle filter declaring an element size of 2^32-1 looped 4 billion times
    // per chunk (now a no-op, as H5Zshuffle.c does when the element size exceeds the chunk)
    uint8_t *fz;
    size_t fzlen;
    if (read_whole_file(DATA "/fuzz_shuffle_elemsize.h5", &fz, &fzlen, 0) == 0) {
        H5File f;
        int ok = h5_open_mem(&f, "fuzz_shuffle_elemsize.h5", fz, fzlen) == 0;
        const H5Dataset *g = ok ? h5_find(&f, "g") : NULL;
        CHECK(g && g->num_filters == 3 && g->filters[0].id == 2 && g->filters[0].values[0] == 4294967295u,
              "fuzz_shuffle_elemsize.h5: dataset 'g' with shuffle(2^32-1)");
        void *v = NULL;
        if (g) h5_read(&f, g, &v);  // returns at once (data or an error), no 4-billion-step loop
        free(v);
        if (ok) h5_close(&f);
        free(fz);
    } else {
        CHECK(0, "%s", sd_last_error());
    }
    // not HDF5, and a bad superblock version
    uint8_t junk[64] = "\x89HDF\r\n\x1a\n\x07";
    CHECK(read_all("junk", junk, sizeof(junk)) == -1 && strstr(sd_last_error(), "superblock version 7"), "%s",
          sd_last_error());
    CHECK(read_all("text", (const uint8_t *)"hello", 5) == -1 && strstr(sd_last_error(), "not an HDF5 file"), "%s",
          sd_last_error());
}

int main(void) {
    test_index();
    test_geobench();
    test_damaged();
    return test_report("test_hdf5");
}
