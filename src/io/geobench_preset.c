// GEO-Bench task presets (configs/tasks/<task>.json): what the original's datasets/*.py,
// configs/tasks/*.yaml and configs/*_exp.yaml say about a task, as one JSON object that
// `satdifuser reproduce` turns into extract / train / eval options. Keys (docs/geobench.md):
//   task, folder, type (cls|multilabel|seg), num_classes, bands, scale, size, prompt, metric,
//   ignore_value, train {batch_size, val_batch_size, epochs, warmup_epochs, lr, min_lr,
//   weight_decay, eval_every, patience, seed[, max_steps]}, head {projection_dim, ...} (optional);
//   class_names, original_size, source, pangaea, note are documentation (not read here).
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/geobench.h"
#include "io/json.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The folders searched for NAME.json, in order: CONFIGS/tasks (the caller's folder, when given), the
// binary's configs/tasks (and one level up, for build trees), ./configs/tasks.
static int preset_dirs(const char *configs, char dirs[4][4096]) {
    int n = 0;
    if (configs && *configs) snprintf(dirs[n++], 4096, "%.4000s/tasks", configs);
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len > 0 && len < 4000) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(dirs[n++], 4096, "%.4000s/configs/tasks", exe);
            snprintf(dirs[n++], 4096, "%.4000s/../configs/tasks", exe);
        }
    }
    snprintf(dirs[n++], 4096, "configs/tasks");
    return n;
}

int gb_preset_find(const char *name, const char *configs, char *path, size_t size) {
    size_t nl = strlen(name);
    if (strchr(name, '/') || (nl > 5 && !strcmp(name + nl - 5, ".json"))) {  // a file
        if (!is_file(name)) return sd_errorf("--task %s: no such preset file", name);
        snprintf(path, size, "%s", name);
        return 0;
    }
    char dirs[4][4096];
    int nd = preset_dirs(configs, dirs);
    for (int i = 0; i < nd; i++) {
        snprintf(path, size, "%s/%s.json", dirs[i], name);
        if (is_file(path)) return 0;
    }
    // not found: list the presets of the first folder that has any
    char names[2048] = "";
    size_t used = 0;
    for (int i = 0; i < nd && !used; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 6 || e->d_name[0] == '.' || strcmp(e->d_name + l - 5, ".json")) continue;
            if (used + l + 4 < sizeof(names))
                used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%.*s", used ? ", " : "", (int)(l - 5),
                                         e->d_name);
        }
        closedir(d);
    }
    // name the binary's folder (after CONFIGS/tasks when given; ./configs/tasks without /proc)
    int given = configs && *configs;
    const char *shown = dirs[given && nd > 1 ? 1 : 0];
    return sd_errorf("--task %s: no preset %s.json in %s (nor %s%sthe binary's configs/tasks, ./configs/tasks)%s%s; give "
                     "a preset file as --task FILE.json",
                     name, name, shown, given ? dirs[0] : "", given ? ", " : "", used ? "; presets: " : "", names);
}

static int need_string(const JsonValue *o, const char *key, const char *path, char **out) {
    const JsonValue *v = json_get(o, key);
    if (!v || v->type != JSON_STRING || !v->string[0])
        return sd_errorf("%s: '%s' is missing or not a non-empty string", path, key);
    if (!(*out = strdup(v->string))) return sd_errorf("out of memory");
    return 0;
}

static int need_int(const JsonValue *o, const char *key, const char *path, int lo, int hi, int *out) {
    const JsonValue *v = json_get(o, key);
    if (!v || v->type != JSON_NUMBER || json_as_int(v, out) || *out < lo || *out > hi)
        return sd_errorf("%s: '%s' is missing or not a whole number in %d..%d", path, key, lo, hi);
    return 0;
}

static int need_double(const JsonValue *o, const char *key, const char *path, double *out) {
    const JsonValue *v = json_get(o, key);
    if (!v || v->type != JSON_NUMBER || v->number < 0)
        return sd_errorf("%s: '%s' is missing or not a number >= 0", path, key);
    *out = v->number;
    return 0;
}

// The head options train takes as flags (cmd_train.c); a preset's "head" object may set them.
static const char *const k_head_keys[] = {"projection_dim", "num_norm_groups", "num_experts", "top_k",
                                          "warmup_steps",   "channels"};

