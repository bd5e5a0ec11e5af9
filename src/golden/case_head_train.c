// Golden handler for module "head_train": K training steps of a fuser + task
// head on one batch, as run.py's inner loop (../shared/golden-format.md):
//   model.train() (BatchNorm batch statistics, Dropout2d p = 0)
//   per step: zero_grad(set_to_none) -> forward -> loss -> backward -> Adam step
// Compares output.loss@step<k> (before the update of step k), output.grad.<param>
// (step 0; a parameter without a gradient must have none in the case) and, after
// the K steps, output.param.<name> for every state_dict entry (weights, BatchNorm
// running statistics, num_batches_tracked). Optional per-step states (cases made by
// weights_tools/make_head_train_golden.py, docs/golden-cases.md):
// output.param.<name>@step<k> is every state_dict entry after k Adam steps, i.e. the
// state step k starts from (as output.loss@step<k> is step k's loss), 0 < k < K;
// compared when the case has them (all of them, once it has one).
//
// config: {"head": {head config}, "optimizer": {"name": "adam" | "adamw", "lr", "weight_decay",
//          "betas": [b1, b2], "eps"}, "steps": K, "loss": "ce" | "bce", "ignore_index": -100}
// inputs: input.feat.<i>.<s>, input.labels (int64 for ce: (B) or (B, H, W); float for bce: (B, classes)).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "golden/head_inputs.h"
#include "heads/head.h"
#include "train/adam.h"
#include "train/losses.h"

static int optimizer_from_json(const JsonValue *j, AdamConfig *a) {
    if (!j || j->type != JSON_OBJECT) return sd_errorf("config.optimizer: expected an object");
    const char *name = "adam";
    double lr, wd, eps;
    if (json_get_string(j, "name", name, &name) || json_get_double(j, "lr", 1e-3, &lr) ||
        json_get_double(j, "weight_decay", 0.0, &wd) || json_get_double(j, "eps", 1e-8, &eps))
        return SD_FAIL;
    *a = adam_config_default(lr, wd);
    a->eps = eps;
    if (strcmp(name, "adam") == 0) a->decoupled = 0;
    else if (strcmp(name, "adamw") == 0) a->decoupled = 1;
    else return sd_errorf("config.optimizer.name '%s': expected adam or adamw", name);
    const JsonValue *betas = json_get(j, "betas");
    if (betas && betas->type != JSON_NULL) {
        if (betas->type != JSON_ARRAY || betas->count != 2 || betas->items[0].type != JSON_NUMBER ||
            betas->items[1].type != JSON_NUMBER)
            return sd_errorf("config.optimizer.betas: expected [b1, b2]");
        a->beta1 = betas->items[0].number;
        a->beta2 = betas->items[1].number;
    }
    return 0;
}

// Compares the step-0 gradient of every trainable tensor. A parameter without a gradient
// (an expert nobody chose) must not have one in the case either.
static void check_grads(GoldenCase *gc, const ParamSet *ps) {
    char name[320];
    for (int i = 0; i < ps->count; i++) {
        const Param *p = ps->items[i];
        if (p->kind != PARAM_WEIGHT) continue;
        snprintf(name, sizeof(name), "output.grad.%s", p->name);
        if (p->has_grad) {
            golden_check(gc, name, p->grad, p->ndim, p->shape);
        } else if (golden_has(gc, name)) {
            gc->n_failed++;
            printf("    %-56s FAIL: no gradient here (not in the graph), the case has one\n", name);
        } else if (gc->verbose) {
            printf("    %-56s none (as in the case)\n", name);
        }
    }
}

// Compares every state_dict entry with output.param.<name><suffix> ("" after the K
// steps, "@step<k>" after k steps). With `optional`, a case that has none of the
// suffixed tensors is skipped; one that has some must have them all.
static void check_params(GoldenCase *gc, const ParamSet *ps, const char *suffix, int optional) {
    char name[320];
    if (optional) {
        int present = 0;
        for (int i = 0; i < ps->count && !present; i++) {
            snprintf(name, sizeof(name), "output.param.%s%s", ps->items[i]->name, suffix);
            present = golden_has(gc, name);
        }
        if (!present) {
            if (gc->verbose) printf("    output.param.*%-44s none in the case\n", suffix);
            return;
        }
    }
    for (int i = 0; i < ps->count; i++) {
        const Param *p = ps->items[i];
        snprintf(name, sizeof(name), "output.param.%s%s", p->name, suffix);
        if (p->kind == PARAM_COUNTER) {
            float v = (float)p->counter;
            golden_check(gc, name, &v, 0, NULL);
        } else {
            golden_check(gc, name, p->data, p->ndim, p->shape);
        }
    }
}

