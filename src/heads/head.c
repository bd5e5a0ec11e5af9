// The whole model: fuser + task head, its config, weights and forward. See head.h.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "heads/head.h"

static const char *const g_task_names[] = {"classification", "multi_label_classification", "segmentation"};

const char *head_task_name(HeadTask t) { return (unsigned)t < 3 ? g_task_names[t] : "?"; }

static int int_list(const JsonValue *j, const char *key, int max, int *out, int *count) {
    const JsonValue *v = json_get(j, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_ARRAY || v->count > max) return sd_errorf("%s: expected a list of at most %d integers", key, max);
    for (int i = 0; i < v->count; i++) {
        int64_t x;
        if (v->items[i].type != JSON_NUMBER || json_as_int64(&v->items[i], &x) || x < 0 || x > 1000000)
            return sd_errorf("%s[%d]: expected a non-negative integer", key, i);
        out[i] = (int)x;
    }
    *count = v->count;
    return 0;
}

static int parse_config(HeadConfig *c, const JsonValue *j, int fuser_dim_follows) {
    memset(c, 0, sizeof(*c));
    if (!j || j->type != JSON_OBJECT) return sd_errorf("head config: expected a JSON object");
    const char *task = "classification";
    if (json_get_string(j, "task", task, &task)) return SD_FAIL;
    int found = 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(task, g_task_names[i]) == 0) { c->task = (HeadTask)i; found = 1; }
    if (!found) return sd_errorf("task '%s': expected classification, multi_label_classification or segmentation", task);
    if (feature_layout_from_json(&c->layout, json_get(j, "feature_dims"), json_get(j, "save_timesteps")))
        return SD_FAIL;

    fuser_config_defaults(&c->fuser);
    c->fuser.warmup_steps = c->task == TASK_SEGMENTATION ? 500 : 300;  // MoEFuserSegUPerNet / MoEFuserClassifier
    if (fuser_config_from_json(&c->fuser, j)) return SD_FAIL;
    c->projection_dim = c->fuser.projection_dim;
    // the classifier quirk: the fuser keeps its own default unless told otherwise
    int fpd = c->task == TASK_SEGMENTATION || fuser_dim_follows ? c->projection_dim : 384;
    if (json_get_int(j, "fuser_projection_dim", fpd, &fpd)) return SD_FAIL;
    c->fuser.projection_dim = fpd;
    if (c->task != TASK_SEGMENTATION && fpd != c->projection_dim)
        return sd_errorf("classifier with projection_dim %d: the released classifiers build their fuser with the "
                         "fusers' default projection_dim %d (LinearClassifierDecoderMixin does not pass it on) and "
                         "the Linear with %d, so they only run with 384; set \"fuser_projection_dim\": %d for the "
                         "corrected model",
                         c->projection_dim, fpd, c->projection_dim, c->projection_dim);
    if (c->task == TASK_SEGMENTATION && fpd != c->projection_dim)
        return sd_errorf("segmentation: fuser_projection_dim %d differs from projection_dim %d", fpd, c->projection_dim);
    if (json_get_int(j, "num_classes", 0, &c->num_classes)) return SD_FAIL;
    if (c->num_classes < 1) return sd_errorf("num_classes: missing or < 1");

    if (c->task == TASK_SEGMENTATION) {
        int shape[2] = {0, 0}, n = 0;
        if (int_list(j, "output_shape", 2, shape, &n)) return SD_FAIL;
        if (n != 2 || shape[0] < 1 || shape[1] < 1) return sd_errorf("segmentation: output_shape [H, W] missing");
        c->output_h = shape[0];
        c->output_w = shape[1];
        if (json_get_int(j, "channels", 512, &c->channels)) return SD_FAIL;
        int def_pool[4] = {1, 2, 3, 6};
        memcpy(c->pool_scales, def_pool, sizeof(def_pool));
        c->num_pool_scales = 4;
        if (int_list(j, "pool_scales", UPER_MAX_POOL, c->pool_scales, &c->num_pool_scales)) return SD_FAIL;
        c->num_rescales = 4;
        for (int i = 0; i < 4; i++) c->rescales[i] = 1.0;
        const JsonValue *r = json_get(j, "rescales");
        if (r && r->type != JSON_NULL) {
            if (r->type != JSON_ARRAY || r->count > FUSION_MAX_SCALES) return sd_errorf("rescales: expected a list");
            c->num_rescales = r->count;
            for (int i = 0; i < r->count; i++) {
                if (r->items[i].type != JSON_NUMBER) return sd_errorf("rescales[%d]: expected a number", i);
                c->rescales[i] = r->items[i].number;
            }
        }
        // Feature2Pyramid(rescales[:num_scales]) asserts one rescale per scale; only 1 (Identity) is supported
        if (c->num_rescales < c->layout.num_scales)
            return sd_errorf("rescales: %d values for %d scales", c->num_rescales, c->layout.num_scales);
        for (int i = 0; i < c->layout.num_scales; i++)
            if (c->rescales[i] != 1.0)
                return sd_errorf("rescales[%d] = %g: only 1 (identity neck, as every SatDiFuser config) is supported", i,
                                 c->rescales[i]);
        if (json_get_bool(j, "align_corners", 0, &c->align_corners)) return SD_FAIL;
        double p = 0.1;
        if (json_get_double(j, "dropout", p, &p)) return SD_FAIL;
        if (p < 0.0 || p > 1.0) return sd_errorf("dropout %g: expected 0..1", p);
        c->dropout_p = (float)p;
    }
    return 0;
}

