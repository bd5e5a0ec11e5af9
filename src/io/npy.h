// NPY array files (numpy.lib.format), versions 1.0, 2.0 and 3.0.
// Reader: the descr codes below in '<', '>', '|' or '=' byte order (converted
// to the host's), C order or Fortran order (transposed to C order on load),
// 0 to NPY_MAX_DIMS dimensions. Structured dtypes, object arrays and strings
// are rejected. Writer: version 1.0, little-endian, C order.
#ifndef SD_NPY_H
#define SD_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef enum {
    NPY_BOOL = 0,  // b1
    NPY_INT8,      // i1
    NPY_UINT8,     // u1
    NPY_INT16,     // i2
    NPY_UINT16,    // u2
    NPY_INT32,     // i4
    NPY_UINT32,    // u4
    NPY_INT64,     // i8
    NPY_UINT64,    // u8
    NPY_FLOAT16,   // f2
    NPY_FLOAT32,   // f4
    NPY_FLOAT64,   // f8
    NPY_DTYPE_COUNT
} NpyDtype;

typedef struct {
    NpyDtype dtype;
    int itemsize;                    // bytes per element
    int ndim;                        // 0 for a scalar array
    int64_t shape[NPY_MAX_DIMS];
    int64_t count;                   // product of the shape (1 for 0-D)
    void *data;                      // count * itemsize bytes, host byte order, C order
    int version_major;               // of the file read (1, 2 or 3)
    size_t data_offset;              // where the payload started in the file
    int was_fortran_order;           // 1 if the file was Fortran order (data has been transposed)
} NpyArray;

// Parses an NPY file held in memory (the data is copied).
int npy_parse(const uint8_t *buf, size_t len, NpyArray *arr);
// Reads a file; messages start with the path.
int npy_read(const char *path, NpyArray *arr);
void npy_free(NpyArray *arr);

// Converts any dtype to float32 (bool -> 0/1; 64-bit integers may round).
// *out is malloc'd, arr->count values.
int npy_to_float32(const NpyArray *arr, float **out);

// Serialises (version 1.0, '<' byte order, C order). data holds the product of
// shape elements of dtype, host byte order. *out is malloc'd.
int npy_encode(NpyDtype dtype, int ndim, const int64_t *shape, const void *data, uint8_t **out, size_t *out_len);
int npy_write(const char *path, NpyDtype dtype, int ndim, const int64_t *shape, const void *data);

// "float32", "uint8", ...
const char *npy_dtype_name(NpyDtype dtype);

// Element i of an array of dtype t (host byte order), as float.
float npy_sample_to_float(const void *data, size_t i, NpyDtype t);

#endif
