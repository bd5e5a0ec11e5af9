// Importing a head trained by the original code (see head_import.h).
#include "train/head_import.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "heads/head.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/torch_file.h"

// OmegaConf pickles a DictConfig / ListConfig with its items in state["_content"] and each
// leaf as a node object whose state["_val"] is the value; plain dicts pass through.
static const PyValue *oc_plain(const PyValue *v) {
    for (int guard = 0; v && v->kind == PY_OBJECT && guard < 16; guard++) {
        const PyValue *state = v->state;
        if (!state || state->kind != PY_DICT) break;
        const PyValue *x = py_dict_get(state, "_val");
        if (!x) x = py_dict_get(state, "_content");
        if (!x) break;
        v = x;
    }
    return v;
}

static const PyValue *oc_get(const PyValue *cfg, const char *key) {
    const PyValue *v = py_dict_get(oc_plain(cfg), key);
    return v ? oc_plain(v) : NULL;
}

static int oc_int(const TorchFile *tf, const PyValue *cfg, const char *key, int required, int *out) {
    const PyValue *v = oc_get(cfg, key);
    if (!v || v->kind == PY_NONE) {
        if (required) return sd_errorf("%s: the checkpoint's config has no '%s'", tf->path, key);
        return 0;
    }
    if (v->kind != PY_INT || v->i < 0 || v->i > 1000000000)
        return sd_errorf("%s: config '%s' is not a non-negative integer", tf->path, key);
    *out = (int)v->i;
    return 0;
}

static int oc_string(const TorchFile *tf, const PyValue *cfg, const char *key, const char **out) {
    const PyValue *v = oc_get(cfg, key);
    if (!v || v->kind != PY_STR) return sd_errorf("%s: the checkpoint's config has no string '%s'", tf->path, key);
    *out = v->s;
    return 0;
}

// A config list of numbers as JSON text "[a, b, ...]" (ints or floats).
static int oc_list_json(const TorchFile *tf, const PyValue *cfg, const char *key, char *out, size_t size) {
    const PyValue *v = oc_get(cfg, key);
    if (!v) return 1;  // absent: the constructor's default
    if (v->kind != PY_LIST && v->kind != PY_TUPLE) { sd_errorf("%s: config '%s' is not a list", tf->path, key); return -1; }
    size_t n = (size_t)snprintf(out, size, "[");
    for (int i = 0; i < v->count && n < size; i++) {
        const PyValue *x = oc_plain(v->items[i]);
        if (x->kind == PY_INT) n += (size_t)snprintf(out + n, size - n, "%s%lld", i ? ", " : "", (long long)x->i);
        else if (x->kind == PY_FLOAT) n += (size_t)snprintf(out + n, size - n, "%s%.17g", i ? ", " : "", x->f);
        else { sd_errorf("%s: config '%s'[%d] is not a number", tf->path, key, i); return -1; }
    }
    if (n + 2 > size) { sd_errorf("%s: config '%s' is too long", tf->path, key); return -1; }
    snprintf(out + n, size - n, "]");
    return 0;
}

// The feature file to take the layout from: the file itself, or the first *.safetensors of a folder.
static int pick_feature_file(const char *path, char *out, size_t size) {
    struct stat sb;
    if (stat(path, &sb) != 0) return sd_errorf("--features %s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) { snprintf(out, size, "%s", path); return 0; }
    DIR *d = opendir(path);
    if (!d) return sd_errorf("--features %s: cannot list: %s", path, strerror(errno));
    struct dirent *e;
    char best[512] = "";
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 13 || strcmp(e->d_name + n - 12, ".safetensors") || strstr(e->d_name, "text_embedding") || e->d_name[0] == '.')
            continue;  // not the prompt embedding (.prompt_embedding.safetensors; text_embedding before)
        if (!best[0] || strcmp(e->d_name, best) < 0) snprintf(best, sizeof(best), "%s", e->d_name);
    }
    closedir(d);
    if (!best[0]) return sd_errorf("--features %s: no feature file (*.safetensors) in the folder", path);
    snprintf(out, size, "%s/%s", path, best);
    return 0;
}

// The fuser's own width: the output channels of its bottleneck blocks' last conv.
static int fuser_width(const SafeTensors *st) {
    for (int i = 0; i < st->count; i++) {
        const StEntry *e = &st->entries[i];
        size_t n = strlen(e->name);
        if (n > 12 && !strcmp(e->name + n - 12, "conv3.weight") && e->ndim == 4 &&
            (!strncmp(e->name, "bottleneck_layers.", 18) || !strncmp(e->name, "scale_moes.", 11)))
            return (int)e->shape[0];
    }
    return 0;
}

