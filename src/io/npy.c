// NPY reader/writer.
//
// Layout: "\x93NUMPY", major, minor, header length (2 bytes little-endian in
// v1.0, 4 bytes in v2.0/3.0), then the header: a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (101, 100, 1), }
// padded with spaces and ended by '\n', then the raw array bytes.
#include "io/npy.h"
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"

static const struct {
    char kind;  // descr letter
    int size;
    NpyDtype dtype;
    const char *name;
} DTYPES[NPY_DTYPE_COUNT] = {
    {'b', 1, NPY_BOOL, "bool"},       {'i', 1, NPY_INT8, "int8"},     {'u', 1, NPY_UINT8, "uint8"},
    {'i', 2, NPY_INT16, "int16"},     {'u', 2, NPY_UINT16, "uint16"}, {'i', 4, NPY_INT32, "int32"},
    {'u', 4, NPY_UINT32, "uint32"},   {'i', 8, NPY_INT64, "int64"},   {'u', 8, NPY_UINT64, "uint64"},
    {'f', 2, NPY_FLOAT16, "float16"}, {'f', 4, NPY_FLOAT32, "float32"}, {'f', 8, NPY_FLOAT64, "float64"},
};

const char *npy_dtype_name(NpyDtype dtype) {
    return (dtype >= 0 && dtype < NPY_DTYPE_COUNT) ? DTYPES[dtype].name : "invalid";
}

