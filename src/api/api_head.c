// The library face (satdifuser.h): trained heads, prediction, and feature files. See api.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "io/feature_cache.h"
#include "train/checkpoint.h"

// ---- feature files -------------------------------------------------------------------------------

// The metadata `satdifuser extract` records (cmd_extract.c: expected_meta, file_meta), so that
// `train` and `predict --features` read the file as one of extract's. The image is a buffer: source
// "(buffer)", bands 1,2,3 of a 3-band image, scale clip.
static int features_meta(const SdfFeatures *f, FeatureMeta *meta) {
    const FeaturePyramid *p = &f->p;
    char steps[256] = "[", ts[256] = "[", layers[512] = "[", dims[4096] = "{", scales[512] = "[", paths[16384] = "[";
    for (int k = 0; k < f->opts.n_save; k++) {
        size_t n = strlen(steps), t = strlen(ts);
        snprintf(steps + n, sizeof(steps) - n, "%s%d", k ? ", " : "", f->opts.save_steps[k]);
        snprintf(ts + t, sizeof(ts) - t, "%s%d", k ? ", " : "", p->save_t[k]);
    }
    strcat(steps, "]"), strcat(ts, "]");
    char suffixes[sizeof(f->layers)];
    snprintf(suffixes, sizeof(suffixes), "%s", f->layers);
    char *save = NULL;
    int k = 0;
    for (char *tok = strtok_r(suffixes, ",", &save); tok; tok = strtok_r(NULL, ",", &save), k++) {
        size_t n = strlen(layers);
        snprintf(layers + n, sizeof(layers) - n, "%s\"%s\"", k ? ", " : "", tok);
    }
    strcat(layers, "]");
    for (int s = 0; s < p->n_scales; s++) {
        size_t n = strlen(dims), q = strlen(scales);
        snprintf(dims + n, sizeof(dims) - n, "%s\"%d\": [", s ? ", " : "", p->scale_w[s]);
        snprintf(scales + q, sizeof(scales) - q, "%s[%d, %d]", s ? ", " : "", p->scale_h[s], p->scale_w[s]);
        int first = 1;
        for (int l = 0; l < p->n_layers; l++) {
            if (p->layer_scale[l] != s) continue;
            n = strlen(dims);
            snprintf(dims + n, sizeof(dims) - n, "%s%d", first ? "" : ", ", p->layer_channels[l]);
            first = 0;
        }
        strcat(dims, "]");
    }
    strcat(dims, "}"), strcat(scales, "]");
    for (int s = 0; s < p->n_scales; s++)
        for (int l = 0; l < p->n_layers; l++) {
            if (p->layer_scale[l] != s) continue;
            size_t n = strlen(paths);
            snprintf(paths + n, sizeof(paths) - n, "%s\"%s\"", n > 1 ? ", " : "", p->layer_path[l]);
        }
    strcat(paths, "]");
    const SdfExtractOptions *o = &f->opts;
    int rc = feature_meta_setf(meta, "model_fingerprint", "%016llx", (unsigned long long)f->fingerprint) ||
             feature_meta_set(meta, "prompt", o->prompt) ||
             feature_meta_setf(meta, "num_inference_steps", "%d", o->steps) ||
             feature_meta_set(meta, "save_timesteps", steps) || feature_meta_set(meta, "save_t", ts) ||
             feature_meta_set(meta, "layer_suffixes", layers) ||
             (o->latent_sample ? feature_meta_setf(meta, "latent", "sample:%llu", (unsigned long long)o->seed)
                               : feature_meta_set(meta, "latent", "mean")) ||
             feature_meta_set(meta, "dtype", "f32") ||
             (f->precision != NN_F32 && feature_meta_set(meta, "compute_precision", nn_precision_name(f->precision))) ||
             feature_meta_set(meta, "convention", "satdifuser") ||
             feature_meta_set(meta, "output_handling", o->prediction_by_config ? "config" : "epsilon") ||
             feature_meta_setf(meta, "preprocessing",
                               "{\"bands\": \"1,2,3\", \"scale\": \"clip\", \"size\": %d, \"resize\": \"torchvision "
                               "Resize(size, bilinear, antialias=True)\", \"normalize\": \"(x - 0.5) / 0.5\"}",
                               o->size) ||
             feature_meta_set(meta, "feature_dims", dims) || feature_meta_set(meta, "scales", scales) ||
             feature_meta_set(meta, "layers", paths) || feature_meta_set(meta, "source", "(buffer)") ||
             feature_meta_setf(meta, "source_shape", "[3, %d, %d]", f->src_h, f->src_w) ||
             feature_meta_set(meta, "bands_used", "[1, 2, 3]") || feature_meta_set(meta, "model", f->model_path);
    return rc ? -1 : 0;
}

