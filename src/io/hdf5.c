// HDF5 reader: superblock, object headers, messages, the group walk and dataset reads.
// Heaps, B-trees, chunk indexes and filters are in hdf5_index.c. Field layouts follow the
// HDF5 File Format Specification (version 3.0); see hdf5.h for what is supported.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"
#include "io/hdf5_priv.h"

#define H5_MAX_GROUP_DEPTH 32
#define H5_MAX_OBJECTS 100000
#define H5_MAX_HEADER_CHUNKS 4096
#define H5_MAX_VLEN_STRINGS 4096

int h5_is_hdf5(const uint8_t *buf, size_t len) {
    return len >= 8 && memcmp(buf, "\x89HDF\r\n\x1a\n", 8) == 0;
}

// ---- object header messages ----------------------------------------------------------------

typedef struct {
    int type, flags;
    const uint8_t *p;
    size_t n;
} Msg;

typedef struct {
    Msg *m;
    int n, cap;
} MsgList;

static int push_msg(const H5File *f, MsgList *ml, int type, int flags, const uint8_t *p, size_t n) {
    if (ml->n == ml->cap) {
        int cap = ml->cap ? 2 * ml->cap : 16;
        Msg *m = realloc(ml->m, (size_t)cap * sizeof(Msg));
        if (!m) return sd_errorf("%s: out of memory reading an object header", f->path);
        ml->m = m;
        ml->cap = cap;
    }
    ml->m[ml->n++] = (Msg){type, flags, p, n};
    return 0;
}

// Reads all messages of the object header at addr (both versions, following continuations).
static int read_header(const H5File *f, uint64_t addr, MsgList *ml) {
    uint64_t chunk_addr[H5_MAX_HEADER_CHUNKS], chunk_len[H5_MAX_HEADER_CHUNKS];
    int nchunks = 0, version;
    H5Cur c;
    const uint8_t *p;
    if (h5_span(f, addr, 16, &p, "object header")) return -1;
    if (memcmp(p, "OHDR", 4) == 0) {
        if (h5_cursor(f, addr, f->len - f->base - addr, &c, "object header")) return -1;
        c.pos = 4;
        version = (int)h5c_u(&c, 1);
        int flags = (int)h5c_u(&c, 1);
        if (flags & 0x20) c.pos += 16;  // times
        if (flags & 0x10) c.pos += 4;   // attribute phase change values
        uint64_t size0 = h5c_u(&c, 1 << (flags & 3));
        if (c.bad || version != 2 || size0 > c.n - c.pos)
            return sd_errorf("%s: object header at %llu (version %d) is cut short", f->path, (unsigned long long)addr,
                             version);
        chunk_addr[0] = addr + c.pos;
        chunk_len[0] = size0;
        nchunks = 1;
        int order = (flags & 0x04) ? 2 : 0;  // creation order field in each message header
        for (int k = 0; k < nchunks; k++) {
            H5Cur m;
            if (h5_cursor(f, chunk_addr[k], chunk_len[k], &m, "object header chunk")) return -1;
            while (m.n - m.pos >= (size_t)(4 + order)) {
                int type = (int)h5c_u(&m, 1);
                size_t size = (size_t)h5c_u(&m, 2);
                int mflags = (int)h5c_u(&m, 1);
                m.pos += (size_t)order;
                const uint8_t *data = h5c_take(&m, size);
                if (!data) return sd_errorf("%s: object header at %llu: message of %zu bytes runs past its chunk",
                                            f->path, (unsigned long long)addr, size);
                if (type == 0x10) {  // continuation: "OCHK", messages, checksum
                    H5Cur cc = {data, size, 0, 0};
                    uint64_t ca = h5c_addr(&cc, f), cl = h5c_len(&cc, f);
                    const uint8_t *q;
                    if (cc.bad || cl < 8 || nchunks == H5_MAX_HEADER_CHUNKS)
                        return sd_errorf("%s: object header at %llu: bad continuation", f->path,
                                         (unsigned long long)addr);
                    if (h5_span(f, ca, cl, &q, "object header continuation") || h5_check_sig(f, q, "OCHK", ca))
                        return -1;
                    chunk_addr[nchunks] = ca + 4;
                    chunk_len[nchunks++] = cl - 8;
                } else if (push_msg(f, ml, type, mflags, data, size))
                    return -1;
            }
        }
        return 0;
    }
    // version 1: version, reserved, message count (2), reference count (4), header size (4), padding
    version = p[0];
    uint64_t size0 = h5_le(p + 8, 4);
    if (version != 1)
        return sd_errorf("%s: object header at %llu has version %d (1 or 2 supported)", f->path,
                         (unsigned long long)addr, version);
    chunk_addr[0] = addr + 16;
    chunk_len[0] = size0;
    nchunks = 1;
    for (int k = 0; k < nchunks; k++) {
        H5Cur m;
        if (h5_cursor(f, chunk_addr[k], chunk_len[k], &m, "object header chunk")) return -1;
        while (m.n - m.pos >= 8) {
            int type = (int)h5c_u(&m, 2);
            size_t size = (size_t)h5c_u(&m, 2);
            int mflags = (int)h5c_u(&m, 1);
            m.pos += 3;
            const uint8_t *data = h5c_take(&m, size);
            if (!data) return sd_errorf("%s: object header at %llu: message of %zu bytes runs past its chunk", f->path,
                                        (unsigned long long)addr, size);
            if (type == 0x10) {
                H5Cur cc = {data, size, 0, 0};
                uint64_t ca = h5c_addr(&cc, f), cl = h5c_len(&cc, f);
                if (cc.bad || nchunks == H5_MAX_HEADER_CHUNKS)
                    return sd_errorf("%s: object header at %llu: bad continuation", f->path, (unsigned long long)addr);
                chunk_addr[nchunks] = ca;
                chunk_len[nchunks++] = cl;
            } else if (push_msg(f, ml, type, mflags, data, size))
                return -1;
        }
    }
    return 0;
}

