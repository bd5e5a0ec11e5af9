#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "io/torch_file.h"

const char *dtype_name(DType dt) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
    return names[dt];
}

int dtype_size(DType dt) {
    static const int sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
    return sizes[dt];
}

static int dtype_parse(const char *s, DType *out) {
    for (int i = 0; i <= (int)DT_BOOL; i++)
        if (strcmp(s, dtype_name((DType)i)) == 0) { *out = (DType)i; return 0; }
    return SD_FAIL;
}

// ---------------------------------------------------------------------------

static int entry_cmp_begin(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int parse_entry(const char *path, const char *name, const JsonValue *v, size_t data_size, StEntry *e) {
    if (v->type != JSON_OBJECT) return sd_errorf("%s: tensor '%s': header entry is not an object", path, name);
    const char *dt = NULL;
    if (json_get_string(v, "dtype", NULL, &dt) || !dt)
        return sd_errorf("%s: tensor '%s': missing or bad \"dtype\"", path, name);
    if (dtype_parse(dt, &e->dtype))
        return sd_errorf("%s: tensor '%s': unsupported dtype '%s' (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)",
                         path, name, dt);
    const JsonValue *shape = json_get(v, "shape");
    if (!shape || shape->type != JSON_ARRAY) return sd_errorf("%s: tensor '%s': missing \"shape\" list", path, name);
    if (shape->count > ST_MAX_DIMS) return sd_errorf("%s: tensor '%s': %d dims, at most %d", path, name, shape->count, ST_MAX_DIMS);
    e->ndim = shape->count;
    e->numel = 1;
    for (int i = 0; i < shape->count; i++) {
        int64_t d;
        if (json_as_int64(&shape->items[i], &d) || d < 0)
            return sd_errorf("%s: tensor '%s': shape[%d] is not a non-negative whole number", path, name, i);
        e->shape[i] = d;
        if (d > 0 && e->numel > ((int64_t)1 << 50) / d) return sd_errorf("%s: tensor '%s': shape too large", path, name);
        e->numel *= d;
    }
    const JsonValue *off = json_get(v, "data_offsets");
    if (!off || off->type != JSON_ARRAY || off->count != 2)
        return sd_errorf("%s: tensor '%s': \"data_offsets\" must be a list of 2 numbers", path, name);
    int64_t b, en;
    if (json_as_int64(&off->items[0], &b) || json_as_int64(&off->items[1], &en) || b < 0 || en < b)
        return sd_errorf("%s: tensor '%s': bad data_offsets", path, name);
    if ((uint64_t)en > data_size)
        return sd_errorf("%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the data (%zu bytes)", path,
                         name, (long long)b, (long long)en, data_size);
    int64_t want = e->numel * dtype_size(e->dtype);
    if (en - b != want)
        return sd_errorf("%s: tensor '%s': %lld bytes in data_offsets, but shape x %s size needs %lld", path, name,
                         (long long)(en - b), dt, (long long)want);
    e->begin = (size_t)b;
    e->end = (size_t)en;
    return 0;
}

static int st_open_safetensors(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof(*st));
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return sd_errorf("%s: not a regular file", path); }
    size_t size = (size_t)sb.st_size;
    if (size < 8) { close(fd); return sd_errorf("%s: %zu bytes, too short for a safetensors file", path, size); }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return sd_errorf("%s: mmap failed: %s", path, strerror(errno));
    st->map = (unsigned char *)map;
    st->map_size = size;
    st->path = strdup(path);
    st->metadata.type = JSON_NULL;
    if (!st->path) { st_close(st); return sd_errorf("out of memory"); }

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->map[i];
    if (hlen > ST_MAX_HEADER) { st_close(st); return sd_errorf("%s: header length %llu exceeds the %u-byte limit", path, (unsigned long long)hlen, ST_MAX_HEADER); }
    if (hlen > size - 8) { st_close(st); return sd_errorf("%s: header length %llu runs past the end of the file (%zu bytes): truncated?", path, (unsigned long long)hlen, size); }
    JsonValue header;
    if (json_parse((const char *)st->map + 8, (size_t)hlen, path, &header)) { st_close(st); return SD_FAIL; }
    if (header.type != JSON_OBJECT) { json_free(&header); st_close(st); return sd_errorf("%s: header is not a JSON object", path); }
    size_t data_start = 8 + (size_t)hlen, data_size = size - data_start;
    st->entries = (StEntry *)calloc((size_t)(header.count ? header.count : 1), sizeof(StEntry));
    if (!st->entries) { json_free(&header); st_close(st); return sd_errorf("out of memory"); }
    for (int i = 0; i < header.count; i++) {
        if (strcmp(header.keys[i], "__metadata__") == 0) {
            const JsonValue *m = &header.items[i];
            if (m->type != JSON_OBJECT) { json_free(&header); st_close(st); return sd_errorf("%s: __metadata__ is not an object", path); }
            for (int k = 0; k < m->count; k++)
                if (m->items[k].type != JSON_STRING) {
                    sd_errorf("%s: __metadata__ value '%s' is not a string", path, m->keys[k]);
                    json_free(&header);
                    st_close(st);
                    return SD_FAIL;
                }
            st->metadata = *m;  // take ownership
            memset(&header.items[i], 0, sizeof(JsonValue));
            continue;
        }
        StEntry *e = &st->entries[st->count];
        if (parse_entry(path, header.keys[i], &header.items[i], data_size, e)) { json_free(&header); st_close(st); return SD_FAIL; }
        e->name = header.keys[i];
        header.keys[i] = NULL;  // take ownership of the name
        e->data = st->map + data_start + e->begin;
        st->count++;
    }
    json_free(&header);
    // No two tensors may share bytes.
    StEntry **sorted = (StEntry **)malloc((size_t)(st->count ? st->count : 1) * sizeof(StEntry *));
    if (!sorted) { st_close(st); return sd_errorf("out of memory"); }
    for (int i = 0; i < st->count; i++) sorted[i] = &st->entries[i];
    qsort(sorted, (size_t)st->count, sizeof(StEntry *), entry_cmp_begin);
    for (int i = 1; i < st->count; i++) {
        if (sorted[i]->begin < sorted[i - 1]->end) {
            sd_errorf("%s: tensors '%s' and '%s' overlap in the data section", path, sorted[i - 1]->name, sorted[i]->name);
            free(sorted);
            st_close(st);
            return SD_FAIL;
        }
    }
    free(sorted);
    return 0;
}

