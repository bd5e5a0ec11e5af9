// A float32 tensor of up to 4 dims, row-major (NCHW for images), and a scratch
// arena so that a forward pass makes no per-operator malloc.
#ifndef SD_TENSOR_H
#define SD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 4

typedef struct {
    float *data;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    int owns_data;   // 1: data was malloc'd for this tensor and tensor_free releases it
} Tensor;

// Product of the shape.
int64_t tensor_numel(const Tensor *t);
// A view on existing memory (not owned).
Tensor tensor_view(float *data, int ndim, const int *shape);
Tensor tensor_view4(float *data, int n, int c, int h, int w);
// Allocates a zero-filled tensor; returns -1 (with a message naming `what`) on failure.
int tensor_alloc(Tensor *t, int ndim, const int *shape, const char *what);
void tensor_free(Tensor *t);
// Writes "(2, 4, 8, 8)" into buf.
const char *tensor_shape_str(const Tensor *t, char *buf, size_t size);
// Returns 0 if t has exactly this shape, else -1 with a message naming `what`.
int tensor_check_shape(const Tensor *t, int ndim, const int *shape, const char *what);

// ---------------------------------------------------------------------------
// Scratch arena: one big block, bump allocation, 64-byte aligned, released in
// stack order with marks. Peak use is recorded so callers can size it.
typedef struct {
    unsigned char *base;
    size_t capacity;
    size_t used;
    size_t peak;
} Arena;

int arena_init(Arena *a, size_t capacity_bytes);
void arena_free(Arena *a);
// NULL (and a message) when the arena is full.
void *arena_alloc(Arena *a, size_t bytes);
float *arena_floats(Arena *a, size_t count);
size_t arena_mark(const Arena *a);
void arena_reset(Arena *a, size_t mark);

#endif
