// HDF5 indexes and heaps: local and global heaps, v1 B-trees (group nodes and chunk
// nodes), v2 B-trees with fractal heaps (dense links and attributes), chunk indexes
// (single chunk, implicit, fixed array) and the filters (deflate, shuffle, fletcher32).
// Layouts as in the HDF5 File Format Specification 3.0; every address and count is checked
// against the file, tree walks have a depth limit and a node budget (a node visited twice
// by a hostile file costs budget, never a loop).
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/hdf5_priv.h"
#include "io/inflate.h"

#define H5_MAX_TREE_DEPTH 32

// Nodes a tree walk may visit: no honest file has more nodes than bytes/16.
static uint64_t node_budget(const H5File *f) { return f->len / 16 + 16; }

int h5_span(const H5File *f, uint64_t addr, uint64_t size, const uint8_t **p, const char *what) {
    if (addr == H5_UNDEF || addr > f->len || f->base > f->len - addr || size > f->len - f->base - addr)
        return sd_errorf("%s: %s at address %llu (%llu bytes) is outside the file (%zu bytes)", f->path, what,
                         (unsigned long long)addr, (unsigned long long)size, f->len);
    *p = f->buf + f->base + addr;
    return 0;
}

int h5_cursor(const H5File *f, uint64_t addr, uint64_t size, H5Cur *c, const char *what) {
    const uint8_t *p = NULL;
    if (h5_span(f, addr, size, &p, what)) return -1;
    c->p = p;
    c->n = (size_t)size;
    c->pos = 0;
    c->bad = 0;
    return 0;
}

int h5_check_sig(const H5File *f, const uint8_t *p, const char *sig, uint64_t addr) {
    if (memcmp(p, sig, 4) != 0)
        return sd_errorf("%s: expected a %s block at address %llu, found other bytes", f->path, sig,
                         (unsigned long long)addr);
    return 0;
}

// A cursor over the rest of the file from addr (blocks whose size is known only once read).
static int cursor_to_end(const H5File *f, uint64_t addr, H5Cur *c, const char *sig) {
    if (addr == H5_UNDEF || addr > f->len || f->base > f->len - addr)
        return sd_errorf("%s: %s block at address %llu is outside the file (%zu bytes)", f->path, sig,
                         (unsigned long long)addr, f->len);
    if (h5_cursor(f, addr, f->len - f->base - addr, c, sig)) return -1;
    if (c->n < 4) return sd_errorf("%s: %s block at address %llu is cut short", f->path, sig, (unsigned long long)addr);
    return h5_check_sig(f, c->p, sig, addr);
}

int h5_local_heap(const H5File *f, uint64_t addr, const uint8_t **data, uint64_t *size) {
    H5Cur c;
    if (cursor_to_end(f, addr, &c, "HEAP")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1);
    c.pos += 3;
    uint64_t seg_size = h5c_len(&c, f);
    h5c_len(&c, f);  // free list head
    uint64_t seg_addr = h5c_addr(&c, f);
    if (c.bad) return sd_errorf("%s: local heap at %llu is cut short", f->path, (unsigned long long)addr);
    if (version != 0) return sd_errorf("%s: local heap version %d is not supported", f->path, version);
    *size = seg_size;
    return h5_span(f, seg_addr, seg_size, data, "local heap data");
}

int h5_global_heap_object(const H5File *f, uint64_t coll_addr, uint32_t index, const uint8_t **obj, uint64_t *len) {
    H5Cur c;
    if (cursor_to_end(f, coll_addr, &c, "GCOL")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1);
    c.pos += 3;
    uint64_t coll_size = h5c_len(&c, f);
    if (c.bad || version != 1 || coll_size < c.pos || coll_size > c.n)
        return sd_errorf("%s: global heap collection at %llu: version %d, size %llu do not fit the file", f->path,
                         (unsigned long long)coll_addr, version, (unsigned long long)coll_size);
    c.n = (size_t)coll_size;
    while (c.n - c.pos >= (size_t)(8 + f->sl)) {
        uint32_t idx = (uint32_t)h5c_u(&c, 2);
        c.pos += 6;  // reference count, reserved
        uint64_t size = h5c_len(&c, f);
        if (idx == 0) break;  // free space: the end of the objects
        if (size > c.n - c.pos) break;
        if (idx == index) {
            *obj = c.p + c.pos;
            *len = size;
            return 0;
        }
        c.pos += (size_t)((size + 7) & ~(uint64_t)7);  // objects are padded to 8 bytes
        if (c.pos > c.n) break;
    }
    return sd_errorf("%s: global heap collection at %llu has no object %u (a variable-length value points there)",
                     f->path, (unsigned long long)coll_addr, index);
}

