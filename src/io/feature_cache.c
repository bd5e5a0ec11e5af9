// The per-image feature file (see feature_cache.h).
#include "io/feature_cache.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"

void feature_meta_init(FeatureMeta *m) { memset(m, 0, sizeof(*m)); }

void feature_meta_free(FeatureMeta *m) {
    for (int i = 0; i < m->count; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof(*m));
}

const char *feature_meta_get(const FeatureMeta *m, const char *key) {
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->keys[i], key)) return m->values[i];
    return NULL;
}

int feature_meta_set(FeatureMeta *m, const char *key, const char *value) {
    char *v = strdup(value ? value : "");
    if (!v) return sd_errorf("out of memory");
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->keys[i], key)) {
            free(m->values[i]);
            m->values[i] = v;
            return 0;
        }
    if (m->count == m->capacity) {
        int cap = m->capacity ? 2 * m->capacity : 16;
        char **k = (char **)realloc(m->keys, (size_t)cap * sizeof(char *));
        if (!k) {
            free(v);
            return sd_errorf("out of memory");
        }
        m->keys = k;
        char **vv = (char **)realloc(m->values, (size_t)cap * sizeof(char *));
        if (!vv) {
            free(v);
            return sd_errorf("out of memory");
        }
        m->values = vv;
        m->capacity = cap;
    }
    m->keys[m->count] = strdup(key);
    if (!m->keys[m->count]) {
        free(v);
        return sd_errorf("out of memory");
    }
    m->values[m->count++] = v;
    return 0;
}

int feature_meta_setf(FeatureMeta *m, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return sd_errorf("metadata '%s': bad format", key);
    char *buf = (char *)malloc((size_t)n + 1);
    if (!buf) return sd_errorf("out of memory");
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = feature_meta_set(m, key, buf);
    free(buf);
    return rc;
}

int feature_cache_write(const char *path, const Tensor *feats, int n_steps, int n_scales, const Tensor *latent,
                        int f16, const FeatureMeta *meta) {
    int n = n_steps * n_scales + (latent ? 1 : 0);
    StWriteEntry *e = (StWriteEntry *)calloc((size_t)n, sizeof(StWriteEntry));
    char(*names)[32] = (char(*)[32])calloc((size_t)n, 32);
    const char **keys = (const char **)calloc((size_t)meta->count + 1, sizeof(char *));
    const char **values = (const char **)calloc((size_t)meta->count + 1, sizeof(char *));
    int rc = -1;
    if (!e || !names || !keys || !values) {
        sd_errorf("out of memory");
        goto done;
    }
    int k = 0;
    for (int i = 0; i < n_steps; i++)
        for (int s = 0; s < n_scales; s++, k++) {
            snprintf(names[k], 32, "feat.%d.%d", i, s);
            e[k] = st_entry_f32(names[k], &feats[i * n_scales + s]);
            e[k].name = names[k];
            if (f16) e[k].dtype = DT_F16;
        }
    if (latent) {
        e[k] = st_entry_f32("latent", latent);
        if (f16) e[k].dtype = DT_F16;
        k++;
    }
    // "format" first, then the caller's keys (minus any "format" of theirs).
    int nm = 0;
    keys[nm] = "format";
    values[nm++] = FEATURE_CACHE_FORMAT;
    for (int i = 0; i < meta->count; i++) {
        if (!strcmp(meta->keys[i], "format")) continue;
        keys[nm] = meta->keys[i];
        values[nm++] = meta->values[i];
    }
    rc = st_write(path, e, k, keys, values, nm);
done:
    free(e);
    free(names);
    free(keys);
    free(values);
    return rc;
}

// Parses the metadata value `key` of st as JSON.
static int meta_json(const SafeTensors *st, const char *path, const char *key, JsonValue *out) {
    const char *v = st_metadata(st, key);
    if (!v) return sd_errorf("%s: metadata '%s' is missing", path, key);
    if (json_parse(v, strlen(v), key, out)) return sd_error_context("%s: metadata", path);
    return 0;
}

