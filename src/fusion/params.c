// Named parameters (a state_dict in C) and growable buffers. See params.h.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/params.h"

Param *params_add(ParamSet *ps, ParamKind kind, float init, int ndim, const int *shape, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof(name)) { sd_errorf("parameter name too long: '%s...'", name); return NULL; }
    if (ndim < 0 || ndim > PARAM_MAX_DIMS) { sd_errorf("parameter '%s': %d dims", name, ndim); return NULL; }
    if (params_find(ps, name)) { sd_errorf("parameter '%s' registered twice", name); return NULL; }
    if (ps->count == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        Param **items = (Param **)realloc(ps->items, (size_t)cap * sizeof(Param *));
        if (!items) { sd_errorf("out of memory registering '%s'", name); return NULL; }
        ps->items = items;
        ps->cap = cap;
    }
    Param *p = (Param *)calloc(1, sizeof(Param));
    if (!p) { sd_errorf("out of memory registering '%s'", name); return NULL; }
    p->name = strdup(name);
    p->kind = kind;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    if (kind != PARAM_COUNTER) {
        p->data = (float *)malloc((size_t)(p->numel ? p->numel : 1) * sizeof(float));
        if (p->data)
            for (int64_t i = 0; i < p->numel; i++) p->data[i] = init;
    }
    if (!p->name || (kind != PARAM_COUNTER && !p->data)) {
        free(p->name);
        free(p->data);
        free(p);
        sd_errorf("out of memory for parameter '%s'", name);
        return NULL;
    }
    ps->items[ps->count++] = p;
    return p;
}

Param *params_find(const ParamSet *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->items[i]->name, name) == 0) return ps->items[i];
    return NULL;
}

void params_free(ParamSet *ps) {
    for (int i = 0; i < ps->count; i++) {
        free(ps->items[i]->name);
        free(ps->items[i]->data);
        free(ps->items[i]->grad);
        free(ps->items[i]);
    }
    free(ps->items);
    memset(ps, 0, sizeof(*ps));
}

static const char *shape_text(char *buf, size_t size, int ndim, const int64_t *s64, const int *s32) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)(s64 ? s64[i] : s32[i]));
    if (n < size) snprintf(buf + n, size - n, ")");
    return buf;
}

int params_load(ParamSet *ps, const SafeTensors *st, int strict) {
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        const StEntry *e;
        if (st_require(st, p->name, &e)) return SD_FAIL;
        int same = e->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = e->shape[d] == p->shape[d];
        if (!same) {
            char got[128], want[128];
            return sd_errorf("%s: tensor '%s' has shape %s, the model built from its config expects %s", st->path,
                             p->name, shape_text(got, sizeof(got), e->ndim, e->shape, NULL),
                             shape_text(want, sizeof(want), p->ndim, NULL, p->shape));
        }
        if (p->kind == PARAM_COUNTER) {
            if (st_entry_to_i64(st, e, &p->counter)) return SD_FAIL;
        } else {
            if (e->dtype == DT_I64 || e->dtype == DT_I32 || e->dtype == DT_BOOL)
                return sd_errorf("%s: tensor '%s' is %s, expected a float tensor", st->path, p->name,
                                 dtype_name(e->dtype));
            if (st_entry_to_f32(e, p->data)) return SD_FAIL;
            int64_t bad = 0;
            for (int64_t k = 0; k < p->numel; k++) bad += !isfinite(p->data[k]);
            if (bad) return sd_errorf("%s: tensor '%s' has %lld NaN/Inf values", st->path, p->name, (long long)bad);
        }
    }
    if (strict) {
        for (int i = 0; i < st->count; i++) {
            if (params_find(ps, st->entries[i].name)) continue;
            return sd_errorf("%s: tensor '%s' does not belong to the model built from this config (%d tensors expected)",
                             st->path, st->entries[i].name, ps->count);
        }
    }
    return 0;
}

int params_load_file(ParamSet *ps, const char *path, int strict) {
    SafeTensors st;
    if (st_open(&st, path)) return SD_FAIL;
    int rc = params_load(ps, &st, strict);
    st_close(&st);
    return rc;
}

int params_save(const ParamSet *ps, const char *path, const char *const *meta_keys, const char *const *meta_values,
                int n_meta) {
    StWriteEntry *entries = (StWriteEntry *)calloc((size_t)(ps->count ? ps->count : 1), sizeof(StWriteEntry));
    if (!entries) return sd_errorf("out of memory saving %s", path);
    for (int i = 0; i < ps->count; i++) {
        const Param *p = ps->items[i];
        entries[i].name = p->name;
        entries[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) entries[i].shape[d] = p->shape[d];
        if (p->kind == PARAM_COUNTER) {
            entries[i].dtype = DT_I64;
            entries[i].data = &p->counter;
        } else {
            entries[i].dtype = DT_F32;
            entries[i].data = p->data;
        }
    }
    int rc = st_write(path, entries, ps->count, meta_keys, meta_values, n_meta);
    free(entries);
    return rc;
}

int64_t params_count_weights(const ParamSet *ps) {
    int64_t n = 0;
    for (int i = 0; i < ps->count; i++)
        if (ps->items[i]->kind == PARAM_WEIGHT) n += ps->items[i]->numel;
    return n;
}

int params_alloc_grads(ParamSet *ps) {
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind != PARAM_WEIGHT || p->grad) continue;
        p->grad = (float *)calloc((size_t)(p->numel ? p->numel : 1), sizeof(float));
        if (!p->grad) return sd_errorf("out of memory for the gradient of '%s'", p->name);
    }
    return 0;
}

void params_zero_grads(ParamSet *ps) {
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->grad) memset(p->grad, 0, (size_t)p->numel * sizeof(float));
        p->has_grad = 0;
    }
}

// ---------------------------------------------------------------------------

float *fbuf(FBuf *b, size_t n) {
    if (n == 0) n = 1;
    if (n > b->cap) {
        float *d = (float *)realloc(b->data, n * sizeof(float));
        if (!d) {
            sd_errorf("out of memory for an activation buffer of %zu floats", n);
            return NULL;
        }
        b->data = d;
        b->cap = n;
    }
    return b->data;
}

void fbuf_free(FBuf *b) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

int *ibuf(IBuf *b, size_t n) {
    if (n == 0) n = 1;
    if (n > b->cap) {
        int *d = (int *)realloc(b->data, n * sizeof(int));
        if (!d) {
            sd_errorf("out of memory for an index buffer of %zu ints", n);
            return NULL;
        }
        b->data = d;
        b->cap = n;
    }
    return b->data;
}

void ibuf_free(IBuf *b) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

float *param_grad(Param *p) {
    if (!p || !p->grad) return NULL;
    p->has_grad = 1;
    return p->grad;
}

float *zalloc_floats(size_t n) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) sd_errorf("backward: out of memory (%zu floats)", n);
    return p;
}