// A sharded checkpoint: {"metadata": {...}, "weight_map": {"tensor name": "shard file", ...}}
// beside its shards (transformers' *.safetensors.index.json / *.bin.index.json). Every shard
// is opened (each may be safetensors or PyTorch) and their entries listed as one file.
static int st_open_sharded(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof(*st));
    st->metadata.type = JSON_NULL;
    JsonValue index;
    if (json_parse_file(path, &index)) return SD_FAIL;
    const JsonValue *map = json_get(&index, "weight_map");
    if (!map || map->type != JSON_OBJECT || map->count == 0) {
        json_free(&index);
        return sd_errorf("%s: no \"weight_map\" object: not a sharded checkpoint index", path);
    }
    // the folder of the index: shard names are relative to it and may not leave it
    size_t dir_len = strlen(path);
    while (dir_len > 0 && path[dir_len - 1] != '/') dir_len--;
    int rc = 0;
    st->path = strdup(path);
    st->shards = (SafeTensors *)calloc((size_t)map->count, sizeof(SafeTensors));
    const char **shard_names = (const char **)calloc((size_t)map->count, sizeof(char *));
    if (!st->path || !st->shards || !shard_names) rc = sd_errorf("out of memory");
    for (int i = 0; i < map->count && !rc; i++) {
        const char *file = map->items[i].string;
        if (map->items[i].type != JSON_STRING || !*file || strchr(file, '/') || !strcmp(file, "..")) {
            rc = sd_errorf("%s: weight_map['%s'] is not a file name in the index's folder", path, map->keys[i]);
            break;
        }
        int known = 0;
        for (int k = 0; k < st->num_shards && !known; k++) known = !strcmp(shard_names[k], file);
        if (known) continue;
        char shard_path[4096];
        if (dir_len + strlen(file) >= sizeof(shard_path)) { rc = sd_errorf("%s: path too long", path); break; }
        memcpy(shard_path, path, dir_len);
        memcpy(shard_path + dir_len, file, strlen(file) + 1);
        if (st_open(&st->shards[st->num_shards], shard_path)) { rc = sd_error_context("%s", path); break; }
        shard_names[st->num_shards++] = file;
    }
    int total = 0;
    for (int k = 0; k < st->num_shards; k++) total += st->shards[k].count;
    if (!rc && !(st->entries = (StEntry *)calloc((size_t)(total ? total : 1), sizeof(StEntry)))) rc = sd_errorf("out of memory");
    for (int k = 0; k < st->num_shards && !rc; k++)
        for (int i = 0; i < st->shards[k].count && !rc; i++) {
            const StEntry *e = &st->shards[k].entries[i];
            if (st_find(st, e->name)) { rc = sd_errorf("%s: tensor '%s' is in two shards", path, e->name); break; }
            st->entries[st->count] = *e;
            if (!(st->entries[st->count].name = strdup(e->name))) { rc = sd_errorf("out of memory"); break; }
            st->count++;
        }
    // every tensor the index names must be in the shard it names
    for (int i = 0; i < map->count && !rc; i++) {
        const StEntry *e = st_find(st, map->keys[i]);
        if (!e) rc = sd_errorf("%s: tensor '%s' is listed in weight_map but not in its shard '%s'", path, map->keys[i],
                               map->items[i].string);
    }
    free(shard_names);
    json_free(&index);
    if (rc) st_close(st);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int st_open(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof(*st));
    if (ends_with(path, ".index.json")) return st_open_sharded(st, path);
    // A PyTorch checkpoint starts with a zip header or a pickle; a safetensors file with an
    // 8-byte header length and then '{'.
    int kind = torch_file_path_kind(path);
    if (kind < 0) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    if (kind == 1) return st_open_torch(st, path, NULL);
    // a PyTorch file name whose content is neither: say what a PyTorch checkpoint should be
    if (kind == 0 && (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".ckpt")))
        return st_open_torch(st, path, NULL);
    return st_open_safetensors(st, path);
}