static int host_is_little_endian(void) {
    uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static void swap_bytes(uint8_t *data, int64_t count, int itemsize) {
    if (itemsize == 1) return;
    for (int64_t i = 0; i < count; i++) {
        uint8_t *p = data + i * itemsize;
        for (int a = 0, b = itemsize - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

// ---------------------------------------------------------------------------
// Header dict parser: just enough Python literal syntax for numpy's headers.

typedef struct {
    const char *s;
    size_t len, pos;
} Cursor;

static void skip_space(Cursor *c) {
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' || c->s[c->pos] == '\n' ||
                               c->s[c->pos] == '\r'))
        c->pos++;
}

static int accept(Cursor *c, char ch) {
    skip_space(c);
    if (c->pos < c->len && c->s[c->pos] == ch) {
        c->pos++;
        return 1;
    }
    return 0;
}

// A quoted string ('...' or "..."), no escapes (numpy never writes any).
static int parse_string(Cursor *c, char *out, size_t cap) {
    skip_space(c);
    if (c->pos >= c->len || (c->s[c->pos] != '\'' && c->s[c->pos] != '"'))
        return sd_errorf("header: expected a quoted string at offset %zu", c->pos);
    char q = c->s[c->pos++];
    size_t n = 0;
    while (c->pos < c->len && c->s[c->pos] != q) {
        if (n + 1 >= cap) return sd_errorf("header: string too long at offset %zu", c->pos);
        out[n++] = c->s[c->pos++];
    }
    if (c->pos >= c->len) return sd_errorf("header: unterminated string");
    c->pos++;
    out[n] = '\0';
    return 0;
}

static int parse_bool(Cursor *c, int *v) {
    skip_space(c);
    if (c->len - c->pos >= 4 && memcmp(c->s + c->pos, "True", 4) == 0) {
        c->pos += 4;
        *v = 1;
        return 0;
    }
    if (c->len - c->pos >= 5 && memcmp(c->s + c->pos, "False", 5) == 0) {
        c->pos += 5;
        *v = 0;
        return 0;
    }
    return sd_errorf("header: 'fortran_order' must be True or False (offset %zu)", c->pos);
}

// A tuple of non-negative integers: (), (6,), (101, 100, 1). Python 2 era
// writers may add an 'L' suffix.
static int parse_shape(Cursor *c, int *ndim, int64_t *shape) {
    if (!accept(c, '(')) return sd_errorf("header: 'shape' must be a tuple (offset %zu)", c->pos);
    *ndim = 0;
    for (;;) {
        if (accept(c, ')')) return 0;
        skip_space(c);
        if (c->pos >= c->len || c->s[c->pos] < '0' || c->s[c->pos] > '9')
            return sd_errorf("header: expected a non-negative integer in 'shape' at offset %zu", c->pos);
        int64_t v = 0;
        while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
            int digit = c->s[c->pos++] - '0';
            if (v > (INT64_MAX - digit) / 10) return sd_errorf("header: shape value overflows 64 bits");
            v = v * 10 + digit;
        }
        if (c->pos < c->len && c->s[c->pos] == 'L') c->pos++;
        if (*ndim >= NPY_MAX_DIMS) return sd_errorf("header: more than %d dimensions", NPY_MAX_DIMS);
        shape[(*ndim)++] = v;
        if (accept(c, ',')) continue;
        if (accept(c, ')')) return 0;
        return sd_errorf("header: expected ',' or ')' in 'shape' at offset %zu", c->pos);
    }
}

static int parse_descr(const char *d, NpyArray *arr, int *swap) {
    size_t n = strlen(d);
    if (n < 3 || n > 4) return sd_errorf("header: unsupported descr '%s'", d);
    char order = d[0], kind = d[1];
    int size = atoi(d + 2);
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return sd_errorf("header: descr '%s' has unknown byte order '%c'", d, order);
    for (int i = 2; d[i]; i++)
        if (d[i] < '0' || d[i] > '9') return sd_errorf("header: unsupported descr '%s'", d);
    for (int t = 0; t < NPY_DTYPE_COUNT; t++) {
        if (DTYPES[t].kind == kind && DTYPES[t].size == size) {
            arr->dtype = DTYPES[t].dtype;
            arr->itemsize = size;
            int little = host_is_little_endian();
            *swap = size > 1 && ((order == '<' && !little) || (order == '>' && little));
            return 0;
        }
    }
    return sd_errorf("header: unsupported descr '%s' (supported: b1 i1 u1 i2 u2 i4 u4 i8 u8 f2 f4 f8)", d);
}

static int parse_header(const char *h, size_t len, NpyArray *arr, int *fortran, int *swap) {
    Cursor c = {h, len, 0};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!accept(&c, '{')) return sd_errorf("header: expected '{' (not a Python dict literal)");
    for (;;) {
        if (accept(&c, '}')) break;
        char key[32];
        if (parse_string(&c, key, sizeof(key))) return -1;
        if (!accept(&c, ':')) return sd_errorf("header: expected ':' after key '%s'", key);
        if (strcmp(key, "descr") == 0) {
            skip_space(&c);
            if (c.pos < c.len && c.s[c.pos] == '[')
                return sd_errorf("header: structured dtypes (descr is a list) are not supported");
            char descr[32];
            if (parse_string(&c, descr, sizeof(descr)) || parse_descr(descr, arr, swap)) return -1;
            have_descr++;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_bool(&c, fortran)) return -1;
            have_order++;
        } else if (strcmp(key, "shape") == 0) {
            if (parse_shape(&c, &arr->ndim, arr->shape)) return -1;
            have_shape++;
        } else {
            return sd_errorf("header: unexpected key '%s'", key);
        }
        if (accept(&c, ',')) continue;
        if (accept(&c, '}')) break;
        return sd_errorf("header: expected ',' or '}' at offset %zu", c.pos);
    }
    if (have_descr != 1 || have_order != 1 || have_shape != 1)
        return sd_errorf("header: needs exactly one each of 'descr', 'fortran_order', 'shape'");
    skip_space(&c);
    if (c.pos != c.len) return sd_errorf("header: unexpected text after the dict at offset %zu", c.pos);
    return 0;
}

// Fortran order -> C order: element at coordinates (i0..in) sits at
// sum(ik * stride_k) with stride_0 = 1 in the file.
static int transpose_fortran(NpyArray *arr) {
    if (arr->ndim < 2 || arr->count == 0) return 0;
    size_t isz = (size_t)arr->itemsize;
    uint8_t *dst = (uint8_t *)malloc((size_t)arr->count * isz);
    if (!dst) return sd_errorf("out of memory transposing a Fortran-order array");
    int64_t fstride[NPY_MAX_DIMS], idx[NPY_MAX_DIMS] = {0};
    fstride[0] = 1;
    for (int k = 1; k < arr->ndim; k++) fstride[k] = fstride[k - 1] * arr->shape[k - 1];
    const uint8_t *src = (const uint8_t *)arr->data;
    for (int64_t i = 0; i < arr->count; i++) {
        int64_t off = 0;
        for (int k = 0; k < arr->ndim; k++) off += idx[k] * fstride[k];
        memcpy(dst + (size_t)i * isz, src + (size_t)off * isz, isz);
        for (int k = arr->ndim - 1; k >= 0; k--) {  // next C-order coordinate
            if (++idx[k] < arr->shape[k]) break;
            idx[k] = 0;
        }
    }
    free(arr->data);
    arr->data = dst;
    return 0;
}