int head_import(const HeadImportOptions *o, char *summary, int summary_size) {
    const char *key = o->key ? o->key : "decoder_net";
    TorchFile tf;
    SafeTensors weights, feat;
    HeadModel model;
    JsonValue head_json;
    int have_tf = 0, have_w = 0, have_feat = 0, have_model = 0, have_json = 0, rc = SD_FAIL;
    char *text = NULL, *cfg_text = NULL;
    char feat_path[4096], path[4200];
    memset(&head_json, 0, sizeof(head_json));

    struct stat sb;
    snprintf(path, sizeof(path), "%s/head_config.json", o->out_dir);
    if (!o->force && stat(path, &sb) == 0)
        return sd_errorf("%s is already a run folder (head_config.json): choose another --out or pass --force", o->out_dir);
    if (torch_file_open(&tf, o->checkpoint)) return SD_FAIL;
    have_tf = 1;
    const PyValue *cfg = py_dict_get(tf.root, "config");
    if (!cfg) { sd_errorf("%s: no 'config' entry: not a checkpoint saved by SatDiFuser's run.py", o->checkpoint); goto done; }
    const char *task = NULL, *fuser = NULL;
    int projection_dim = 0, num_classes = 0, num_experts = 0, top_k = 0, channels = 0, out_size = 0, epoch = -1, step = -1;
    if (oc_string(&tf, cfg, "task", &task) || oc_string(&tf, cfg, "fuser", &fuser) ||
        oc_int(&tf, cfg, "projection_dim", 1, &projection_dim) || oc_int(&tf, cfg, "num_classes", 1, &num_classes) ||
        oc_int(&tf, cfg, "num_experts", 0, &num_experts) || oc_int(&tf, cfg, "top_k", 0, &top_k) ||
        oc_int(&tf, cfg, "channels", 0, &channels) || oc_int(&tf, cfg, "original_img_size", 0, &out_size))
        goto done;
    const PyValue *v;
    if ((v = py_dict_get(tf.root, "epoch")) && v->kind == PY_INT) epoch = (int)v->i;
    if ((v = py_dict_get(tf.root, "global_step")) && v->kind == PY_INT) step = (int)v->i;
    int seg = !strcmp(task, "segmentation");
    if (!seg && strcmp(task, "classification") && strcmp(task, "multi_label_classification")) {
        sd_errorf("%s: config task '%s' (classification, multi_label_classification or segmentation)", o->checkpoint, task);
        goto done;
    }
    char steps[256], pool[256], rescales[256];
    if (oc_list_json(&tf, cfg, "save_timesteps", steps, sizeof(steps))) {
        sd_errorf("%s: the checkpoint's config has no save_timesteps list", o->checkpoint);
        goto done;
    }
    int have_pool = oc_list_json(&tf, cfg, "pool_scales", pool, sizeof(pool));
    int have_rescales = oc_list_json(&tf, cfg, "rescales", rescales, sizeof(rescales));
    if (have_pool < 0 || have_rescales < 0) goto done;
    if (seg && out_size <= 0) { sd_errorf("%s: a segmentation config without original_img_size", o->checkpoint); goto done; }

    // the state_dict, named as our head's parameters are (the original names, no prefix)
    if (st_open_torch(&weights, o->checkpoint, key)) goto done;
    have_w = 1;
    // the layout of the features this head reads
    if (pick_feature_file(o->features, feat_path, sizeof(feat_path)) || st_open(&feat, feat_path)) goto done;
    have_feat = 1;
    const char *dims = st_metadata(&feat, "feature_dims"), *feat_steps = st_metadata(&feat, "save_timesteps");
    if (!dims || !feat_steps) { sd_errorf("%s: not a feature file of `satdifuser extract` (no feature_dims)", feat_path); goto done; }
    JsonValue a, b;
    if (json_parse(steps, strlen(steps), "config save_timesteps", &a)) goto done;
    if (json_parse(feat_steps, strlen(feat_steps), feat_path, &b)) { json_free(&a); goto done; }
    int same = a.count == b.count;
    for (int i = 0; same && i < a.count; i++) same = a.items[i].number == b.items[i].number;
    json_free(&a);
    json_free(&b);
    if (!same) {
        sd_errorf("%s: features saved at steps %s, the head was trained on steps %s: extract with --save-steps "
                  "matching the checkpoint",
                  feat_path, feat_steps, steps);
        goto done;
    }
    // the layers: the config's layer_idxs.up_blocks keys against the file's layer_suffixes
    const PyValue *layer_idxs = oc_get(cfg, "layer_idxs"), *up = layer_idxs ? oc_get(layer_idxs, "up_blocks") : NULL;
    const char *feat_layers = st_metadata(&feat, "layer_suffixes");
    if (up && up->kind == PY_DICT && feat_layers) {
        char want[256] = "";
        size_t wn = 0;
        int all_in = 1, count = 0;
        for (int k = 0; k < up->count / 2; k++) {
            const PyValue *name = up->items[2 * k];
            if (name->kind != PY_STR) continue;
            char quoted[128];
            snprintf(quoted, sizeof(quoted), "\"%s\"", name->s);
            all_in &= strstr(feat_layers, quoted) != NULL;
            count++;
            wn += (size_t)snprintf(want + wn, sizeof(want) - wn, "%s%s", wn ? "," : "", name->s);
        }
        int feat_count = 0;
        for (const char *p = feat_layers; *p; p++) feat_count += *p == '"';
        if (!all_in || feat_count / 2 != count) {
            sd_errorf("%s: features of layers %s, the head was trained on layers [%s]: extract with --layers %s", feat_path,
                      feat_layers, want, want);
            goto done;
        }
    }
    int fuser_dim = fuser_width(&weights);
    size_t cap = strlen(dims) + 2048;
    cfg_text = (char *)malloc(cap);
    if (!cfg_text) { sd_errorf("out of memory"); goto done; }
    int n = snprintf(cfg_text, cap,
                     "{\"task\": \"%s\", \"fuser\": \"%s\", \"feature_dims\": %s, \"save_timesteps\": %s, "
                     "\"projection_dim\": %d, \"num_classes\": %d, \"num_norm_groups\": %d",
                     task, fuser, dims, steps, projection_dim, num_classes, o->num_norm_groups ? o->num_norm_groups : 32);
    if (fuser_dim > 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"fuser_projection_dim\": %d", fuser_dim);
    if (!strcmp(fuser, "moe")) {
        if (num_experts > 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"num_experts\": %d", num_experts);
        if (top_k > 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"top_k\": %d", top_k);
    }
    if (seg) {
        n += snprintf(cfg_text + n, cap - (size_t)n, ", \"output_shape\": [%d, %d]", out_size, out_size);
        if (channels > 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"channels\": %d", channels);
        if (have_pool == 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"pool_scales\": %s", pool);
        if (have_rescales == 0) n += snprintf(cfg_text + n, cap - (size_t)n, ", \"rescales\": %s", rescales);
    }
    snprintf(cfg_text + n, cap - (size_t)n, "}");
    if (json_parse(cfg_text, strlen(cfg_text), "imported head config", &head_json)) goto done;
    have_json = 1;
    HeadConfig hc;
    if (head_config_from_json(&hc, &head_json)) { sd_error_context("%s: config", o->checkpoint); goto done; }
    if (head_model_init(&model, &hc)) {
        sd_error_context("%s: the head its config describes cannot be built (run.py never sets num_norm_groups: "
                         "the constructors' 32; --num-norm-groups N for a head made otherwise)", o->checkpoint);
        goto done;
    }
    have_model = 1;
    if (head_model_load_st(&model, &weights)) {
        sd_error_context("%s: entry '%s' does not fit a %s %s head over %s's features (num_norm_groups %d: run.py "
                         "never sets it; --num-norm-groups)",
                         o->checkpoint, key, fuser, task, feat_path, o->num_norm_groups ? o->num_norm_groups : 32);
        goto done;
    }
    // everything checked: write the folder
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) { sd_errorf("%s: cannot create: %s", o->out_dir, strerror(errno)); goto done; }
    if (!(text = head_config_to_json(&model.cfg))) { sd_errorf("out of memory"); goto done; }
    snprintf(path, sizeof(path), "%s/best.safetensors", o->out_dir);
    if (head_model_save(&model, path)) goto done;
    snprintf(path, sizeof(path), "%s/features_meta.json", o->out_dir);
    char *meta = st_metadata_json(&feat);
    if (!meta) { sd_errorf("out of memory"); goto done; }
    int meta_rc = write_text_atomic(path, meta);
    free(meta);
    if (meta_rc) goto done;
    snprintf(path, sizeof(path), "%s/head_config.json", o->out_dir);  // last: its presence marks a complete run folder
    if (write_text_atomic(path, text)) goto done;
    if (summary)
        snprintf(summary, (size_t)summary_size, "%s %s head, %d classes, projection %d (fuser %d), epoch %d, step %d",
                 fuser, task, num_classes, projection_dim, model.cfg.fuser.projection_dim, epoch, step);
    rc = 0;
done:
    free(text);
    free(cfg_text);
    if (have_json) json_free(&head_json);
    if (have_model) head_model_free(&model);
    if (have_feat) st_close(&feat);
    if (have_w) st_close(&weights);
    if (have_tf) torch_file_close(&tf);
    return rc;
}
