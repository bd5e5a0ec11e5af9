// An extraction job around the model (extract_job.h): inputs and their names, the settings every
// feature file records, resume. Moved out of src/cli/cmd_extract.c (issue 17): the command parses,
// prints and calls these.
#include "models/extract_job.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"
#include "io/geobench.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/pipeline.h"

// ---- inputs ------------------------------------------------------------------------------------

static int list_add(ExtractInputs *l, const char *path, const char *name) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        ExtractItem *it = (ExtractItem *)realloc(l->items, (size_t)cap * sizeof(ExtractItem));
        if (!it) return sd_errorf("out of memory");
        l->items = it, l->cap = cap;
    }
    l->items[l->n].path = strdup(path);
    l->items[l->n].name = strdup(name);
    if (!l->items[l->n].path || !l->items[l->n].name) {
        free(l->items[l->n].path), free(l->items[l->n].name);
        return sd_errorf("out of memory");
    }
    l->n++;
    return 0;
}

void extract_inputs_free(ExtractInputs *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i].path), free(l->items[i].name);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static const char *const k_image_ext[] = {".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg"};

int extract_is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t k = 0; k < sizeof(k_image_ext) / sizeof(k_image_ext[0]); k++)
        if (!strcasecmp(dot, k_image_ext[k])) return 1;
    return 0;
}

int extract_output_name(const char *rel, char *out, size_t size) {
    const char *base = strrchr(rel, '/');
    if (rel[0] == '/' || !strncmp(rel, "../", 3) || strstr(rel, "/../")) rel = base ? base + 1 : rel;
    while (!strncmp(rel, "./", 2)) rel += 2;
    snprintf(out, size, "%s", rel);
    char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash) && dot != out) *dot = 0;
    return out[0] ? 0 : sd_errorf("'%s': no file name", rel);
}

int extract_target_path(const char *out_dir, const char *name, char *path, size_t size) {
    int n = snprintf(path, size, "%s/%s.safetensors", out_dir, name);
    return n < 0 || (size_t)n >= size ? sd_errorf("%s/%s.safetensors: path too long", out_dir, name) : 0;
}

// An image file of the input folder becomes an item named by its relative path without extension.
static int on_input_file(void *ctx, const char *rel, const char *full, const char *name) {
    char item[4096];
    if (!extract_is_image_name(name)) return 0;
    return extract_output_name(rel, item, sizeof(item)) || list_add((ExtractInputs *)ctx, full, item);
}

// A line of a list file names an image when the file exists (its content decides later, whatever its
// name) or the path has an image extension (a missing image then fails when it is read, as a
// folder's unreadable image does). Anything else - a Markdown file's "```", a sentence - means the
// text file is not a list of images: said at its first such line, before any naming.
static int list_line_is_image(const char *full, int *is_dir) {
    struct stat sb;
    *is_dir = 0;
    if (stat(full, &sb) == 0) {
        *is_dir = S_ISDIR(sb.st_mode);
        return !*is_dir;
    }
    const char *slash = strrchr(full, '/');
    return extract_is_image_name(slash ? slash + 1 : full);
}

static int read_list_file(ExtractInputs *l, const char *list) {
    FILE *f = fopen(list, "r");
    if (!f) return sd_errorf("%s: cannot open: %s", list, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", list);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    char line[4096];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        char full[8192], name[4096];
        if (p[0] == '/') snprintf(full, sizeof(full), "%s", p);
        else snprintf(full, sizeof(full), "%s/%s", dir, p);
        int is_dir;
        if (!list_line_is_image(full, &is_dir))
            rc = sd_errorf("%s:%d: '%.200s' is not an image path satdifuser can read (%s; images are .png .tif .tiff "
                           ".npy .jpg .jpeg); --input %s was read as a list of images, one per line",
                           list, lineno, p, is_dir ? "a folder" : "no such file", list);
        else if (extract_output_name(p, name, sizeof(name))) rc = sd_error_context("%s:%d", list, lineno);
        else rc = list_add(l, full, name);
    }
    fclose(f);
    return rc;
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const ExtractItem *)a)->name, ((const ExtractItem *)b)->name);
}