// ---- v1 B-trees -------------------------------------------------------------------------

typedef struct {
    const H5File *f;
    int type, ndims;  // node type 0 (group) or 1 (chunks); chunks: dimensions in a key (rank + 1)
    H5EntryFn entry_fn;
    H5ChunkFn chunk_fn;
    void *ctx;
    uint64_t budget;
} Btree1Walk;

static int snod_visit(Btree1Walk *w, uint64_t addr) {
    const H5File *f = w->f;
    H5Cur c;
    if (cursor_to_end(f, addr, &c, "SNOD")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1);
    c.pos += 1;
    int nsym = (int)h5c_u(&c, 2);
    if (c.bad || version != 1)
        return sd_errorf("%s: symbol table node at %llu: version %d", f->path, (unsigned long long)addr, version);
    for (int i = 0; i < nsym; i++) {
        uint64_t name_off = h5c_len(&c, f);
        uint64_t header = h5c_addr(&c, f);
        c.pos += 24;  // cache type, reserved, scratch pad
        if (c.bad || c.pos > c.n)
            return sd_errorf("%s: symbol table node at %llu: %d entries run past the file", f->path,
                             (unsigned long long)addr, nsym);
        if (w->entry_fn(w->ctx, name_off, header)) return -1;
    }
    return 0;
}

static int btree1_visit(Btree1Walk *w, uint64_t addr, int expect_level, int depth) {
    const H5File *f = w->f;
    if (depth > H5_MAX_TREE_DEPTH || w->budget-- == 0)
        return sd_errorf("%s: v1 B-tree at %llu is deeper or larger than the file allows", f->path,
                         (unsigned long long)addr);
    H5Cur c;
    if (cursor_to_end(f, addr, &c, "TREE")) return -1;
    c.pos = 4;
    int type = (int)h5c_u(&c, 1), level = (int)h5c_u(&c, 1), entries = (int)h5c_u(&c, 2);
    h5c_addr(&c, f);
    h5c_addr(&c, f);  // siblings
    if (c.bad || type != w->type || (expect_level >= 0 && level != expect_level))
        return sd_errorf("%s: v1 B-tree node at %llu: type %d level %d, expected type %d level %d", f->path,
                         (unsigned long long)addr, type, level, w->type, expect_level);
    size_t key_size = type == 0 ? (size_t)f->sl : 8 + 8 * (size_t)w->ndims;
    for (int i = 0; i < entries; i++) {
        const uint8_t *key = h5c_take(&c, key_size);
        uint64_t child = h5c_addr(&c, f);
        if (c.bad)
            return sd_errorf("%s: v1 B-tree node at %llu: %d entries run past the file", f->path,
                             (unsigned long long)addr, entries);
        int rc;
        if (level > 0) rc = btree1_visit(w, child, level - 1, depth + 1);
        else if (type == 0) rc = snod_visit(w, child);
        else {
            uint64_t coord[H5_MAX_DIMS + 1];
            for (int d = 0; d < w->ndims; d++) coord[d] = h5_le(key + 8 + 8 * d, 8);
            rc = w->chunk_fn(w->ctx, coord, child, h5_le(key, 4), (uint32_t)h5_le(key + 4, 4));
        }
        if (rc) return -1;
    }
    return 0;
}

int h5_btree1_group(const H5File *f, uint64_t btree_addr, H5EntryFn fn, void *ctx) {
    Btree1Walk w = {f, 0, 0, fn, NULL, ctx, node_budget(f)};
    return btree1_visit(&w, btree_addr, -1, 0);
}

// ---- fractal heaps and v2 B-trees (dense links and attributes) ---------------------------

typedef struct {
    int id_len, width, off_bytes, len_bytes, checksummed, cur_rows, max_direct_rows;
    uint64_t start_size, max_direct, root;
} FHeap;