// ---- dataspace and datatype --------------------------------------------------------------

static int parse_space(const H5File *f, const uint8_t *p, size_t n, int *ndim, uint64_t *shape, uint64_t *count,
                       const char *obj) {
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), rank = (int)h5c_u(&c, 1), flags = (int)h5c_u(&c, 1), type = 1;
    if (version == 1) c.pos += 5;
    else if (version == 2) type = (int)h5c_u(&c, 1);
    else return sd_errorf("%s: '%s': dataspace message version %d is not supported", f->path, obj, version);
    if (rank > H5_MAX_DIMS) return sd_errorf("%s: '%s': %d dimensions (at most %d)", f->path, obj, rank, H5_MAX_DIMS);
    if (version == 1 && rank == 0) type = 0;
    *count = 1;
    for (int i = 0; i < rank; i++) {
        shape[i] = h5c_len(&c, f);
        if (shape[i] && *count > UINT64_MAX / 2 / shape[i])
            return sd_errorf("%s: '%s': dataspace of more than 2^63 elements", f->path, obj);
        *count *= shape[i];
    }
    (void)flags;  // maximum dimensions (flags & 1) and permutations do not change what is stored
    if (c.bad) return sd_errorf("%s: '%s': dataspace message is cut short", f->path, obj);
    if (type == 2) {
        *ndim = -1;
        *count = 0;
    } else if (type == 0) {
        *ndim = 0;
    } else if (type == 1) {
        *ndim = rank;
    } else {
        return sd_errorf("%s: '%s': dataspace type %d", f->path, obj, type);
    }
    return 0;
}

// Fills t; types it cannot read get kind H5T_UNSUPPORTED (not an error: listing still works).
static int parse_type(const H5File *f, const uint8_t *p, size_t n, H5Type *t, const char *obj, int depth) {
    H5Cur c = {p, n, 0, 0};
    int b0 = (int)h5c_u(&c, 1), b1 = (int)h5c_u(&c, 1), b2 = (int)h5c_u(&c, 1);
    h5c_u(&c, 1);
    uint64_t size = h5c_u(&c, 4);
    if (c.bad) return sd_errorf("%s: '%s': datatype message is cut short", f->path, obj);
    memset(t, 0, sizeof(*t));
    t->h5_class = b0 & 15;
    t->kind = H5T_UNSUPPORTED;
    t->size = size > 1u << 30 ? 1 << 30 : (int)size;
    if (t->h5_class == 0 || t->h5_class == 1) {
        int offset = (int)h5c_u(&c, 2), prec = (int)h5c_u(&c, 2);
        int order = (b1 & 1) | ((b1 >> 5) & 2);  // float: bits 0 and 6
        if (c.bad || t->size > 8 || offset != 0 || prec != 8 * t->size || order > 1) return 0;
        t->big_endian = order;
        if (t->h5_class == 0) {
            int sgn = (b1 >> 3) & 1;
            static const NpyDtype s[] = {NPY_INT8, NPY_INT16, NPY_INT32, NPY_INT64};
            static const NpyDtype u[] = {NPY_UINT8, NPY_UINT16, NPY_UINT32, NPY_UINT64};
            int k = t->size == 1 ? 0 : t->size == 2 ? 1 : t->size == 4 ? 2 : t->size == 8 ? 3 : -1;
            if (k < 0) return 0;
            t->npy = sgn ? s[k] : u[k];
            t->kind = H5T_INT;
        } else {
            int eloc = (int)h5c_u(&c, 1), esize = (int)h5c_u(&c, 1), mloc = (int)h5c_u(&c, 1);
            int msize = (int)h5c_u(&c, 1);
            // IEEE 754 binary16/32/64: exponent above the mantissa, sign bit on top
            int want_e = t->size == 2 ? 5 : t->size == 4 ? 8 : 11, want_m = t->size == 2 ? 10 : t->size == 4 ? 23 : 52;
            if (c.bad || (t->size != 2 && t->size != 4 && t->size != 8) || esize != want_e || msize != want_m ||
                mloc != 0 || eloc != want_m || b2 != 8 * t->size - 1)
                return 0;
            t->npy = t->size == 2 ? NPY_FLOAT16 : t->size == 4 ? NPY_FLOAT32 : NPY_FLOAT64;
            t->kind = H5T_FLOAT;
        }
    } else if (t->h5_class == 3) {
        t->kind = H5T_STRING;
        t->utf8 = (b1 >> 4) == 1;
    } else if (t->h5_class == 9 && (b1 & 15) == 1 && depth == 0) {
        H5Type base;
        if (parse_type(f, p + 8, n - 8, &base, obj, 1)) return -1;  // the base type: 1-byte characters
        t->kind = H5T_VLEN_STRING;
        t->utf8 = (b2 & 15) == 1;
        if (t->size != 4 + f->so + 4) t->kind = H5T_UNSUPPORTED;
    }
    return 0;
}

