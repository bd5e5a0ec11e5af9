// Intermediate outputs asked for by module path ("up_blocks.1.resnets.0.conv2").
//
// The caller lists the paths it wants; the forward pass offers the tensor of
// each capturable module as it computes it, and a copy is kept only when the
// path was asked for. With no capture list (NULL) a forward does no extra work.
//
//   ModuleCaptures cap;
//   const char *paths[] = {"up_blocks.1.attentions.0.transformer_blocks.0.attn1"};
//   captures_init(&cap, paths, 1);
//   unet_forward(..., &cap, ...);
//   const Tensor *t = captures_get(&cap, paths[0]);   // owned by cap
//   captures_free(&cap);
#ifndef SD_MODELS_CAPTURE_H
#define SD_MODELS_CAPTURE_H

#include "core/tensor.h"

typedef struct {
    char *path;    // the module path, as named_modules() names it
    Tensor value;  // a copy of its output (owned); data == NULL until captured
} CaptureItem;

typedef struct {
    int count;
    CaptureItem *items;
} ModuleCaptures;

int captures_init(ModuleCaptures *c, const char *const *paths, int n);
void captures_free(ModuleCaptures *c);
// Drops the captured values (keeps the list), to reuse it for another forward.
void captures_clear(ModuleCaptures *c);
// The captured tensor, or NULL if the path was not asked for or not produced.
const Tensor *captures_get(const ModuleCaptures *c, const char *path);

// Called by forward code: if "<prefix>.<suffix>" (or "<prefix>" when suffix is
// NULL) was asked for, stores a copy of data with this shape. 0 or -1 (memory).
int captures_offer(ModuleCaptures *c, const char *prefix, const char *suffix, const float *data, int ndim,
                   const int *shape);
// After a forward: -1 with a message naming the first path that was asked for
// but never produced (a misspelt or non-existent module of `model`).
int captures_check_filled(const ModuleCaptures *c, const char *model);

#endif