int head_config_from_json(HeadConfig *c, const JsonValue *j) { return parse_config(c, j, 0); }

int head_config_from_json_golden(HeadConfig *c, const JsonValue *j) { return parse_config(c, j, 1); }

// A growing string for head_config_to_json.
typedef struct {
    char *s;
    size_t n, cap;
    int fail;
} Text;

static void put(Text *t, const char *fmt, ...) {
    if (t->fail) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (len < 0) { t->fail = 1; return; }
        if (t->s && t->n + (size_t)len < t->cap) { t->n += (size_t)len; return; }
        size_t cap = (t->cap ? t->cap * 2 : 1024) + (size_t)len;
        char *s = (char *)realloc(t->s, cap);
        if (!s) { t->fail = 1; return; }
        t->s = s;
        t->cap = cap;
    }
}

char *head_config_to_json(const HeadConfig *c) {
    Text t = {0};
    const FeatureLayout *fl = &c->layout;
    const FuserConfig *f = &c->fuser;
    put(&t, "{\n  \"task\": \"%s\",\n  \"fuser\": \"%s\",\n  \"feature_dims\": {", head_task_name(c->task),
        fuser_kind_name(f->kind));
    for (int s = 0; s < fl->num_scales; s++) {
        put(&t, "%s\"%d\": [", s ? ", " : "", fl->width[s]);
        for (int l = 0; l < fl->num_streams[s]; l++) put(&t, "%s%d", l ? ", " : "", fl->channels[s][l]);
        put(&t, "]");
    }
    put(&t, "},\n  \"save_timesteps\": [");
    for (int i = 0; i < fl->num_timesteps; i++) put(&t, "%s%d", i ? ", " : "", fl->timesteps[i]);
    put(&t, "],\n  \"projection_dim\": %d,\n  \"fuser_projection_dim\": %d,\n  \"num_classes\": %d,\n"
            "  \"num_norm_groups\": %d,\n  \"num_res_blocks\": %d,\n  \"gating_tempature\": %.9g,\n",
        c->projection_dim, f->projection_dim, c->num_classes, f->num_norm_groups, f->num_res_blocks,
        (double)f->gating_temperature);
    put(&t, "  \"lw_advance_channels\": %s,\n  \"num_experts\": %d,\n  \"top_k\": %d,\n  \"warmup_steps\": %d,\n"
            "  \"moe_global_step\": %lld,\n  \"moe_counter\": \"%s\",\n  \"single_stream\": %d,\n"
            "  \"single_timestep\": %d",
        f->lw_advance_channels ? "true" : "false", f->num_experts, f->top_k, f->warmup_steps,
        (long long)f->moe_global_step, f->moe_count_train_steps ? "train_steps" : "calls", f->single_stream,
        f->single_timestep);
    if (c->task == TASK_SEGMENTATION) {
        put(&t, ",\n  \"output_shape\": [%d, %d],\n  \"channels\": %d,\n  \"pool_scales\": [", c->output_h, c->output_w,
            c->channels);
        for (int i = 0; i < c->num_pool_scales; i++) put(&t, "%s%d", i ? ", " : "", c->pool_scales[i]);
        put(&t, "],\n  \"rescales\": [");
        for (int i = 0; i < c->num_rescales; i++) put(&t, "%s%g", i ? ", " : "", c->rescales[i]);
        put(&t, "],\n  \"align_corners\": %s,\n  \"dropout\": %.9g", c->align_corners ? "true" : "false",
            (double)c->dropout_p);
    }
    put(&t, "\n}\n");
    if (t.fail) {
        free(t.s);
        sd_errorf("out of memory writing the head config");
        return NULL;
    }
    return t.s;
}

// ---------------------------------------------------------------------------

int head_model_init(HeadModel *m, const HeadConfig *cfg) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    // registration order = the original's state_dict order: the fuser (the base class) first
    if (fuser_init(&m->fuser, &cfg->fuser, &cfg->layout, &m->params)) return sd_error_context("building the fuser");
    if (cfg->task == TASK_SEGMENTATION) {
        if (uper_head_init(&m->uper, &m->params, cfg->layout.num_scales, cfg->projection_dim, cfg->channels,
                           cfg->num_classes, cfg->pool_scales, cfg->num_pool_scales, cfg->output_h, cfg->output_w,
                           cfg->align_corners, cfg->dropout_p))
            return sd_error_context("building the UPerNet head");
    } else {
        if (linear_head_init(&m->linear, &m->params, cfg->projection_dim, cfg->num_classes))
            return sd_error_context("building the linear head");
    }
    return 0;
}