void h5_type_name(const H5Type *t, char *out, size_t size) {
    static const char *classes[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound",
                                    "reference", "enum", "variable-length", "array"};
    switch (t->kind) {
    case H5T_INT:
    case H5T_FLOAT:
        snprintf(out, size, "%s%s", npy_dtype_name(t->npy), t->size > 1 ? (t->big_endian ? " (BE)" : " (LE)") : "");
        break;
    case H5T_STRING: snprintf(out, size, "string[%d]", t->size); break;
    case H5T_VLEN_STRING: snprintf(out, size, "vlen string"); break;
    default:
        snprintf(out, size, "%s (class %d, %d bytes)", t->h5_class <= 10 ? classes[t->h5_class] : "unknown",
                 t->h5_class, t->size);
    }
}

// Host byte order from the file's.
void h5_to_host(uint8_t *data, uint64_t count, int size, int big_endian) {
    const uint16_t probe = 1;
    int host_big = *(const uint8_t *)&probe == 0;
    if (size == 1 || big_endian == host_big) return;
    for (uint64_t i = 0; i < count; i++) {
        uint8_t *e = data + i * (uint64_t)size;
        for (int a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t x = e[a];
            e[a] = e[b];
            e[b] = x;
        }
    }
}

// ---- attributes ---------------------------------------------------------------------------

static void attr_free(H5Attr *a) {
    free(a->name);
    free(a->data);
    if (a->str)
        for (uint64_t i = 0; i < a->count; i++) free(a->str[i]);
    free(a->str);
    free(a->str_len);
    memset(a, 0, sizeof(*a));
}

typedef struct {
    H5File *f;
    const char *obj;
    H5Attr *list;
    int n, cap;
} AttrList;