int extract_inputs_collect(const char *input, const char *partition, ExtractInputs *l) {
    struct stat sb;
    if (stat(input, &sb) != 0) return sd_errorf("--input %s: %s", input, strerror(errno));
    int rc;
    if (S_ISDIR(sb.st_mode) && (partition || gb_is_task_dir(input, NULL))) {  // GEO-Bench (io/geobench.h)
        GbTask t;
        if (gb_partition_open(&t, input, partition)) return -1;
        char path[4096];
        int e = 0;
        for (int i = 0; i < t.num_samples && !e; i++) {
            snprintf(path, sizeof(path), "%s/%s.hdf5", input, t.names[i]);
            e = list_add(l, path, t.names[i]);
        }
        gb_task_free(&t);
        if (e) return -1;
        qsort(l->items, (size_t)l->n, sizeof(ExtractItem), cmp_item);
        return 0;
    }
    if (partition) return sd_errorf("--partition %s: --input %s is not a GEO-Bench task folder", partition, input);
    char what[96];
    int kind = S_ISDIR(sb.st_mode) ? 0 : image_file_kind(input, what, sizeof(what));  // by content, not by name
    if (kind < 0) return -1;
    if (S_ISDIR(sb.st_mode)) rc = walk_files(input, on_input_file, l);
    else if (kind == IMAGE_FILE_IMAGE) {
        char name[4096];
        const char *base = strrchr(input, '/');
        rc = extract_output_name(base ? base + 1 : input, name, sizeof(name)) || list_add(l, input, name);
    } else if (kind == IMAGE_FILE_TEXT) rc = read_list_file(l, input);
    else return sd_errorf("--input %s: %s, neither an image satdifuser reads (PNG, TIFF/GeoTIFF, NPY) nor a text "
                          "list of images", input, what);
    if (rc) return -1;
    for (int i = 0; i < l->n; i++)  // the feature folder's own file
        if (!strcmp(l->items[i].name, PROMPT_EMBEDDING_NAME))
            return sd_errorf("%s: the name '%s' is the feature folder's prompt embedding: rename the image",
                             l->items[i].path, PROMPT_EMBEDDING_NAME);
    if (l->n == 0) return sd_errorf("--input %s: no images found (.png .tif .tiff .npy)", input);
    qsort(l->items, (size_t)l->n, sizeof(ExtractItem), cmp_item);
    for (int i = 1; i < l->n; i++)
        if (!strcmp(l->items[i].name, l->items[i - 1].name))
            return sd_errorf("%s and %s would both be written as '%s.safetensors'; rename one", l->items[i - 1].path,
                             l->items[i].path, l->items[i].name);
    return 0;
}

// ---- the job's settings: what every feature file records ---------------------------------------