static int log2_floor(uint64_t v) {
    int r = -1;
    while (v) {
        v >>= 1;
        r++;
    }
    return r;
}

static int fheap_open(const H5File *f, uint64_t addr, FHeap *h) {
    H5Cur c;
    if (cursor_to_end(f, addr, &c, "FRHP")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1);
    h->id_len = (int)h5c_u(&c, 2);
    int filter_len = (int)h5c_u(&c, 2);
    int flags = (int)h5c_u(&c, 1);
    uint64_t max_managed = h5c_u(&c, 4);
    h5c_len(&c, f);   // next huge object id
    h5c_addr(&c, f);  // huge objects B-tree
    h5c_len(&c, f);   // free space
    h5c_addr(&c, f);  // free space manager
    for (int i = 0; i < 8; i++) h5c_len(&c, f);  // managed / huge / tiny statistics
    h->width = (int)h5c_u(&c, 2);
    h->start_size = h5c_len(&c, f);
    h->max_direct = h5c_len(&c, f);
    int max_heap_bits = (int)h5c_u(&c, 2);
    h5c_u(&c, 2);  // starting rows
    h->root = h5c_addr(&c, f);
    h->cur_rows = (int)h5c_u(&c, 2);
    if (c.bad) return sd_errorf("%s: fractal heap header at %llu is cut short", f->path, (unsigned long long)addr);
    if (version != 0 || filter_len != 0)
        return sd_errorf("%s: fractal heap at %llu: version %d / I/O filters are not supported", f->path,
                         (unsigned long long)addr, version);
    int ls = log2_floor(h->start_size), lm = log2_floor(h->max_direct);
    if (h->width < 1 || h->width > 65536 || ls < 0 || lm < ls || h->start_size != (uint64_t)1 << ls ||
        h->max_direct != (uint64_t)1 << lm || max_heap_bits < 1 || max_heap_bits > 64 || h->cur_rows > 64 ||
        max_managed == 0)
        return sd_errorf("%s: fractal heap at %llu has an invalid doubling table", f->path, (unsigned long long)addr);
    h->checksummed = (flags & 2) != 0;
    h->off_bytes = (max_heap_bits + 7) / 8;
    int a = log2_floor(h->max_direct) / 8 + 1, b = log2_floor(max_managed) / 8 + 1;
    h->len_bytes = a < b ? a : b;
    h->max_direct_rows = lm - ls + 2;
    return 0;
}

// The object a heap ID names (managed objects in direct blocks, tiny objects in the ID).
static int fheap_get(const H5File *f, const FHeap *h, const uint8_t *id, size_t id_len, const uint8_t **obj,
                     size_t *len) {
    int kind = (id[0] >> 4) & 3;
    if ((id[0] >> 6) != 0) return sd_errorf("%s: fractal heap ID version %d", f->path, id[0] >> 6);
    if (kind == 2) {  // tiny: the object is in the ID
        size_t n = (size_t)(id[0] & 15) + 1, at = 1;
        if (id_len > 18) {
            n = ((size_t)(id[0] & 15) << 8 | id[1]) + 1;
            at = 2;
        }
        if (at + n > id_len) return sd_errorf("%s: tiny fractal heap object longer than its ID", f->path);
        *obj = id + at;
        *len = n;
        return 0;
    }
    if (kind != 0) return sd_errorf("%s: huge fractal heap objects are not supported", f->path);
    if ((size_t)(1 + h->off_bytes + h->len_bytes) > id_len)
        return sd_errorf("%s: fractal heap ID of %zu bytes is too short", f->path, id_len);
    uint64_t off = h5_le(id + 1, h->off_bytes), n = h5_le(id + 1 + h->off_bytes, h->len_bytes);
    // Find the direct block holding `off`: the root itself, or an entry of the root indirect block.
    uint64_t block_addr = h->root, block_off = 0, block_size = h->start_size;
    if (h->cur_rows > 0) {
        uint64_t acc = 0, size = h->start_size;
        int row = 0, col = 0;
        for (row = 0; row < h->cur_rows; row++) {
            if (row >= 2) size *= 2;
            if (off - acc < size * (uint64_t)h->width) {
                col = (int)((off - acc) / size);
                break;
            }
            acc += size * (uint64_t)h->width;
        }
        if (row == h->cur_rows) return sd_errorf("%s: fractal heap offset %llu is past the heap", f->path,
                                                 (unsigned long long)off);
        if (row >= h->max_direct_rows)
            return sd_errorf("%s: fractal heaps with nested indirect blocks are not supported", f->path);
        H5Cur c;
        if (cursor_to_end(f, h->root, &c, "FHIB")) return -1;
        c.pos = 5 + (size_t)f->so + (size_t)h->off_bytes + ((size_t)row * (size_t)h->width + (size_t)col) * (size_t)f->so;
        block_addr = h5c_addr(&c, f);
        if (c.bad) return sd_errorf("%s: fractal heap indirect block is cut short", f->path);
        block_off = acc + (uint64_t)col * size;
        block_size = size;
    }
    const uint8_t *blk;
    if (h5_span(f, block_addr, block_size, &blk, "fractal heap direct block")) return -1;
    if (h5_check_sig(f, blk, "FHDB", block_addr)) return -1;
    uint64_t rel = off - block_off;
    uint64_t header = 5 + (uint64_t)f->so + (uint64_t)h->off_bytes + (h->checksummed ? 4 : 0);
    if (off < block_off || rel < header || rel > block_size || n > block_size - rel)
        return sd_errorf("%s: fractal heap object (offset %llu, %llu bytes) is outside its block", f->path,
                         (unsigned long long)off, (unsigned long long)n);
    *obj = blk + rel;
    *len = (size_t)n;
    return 0;
}

