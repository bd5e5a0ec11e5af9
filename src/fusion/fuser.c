// Feature layout, fuser configuration and the dispatch to the five fusers. See fuser.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"

static int json_int_value(const JsonValue *v, const char *what, int *out) {
    if (json_as_int(v, out)) return sd_errorf("%s: expected an integer", what);
    return 0;
}

int feature_layout_from_json(FeatureLayout *fl, const JsonValue *fd, const JsonValue *ts) {
    memset(fl, 0, sizeof(*fl));
    if (!fd || fd->type != JSON_OBJECT || fd->count < 1)
        return sd_errorf("feature_dims: expected an object {\"<width>\": [channels, ...], ...}");
    if (fd->count > FUSION_MAX_SCALES) return sd_errorf("feature_dims: %d scales, at most %d", fd->count, FUSION_MAX_SCALES);
    // widths sorted from the largest down: sorted(feature_dims.keys(), reverse=True)
    int order[FUSION_MAX_SCALES], widths[FUSION_MAX_SCALES];
    for (int i = 0; i < fd->count; i++) {
        char *end;
        long w = strtol(fd->keys[i], &end, 10);
        if (*end || w <= 0 || w > 1000000) return sd_errorf("feature_dims: key '%s' is not a width", fd->keys[i]);
        widths[i] = (int)w;
        order[i] = i;
    }
    for (int i = 1; i < fd->count; i++)
        for (int j = i; j > 0 && widths[order[j]] > widths[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    fl->num_scales = fd->count;
    for (int s = 0; s < fd->count; s++) {
        const JsonValue *list = &fd->items[order[s]];
        fl->width[s] = widths[order[s]];
        if (s > 0 && fl->width[s] == fl->width[s - 1]) return sd_errorf("feature_dims: width %d twice", fl->width[s]);
        if (list->type != JSON_ARRAY || list->count < 1 || list->count > FUSION_MAX_STREAMS)
            return sd_errorf("feature_dims[\"%d\"]: expected a list of 1..%d channel counts", fl->width[s],
                             FUSION_MAX_STREAMS);
        fl->num_streams[s] = list->count;
        for (int l = 0; l < list->count; l++) {
            if (json_int_value(&list->items[l], "feature_dims channel count", &fl->channels[s][l])) return SD_FAIL;
            if (fl->channels[s][l] <= 0) return sd_errorf("feature_dims[\"%d\"][%d] = %d", fl->width[s], l, fl->channels[s][l]);
            fl->scale_channels[s] += fl->channels[s][l];
        }
    }
    if (!ts || ts->type != JSON_ARRAY || ts->count < 1 || ts->count > FUSION_MAX_TIMESTEPS)
        return sd_errorf("save_timesteps: expected a list of 1..%d timesteps", FUSION_MAX_TIMESTEPS);
    fl->num_timesteps = ts->count;
    for (int i = 0; i < ts->count; i++) {
        if (json_int_value(&ts->items[i], "save_timesteps", &fl->timesteps[i])) return SD_FAIL;
        for (int j = 0; j < i; j++)
            if (fl->timesteps[j] == fl->timesteps[i]) return sd_errorf("save_timesteps: %d twice", fl->timesteps[i]);
    }
    // the fusers walk sorted(batch_feats.keys(), reverse=True)
    for (int i = 0; i < fl->num_timesteps; i++) fl->ts_input[i] = i;
    for (int i = 1; i < fl->num_timesteps; i++)
        for (int j = i; j > 0 && fl->timesteps[fl->ts_input[j]] > fl->timesteps[fl->ts_input[j - 1]]; j--) {
            int t = fl->ts_input[j]; fl->ts_input[j] = fl->ts_input[j - 1]; fl->ts_input[j - 1] = t;
        }
    return 0;
}

int feature_layout_from_strings(FeatureLayout *fl, const char *feature_dims_json, const char *save_timesteps_json) {
    if (!feature_dims_json || !save_timesteps_json) return sd_errorf("feature layout: feature_dims or save_timesteps missing");
    JsonValue fd, ts;
    if (json_parse(feature_dims_json, strlen(feature_dims_json), "feature_dims", &fd)) return SD_FAIL;
    if (json_parse(save_timesteps_json, strlen(save_timesteps_json), "save_timesteps", &ts)) {
        json_free(&fd);
        return SD_FAIL;
    }
    int rc = feature_layout_from_json(fl, &fd, &ts);
    json_free(&fd);
    json_free(&ts);
    return rc;
}

int feature_layout_total_streams(const FeatureLayout *fl) {
    int n = 0;
    for (int s = 0; s < fl->num_scales; s++) n += fl->num_streams[s];
    return n;
}

int feature_layout_stream_index(const FeatureLayout *fl, int s, int l) {
    int n = 0;
    for (int i = 0; i < s; i++) n += fl->num_streams[i];
    return n + l;
}

static const char *const g_kind_names[] = {"gw", "lw", "moe", "concat", "single"};

const char *fuser_kind_name(FuserKind k) { return (unsigned)k < 5 ? g_kind_names[k] : "?"; }

int fuser_kind_from_name(const char *name, FuserKind *out) {
    for (int i = 0; i < 5; i++)
        if (strcmp(name, g_kind_names[i]) == 0) { *out = (FuserKind)i; return 0; }
    return sd_errorf("fuser '%s': expected gw, lw, moe, concat or single", name);
}

void fuser_config_defaults(FuserConfig *c) {
    memset(c, 0, sizeof(*c));
    c->kind = FUSER_GW;
    c->projection_dim = 384;
    c->num_norm_groups = 32;
    c->num_res_blocks = 1;
    c->gating_temperature = 1.0f;
    c->lw_advance_channels = 0;
    c->num_experts = 8;
    c->top_k = 2;
    c->warmup_steps = 500;
    c->moe_global_step = 0;
    c->single_stream = 0;
    c->single_timestep = -1;
}

int fuser_config_from_json(FuserConfig *c, const JsonValue *j) {
    const char *name = NULL;
    if (json_get_string(j, "fuser", NULL, &name)) return SD_FAIL;
    if (name && fuser_kind_from_name(name, &c->kind)) return SD_FAIL;
    double temp = c->gating_temperature, step = (double)c->moe_global_step;
    if (json_get_int(j, "projection_dim", c->projection_dim, &c->projection_dim) ||
        json_get_int(j, "num_norm_groups", c->num_norm_groups, &c->num_norm_groups) ||
        json_get_int(j, "num_res_blocks", c->num_res_blocks, &c->num_res_blocks) ||
        json_get_double(j, "gating_tempature", temp, &temp) ||
        json_get_bool(j, "lw_advance_channels", c->lw_advance_channels, &c->lw_advance_channels) ||
        json_get_int(j, "num_experts", c->num_experts, &c->num_experts) ||
        json_get_int(j, "top_k", c->top_k, &c->top_k) ||
        json_get_int(j, "warmup_steps", c->warmup_steps, &c->warmup_steps) ||
        json_get_double(j, "moe_global_step", step, &step) ||
        json_get_int(j, "single_stream", c->single_stream, &c->single_stream) ||
        json_get_int(j, "single_timestep", c->single_timestep, &c->single_timestep))
        return SD_FAIL;
    c->gating_temperature = (float)temp;
    c->moe_global_step = (int64_t)step;
    const char *counter = NULL;
    if (json_get_string(j, "moe_counter", NULL, &counter)) return SD_FAIL;
    if (counter) {
        if (strcmp(counter, "calls") == 0) c->moe_count_train_steps = 0;
        else if (strcmp(counter, "train_steps") == 0) c->moe_count_train_steps = 1;
        else return sd_errorf("moe_counter '%s': expected \"calls\" (released) or \"train_steps\" (corrected)", counter);
    }
    return 0;
}

static int fuser_config_check(const FuserConfig *c) {
    if (c->projection_dim < 4 || c->projection_dim % 4)
        return sd_errorf("projection_dim %d: must be a multiple of 4 (Phi's bottleneck is projection_dim // 4)",
                         c->projection_dim);
    if (c->num_norm_groups < 1 || (c->projection_dim / 4) % c->num_norm_groups)
        return sd_errorf("num_norm_groups %d must divide projection_dim / 4 = %d", c->num_norm_groups,
                         c->projection_dim / 4);
    if (c->gating_temperature == 0.0f) return sd_errorf("gating_tempature must not be 0");
    if (c->kind == FUSER_MOE && (c->num_experts < 1 || c->top_k < 1 || c->top_k > c->num_experts))
        return sd_errorf("moe: num_experts %d, top_k %d: need 1 <= top_k <= num_experts", c->num_experts, c->top_k);
    return 0;
}

int fuser_init(Fuser *f, const FuserConfig *cfg, const FeatureLayout *fl, ParamSet *ps) {
    memset(f, 0, sizeof(*f));
    if (fuser_config_check(cfg)) return SD_FAIL;
    f->cfg = *cfg;
    f->layout = *fl;
    switch (cfg->kind) {
    case FUSER_GW: return gw_init(&f->gw, fl, cfg, ps);
    case FUSER_LW: return lw_init(&f->lw, fl, cfg, ps);
    case FUSER_MOE: return moe_init(&f->moe, fl, cfg, ps);
    case FUSER_CONCAT: return concat_init(&f->concat, fl, cfg, ps);
    case FUSER_SINGLE: return single_init(&f->single, fl, cfg, ps);
    }
    return sd_errorf("unknown fuser kind %d", (int)cfg->kind);
}

int fuser_forward(Fuser *f, const FusionInput *in, int training, int keep) {
    const FeatureLayout *fl = &f->layout;
    if (in->B < 1) return sd_errorf("fusion: batch size %d", in->B);
    for (int s = 0; s < fl->num_scales; s++) {
        if (in->W[s] != fl->width[s] || in->H[s] < 1)
            return sd_errorf("fusion: scale %d is %dx%d, the layout (feature_dims) says width %d", s, in->H[s], in->W[s],
                             fl->width[s]);
        if (in->C[s] && in->C[s] != fl->scale_channels[s])
            return sd_errorf("fusion: scale %d (width %d) has %d channels, the layout (feature_dims) says %d", s,
                             fl->width[s], in->C[s], fl->scale_channels[s]);
        for (int i = 0; i < fl->num_timesteps; i++)
            if (!in->feat[i][s]) return sd_errorf("fusion: no features for timestep %d scale %d", fl->timesteps[i], s);
        if (!fbuf(&f->fused[s], (size_t)in->B * f->cfg.projection_dim * in->H[s] * in->W[s])) return SD_FAIL;
        f->H[s] = in->H[s];
        f->W[s] = in->W[s];
    }
    f->B = in->B;
    switch (f->cfg.kind) {
    case FUSER_GW: return gw_forward(&f->gw, fl, in, f->fused, training, keep);
    case FUSER_LW: return lw_forward(&f->lw, fl, in, f->fused, training, keep);
    case FUSER_MOE: return moe_forward(&f->moe, fl, in, f->fused, training, keep);
    case FUSER_CONCAT: return concat_forward(&f->concat, fl, in, f->fused);
    case FUSER_SINGLE: return single_forward(&f->single, fl, in, f->fused, training);
    }
    return sd_errorf("unknown fuser kind %d", (int)f->cfg.kind);
}

int fuser_stream_phis_init(Phi **phis, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    *phis = (Phi *)calloc((size_t)feature_layout_total_streams(fl), sizeof(Phi));
    if (!*phis) return sd_errorf("out of memory");
    for (int s = 0; s < fl->num_scales; s++)
        for (int l = 0; l < fl->num_streams[s]; l++) {
            int i = feature_layout_stream_index(fl, s, l);
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "bottleneck_layers.%d", i);
            if (phi_init(&(*phis)[i], ps, prefix, fl->channels[s][l], cfg->projection_dim, cfg->num_res_blocks,
                         cfg->num_norm_groups))
                return SD_FAIL;
        }
    return 0;
}

int fuser_calls_alloc(int n, FBuf **inputs, FBuf **outputs, PhiCache **caches) {
    *inputs = (FBuf *)calloc((size_t)n, sizeof(FBuf));
    *outputs = (FBuf *)calloc((size_t)n, sizeof(FBuf));
    *caches = (PhiCache *)calloc((size_t)n, sizeof(PhiCache));
    if (!*inputs || !*outputs || !*caches) return sd_errorf("out of memory");
    return 0;
}

void fuser_calls_free(int n, FBuf *inputs, FBuf *outputs, PhiCache *caches) {
    for (int i = 0; i < n; i++) {
        if (inputs) fbuf_free(&inputs[i]);
        if (outputs) fbuf_free(&outputs[i]);
        if (caches) phi_cache_free(&caches[i]);
    }
    free(inputs);
    free(outputs);
    free(caches);
}

float *fusion_grad_at(FusionGrad *g, const FeatureLayout *fl, int k, int s) {
    return g ? g->feat[fl->ts_input[k]][s] : NULL;
}

int fuser_backward(Fuser *f, const float *const *dfused, FusionGrad *dfeat) {
    const FeatureLayout *fl = &f->layout;
    switch (f->cfg.kind) {
    case FUSER_GW: return gw_backward(&f->gw, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_LW: return lw_backward(&f->lw, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_MOE: return moe_backward(&f->moe, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_CONCAT: return concat_backward(&f->concat, fl, f->B, f->H, f->W, dfused, dfeat);
    case FUSER_SINGLE: return single_backward(&f->single, fl, f->B, f->H, f->W, dfused, f->fused, dfeat);
    }
    return sd_errorf("fuser backward: unknown fuser kind %d", (int)f->cfg.kind);
}

void fuser_free(Fuser *f) {
    switch (f->cfg.kind) {
    case FUSER_GW: gw_free(&f->gw); break;
    case FUSER_LW: lw_free(&f->lw); break;
    case FUSER_MOE: moe_free(&f->moe); break;
    case FUSER_CONCAT: concat_free(&f->concat); break;
    case FUSER_SINGLE: single_free(&f->single); break;
    }
    for (int s = 0; s < FUSION_MAX_SCALES; s++) fbuf_free(&f->fused[s]);
}
