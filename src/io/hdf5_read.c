// HDF5 dataset reads: compact, contiguous and chunked storage into one C-order array in
// host byte order. Chunks are found by hdf5_index.c (h5_chunks) and decoded there
// (h5_unfilter); here each is checked against the dataset's shape and copied into place.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/hdf5_priv.h"

typedef struct {
    const H5File *f;
    const H5Dataset *d;
    uint8_t *out, *chunk, *seen;
    uint64_t chunk_bytes, grid[H5_MAX_DIMS];
} ChunkCopy;

static int copy_chunk(void *ctx, const uint64_t *coord, uint64_t addr, uint64_t size, uint32_t mask) {
    ChunkCopy *cc = ctx;
    const H5File *f = cc->f;
    const H5Dataset *d = cc->d;
    int nd = d->ndim;
    uint64_t lin = 0;
    for (int i = 0; i < nd; i++) {
        if (coord[i] % d->chunk[i] || coord[i] >= d->shape[i])
            return sd_errorf("%s: dataset '%s': a chunk at offset %llu in dimension %d does not fit shape %llu / "
                             "chunk %llu", f->path, d->name, (unsigned long long)coord[i], i,
                             (unsigned long long)d->shape[i], (unsigned long long)d->chunk[i]);
        lin = lin * cc->grid[i] + coord[i] / d->chunk[i];
    }
    if (cc->seen[lin]) return sd_errorf("%s: dataset '%s': chunk %llu is stored twice", f->path, d->name,
                                        (unsigned long long)lin);
    cc->seen[lin] = 1;
    const uint8_t *src;
    if (d->num_filters == 0) {
        if (size < cc->chunk_bytes)
            return sd_errorf("%s: dataset '%s': chunk %llu holds %llu bytes, expected %llu", f->path, d->name,
                             (unsigned long long)lin, (unsigned long long)size, (unsigned long long)cc->chunk_bytes);
        if (h5_span(f, addr, cc->chunk_bytes, &src, "chunk")) return sd_error_context("dataset '%s'", d->name);
    } else {
        const uint8_t *stored;
        if (h5_span(f, addr, size, &stored, "chunk")) return sd_error_context("dataset '%s'", d->name);
        if (h5_unfilter(f, d, mask, stored, (size_t)size, cc->chunk, (size_t)cc->chunk_bytes)) return -1;
        src = cc->chunk;
    }
    // Copy the part inside the dataset, one run along the last dimension at a time.
    uint64_t es = (uint64_t)d->type.size, ext[H5_MAX_DIMS], idx[H5_MAX_DIMS] = {0}, rows = 1;
    for (int i = 0; i < nd; i++) {
        ext[i] = d->shape[i] - coord[i] < d->chunk[i] ? d->shape[i] - coord[i] : d->chunk[i];
        if (i < nd - 1) rows *= ext[i];
    }
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t s = 0, o = 0;
        for (int i = 0; i < nd; i++) {
            uint64_t ci = i < nd - 1 ? idx[i] : 0;
            s = s * d->chunk[i] + ci;
            o = o * d->shape[i] + coord[i] + ci;
        }
        memcpy(cc->out + o * es, src + s * es, (size_t)(ext[nd - 1] * es));
        for (int i = nd - 2; i >= 0; i--) {  // next row index
            if (++idx[i] < ext[i]) break;
            idx[i] = 0;
        }
    }
    return 0;
}