typedef struct {
    const H5File *f;
    FHeap heap;
    int type, rec_size, nrec_bytes;
    int cum_bytes[H5_MAX_TREE_DEPTH + 1];
    H5ObjectFn fn;
    void *ctx;
    uint64_t budget;
} Btree2Walk;

static int btree2_record(Btree2Walk *w, const uint8_t *rec) {
    // type 5: hash (4), heap ID; type 8: heap ID (8), flags (1), creation order (4), hash (4)
    const uint8_t *id = w->type == 5 ? rec + 4 : rec;
    size_t id_len = w->type == 5 ? (size_t)w->rec_size - 4 : 8;
    const uint8_t *obj = NULL;
    size_t len = 0;
    if (fheap_get(w->f, &w->heap, id, id_len, &obj, &len)) return -1;
    return w->fn(w->ctx, obj, len);
}

static int btree2_visit(Btree2Walk *w, uint64_t addr, int nrec, int depth) {
    const H5File *f = w->f;
    if (w->budget-- == 0) return sd_errorf("%s: v2 B-tree is larger than the file allows", f->path);
    H5Cur c;
    const char *sig = depth > 0 ? "BTIN" : "BTLF";
    if (cursor_to_end(f, addr, &c, sig)) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1), type = (int)h5c_u(&c, 1);
    if (c.bad || version != 0 || type != w->type)
        return sd_errorf("%s: v2 B-tree node at %llu: version %d type %d", f->path, (unsigned long long)addr, version,
                         type);
    size_t recs_at = c.pos;
    const uint8_t *recs = h5c_take(&c, (size_t)nrec * (size_t)w->rec_size);
    if (!recs) return sd_errorf("%s: v2 B-tree node at %llu: %d records run past the file", f->path,
                                (unsigned long long)addr, nrec);
    (void)recs_at;
    for (int i = 0; i < nrec; i++)
        if (btree2_record(w, recs + (size_t)i * (size_t)w->rec_size)) return -1;
    if (depth == 0) return 0;
    for (int i = 0; i <= nrec; i++) {
        uint64_t child = h5c_addr(&c, f);
        int child_nrec = (int)h5c_u(&c, w->nrec_bytes);
        if (depth > 1) h5c_u(&c, w->cum_bytes[depth - 1]);
        if (c.bad) return sd_errorf("%s: v2 B-tree node at %llu is cut short", f->path, (unsigned long long)addr);
        if (btree2_visit(w, child, child_nrec, depth - 1)) return -1;
    }
    return 0;
}