// Reads save_steps and scales from the metadata and checks every tensor.
static int read_layout(FeatureFile *f, const char *path) {
    const SafeTensors *st = &f->st;
    const char *fmt = st_metadata(st, "format");
    if (!fmt || strcmp(fmt, FEATURE_CACHE_FORMAT) != 0)
        return sd_errorf("%s: not a satdifuser feature file (metadata format '%s', expected '%s')", path,
                         fmt ? fmt : "(none)", FEATURE_CACHE_FORMAT);
    JsonValue steps, scales;
    if (meta_json(st, path, "save_timesteps", &steps)) return -1;
    if (meta_json(st, path, "scales", &scales)) {
        json_free(&steps);
        return -1;
    }
    int rc = -1;
    if (steps.type != JSON_ARRAY || steps.count < 1 || steps.count > FEATURE_CACHE_MAX_STEPS || scales.type != JSON_ARRAY ||
        scales.count < 1 || scales.count > FEATURE_CACHE_MAX_SCALES) {
        sd_errorf("%s: metadata save_timesteps / scales are not lists of 1..%d / 1..%d items", path, FEATURE_CACHE_MAX_STEPS,
                  FEATURE_CACHE_MAX_SCALES);
        goto done;
    }
    f->n_steps = steps.count;
    f->n_scales = scales.count;
    for (int i = 0; i < steps.count; i++) {
        if (json_as_int(&steps.items[i], &f->save_steps[i]) || f->save_steps[i] < 0) {
            sd_errorf("%s: metadata save_timesteps[%d] is not a step index (0..2^31-1)", path, i);
            goto done;
        }
    }
    for (int s = 0; s < scales.count; s++) {
        const JsonValue *hw = &scales.items[s];
        int h, w;
        if (hw->type != JSON_ARRAY || hw->count != 2 || json_as_int(&hw->items[0], &h) ||
            json_as_int(&hw->items[1], &w) || h < 1 || w < 1) {
            sd_errorf("%s: metadata scales[%d] is not [H, W] of sizes 1..2^31-1", path, s);
            goto done;
        }
        f->scale_h[s] = h;
        f->scale_w[s] = w;
        f->scale_c[s] = 0;
    }
    for (int i = 0; i < f->n_steps; i++)
        for (int s = 0; s < f->n_scales; s++) {
            char name[32];
            snprintf(name, sizeof(name), "feat.%d.%d", i, s);
            const StEntry *e = st_find(st, name);
            if (!e) {
                sd_errorf("%s: tensor '%s' is missing (the file should hold %d steps x %d scales)", path, name, f->n_steps,
                          f->n_scales);
                goto done;
            }
            if (e->ndim != 4 || e->shape[0] != 1 || e->shape[2] != f->scale_h[s] || e->shape[3] != f->scale_w[s] ||
                e->shape[1] < 1 || (e->dtype != DT_F32 && e->dtype != DT_F16)) {
                sd_errorf("%s: tensor '%s' is %s with %d dims, expected F32/F16 (1, C, %d, %d)", path, name,
                          dtype_name(e->dtype), e->ndim, f->scale_h[s], f->scale_w[s]);
                goto done;
            }
            if (i == 0) f->scale_c[s] = (int)e->shape[1];
            else if (f->scale_c[s] != (int)e->shape[1]) {
                sd_errorf("%s: tensor '%s' has %lld channels, feat.0.%d has %d", path, name, (long long)e->shape[1], s,
                          f->scale_c[s]);
                goto done;
            }
        }
    rc = 0;
done:
    json_free(&steps);
    json_free(&scales);
    return rc;
}

int feature_file_open(FeatureFile *f, const char *path) {
    memset(f, 0, sizeof(*f));
    if (st_open(&f->st, path)) return -1;
    if (read_layout(f, path)) {
        st_close(&f->st);
        memset(f, 0, sizeof(*f));
        return -1;
    }
    return 0;
}

void feature_file_close(FeatureFile *f) {
    st_close(&f->st);
    memset(f, 0, sizeof(*f));
}

const char *feature_file_meta(const FeatureFile *f, const char *key) { return st_metadata(&f->st, key); }

int feature_file_load(const FeatureFile *f, int step, int scale, Tensor *out) {
    if (step < 0 || step >= f->n_steps || scale < 0 || scale >= f->n_scales)
        return sd_errorf("%s: no feature step %d scale %d (the file has %d x %d)", f->st.path, step, scale, f->n_steps,
                         f->n_scales);
    char name[32];
    snprintf(name, sizeof(name), "feat.%d.%d", step, scale);
    int shape[4] = {1, f->scale_c[scale], f->scale_h[scale], f->scale_w[scale]};
    return st_load(&f->st, name, 4, shape, out);
}

int feature_cache_validate(const char *path, const FeatureMeta *expect) {
    FeatureFile f;
    if (feature_file_open(&f, path)) return -1;
    int rc = 0;
    for (int i = 0; i < expect->count && !rc; i++) {
        const char *have = st_metadata(&f.st, expect->keys[i]);
        if (!have || strcmp(have, expect->values[i]) != 0)
            rc = sd_errorf("%s: made with other settings: %s is '%s' in the file, '%s' now (remove the file or use "
                           "another --out)",
                           path, expect->keys[i], have ? have : "(missing)", expect->values[i]);
    }
    feature_file_close(&f);
    return rc;
}
