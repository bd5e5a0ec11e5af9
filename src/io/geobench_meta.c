// GEO-Bench samples' `pickle` attribute: the Python repr of a pickled dict (bands_order, per-band
// geobench objects with their alt_names, the classification label), decoded without Python
// (io/pickle.c; geobench's classes stay inert placeholders, numpy values are read from their
// pickled state). Kept apart from the HDF5 side so the libFuzzer target fuzz_geobench links alone.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/geobench.h"
#include "io/pickle.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Python's repr of bytes: b'...' (or b"..." when the bytes hold a ' and no "), printable ASCII
// as itself, \\ \' \" \t \n \r and \xHH for the rest.
int gb_bytes_literal(const char *s, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    if (len < 3 || s[0] != 'b' || (s[1] != '\'' && s[1] != '"') || s[len - 1] != s[1])
        return sd_errorf("not a Python bytes literal (expected b'...')");
    uint8_t *b = malloc(len);
    if (!b) return sd_errorf("out of memory");
    size_t n = 0;
    for (size_t i = 2; i + 1 < len; i++) {
        char c = s[i];
        if (c != '\\') {
            if (c == s[1]) {
                free(b);
                return sd_errorf("bytes literal: unescaped quote at character %zu", i);
            }
            b[n++] = (uint8_t)c;
            continue;
        }
        if (i + 2 >= len) break;
        c = s[++i];
        if (c == 'x' && i + 3 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            b[n++] = (uint8_t)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (c == 'n') b[n++] = '\n';
        else if (c == 'r') b[n++] = '\r';
        else if (c == 't') b[n++] = '\t';
        else if (c == '\\' || c == '\'' || c == '"') b[n++] = (uint8_t)c;
        else {
            free(b);
            return sd_errorf("bytes literal: unknown escape '\\%c' at character %zu", c, i);
        }
    }
    if (n == 0) {
        free(b);
        return sd_errorf("bytes literal is empty or cut short");
    }
    *out = b;
    *out_len = n;
    return 0;
}

// numpy values in a pickle, decoded from what numpy's __reduce__ leaves: a dtype is
// numpy.dtype('i8', False, True) with BUILD state (3, '<', ...); an array is
// numpy.core.multiarray._reconstruct(...) with state (1, shape, dtype, fortran, raw bytes);
// a scalar is numpy.core.multiarray.scalar(dtype, raw bytes).
static int np_dtype(const PyValue *dt, char *kind, int *size, int *big) {
    if (!dt || dt->kind != PY_OBJECT || !dt->args || dt->args->kind != PY_TUPLE || dt->args->count < 1 ||
        dt->args->items[0]->kind != PY_STR)
        return -1;
    const char *code = dt->args->items[0]->s;
    if (strlen(code) != 2 || !strchr("iufb", code[0]) || !strchr("1248", code[1])) return -1;
    *kind = code[0];
    *size = code[1] - '0';
    *big = 0;
    const PyValue *st = dt->state;
    if (st && st->kind == PY_TUPLE && st->count > 1 && st->items[1]->kind == PY_STR) *big = st->items[1]->s[0] == '>';
    return 0;
}

static int np_values(char kind, int size, int big, const PyValue *raw, int64_t count, int64_t *out) {
    if (!raw || raw->kind != PY_BYTES || (uint64_t)raw->len != (uint64_t)count * (uint64_t)size) return -1;
    for (int64_t i = 0; i < count; i++) {
        const unsigned char *p = (const unsigned char *)raw->s + i * size;
        uint64_t u = 0;
        for (int k = 0; k < size; k++) u |= (uint64_t)p[big ? size - 1 - k : k] << (8 * k);
        if (kind == 'i' && size < 8 && (u >> (8 * size - 1)) & 1) u |= ~(uint64_t)0 << (8 * size);  // sign
        if (kind == 'f') {
            double d;
            if (size == 8) memcpy(&d, &u, 8);
            else if (size == 4) {
                float f;
                uint32_t w = (uint32_t)u;
                memcpy(&f, &w, 4);
                d = f;
            } else return -1;
            if (!(fabs(d) < 9e15) || d != floor(d)) return -1;
            out[i] = (int64_t)d;
        } else {
            out[i] = (int64_t)u;
        }
    }
    return 0;
}

// An int label (1) or a vector (2) from an int, a list/tuple of ints, a numpy scalar or array.
static int py_label(const PyValue *v, int64_t *label, int64_t **vec, int *len) {
    if (!v || v->kind == PY_DICT) return 0;  // a dict: the attributes of the `label` band (segmentation)
    if (v->kind == PY_INT || v->kind == PY_BOOL) {
        *label = v->i;
        return 1;
    }
    if (v->kind == PY_LIST || v->kind == PY_TUPLE) {
        *vec = malloc(sizeof(int64_t) * (size_t)(v->count ? v->count : 1));
        if (!*vec) return -1;
        for (int i = 0; i < v->count; i++) {
            const PyValue *e = v->items[i];
            if (e->kind != PY_INT && e->kind != PY_BOOL) return -1;
            (*vec)[i] = e->i;
        }
        *len = v->count;
        return 2;
    }
    if (v->kind != PY_OBJECT || !v->cls || v->cls->kind != PY_GLOBAL) return -1;
    const char *cls = v->cls->s, *dot = strrchr(cls, '.');
    char kind;
    int size, big;
    if (dot && strcmp(dot, ".scalar") == 0 && v->args && v->args->kind == PY_TUPLE && v->args->count == 2) {
        if (np_dtype(v->args->items[0], &kind, &size, &big) || np_values(kind, size, big, v->args->items[1], 1, label))
            return -1;
        return 1;
    }
    if (dot && strcmp(dot, "._reconstruct") == 0 && v->state && v->state->kind == PY_TUPLE && v->state->count == 5) {
        const PyValue *shape = v->state->items[1];
        if (shape->kind != PY_TUPLE || shape->count > 1 || np_dtype(v->state->items[2], &kind, &size, &big)) return -1;
        int64_t n = shape->count ? shape->items[0]->i : 1;
        if (n < 0 || n > GB_MAX_CLASSES) return -1;
        *vec = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!*vec || np_values(kind, size, big, v->state->items[4], n, *vec)) return -1;
        *len = (int)n;
        if (shape->count == 0) {  // a 0-d array: one value
            *label = (*vec)[0];
            free(*vec);
            *vec = NULL;
            *len = 0;
            return 1;
        }
        return 2;
    }
    return -1;
}