int h5_dense_iterate(const H5File *f, uint64_t heap_addr, uint64_t btree_addr, int record_type, H5ObjectFn fn,
                     void *ctx) {
    Btree2Walk w;
    memset(&w, 0, sizeof(w));
    w.f = f;
    w.type = record_type;
    w.fn = fn;
    w.ctx = ctx;
    w.budget = node_budget(f);
    if (fheap_open(f, heap_addr, &w.heap)) return -1;
    H5Cur c;
    if (cursor_to_end(f, btree_addr, &c, "BTHD")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1), type = (int)h5c_u(&c, 1);
    uint64_t node_size = h5c_u(&c, 4);
    w.rec_size = (int)h5c_u(&c, 2);
    int depth = (int)h5c_u(&c, 2);
    c.pos += 2;
    uint64_t root = h5c_addr(&c, f);
    int root_nrec = (int)h5c_u(&c, 2);
    if (c.bad) return sd_errorf("%s: v2 B-tree header at %llu is cut short", f->path, (unsigned long long)btree_addr);
    size_t min_rec = type == 5 ? 4 + (size_t)w.heap.id_len : 17;
    if (version != 0 || type != record_type || depth > H5_MAX_TREE_DEPTH || node_size < 16 ||
        node_size > f->len + 64 || (size_t)w.rec_size < min_rec)
        return sd_errorf("%s: v2 B-tree header at %llu: version %d, type %d (expected %d), depth %d, record size %d",
                         f->path, (unsigned long long)btree_addr, version, type, record_type, depth, w.rec_size);
    if (root == H5_UNDEF || root_nrec == 0) return 0;  // empty
    // Sizes of the record-count fields in internal nodes (as H5B2hdr.c derives them).
    uint64_t max_nrec = (node_size - 10) / (uint64_t)w.rec_size, cum = max_nrec;
    if (max_nrec == 0) return sd_errorf("%s: v2 B-tree node size %llu holds no record", f->path,
                                        (unsigned long long)node_size);
    w.nrec_bytes = log2_floor(max_nrec) / 8 + 1;
    w.cum_bytes[0] = 0;
    for (int d = 1; d <= depth; d++) {
        uint64_t ptr = (uint64_t)f->so + (uint64_t)w.nrec_bytes + (d > 1 ? (uint64_t)w.cum_bytes[d - 1] : 0);
        if (node_size < 10 + ptr) return sd_errorf("%s: v2 B-tree nodes too small for depth %d", f->path, depth);
        uint64_t m = (node_size - 10 - ptr) / ((uint64_t)w.rec_size + ptr);
        cum = (m + 1) * cum + m;
        w.cum_bytes[d] = log2_floor(cum) / 8 + 1;
        if (cum > ((uint64_t)1 << 48)) return sd_errorf("%s: v2 B-tree depth %d is too large", f->path, depth);
    }
    return btree2_visit(&w, root, root_nrec, depth);
}

// ---- chunk indexes ----------------------------------------------------------------------

static uint64_t chunk_bytes(const H5Dataset *d) {
    uint64_t n = (uint64_t)d->type.size;
    for (int i = 0; i < d->ndim; i++) n *= d->chunk[i];
    return n;
}

// First-element coordinates of chunk number `index` in the row-major grid of chunks.
static void chunk_coord(const H5Dataset *d, uint64_t index, uint64_t *coord) {
    for (int i = d->ndim - 1; i >= 0; i--) {
        uint64_t g = (d->shape[i] + d->chunk[i] - 1) / d->chunk[i];
        if (g == 0) g = 1;
        coord[i] = (index % g) * d->chunk[i];
        index /= g;
    }
}

static uint64_t num_chunks(const H5Dataset *d) {
    uint64_t n = 1;
    for (int i = 0; i < d->ndim; i++) n *= (d->shape[i] + d->chunk[i] - 1) / d->chunk[i];
    return n;
}

