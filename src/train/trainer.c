// The training loop of run.py on cached features. See trainer.h.
#include "train/trainer.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"
#include "core/runtime.h"
#include "io/outdir.h"
#include "train/adam.h"
#include "train/checkpoint.h"
#include "heads/head.h"
#include "train/init.h"
#include "train/losses.h"
#include "train/lr_schedule.h"
#include "train/metrics.h"

void train_options_defaults(TrainOptions *o) {
    memset(o, 0, sizeof(*o));
    o->task = LABELS_CLASSIFICATION;
    o->fuser = "gw";
    o->batch_size = 32;
    o->val_batch_size = 32;
    o->epochs = 40;
    o->warmup_epochs = 5;
    o->lr = 0.01;
    o->min_lr = 1e-5;
    o->eval_every = 100;
    o->patience = 10;
    o->seed = 42;
    o->ignore_value = 255;
}

void eval_result_free(EvalResult *r) {
    free(r->per_class_iou);
    free(r->per_class_f1);
    free(r->confusion);
    free(r->seg_confusion);
    memset(r, 0, sizeof(*r));
}

// ---------------------------------------------------------------------------
// Loss of the last forward, and its gradient (accumulated into dlogits when not NULL).

static int batch_loss(const HeadModel *m, const Dataset *d, int B, float *loss, float *dlogits) {
    const float *logits = head_model_logits(m);
    int C = m->cfg.num_classes;
    switch (d->labels->task) {
    case LABELS_CLASSIFICATION:
        return cross_entropy_loss(loss, dlogits, logits, d->targets_i64, B, C, 1, d->ignore_index);
    case LABELS_MULTILABEL:
        return bce_with_logits_loss(loss, dlogits, logits, d->targets_f32, (int64_t)B * C);
    default:
        return cross_entropy_loss(loss, dlogits, logits, d->targets_i64, B, C, d->mask_h * d->mask_w, d->ignore_index);
    }
}

// ---------------------------------------------------------------------------
// Progress goes to the caller's o->on_event (trainer.h); the library prints nothing.

static void emit(const TrainOptions *o, TrainEvent *e) {
    if (o && o->on_event) o->on_event(e, o->event_user);
}

static int stop_asked(const TrainOptions *o) { return o && o->stop && *o->stop; }

