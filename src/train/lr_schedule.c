// WarmupCosineDecayScheduler.get_lr of the original, in double like Python.
#include "train/lr_schedule.h"

#include <math.h>

#include "core/error.h"

LrSchedule lr_schedule_default(double max_lr, int total_epochs) {
    LrSchedule s = {max_lr, 1e-5, 2e-5, 5, total_epochs};
    return s;
}

int lr_schedule_check(const LrSchedule *s) {
    if (s->warmup_epochs < 0 || s->total_epochs < 0)
        return sd_errorf("lr schedule: warmup_epochs %d and total_epochs %d must be >= 0", s->warmup_epochs,
                         s->total_epochs);
    if (s->total_epochs == s->warmup_epochs)
        return sd_errorf("lr schedule: total_epochs == warmup_epochs == %d divides by zero at the last epoch",
                         s->total_epochs);
    return 0;
}

double lr_schedule_at(const LrSchedule *s, int epoch) {
    int e = epoch >= s->total_epochs ? s->total_epochs : epoch;  // past the end: held at the last value
    if (e < s->warmup_epochs)
        return s->init_lr + (s->max_lr - s->init_lr) * ((double)e / (double)s->warmup_epochs);
    double progress = (double)(e - s->warmup_epochs) / (double)(s->total_epochs - s->warmup_epochs);
    double cosine = 0.5 * (1.0 + cos(3.141592653589793 * progress));
    return s->min_lr + (s->max_lr - s->min_lr) * cosine;
}
