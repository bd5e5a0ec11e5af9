#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/runtime.h"

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

Tensor tensor_view(float *data, int ndim, const int *shape) {
    Tensor t;
    memset(&t, 0, sizeof(t));
    t.data = data;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < TENSOR_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

Tensor tensor_view4(float *data, int n, int c, int h, int w) {
    int shape[4] = {n, c, h, w};
    return tensor_view(data, 4, shape);
}

int tensor_alloc(Tensor *t, int ndim, const int *shape, const char *what) {
    memset(t, 0, sizeof(*t));
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return sd_errorf("%s: %d dims, at most %d supported", what, ndim, TENSOR_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return sd_errorf("%s: negative dimension %d", what, shape[i]);
        n *= shape[i];
        if (n > ((int64_t)1 << 40)) return sd_errorf("%s: tensor too large", what);
        t->shape[i] = shape[i];
    }
    t->ndim = ndim;
    t->data = (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!t->data) return sd_errorf("%s: out of memory for %lld floats", what, (long long)n);
    t->owns_data = 1;
    return SD_OK;
}

void tensor_free(Tensor *t) {
    if (t->owns_data) free(t->data);
    memset(t, 0, sizeof(*t));
}

const char *tensor_shape_str(const Tensor *t, char *buf, size_t size) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "(");
    for (int i = 0; i < t->ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ", %d" : "%d", t->shape[i]);
    if (off < size) snprintf(buf + off, size - off, ")");
    return buf;
}

int tensor_check_shape(const Tensor *t, int ndim, const int *shape, const char *what) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return SD_OK;
    Tensor want = tensor_view(NULL, ndim, shape);
    char got_s[64], want_s[64];
    return sd_errorf("%s: shape %s, expected %s", what, tensor_shape_str(t, got_s, sizeof(got_s)),
                     tensor_shape_str(&want, want_s, sizeof(want_s)));
}

// ---------------------------------------------------------------------------

int arena_init(Arena *a, size_t capacity_bytes) {
    memset(a, 0, sizeof(*a));
    if (capacity_bytes == 0) return SD_OK;
    // aligned_alloc wants a multiple of the alignment
    size_t cap = (capacity_bytes + 63) & ~(size_t)63;
    void *p = sd_alloc_large(cap);
    if (!p) return sd_errorf("arena: out of memory for %zu bytes", cap);
    a->base = (unsigned char *)p;
    a->capacity = cap;
    return SD_OK;
}

void arena_free(Arena *a) {
    free(a->base);
    memset(a, 0, sizeof(*a));
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t start = (a->used + 63) & ~(size_t)63;
    if (bytes > a->capacity || start > a->capacity - bytes) {
        sd_errorf("arena: out of scratch memory (asked %zu bytes, %zu of %zu used)", bytes, a->used,
                  a->capacity);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

float *arena_floats(Arena *a, size_t count) { return (float *)arena_alloc(a, count * sizeof(float)); }

size_t arena_mark(const Arena *a) { return a->used; }

void arena_reset(Arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}