SdfStatus sdf_features_save(SdfContext *ctx, const SdfFeatures *f, const char *path) {
    if (!ctx || !f || !path) return api_arg("sdf_features_save: %s is NULL", !ctx ? "ctx" : !f ? "f" : "path");
    ApiSaved saved;
    api_enter(ctx, &saved);
    FeatureMeta meta;
    feature_meta_init(&meta);
    int rc = features_meta(f, &meta) ||
             feature_cache_write(path, f->p.feats, f->p.n_steps, f->p.n_scales, &f->p.latent, 0, &meta);
    feature_meta_free(&meta);
    api_leave(&saved);
    return rc ? SDF_ERR_FAILED : SDF_OK;
}

// ---- heads ---------------------------------------------------------------------------------------

SdfStatus sdf_head_load(SdfContext *ctx, const char *run_dir, const char *weights, SdfHead **out) {
    if (!out) return api_arg("sdf_head_load: %s is NULL", "out");
    *out = NULL;
    if (!ctx || !run_dir) return api_arg("sdf_head_load: %s is NULL", !ctx ? "ctx" : "run_dir");
    SdfHead *h = (SdfHead *)calloc(1, sizeof(*h));
    if (!h) return api_arg("sdf_head_load: %s", "out of memory");
    ApiSaved saved;
    api_enter(ctx, &saved);
    SdfStatus st = SDF_ERR_FAILED;
    char path[4200];
    JsonValue cfg;
    memset(&cfg, 0, sizeof(cfg));
    h->run = api_strdup(run_dir);
    snprintf(path, sizeof(path), "%s/best.safetensors", run_dir);
    h->weights = api_strdup(weights ? weights : path);
    if (!h->run || !h->weights) { sd_errorf("sdf_head_load: out of memory"); goto done; }
    snprintf(path, sizeof(path), "%s/head_config.json", run_dir);
    if (json_parse_file(path, &cfg)) goto done;
    if (head_config_from_json(&h->hc, &cfg)) { sd_error_context("%s", path); goto done; }
    // RUN/classes.json ({"class_names": [...]}) when train wrote one; its count must be the head's
    snprintf(path, sizeof(path), "%s/classes.json", run_dir);
    if (access(path, F_OK) == 0) {
        if (json_parse_file(path, &h->names)) goto done;
        const JsonValue *list = json_get(&h->names, "class_names");
        int ok = list && list->type == JSON_ARRAY && list->count == h->hc.num_classes;
        for (int c = 0; ok && c < list->count; c++) ok = list->items[c].type == JSON_STRING;
        if (!ok) {
            sd_errorf("%s: expected \"class_names\": a list of %d strings (the head's classes)", path, h->hc.num_classes);
            goto done;
        }
    }
    snprintf(path, sizeof(path), "%s/features_meta.json", run_dir);
    if (access(path, F_OK) == 0 && json_parse_file(path, &h->meta)) goto done;
    // built once here for the training size, so that missing or mismatched weights fail at load
    h->model_h = h->hc.output_h, h->model_w = h->hc.output_w;
    if (head_model_init(&h->m, &h->hc)) goto done;
    h->ready = 1;
    if (head_model_load(&h->m, h->weights)) goto done;
    // MoE: the counters train's final test started from, as `satdifuser predict` reads them
    int found = 0;
    if (moe_counter_read(run_dir, &h->m, &found)) goto done;
    if (h->hc.fuser.kind == FUSER_MOE) {
        h->n_moe = h->m.fuser.moe.num_scales;
        for (int s = 0; s < h->n_moe; s++) h->moe_steps[s] = h->m.fuser.moe.scales[s].global_step;
    }
    st = SDF_OK;
done:
    json_free(&cfg);
    api_leave(&saved);
    if (st != SDF_OK) {
        sdf_head_free(h);
        return st;
    }
    *out = h;
    return SDF_OK;
}

