// extract --shard auto: this process's share of an array job on an existing scheduler.
#ifndef SD_CLI_SHARD_H
#define SD_CLI_SHARD_H

// K/N from SLURM's array variables: K = (SLURM_ARRAY_TASK_ID - MIN) / STEP, N = the task count
// (SLURM_ARRAY_TASK_COUNT, or (MAX - MIN) / STEP + 1 from SLURM_ARRAY_TASK_MIN / _MAX / _STEP).
// Fails with a message naming the variable when they are missing or do not make K/N (an array
// given as a list with gaps, "--array=1,3,7", has no K/N: use --shard K/N).
int shard_from_slurm(int *k, int *n);

#endif
