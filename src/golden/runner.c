// The golden runner: finds case folders, loads them, dispatches on "module",
// compares, reports. Every output.* tensor of a case must be compared by its
// handler; one that is not is a failure ("not compared").
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/runtime.h"
#include "golden/golden.h"

static const struct {
    const char *module;
    GoldenHandler run;
} g_handlers[] = {
    {"unet", golden_case_unet},
    {"vae_encoder", golden_case_vae_encoder},
    {"clip_text", golden_case_clip_text},
    {"tokenizer", golden_case_tokenizer},
    {"ddim_schedule", golden_case_ddim_schedule},
    {"ddim_inversion", golden_case_ddim_inversion},
    {"extract", golden_case_extract},
    {"resize", golden_case_resize},
    {"head", golden_case_head},
    {"head_train", golden_case_head_train},
};

const char *golden_path(const GoldenCase *gc, const char *file, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", gc->dir, file);
    return buf;
}

int golden_has(const GoldenCase *gc, const char *name) { return st_find(&gc->tensors, name) != NULL; }

int golden_load(GoldenCase *gc, const char *name, Tensor *out) { return st_load(&gc->tensors, name, 0, NULL, out); }

static void mark_checked(GoldenCase *gc, const char *name) {
    for (int i = 0; i < gc->tensors.count; i++)
        if (strcmp(gc->tensors.entries[i].name, name) == 0) gc->checked[i] = 1;
}

int golden_check(GoldenCase *gc, const char *name, const float *got, int ndim, const int *shape) {
    gc->n_checked++;
    mark_checked(gc, name);
    const StEntry *e = st_find(&gc->tensors, name);
    if (!e) {
        gc->n_failed++;
        printf("    %-56s MISSING in tensors.safetensors\n", name);
        return SD_FAIL;
    }
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        char a[128] = "", b[128] = "";
        size_t na = 0, nb = 0;
        for (int i = 0; i < e->ndim; i++) na += (size_t)snprintf(a + na, sizeof(a) - na, i ? ",%lld" : "%lld", (long long)e->shape[i]);
        for (int i = 0; i < ndim; i++) nb += (size_t)snprintf(b + nb, sizeof(b) - nb, i ? ",%d" : "%d", shape[i]);
        gc->n_failed++;
        printf("    %-56s SHAPE got (%s), expected (%s)\n", name, b, a);
        return SD_FAIL;
    }
    float *want = (float *)malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
    if (!want) { gc->n_failed++; return sd_errorf("out of memory"); }
    st_entry_to_f32(e, want);
    double max_abs = 0.0, max_rel = 0.0;
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < e->numel; i++) {
        double w = want[i], g = got[i];
        double d = fabs(g - w);
        if (isnan(g) != isnan(w)) d = INFINITY;
        else if (isnan(g)) d = 0.0;
        if (d > max_abs) max_abs = d;
        double r = d / (fabs(w) > 1e-30 ? fabs(w) : 1e-30);
        if (fabs(w) > 0.0 && r > max_rel) max_rel = r;
        double tol = gc->atol + gc->rtol * (isnan(w) ? 0.0 : fabs(w));
        if (!(d <= tol)) {
            if (first_bad < 0) first_bad = i;
            bad++;
        }
    }
    if (bad) {
        gc->n_failed++;
        printf("    %-56s FAIL max_abs %.3g max_rel %.3g: %lld of %lld out of tolerance (first at %lld: got %.7g want %.7g)\n",
               name, max_abs, max_rel, (long long)bad, (long long)e->numel, (long long)first_bad,
               got[first_bad], want[first_bad]);
    } else if (gc->verbose || strncmp(name, "output.", 7) == 0) {
        printf("    %-56s ok   max_abs %.3g max_rel %.3g\n", name, max_abs, max_rel);
    }
    free(want);
    return bad ? SD_FAIL : 0;
}

int golden_check_tensor(GoldenCase *gc, const char *name, const Tensor *got) {
    return golden_check(gc, name, got->data, got->ndim, got->shape);
}

int golden_captures_init(const GoldenCase *gc, ModuleCaptures *cap) {
    memset(cap, 0, sizeof(*cap));
    const char **paths = (const char **)calloc((size_t)gc->tensors.count + 1, sizeof(char *));
    if (!paths) return sd_errorf("out of memory");
    int n = 0;
    for (int i = 0; i < gc->tensors.count; i++) {
        const char *name = gc->tensors.entries[i].name;
        if (strncmp(name, "capture.", 8) == 0 && !strchr(name, '@')) paths[n++] = name + 8;
    }
    int rc = captures_init(cap, paths, n);  // copies the paths
    free(paths);
    return rc;
}

void golden_check_captures(GoldenCase *gc, const ModuleCaptures *cap) {
    for (int i = 0; i < cap->count; i++) {
        char name[300];
        snprintf(name, sizeof(name), "capture.%s", cap->items[i].path);
        golden_check_tensor(gc, name, &cap->items[i].value);
    }
}

// ---------------------------------------------------------------------------

static void case_close(GoldenCase *gc) {
    json_free(&gc->root);
    st_close(&gc->weights);
    st_close(&gc->tensors);
    free(gc->checked);
}

