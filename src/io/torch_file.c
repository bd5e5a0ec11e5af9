// PyTorch checkpoint reader (see torch_file.h). References: torch/serialization.py
// (_save, _load, _legacy_load, persistent_id), torch/_utils.py (_rebuild_tensor_v2,
// _rebuild_parameter), caffe2/serialize/inline_container.cc (the zip layout).
#include "io/torch_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

// The legacy format's first pickle: torch.serialization.MAGIC_NUMBER, an 80-bit int.
static const unsigned char LEGACY_MAGIC[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
enum { LEGACY_PROTOCOL_VERSION = 1001, TORCH_MAX_UNUSED_RECORDS = 1000 };

int torch_file_sniff(const unsigned char *buf, size_t size) {
    if (zip_sniff(buf, size)) return 1;
    // legacy: PROTO 2, then LONG1 of 10 bytes holding the magic number
    return size >= 14 && buf[0] == 0x80 && buf[1] == 0x02 && buf[2] == 0x8a && buf[3] == 10 &&
           memcmp(buf + 4, LEGACY_MAGIC, 10) == 0;
}

// ---------------------------------------------------------------------------
// Storages and tensors.

typedef struct {
    const char *name;  // torch.<name>
    DType dtype;
} StorageClass;

static const StorageClass STORAGE_CLASSES[] = {
    {"FloatStorage", DT_F32}, {"HalfStorage", DT_F16},  {"BFloat16Storage", DT_BF16}, {"DoubleStorage", DT_F64},
    {"LongStorage", DT_I64},  {"IntStorage", DT_I32},   {"ShortStorage", DT_I16},     {"CharStorage", DT_I8},
    {"ByteStorage", DT_U8},   {"BoolStorage", DT_BOOL}, {"UntypedStorage", DT_U8},
};

static int storage_dtype(const PyValue *cls, DType *out) {
    if (cls && cls->kind == PY_GLOBAL && strncmp(cls->s, "torch.", 6) == 0)
        for (size_t i = 0; i < sizeof(STORAGE_CLASSES) / sizeof(STORAGE_CLASSES[0]); i++)
            if (strcmp(cls->s + 6, STORAGE_CLASSES[i].name) == 0) { *out = STORAGE_CLASSES[i].dtype; return 0; }
    char what[160];
    py_repr(cls, what, sizeof(what));
    return sd_errorf("storage type %s is not supported (Float, Half, BFloat16, Double, Long, Int, Short, Char, Byte, "
                     "Bool storages are)",
                     what);
}

typedef struct {
    TorchFile *tf;
    char prefix[256];     // zip: the archive's top folder
    unsigned char *used;  // zip: 1 for each entry a storage read
    // legacy: storages waiting for their data, which follows the pickles
    PyValue **pending;
    int num_pending, pending_cap;
} LoadCtx;

static int get_int(const PyValue *v, const char *what, int64_t *out) {
    if (!v || (v->kind != PY_INT && v->kind != PY_BOOL)) return sd_errorf("%s is not an integer", what);
    *out = v->i;
    return 0;
}

// persistent_id of a storage. zip: ('storage', storage_type, key, location, numel);
// legacy: ('storage', storage_type, root_key, location, numel, view_metadata).
static int persistent_load(void *vctx, PickleDoc *doc, PyValue *pid, PyValue **out) {
    LoadCtx *ctx = (LoadCtx *)vctx;
    TorchFile *tf = ctx->tf;
    if (pid->kind != PY_TUPLE || pid->count < 5 || pid->items[0]->kind != PY_STR || strcmp(pid->items[0]->s, "storage"))
        return sd_errorf("a persistent id that is not a ('storage', type, key, location, numel) tuple");
    const PyValue *key = pid->items[2];
    if (key->kind != PY_STR || key->len == 0 || key->len > 200 || strchr(key->s, '/'))
        return sd_errorf("a storage key that is not a short name");
    DType dt = DT_F32;
    if (storage_dtype(pid->items[1], &dt)) return SD_FAIL;
    int64_t numel = 0;
    if (get_int(pid->items[4], "a storage's element count", &numel)) return SD_FAIL;
    if (numel < 0 || numel > ((int64_t)1 << 50)) return sd_errorf("storage '%s': bad element count %lld", key->s, (long long)numel);
    PyValue *s = py_new(doc, PY_STORAGE);
    if (!s || !(s->s = strdup(key->s))) return sd_errorf("out of memory");
    s->len = key->len;
    s->dtype = (int)dt;
    s->numel = numel;
    uint64_t need = (uint64_t)numel * (uint64_t)dtype_size(dt);
    if (tf->is_zip) {
        char name[512];
        snprintf(name, sizeof(name), "%s/data/%s", ctx->prefix, key->s);
        const ZipEntry *e = zip_find(&tf->zip, name);
        if (!e) return sd_errorf("storage '%s': the archive has no record '%s'", key->s, name);
        if (zip_entry_data(&tf->zip, e, &s->data, &s->data_bytes)) return SD_FAIL;
        ctx->used[e - tf->zip.entries] = 1;
        if (s->data_bytes < need)
            return sd_errorf("storage '%s': %lld %s elements need %llu bytes, its record '%s' has %llu", key->s,
                             (long long)numel, dtype_name(dt), (unsigned long long)need, name,
                             (unsigned long long)s->data_bytes);
    } else {
        // legacy: the data comes later; an old-style storage view names (view_key, offset, size)
        if (pid->count >= 6 && pid->items[5]->kind == PY_TUPLE) {
            const PyValue *view = pid->items[5];
            int64_t off = 0, size = 0;
            if (view->count != 3 || get_int(view->items[1], "a storage view's offset", &off) ||
                get_int(view->items[2], "a storage view's size", &size) || off < 0 || size < 0 || size > ((int64_t)1 << 50))
                return sd_errorf("storage '%s': bad view metadata", key->s);
            s->i = off;  // element offset into the root storage
            s->numel = size;
        }
        if (ctx->num_pending == ctx->pending_cap) {
            int cap = ctx->pending_cap ? 2 * ctx->pending_cap : 64;
            PyValue **p = (PyValue **)realloc(ctx->pending, (size_t)cap * sizeof(PyValue *));
            if (!p) return sd_errorf("out of memory");
            ctx->pending = p;
            ctx->pending_cap = cap;
        }
        ctx->pending[ctx->num_pending++] = s;
    }
    *out = s;
    return 0;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
// and the older _rebuild_tensor(storage, storage_offset, size, stride).
static int rebuild_tensor(PickleDoc *doc, const PyValue *args, PyValue **out) {
    if (args->count < 4) return sd_errorf("_rebuild_tensor_v2 with %d arguments (at least 4)", args->count);
    const PyValue *storage = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (storage->kind != PY_STORAGE) return sd_errorf("a tensor whose storage is a %s, not a storage", py_kind_name(storage->kind));
    int64_t offset = 0;
    if (get_int(args->items[1], "a tensor's storage offset", &offset)) return SD_FAIL;
    if (size->kind != PY_TUPLE || stride->kind != PY_TUPLE) return sd_errorf("a tensor's size or stride is not a tuple");
    if (size->count != stride->count)
        return sd_errorf("a tensor with %d sizes but %d strides", size->count, stride->count);
    if (size->count > PY_TENSOR_MAX_DIMS) return sd_errorf("a tensor with %d dimensions (at most %d)", size->count, PY_TENSOR_MAX_DIMS);
    PyValue *t = py_new(doc, PY_TENSOR);
    if (!t) return sd_errorf("out of memory");
    t->storage = (PyValue *)storage;
    t->offset = offset;
    t->ndim = size->count;
    if (offset < 0) return sd_errorf("storage '%s': negative storage offset %lld", storage->s, (long long)offset);
    int64_t numel = 1, last = offset;  // last: the highest element index the view reaches
    for (int d = 0; d < t->ndim; d++) {
        if (get_int(size->items[d], "a tensor size", &t->size[d]) || get_int(stride->items[d], "a tensor stride", &t->stride[d]))
            return SD_FAIL;
        if (t->size[d] < 0) return sd_errorf("storage '%s': negative size %lld", storage->s, (long long)t->size[d]);
        if (t->stride[d] < 0)
            return sd_errorf("storage '%s': negative stride %lld (not supported)", storage->s, (long long)t->stride[d]);
        if (t->size[d] > 0 && numel > ((int64_t)1 << 50) / t->size[d])
            return sd_errorf("storage '%s': a tensor of more than 2^50 elements", storage->s);
        numel *= t->size[d];
    }
    if (numel > 0) {
        for (int d = 0; d < t->ndim; d++) {
            if (t->stride[d] > ((int64_t)1 << 50)) return sd_errorf("storage '%s': stride %lld too large", storage->s, (long long)t->stride[d]);
            last += (t->size[d] - 1) * t->stride[d];
            if (last > ((int64_t)1 << 52)) break;
        }
        if (last >= storage->numel)
            return sd_errorf("storage '%s': a tensor view (offset %lld, reaching element %lld) runs past its storage "
                             "of %lld elements",
                             storage->s, (long long)offset, (long long)last, (long long)storage->numel);
    }
    *out = t;
    return 0;
}

// Globals under torch.*: the storage classes, the tensor rebuild functions and the plain
// descriptions a checkpoint may hold (torch.Size, torch.device, dtypes, layouts, memory formats,
// module and optimizer classes of a whole-model save, left inert) are accepted; functions that
// load, run or compile code (torch.load, torch.hub.*, torch.jit.*, torch.ops.*, ...) are refused.
static int torch_check_global(void *vctx, const char *module, const char *name) {
    (void)vctx;
    if (strcmp(module, "torch") && strncmp(module, "torch.", 6)) return 0;
    static const char *const refused_modules[] = {"torch.hub", "torch.jit", "torch.ops", "torch.serialization",
                                                  "torch.utils.cpp_extension", "torch.distributed", "torch.multiprocessing",
                                                  "torch.package", "torch._C", "torch.cuda", "torch.backends",
                                                  "torch.library", "torch.fx", "torch.compiler", "torch._dynamo"};
    for (size_t i = 0; i < sizeof(refused_modules) / sizeof(refused_modules[0]); i++) {
        size_t n = strlen(refused_modules[i]);
        if (!strncmp(module, refused_modules[i], n) && (module[n] == '\0' || module[n] == '.')) return 1;
    }
    if (strcmp(module, "torch") != 0) return 0;  // torch._utils, torch.nn.*, torch.optim.*: checked when called
    // torch.<name>: only data, never a function
    static const char *const data_names[] = {
        "Size", "device", "dtype", "layout", "memory_format", "strided", "sparse_coo", "channels_last",
        "contiguous_format", "preserve_format", "float32", "float", "float16", "half", "bfloat16", "float64",
        "double", "int64", "long", "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128",
        "Tensor", "finfo", "iinfo"};
    size_t len = strlen(name);
    if (len > 7 && !strcmp(name + len - 7, "Storage")) return 0;
    for (size_t i = 0; i < sizeof(data_names) / sizeof(data_names[0]); i++)
        if (!strcmp(name, data_names[i])) return 0;
    return 1;
}

static int torch_reduce(void *vctx, PickleDoc *doc, const PyValue *callable, const PyValue *args, PyValue **out) {
    (void)vctx;
    if (callable->kind != PY_GLOBAL || strncmp(callable->s, "torch.", 6) != 0) return 0;
    const char *name = callable->s;
    if (!strcmp(name, "torch._utils._rebuild_tensor_v2") || !strcmp(name, "torch._utils._rebuild_tensor"))
        return rebuild_tensor(doc, args, out) ? SD_FAIL : 1;
    // _rebuild_parameter(data, requires_grad, backward_hooks[, state]): the tensor itself
    if (!strcmp(name, "torch._utils._rebuild_parameter") || !strcmp(name, "torch._utils._rebuild_parameter_with_state")) {
        if (args->count < 1 || args->items[0]->kind != PY_TENSOR) return sd_errorf("%s without a tensor", name);
        *out = args->items[0];
        return 1;
    }
    // _rebuild_from_type_v2(func, new_type, args, state): a tensor subclass; build it with func
    if (!strcmp(name, "torch._tensor._rebuild_from_type_v2")) {
        if (args->count < 3 || args->items[2]->kind != PY_TUPLE) return sd_errorf("%s with bad arguments", name);
        int rc = torch_reduce(vctx, doc, args->items[0], args->items[2], out);
        return rc;
    }
    static const char *const unsupported[] = {"torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_sparse_csr_tensor",
                                              "torch._utils._rebuild_qtensor", "torch._utils._rebuild_device_tensor_from_numpy",
                                              "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
                                              "torch._utils._rebuild_nested_tensor"};
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
        if (!strcmp(name, unsupported[i])) return sd_errorf("%s: this kind of tensor is not supported (dense strided tensors are)", name);
    return 0;  // torch.Size, torch.device, dtypes ...: inert placeholders
}

// ---------------------------------------------------------------------------
// Containers.

static int open_zip(TorchFile *tf, LoadCtx *ctx) {
    if (zip_open(&tf->zip, tf->path, tf->map, tf->map_size)) return SD_FAIL;
    tf->is_zip = 1;
    if (tf->zip.count == 0) return sd_errorf("%s: an empty zip archive, not a PyTorch checkpoint", tf->path);
    // The prefix is the folder of the first entry ("archive/data.pkl" -> "archive").
    char *prefix = ctx->prefix;
    const char *first = tf->zip.entries[0].name, *slash = strchr(first, '/');
    if (!slash || slash == first || (size_t)(slash - first) >= sizeof(ctx->prefix))
        return sd_errorf("%s: a zip archive whose first entry '%s' is not in a folder: not a PyTorch checkpoint", tf->path,
                         first);
    memcpy(prefix, first, (size_t)(slash - first));
    prefix[slash - first] = '\0';
    char name[512];
    snprintf(name, sizeof(name), "%s/byteorder", prefix);
    const ZipEntry *e = zip_find(&tf->zip, name);
    const unsigned char *data;
    uint64_t size;
    if (e) {
        if (zip_entry_data(&tf->zip, e, &data, &size)) return SD_FAIL;
        if (size == 3 && !memcmp(data, "big", 3)) tf->big_endian = 1;
        else if (!(size == 6 && !memcmp(data, "little", 6)))
            return sd_errorf("%s: record '%s' is neither \"little\" nor \"big\"", tf->path, name);
    }
    snprintf(name, sizeof(name), "%s/data.pkl", prefix);
    if (!(e = zip_find(&tf->zip, name)))
        return sd_errorf("%s: a zip archive without '%s': not a PyTorch checkpoint (or not one written by torch.save)",
                         tf->path, name);
    if (zip_entry_data(&tf->zip, e, &data, &size)) return SD_FAIL;
    if (!(ctx->used = (unsigned char *)calloc((size_t)tf->zip.count, 1))) return sd_errorf("out of memory");
    PickleHooks hooks = {ctx, persistent_load, torch_reduce, torch_check_global};
    if (pickle_load(&tf->doc, tf->path, data, (size_t)size, &hooks, &tf->root, NULL)) return SD_FAIL;
    // torch writes data.pkl, byteorder, version (and .data/ records) beside one record per
    // storage: thousands of records no tensor uses are a zip bomb, not a checkpoint
    int unused = 0;
    for (int i = 0; i < tf->zip.count; i++) unused += !ctx->used[i];
    if (unused > TORCH_MAX_UNUSED_RECORDS)
        return sd_errorf("%s: %d of its %d zip entries are records no tensor uses (at most %d expected): refused as a "
                         "zip bomb",
                         tf->path, unused, tf->zip.count, TORCH_MAX_UNUSED_RECORDS);
    return 0;
}

static int open_legacy(TorchFile *tf, LoadCtx *ctx) {
    const unsigned char *p = tf->map, *end = tf->map + tf->map_size;
    size_t used;
    PyValue *v;
    PickleHooks plain = {NULL, NULL, NULL, torch_check_global};  // the small pickles around the object
    if (pickle_load(&tf->doc, tf->path, p, (size_t)(end - p), &plain, &v, &used)) return SD_FAIL;
    if (v->kind != PY_BIGINT || v->len != 10 || memcmp(v->s, LEGACY_MAGIC, 10))
        return sd_errorf("%s: the first pickle is not PyTorch's magic number: not a legacy checkpoint", tf->path);
    p += used;
    if (pickle_load(&tf->doc, tf->path, p, (size_t)(end - p), &plain, &v, &used)) return SD_FAIL;
    if (v->kind != PY_INT || v->i != LEGACY_PROTOCOL_VERSION)
        return sd_errorf("%s: legacy checkpoint protocol version is not %d", tf->path, LEGACY_PROTOCOL_VERSION);
    p += used;
    if (pickle_load(&tf->doc, tf->path, p, (size_t)(end - p), &plain, &v, &used)) return SD_FAIL;  // sys_info
    const PyValue *le = py_dict_get(v, "little_endian");
    if (le && le->kind == PY_BOOL && !le->i)
        return sd_errorf("%s: a legacy checkpoint written on a big-endian machine is not supported", tf->path);
    p += used;
    PickleHooks hooks = {ctx, persistent_load, torch_reduce, torch_check_global};
    if (pickle_load(&tf->doc, tf->path, p, (size_t)(end - p), &hooks, &tf->root, &used)) return SD_FAIL;
    p += used;
    PyValue *keys;
    if (pickle_load(&tf->doc, tf->path, p, (size_t)(end - p), &plain, &keys, &used)) return SD_FAIL;
    p += used;
    if (keys->kind != PY_LIST) return sd_errorf("%s: the storage key list is a %s, not a list", tf->path, py_kind_name(keys->kind));
    // Each storage: int64 element count, then count x element-size bytes (little-endian).
    for (int k = 0; k < keys->count; k++) {
        const PyValue *key = keys->items[k];
        if (key->kind != PY_STR) return sd_errorf("%s: storage key %d is not a string", tf->path, k);
        PyValue *root = NULL;
        for (int i = 0; i < ctx->num_pending && !root; i++)
            if (!strcmp(ctx->pending[i]->s, key->s)) root = ctx->pending[i];
        if (!root) return sd_errorf("%s: storage '%s' is listed but no tensor uses it", tf->path, key->s);
        if (end - p < 8) return sd_errorf("%s: storage '%s': the file ends before its data (truncated?)", tf->path, key->s);
        uint64_t count = 0;
        for (int i = 7; i >= 0; i--) count = count << 8 | p[i];
        p += 8;
        uint64_t elsize = (uint64_t)dtype_size((DType)root->dtype);
        if (count > (uint64_t)(end - p) / elsize)
            return sd_errorf("%s: storage '%s': %llu elements run past the end of the file (truncated?)", tf->path,
                             key->s, (unsigned long long)count);
        // every tensor on this storage (views included) gets its data now
        for (int i = 0; i < ctx->num_pending; i++) {
            PyValue *s = ctx->pending[i];
            if (strcmp(s->s, key->s)) continue;
            if (s->dtype != root->dtype) return sd_errorf("%s: storage '%s' is used with two dtypes", tf->path, key->s);
            if ((uint64_t)s->i > count || (uint64_t)s->numel > count - (uint64_t)s->i)
                return sd_errorf("%s: storage '%s': %lld elements at offset %lld, but the file holds %llu", tf->path, key->s,
                                 (long long)s->numel, (long long)s->i, (unsigned long long)count);
            s->data = p + (uint64_t)s->i * elsize;
            s->data_bytes = (uint64_t)s->numel * elsize;
        }
        p += count * elsize;
    }
    for (int i = 0; i < ctx->num_pending; i++)
        if (!ctx->pending[i]->data && ctx->pending[i]->numel > 0)
            return sd_errorf("%s: storage '%s' has no data in the file", tf->path, ctx->pending[i]->s);
    return 0;
}

int torch_file_open(TorchFile *tf, const char *path) {
    memset(tf, 0, sizeof(*tf));
    pickle_doc_init(&tf->doc);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return sd_errorf("%s: not a regular file", path); }
    tf->map_size = (size_t)sb.st_size;
    if (tf->map_size < 16) { close(fd); return sd_errorf("%s: %zu bytes, too short for a PyTorch checkpoint", path, tf->map_size); }
    void *map = mmap(NULL, tf->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return sd_errorf("%s: mmap failed: %s", path, strerror(errno));
    tf->map = (unsigned char *)map;
    tf->path = strdup(path);
    if (!tf->path) { torch_file_close(tf); return sd_errorf("out of memory"); }
    LoadCtx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.tf = tf;
    int rc;
    if (zip_sniff(tf->map, tf->map_size)) rc = open_zip(tf, &ctx);
    else if (torch_file_sniff(tf->map, tf->map_size)) rc = open_legacy(tf, &ctx);
    else if (tf->map_size > 262 && !memcmp(tf->map + 257, "ustar", 5))
        rc = sd_errorf("%s: a tar-format PyTorch checkpoint (torch < 0.4): not supported; load and re-save it with a "
                       "newer torch",
                       path);
    else rc = sd_errorf("%s: not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)", path);
    free(ctx.pending);
    free(ctx.used);
    if (rc) { torch_file_close(tf); return SD_FAIL; }
    return 0;
}

void torch_file_close(TorchFile *tf) {
    if (tf->is_zip) zip_close(&tf->zip);
    pickle_doc_free(&tf->doc);
    if (tf->map) munmap(tf->map, tf->map_size);
    free(tf->path);
    memset(tf, 0, sizeof(*tf));
}

// ---------------------------------------------------------------------------
// Navigating the object and flattening its tensors into named entries.

// What a placeholder object holds that a walker can enter: the items a dict or list
// subclass received, else its BUILD state (an argparse Namespace's __dict__ ...).
static const PyValue *object_body(const PyValue *v) {
    if (v->kind != PY_OBJECT) return v;
    if (v->contents) return v->contents;
    return v->state ? v->state : v;
}

// A dict key as a path component: strings as they are, integers in decimal.
static int key_text(const PyValue *k, char *buf, size_t size) {
    if (k->kind == PY_STR) { snprintf(buf, size, "%s", k->s); return (int)k->len < (int)size; }
    if (k->kind == PY_INT) { snprintf(buf, size, "%lld", (long long)k->i); return 1; }
    return 0;
}

const PyValue *torch_file_find(const TorchFile *tf, const char *key) {
    const PyValue *v = tf->root;
    const char *p = key ? key : "";
    char buf[512];
    while (*p) {
        v = object_body(v);
        const PyValue *next = NULL;
        size_t best = 0;
        if (v->kind == PY_DICT) {
            for (int k = 0; k < v->count / 2; k++) {  // the longest key that is a whole prefix of the rest
                if (!key_text(v->items[2 * k], buf, sizeof(buf))) continue;
                size_t n = strlen(buf);
                if (n >= best && n > 0 && !strncmp(p, buf, n) && (p[n] == '\0' || p[n] == '.')) {
                    best = n;
                    next = v->items[2 * k + 1];
                }
            }
        } else if (v->kind == PY_LIST || v->kind == PY_TUPLE) {
            char *end;
            long idx = strtol(p, &end, 10);
            if (end != p && (*end == '\0' || *end == '.') && idx >= 0 && idx < v->count) {
                next = v->items[idx];
                best = (size_t)(end - p);
            }
        }
        if (!next) {
            sd_errorf("%s: no entry '%.*s' (at '%s' of '%s'; the value there is a %s)", tf->path,
                      (int)strcspn(p, "."), p, p, key, py_kind_name(v->kind));
            return NULL;
        }
        v = next;
        p += best;
        if (*p == '.') p++;
    }
    return v;
}

typedef struct {
    const TorchFile *tf;
    SafeTensors *st;
    int cap;
    char name[1024];
} Flattener;

static int add_owned(SafeTensors *st, unsigned char *buf) {
    unsigned char **o = (unsigned char **)realloc(st->owned, (size_t)(st->num_owned + 1) * sizeof(*o));
    if (!o) { free(buf); return sd_errorf("out of memory"); }
    st->owned = o;
    st->owned[st->num_owned++] = buf;
    return 0;
}

// One tensor as an entry: a pointer into the mapping when its elements are contiguous and
// little-endian, else a row-major little-endian copy of the view.
static int add_tensor(Flattener *fl, const PyValue *t) {
    SafeTensors *st = fl->st;
    const TorchFile *tf = fl->tf;
    const char *name = fl->name[0] ? fl->name : "tensor";
    if (st->count == fl->cap) {
        int cap = fl->cap ? 2 * fl->cap : 64;
        StEntry *e = (StEntry *)realloc(st->entries, (size_t)cap * sizeof(StEntry));
        if (!e) return sd_errorf("out of memory");
        st->entries = e;
        fl->cap = cap;
    }
    StEntry *e = &st->entries[st->count];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(name))) return sd_errorf("out of memory");
    st->count++;
    const PyValue *s = t->storage;
    e->dtype = (DType)s->dtype;
    e->ndim = t->ndim;
    e->numel = 1;
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        e->shape[d] = t->size[d];
        e->numel *= t->size[d];
        if (t->size[d] != 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->size[d];
    }
    size_t elsize = (size_t)dtype_size(e->dtype), bytes = (size_t)e->numel * elsize;
    const unsigned char *src = s->data ? s->data + (size_t)t->offset * elsize : NULL;
    if (e->numel == 0) contiguous = 1;
    // A view with more elements than its storage repeats elements (stride 0, an expand()):
    // a checkpoint stores data, not broadcasts, so a huge one is refused rather than copied.
    if (e->numel > s->numel && bytes > ((size_t)1 << 28))
        return sd_errorf("%s: tensor '%s': a view of %lld elements over a storage of %lld (an expanded tensor of "
                         "%zu MB): refused",
                         tf->path, name, (long long)e->numel, (long long)s->numel, bytes >> 20);
    if (contiguous && (!tf->big_endian || elsize == 1)) {
        e->data = src ? src : (const unsigned char *)"";
    } else {
        unsigned char *buf = (unsigned char *)malloc(bytes ? bytes : 1);
        if (!buf) return sd_errorf("%s: out of memory copying tensor '%s' (%zu bytes)", tf->path, name, bytes);
        if (add_owned(st, buf)) return SD_FAIL;
        int64_t index[PY_TENSOR_MAX_DIMS] = {0};
        for (int64_t i = 0; i < e->numel; i++) {
            int64_t at = 0;  // element offset of index[] in the storage
            for (int d = 0; d < t->ndim; d++) at += index[d] * t->stride[d];
            const unsigned char *from = src + (size_t)at * elsize;
            unsigned char *to = buf + (size_t)i * elsize;
            for (size_t b = 0; b < elsize; b++) to[b] = tf->big_endian ? from[elsize - 1 - b] : from[b];
            for (int d = t->ndim - 1; d >= 0; d--) {  // next row-major index
                if (++index[d] < t->size[d]) break;
                index[d] = 0;
            }
        }
        e->data = buf;
    }
    if (e->data >= tf->map && e->data < tf->map + tf->map_size) e->begin = (size_t)(e->data - tf->map);
    e->end = e->begin + bytes;
    return 0;
}