void sdf_head_free(SdfHead *h) {
    if (!h) return;
    if (h->ready) head_model_free(&h->m);
    json_free(&h->names);
    json_free(&h->meta);
    free(h->run);
    free(h->weights);
    free(h->prompt);
    free(h->layers);
    free(h);
}

int sdf_head_task(const SdfHead *h) {
    if (!h) return -1;
    return h->hc.task == TASK_SEGMENTATION ? SDF_TASK_SEGMENTATION
           : h->hc.task == TASK_MULTILABEL ? SDF_TASK_MULTILABEL
                                           : SDF_TASK_CLASSIFICATION;
}

int sdf_head_num_classes(const SdfHead *h) { return h ? h->hc.num_classes : 0; }

const char *sdf_head_class_name(const SdfHead *h, int c) {
    if (!h) return "";
    const JsonValue *list = h->names.type == JSON_OBJECT ? json_get(&h->names, "class_names") : NULL;
    if (list && c >= 0 && c < list->count) return list->items[c].string;
    snprintf(((SdfHead *)h)->number, sizeof(h->number), "%d", c);
    return h->number;
}

// A string value of features_meta.json, or NULL.
static const char *meta_string(const JsonValue *meta, const char *key) {
    const JsonValue *v = meta->type == JSON_OBJECT ? json_get(meta, key) : NULL;
    return v && v->type == JSON_STRING ? v->string : NULL;
}

SdfStatus sdf_head_extract_options(const SdfHead *hc, SdfExtractOptions *o) {
    if (!hc || !o) return api_arg("sdf_head_extract_options: %s is NULL", !hc ? "head" : "o");
    SdfHead *h = (SdfHead *)hc;  // the strings are kept in the head
    sdf_extract_options_default(o);
    if (h->meta.type != JSON_OBJECT) return SDF_OK;  // no features_meta.json: the defaults
    const char *s;
    JsonValue v;
    int rc = 0;
    if ((s = meta_string(&h->meta, "prompt"))) {
        free(h->prompt);
        if (!(h->prompt = api_strdup(s))) return api_arg("sdf_head_extract_options: %s", "out of memory");
        o->prompt = h->prompt;
    }
    if ((s = meta_string(&h->meta, "num_inference_steps"))) o->steps = atoi(s);
    if ((s = meta_string(&h->meta, "save_timesteps")) && !(rc = json_parse(s, strlen(s), "save_timesteps", &v))) {
        if (v.type != JSON_ARRAY || v.count < 1 || v.count > SDF_MAX_SAVE) rc = -1;
        for (int k = 0; !rc && k < v.count; k++) rc = json_as_int(&v.items[k], &o->save_steps[k]);
        if (!rc) o->n_save = v.count;
        json_free(&v);
    }
    if (!rc && (s = meta_string(&h->meta, "layer_suffixes")) && !(rc = json_parse(s, strlen(s), "layer_suffixes", &v))) {
        char buf[256] = "";
        if (v.type != JSON_ARRAY || v.count < 1) rc = -1;
        for (int k = 0; !rc && k < v.count; k++) {
            if (v.items[k].type != JSON_STRING || strlen(buf) + strlen(v.items[k].string) + 2 > sizeof(buf)) rc = -1;
            else snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", k ? "," : "", v.items[k].string);
        }
        json_free(&v);
        free(h->layers);
        if (!rc && !(h->layers = api_strdup(buf))) return api_arg("sdf_head_extract_options: %s", "out of memory");
        if (!rc) o->layers = h->layers;
    }
    if (!rc && (s = meta_string(&h->meta, "latent")) && !strncmp(s, "sample:", 7)) {
        o->latent_sample = 1;
        o->seed = strtoull(s + 7, NULL, 10);
    }
    if (!rc && (s = meta_string(&h->meta, "output_handling"))) o->prediction_by_config = !strcmp(s, "config");
    if (!rc && (s = meta_string(&h->meta, "preprocessing")) && !(rc = json_parse(s, strlen(s), "preprocessing", &v))) {
        rc = json_get_int(&v, "size", o->size, &o->size);
        json_free(&v);
    }
    if (rc) {
        sd_errorf("%s/features_meta.json: an extraction setting is not what `satdifuser train` writes", h->run);
        return SDF_ERR_FAILED;
    }
    return SDF_OK;
}