int npy_parse(const uint8_t *buf, size_t len, NpyArray *arr) {
    memset(arr, 0, sizeof(*arr));
    if (len >= 6 && memcmp(buf, "\x93NUMPY", 6) != 0) return sd_errorf("not an NPY file (bad magic)");
    if (len < 10) return sd_errorf("NPY preamble truncated (%zu bytes, needs 10)", len);
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return sd_errorf("NPY v%d preamble truncated (%zu bytes)", major, len);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return sd_errorf("unsupported NPY format version %d.%d", major, buf[7]);
    }
    if (hlen > len - hstart)
        return sd_errorf("header of %zu bytes declared, but the file has only %zu bytes after the preamble", hlen,
                         len - hstart);
    int fortran = 0, swap = 0;
    if (parse_header((const char *)buf + hstart, hlen, arr, &fortran, &swap)) return -1;
    arr->version_major = major;
    arr->data_offset = hstart + hlen;
    arr->was_fortran_order = fortran;
    // Element count, refusing overflow of count * itemsize.
    int64_t count = 1;
    for (int k = 0; k < arr->ndim; k++) {
        int64_t d = arr->shape[k];
        if (d != 0 && count > (INT64_MAX / 16) / d) return sd_errorf("shape is too large (element count overflows)");
        count *= d;
    }
    arr->count = count;
    uint64_t nbytes = (uint64_t)count * (uint64_t)arr->itemsize;
    uint64_t avail = len - arr->data_offset;
    if (nbytes != avail)
        return sd_errorf("shape needs %llu data bytes (%lld %s elements) but the file has %llu after the header",
                         (unsigned long long)nbytes, (long long)count, npy_dtype_name(arr->dtype),
                         (unsigned long long)avail);
    arr->data = malloc(nbytes ? (size_t)nbytes : 1);
    if (!arr->data) return sd_errorf("out of memory for %llu bytes of array data", (unsigned long long)nbytes);
    if (nbytes) memcpy(arr->data, buf + arr->data_offset, (size_t)nbytes);
    if (swap) swap_bytes((uint8_t *)arr->data, count, arr->itemsize);
    if (arr->dtype == NPY_BOOL) {
        const uint8_t *b = (const uint8_t *)arr->data;
        for (int64_t i = 0; i < count; i++)
            if (b[i] > 1) {
                int bad = b[i];
                npy_free(arr);
                return sd_errorf("bool array holds byte %d at element %lld (expected 0 or 1)", bad, (long long)i);
            }
    }
    if (fortran && transpose_fortran(arr)) {
        npy_free(arr);
        return -1;
    }
    return 0;
}

void npy_free(NpyArray *arr) {
    free(arr->data);
    arr->data = NULL;
}

int npy_read(const char *path, NpyArray *arr) {
    memset(arr, 0, sizeof(*arr));
    uint8_t *buf;
    size_t n;
    if (read_whole_file(path, &buf, &n, 0)) return SD_FAIL;
    int rc = npy_parse(buf, n, arr);
    free(buf);
    if (rc) return sd_error_context("file %s", path);
    return 0;
}