int extract_job_meta(const ExtractJob *job, FeatureMeta *meta) {
    const ExtractOptions *o = job->o;
    char steps[256] = "[", ts[256] = "[", layers[512] = "[";
    for (int k = 0; k < o->walk.n_save; k++) {
        size_t n = strlen(steps), t = strlen(ts);
        snprintf(steps + n, sizeof(steps) - n, "%s%d", k ? ", " : "", o->walk.save_index[k]);
        snprintf(ts + t, sizeof(ts) - t, "%s%d", k ? ", " : "", job->walk->save_t[k]);
    }
    strcat(steps, "]"), strcat(ts, "]");
    for (int k = 0; k < o->n_suffixes; k++) {
        size_t n = strlen(layers);
        snprintf(layers + n, sizeof(layers) - n, "%s\"%s\"", k ? ", " : "", o->suffixes[k]);
    }
    strcat(layers, "]");
    int rc = feature_meta_setf(meta, "model_fingerprint", "%016llx",
                               (unsigned long long)diffusion_model_fingerprint(job->model, job->unet)) ||
             feature_meta_set(meta, "prompt", o->prompt) ||
             feature_meta_setf(meta, "num_inference_steps", "%d", o->walk.num_inference_steps) ||
             feature_meta_set(meta, "save_timesteps", steps) || feature_meta_set(meta, "save_t", ts) ||
             feature_meta_set(meta, "layer_suffixes", layers) ||
             (o->latent_sample ? feature_meta_setf(meta, "latent", "sample:%llu", (unsigned long long)o->seed)
                               : feature_meta_set(meta, "latent", "mean")) ||
             feature_meta_set(meta, "dtype", job->f16 ? "f16" : "f32") ||
             (job->precision != NN_F32 &&
              feature_meta_set(meta, "compute_precision", nn_precision_name(job->precision))) ||
             feature_meta_set(meta, "convention", "satdifuser") ||
             feature_meta_set(meta, "output_handling", o->walk.output_handling == DDIM_OUTPUT_BY_CONFIG ? "config" : "epsilon") ||
             feature_meta_set(meta, "preprocessing", job->preprocessing);
    return rc ? -1 : 0;
}

int extract_file_meta(const FeaturePyramid *p, const ExtractSource *src, const char *tool_version, FeatureMeta *meta) {
    char dims[4096] = "{", scales[512] = "[", layers[16384] = "[";
    for (int s = 0; s < p->n_scales; s++) {
        size_t n = strlen(dims), q = strlen(scales);
        snprintf(dims + n, sizeof(dims) - n, "%s\"%d\": [", s ? ", " : "", p->scale_w[s]);
        snprintf(scales + q, sizeof(scales) - q, "%s[%d, %d]", s ? ", " : "", p->scale_h[s], p->scale_w[s]);
        int first = 1;
        for (int k = 0; k < p->n_layers; k++) {
            if (p->layer_scale[k] != s) continue;
            n = strlen(dims);
            snprintf(dims + n, sizeof(dims) - n, "%s%d", first ? "" : ", ", p->layer_channels[k]);
            first = 0;
        }
        strcat(dims, "]");
    }
    strcat(dims, "}"), strcat(scales, "]");
    for (int s = 0; s < p->n_scales; s++)
        for (int k = 0; k < p->n_layers; k++) {
            if (p->layer_scale[k] != s) continue;
            size_t n = strlen(layers);
            snprintf(layers + n, sizeof(layers) - n, "%s\"%s\"", n > 1 ? ", " : "", p->layer_path[k]);
        }
    strcat(layers, "]");
    int rc = feature_meta_set(meta, "feature_dims", dims) || feature_meta_set(meta, "scales", scales) ||
             feature_meta_set(meta, "layers", layers) || feature_meta_set(meta, "source", src->path) ||
             feature_meta_setf(meta, "source_shape", "[%d, %d, %d]", src->channels, src->height, src->width) ||
             feature_meta_setf(meta, "bands_used", "[%d, %d, %d]", src->bands[0], src->bands[1], src->bands[2]) ||
             feature_meta_set(meta, "scaling", src->scaling) || feature_meta_set(meta, "tool_version", tool_version);
    return rc ? -1 : 0;
}

int extract_write_features(const char *target, const FeaturePyramid *p, const ExtractJob *job,
                           const FeatureMeta *expect, const ExtractSource *src) {
    FeatureMeta meta;
    feature_meta_init(&meta);
    int rc = -1;
    for (int i = 0; i < expect->count; i++)
        if (feature_meta_set(&meta, expect->keys[i], expect->values[i])) goto done;
    if (extract_file_meta(p, src, job->tool_version, &meta) || feature_meta_set(&meta, "model", job->model)) goto done;
    rc = feature_cache_write(target, p->feats, p->n_steps, p->n_scales, &p->latent, job->f16, &meta);
done:
    feature_meta_free(&meta);
    return rc;
}