static int walk(Flattener *fl, const PyValue *v, int depth);

// Walks v under name + "." + part.
static int walk_child(Flattener *fl, const PyValue *v, const char *part, int depth) {
    size_t n = strlen(fl->name);
    if (n + strlen(part) + 2 > sizeof(fl->name))
        return sd_errorf("%s: a tensor name longer than %zu characters under '%s'", fl->tf->path, sizeof(fl->name), fl->name);
    snprintf(fl->name + n, sizeof(fl->name) - n, n ? ".%s" : "%s", part);
    int rc = walk(fl, v, depth + 1);
    fl->name[n] = '\0';
    return rc;
}

static int walk(Flattener *fl, const PyValue *v, int depth) {
    if (depth > PICKLE_MAX_DEPTH)
        return sd_errorf("%s: the object is nested deeper than %d levels (at '%s')", fl->tf->path, PICKLE_MAX_DEPTH, fl->name);
    if (v->visiting) {
        // Instances point back at their owners (an OmegaConf node's _parent): such an edge is not
        // followed. A plain list or dict that contains itself is refused.
        if (v->kind == PY_OBJECT) return 0;
        return sd_errorf("%s: the object contains itself (a cycle at '%s')", fl->tf->path, fl->name);
    }
    if (v->kind == PY_TENSOR) return add_tensor(fl, v);
    int rc = 0;
    ((PyValue *)v)->visiting = 1;
    char part[512];
    if (v->kind == PY_DICT) {
        for (int k = 0; k < v->count / 2 && !rc; k++)
            if (key_text(v->items[2 * k], part, sizeof(part))) rc = walk_child(fl, v->items[2 * k + 1], part, depth);
    } else if (v->kind == PY_LIST || v->kind == PY_TUPLE) {
        for (int i = 0; i < v->count && !rc; i++) {
            snprintf(part, sizeof(part), "%d", i);
            rc = walk_child(fl, v->items[i], part, depth);
        }
    } else if (v->kind == PY_OBJECT) {
        if (v->contents) rc = walk(fl, v->contents, depth + 1);
        if (!rc && v->state && (v->state->kind == PY_DICT || v->state->kind == PY_TUPLE)) rc = walk(fl, v->state, depth + 1);
    }
    ((PyValue *)v)->visiting = 0;
    return rc;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const StEntry *const *)a)->name, (*(const StEntry *const *)b)->name);
}