void st_close(SafeTensors *st) {
    if (st->map) munmap(st->map, st->map_size);
    for (int i = 0; i < st->num_owned; i++) free(st->owned[i]);
    free(st->owned);
    for (int i = 0; i < st->num_shards; i++) st_close(&st->shards[i]);
    free(st->shards);
    for (int i = 0; i < st->count; i++) free(st->entries[i].name);
    free(st->entries);
    json_free(&st->metadata);
    free(st->path);
    memset(st, 0, sizeof(*st));
}

const StEntry *st_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

// Length of the longest common prefix plus suffix: a cheap "nearness".
static int name_score(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), p = 0, s = 0;
    while (p < la && p < lb && a[p] == b[p]) p++;
    while (s < la - p && s < lb - p && a[la - 1 - s] == b[lb - 1 - s]) s++;
    return (int)(p + s);
}

int st_require(const SafeTensors *st, const char *name, const StEntry **out) {
    *out = st_find(st, name);
    if (*out) return 0;
    // the three nearest names
    int best[3] = {-1, -1, -1}, score[3] = {-1, -1, -1};
    for (int i = 0; i < st->count; i++) {
        int s = name_score(name, st->entries[i].name);
        for (int k = 0; k < 3; k++)
            if (s > score[k]) {
                for (int j = 2; j > k; j--) { score[j] = score[j - 1]; best[j] = best[j - 1]; }
                score[k] = s;
                best[k] = i;
                break;
            }
    }
    char near[1024] = "";
    size_t n = 0;
    // stop once full: near + n past the end of the array is not a valid pointer (long names)
    for (int k = 0; k < 3 && best[k] >= 0 && n < sizeof(near); k++)
        n += (size_t)snprintf(near + n, sizeof(near) - n, "%s'%s'", k ? ", " : "", st->entries[best[k]].name);
    return sd_errorf("%s: no tensor named '%s' (%d tensors; nearest: %s)", st->path ? st->path : "(no weights file)",
                     name, st->count, st->count ? near : "none");
}

