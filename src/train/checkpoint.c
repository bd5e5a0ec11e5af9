#include "train/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "core/error.h"
#include "io/json.h"

int checkpoint_save(const char *path, const HeadModel *m, const Adam *adam, const TrainState *ts) {
    const ParamSet *ps = &m->params;
    int n = 0, cap = ps->count * 4;
    StWriteEntry *e = (StWriteEntry *)calloc((size_t)cap, sizeof(StWriteEntry));
    char **names = (char **)calloc((size_t)cap, sizeof(char *));
    if (!e || !names) { free(e); free(names); return sd_errorf("out of memory"); }
    int rc = 0;
    for (int k = 0; k < ps->count && !rc; k++) {
        const Param *p = ps->items[k];
        StWriteEntry *w = &e[n++];
        w->name = p->name;
        w->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) w->shape[d] = p->shape[d];
        if (p->kind == PARAM_COUNTER) {
            w->dtype = DT_I64;
            w->data = &p->counter;
            continue;
        }
        w->dtype = DT_F32;
        w->data = p->data;
        if (p->kind != PARAM_WEIGHT) continue;
        const char *prefix[3] = {"adam.exp_avg.", "adam.exp_avg_sq.", "adam.step."};
        for (int j = 0; j < 3; j++) {
            size_t len = strlen(prefix[j]) + strlen(p->name) + 1;
            names[n] = (char *)malloc(len);
            if (!names[n]) { rc = sd_errorf("out of memory"); break; }
            snprintf(names[n], len, "%s%s", prefix[j], p->name);
            StWriteEntry *a = &e[n];
            a->name = names[n];
            if (j < 2) {
                a->dtype = DT_F32;
                a->ndim = p->ndim;
                for (int d = 0; d < p->ndim; d++) a->shape[d] = p->shape[d];
                a->data = j == 0 ? adam->state[k].m : adam->state[k].v;
            } else {
                a->dtype = DT_I64;
                a->ndim = 0;
                a->data = &adam->state[k].step;
            }
            n++;
        }
    }
    char v[6][64];
    snprintf(v[0], 64, "%d", ts->epoch);
    snprintf(v[1], 64, "%d", ts->step_in_epoch);
    snprintf(v[2], 64, "%lld", (long long)ts->global_step);
    snprintf(v[3], 64, "%.17g", ts->best_metric);
    snprintf(v[4], 64, "%lld", (long long)ts->best_step);
    snprintf(v[5], 64, "%d", ts->no_improve);
    const char *keys[6] = {"epoch", "step_in_epoch", "global_step", "best_metric", "best_step", "no_improve"};
    const char *vals[6] = {v[0], v[1], v[2], v[3], v[4], v[5]};
    if (!rc) rc = st_write(path, e, n, keys, vals, 6);
    for (int i = 0; i < cap; i++) free(names[i]);
    free(names);
    free(e);
    return rc;
}

static int meta_number(const SafeTensors *st, const char *key, double *out) {
    const char *s = st_metadata(st, key);
    if (!s) return sd_errorf("%s: checkpoint metadata '%s' missing", st->path, key);
    char *end = NULL;
    *out = strtod(s, &end);
    if (end == s || *end) return sd_errorf("%s: checkpoint metadata '%s' = '%s' is not a number", st->path, key, s);
    return 0;
}

int checkpoint_load(const char *path, HeadModel *m, Adam *adam, TrainState *ts) {
    SafeTensors st;
    if (st_open(&st, path)) return SD_FAIL;
    int rc = params_load(&m->params, &st, 0);  // every head tensor by name and shape; adam.* are extra
    double v[6];
    const char *keys[6] = {"epoch", "step_in_epoch", "global_step", "best_metric", "best_step", "no_improve"};
    for (int i = 0; i < 6 && !rc; i++) rc = meta_number(&st, keys[i], &v[i]);
    if (!rc) {
        ts->epoch = (int)v[0];
        ts->step_in_epoch = (int)v[1];
        ts->global_step = (int64_t)v[2];
        ts->best_metric = v[3];
        ts->best_step = (int64_t)v[4];
        ts->no_improve = (int)v[5];
    }
    const ParamSet *ps = &m->params;
    char name[1024];
    for (int k = 0; k < ps->count && !rc; k++) {
        const Param *p = ps->items[k];
        if (p->kind != PARAM_WEIGHT) continue;
        const StEntry *e;
        snprintf(name, sizeof(name), "adam.exp_avg.%s", p->name);
        if ((rc = st_require(&st, name, &e))) break;
        if (e->numel != p->numel || e->dtype != DT_F32) { rc = sd_errorf("%s: '%s' has the wrong size or dtype", path, name); break; }
        st_entry_to_f32(e, adam->state[k].m);
        snprintf(name, sizeof(name), "adam.exp_avg_sq.%s", p->name);
        if ((rc = st_require(&st, name, &e))) break;
        if (e->numel != p->numel || e->dtype != DT_F32) { rc = sd_errorf("%s: '%s' has the wrong size or dtype", path, name); break; }
        st_entry_to_f32(e, adam->state[k].v);
        snprintf(name, sizeof(name), "adam.step.%s", p->name);
        if ((rc = st_require(&st, name, &e))) break;
        if (e->numel != 1) { rc = sd_errorf("%s: '%s' must be a scalar", path, name); break; }
        if ((rc = st_entry_to_i64(&st, e, &adam->state[k].step))) break;
    }
    st_close(&st);
    return rc;
}

// ---------------------------------------------------------------------------
// The MoE call counters of a run folder (see checkpoint.h).

static int is_calls_moe(const HeadModel *m) {
    return m->cfg.fuser.kind == FUSER_MOE && !m->cfg.fuser.moe_count_train_steps;
}

int moe_counter_write(const char *run_dir, const HeadModel *m) {
    if (!is_calls_moe(m)) return 0;
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/moe_counter.json", run_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return sd_errorf("%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "{\"moe_global_step\": [");
    for (int s = 0; s < m->fuser.moe.num_scales; s++)
        fprintf(f, "%s%lld", s ? ", " : "", (long long)m->fuser.moe.scales[s].global_step);
    fprintf(f, "], \"warmup_steps\": %d, \"when\": \"start of train's final test\"}\n", m->cfg.fuser.warmup_steps);
    if (fclose(f) != 0 || rename(tmp, path) != 0) return sd_errorf("%s: write failed", path);
    return 0;
}

int moe_counter_read(const char *run_dir, HeadModel *m, int *found) {
    *found = 0;
    if (!is_calls_moe(m)) return 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/moe_counter.json", run_dir);
    if (access(path, F_OK) != 0) return 0;
    JsonValue j;
    if (json_parse_file(path, &j)) return SD_FAIL;
    const JsonValue *a = json_get(&j, "moe_global_step");
    MoEFuser *moe = &m->fuser.moe;
    int rc = 0;
    if (!a || a->type != JSON_ARRAY || a->count != moe->num_scales)
        rc = sd_errorf("%s: 'moe_global_step' must be a list of %d counters (one per scale)", path, moe->num_scales);
    for (int s = 0; !rc && s < moe->num_scales; s++) {
        int64_t v;
        if (json_as_int64(&a->items[s], &v) || v < 0) rc = sd_errorf("%s: moe_global_step[%d] is not a counter", path, s);
        else moe->scales[s].global_step = v;
    }
    json_free(&j);
    if (!rc) *found = 1;
    return rc;
}