// Evaluation, with progress events under the name `what` (o may be NULL: none). With `interruptible`,
// it stops between batches once *o->stop is set and returns 1 (out is then freed).
static int evaluate_impl(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out,
                         const TrainOptions *o, const char *what, int interruptible) {
    memset(out, 0, sizeof(*out));
    if (batch > n && n > 0) batch = n;  // buffers for the images there are, not for a huge --val-batch-size
    const LabelSet *ls = d->labels;
    int C = m->cfg.num_classes;
    out->task = ls->task;
    out->num_classes = C;
    int HW = ls->task == LABELS_SEGMENTATION ? d->mask_h * d->mask_w : 1;
    int *preds = (int *)malloc((size_t)batch * HW * sizeof(int));
    if (ls->task == LABELS_CLASSIFICATION) out->confusion = (int64_t *)calloc((size_t)C * C, sizeof(int64_t));
    if (ls->task == LABELS_SEGMENTATION) out->seg_confusion = (float *)calloc((size_t)C * C, sizeof(float));
    if (!preds || (ls->task == LABELS_CLASSIFICATION && !out->confusion) ||
        (ls->task == LABELS_SEGMENTATION && !out->seg_confusion)) {
        free(preds);
        return sd_errorf("out of memory for evaluation");
    }
    MultiLabelCounts mlc = {0, 0, 0};
    head_model_set_mode(m, 0, 0);
    double loss_sum = 0.0, t0 = sd_now();
    int rc = 0, nb = (n + batch - 1) / batch;
    for (int start = 0; start < n && !rc; start += batch) {
        int B = n - start < batch ? n - start : batch, b = start / batch;
        if (interruptible && stop_asked(o)) { free(preds); return 1; }
        TrainEvent e = {.kind = TRAIN_EV_EVAL_BATCH, .what = what, .batch = b + 1, .n_batches = nb, .seconds_left = -1};
        if (b) e.seconds_left = (sd_now() - t0) / b * (nb - b);
        if (what) emit(o, &e);
        FusionInput in;
        float loss = 0.0f;
        if ((rc = dataset_load_batch(d, rows + start, B, &in))) break;
        if ((rc = head_model_forward(m, &in))) break;
        if ((rc = batch_loss(m, d, B, &loss, NULL))) break;
        loss_sum += (double)loss * B;
        const float *logits = head_model_logits(m);
        if (ls->task == LABELS_MULTILABEL) {
            rc = multilabel_update(&mlc, logits, d->targets_f32, (int64_t)B * C);
        } else {
            argmax_channels(preds, logits, B, C, HW);
            if (ls->task == LABELS_CLASSIFICATION)
                rc = cls_confusion_update(out->confusion, C, d->targets_i64, preds, B, d->ignore_index);
            else
                rc = seg_confusion_update(out->seg_confusion, C, preds, d->targets_i64, (int64_t)B * HW, d->ignore_index);
        }
    }
    free(preds);
    if (rc) return SD_FAIL;
    out->count = n;
    out->loss = n ? loss_sum / n : NAN;
    if (ls->task == LABELS_CLASSIFICATION) {
        ClsMetrics cm;
        if (cls_metrics(out->confusion, C, &cm)) return sd_errorf("evaluation: no labelled image in the split");
        out->accuracy = cm.accuracy;
        out->precision = cm.precision;
        out->recall = cm.recall;
        out->f1 = cm.f1;
        out->main_metric = cm.accuracy;
    } else if (ls->task == LABELS_MULTILABEL) {
        MultiLabelMetrics mm = multilabel_metrics(&mlc);
        out->precision = mm.precision;
        out->recall = mm.recall;
        out->f1 = mm.f1;
        out->main_metric = mm.f1;
    } else {
        out->per_class_iou = (float *)calloc((size_t)C, sizeof(float));
        out->per_class_f1 = (float *)calloc((size_t)C, sizeof(float));
        if (!out->per_class_iou || !out->per_class_f1) return sd_errorf("out of memory");
        SegMetrics sm;
        seg_metrics(out->seg_confusion, C, out->per_class_iou, out->per_class_f1, NULL, NULL, &sm);
        out->miou = sm.miou;
        out->mf1 = sm.mf1;
        out->macc = sm.macc;
        out->main_metric = sm.miou;
    }
    return 0;
}

