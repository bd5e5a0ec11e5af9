// Golden handler for module "clip_text": transformers CLIPTextModel. Input: input.input_ids (B, L) int64.
// Compares output.last_hidden_state (B, L, D) and every capture.<path> the case holds
// (text_model.embeddings, text_model.encoder.layers.<i>, text_model.final_layer_norm).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/clip.h"

int golden_case_clip_text(GoldenCase *gc) {
    int rc = SD_FAIL, loaded = 0;
    ClipTextConfig cfg;
    ClipTextModel model;
    ModuleCaptures cap = {0};
    const char **paths = NULL;
    int64_t *ids = NULL;
    float *out = NULL;

    if (clip_text_config_from_json(gc->config, &cfg)) goto done;
    if (clip_text_load(&model, &cfg, &gc->weights, NULL)) goto done;
    loaded = 1;
    const StEntry *e;
    if (st_require(&gc->tensors, "input.input_ids", &e)) goto done;
    if (e->ndim != 2) {
        sd_errorf("input.input_ids: expected (B, L), got %d dims", e->ndim);
        goto done;
    }
    const int B = (int)e->shape[0], L = (int)e->shape[1], D = cfg.hidden_size;
    ids = (int64_t *)malloc((size_t)(B * L > 0 ? B * L : 1) * sizeof(int64_t));
    out = (float *)malloc((size_t)(B * L * D > 0 ? B * L * D : 1) * sizeof(float));
    paths = (const char **)calloc((size_t)gc->tensors.count + 1, sizeof(char *));
    if (!ids || !out || !paths) {
        sd_errorf("out of memory");
        goto done;
    }
    if (st_entry_to_i64(&gc->tensors, e, ids)) goto done;
    int n_cap = 0;
    for (int i = 0; i < gc->tensors.count; i++) {
        const char *name = gc->tensors.entries[i].name;
        if (strncmp(name, "capture.", 8) == 0) paths[n_cap++] = name + 8;
    }
    if (captures_init(&cap, paths, n_cap)) goto done;
    if (clip_text_forward_run(&model, ids, B, L, out, n_cap ? &cap : NULL)) goto done;
    if (n_cap && captures_check_filled(&cap, "CLIPTextModel")) goto done;
    rc = 0;
    const int shape[3] = {B, L, D};
    golden_check(gc, "output.last_hidden_state", out, 3, shape);
    for (int i = 0; i < cap.count; i++) {
        char name[300];
        snprintf(name, sizeof(name), "capture.%s", cap.items[i].path);
        golden_check_tensor(gc, name, &cap.items[i].value);
    }
done:
    captures_free(&cap);
    free(paths);
    free(ids);
    free(out);
    if (loaded) clip_text_free(&model);
    return rc;
}