int gb_meta_parse(const char *path, const char *repr, size_t repr_len, GbSampleMeta *m) {
    memset(m, 0, sizeof(*m));
    uint8_t *buf;
    size_t len;
    if (gb_bytes_literal(repr, repr_len, &buf, &len)) return sd_error_context("%s: attribute 'pickle'", path);
    PickleDoc doc;
    pickle_doc_init(&doc);
    PyValue *root = NULL;
    char where[600];
    snprintf(where, sizeof(where), "%s: attribute 'pickle'", path);
    int rc = pickle_load(&doc, where, buf, len, NULL, &root, NULL);
    if (rc == 0 && root->kind != PY_DICT) rc = sd_errorf("%s: a %s, expected a dict", where, py_kind_name(root->kind));
    const PyValue *order = rc == 0 ? py_dict_get(root, "bands_order") : NULL;
    if (order && order->kind != PY_LIST && order->kind != PY_TUPLE)
        rc = sd_errorf("%s: bands_order is a %s, expected a list", where, py_kind_name(order->kind));
    for (int i = 0; rc == 0 && order && i < order->count; i++) {
        const PyValue *s = order->items[i];
        if (s->kind != PY_STR || i >= GB_MAX_BANDS)
            rc = sd_errorf("%s: bands_order entry %d is not a band name (or more than %d bands)", where, i, GB_MAX_BANDS);
        else if (!(m->bands[m->num_bands++] = strdup(s->s)))
            rc = sd_errorf("out of memory");
    }
    for (int i = 0; rc == 0 && i < m->num_bands; i++) {  // root[band]["band_info"].alt_names
        const PyValue *attrs = py_dict_get(root, m->bands[i]);
        const PyValue *info = attrs && attrs->kind == PY_DICT ? py_dict_get(attrs, "band_info") : NULL;
        const PyValue *st = info && info->kind == PY_OBJECT ? info->state : NULL;
        const PyValue *alt = st && st->kind == PY_DICT ? py_dict_get(st, "alt_names") : NULL;
        for (int k = 0, n = 0; alt && (alt->kind == PY_TUPLE || alt->kind == PY_LIST) && k < alt->count; k++)
            if (alt->items[k]->kind == PY_STR && n < GB_MAX_ALT - 1 && !(m->alt[i][n++] = strdup(alt->items[k]->s)))
                rc = sd_errorf("out of memory");
    }
    if (rc == 0) {
        int k = py_label(py_dict_get(root, "label"), &m->label, &m->label_vec, &m->label_len);
        if (k < 0) rc = sd_errorf("%s: 'label' is not an int, a list of ints or a numpy integer array", where);
        else m->has_label = k;
    }
    pickle_doc_free(&doc);
    free(buf);
    if (rc) gb_sample_meta_free(m);
    return rc;
}

const char *gb_resolve_band(const GbSampleMeta *m, const char *want) {
    for (int i = 0; i < m->num_bands; i++)
        if (strcmp(m->bands[i], want) == 0) return m->bands[i];
    for (int i = 0; i < m->num_bands; i++)
        for (int k = 0; k < GB_MAX_ALT && m->alt[i][k]; k++)
            if (strcmp(m->alt[i][k], want) == 0) return m->bands[i];
    return NULL;
}

void gb_sample_meta_free(GbSampleMeta *m) {
    for (int i = 0; i < m->num_bands; i++) {
        free(m->bands[i]);
        for (int k = 0; k < GB_MAX_ALT; k++) free(m->alt[i][k]);
    }
    free(m->label_vec);
    memset(m, 0, sizeof(*m));
}