int eval_result_write_json(const EvalResult *r, const LabelSet *labels, const char *split, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return sd_errorf("%s: cannot write: %s", path, strerror(errno));
    char buf[32], esc[512];
    fprintf(f, "{\"split\": \"%s\", \"task\": \"%s\", \"images\": %d, \"loss\": %.6g", split, label_task_name(r->task),
            r->count, r->loss);
    if (r->task == LABELS_SEGMENTATION) {
        fprintf(f, ", \"mIoU\": %.6g, \"mF1\": %.6g, \"mAcc\": %.6g, \"IoU\": {", r->miou, r->mf1, r->macc);
        for (int c = 0; c < r->num_classes; c++) {
            json_escape(labels_class_name(labels, c, buf, (int)sizeof(buf)), esc, sizeof(esc));
            fprintf(f, "%s%s: %.6g", c ? ", " : "", esc, r->per_class_iou[c]);
        }
        fprintf(f, "}, \"F1\": {");
        for (int c = 0; c < r->num_classes; c++) {
            json_escape(labels_class_name(labels, c, buf, (int)sizeof(buf)), esc, sizeof(esc));
            fprintf(f, "%s%s: %.6g", c ? ", " : "", esc, r->per_class_f1[c]);
        }
        fprintf(f, "}");
    } else {
        if (r->task == LABELS_CLASSIFICATION) fprintf(f, ", \"accuracy\": %.6g", r->accuracy);
        fprintf(f, ", \"precision\": %.6g, \"recall\": %.6g, \"F1\": %.6g", r->precision, r->recall, r->f1);
    }
    fprintf(f, "}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) return sd_errorf("%s: write failed", path);
    return 0;
}

// 0 done, 1 interrupted (*o->stop), SD_FAIL; out is freed unless 0.
static int evaluate_split(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out,
                          const TrainOptions *o, const char *what, int interruptible) {
    int rc = evaluate_impl(m, d, rows, n, batch, out, o, what, interruptible);
    if (rc) eval_result_free(out);  // the confusion matrices of a failed or stopped evaluation
    return rc;
}

int evaluate(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out) {
    return evaluate_split(m, d, rows, n, batch, out, NULL, NULL, 0) ? SD_FAIL : 0;
}

// ---------------------------------------------------------------------------

// The user's extra head config keys (--head-json and the head options): a JSON object whose keys the head
// config knows and train does not set itself. A typo would otherwise be ignored silently.
static int check_head_json(const char *text) {
    static const char *const known[] = {"projection_dim", "num_norm_groups", "num_res_blocks", "gating_tempature",
                                        "lw_advance_channels", "num_experts", "top_k", "warmup_steps",
                                        "moe_global_step", "moe_counter", "single_stream", "single_timestep",
                                        "fuser_projection_dim", "channels", "pool_scales", "rescales",
                                        "align_corners", "dropout"};
    static const char *const reserved[] = {"task", "fuser", "feature_dims", "save_timesteps", "num_classes",
                                           "output_shape"};
    JsonValue j;
    if (json_parse(text, strlen(text), "--head-json", &j)) return SD_FAIL;
    int rc = 0;
    if (j.type != JSON_OBJECT) rc = sd_errorf("--head-json: expected a JSON object");
    for (int i = 0; !rc && i < j.count; i++) {
        const char *key = j.keys[i];
        int found = 0;
        for (size_t r = 0; r < sizeof(reserved) / sizeof(reserved[0]); r++)
            if (!strcmp(key, reserved[r]))
                rc = sd_errorf("--head-json: key '%s' is set by train itself (from --task, --fuser, the labels "
                               "and the feature cache)", key);
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) found |= !strcmp(key, known[k]);
        if (!rc && !found) rc = sd_errorf("--head-json: unknown head config key '%s'", key);
    }
    json_free(&j);
    return rc;
}

// The head config: the cache's layout, the task, the fuser and the user's extra keys.
static char *build_head_config(const TrainOptions *o, const Dataset *d, int num_classes) {
    const char *task = o->task == LABELS_CLASSIFICATION ? "classification"
                       : o->task == LABELS_MULTILABEL   ? "multi_label_classification"
                                                        : "segmentation";
    size_t n = strlen(d->feature_dims_text) + strlen(d->save_timesteps_text) + (o->head_json ? strlen(o->head_json) : 0) + 512;
    char *s = (char *)malloc(n);
    if (!s) return NULL;
    int len = snprintf(s, n, "{\"task\": \"%s\", \"fuser\": \"%s\", \"feature_dims\": %s, \"save_timesteps\": %s, "
                       "\"num_classes\": %d", task, o->fuser, d->feature_dims_text, d->save_timesteps_text, num_classes);
    if (o->task == LABELS_SEGMENTATION) len += snprintf(s + len, n - len, ", \"output_shape\": [%d, %d]", d->mask_h, d->mask_w);
    if (o->head_json) {
        const char *a = strchr(o->head_json, '{'), *b = strrchr(o->head_json, '}');
        if (a && b && b > a) {
            const char *p = a + 1;
            while (p < b && (*p == ' ' || *p == '\n' || *p == '\t')) p++;
            if (p < b) len += snprintf(s + len, n - len, ", %.*s", (int)(b - p), p);
        }
    }
    snprintf(s + len, n - len, "}");
    return s;
}