static int farray_chunks(const H5File *f, const H5Dataset *d, H5ChunkFn fn, void *ctx) {
    H5Cur c;
    if (cursor_to_end(f, d->index_addr, &c, "FAHD")) return -1;
    c.pos = 4;
    int version = (int)h5c_u(&c, 1), client = (int)h5c_u(&c, 1), esize = (int)h5c_u(&c, 1);
    int page_bits = (int)h5c_u(&c, 1);
    uint64_t nelem = h5c_len(&c, f), dblock = h5c_addr(&c, f);
    int filtered = d->num_filters > 0;
    int min_esize = f->so + (filtered ? 5 : 0);
    if (c.bad || version != 0 || client != filtered || esize < min_esize || esize > f->so + 12 || page_bits > 32 ||
        nelem != num_chunks(d))
        return sd_errorf("%s: dataset '%s': fixed array header at %llu (version %d, client %d, entry %d bytes, "
                         "%llu entries for %llu chunks) is not valid",
                         f->path, d->name, (unsigned long long)d->index_addr, version, client, esize,
                         (unsigned long long)nelem, (unsigned long long)num_chunks(d));
    uint64_t page_n = (uint64_t)1 << page_bits, npages = nelem > page_n ? (nelem + page_n - 1) / page_n : 0;
    if (cursor_to_end(f, dblock, &c, "FADB")) return -1;
    c.pos = 6 + (size_t)f->so;
    const uint8_t *bitmap = h5c_take(&c, (size_t)((npages + 7) / 8));
    if (!bitmap) return sd_errorf("%s: dataset '%s': fixed array data block is cut short", f->path, d->name);
    uint64_t pos = npages ? c.pos + 4 : c.pos;  // paged: the pages follow the block's checksum
    for (uint64_t i = 0; i < nelem; i++) {
        if (npages) {
            uint64_t page = i / page_n;
            if (i % page_n == 0 && i > 0) pos += 4;  // each page ends with a checksum
            if (!(bitmap[page / 8] & (0x80 >> (page % 8)))) {  // page never written: no chunks
                uint64_t skip = (page_n < nelem - i ? page_n : nelem - i) - 1;
                pos += (skip + 1) * (uint64_t)esize;
                i += skip;
                continue;
            }
        }
        if (pos > c.n || (uint64_t)esize > c.n - pos)
            return sd_errorf("%s: dataset '%s': fixed array entries run past the file", f->path, d->name);
        H5Cur e = {c.p + pos, (size_t)esize, 0, 0};
        uint64_t addr = h5c_addr(&e, f), size = chunk_bytes(d);
        uint32_t mask = 0;
        if (filtered) {
            size = h5c_u(&e, esize - f->so - 4);
            mask = (uint32_t)h5c_u(&e, 4);
        }
        pos += (uint64_t)esize;
        if (addr == H5_UNDEF) continue;
        uint64_t coord[H5_MAX_DIMS];
        chunk_coord(d, i, coord);
        if (fn(ctx, coord, addr, size, mask)) return -1;
    }
    return 0;
}

int h5_chunks(const H5File *f, const H5Dataset *d, H5ChunkFn fn, void *ctx) {
    uint64_t zero[H5_MAX_DIMS + 1] = {0};
    if (d->index_addr == H5_UNDEF) return 0;  // no chunk written yet
    switch (d->chunk_index) {
    case H5_IDX_BTREE1: {
        Btree1Walk w = {f, 1, d->ndim + 1, NULL, fn, ctx, node_budget(f)};
        return btree1_visit(&w, d->index_addr, -1, 0);
    }
    case H5_IDX_SINGLE:
        return fn(ctx, zero, d->index_addr, d->num_filters ? d->single_size : chunk_bytes(d), d->single_mask);
    case H5_IDX_IMPLICIT: {
        uint64_t n = num_chunks(d), cb = chunk_bytes(d);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t coord[H5_MAX_DIMS];
            chunk_coord(d, i, coord);
            if (fn(ctx, coord, d->index_addr + i * cb, cb, 0)) return -1;
        }
        return 0;
    }
    case H5_IDX_FARRAY:
        return farray_chunks(f, d, fn, ctx);
    }
    return sd_errorf("%s: dataset '%s': chunk index %d is not supported", f->path, d->name, d->chunk_index);
}

// ---- filters ------------------------------------------------------------------------------