// An attribute message (versions 1 to 3), decoded into a new entry of al.
static int parse_attr(void *ctx, const uint8_t *p, size_t n) {
    AttrList *al = ctx;
    const H5File *f = al->f;
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), flags = (int)h5c_u(&c, 1);
    size_t name_size = (size_t)h5c_u(&c, 2), type_size = (size_t)h5c_u(&c, 2), space_size = (size_t)h5c_u(&c, 2);
    if (version == 3) h5c_u(&c, 1);  // name character set
    size_t pad = version == 1 ? 7 : 0;
    const uint8_t *name = h5c_take(&c, (name_size + pad) & ~pad);
    const uint8_t *tp = h5c_take(&c, (type_size + pad) & ~pad);
    const uint8_t *sp = h5c_take(&c, (space_size + pad) & ~pad);
    if (c.bad || version < 1 || version > 3 || name_size == 0)
        return sd_errorf("%s: '%s': attribute message (version %d) is cut short or invalid", f->path, al->obj, version);
    if (version > 1 && (flags & 3))
        return sd_errorf("%s: '%s': shared attribute datatypes are not supported", f->path, al->obj);
    if (al->n == al->cap) {
        int cap = al->cap ? 2 * al->cap : 8;
        H5Attr *l = realloc(al->list, (size_t)cap * sizeof(H5Attr));
        if (!l) return sd_errorf("%s: out of memory", f->path);
        al->list = l;
        al->cap = cap;
    }
    H5Attr *a = &al->list[al->n];
    memset(a, 0, sizeof(*a));
    size_t nlen = strnlen((const char *)name, name_size);
    a->name = malloc(nlen + 1);
    if (!a->name) return sd_errorf("%s: out of memory", f->path);
    memcpy(a->name, name, nlen);
    a->name[nlen] = 0;
    al->n++;
    if (parse_type(f, tp, type_size, &a->type, a->name, 0) ||
        parse_space(f, sp, space_size, &a->ndim, a->shape, &a->count, a->name))
        return sd_error_context("attribute '%s' of '%s'", a->name, al->obj);
    if (a->type.kind == H5T_UNSUPPORTED) return 0;
    // Each variable-length string is a walk through its heap collection: a hostile file could make
    // many strings cost (count x collection size). More than this many are listed, not decoded.
    if (a->type.kind == H5T_VLEN_STRING && a->count > H5_MAX_VLEN_STRINGS) return 0;
    uint64_t bytes = a->count * (uint64_t)a->type.size;
    if (a->type.size <= 0 || a->count > (uint64_t)(n - c.pos) || bytes > (uint64_t)(n - c.pos))
        return sd_errorf("%s: '%s': attribute '%s' holds %llu values of %d bytes but its message has %zu bytes left",
                         f->path, al->obj, a->name, (unsigned long long)a->count, a->type.size, n - c.pos);
    const uint8_t *data = p + c.pos;
    if (a->type.kind == H5T_INT || a->type.kind == H5T_FLOAT) {
        a->data = malloc(bytes ? bytes : 1);
        if (!a->data) return sd_errorf("%s: out of memory", f->path);
        memcpy(a->data, data, bytes);
        h5_to_host(a->data, a->count, a->type.size, a->type.big_endian);
        return 0;
    }
    a->str = calloc(a->count ? a->count : 1, sizeof(char *));
    a->str_len = calloc(a->count ? a->count : 1, sizeof(size_t));
    if (!a->str || !a->str_len) return sd_errorf("%s: out of memory", f->path);
    for (uint64_t i = 0; i < a->count; i++) {
        const uint8_t *e = data + i * (uint64_t)a->type.size, *s = e;
        uint64_t len = (uint64_t)a->type.size;
        if (a->type.kind == H5T_VLEN_STRING) {
            H5Cur v = {e, (size_t)a->type.size, 0, 0};
            len = h5c_u(&v, 4);
            uint64_t coll = h5c_addr(&v, f), objlen = 0;
            uint32_t idx = (uint32_t)h5c_u(&v, 4);
            if (len > 0) {
                if (h5_global_heap_object(f, coll, idx, &s, &objlen))
                    return sd_error_context("attribute '%s' of '%s'", a->name, al->obj);
                if (len > objlen)
                    return sd_errorf("%s: '%s': attribute '%s': string of %llu bytes in a heap object of %llu",
                                     f->path, al->obj, a->name, (unsigned long long)len, (unsigned long long)objlen);
            }
        } else {
            while (len > 0 && (s[len - 1] == 0 || ((tp[1] & 15) == 2 && s[len - 1] == ' '))) len--;  // padding
        }
        a->str[i] = malloc((size_t)len + 1);
        if (!a->str[i]) return sd_errorf("%s: out of memory", f->path);
        if (len) memcpy(a->str[i], s, (size_t)len);
        a->str[i][len] = 0;
        a->str_len[i] = (size_t)len;
    }
    return 0;
}

// Compact attributes (messages) and dense ones (attribute info message -> fractal heap).
static int collect_attrs(H5File *f, const MsgList *ml, const char *obj, H5Attr **out, int *nout) {
    AttrList al = {f, obj, NULL, 0, 0};
    int rc = 0;
    for (int i = 0; i < ml->n && rc == 0; i++) {
        const Msg *m = &ml->m[i];
        if (m->type == 0x0C) {
            if (m->flags & 2) rc = sd_errorf("%s: '%s': shared attribute messages are not supported", f->path, obj);
            else rc = parse_attr(&al, m->p, m->n);
        } else if (m->type == 0x15) {
            H5Cur c = {m->p, m->n, 0, 0};
            h5c_u(&c, 1);
            int flags = (int)h5c_u(&c, 1);
            if (flags & 1) h5c_u(&c, 2);
            uint64_t heap = h5c_addr(&c, f), names = h5c_addr(&c, f);
            if (c.bad) rc = sd_errorf("%s: '%s': attribute info message is cut short", f->path, obj);
            else if (heap != H5_UNDEF) rc = h5_dense_iterate(f, heap, names, 8, parse_attr, &al);
        }
    }
    if (rc) {
        for (int i = 0; i < al.n; i++) attr_free(&al.list[i]);
        free(al.list);
        return sd_error_context("attributes of '%s'", obj);
    }
    *out = al.list;
    *nout = al.n;
    return 0;
}

const H5Attr *h5_find_attr(const H5Attr *attrs, int num_attrs, const char *name) {
    for (int i = 0; i < num_attrs; i++)
        if (strcmp(attrs[i].name, name) == 0) return &attrs[i];
    return NULL;
}

// ---- datasets -----------------------------------------------------------------------------

