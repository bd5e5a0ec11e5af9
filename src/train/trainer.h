// The training loop of the original run.py, on cached features:
//   for epoch in [start, epochs):  (lr from the per-epoch warmup + cosine schedule)
//     before the first epoch: evaluate on val and test (as run.py does; MoE counters advance)
//     for each batch of the seeded shuffled train split:
//       zero_grad(set_to_none) -> forward -> loss -> backward -> Adam step
//       every eval_every steps: evaluate on val; keep the best; early-stop after `patience` evaluations
//       without improvement
//   finally: the best checkpoint evaluated on test.
// A run folder holds everything: head_config.json, train_options.json, checkpoint.safetensors
// (weights + Adam state + loop position, written atomically after every epoch and on SIGINT/SIGTERM),
// best.safetensors (the best head, original state_dict names), log.jsonl, metrics.json.
#ifndef SD_TRAIN_TRAINER_H
#define SD_TRAIN_TRAINER_H

#include <stdint.h>

#include "heads/head.h"
#include "io/labels.h"
#include "train/dataset.h"

struct TrainEvent;
// Receives train_run's progress (the library prints nothing; the CLI's cmd_train.c prints these).
typedef void (*TrainEventFn)(const struct TrainEvent *e, void *user);

typedef struct {
    const char *features_dir, *labels_path, *out_dir;
    LabelTask task;
    const char *fuser;           // gw, lw, moe, concat, single
    int batch_size, val_batch_size;
    int epochs;                  // max_train_epochs (40)
    int warmup_epochs;           // 5
    double lr, min_lr;           // 0.01, 1e-5
    double weight_decay;         // Adam L2 (0; 1e-4 for Chesapeake)
    int eval_every;              // steps between validations (100; capped at one epoch as run.py)
    int patience;                // evaluations without improvement before stopping (10; 0 = never)
    uint64_t seed;
    int ignore_value;            // segmentation mask value to ignore (255)
    int num_classes;             // 0: from the labels
    int resume;                  // continue from out_dir/checkpoint.safetensors
    int force;                   // start over in a folder that holds a run (its run files are deleted)
    int allow_mixed_preprocessing;  // feature files made with other settings: a warning, not an error
    int max_steps;               // stop after this many steps in total (0: no limit; tests)
    TrainEventFn on_event;       // progress and results as they happen (NULL: none); see TrainEvent
    void *event_user;            // passed to on_event
    // When not NULL: train_run stops once *stop is non-zero (set by a signal handler, another thread):
    // the loop finishes its step (a validation that step runs included; the evaluations before the
    // first epoch stop between batches), saves the checkpoint and returns TRAIN_STOPPED.
    const volatile int *stop;
    const char *head_json;       // extra head config keys as a JSON object text (projection_dim, num_experts, ...)
} TrainOptions;

void train_options_defaults(TrainOptions *o);

typedef struct {
    LabelTask task;
    double main_metric;          // accuracy (cls), micro F1 (multilabel), mIoU (seg): what run.py selects on
    int num_classes;
    double accuracy, precision, recall, f1;   // cls / multilabel
    double miou, mf1, macc;                   // seg
    float *per_class_iou, *per_class_f1;      // seg, num_classes each (owned)
    int64_t *confusion;                       // cls: C x C (row = label)
    float *seg_confusion;                     // seg: C x C (row = prediction, as the original)
    double loss;                              // mean loss over the split
    int count;                                // images evaluated
} EvalResult;

void eval_result_free(EvalResult *r);

// What train_run reports, in this order (kinds that do not apply are skipped):
typedef enum {
    TRAIN_EV_PLAN,          // the splits and the schedule: n_train, n_val, n_test, steps_per_epoch, batch_size,
                            // merged_last_batch, epochs, dir (the run folder)
    TRAIN_EV_CHECKING,      // the feature files are being checked: n_files in dir (the features folder), seg
    TRAIN_EV_RESUMED,       // a checkpoint was loaded: epoch and step (0-based: the position), global_step, dir
    TRAIN_EV_EVAL_BATCH,    // an evaluation `what` starts batch `batch` (1-based) of n_batches;
                            // seconds_left: its estimate (from batch 2 on; -1 before)
    TRAIN_EV_EVAL_BEFORE,   // the evaluation `what` before the first epoch of a (re)start is done: split, metric
    TRAIN_EV_STEP,          // a training step is done: epoch (1-based) of epochs, step (1-based) of
                            // steps_per_epoch, global_step of total_steps, loss, lr, seconds_per_step,
                            // seconds_left; first_step: the first of this start
    TRAIN_EV_VALIDATION,    // the validation `what` after a step: global_step, metric, improved (best so far: saved)
    TRAIN_EV_STOPPED,       // the loop stopped (*stop or max_steps) at global_step; the checkpoint is saved
    TRAIN_EV_FINISHED,      // the loop ended: early (early stopping after no_improve evaluations) or all
                            // epochs run (global_step steps)
    TRAIN_EV_TEST,          // the best checkpoint on the test split: result, labels (metrics.json not yet written)
    TRAIN_EV_METRICS,       // the test result is written to `path` (metrics.json): result, labels, dir (the run)
    TRAIN_EV_DONE,          // the best validation: best_metric at best_step; path: the best weights
    TRAIN_EV_WARNING,       // after CHECKING: `what` (feature files made with other settings, allowed by
                            // allow_mixed_preprocessing)
} TrainEventKind;

typedef struct TrainEvent {
    TrainEventKind kind;
    const char *what;                    // EVAL_BATCH, EVAL_BEFORE, VALIDATION: the evaluation's name
    const char *dir, *path, *split;
    int n_train, n_val, n_test, steps_per_epoch, batch_size, merged_last_batch, epochs, n_files, seg;
    int epoch, step, first_step, batch, n_batches, improved, early, no_improve;
    int64_t global_step, total_steps, best_step;
    double loss, lr, seconds_per_step, seconds_left, metric, best_metric;
    const EvalResult *result;
    const LabelSet *labels;
} TrainEvent;
// Evaluates the model (eval mode) on rows[0..n) in batches.
int evaluate(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out);
// Writes the result as JSON (file).
int eval_result_write_json(const EvalResult *r, const LabelSet *labels, const char *split, const char *path);

// 0: done; TRAIN_STOPPED: stopped by *o->stop (checkpoint saved, --resume continues); SD_FAIL: error.
// Refuses, before reading anything, a folder that holds a run (head_config.json, checkpoint, log, ...)
// unless o->resume or o->force.
enum { TRAIN_STOPPED = 1 };
int train_run(const TrainOptions *o);

#endif