int npy_to_float32(const NpyArray *arr, float **out) {
    *out = (float *)malloc(arr->count > 0 ? (size_t)arr->count * sizeof(float) : 1);
    if (!*out) return sd_errorf("out of memory converting %lld elements to float32", (long long)arr->count);
    float *o = *out;
    const void *d = arr->data;
    for (int64_t i = 0; i < arr->count; i++) {
        switch (arr->dtype) {
        case NPY_BOOL: o[i] = ((const uint8_t *)d)[i] ? 1.0f : 0.0f; break;
        case NPY_INT8: o[i] = (float)((const int8_t *)d)[i]; break;
        case NPY_UINT8: o[i] = (float)((const uint8_t *)d)[i]; break;
        case NPY_INT16: o[i] = (float)((const int16_t *)d)[i]; break;
        case NPY_UINT16: o[i] = (float)((const uint16_t *)d)[i]; break;
        case NPY_INT32: o[i] = (float)((const int32_t *)d)[i]; break;
        case NPY_UINT32: o[i] = (float)((const uint32_t *)d)[i]; break;
        case NPY_INT64: o[i] = (float)((const int64_t *)d)[i]; break;
        case NPY_UINT64: o[i] = (float)((const uint64_t *)d)[i]; break;
        case NPY_FLOAT16: o[i] = f32_from_f16(((const uint16_t *)d)[i]); break;
        case NPY_FLOAT32: o[i] = ((const float *)d)[i]; break;
        case NPY_FLOAT64: o[i] = (float)((const double *)d)[i]; break;
        default: free(*out); *out = NULL; return sd_errorf("npy_to_float32: invalid dtype %d", (int)arr->dtype);
        }
    }
    return 0;
}

int npy_encode(NpyDtype dtype, int ndim, const int64_t *shape, const void *data, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (dtype < 0 || dtype >= NPY_DTYPE_COUNT) return sd_errorf("npy_encode: invalid dtype %d", (int)dtype);
    if (ndim < 0 || ndim > NPY_MAX_DIMS) return sd_errorf("npy_encode: %d dimensions (max %d)", ndim, NPY_MAX_DIMS);
    int isz = DTYPES[dtype].size;
    int64_t count = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || (shape[k] != 0 && count > (INT64_MAX / 16) / shape[k]))
            return sd_errorf("npy_encode: invalid shape value %lld", (long long)shape[k]);
        count *= shape[k];
    }
    char header[512];
    int n = snprintf(header, sizeof(header), "{'descr': '%c%c%d', 'fortran_order': False, 'shape': (",
                     isz == 1 ? '|' : '<', DTYPES[dtype].kind, isz);
    for (int k = 0; k < ndim; k++)
        n += snprintf(header + n, sizeof(header) - (size_t)n, "%lld%s", (long long)shape[k],
                      (ndim == 1 || k + 1 < ndim) ? ", " : "");
    if (ndim == 1) n -= 1;  // "(6,)" not "(6, )"
    n += snprintf(header + n, sizeof(header) - (size_t)n, "), }");
    // Pad with spaces so that the data starts on a 64-byte boundary; end with '\n'.
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    size_t nbytes = (size_t)count * (size_t)isz;
    uint8_t *buf = (uint8_t *)malloc(padded + nbytes);
    if (!buf) return sd_errorf("npy_encode: out of memory");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, header, (size_t)n);
    memset(buf + 10 + n, ' ', hlen - (size_t)n - 1);
    buf[padded - 1] = '\n';
    if (nbytes) memcpy(buf + padded, data, nbytes);
    if (!host_is_little_endian()) swap_bytes(buf + padded, count, isz);
    *out = buf;
    *out_len = padded + nbytes;
    return 0;
}

int npy_write(const char *path, NpyDtype dtype, int ndim, const int64_t *shape, const void *data) {
    uint8_t *buf;
    size_t len;
    if (npy_encode(dtype, ndim, shape, data, &buf, &len)) return sd_error_context("file %s", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return sd_errorf("cannot create %s", path);
    }
    size_t wrote = fwrite(buf, 1, len, f);
    int close_rc = fclose(f);
    free(buf);
    if (wrote != len || close_rc != 0) return sd_errorf("%s: write failed", path);
    return 0;
}

float npy_sample_to_float(const void *data, size_t i, NpyDtype t) {
    switch (t) {
    case NPY_UINT8: return (float)((const uint8_t *)data)[i];
    case NPY_INT8: return (float)((const int8_t *)data)[i];
    case NPY_UINT16: return (float)((const uint16_t *)data)[i];
    case NPY_INT16: return (float)((const int16_t *)data)[i];
    case NPY_UINT32: return (float)((const uint32_t *)data)[i];
    case NPY_INT32: return (float)((const int32_t *)data)[i];
    case NPY_UINT64: return (float)((const uint64_t *)data)[i];
    case NPY_INT64: return (float)((const int64_t *)data)[i];
    case NPY_FLOAT32: return ((const float *)data)[i];
    case NPY_FLOAT64: return (float)((const double *)data)[i];
    default: return 0.0f;
    }
}
