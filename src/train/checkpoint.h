// A training checkpoint: everything needed to continue a run where it stopped.
// One safetensors file, written atomically:
//   <name>                    every head tensor under its state_dict name (as best.safetensors)
//   adam.exp_avg.<name>       Adam's first moment of each trainable tensor
//   adam.exp_avg_sq.<name>    its second moment
//   adam.step.<name>          its step count (I64 scalar; 0 = never updated)
//   metadata: epoch, step_in_epoch, global_step, best_metric, best_step, no_improve
// The MoE call counters are not saved (the original's non-persistent buffer):
// a resumed run restarts them at 0, as the original does.
#ifndef SD_TRAIN_CHECKPOINT_H
#define SD_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "heads/head.h"
#include "train/adam.h"

typedef struct {
    int epoch;           // the epoch to run next (or the one in progress)
    int step_in_epoch;   // batches of that epoch already done
    int64_t global_step;
    double best_metric;
    int64_t best_step;
    int no_improve;      // evaluations since the best
} TrainState;

int checkpoint_save(const char *path, const HeadModel *m, const Adam *adam, const TrainState *ts);
int checkpoint_load(const char *path, HeadModel *m, Adam *adam, TrainState *ts);

// RUN/moe_counter.json: the MoE call counters (one per scale) as train's final test
// starts, i.e. the live counters at the end of training. run.py's final test loads the
// best weights into the live model, so its non-persistent global_step buffers keep
// counting from there; `eval` and `predict` continue from this file by default to
// reproduce that test. Written only for the released counter ("calls"); with
// "train_steps" the counters travel in the weights file's metadata instead.
int moe_counter_write(const char *run_dir, const HeadModel *m);
// Sets m's counters from RUN/moe_counter.json. *found = 0 (and m unchanged) when m is
// not a "calls" MoE or the file is absent; an unreadable or malformed file is an error.
int moe_counter_read(const char *run_dir, HeadModel *m, int *found);

#endif