static void unsupported(H5Dataset *d, const char *fmt, int v) {
    if (!d->unsupported[0]) snprintf(d->unsupported, sizeof(d->unsupported), fmt, v);
}

static int parse_layout(const H5File *f, H5Dataset *d, const uint8_t *p, size_t n) {
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), cls = (int)h5c_u(&c, 1);
    if (version < 3 || version > 4) {
        unsupported(d, "data layout message version %d", version);
        return 0;
    }
    d->layout = cls;
    d->index_addr = H5_UNDEF;
    if (cls == H5_COMPACT) {
        d->size = h5c_u(&c, 2);
        if (c.bad || d->size > c.n - c.pos)
            return sd_errorf("%s: dataset '%s': compact data runs past its message", f->path, d->name);
        d->addr = (uint64_t)(p + c.pos - f->buf);  // an offset in the file, not an address
    } else if (cls == H5_CONTIGUOUS) {
        d->addr = h5c_addr(&c, f);
        d->size = h5c_len(&c, f);
    } else if (cls == H5_CHUNKED) {
        int flags = 0, ndims, enc = 4;
        if (version == 3) {
            ndims = (int)h5c_u(&c, 1);
            d->index_addr = h5c_addr(&c, f);
        } else {
            flags = (int)h5c_u(&c, 1);
            ndims = (int)h5c_u(&c, 1);
            enc = (int)h5c_u(&c, 1);
        }
        if (c.bad || ndims != d->ndim + 1 || d->ndim < 1 || enc < 1 || enc > 8)
            return sd_errorf("%s: dataset '%s': chunk of %d dimensions for a dataset of %d", f->path, d->name,
                             ndims - 1, d->ndim);
        uint64_t elem = 0;
        for (int i = 0; i < ndims; i++) {
            uint64_t v = h5c_u(&c, enc);
            if (i < d->ndim) d->chunk[i] = v;
            else elem = v;
            if (i < d->ndim && (v == 0 || v > ((uint64_t)1 << 32)))
                return sd_errorf("%s: dataset '%s': chunk dimension %d is %llu", f->path, d->name, i,
                                 (unsigned long long)v);
        }
        if (version == 3) {
            d->chunk_index = H5_IDX_BTREE1;
        } else {
            int idx = (int)h5c_u(&c, 1);
            d->chunk_index = idx == 1 ? H5_IDX_SINGLE : idx == 2 ? H5_IDX_IMPLICIT : idx == 3 ? H5_IDX_FARRAY : -1;
            if (idx == 1 && (flags & 2)) {
                d->single_size = h5c_len(&c, f);
                d->single_mask = (uint32_t)h5c_u(&c, 4);
            } else if (idx == 3) {
                h5c_u(&c, 1);  // page bits (the fixed array header repeats them)
            } else if (idx == 4) {
                unsupported(d, "extensible array chunk index (an unlimited dimension), layout index type %d", idx);
            } else if (idx == 5) {
                unsupported(d, "v2 B-tree chunk index (several unlimited dimensions), layout index type %d", idx);
            } else if (idx != 1 && idx != 2) {
                unsupported(d, "chunk index type %d", idx);
            }
            if (d->chunk_index >= 0) d->index_addr = h5c_addr(&c, f);
        }
        if (c.bad) return sd_errorf("%s: dataset '%s': layout message is cut short", f->path, d->name);
        if (elem != (uint64_t)d->type.size && d->type.kind != H5T_UNSUPPORTED)
            return sd_errorf("%s: dataset '%s': chunks of %llu-byte elements for a %d-byte type", f->path, d->name,
                             (unsigned long long)elem, d->type.size);
        uint64_t cb = (uint64_t)d->type.size;
        for (int i = 0; i < d->ndim; i++) {
            if (cb > H5_MAX_DATA_BYTES) break;
            cb *= d->chunk[i];
        }
        if (cb > H5_MAX_DATA_BYTES) unsupported(d, "chunks over 2 GiB (%d dimensions)", d->ndim);
    } else {
        unsupported(d, "layout class %d (virtual datasets)", cls);
    }
    if (c.bad) return sd_errorf("%s: dataset '%s': layout message is cut short", f->path, d->name);
    return 0;
}

