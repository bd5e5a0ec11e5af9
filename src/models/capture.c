// Captured intermediate outputs (see capture.h).
#include "models/capture.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int captures_init(ModuleCaptures *c, const char *const *paths, int n) {
    memset(c, 0, sizeof(*c));
    if (n <= 0) return 0;
    c->items = (CaptureItem *)calloc((size_t)n, sizeof(CaptureItem));
    if (!c->items) return sd_errorf("out of memory");
    c->count = n;
    for (int i = 0; i < n; i++) {
        c->items[i].path = strdup(paths[i]);
        if (!c->items[i].path) {
            captures_free(c);
            return sd_errorf("out of memory");
        }
    }
    return 0;
}

void captures_clear(ModuleCaptures *c) {
    for (int i = 0; i < c->count; i++) tensor_free(&c->items[i].value);
}

void captures_free(ModuleCaptures *c) {
    for (int i = 0; i < c->count; i++) {
        tensor_free(&c->items[i].value);
        free(c->items[i].path);
    }
    free(c->items);
    memset(c, 0, sizeof(*c));
}

const Tensor *captures_get(const ModuleCaptures *c, const char *path) {
    for (int i = 0; c && i < c->count; i++)
        if (strcmp(c->items[i].path, path) == 0) return c->items[i].value.data ? &c->items[i].value : NULL;
    return NULL;
}

// "<prefix>.<suffix>" == path, without building the string.
static int path_matches(const char *path, const char *prefix, const char *suffix) {
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) return 0;
    if (!suffix) return path[n] == '\0';
    return path[n] == '.' && strcmp(path + n + 1, suffix) == 0;
}

int captures_offer(ModuleCaptures *c, const char *prefix, const char *suffix, const float *data, int ndim,
                   const int *shape) {
    if (!c) return 0;
    for (int i = 0; i < c->count; i++) {
        CaptureItem *it = &c->items[i];
        if (!path_matches(it->path, prefix, suffix)) continue;
        tensor_free(&it->value);
        if (tensor_alloc(&it->value, ndim, shape, it->path)) return SD_FAIL;
        memcpy(it->value.data, data, (size_t)tensor_numel(&it->value) * sizeof(float));
    }
    return 0;
}

int captures_check_filled(const ModuleCaptures *c, const char *model) {
    for (int i = 0; c && i < c->count; i++)
        if (!c->items[i].value.data)
            return sd_errorf("%s: capture '%s': no such module output (see the capturable paths in the model's header)",
                             model, c->items[i].path);
    return 0;
}
