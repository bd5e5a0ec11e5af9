// extract --shard auto from SLURM's job-array variables (shard.h). sbatch --array=0-7 runs eight
// copies with SLURM_ARRAY_TASK_ID = 0..7, SLURM_ARRAY_TASK_MIN = 0, _MAX = 7, _COUNT = 8,
// _STEP = 1; --array=1-15:2 gives IDs 1, 3, ..., 15 (STEP 2, COUNT 8).
#include <stdlib.h>
#include <string.h>

#include "cli/shard.h"
#include "core/error.h"

// The variable as a whole number 0 .. 2^31-1; 0 if unset (*set = 0), -1 if not a number.
static int env_int(const char *name, long *v, int *set) {
    const char *s = getenv(name);
    *set = s && s[0];
    if (!*set) return 0;
    char *end = NULL;
    *v = strtol(s, &end, 10);
    if (*end || *v < 0 || *v > 2147483647L) return sd_errorf("--shard auto: %s='%s' is not a whole number", name, s);
    return 0;
}

int shard_from_slurm(int *k, int *n) {
    long id, lo, hi, count, step = 1;
    int has_id, has_lo, has_hi, has_count, has_step;
    if (env_int("SLURM_ARRAY_TASK_ID", &id, &has_id) || env_int("SLURM_ARRAY_TASK_MIN", &lo, &has_lo) ||
        env_int("SLURM_ARRAY_TASK_MAX", &hi, &has_hi) || env_int("SLURM_ARRAY_TASK_COUNT", &count, &has_count) ||
        env_int("SLURM_ARRAY_TASK_STEP", &step, &has_step))
        return -1;
    if (!has_id)
        return sd_errorf("--shard auto: SLURM_ARRAY_TASK_ID is not set (not a SLURM array job: sbatch --array=0-N; "
                         "elsewhere give --shard K/N)");
    if (!has_lo) lo = 0;
    if (!has_step || step < 1) step = 1;
    if (!has_count && !has_hi)
        return sd_errorf("--shard auto: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set");
    long span = has_hi ? (hi - lo) / step + 1 : count;
    if (!has_count) count = span;
    if (id < lo || (has_hi && id > hi) || (id - lo) % step)
        return sd_errorf("--shard auto: SLURM_ARRAY_TASK_ID %ld is not one of MIN %ld, MIN + STEP %ld, ... MAX %ld", id,
                         lo, step, has_hi ? hi : lo + (count - 1) * step);
    if (has_hi && (span != count || (hi - lo) % step))
        return sd_errorf("--shard auto: the array (MIN %ld, MAX %ld, STEP %ld, COUNT %ld) is not evenly spaced "
                         "(sbatch --array=a-b or a-b:s); give --shard K/N",
                         lo, hi, step, count);
    if (count < 1 || (id - lo) / step >= count)
        return sd_errorf("--shard auto: task %ld of an array of %ld tasks", (id - lo) / step, count);
    *k = (int)((id - lo) / step);
    *n = (int)count;
    return 0;
}