static int check_unique_names(SafeTensors *st) {
    if (st->count < 2) return 0;
    StEntry **sorted = (StEntry **)malloc((size_t)st->count * sizeof(StEntry *));
    if (!sorted) return sd_errorf("out of memory");
    for (int i = 0; i < st->count; i++) sorted[i] = &st->entries[i];
    qsort(sorted, (size_t)st->count, sizeof(StEntry *), cmp_entry_name);
    int rc = 0;
    for (int i = 1; i < st->count && !rc; i++)
        if (!strcmp(sorted[i]->name, sorted[i - 1]->name))
            rc = sd_errorf("%s: two tensors flatten to the same name '%s'", st->path, sorted[i]->name);
    free(sorted);
    return rc;
}

// st->metadata[key] = text, building the JSON object as st_open would from "__metadata__".
static int meta_add(SafeTensors *st, const char *key, const char *text) {
    JsonValue *m = &st->metadata;
    if (m->type != JSON_OBJECT) { memset(m, 0, sizeof(*m)); m->type = JSON_OBJECT; }
    JsonValue *items = (JsonValue *)realloc(m->items, (size_t)(m->count + 1) * sizeof(JsonValue));
    if (!items) return sd_errorf("out of memory");
    m->items = items;
    char **keys = (char **)realloc(m->keys, (size_t)(m->count + 1) * sizeof(char *));
    if (!keys) return sd_errorf("out of memory");
    m->keys = keys;
    memset(&items[m->count], 0, sizeof(JsonValue));
    items[m->count].type = JSON_STRING;
    keys[m->count] = strdup(key);
    items[m->count].string = strdup(text);
    m->count++;
    if (!keys[m->count - 1] || !items[m->count - 1].string) return sd_errorf("out of memory");
    return 0;
}

