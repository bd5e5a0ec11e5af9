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

struct ArenaBlock {
    ArenaBlock *next;
    size_t start;         // position of data[0] in the chain
    size_t size;          // a multiple of 64
    unsigned char *data;  // 64-byte aligned (sd_alloc_large)
};

#define ARENA_MIN_BLOCK ((size_t)1 << 20)

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

// Frees b and every block after it (blocks of the chain: capacity counts them).
static void free_chain(Arena *a, ArenaBlock *b) {
    while (b) {
        ArenaBlock *next = b->next;
        a->capacity -= b->size;
        free(b->data);
        free(b);
        b = next;
    }
}

// Takes b and every block after it out of the chain without freeing them: they hold only bytes
// above the arena's `used`, which are dead, but a caller that has just reset the arena may still be
// copying them down (vae.c's move_down: reset, allocate, memmove). They are freed at the next
// arena_reset or arena_free, when no such copy can be in progress.
static void retire_chain(Arena *a, ArenaBlock *b) {
    if (!b) return;
    ArenaBlock *last = b;
    a->capacity -= last->size;
    while (last->next) {
        last = last->next;
        a->capacity -= last->size;
    }
    last->next = a->retired;
    a->retired = b;
}

static void free_retired(Arena *a) {
    ArenaBlock *b = a->retired;
    while (b) {
        ArenaBlock *next = b->next;
        free(b->data);
        free(b);
        b = next;
    }
    a->retired = NULL;
}

// A new empty block of `size` bytes after a->cur (whose followers, all empty, are freed);
// -1 without a message when there is no memory.
static int append_block(Arena *a, size_t size) {
    ArenaBlock *b = (ArenaBlock *)calloc(1, sizeof(ArenaBlock));
    unsigned char *data = b ? (unsigned char *)sd_alloc_large(size) : NULL;
    if (!data) {
        free(b);
        return -1;
    }
    b->data = data;
    b->size = size;
    if (a->cur) {
        retire_chain(a, a->cur->next);
        b->start = a->cur->start + a->cur->size;
        a->cur->next = b;
    } else {
        retire_chain(a, a->head);
        a->head = b;
    }
    a->cur = b;
    a->used = b->start;
    a->capacity += size;
    return SD_OK;
}

int arena_init(Arena *a, size_t capacity_bytes) {
    memset(a, 0, sizeof(*a));
    if (capacity_bytes == 0) return SD_OK;
    if (capacity_bytes > SIZE_MAX / 4) return sd_errorf("arena: %zu bytes is not a size", capacity_bytes);
    if (append_block(a, align64(capacity_bytes)))
        return sd_errorf("arena: out of memory for %zu bytes", align64(capacity_bytes));
    return SD_OK;
}

void arena_free(Arena *a) {
    free_chain(a, a->head);
    free_retired(a);
    memset(a, 0, sizeof(*a));
}

void *arena_alloc(Arena *a, size_t bytes) {
    if (bytes > SIZE_MAX / 4) {
        sd_errorf("arena: %zu bytes asked (%zu in use) is not a size", bytes, a->used);
        return NULL;
    }
    for (;;) {
        ArenaBlock *b = a->cur;
        if (b) {
            size_t off = align64(a->used - b->start);
            if (off <= b->size && bytes <= b->size - off) {
                a->used = b->start + off + bytes;
                if (a->used > a->peak) a->peak = a->used;
                return b->data + off;
            }
            if (b->next && bytes <= b->next->size) {  // a block kept from an earlier, deeper use
                a->cur = b->next;
                a->used = a->cur->start;
                continue;
            }
        }
        // grow: at least doubling the total keeps the chain short
        size_t size = align64(bytes);
        if (size < a->capacity) size = align64(a->capacity);
        if (size < ARENA_MIN_BLOCK) size = ARENA_MIN_BLOCK;
        if (append_block(a, size)) {
            sd_errorf("arena: out of memory for a block of %zu bytes (%zu bytes in use)", size, a->used);
            return NULL;
        }
    }
}

float *arena_floats(Arena *a, size_t count) {
    if (count > SIZE_MAX / 16) {
        sd_errorf("arena: %zu floats asked is not a size", count);
        return NULL;
    }
    return (float *)arena_alloc(a, count * sizeof(float));
}

size_t arena_mark(const Arena *a) { return a->used; }

void arena_reset(Arena *a, size_t mark) {
    free_retired(a);
    if (mark > a->used) return;
    a->used = mark;
    ArenaBlock *b = a->head;
    while (b && b->next && mark >= b->next->start) b = b->next;
    a->cur = b;
}

void arena_end(Arena *a, size_t mark) {
    arena_reset(a, mark);
    free_retired(a);
    if (mark == 0 && a->head && a->head->next) {
        // empty with a chain: one block of the peak instead (if that fails, the arena stays empty
        // and grows again on demand; the caller's error message, if any, is kept). Nothing above
        // the mark is read again, so the chain is freed before the block is made: no overlap.
        size_t size = align64(a->peak);
        free_chain(a, a->head);
        a->head = a->cur = NULL;
        (void)append_block(a, size);
    }
}