int golden_case_head_train(GoldenCase *gc) {
    HeadConfig cfg;
    HeadModel model;
    Adam opt;
    AdamConfig acfg;
    Tensor feats[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    Tensor labels_f;
    int64_t *labels = NULL;
    float *dlogits = NULL;
    FusionInput in;
    memset(feats, 0, sizeof(feats));
    memset(&labels_f, 0, sizeof(labels_f));
    memset(&model, 0, sizeof(model));
    memset(&opt, 0, sizeof(opt));
    int rc = SD_FAIL, steps = 1, ignore_index = -100;
    const char *loss_name = "ce";

    if (head_config_from_json_golden(&cfg, json_get(gc->config, "head"))) return sd_error_context("config.head");
    cfg.dropout_p = 0.0f;  // model.dropout.p = 0
    if (optimizer_from_json(json_get(gc->config, "optimizer"), &acfg) ||
        json_get_int(gc->config, "steps", 1, &steps) || json_get_string(gc->config, "loss", "ce", &loss_name) ||
        json_get_int(gc->config, "ignore_index", -100, &ignore_index))
        return sd_error_context("case.json config");
    int bce = strcmp(loss_name, "bce") == 0;
    if (!bce && strcmp(loss_name, "ce") != 0) return sd_errorf("config.loss '%s': expected ce or bce", loss_name);
    if (steps < 1) return sd_errorf("config.steps %d", steps);

    if (head_model_init(&model, &cfg) || head_model_load_st(&model, &gc->weights)) goto done;
    if (golden_head_inputs(gc, &cfg.layout, &in, feats)) goto done;
    if (params_alloc_grads(&model.params) || adam_init(&opt, &model.params)) goto done;
    head_model_set_mode(&model, 1, 1);  // model.train()

    // labels: ce (B) or (B, H, W) int64; bce (B, classes) float
    int B = in.B, C = cfg.num_classes;
    int HW = cfg.task == TASK_SEGMENTATION ? cfg.output_h * cfg.output_w : 1;
    int64_t n_logits = (int64_t)B * C * HW;
    if (bce) {
        int shape[2] = {B, C};
        if (st_load(&gc->tensors, "input.labels", 2, shape, &labels_f)) goto done;
    } else {
        const StEntry *e;
        if (st_require(&gc->tensors, "input.labels", &e)) goto done;
        if (e->numel != (int64_t)B * HW) {
            sd_errorf("input.labels: %lld values, expected %d x %d", (long long)e->numel, B, HW);
            goto done;
        }
        labels = (int64_t *)malloc((size_t)e->numel * sizeof(int64_t));
        if (!labels) { sd_errorf("out of memory"); goto done; }
        if (st_entry_to_i64(&gc->tensors, e, labels)) goto done;
    }
    dlogits = (float *)malloc((size_t)n_logits * sizeof(float));
    if (!dlogits) { sd_errorf("out of memory"); goto done; }

    for (int k = 0; k < steps; k++) {
        params_zero_grads(&model.params);  // optimizer.zero_grad(set_to_none=True)
        if (head_model_forward(&model, &in)) goto done;
        const float *logits = head_model_logits(&model);
        float loss = 0.0f;
        memset(dlogits, 0, (size_t)n_logits * sizeof(float));
        int lr = bce ? bce_with_logits_loss(&loss, dlogits, logits, labels_f.data, n_logits)
                     : cross_entropy_loss(&loss, dlogits, logits, labels, B, C, HW, ignore_index);
        if (lr) goto done;
        char name[64];
        snprintf(name, sizeof(name), "output.loss@step%d", k);
        golden_check(gc, name, &loss, 0, NULL);
        if (head_model_backward(&model, dlogits)) goto done;
        if (k == 0) check_grads(gc, &model.params);
        if (adam_step(&opt, &model.params, &acfg)) goto done;
        if (k + 1 < steps) {  // the state step k + 1 starts from
            snprintf(name, sizeof(name), "@step%d", k + 1);
            check_params(gc, &model.params, name, 1);
        }
    }
    check_params(gc, &model.params, "", 0);
    if (cfg.fuser.kind == FUSER_MOE) {
        printf("    moe counters after %d steps:", steps);
        for (int s = 0; s < model.fuser.moe.num_scales; s++) printf(" %lld", (long long)model.fuser.moe.scales[s].global_step);
        printf("\n");
    }
    rc = 0;  // mismatches are counted as failures by golden_check
done:
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&feats[i]);
    tensor_free(&labels_f);
    free(labels);
    free(dlogits);
    adam_free(&opt);
    head_model_free(&model);
    return rc;
}