static int flatten(const TorchFile *tf, const PyValue *v, SafeTensors *st) {
    Flattener fl;
    memset(&fl, 0, sizeof(fl));
    fl.tf = tf;
    fl.st = st;
    const PyValue *body = object_body(v);
    if (body->kind != PY_DICT) return walk(&fl, v, 0);
    // A dict: its non-tensor entries (epoch, config, ...) are listed as metadata.
    char part[512], text[256];
    for (int k = 0; k < body->count / 2; k++) {
        if (!key_text(body->items[2 * k], part, sizeof(part))) continue;
        int before = st->count;
        if (walk_child(&fl, body->items[2 * k + 1], part, 0)) return SD_FAIL;
        if (st->count == before) {
            py_repr(body->items[2 * k + 1], text, sizeof(text));
            if (meta_add(st, part, text)) return SD_FAIL;
        }
    }
    return 0;
}

// key NULL with auto_state_dict: the "state_dict" entry when the top level has one.
static int open_view(SafeTensors *st, const char *path, const char *key, int auto_state_dict) {
    memset(st, 0, sizeof(*st));
    st->metadata.type = JSON_NULL;
    TorchFile tf;
    if (torch_file_open(&tf, path)) return SD_FAIL;
    if (!key && auto_state_dict) {
        const PyValue *sd = py_dict_get(object_body(tf.root), "state_dict");
        if (sd && object_body(sd)->kind == PY_DICT) key = "state_dict";
    }
    const PyValue *v = torch_file_find(&tf, key);
    if (!v) { torch_file_close(&tf); return SD_FAIL; }
    st->path = strdup(path);
    if (!st->path || flatten(&tf, v, st) || check_unique_names(st)) {
        if (!st->path) sd_errorf("out of memory");
        torch_file_close(&tf);
        st_close(st);
        return SD_FAIL;
    }
    if (st->count == 0 && key && *key) {
        char what[160];
        py_repr(v, what, sizeof(what));
        sd_errorf("%s: entry '%s' holds no tensors (it is %s)", path, key, what);
        torch_file_close(&tf);
        st_close(st);
        return SD_FAIL;
    }
    // The entries point into the mapping: it moves to st (st_close unmaps it).
    st->map = tf.map;
    st->map_size = tf.map_size;
    tf.map = NULL;
    torch_file_close(&tf);
    return 0;
}

int st_open_torch(SafeTensors *st, const char *path, const char *key) { return open_view(st, path, key, 0); }

int torch_file_path_kind(const char *path) {
    unsigned char head[16];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t got = read(fd, head, sizeof(head));
    close(fd);
    if (got != (ssize_t)sizeof(head)) return 0;
    if (head[8] == '{') return 2;  // an 8-byte header length, then the JSON header: safetensors
    return torch_file_sniff(head, sizeof(head)) ? 1 : 0;
}

int st_open_weights(SafeTensors *st, const char *path) {
    if (torch_file_path_kind(path) == 1) return open_view(st, path, NULL, 1);
    return st_open(st, path);
}
