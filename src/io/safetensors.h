// safetensors files: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "string"}}, then the raw little-endian data.
// The reader mmaps the file and validates every entry before anything is used.
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "io/json.h"

typedef enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL } DType;

const char *dtype_name(DType dt);
int dtype_size(DType dt);

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    size_t begin, end;        // data_offsets, relative to the start of the data section
    const unsigned char *data;  // points into the mapping
} StEntry;

typedef struct SafeTensors {
    char *path;
    unsigned char *map;
    size_t map_size;
    int count;
    StEntry *entries;
    JsonValue metadata;  // the "__metadata__" object (JSON_NULL when absent)
    // PyTorch checkpoints (io/torch_file.h): tensor data copied out of the file
    // (views with other strides, big-endian records), freed by st_close.
    unsigned char **owned;
    int num_owned;
    // A sharded checkpoint (st_open on a *.index.json): the shard files the entries point into.
    struct SafeTensors *shards;
    int num_shards;
} SafeTensors;

#define ST_MAX_HEADER (100u << 20)  // 100 MB, the limit the reference implementation uses

// Opens a tensor file by its content: safetensors, a PyTorch checkpoint (.bin, .pt,
// .pth, .ckpt: zip or legacy format, read by io/torch_file.c without running anything),
// or a sharded checkpoint's index (*.safetensors.index.json, *.bin.index.json: the
// shards' tensors as one file).
int st_open(SafeTensors *st, const char *path);
void st_close(SafeTensors *st);
// NULL if there is no such tensor (no message).
const StEntry *st_find(const SafeTensors *st, const char *name);
// Like st_find but a missing name is an error listing the nearest names.
int st_require(const SafeTensors *st, const char *name, const StEntry **out);

// Loads a tensor as float32 (converting f16/bf16/f64/ints). When the stored
// dtype is F32 and the data is 4-byte aligned the tensor points into the
// mapping (owns_data 0, valid until st_close), otherwise it owns a copy.
// `ndim`/`shape` (may be NULL) give the expected shape: a mismatch is an error.
int st_load(const SafeTensors *st, const char *name, int ndim, const int *shape, Tensor *out);
// Tells the kernel that a view's pages are not needed any more (a weight that was
// packed into another layout): the whole pages inside [p, p + bytes) are dropped from
// memory and read from the file again if touched. Memory outside the mapping is ignored.
void st_release_pages(const SafeTensors *st, const void *p, size_t bytes);
// Copies entry data converted to float32 into dst (numel floats).
int st_entry_to_f32(const StEntry *e, float *dst);
// Copies an integer tensor (I64/I32/I16/I8/U8/BOOL) to int64.
int st_entry_to_i64(const SafeTensors *st, const StEntry *e, int64_t *dst);
// A metadata value, or NULL.
const char *st_metadata(const SafeTensors *st, const char *key);
// The whole metadata as the text of a JSON object ({"key": "value", ...}, one pair a line),
// malloc'd; NULL when out of memory. (A run folder's features_meta.json.)
char *st_metadata_json(const SafeTensors *st);

// ---------------------------------------------------------------------------
// Writer: tensors are gathered then written at once to a temporary file that
// is renamed over `path`, so a stopped run never leaves half a file.
typedef struct {
    const char *name;
    DType dtype;  // F32, F16 (converted from f32 data), I64 or I32
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;  // float* for F32/F16, int64_t* for I64, int32_t* for I32
    int raw;           // 1: data already holds the dtype's little-endian bytes (any dtype, no conversion)
} StWriteEntry;

// metadata_keys/values: `n_meta` string pairs (may be 0).
int st_write(const char *path, const StWriteEntry *entries, int n, const char *const *metadata_keys,
             const char *const *metadata_values, int n_meta);
// The same with the data section starting at a multiple of `align` bytes from the file's start
// (a multiple of 8; st_write uses 8). Tensors follow each other: a caller that needs a tensor
// aligned puts padding entries before it (models/pack.c).
int st_write_aligned(const char *path, const StWriteEntry *entries, int n, const char *const *metadata_keys,
                     const char *const *metadata_values, int n_meta, int align);
// Writes every tensor of an open file as it is stored (dtype and bytes unchanged), with
// the given metadata, to a new safetensors file.
int st_write_copy(const SafeTensors *st, const char *path, const char *const *metadata_keys,
                  const char *const *metadata_values, int n_meta);
// Helper to fill an entry from a float tensor.
StWriteEntry st_entry_f32(const char *name, const Tensor *t);

#endif