static int parse_filters(const H5File *f, H5Dataset *d, const uint8_t *p, size_t n) {
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), nf = (int)h5c_u(&c, 1);
    if (version == 1) c.pos += 6;
    else if (version != 2) return sd_errorf("%s: dataset '%s': filter pipeline version %d", f->path, d->name, version);
    if (nf > H5_MAX_FILTERS) {
        unsupported(d, "%d filters in the pipeline", nf);
        return 0;
    }
    for (int i = 0; i < nf; i++) {
        H5Filter *flt = &d->filters[i];
        flt->id = (uint32_t)h5c_u(&c, 2);
        size_t name_len = (version == 1 || flt->id >= 256) ? (size_t)h5c_u(&c, 2) : 0;
        flt->flags = (uint32_t)h5c_u(&c, 2);
        int nv = (int)h5c_u(&c, 2);
        h5c_take(&c, name_len);
        for (int k = 0; k < nv; k++) {
            uint32_t v = (uint32_t)h5c_u(&c, 4);
            if (k < 8) flt->values[k] = v;
        }
        flt->num_values = nv < 8 ? nv : 8;
        if (version == 1 && (nv & 1)) c.pos += 4;
        if (c.bad) return sd_errorf("%s: dataset '%s': filter pipeline message is cut short", f->path, d->name);
        static const char *names[] = {"", "deflate", "shuffle", "fletcher32", "szip", "nbit", "scaleoffset"};
        if (flt->id < 1 || flt->id > 3) {
            if (flt->id < 7)
                snprintf(d->unsupported, sizeof(d->unsupported), "filter %u (%s)", flt->id, names[flt->id]);
            else unsupported(d, "filter %d (not deflate, shuffle or fletcher32)", (int)flt->id);
        }
    }
    d->num_filters = nf;
    return 0;
}

// Fill value message (versions 1-3): notes a fill value other than all-zero bytes.
static void parse_fill(H5Dataset *d, const uint8_t *p, size_t n) {
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), defined = 0;
    if (version == 3) {
        int flags = (int)h5c_u(&c, 1);
        defined = (flags >> 5) & 1;
    } else {
        c.pos += 2;
        defined = (int)h5c_u(&c, 1);
    }
    if (!defined) return;
    uint64_t size = h5c_u(&c, 4);
    const uint8_t *v = size <= n ? h5c_take(&c, (size_t)size) : NULL;
    if (!v) return;  // cut short: the dataset's other messages decide
    for (uint64_t i = 0; i < size; i++)
        if (v[i]) d->fill_nonzero = 1;
}

static int parse_dataset(H5File *f, const MsgList *ml, H5Dataset *d) {
    int have_space = 0, have_type = 0;
    for (int i = 0; i < ml->n; i++) {
        const Msg *m = &ml->m[i];
        if ((m->flags & 2) && (m->type == 1 || m->type == 3 || m->type == 11)) {
            unsupported(d, "shared (committed) message type %d", m->type);
            continue;
        }
        if (m->type == 1) {
            if (parse_space(f, m->p, m->n, &d->ndim, d->shape, &d->count, d->name)) return -1;
            have_space = 1;
        } else if (m->type == 3) {
            if (parse_type(f, m->p, m->n, &d->type, d->name, 0)) return -1;
            have_type = 1;
        }
    }
    if (!have_space || !have_type) {
        unsupported(d, "no dataspace or datatype message (%d)", 0);
        d->ndim = 0;
        return 0;
    }
    if (d->ndim < 0) d->ndim = 0;  // null dataspace: nothing stored
    for (int i = 0; i < ml->n; i++) {
        const Msg *m = &ml->m[i];
        int rc = 0;
        if (m->type == 8) rc = parse_layout(f, d, m->p, m->n);
        else if (m->type == 11 && !(m->flags & 2)) rc = parse_filters(f, d, m->p, m->n);
        else if (m->type == 5) parse_fill(d, m->p, m->n);
        else if (m->type == 7) unsupported(d, "external data files (message %d)", m->type);
        if (rc) return -1;
    }
    if (d->type.kind == H5T_STRING || d->type.kind == H5T_VLEN_STRING) unsupported(d, "string datasets (%d)", 0);
    else if (d->type.kind == H5T_UNSUPPORTED) unsupported(d, "datatype class %d", d->type.h5_class);
    return collect_attrs(f, ml, d->name, &d->attrs, &d->num_attrs);
}

// ---- the group walk -------------------------------------------------------------------------

typedef struct {
    H5File *f;
    uint64_t *groups;  // object header addresses of the groups on the current path (cycles)
    int num_objects;
    uint64_t work;     // object header bytes parsed: many links to one big header cannot loop for long
} Walk;

static int visit(Walk *w, uint64_t addr, const char *path, int depth);

static char *join(const char *parent, const uint8_t *name, size_t len) {
    size_t pl = strlen(parent);
    char *s = malloc(pl + len + 2);
    if (!s) return NULL;
    memcpy(s, parent, pl);
    if (pl) s[pl++] = '/';
    memcpy(s + pl, name, len);
    s[pl + len] = 0;
    return s;
}

typedef struct {
    Walk *w;
    const char *path;
    int depth;
    const uint8_t *heap;  // symbol tables: the local heap's names
    uint64_t heap_size;
} Children;

