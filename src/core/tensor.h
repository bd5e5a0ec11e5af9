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
// Scratch arena: bump allocation, 64-byte aligned, released in stack order with marks.
// It sizes itself: when the current block is full, the next allocation goes to a new block
// chained after it (at least as big as all blocks so far), so live data never moves and no
// caller computes a bound. A mark is a position counted through the chain. Once the arena is
// reset to 0 with more than one block, the chain is replaced by one block of the peak: a forward
// repeated at one size (the DDIM walk) runs in one block from its second call on.
// A zeroed Arena is a valid empty one.
typedef struct ArenaBlock ArenaBlock;
typedef struct {
    ArenaBlock *head;   // the chain, in position order
    ArenaBlock *cur;    // the block `used` is in
    size_t capacity;    // bytes in all blocks
    size_t used;        // position of the first free byte
    size_t peak;        // largest `used` seen: one block of this size holds every allocation made
    ArenaBlock *retired;  // blocks taken out of the chain, freed at the next arena_reset / arena_free
} Arena;

// capacity_bytes: the first block (0: none until the first allocation).
int arena_init(Arena *a, size_t capacity_bytes);
void arena_free(Arena *a);
// NULL (and a message) only when the system has no memory for a new block.
void *arena_alloc(Arena *a, size_t bytes);
float *arena_floats(Arena *a, size_t count);
size_t arena_mark(const Arena *a);
// Everything allocated after `mark` is dead. Its bytes stay readable (not freed; new allocations
// may overwrite them) until the next arena_reset or arena_free, so a caller may reset to a mark and
// then move live data from above it down (memmove: the ranges may overlap).
void arena_reset(Arena *a, size_t mark);
// The end of a forward: arena_reset(a, mark), and nothing above the mark is read again. At mark 0 an
// arena that grew into a chain of blocks becomes one block of its peak, so the next forward of the
// same size (the DDIM walk's next UNet call) allocates nothing.
void arena_end(Arena *a, size_t mark);

#endif