// Fletcher-32 as HDF5 computes it (H5checksum.c): 16-bit big-endian words, odd byte last.
static uint32_t fletcher32(const uint8_t *p, size_t len) {
    uint32_t s1 = 0, s2 = 0;
    size_t words = len / 2;
    while (words) {
        size_t t = words > 360 ? 360 : words;
        words -= t;
        do {
            s1 += (uint32_t)((p[0] << 8) | p[1]);
            p += 2;
            s2 += s1;
        } while (--t);
        s1 = (s1 & 0xffff) + (s1 >> 16);
        s2 = (s2 & 0xffff) + (s2 >> 16);
    }
    if (len % 2) {
        s1 += (uint32_t)(p[0] << 8);
        s2 += s1;
        s1 = (s1 & 0xffff) + (s1 >> 16);
        s2 = (s2 & 0xffff) + (s2 >> 16);
    }
    s1 = (s1 & 0xffff) + (s1 >> 16);
    s2 = (s2 & 0xffff) + (s2 >> 16);
    return (s2 << 16) | s1;
}

int h5_unfilter(const H5File *f, const H5Dataset *d, uint32_t mask, const uint8_t *in, size_t in_len, uint8_t *out,
                size_t out_len) {
    size_t cap = in_len > out_len ? in_len : out_len;
    uint8_t *tmp[2] = {malloc(cap ? cap : 1), malloc(cap ? cap : 1)};
    if (!tmp[0] || !tmp[1]) {
        free(tmp[0]);
        free(tmp[1]);
        return sd_errorf("%s: dataset '%s': out of memory for a chunk of %zu bytes", f->path, d->name, cap);
    }
    const uint8_t *cur = in;
    size_t len = in_len;
    int which = 0, rc = 0;
    for (int i = d->num_filters - 1; i >= 0 && rc == 0; i--) {
        const H5Filter *flt = &d->filters[i];
        if (mask & (1u << i)) continue;  // not applied to this chunk
        uint8_t *dst = tmp[which];
        size_t n = 0;
        if (flt->id == 1) {  // deflate: a zlib stream
            if (zlib_inflate_into(cur, len, dst, out_len, &n))
                rc = sd_error_context("%s: dataset '%s': deflate", f->path, d->name);
        } else if (flt->id == 2) {  // shuffle: byte b of element k was stored at b * count + k
            size_t es = flt->num_values > 0 ? flt->values[0] : (size_t)d->type.size;
            if (es == 0 || len > out_len) {
                rc = sd_errorf("%s: dataset '%s': shuffle of %zu bytes (element size %zu) into %zu", f->path,
                               d->name, len, es, out_len);
                break;
            }
            size_t count = len / es;
            if (es == 1 || count == 0) count = 0, es = 1;  // nothing was shuffled (as H5Zshuffle.c)
            for (size_t b = 0; b < es && count; b++)
                for (size_t k = 0; k < count; k++) dst[k * es + b] = cur[b * count + k];
            memcpy(dst + count * es, cur + count * es, len - count * es);
            n = len;
        } else if (flt->id == 3) {  // fletcher32: 4 checksum bytes at the end
            if (len < 4) {
                rc = sd_errorf("%s: dataset '%s': fletcher32 chunk of %zu bytes", f->path, d->name, len);
                break;
            }
            n = len - 4;
            uint32_t want = (uint32_t)h5_le(cur + n, 4), got = fletcher32(cur, n);
            // HDF5 before 1.6.3 stored the checksum with its bytes in another order; it accepts both.
            uint32_t swapped = ((got & 0xff) << 24) | ((got & 0xff00) << 8) | ((got >> 8) & 0xff00) | (got >> 24);
            if (want != got && want != swapped)
                rc = sd_errorf("%s: dataset '%s': fletcher32 checksum mismatch (stored %08x, computed %08x): the "
                               "chunk is corrupt", f->path, d->name, want, got);
            memcpy(dst, cur, n);
        } else {
            rc = sd_errorf("%s: dataset '%s': filter %u is not supported", f->path, d->name, flt->id);
        }
        cur = dst;
        len = n;
        which ^= 1;
    }
    if (rc == 0 && len != out_len)
        rc = sd_errorf("%s: dataset '%s': a chunk decodes to %zu bytes, expected %zu", f->path, d->name, len, out_len);
    if (rc == 0) memcpy(out, cur, len);
    free(tmp[0]);
    free(tmp[1]);
    return rc;
}