// 1 pass, 0 fail, 2 not implemented.
static int run_case(const char *dir, int verbose, GoldenSummary *sum) {
    GoldenCase gc;
    memset(&gc, 0, sizeof(gc));
    gc.dir = dir;
    gc.verbose = verbose;
    char path[4096];
    int rc = 0;
    snprintf(path, sizeof(path), "%s/case.json", dir);
    if (json_parse_file(path, &gc.root)) goto fail;
    gc.config = json_get(&gc.root, "config");
    if (json_get_string(&gc.root, "module", NULL, &gc.module) || !gc.module) {
        sd_errorf("%s: \"module\" missing or not a string", path);
        goto fail;
    }
    if (json_get_double(&gc.root, "rtol", 1e-4, &gc.rtol) || json_get_double(&gc.root, "atol", 1e-4, &gc.atol)) {
        sd_error_context("%s", path);
        goto fail;
    }
    GoldenHandler handler = NULL;
    for (size_t i = 0; i < sizeof(g_handlers) / sizeof(g_handlers[0]); i++)
        if (strcmp(g_handlers[i].module, gc.module) == 0) handler = g_handlers[i].run;
    if (!handler) {
        printf("NOT IMPLEMENTED  %s (module '%s' is unknown to this version)\n", dir, gc.module);
        sum->not_implemented++;
        case_close(&gc);
        return 2;
    }
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) snprintf(path, sizeof(path), "%s/weights.bin", dir);  // torch.save'd state_dict
    if (stat(path, &sb) == 0 && st_open(&gc.weights, path)) goto fail;
    snprintf(path, sizeof(path), "%s/tensors.safetensors", dir);
    if (st_open(&gc.tensors, path)) goto fail;
    gc.checked = (unsigned char *)calloc((size_t)gc.tensors.count + 1, 1);
    if (!gc.checked) { sd_errorf("out of memory"); goto fail; }

    printf("case %s (%s, rtol %g, atol %g)\n", dir, gc.module, gc.rtol, gc.atol);
    fflush(stdout);
    double t0 = sd_now();
    sd_clear_error();
    rc = handler(&gc);
    if (rc == GOLDEN_NOT_IMPLEMENTED) {
        printf("NOT IMPLEMENTED  %s (module '%s')\n", dir, gc.module);
        sum->not_implemented++;
        case_close(&gc);
        return 2;
    }
    if (rc != 0) {
        printf("    error: %s\n", sd_last_error());
        gc.n_failed++;
    }
    int unchecked_captures = 0;
    for (int i = 0; i < gc.tensors.count; i++) {
        const char *name = gc.tensors.entries[i].name;
        if (gc.checked[i]) continue;
        if (strncmp(name, "output.", 7) == 0) {
            printf("    %-56s NOT COMPARED by the handler\n", name);
            gc.n_failed++;
        } else if (strncmp(name, "capture.", 8) == 0) {
            unchecked_captures++;
        }
    }
    if (unchecked_captures) printf("    (%d captured tensors not compared)\n", unchecked_captures);
    int pass = gc.n_failed == 0 && gc.n_checked > 0;
    if (gc.n_checked == 0 && rc == 0) printf("    no tensor compared\n");
    printf("%s  %s (%d tensors, %.2f s)\n", pass ? "PASS" : "FAIL", dir, gc.n_checked, sd_now() - t0);
    if (pass) sum->passed++;
    else sum->failed++;
    case_close(&gc);
    return pass;
fail:
    printf("FAIL  %s: %s\n", dir, sd_last_error());
    sum->failed++;
    case_close(&gc);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Collects case folders under dir (depth-first, sorted).
static int collect(const char *dir, char ***list, int *n, int *cap, int depth) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/case.json", dir);
    if (stat(path, &sb) == 0) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            char **l = (char **)realloc(*list, (size_t)*cap * sizeof(char *));
            if (!l) return sd_errorf("out of memory");
            *list = l;
        }
        if (!((*list)[*n] = strdup(dir))) return sd_errorf("out of memory");
        (*n)++;
        return 0;
    }
    if (depth > 8) return 0;
    // A folder that cannot be read is an error at any depth: skipping it would report
    // fewer cases than exist (a 32-bit build without _FILE_OFFSET_BITS=64 got EOVERFLOW
    // from readdir and reported "0 passed, 0 failed").
    DIR *d = opendir(dir);
    if (!d) return sd_errorf("%s: cannot open folder: %s", dir, strerror(errno));
    char **subs = NULL;
    int ns = 0, cs = 0, rc = 0;
    struct dirent *ent;
    for (;;) {
        errno = 0;  // readdir returns NULL both at the end and on an error
        ent = readdir(d);
        if (!ent) {
            if (errno) rc = sd_errorf("%s: cannot read folder: %s", dir, strerror(errno));
            break;
        }
        if (ent->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        if (ns == cs) {
            cs = cs ? cs * 2 : 16;
            char **s = (char **)realloc(subs, (size_t)cs * sizeof(char *));
            if (!s) { rc = sd_errorf("out of memory"); break; }
            subs = s;
        }
        if (!(subs[ns] = strdup(path))) { rc = sd_errorf("out of memory"); break; }
        ns++;
    }
    closedir(d);
    if (ns > 1) qsort(subs, (size_t)ns, sizeof(char *), cmp_str);
    for (int i = 0; i < ns; i++) {
        if (!rc) rc = collect(subs[i], list, n, cap, depth + 1);
        free(subs[i]);
    }
    free(subs);
    return rc;
}

int golden_run_dirs(const char *const *dirs, int n_dirs, int verbose, const char *only, GoldenSummary *sum) {
    memset(sum, 0, sizeof(*sum));
    for (int k = 0; k < n_dirs; k++) {
        char **list = NULL;
        int n = 0, cap = 0;
        if (collect(dirs[k], &list, &n, &cap, 0)) {
            for (int i = 0; i < n; i++) free(list[i]);
            free(list);
            return SD_FAIL;
        }
        if (n == 0) printf("(no golden cases under %s)\n", dirs[k]);
        for (int i = 0; i < n; i++) {
            if (!only || strstr(list[i], only)) run_case(list[i], verbose, sum);
            free(list[i]);
        }
        free(list);
    }
    return 0;
}