// The file's elements are little-endian whatever the host's byte order (safetensors, and the
// PyTorch storages read into entries): read byte by byte (on a little-endian host gcc and clang
// make each of these one load).
static uint16_t le16(const unsigned char *b) { return (uint16_t)(b[0] | (b[1] << 8)); }
static uint32_t le32(const unsigned char *b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static uint64_t le64(const unsigned char *b) { return (uint64_t)le32(b) | ((uint64_t)le32(b + 4) << 32); }

// 1 on a little-endian host: only there may an F32 tensor's bytes be used in place.
static int host_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

int st_entry_to_f32(const StEntry *e, float *dst) {
    const unsigned char *p = e->data;
    const int64_t n = e->numel;
    // One loop per dtype (not a switch per element), the float ones over the threads for big
    // tensors (a cached f16 feature file is ~10 M values): each element alone, so the same bits.
    switch (e->dtype) {
    case DT_F32:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = le32(p + 4 * i);
            memcpy(&dst[i], &u, 4);
        }
        break;
    case DT_F16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) dst[i] = f32_from_f16(le16(p + 2 * i));
        break;
    case DT_BF16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) dst[i] = f32_from_bf16(le16(p + 2 * i));
        break;
    case DT_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t u = le64(p + 8 * i);
            double v;
            memcpy(&v, &u, 8);
            dst[i] = (float)v;
        }
        break;
    case DT_I64: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int64_t)le64(p + 8 * i); break;
    case DT_I32: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)le32(p + 4 * i); break;
    case DT_I16: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int16_t)le16(p + 2 * i); break;
    case DT_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i]; break;
    case DT_U8: case DT_BOOL: for (int64_t i = 0; i < n; i++) dst[i] = (float)p[i]; break;
    }
    return 0;
}

int st_entry_to_i64(const SafeTensors *st, const StEntry *e, int64_t *dst) {
    const unsigned char *p = e->data;
    for (int64_t i = 0; i < e->numel; i++) {
        switch (e->dtype) {
        case DT_I64: dst[i] = (int64_t)le64(p + 8 * i); break;
        case DT_I32: dst[i] = (int32_t)le32(p + 4 * i); break;
        case DT_I16: dst[i] = (int16_t)le16(p + 2 * i); break;
        case DT_I8: dst[i] = (int8_t)p[i]; break;
        case DT_U8: case DT_BOOL: dst[i] = p[i]; break;
        default: return sd_errorf("%s: tensor '%s' is %s, expected an integer dtype", st->path, e->name, dtype_name(e->dtype));
        }
    }
    return 0;
}

int st_load(const SafeTensors *st, const char *name, int ndim, const int *shape, Tensor *out) {
    memset(out, 0, sizeof(*out));
    const StEntry *e;
    if (st_require(st, name, &e)) return SD_FAIL;
    if (e->ndim > TENSOR_MAX_DIMS)
        return sd_errorf("%s: tensor '%s' has %d dims, at most %d supported", st->path, name, e->ndim, TENSOR_MAX_DIMS);
    if (shape) {
        int ok = e->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = e->shape[i] == shape[i];
        if (!ok) {
            char got[128] = "", want[128] = "";
            size_t a = 0, b = 0;
            for (int i = 0; i < e->ndim; i++) a += (size_t)snprintf(got + a, sizeof(got) - a, i ? ", %lld" : "%lld", (long long)e->shape[i]);
            for (int i = 0; i < ndim; i++) b += (size_t)snprintf(want + b, sizeof(want) - b, i ? ", %d" : "%d", shape[i]);
            return sd_errorf("%s: tensor '%s' has shape (%s), expected (%s)", st->path, name, got, want);
        }
    }
    out->ndim = e->ndim;
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] > 2147483647) return sd_errorf("%s: tensor '%s': dimension too large", st->path, name);
        out->shape[i] = (int)e->shape[i];
    }
    if (e->dtype == DT_F32 && ((uintptr_t)e->data % 4) == 0 && host_little_endian()) {
        out->data = (float *)(uintptr_t)e->data;  // read-only mapping: callers must not write
        out->owns_data = 0;
        return 0;
    }
    out->data = (float *)malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
    if (!out->data) return sd_errorf("%s: out of memory loading '%s'", st->path, name);
    out->owns_data = 1;
    return st_entry_to_f32(e, out->data);
}

