// Internals shared by hdf5.c (superblock, object headers, groups, datasets) and
// hdf5_index.c (heaps, B-trees, fixed arrays, filters). Not a public interface.
#ifndef SD_HDF5_PRIV_H
#define SD_HDF5_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "io/hdf5.h"

#define H5_UNDEF UINT64_MAX  // an address of all 1 bits: "not allocated"

// A bounds-checked reader over bytes [p, p + n). A read past the end sets `bad` and
// returns 0; callers check `bad` once after a group of reads.
typedef struct {
    const uint8_t *p;
    size_t n, pos;
    int bad;
} H5Cur;

static inline uint64_t h5_le(const uint8_t *p, int nbytes) {
    uint64_t v = 0;
    for (int i = nbytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline uint64_t h5c_u(H5Cur *c, int nbytes) {
    if (c->bad || nbytes < 0 || c->pos > c->n || (size_t)nbytes > c->n - c->pos) {
        c->bad = 1;
        return 0;
    }
    uint64_t v = h5_le(c->p + c->pos, nbytes);
    c->pos += (size_t)nbytes;
    return v;
}

// An address of f->so bytes; all 1 bits -> H5_UNDEF.
static inline uint64_t h5c_addr(H5Cur *c, const H5File *f) {
    uint64_t v = h5c_u(c, f->so);
    if (f->so < 8 && v == (((uint64_t)1 << (8 * f->so)) - 1)) return H5_UNDEF;
    return v;
}

static inline uint64_t h5c_len(H5Cur *c, const H5File *f) { return h5c_u(c, f->sl); }

static inline const uint8_t *h5c_take(H5Cur *c, size_t nbytes) {
    if (c->bad || c->pos > c->n || nbytes > c->n - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *p = c->p + c->pos;
    c->pos += nbytes;
    return p;
}

// Points *p at `size` bytes at file address `addr` (relative to the base address), or
// fails naming `what` when they are not all inside the file.
int h5_span(const H5File *f, uint64_t addr, uint64_t size, const uint8_t **p, const char *what);
// A cursor over those bytes.
int h5_cursor(const H5File *f, uint64_t addr, uint64_t size, H5Cur *c, const char *what);
// Fails unless the 4 bytes at p are the signature `sig`.
int h5_check_sig(const H5File *f, const uint8_t *p, const char *sig, uint64_t addr);

// Converts count elements of `size` bytes from the file's byte order to the host's, in place.
void h5_to_host(uint8_t *data, uint64_t count, int size, int big_endian);

// Local heap (symbol-table group names): its data segment.
int h5_local_heap(const H5File *f, uint64_t addr, const uint8_t **data, uint64_t *size);
// One object of a global heap collection (vlen data).
int h5_global_heap_object(const H5File *f, uint64_t coll_addr, uint32_t index, const uint8_t **obj,
                          uint64_t *len);

// Symbol-table groups: each (name offset in the local heap, object header address) of the
// v1 B-tree's symbol nodes.
typedef int (*H5EntryFn)(void *ctx, uint64_t name_offset, uint64_t header_addr);
int h5_btree1_group(const H5File *f, uint64_t btree_addr, H5EntryFn fn, void *ctx);

// Dense storage (links or attributes): each object of the fractal heap `heap_addr` that the
// v2 B-tree `btree_addr` (record type 5: link names, 8: attribute names) indexes.
typedef int (*H5ObjectFn)(void *ctx, const uint8_t *obj, size_t len);
int h5_dense_iterate(const H5File *f, uint64_t heap_addr, uint64_t btree_addr, int record_type, H5ObjectFn fn,
                     void *ctx);

// Chunked datasets: each stored chunk with its first element's coordinates, file address,
// stored size and filter mask (bit i set: filter i was not applied).
typedef int (*H5ChunkFn)(void *ctx, const uint64_t *coord, uint64_t addr, uint64_t size, uint32_t mask);
int h5_chunks(const H5File *f, const H5Dataset *d, H5ChunkFn fn, void *ctx);

// Undoes d's filters (last to first, skipping those in `mask`) on a stored chunk; the result,
// exactly out_len bytes, goes to out.
int h5_unfilter(const H5File *f, const H5Dataset *d, uint32_t mask, const uint8_t *in, size_t in_len, uint8_t *out,
                size_t out_len);

#endif