// run_dir/classes.json: {"class_names": [...]} from the labels' "# classes:" line, for predict's output.
static int write_class_names(const LabelSet *ls, const char *path) {
    size_t cap = 64;
    for (int c = 0; c < ls->num_names; c++) cap += 6 * strlen(ls->class_names[c]) + 8;  // \u00XX at worst
    char *text = (char *)malloc(cap), *esc = (char *)malloc(cap);
    if (!text || !esc) { free(text); free(esc); return sd_errorf("out of memory"); }
    size_t n = (size_t)snprintf(text, cap, "{\"class_names\": [");
    for (int c = 0; c < ls->num_names; c++) {
        json_escape(ls->class_names[c], esc, cap);
        n += (size_t)snprintf(text + n, cap - n, "%s%s", c ? ", " : "", esc);
    }
    snprintf(text + n, cap - n, "]}\n");
    int rc = write_text_atomic(path, text);
    free(text);
    free(esc);
    return rc;
}

// run_dir/features_meta.json: the first training file's metadata (prompt, steps,
// save steps, layers, preprocessing), so predict can extract a new image the same way.
static int write_features_meta(const Dataset *d, const LabelSet *ls, int row, const char *path) {
    char file[4096];
    dataset_file(d, ls->rows[row].image, file, sizeof(file));
    SafeTensors st;
    if (st_open(&st, file)) return SD_FAIL;
    char *text = st_metadata_json(&st);
    st_close(&st);
    if (!text) return sd_errorf("out of memory");
    int rc = write_text_atomic(path, text);
    free(text);
    return rc;
}

// The files of a run folder. A folder holding any of them is a run: train refuses it without
// --resume (continue) or --force (start over: they are deleted first).
static const char *const k_run_files[] = {"head_config.json", "features_meta.json", "checkpoint.safetensors",
                                          "best.safetensors", "log.jsonl", "metrics.json", "moe_counter.json",
                                          "classes.json"};
enum { N_RUN_FILES = sizeof(k_run_files) / sizeof(k_run_files[0]) };

static int check_run_dir(const TrainOptions *o) {
    char path[4200], found[512] = "";
    size_t n = 0;
    for (int k = 0; k < N_RUN_FILES; k++) {
        snprintf(path, sizeof(path), "%s/%s", o->out_dir, k_run_files[k]);
        struct stat sb;
        if (stat(path, &sb) == 0) n += (size_t)snprintf(found + n, sizeof(found) - n, "%s%s", n ? ", " : "", k_run_files[k]);
        if (n >= sizeof(found)) n = sizeof(found) - 1;
    }
    if (o->resume || o->force || !n) return 0;
    return sd_errorf("%s holds a training run (%s): continue it with --resume, or start over with --force (which "
                     "deletes those files), or give another --out", o->out_dir, found);
}

// mkdir -p
static int make_dirs(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) return sd_errorf("%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sd_errorf("%s: cannot create folder: %s", buf, strerror(errno));
        *p = c;
        if (!c) return 0;
    }
}

// --force: the old run's files go before the new run writes any. Also temporary files a killed run left
// (<file>.tmp, <file>.tmp.<pid>), with --resume too: the files they would have replaced are whole.
static int clear_run_dir(const TrainOptions *o) {
    char path[4200];
    for (int k = 0; o->force && k < N_RUN_FILES; k++) {
        snprintf(path, sizeof(path), "%s/%s", o->out_dir, k_run_files[k]);
        if (unlink(path) != 0 && errno != ENOENT) return sd_errorf("%s: cannot delete (--force): %s", path, strerror(errno));
    }
    DIR *d = opendir(o->out_dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        for (int k = 0; k < N_RUN_FILES; k++) {
            size_t len = strlen(k_run_files[k]);
            if (!strncmp(e->d_name, k_run_files[k], len) && !strncmp(e->d_name + len, ".tmp", 4)) {
                snprintf(path, sizeof(path), "%s/%s", o->out_dir, e->d_name);
                unlink(path);
            }
        }
    }
    closedir(d);
    return 0;
}