const char *st_metadata(const SafeTensors *st, const char *key) {
    const JsonValue *v = json_get(&st->metadata, key);
    return v && v->type == JSON_STRING ? v->string : NULL;
}

char *st_metadata_json(const SafeTensors *st) {
    size_t cap = 1024;
    for (int k = 0; k < st->metadata.count; k++)
        cap += 6 * (strlen(st->metadata.keys[k]) + strlen(st->metadata.items[k].string)) + 16;  // \u00XX at worst
    char *text = (char *)malloc(cap), *esc = (char *)malloc(cap);
    if (!text || !esc) {
        free(text);
        free(esc);
        return NULL;
    }
    size_t n = (size_t)snprintf(text, cap, "{\n");
    for (int k = 0; k < st->metadata.count; k++) {
        json_escape(st->metadata.keys[k], esc, cap);
        n += (size_t)snprintf(text + n, cap - n, "%s  %s: ", k ? ",\n" : "", esc);
        json_escape(st->metadata.items[k].string, esc, cap);
        n += (size_t)snprintf(text + n, cap - n, "%s", esc);
    }
    snprintf(text + n, cap - n, "\n}\n");
    free(esc);
    return text;
}

// ---------------------------------------------------------------------------

StWriteEntry st_entry_f32(const char *name, const Tensor *t) {
    StWriteEntry e;
    memset(&e, 0, sizeof(e));
    e.name = name;
    e.dtype = DT_F32;
    e.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) e.shape[i] = t->shape[i];
    e.data = t->data;
    return e;
}

// A growable string for the header.
typedef struct { char *s; size_t n, cap; } StrBuf;

static int sb_append(StrBuf *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + len + 1 > cap) cap *= 2;
        char *p = (char *)realloc(b->s, cap);
        if (!p) return SD_FAIL;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
    return 0;
}

static int sb_string(StrBuf *b, const char *s) {
    size_t need = json_escape(s, NULL, 0);
    char *tmp = (char *)malloc(need + 1);
    if (!tmp) return SD_FAIL;
    json_escape(s, tmp, need + 1);
    int rc = sb_append(b, tmp, need);
    free(tmp);
    return rc;
}

int st_write(const char *path, const StWriteEntry *entries, int n, const char *const *metadata_keys,
             const char *const *metadata_values, int n_meta) {
    return st_write_aligned(path, entries, n, metadata_keys, metadata_values, n_meta, 8);
}

