// A read-only HDF5 reader, our own code (no libhdf5), for the files h5py writes:
// GEO-Bench samples (one dataset per band, a `label` dataset, a vlen-string attribute).
// Supported: superblock versions 0, 1 (untested: h5py cannot write one), 2 and 3; object
// headers v1 and v2 (with continuation blocks); groups as symbol tables (v1 B-tree + local
// heap + symbol nodes) and as link messages (compact, or dense: fractal heap + v2 B-tree);
// hard links only; dataspaces (scalar and simple; null for attributes); integer (1/2/4/8
// bytes, signed or not) and IEEE float (2/4/8 bytes) datatypes in both byte orders;
// fixed-length strings and variable-length strings (global heap, up to 4096 per attribute)
// for attributes; data layout messages v3 and v4 with compact, contiguous and chunked
// storage, chunks found through a v1 B-tree, a single chunk, an implicit index or a fixed
// array (paged or not); the deflate (1), shuffle (2) and fletcher32 (3) filters.
// Anything else (other filters, extensible-array / v2-B-tree chunk indexes, virtual
// layouts, compound / enum / reference types, shared messages, external files) is refused
// with a message naming the file, the object and the feature.
// The whole file is read into memory; every address, size and count is checked against it.
// Chunks never written read as 0 (the reader refuses a non-zero fill value).
#ifndef SD_HDF5_H
#define SD_HDF5_H

#include <stddef.h>
#include <stdint.h>

#include "io/npy.h"  // NpyDtype names a numeric element type

#define H5_MAX_DIMS 8
#define H5_MAX_FILTERS 8
// Decoded bytes of one dataset above this are refused.
#define H5_MAX_DATA_BYTES ((uint64_t)1 << 31)

typedef enum {
    H5T_INT,          // npy: NPY_INT8 ... NPY_UINT64
    H5T_FLOAT,        // npy: NPY_FLOAT16, NPY_FLOAT32, NPY_FLOAT64
    H5T_STRING,       // fixed-length string of `size` bytes
    H5T_VLEN_STRING,  // variable-length string (global heap); size = the 4 + O + 4 byte reference
    H5T_UNSUPPORTED,  // any other class (h5_class names it); its data cannot be read
} H5TypeKind;

typedef struct {
    H5TypeKind kind;
    int size;          // bytes per element in the file
    int big_endian;    // byte order in the file (numbers)
    NpyDtype npy;      // H5T_INT / H5T_FLOAT: the element type once read
    int h5_class;      // the HDF5 datatype class number (0 fixed-point, 1 float, 3 string, 9 vlen, ...)
    int utf8;          // strings: character set 1 (UTF-8) rather than 0 (ASCII)
} H5Type;

typedef struct {
    char *name;
    H5Type type;
    int ndim;                      // 0: scalar; -1: null dataspace (no value)
    uint64_t shape[H5_MAX_DIMS];
    uint64_t count;                // elements (1 for a scalar, 0 for null)
    // The value, decoded at open: numbers in host byte order (count * npy size bytes);
    // strings as `count` malloc'd NUL-terminated strings (str_len[i] bytes each, may
    // hold NULs); NULL for unsupported types.
    void *data;
    char **str;
    size_t *str_len;
} H5Attr;

typedef struct {
    uint32_t id, flags;
    int num_values;
    uint32_t values[8];
} H5Filter;

enum { H5_COMPACT = 0, H5_CONTIGUOUS = 1, H5_CHUNKED = 2 };
enum { H5_IDX_BTREE1 = 0, H5_IDX_SINGLE = 1, H5_IDX_IMPLICIT = 2, H5_IDX_FARRAY = 3 };

typedef struct {
    char *name;                    // path from the root group, no leading '/': "Red", "grp/x"
    H5Type type;
    int ndim;
    uint64_t shape[H5_MAX_DIMS];
    uint64_t count;
    H5Attr *attrs;
    int num_attrs;
    // storage
    int layout;                    // H5_COMPACT, H5_CONTIGUOUS, H5_CHUNKED
    uint64_t addr, size;           // compact: file offset of the data; contiguous: address, size
    int chunk_index;               // H5_IDX_*
    uint64_t chunk[H5_MAX_DIMS];   // chunk shape (elements)
    uint64_t index_addr;           // v1 B-tree, single chunk or fixed-array header address
    uint64_t single_size;          // single chunk with filters: its stored size
    uint32_t single_mask;          //   and its filter mask
    int num_filters;
    H5Filter filters[H5_MAX_FILTERS];
    int fill_nonzero;              // a fill value other than 0 (chunks never written cannot be read)
    char unsupported[96];          // non-empty when the data cannot be read: the feature (read refuses it)
} H5Dataset;

typedef struct {
    char *path;                    // for messages
    uint8_t *buf;                  // the whole file
    size_t len;
    int owns_buf;
    int sb_version;                // superblock version
    int so, sl;                    // sizes of offsets and lengths (bytes)
    uint64_t base;                 // base address
    H5Dataset *datasets;
    int num_datasets;
    H5Attr *root_attrs;            // attributes of the root group
    int num_root_attrs;
    int num_groups;                // groups visited (root included)
} H5File;

// Opens a file: reads it whole, parses the superblock and walks every group from the root,
// collecting datasets (names, types, shapes, storage) and attributes (decoded).
int h5_open(H5File *f, const char *path);
// The same over bytes in memory (not copied: buf must outlive f). `name` is for messages.
int h5_open_mem(H5File *f, const char *name, const uint8_t *buf, size_t len);
void h5_close(H5File *f);

// 1 if the bytes start with the HDF5 signature at offset 0 (the reader does not look for
// a superblock after a user block).
int h5_is_hdf5(const uint8_t *buf, size_t len);

const H5Dataset *h5_find(const H5File *f, const char *name);
const H5Attr *h5_find_attr(const H5Attr *attrs, int num_attrs, const char *name);

// Reads a numeric dataset: *out (malloc'd) gets count elements of d->type.npy in host
// byte order, C order. Fails (message: file, dataset, feature) for what it cannot read.
int h5_read(const H5File *f, const H5Dataset *d, void **out);
// The same converted to float32 (64-bit integers may round).
int h5_read_f32(const H5File *f, const H5Dataset *d, float **out);

// "int16", "float32", "string[9]", "vlen string", "compound (class 6)" ...
void h5_type_name(const H5Type *t, char *out, size_t size);

#endif
