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
    int quiet;                   // no progress
    int plain_progress;          // progress as plain lines (stderr is a file or a pipe), not one \r line
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
// Evaluates the model (eval mode) on rows[0..n) in batches.
int evaluate(HeadModel *m, Dataset *d, const int *rows, int n, int batch, EvalResult *out);
// Writes the result as JSON (file) and prints a readable table to stdout.
int eval_result_write_json(const EvalResult *r, const LabelSet *labels, const char *split, const char *path);
void eval_result_print(const EvalResult *r, const LabelSet *labels, const char *split);

// 0: done; TRAIN_STOPPED: stopped by g_train_stop (checkpoint saved, --resume continues); SD_FAIL: error.
// Refuses, before reading anything, a folder that holds a run (head_config.json, checkpoint, log, ...)
// unless o->resume or o->force.
enum { TRAIN_STOPPED = 1 };
int train_run(const TrainOptions *o);

// Set (to the signal number) by the CLI's SIGINT/SIGTERM handler: the loop finishes its step (a
// validation that step runs included; the evaluations before the first epoch stop between batches),
// saves the checkpoint and returns TRAIN_STOPPED.
extern volatile int g_train_stop;

#endif