int h5_read(const H5File *f, const H5Dataset *d, void **out) {
    *out = NULL;
    if (d->unsupported[0])
        return sd_errorf("%s: dataset '%s' cannot be read: %s is not supported", f->path, d->name, d->unsupported);
    if (d->type.kind != H5T_INT && d->type.kind != H5T_FLOAT)
        return sd_errorf("%s: dataset '%s' is not numeric", f->path, d->name);
    uint64_t es = (uint64_t)d->type.size, bytes = d->count * es;
    // Deflate expands at most ~1032:1, so a file cannot honestly hold much more than this.
    uint64_t plausible = (uint64_t)f->len * 1100 + ((uint64_t)1 << 20);
    if (d->count > H5_MAX_DATA_BYTES / es || bytes > plausible)
        return sd_errorf("%s: dataset '%s': %llu elements of %llu bytes is more than the reader allows for a file "
                         "of %zu bytes", f->path, d->name, (unsigned long long)d->count, (unsigned long long)es,
                         f->len);
    uint8_t *data = calloc(bytes ? (size_t)bytes : 1, 1);
    if (!data) return sd_errorf("%s: dataset '%s': out of memory (%llu bytes)", f->path, d->name,
                                (unsigned long long)bytes);
    int rc = 0;
    if (bytes == 0) {
        // nothing stored
    } else if (d->layout == H5_COMPACT) {
        if (d->size != bytes)
            rc = sd_errorf("%s: dataset '%s': compact data of %llu bytes, expected %llu", f->path, d->name,
                           (unsigned long long)d->size, (unsigned long long)bytes);
        else memcpy(data, f->buf + d->addr, (size_t)bytes);
    } else if (d->layout == H5_CONTIGUOUS) {
        const uint8_t *src;
        if (d->addr == H5_UNDEF) {
            if (d->fill_nonzero)
                rc = sd_errorf("%s: dataset '%s' was never written and has a non-zero fill value (not supported)",
                               f->path, d->name);
        } else if (d->size < bytes) {
            rc = sd_errorf("%s: dataset '%s': contiguous data of %llu bytes, expected %llu", f->path, d->name,
                           (unsigned long long)d->size, (unsigned long long)bytes);
        } else if (!(rc = h5_span(f, d->addr, bytes, &src, "contiguous data"))) {
            memcpy(data, src, (size_t)bytes);
        } else {
            sd_error_context("dataset '%s'", d->name);
        }
    } else {
        ChunkCopy cc = {f, d, data, NULL, NULL, es, {0}};
        uint64_t nchunks = 1;
        for (int i = 0; i < d->ndim; i++) {
            cc.grid[i] = (d->shape[i] + d->chunk[i] - 1) / d->chunk[i];
            cc.chunk_bytes *= d->chunk[i];
            nchunks *= cc.grid[i];
        }
        // Every chunk is decoded whole: with chunks no larger than the dataset in any dimension
        // (as HDF5 requires for fixed shapes) the grid is at most 2^ndim times the data.
        uint64_t grid_limit = ((uint64_t)1 << d->ndim) * bytes + ((uint64_t)1 << 20);
        if (cc.chunk_bytes > H5_MAX_DATA_BYTES || cc.chunk_bytes > plausible || nchunks > grid_limit / cc.chunk_bytes) {
            rc = sd_errorf("%s: dataset '%s': %llu chunks of %llu bytes for %llu bytes of data are more than the "
                           "reader allows (chunks larger than the dataset?)", f->path, d->name,
                           (unsigned long long)nchunks, (unsigned long long)cc.chunk_bytes, (unsigned long long)bytes);
        } else {
            cc.seen = calloc((size_t)nchunks, 1);
            cc.chunk = malloc((size_t)cc.chunk_bytes);
            if (!cc.seen || !cc.chunk) rc = sd_errorf("%s: dataset '%s': out of memory", f->path, d->name);
            else rc = h5_chunks(f, d, copy_chunk, &cc);
            if (rc == 0 && d->fill_nonzero)
                for (uint64_t i = 0; i < nchunks && rc == 0; i++)
                    if (!cc.seen[i])
                        rc = sd_errorf("%s: dataset '%s': chunk %llu was never written and the fill value is not 0 "
                                       "(not supported)", f->path, d->name, (unsigned long long)i);
        }
        free(cc.seen);
        free(cc.chunk);
    }
    if (rc) {
        free(data);
        return -1;
    }
    h5_to_host(data, d->count, d->type.size, d->type.big_endian);
    *out = data;
    return 0;
}

int h5_read_f32(const H5File *f, const H5Dataset *d, float **out) {
    *out = NULL;
    void *raw;
    if (h5_read(f, d, &raw)) return -1;
    NpyArray a;
    memset(&a, 0, sizeof(a));
    a.dtype = d->type.npy;
    a.itemsize = d->type.size;
    a.count = (int64_t)d->count;
    a.ndim = 1;
    a.shape[0] = a.count;
    a.data = raw;
    int rc = npy_to_float32(&a, out);
    free(raw);
    return rc;
}