int train_run(const TrainOptions *o) {
    LabelSet labels;
    Dataset data;
    HeadModel model;
    Adam adam;
    memset(&model, 0, sizeof(model));
    memset(&adam, 0, sizeof(adam));
    memset(&data, 0, sizeof(data));
    memset(&labels, 0, sizeof(labels));
    int rc = SD_FAIL;
    char path[4096], best_path[4096], log_path[4096], what[96];
    int *train_rows = NULL, *val_rows = NULL, *test_rows = NULL;
    char *head_cfg_text = NULL;
    float *dlogits = NULL;  // d loss / d logits of a training batch
    FILE *log = NULL;
    JsonValue head_json;
    memset(&head_json, 0, sizeof(head_json));

    if (check_run_dir(o) || outdir_check(o->out_dir, "--out")) return SD_FAIL;  // before anything is read
    if (o->head_json && !o->resume && check_head_json(o->head_json)) return SD_FAIL;
    LrSchedule sched = lr_schedule_default(o->lr, o->epochs);
    sched.min_lr = o->min_lr;
    sched.warmup_epochs = o->warmup_epochs;
    if (lr_schedule_check(&sched)) return SD_FAIL;  // before anything is written
    // UPerNet's BatchNorm needs 2 values per channel in training and its 1x1 pooling branch has one per
    // image: segmentation batches need 2 images (the original fails on a batch of 1, mid-run).
    int min_batch = o->task == LABELS_SEGMENTATION ? 2 : 1;
    if (o->batch_size < min_batch)
        return sd_errorf("--batch-size %d: segmentation trains UPerNet, whose BatchNorm needs at least 2 images per "
                         "batch (its 1x1 pooling branch has one value per channel per image)", o->batch_size);
    if (labels_load(o->labels_path, o->task, &labels)) return SD_FAIL;
    if (o->num_classes && labels_set_num_classes(&labels, o->num_classes, "--num-classes")) goto done;
    int num_classes = labels.num_classes;
    if (num_classes < 1) { sd_errorf("%s: no classes (add a '# classes:' line or give --num-classes)", o->labels_path); goto done; }
    train_rows = (int *)malloc((size_t)labels.count * sizeof(int));
    val_rows = (int *)malloc((size_t)labels.count * sizeof(int));
    test_rows = (int *)malloc((size_t)labels.count * sizeof(int));
    if (!train_rows || !val_rows || !test_rows) { sd_errorf("out of memory"); goto done; }
    int n_train = labels_split(&labels, SPLIT_TRAIN, train_rows);
    int n_val = labels_split(&labels, SPLIT_VAL, val_rows);
    int n_test = labels_split(&labels, SPLIT_TEST, test_rows);
    if (n_train == 0 || n_val == 0) { sd_errorf("%s: the train and val splits must not be empty (train %d, val %d)", o->labels_path, n_train, n_val); goto done; }
    if (n_train < min_batch) { sd_errorf("%s: 1 train image: segmentation needs 2 (UPerNet's BatchNorm)", o->labels_path); goto done; }
    // A last batch below min_batch joins the one before (a deliberate difference, docs/training.md).
    int steps_per_epoch = (n_train + o->batch_size - 1) / o->batch_size;
    int last_batch = n_train - (steps_per_epoch - 1) * o->batch_size, merged = 0;
    if (last_batch < min_batch) {
        steps_per_epoch--;
        last_batch += o->batch_size;
        merged = 1;
    }
    // no batch is larger than its split: a huge --batch-size must not allocate for images that do not exist
    int train_batch = steps_per_epoch == 1 || last_batch > o->batch_size ? last_batch : o->batch_size;
    int eval_n = n_val > n_test ? n_val : n_test;
    int max_batch = o->val_batch_size < eval_n ? o->val_batch_size : eval_n;
    if (train_batch > max_batch) max_batch = train_batch;
    TrainEvent e = {.kind = TRAIN_EV_PLAN, .n_train = n_train, .n_val = n_val, .n_test = n_test,
                    .steps_per_epoch = steps_per_epoch, .batch_size = o->batch_size, .merged_last_batch = merged,
                    .epochs = o->epochs, .dir = o->out_dir};
    emit(o, &e);
    e = (TrainEvent){.kind = TRAIN_EV_CHECKING, .n_files = labels.count, .dir = o->features_dir,
                     .seg = o->task == LABELS_SEGMENTATION};
    emit(o, &e);
    if (dataset_open_mixed(&data, o->features_dir, &labels, max_batch, o->ignore_value, o->allow_mixed_preprocessing)) goto done;
    if (data.warning) {
        e = (TrainEvent){.kind = TRAIN_EV_WARNING, .what = data.warning};
        emit(o, &e);
    }

    if (make_dirs(o->out_dir)) goto done;
    if (clear_run_dir(o)) goto done;
    snprintf(path, sizeof(path), "%s/head_config.json", o->out_dir);
    if (o->resume) {
        if (json_parse_file(path, &head_json)) { sd_error_context("--resume"); goto done; }
    } else {
        head_cfg_text = build_head_config(o, &data, num_classes);
        if (!head_cfg_text) { sd_errorf("out of memory"); goto done; }
        if (json_parse(head_cfg_text, strlen(head_cfg_text), "head config", &head_json)) goto done;
    }
    HeadConfig hc;
    if (head_config_from_json(&hc, &head_json)) { sd_error_context("head config"); goto done; }
    if (hc.num_classes != num_classes) {  // --resume with other labels or --num-classes
        sd_errorf("%s: num_classes %d, but the labels have %d classes", path, hc.num_classes, num_classes);
        goto done;
    }
    if (head_model_init(&model, &hc)) goto done;
    if (!o->resume) {
        head_init_weights(&model.params, o->seed);
        if (write_text_atomic(path, head_cfg_text)) goto done;
        snprintf(path, sizeof(path), "%s/features_meta.json", o->out_dir);
        if (write_features_meta(&data, &labels, train_rows[0], path)) goto done;
        snprintf(path, sizeof(path), "%s/classes.json", o->out_dir);
        if (labels.class_names && write_class_names(&labels, path)) goto done;
    }
    if (params_alloc_grads(&model.params) || adam_init(&adam, &model.params)) goto done;

    TrainState ts;
    memset(&ts, 0, sizeof(ts));
    ts.best_metric = -INFINITY;
    snprintf(path, sizeof(path), "%s/checkpoint.safetensors", o->out_dir);
    snprintf(best_path, sizeof(best_path), "%s/best.safetensors", o->out_dir);
    snprintf(log_path, sizeof(log_path), "%s/log.jsonl", o->out_dir);
    if (o->resume) {
        if (checkpoint_load(path, &model, &adam, &ts)) goto done;
        e = (TrainEvent){.kind = TRAIN_EV_RESUMED, .dir = o->out_dir, .epoch = ts.epoch, .step = ts.step_in_epoch,
                         .global_step = ts.global_step};
        emit(o, &e);
    }
    log = fopen(log_path, o->resume ? "a" : "w");
    if (!log) { sd_errorf("%s: cannot write: %s", log_path, strerror(errno)); goto done; }

    AdamConfig acfg = adam_config_default(o->lr, o->weight_decay);
    int eval_every = o->eval_every <= 0 || o->eval_every > steps_per_epoch ? steps_per_epoch : o->eval_every;
    int stopped = 0, early = 0;
    int64_t total_steps = (int64_t)o->epochs * steps_per_epoch, start_step = ts.global_step;
    if (o->max_steps && o->max_steps < total_steps) total_steps = o->max_steps;
    double t_train = sd_now();
    const int start_epoch = ts.epoch, start_at_epoch_start = ts.step_in_epoch == 0;

    for (int epoch = ts.epoch; epoch < o->epochs && !stopped && !early; epoch++) {
        // (once: `epoch == ts.epoch` alone held at every epoch, as ts.epoch follows the loop)
        if (epoch == start_epoch && start_at_epoch_start) {
            // run.py evaluates val and test before the first epoch of a (re)start
            EvalResult ev;
            int r = evaluate_split(&model, &data, val_rows, n_val, o->val_batch_size, &ev, o, "val before training", 1);
            if (r < 0) goto done;
            if (r == 0) {
                fprintf(log, "{\"event\": \"eval\", \"split\": \"val\", \"epoch\": %d, \"global_step\": %lld, \"metric\": %.6g, \"loss\": %.6g}\n",
                        epoch, (long long)ts.global_step, ev.main_metric, ev.loss);
                e = (TrainEvent){.kind = TRAIN_EV_EVAL_BEFORE, .what = "val before training", .split = "val",
                                 .metric = ev.main_metric};
                emit(o, &e);
                eval_result_free(&ev);
            }
            if (r == 0 && n_test) {
                r = evaluate_split(&model, &data, test_rows, n_test, o->val_batch_size, &ev, o, "test before training", 1);
                if (r < 0) goto done;
                if (r == 0) {
                    fprintf(log, "{\"event\": \"eval\", \"split\": \"test\", \"epoch\": %d, \"global_step\": %lld, \"metric\": %.6g}\n",
                            epoch, (long long)ts.global_step, ev.main_metric);
                    e = (TrainEvent){.kind = TRAIN_EV_EVAL_BEFORE, .what = "test before training", .split = "test",
                                     .metric = ev.main_metric};
                    emit(o, &e);
                    eval_result_free(&ev);
                }
            }
            t_train = sd_now();  // the ETA counts the training steps (with their validations) only
        }
        acfg.lr = lr_schedule_at(&sched, epoch);
        int *order = (int *)malloc((size_t)n_train * sizeof(int));
        if (!order) { sd_errorf("out of memory"); goto done; }
        memcpy(order, train_rows, (size_t)n_train * sizeof(int));
        dataset_shuffle(order, n_train, o->seed, epoch);
        for (int step = ts.step_in_epoch; step < steps_per_epoch; step++) {
            if (stop_asked(o) || (o->max_steps && ts.global_step >= o->max_steps)) { stopped = 1; break; }
            int start = step * o->batch_size;
            int B = step == steps_per_epoch - 1 ? last_batch : o->batch_size;
            FusionInput in;
            float loss;
            params_zero_grads(&model.params);
            ts.global_step++;
            head_model_set_mode(&model, 1, 1);
            if (dataset_load_batch(&data, order + start, B, &in) || head_model_forward(&model, &in)) { free(order); goto done; }
            size_t nlog = (size_t)B * num_classes * (o->task == LABELS_SEGMENTATION ? data.mask_h * data.mask_w : 1);
            float *g = (float *)realloc(dlogits, nlog * sizeof(float));
            if (!g) { free(order); sd_errorf("out of memory"); goto done; }
            dlogits = g;
            memset(dlogits, 0, nlog * sizeof(float));
            if (batch_loss(&model, &data, B, &loss, dlogits) || head_model_backward(&model, dlogits)) { free(order); goto done; }
            if (adam_step(&adam, &model.params, &acfg)) { free(order); goto done; }
            ts.step_in_epoch = step + 1;
            fprintf(log, "{\"event\": \"step\", \"epoch\": %d, \"global_step\": %lld, \"loss\": %.6g, \"lr\": %.6g}\n", epoch,
                    (long long)ts.global_step, loss, acfg.lr);
            // ETA: the time per step so far (validations included) times the steps left (early stopping may end sooner)
            double spent = sd_now() - t_train, per_step = spent / (double)(ts.global_step - start_step);
            e = (TrainEvent){.kind = TRAIN_EV_STEP, .epoch = epoch + 1, .epochs = o->epochs, .step = step + 1,
                             .steps_per_epoch = steps_per_epoch, .global_step = ts.global_step,
                             .total_steps = total_steps, .first_step = ts.global_step == start_step + 1,
                             .loss = loss, .lr = acfg.lr, .seconds_per_step = per_step,
                             .seconds_left = per_step * (double)(total_steps - ts.global_step)};
            emit(o, &e);
            if (ts.global_step % eval_every == 0) {
                EvalResult ev;
                snprintf(what, sizeof(what), "val at step %lld", (long long)ts.global_step);
                if (evaluate_split(&model, &data, val_rows, n_val, o->val_batch_size, &ev, o, what, 0)) { free(order); goto done; }
                double metric = ev.main_metric;
                int improved = metric > ts.best_metric;  // run.py: strictly better
                fprintf(log, "{\"event\": \"eval\", \"split\": \"val\", \"epoch\": %d, \"global_step\": %lld, \"metric\": %.6g, \"loss\": %.6g, \"best\": %s}\n",
                        epoch + 1, (long long)ts.global_step, metric, ev.loss, improved ? "true" : "false");
                e = (TrainEvent){.kind = TRAIN_EV_VALIDATION, .what = what, .split = "val",
                                 .global_step = ts.global_step, .metric = metric, .improved = improved};
                emit(o, &e);
                eval_result_free(&ev);
                if (improved) {
                    ts.best_metric = metric;
                    ts.best_step = ts.global_step;
                    ts.no_improve = 0;
                    if (head_model_save(&model, best_path)) { free(order); goto done; }
                } else {
                    ts.no_improve++;
                }
                if (o->patience > 0 && ts.no_improve >= o->patience) { early = 1; break; }
            }
            fflush(log);
        }
        free(order);
        if (!stopped) {  // the epoch is complete: the schedule steps, the position moves on
            ts.epoch = epoch + 1;
            ts.step_in_epoch = 0;
        } else {
            ts.epoch = epoch;
        }
        if (checkpoint_save(path, &model, &adam, &ts)) goto done;
    }
    if (stopped) {
        e = (TrainEvent){.kind = TRAIN_EV_STOPPED, .global_step = ts.global_step};
        emit(o, &e);
        rc = stop_asked(o) ? TRAIN_STOPPED : 0;
        goto done;
    }
    e = (TrainEvent){.kind = TRAIN_EV_FINISHED, .early = early, .no_improve = ts.no_improve,
                     .global_step = ts.global_step};
    emit(o, &e);
    // final test with the best checkpoint; the MoE counters go on from the live ones (run.py), recorded for eval
    if (moe_counter_write(o->out_dir, &model)) goto done;
    if (n_test) {
        if (head_model_load(&model, best_path)) goto done;
        EvalResult ev;
        if (evaluate_split(&model, &data, test_rows, n_test, o->val_batch_size, &ev, o, "test (best checkpoint)", 0)) goto done;
        e = (TrainEvent){.kind = TRAIN_EV_TEST, .what = "test (best checkpoint)", .split = "test", .dir = o->out_dir, .result = &ev,
                         .labels = &labels, .metric = ev.main_metric};
        emit(o, &e);
        snprintf(path, sizeof(path), "%s/metrics.json", o->out_dir);
        int w = eval_result_write_json(&ev, &labels, "test", path);
        e.kind = TRAIN_EV_METRICS;
        e.path = path;
        if (!w) emit(o, &e);  // the CLI draws RUN/confusion_test.{json,png} here
        eval_result_free(&ev);
        if (w) goto done;
    }
    e = (TrainEvent){.kind = TRAIN_EV_DONE, .best_metric = ts.best_metric, .best_step = ts.best_step,
                     .path = best_path};
    emit(o, &e);
    rc = 0;
done:
    free(dlogits);
    if (log) fclose(log);
    json_free(&head_json);
    free(head_cfg_text);
    free(train_rows);
    free(val_rows);
    free(test_rows);
    adam_free(&adam);
    head_model_free(&model);
    dataset_close(&data);
    labels_free(&labels);
    return rc;
}