static int visit_named(Children *ch, const uint8_t *name, size_t len, uint64_t addr) {
    if (len == 0 || memchr(name, 0, len))
        return sd_errorf("%s: group '%s' has a link with an empty or invalid name", ch->w->f->path, ch->path);
    char *child = join(ch->path, name, len);
    if (!child) return sd_errorf("%s: out of memory", ch->w->f->path);
    int rc = visit(ch->w, addr, child, ch->depth + 1);
    free(child);
    return rc;
}

static int symbol_entry(void *ctx, uint64_t name_off, uint64_t addr) {
    Children *ch = ctx;
    if (name_off >= ch->heap_size)
        return sd_errorf("%s: group '%s': a name at offset %llu is past its heap (%llu bytes)", ch->w->f->path,
                         ch->path, (unsigned long long)name_off, (unsigned long long)ch->heap_size);
    const uint8_t *s = ch->heap + name_off;
    const uint8_t *end = memchr(s, 0, (size_t)(ch->heap_size - name_off));
    if (!end) return sd_errorf("%s: group '%s': a name runs past its heap", ch->w->f->path, ch->path);
    return visit_named(ch, s, (size_t)(end - s), addr);
}

// A link message: hard links are followed, soft and external links skipped.
static int link_msg(void *ctx, const uint8_t *p, size_t n) {
    Children *ch = ctx;
    const H5File *f = ch->w->f;
    H5Cur c = {p, n, 0, 0};
    int version = (int)h5c_u(&c, 1), flags = (int)h5c_u(&c, 1), type = 0;
    if (flags & 8) type = (int)h5c_u(&c, 1);
    if (flags & 4) h5c_u(&c, 8);
    if (flags & 16) h5c_u(&c, 1);
    size_t len = (size_t)h5c_u(&c, 1 << (flags & 3));
    const uint8_t *name = h5c_take(&c, len);
    if (c.bad || version != 1) return sd_errorf("%s: group '%s': link message is cut short", f->path, ch->path);
    if (type != 0) return 0;
    uint64_t addr = h5c_addr(&c, f);
    if (c.bad) return sd_errorf("%s: group '%s': link message is cut short", f->path, ch->path);
    return visit_named(ch, name, len, addr);
}

static int add_dataset(H5File *f, H5Dataset *d) {
    H5Dataset *l = realloc(f->datasets, (size_t)(f->num_datasets + 1) * sizeof(H5Dataset));
    if (!l) return sd_errorf("%s: out of memory", f->path);
    f->datasets = l;
    f->datasets[f->num_datasets++] = *d;
    return 0;
}

static void dataset_free(H5Dataset *d) {
    for (int i = 0; i < d->num_attrs; i++) attr_free(&d->attrs[i]);
    free(d->attrs);
    free(d->name);
}

static int visit(Walk *w, uint64_t addr, const char *path, int depth) {
    H5File *f = w->f;
    if (depth > H5_MAX_GROUP_DEPTH) return sd_errorf("%s: '%s': groups nested deeper than %d", f->path, path, depth);
    if (++w->num_objects > H5_MAX_OBJECTS) return sd_errorf("%s: more than %d objects", f->path, H5_MAX_OBJECTS);
    for (int i = 0; i < depth; i++)
        if (w->groups[i] == addr) return 0;  // a link back to a group on the path: already being listed
    MsgList ml = {NULL, 0, 0};
    int rc = read_header(f, addr, &ml);
    if (rc) {
        free(ml.m);
        return sd_error_context("'%s'", path[0] ? path : "/");
    }
    int is_dataset = 0;
    for (int i = 0; i < ml.n; i++) {
        if (ml.m[i].type == 8) is_dataset = 1;
        w->work += 8 + ml.m[i].n;
    }
    if (w->work > 64 * (uint64_t)f->len + ((uint64_t)1 << 20)) {
        free(ml.m);
        return sd_errorf("%s: '%s': the links reach object headers more than 64 times the file's size (links "
                         "repeating one object?)", f->path, path);
    }
    if (is_dataset) {
        H5Dataset d;
        memset(&d, 0, sizeof(d));
        d.name = strdup(path);
        if (!d.name) rc = sd_errorf("%s: out of memory", f->path);
        else rc = parse_dataset(f, &ml, &d);
        if (rc == 0) rc = add_dataset(f, &d);
        if (rc) dataset_free(&d);
        free(ml.m);
        return rc;
    }
    w->groups[depth] = addr;
    Children ch = {w, path, depth, NULL, 0};
    for (int i = 0; i < ml.n && rc == 0; i++) {
        const Msg *m = &ml.m[i];
        H5Cur c = {m->p, m->n, 0, 0};
        if (m->type == 0x11) {  // symbol table: v1 B-tree + local heap
            uint64_t btree = h5c_addr(&c, f), heap = h5c_addr(&c, f);
            if (c.bad) rc = sd_errorf("%s: group '%s': symbol table message is cut short", f->path, path);
            else if (!(rc = h5_local_heap(f, heap, &ch.heap, &ch.heap_size)))
                rc = h5_btree1_group(f, btree, symbol_entry, &ch);
        } else if (m->type == 0x06) {
            rc = link_msg(&ch, m->p, m->n);
        } else if (m->type == 0x02) {  // link info: dense links when the heap address is defined
            h5c_u(&c, 1);
            int flags = (int)h5c_u(&c, 1);
            if (flags & 1) h5c_u(&c, 8);
            uint64_t heap = h5c_addr(&c, f), names = h5c_addr(&c, f);
            if (c.bad) rc = sd_errorf("%s: group '%s': link info message is cut short", f->path, path);
            else if (heap != H5_UNDEF) rc = h5_dense_iterate(f, heap, names, 5, link_msg, &ch);
        }
    }
    f->num_groups++;
    if (rc == 0 && depth == 0) rc = collect_attrs(f, &ml, "/", &f->root_attrs, &f->num_root_attrs);
    free(ml.m);
    return rc;
}