int extract_keep_prompt_embedding(DiffusionModel *m, const ExtractJob *job, const char *out_dir) {
    const char *prompt = job->o->prompt;
    const float *emb;
    if (diffusion_model_prompt(m, prompt, &emb)) return -1;
    char path[8192], fp[32];
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)diffusion_model_fingerprint(job->model, job->unet));
    SafeTensors st;
    struct stat sb;
    for (int old = 1; old >= 0; old--) {  // already there for this prompt and model (old name or new): keep it
        snprintf(path, sizeof(path), "%s/%s.safetensors", out_dir, old ? "text_embedding" : PROMPT_EMBEDDING_NAME);
        if (stat(path, &sb) != 0 || st_open(&st, path) != 0) continue;
        const char *p = st_metadata(&st, "prompt"), *f = st_metadata(&st, "model_fingerprint");
        int same = p && f && !strcmp(p, prompt) && !strcmp(f, fp) && st_find(&st, "text_embedding");
        st_close(&st);
        if (same) return 0;
    }
    StWriteEntry e = {.name = "text_embedding", .dtype = DT_F32, .ndim = 3, .shape = {1, m->L, m->D}, .data = emb};
    const char *keys[3] = {"prompt", "model_fingerprint", "model"};
    const char *vals[3] = {prompt, fp, job->model};
    return st_write(path, &e, 1, keys, vals, 3);
}

// ---- resume --------------------------------------------------------------------------------------

// The folder of target and its file name: dir receives the folder ("." for a bare name); returns the
// file name's start in target.
static const char *split_target(const char *target, char *dir, size_t size) {
    snprintf(dir, size, "%s", target);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, size, ".");
        return target;
    }
    *slash = 0;
    return target + (slash - dir) + 1;
}

// The first "<target>.tmp.<pid>" beside target (feature_cache_write writes there, then renames) into
// found; *alive = its writer is still running.
static int find_temp(const char *target, char *found, size_t size, int *alive) {
    char dir[8192];
    const char *base = split_target(target, dir, sizeof(dir));
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int hit = 0;
    while (!hit && (e = readdir(d))) {
        if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".tmp.", 5) != 0) continue;
        long pid = strtol(e->d_name + blen + 5, NULL, 10);
        *alive = pid > 0 && kill((pid_t)pid, 0) == 0;
        snprintf(found, size, "%s/%s", dir, e->d_name);
        hit = 1;
    }
    closedir(d);
    return hit;
}

ExtractFileState extract_file_state(const char *target, const FeatureMeta *expect, char *temp, size_t size,
                                    int *writer_alive) {
    struct stat sb;
    if (stat(target, &sb) == 0)
        return feature_cache_validate(target, expect) == 0 ? EXTRACT_FILE_DONE : EXTRACT_FILE_OTHER;
    int alive = 0;
    if (temp && find_temp(target, temp, size, &alive)) {
        if (writer_alive) *writer_alive = alive;
        return EXTRACT_FILE_PARTIAL;
    }
    return EXTRACT_FILE_MISSING;
}

int extract_mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return sd_errorf("%s: cannot create folder: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return sd_errorf("%s: cannot create folder: %s", buf, strerror(errno));
    return 0;
}

// Removes the "<target>.tmp.<pid>" files of writers that are gone (a killed run's) and of this
// process (a failed write's); a live writer's stay.
static void remove_stale_temps(const char *target) {
    char dir[8192];
    if (strlen(target) >= sizeof(dir)) return;
    const char *base = split_target(target, dir, sizeof(dir));
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".tmp.", 5) != 0) continue;
        long pid = strtol(e->d_name + blen + 5, NULL, 10);
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) == 0) continue;  // a live writer
        char full[8448];
        if (snprintf(full, sizeof(full), "%s/%s", dir, e->d_name) < (int)sizeof(full)) unlink(full);
    }
    closedir(d);
}

int extract_prepare_target(const char *target) {
    char dir[8192];
    split_target(target, dir, sizeof(dir));
    if (extract_mkdirs(dir)) return -1;
    remove_stale_temps(target);
    return 0;
}
