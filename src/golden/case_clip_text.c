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
    if (!ids || !out) {
        sd_errorf("out of memory");
        goto done;
    }
    if (st_entry_to_i64(&gc->tensors, e, ids)) goto done;
    if (golden_captures_init(gc, &cap)) goto done;
    if (clip_text_forward_run(&model, ids, B, L, out, cap.count ? &cap : NULL)) goto done;
    if (cap.count && captures_check_filled(&cap, "CLIPTextModel")) goto done;
    rc = 0;
    const int shape[3] = {B, L, D};
    golden_check(gc, "output.last_hidden_state", out, 3, shape);
    golden_check_captures(gc, &cap);
done:
    captures_free(&cap);
    free(ids);
    free(out);
    if (loaded) clip_text_free(&model);
    return rc;
}