static int cmp_dataset(const void *a, const void *b) {
    return strcmp(((const H5Dataset *)a)->name, ((const H5Dataset *)b)->name);
}

int h5_open_mem(H5File *f, const char *name, const uint8_t *buf, size_t len) {
    memset(f, 0, sizeof(*f));
    f->path = strdup(name);
    f->buf = (uint8_t *)buf;
    f->len = len;
    if (!f->path) return sd_errorf("%s: out of memory", name);
    if (!h5_is_hdf5(buf, len)) {
        sd_errorf("%s: not an HDF5 file (no signature at offset 0)", name);
        goto fail;
    }
    H5Cur c = {buf, len, 8, 0};
    f->sb_version = (int)h5c_u(&c, 1);
    uint64_t root;
    if (f->sb_version <= 1) {
        c.pos += 4;
        f->so = (int)h5c_u(&c, 1);
        f->sl = (int)h5c_u(&c, 1);
        c.pos += 1 + 4 + 4 + (f->sb_version == 1 ? 4 : 0);
    } else if (f->sb_version <= 3) {
        f->so = (int)h5c_u(&c, 1);
        f->sl = (int)h5c_u(&c, 1);
        c.pos += 1;
    } else {
        sd_errorf("%s: superblock version %d is not supported (0 to 3)", name, f->sb_version);
        goto fail;
    }
    if ((f->so != 2 && f->so != 4 && f->so != 8) || (f->sl != 2 && f->sl != 4 && f->sl != 8)) {
        sd_errorf("%s: sizes of offsets %d and lengths %d are not 2, 4 or 8", name, f->so, f->sl);
        goto fail;
    }
    f->base = h5c_addr(&c, f);
    if (f->sb_version <= 1) {
        h5c_addr(&c, f);  // free space info
        h5c_addr(&c, f);  // end of file
        h5c_addr(&c, f);  // driver info
        h5c_len(&c, f);   // root symbol table entry: link name offset
        root = h5c_addr(&c, f);
    } else {
        h5c_addr(&c, f);  // superblock extension
        h5c_addr(&c, f);  // end of file
        root = h5c_addr(&c, f);
    }
    if (c.bad || f->base == H5_UNDEF || f->base >= len) {
        sd_errorf("%s: superblock is cut short or has base address past the file", name);
        goto fail;
    }
    Walk w = {f, NULL, 0, 0};
    w.groups = calloc(H5_MAX_GROUP_DEPTH + 2, sizeof(uint64_t));
    if (!w.groups) {
        sd_errorf("%s: out of memory", name);
        goto fail;
    }
    int rc = visit(&w, root, "", 0);
    free(w.groups);
    if (rc) goto fail;
    if (f->num_datasets > 1) qsort(f->datasets, (size_t)f->num_datasets, sizeof(H5Dataset), cmp_dataset);
    return 0;
fail:
    h5_close(f);
    return -1;
}

int h5_open(H5File *f, const char *path) {
    uint8_t *buf;
    size_t len;
    memset(f, 0, sizeof(*f));
    if (read_whole_file(path, &buf, &len, 0)) return -1;
    if (h5_open_mem(f, path, buf, len)) {
        free(buf);
        return -1;
    }
    f->owns_buf = 1;
    return 0;
}

void h5_close(H5File *f) {
    for (int i = 0; i < f->num_datasets; i++) dataset_free(&f->datasets[i]);
    free(f->datasets);
    for (int i = 0; i < f->num_root_attrs; i++) attr_free(&f->root_attrs[i]);
    free(f->root_attrs);
    if (f->owns_buf) free(f->buf);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

const H5Dataset *h5_find(const H5File *f, const char *name) {
    for (int i = 0; i < f->num_datasets; i++)
        if (strcmp(f->datasets[i].name, name) == 0) return &f->datasets[i];
    return NULL;
}
