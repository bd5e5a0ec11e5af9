// The per-epoch learning-rate schedule of the original (utils/lr_scheduler.py,
// WarmupCosineDecayScheduler), stepped once per epoch from epoch 0:
//   e = min(epoch, total_epochs)
//   e <  warmup: lr = init_lr + (max_lr - init_lr) * e / warmup          (init_lr = 2e-5)
//   e >= warmup: lr = min_lr + (max_lr - min_lr) * 0.5 * (1 + cos(pi * (e - warmup) / (total - warmup)))
// So the first epoch (0) trains at 2e-5, max_lr is reached at epoch `warmup`,
// and from epoch `total` on the lr stays at min_lr. Equations: docs/training.md.
#ifndef SD_LR_SCHEDULE_H
#define SD_LR_SCHEDULE_H

typedef struct {
    double max_lr;      // the config's lr (0.01 in every released config)
    double min_lr;      // 1e-5
    double init_lr;     // 2e-5, hard-coded in the original
    int warmup_epochs;  // 5
    int total_epochs;   // max_train_epochs, 40
} LrSchedule;

// The released configs' values: warmup 5, min_lr 1e-5, init_lr 2e-5.
LrSchedule lr_schedule_default(double max_lr, int total_epochs);
// 0 if the schedule can be evaluated at every epoch >= 0, else -1 with a message
// (negative values; total == warmup, where the original divides by zero).
int lr_schedule_check(const LrSchedule *s);
// The lr of a (0-based) epoch >= 0.
double lr_schedule_at(const LrSchedule *s, int epoch);

#endif