// ---- prediction ----------------------------------------------------------------------------------

SdfStatus sdf_predict(SdfContext *ctx, SdfHead *h, const SdfFeatures *f, SdfPrediction *out) {
    if (!out) return api_arg("sdf_predict: %s is NULL", "out");
    memset(out, 0, sizeof(*out));
    if (!ctx || !h || !f) return api_arg("sdf_predict: %s is NULL", !ctx ? "ctx" : !h ? "head" : "f");
    const FeatureLayout *lay = &h->hc.layout;
    if (f->p.n_steps != lay->num_timesteps || f->p.n_scales != lay->num_scales)
        return api_arg("sdf_predict: the features do not have the head's layout (%s): extract them with "
                       "sdf_head_extract_options", "save steps x scales");
    for (int s = 0; s < lay->num_scales; s++)
        if (f->p.scale_c[s] != lay->scale_channels[s] || f->p.scale_w[s] != lay->width[s])
            return api_arg("sdf_predict: the features do not have the head's layout (%s): extract them with "
                           "sdf_head_extract_options", "channels or width of a scale");
    ApiSaved saved;
    api_enter(ctx, &saved);
    SdfStatus st = SDF_ERR_FAILED;
    int seg = h->hc.task == TASK_SEGMENTATION;
    // a segmentation map at the image's own size (as `satdifuser predict`): the head is built for it
    int H = seg ? f->src_h : 1, W = seg ? f->src_w : 1;
    if (seg && (H != h->model_h || W != h->model_w)) {
        if (h->ready) head_model_free(&h->m);
        h->ready = 0;
        HeadConfig hc = h->hc;
        hc.output_h = H, hc.output_w = W;
        if (head_model_init(&h->m, &hc)) goto done;
        h->ready = 1;
        h->model_h = H, h->model_w = W;
        if (head_model_load(&h->m, h->weights)) { h->model_h = h->model_w = 0; goto done; }
    }
    // MoE: every prediction starts from the counters of train's final test (RUN/moe_counter.json), as
    // each `satdifuser predict` does: the gates do not drift with the number of images predicted
    for (int s = 0; s < h->n_moe; s++) h->m.fuser.moe.scales[s].global_step = h->moe_steps[s];
    FusionInput in;
    memset(&in, 0, sizeof(in));
    in.B = 1;
    for (int i = 0; i < lay->num_timesteps; i++)
        for (int s = 0; s < lay->num_scales; s++) in.feat[i][s] = f->p.feats[i * lay->num_scales + s].data;
    for (int s = 0; s < lay->num_scales; s++) in.H[s] = f->p.scale_h[s], in.W[s] = f->p.scale_w[s];
    head_model_set_mode(&h->m, 0, 0);
    if (head_model_forward(&h->m, &in)) goto done;
    const float *logits = head_model_logits(&h->m);
    int C = h->hc.num_classes;
    int64_t HW = (int64_t)H * W;
    out->task = sdf_head_task(h);
    out->num_classes = C, out->height = H, out->width = W;
    out->probs = (float *)malloc((size_t)C * HW * sizeof(float));
    out->classes = (int32_t *)malloc((size_t)HW * sizeof(int32_t));
    if (!out->probs || !out->classes) { sd_errorf("sdf_predict: out of memory"); goto done; }
    for (int64_t p = 0; p < HW; p++) {
        // the largest logit, ties to the lower class (satdifuser predict); softmax in double
        int best = 0;
        for (int c = 1; c < C; c++)
            if (logits[c * HW + p] > logits[best * HW + p]) best = c;
        out->classes[p] = best;
        double mx = logits[best * HW + p], sum = 0.0;
        for (int c = 0; c < C; c++) sum += exp(logits[c * HW + p] - mx);
        for (int c = 0; c < C; c++)
            out->probs[c * HW + p] = h->hc.task == TASK_MULTILABEL ? (float)(1.0 / (1.0 + exp(-logits[c * HW + p])))
                                                                  : (float)(exp(logits[c * HW + p] - mx) / sum);
    }
    st = SDF_OK;
done:
    api_leave(&saved);
    if (st != SDF_OK) sdf_prediction_free(out);
    return st;
}

void sdf_prediction_free(SdfPrediction *p) {
    if (!p) return;
    free(p->probs);
    free(p->classes);
    memset(p, 0, sizeof(*p));
}