int gb_preset_load(GbPreset *p, const char *path) {
    memset(p, 0, sizeof(*p));
    JsonValue j;
    if (json_parse_file(path, &j)) return -1;
    int rc = 0;
    if (j.type != JSON_OBJECT) rc = sd_errorf("%s: a preset is a JSON object", path);
    char *type = NULL;
    if (rc == 0) rc = need_string(&j, "task", path, &p->task);
    if (rc == 0) rc = need_string(&j, "folder", path, &p->folder);
    if (rc == 0) rc = need_string(&j, "type", path, &type);
    if (rc == 0) {
        if (!strcmp(type, "cls")) p->type = GB_TASK_CLS;
        else if (!strcmp(type, "multilabel")) p->type = GB_TASK_MULTILABEL;
        else if (!strcmp(type, "seg")) p->type = GB_TASK_SEG;
        else rc = sd_errorf("%s: 'type' is '%s', expected cls, multilabel or seg", path, type);
    }
    free(type);
    if (rc == 0) rc = need_int(&j, "num_classes", path, 1, GB_MAX_CLASSES, &p->num_classes);
    if (rc == 0) rc = need_string(&j, "bands", path, &p->bands);
    if (rc == 0) rc = need_string(&j, "scale", path, &p->scale);
    if (rc == 0) rc = need_int(&j, "size", path, 8, 8192, &p->size);
    if (rc == 0 && p->size % 8) rc = sd_errorf("%s: 'size' %d is not a multiple of 8", path, p->size);
    if (rc == 0) rc = need_string(&j, "prompt", path, &p->prompt);
    if (rc == 0) rc = need_string(&j, "metric", path, &p->metric);
    if (rc == 0) {
        const char *want = p->type == GB_TASK_CLS ? "accuracy" : p->type == GB_TASK_MULTILABEL ? "F1" : "mIoU";
        if (strcmp(p->metric, want) && strcmp(p->metric, "F1") && strcmp(p->metric, "precision") &&
            strcmp(p->metric, "recall") && strcmp(p->metric, "mF1") && strcmp(p->metric, "mAcc"))
            rc = sd_errorf("%s: 'metric' '%s' is not one eval writes for this type (e.g. %s)", path, p->metric, want);
    }
    if (rc == 0) rc = json_get_int(&j, "ignore_value", -100, &p->ignore_value) ? sd_error_context("%s", path) : 0;
    const JsonValue *t = rc == 0 ? json_get(&j, "train") : NULL;
    if (rc == 0 && (!t || t->type != JSON_OBJECT)) rc = sd_errorf("%s: 'train' is missing or not an object", path);
    PresetTrain *tr = &p->train;
    if (rc == 0) rc = need_int(t, "batch_size", path, 1, 1 << 20, &tr->batch_size);
    if (rc == 0) rc = need_int(t, "val_batch_size", path, 1, 1 << 20, &tr->val_batch_size);
    if (rc == 0) rc = need_int(t, "epochs", path, 1, 1 << 20, &tr->epochs);
    if (rc == 0) rc = need_int(t, "warmup_epochs", path, 0, 1 << 20, &tr->warmup_epochs);
    if (rc == 0) rc = need_double(t, "lr", path, &tr->lr);
    if (rc == 0) rc = need_double(t, "min_lr", path, &tr->min_lr);
    if (rc == 0) rc = need_double(t, "weight_decay", path, &tr->weight_decay);
    if (rc == 0) rc = need_int(t, "eval_every", path, 0, INT_MAX, &tr->eval_every);
    if (rc == 0) rc = need_int(t, "patience", path, 0, INT_MAX, &tr->patience);
    if (rc == 0) rc = need_int(t, "seed", path, 0, INT_MAX, &tr->seed);
    if (rc == 0 && json_get(t, "max_steps")) rc = need_int(t, "max_steps", path, 0, INT_MAX, &tr->max_steps);
    if (rc == 0 && (tr->lr <= 0 || tr->warmup_epochs >= tr->epochs))
        rc = sd_errorf("%s: train: 'lr' must be positive and 'warmup_epochs' below 'epochs'", path);
    const JsonValue *h = rc == 0 ? json_get(&j, "head") : NULL;
    if (h && h->type != JSON_OBJECT) rc = sd_errorf("%s: 'head' is not an object", path);
    for (int i = 0; rc == 0 && h && i < h->count; i++) {
        int known = 0, v;
        for (size_t k = 0; k < sizeof(k_head_keys) / sizeof(k_head_keys[0]); k++) known |= !strcmp(h->keys[i], k_head_keys[k]);
        if (!known)
            rc = sd_errorf("%s: head: unknown key '%s' (known: projection_dim, num_norm_groups, num_experts, top_k, "
                           "warmup_steps, channels)", path, h->keys[i]);
        else if (h->items[i].type != JSON_NUMBER || json_as_int(&h->items[i], &v) || v < 1)
            rc = sd_errorf("%s: head: '%s' is not a positive whole number", path, h->keys[i]);
        else if (p->num_head < GB_PRESET_MAX_HEAD) {
            snprintf(p->head_keys[p->num_head], sizeof(p->head_keys[0]), "%s", h->keys[i]);
            p->head_vals[p->num_head++] = v;
        }
    }
    if (rc == 0 && !(p->path = strdup(path))) rc = sd_errorf("out of memory");
    json_free(&j);
    if (rc) gb_preset_free(p);
    return rc;
}

void gb_preset_free(GbPreset *p) {
    free(p->task);
    free(p->folder);
    free(p->bands);
    free(p->scale);
    free(p->prompt);
    free(p->metric);
    free(p->path);
    memset(p, 0, sizeof(*p));
}