void head_model_free(HeadModel *m) {
    fuser_free(&m->fuser);
    linear_head_free(&m->linear);
    uper_head_free(&m->uper);
    params_free(&m->params);
}

int head_model_load_st(HeadModel *m, const SafeTensors *st) {
    if (params_load(&m->params, st, 1)) return SD_FAIL;
    // The MoE counter is not in a state_dict: released behaviour, it stays at its
    // configured start value; corrected ("train_steps"), it comes back from the
    // file's metadata when the file has it.
    const char *steps = st_metadata(st, "moe_global_step");
    MoEFuser *moe = &m->fuser.moe;
    if (m->cfg.fuser.kind == FUSER_MOE && m->cfg.fuser.moe_count_train_steps && steps) {
        const char *p = steps;
        for (int s = 0; s < moe->num_scales; s++) {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p) return sd_errorf("%s: metadata moe_global_step '%s': expected %d integers", st->path, steps,
                                           moe->num_scales);
            moe->scales[s].global_step = v;
            p = *end == ',' ? end + 1 : end;
        }
    }
    return 0;
}

int head_model_load(HeadModel *m, const char *path) {
    SafeTensors st;
    if (st_open(&st, path)) return SD_FAIL;
    int rc = head_model_load_st(m, &st);
    st_close(&st);
    return rc;
}

int head_model_save(const HeadModel *m, const char *path) {
    char *cfg = head_config_to_json(&m->cfg);
    if (!cfg) return SD_FAIL;
    // the MoE counters go to the metadata (PyTorch's strict load_state_dict would refuse them as tensors)
    char steps[FUSION_MAX_SCALES * 24] = "";
    size_t n = 0;
    for (int s = 0; m->cfg.fuser.kind == FUSER_MOE && s < m->fuser.moe.num_scales; s++)
        n += (size_t)snprintf(steps + n, sizeof(steps) - n, s ? ",%lld" : "%lld",
                              (long long)m->fuser.moe.scales[s].global_step);
    const char *keys[3] = {"format", "head_config", "moe_global_step"};
    const char *values[3] = {"satdifuser-head", cfg, steps};
    int rc = params_save(&m->params, path, keys, values, m->cfg.fuser.kind == FUSER_MOE ? 3 : 2);
    free(cfg);
    return rc;
}

void head_model_set_mode(HeadModel *m, int training, int keep) {
    m->training = training;
    m->keep = keep;
}

int head_model_forward(HeadModel *m, const FusionInput *in) {
    const HeadConfig *c = &m->cfg;
    int S = c->layout.num_scales, B = in->B;
    int keep = m->keep || m->training;
    if (fuser_forward(&m->fuser, in, m->training, keep)) return sd_error_context("fusion");
    if (c->task == TASK_SEGMENTATION) {
        if (uper_head_forward(&m->uper, m->fuser.fused, B, in->H, in->W, m->training))
            return sd_error_context("upernet");
        m->out_ndim = 4;
        m->out_shape[0] = B;
        m->out_shape[1] = c->num_classes;
        m->out_shape[2] = c->output_h;
        m->out_shape[3] = c->output_w;
    } else {
        if (linear_head_forward(&m->linear, m->fuser.fused, S, B, in->H, in->W)) return sd_error_context("linear head");
        m->out_ndim = 2;
        m->out_shape[0] = B;
        m->out_shape[1] = c->num_classes;
    }
    return 0;
}

int head_model_backward_ex(HeadModel *m, const float *dlogits, FusionGrad *dfeat) {
    const HeadConfig *c = &m->cfg;
    Fuser *f = &m->fuser;
    const int S = c->layout.num_scales, B = f->B, P = c->fuser.projection_dim;
    if (!m->training)
        return sd_errorf("head_model_backward: the last forward was not a training forward "
                         "(head_model_set_mode(m, 1, ...) keeps what the backward needs)");
    if (B < 1) return sd_errorf("head_model_backward: no forward to differentiate");
    if (params_alloc_grads(&m->params)) return SD_FAIL;
    float *dfused[FUSION_MAX_SCALES] = {0};
    int rc = SD_FAIL;
    for (int s = 0; s < S; s++)
        if (!(dfused[s] = zalloc_floats((size_t)B * P * f->H[s] * f->W[s]))) goto done;
    if (c->task == TASK_SEGMENTATION) {
        if (uper_head_backward(&m->uper, dlogits, dfused)) goto done;
    } else {
        if (linear_head_backward(&m->linear, dlogits, dfused)) goto done;
    }
    if (fuser_backward(f, (const float *const *)dfused, dfeat)) {
        sd_error_context("fusion backward");
        goto done;
    }
    rc = 0;
done:
    for (int s = 0; s < S; s++) free(dfused[s]);
    return rc;
}

int head_model_backward(HeadModel *m, const float *dlogits) { return head_model_backward_ex(m, dlogits, NULL); }

const float *head_model_logits(const HeadModel *m) {
    return m->cfg.task == TASK_SEGMENTATION ? m->uper.logits.data : m->linear.logits.data;
}