int st_write_aligned(const char *path, const StWriteEntry *entries, int n, const char *const *metadata_keys,
                     const char *const *metadata_values, int n_meta, int align) {
    StrBuf h = {0};
    size_t offset = 0;
    int fail = sb_append(&h, "{", 1);
    if (n_meta > 0) {
        fail |= sb_append(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < n_meta; i++) {
            if (i) fail |= sb_append(&h, ",", 1);
            fail |= sb_string(&h, metadata_keys[i]);
            fail |= sb_append(&h, ":", 1);
            fail |= sb_string(&h, metadata_values[i]);
        }
        fail |= sb_append(&h, "}", 1);
    }
    for (int i = 0; i < n; i++) {
        const StWriteEntry *e = &entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        size_t bytes = (size_t)numel * (size_t)dtype_size(e->dtype);
        char buf[512];
        if (i || n_meta > 0) fail |= sb_append(&h, ",", 1);
        fail |= sb_string(&h, e->name);
        int len = snprintf(buf, sizeof(buf), ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(e->dtype));
        fail |= sb_append(&h, buf, (size_t)len);
        for (int d = 0; d < e->ndim; d++) {
            len = snprintf(buf, sizeof(buf), d ? ",%lld" : "%lld", (long long)e->shape[d]);
            fail |= sb_append(&h, buf, (size_t)len);
        }
        len = snprintf(buf, sizeof(buf), "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        fail |= sb_append(&h, buf, (size_t)len);
        offset += bytes;
    }
    fail |= sb_append(&h, "}", 1);
    while (!fail && ((8 + h.n) % (size_t)align) != 0) fail |= sb_append(&h, " ", 1);  // the data starts aligned
    if (fail) { free(h.s); return sd_errorf("%s: out of memory building the header", path); }

    size_t plen = strlen(path);
    char *tmp = (char *)malloc(plen + 32);
    if (!tmp) { free(h.s); return sd_errorf("out of memory"); }
    snprintf(tmp, plen + 32, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { int e = errno; free(h.s); free(tmp); return sd_errorf("%s: cannot create: %s", path, strerror(e)); }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)h.n >> (8 * i)) & 0xFF);
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.s, 1, h.n, f) == h.n;
    free(h.s);
    for (int i = 0; ok && i < n; i++) {
        const StWriteEntry *e = &entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        if (e->dtype == DT_F16 && !e->raw) {
            const float *src = (const float *)e->data;
            for (int64_t k = 0; ok && k < numel; k++) {
                uint16_t v = f16_from_f32(src[k]);
                unsigned char b[2] = {(unsigned char)(v & 0xFF), (unsigned char)(v >> 8)};
                ok = fwrite(b, 1, 2, f) == 2;
            }
        } else if (e->raw || host_little_endian() || dtype_size(e->dtype) == 1) {  // bytes as they are
            size_t bytes = (size_t)numel * (size_t)dtype_size(e->dtype);
            ok = bytes == 0 || fwrite(e->data, 1, bytes, f) == bytes;
        } else {  // big-endian host: each element's bytes reversed, a buffer at a time
            const unsigned char *src = (const unsigned char *)e->data;
            const size_t size = (size_t)dtype_size(e->dtype), per = 4096 / size;
            unsigned char buf[4096];
            for (int64_t k = 0; ok && k < numel; k += (int64_t)per) {
                size_t m = numel - k < (int64_t)per ? (size_t)(numel - k) : per;
                for (size_t j = 0; j < m; j++)
                    for (size_t b = 0; b < size; b++) buf[j * size + b] = src[(k + (int64_t)j) * size + size - 1 - b];
                ok = fwrite(buf, 1, m * size, f) == m * size;
            }
        }
    }
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0 || errno == EINVAL) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return sd_errorf("%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

int st_write_copy(const SafeTensors *st, const char *path, const char *const *metadata_keys,
                  const char *const *metadata_values, int n_meta) {
    StWriteEntry *w = (StWriteEntry *)calloc((size_t)(st->count ? st->count : 1), sizeof(StWriteEntry));
    if (!w) return sd_errorf("out of memory");
    for (int i = 0; i < st->count; i++) {
        const StEntry *e = &st->entries[i];
        w[i].name = e->name;
        w[i].dtype = e->dtype;
        w[i].ndim = e->ndim;
        for (int d = 0; d < e->ndim; d++) w[i].shape[d] = e->shape[d];
        w[i].data = e->data;
        w[i].raw = 1;
    }
    int rc = st_write(path, w, st->count, metadata_keys, metadata_values, n_meta);
    free(w);
    return rc;
}

void st_release_pages(const SafeTensors *st, const void *p, size_t bytes) {
#ifdef MADV_DONTNEED
    const unsigned char *lo = (const unsigned char *)p, *hi = lo + bytes;
    for (int i = 0; i < st->num_shards; i++) st_release_pages(&st->shards[i], p, bytes);
    if (!st->map || lo < st->map || hi > st->map + st->map_size) return;
    if (bytes < ((size_t)1 << 16)) return;  // at most a page or two to gain: not worth a system call
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    // only whole pages: a neighbouring tensor may share the first or last one
    uintptr_t first = ((uintptr_t)lo + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t last = (uintptr_t)hi / (uintptr_t)page * (uintptr_t)page;
    // MAP_PRIVATE, never written: the pages come back from the file if read again
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
#else
    (void)st;
    (void)p;
    (void)bytes;
#endif
}
