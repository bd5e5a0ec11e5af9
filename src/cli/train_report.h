// What the CLI prints of training and evaluation results (the library returns them; it prints nothing).
#ifndef SD_CLI_TRAIN_REPORT_H
#define SD_CLI_TRAIN_REPORT_H

#include "train/trainer.h"

// A readable table of an evaluation on stdout (cmd_train.c): train's final test and `satdifuser eval`.
void eval_result_print(const EvalResult *r, const LabelSet *labels, const char *split);
// figures_after_eval / figures_after_train (figures.h), saying "figure: PATH" on stdout or a warning on
// stderr (the run itself is done).
void report_figures_after_eval(const char *run_dir, const char *split, const EvalResult *ev, const LabelSet *labels);
void report_figures_after_train(const char *run_dir);

#endif
