// satdifuser eval: metrics of a trained head on a split of cached features.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_report.h"
#include "core/error.h"
#include "figures/figures.h"
#include "io/outdir.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser eval --run RUN_DIR --features DIR --labels FILE [--split test|val|train]\n"
            "                       [--weights FILE] [--batch-size N] [--json OUT] [--ignore-value V]\n"
            "                       [--moe-counter continue|restart] [--allow-mixed-preprocessing]\n\n"
            "Evaluates the head of a training run (RUN_DIR/head_config.json + RUN_DIR/best.safetensors,\n"
            "or --weights) on one split, with the original's metrics: accuracy and macro-P/R F1\n"
            "(classification), micro F1 (multi-label), IoU/mIoU and F1 per class (segmentation).\n"
            "Prints a table and writes the metrics as JSON (default RUN_DIR/metrics_<split>.json).\n"
            "An MoE head's call counters continue from RUN_DIR/moe_counter.json (where train's final test\n"
            "started, as run.py's final test), so eval reproduces that test; --moe-counter restart starts\n"
            "them at 0 (dense until warmup_steps calls), as a fresh process of the original would.\n");
}

int cmd_eval(int argc, char **argv) {
    const char *run = NULL, *features = NULL, *labels_path = NULL, *split_name_arg = "test", *weights = NULL, *json_out = NULL;
    int batch = 32, ignore_value = 255, moe_restart = 0, allow_mixed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { eval_usage(stdout); return 0; }
        if (!strcmp(a, "--allow-mixed-preprocessing")) { allow_mixed = 1; continue; }  // as train
        if (!v) { fprintf(stderr, "satdifuser eval: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--run")) run = v;
        else if (!strcmp(a, "--features")) features = v;
        else if (!strcmp(a, "--labels")) labels_path = v;
        else if (!strcmp(a, "--split")) split_name_arg = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--json")) json_out = v;
        else if (!strcmp(a, "--batch-size")) batch = atoi(v);
        else if (!strcmp(a, "--ignore-value")) ignore_value = atoi(v);
        else if (!strcmp(a, "--moe-counter") && (!strcmp(v, "continue") || !strcmp(v, "restart"))) moe_restart = v[0] == 'r';
        else if (!strcmp(a, "--moe-counter")) { fprintf(stderr, "satdifuser eval: --moe-counter '%s': expected continue or restart\n", v); return 2; }
        else { fprintf(stderr, "satdifuser eval: unknown option '%s'\n", a); eval_usage(stderr); return 2; }
    }
    if (!run || !features || !labels_path) { eval_usage(stderr); return 2; }
    SplitKind split;
    if (!strcmp(split_name_arg, "test")) split = SPLIT_TEST;
    else if (!strcmp(split_name_arg, "val")) split = SPLIT_VAL;
    else if (!strcmp(split_name_arg, "train")) split = SPLIT_TRAIN;
    else { fprintf(stderr, "satdifuser eval: --split '%s': expected test, val or train\n", split_name_arg); return 2; }
    if (batch < 1) { fprintf(stderr, "satdifuser eval: --batch-size must be positive\n"); return 2; }

    char path[4096], wpath[4096], jpath[4096];
    JsonValue cfg_json;
    HeadConfig hc;
    HeadModel model;
    LabelSet labels;
    Dataset data;
    EvalResult ev;
    memset(&model, 0, sizeof(model));
    memset(&data, 0, sizeof(data));
    memset(&ev, 0, sizeof(ev));
    memset(&labels, 0, sizeof(labels));
    int rc = 1, *rows = NULL;
    snprintf(path, sizeof(path), "%s/head_config.json", run);
    snprintf(jpath, sizeof(jpath), "%s/metrics_%s.json", run, split_name_arg);
    if (json_parse_file(path, &cfg_json)) goto fail_nojson;
    if (outfile_check(json_out ? json_out : jpath, json_out ? "--json" : "metrics")) goto fail;  // before evaluating
    if (head_config_from_json(&hc, &cfg_json)) { sd_error_context("%s", path); goto fail; }
    LabelTask task = hc.task == TASK_SEGMENTATION ? LABELS_SEGMENTATION
                     : hc.task == TASK_MULTILABEL ? LABELS_MULTILABEL
                                                  : LABELS_CLASSIFICATION;
    if (labels_load(labels_path, task, &labels)) goto fail;
    if (labels_set_num_classes(&labels, hc.num_classes, path)) goto fail;  // path: the head config
    rows = (int *)malloc((size_t)labels.count * sizeof(int));
    if (!rows) { sd_errorf("out of memory"); goto fail; }
    int n = labels_split(&labels, split, rows);
    if (n == 0) { sd_errorf("%s: the %s split is empty", labels_path, split_name_arg); goto fail; }
    if (dataset_open_mixed(&data, features, &labels, batch, ignore_value, allow_mixed)) goto fail;
    if (data.warning) fprintf(stderr, "warning: %s\n", data.warning);
    if (head_model_init(&model, &hc)) goto fail;
    snprintf(wpath, sizeof(wpath), "%s/best.safetensors", run);
    if (head_model_load(&model, weights ? weights : wpath)) goto fail;
    int found = 0;
    if (!moe_restart && moe_counter_read(run, &model, &found)) goto fail;
    if (found) fprintf(stderr, "moe: call counters continue from %s/moe_counter.json (--moe-counter restart: from 0)\n", run);
    if (evaluate(&model, &data, rows, n, batch, &ev)) goto fail;
    eval_result_print(&ev, &labels, split_name_arg);
    if (eval_result_write_json(&ev, &labels, split_name_arg, json_out ? json_out : jpath)) goto fail;
    report_figures_after_eval(run, split_name_arg, &ev, &labels);  // RUN/confusion_<split>.{json,png}
    printf("metrics: %s\n", json_out ? json_out : jpath);
    rc = 0;
fail:
    json_free(&cfg_json);
fail_nojson:
    if (rc) fprintf(stderr, "satdifuser eval: %s\n", sd_last_error());
    free(rows);
    eval_result_free(&ev);
    head_model_free(&model);
    dataset_close(&data);
    labels_free(&labels);
    return rc;
}
