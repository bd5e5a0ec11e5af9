// extract --check (extract_check.h): lists what an extract run would do, computing nothing. The
// state of each file is the library's (extract_file_state, models/extract_job.h); this prints it.
#include <stdio.h>

#include "cli/extract_check.h"
#include "core/error.h"
#include "models/extract_job.h"

int extract_check(const char *out, const char *const *names, int n, int shard_k, int shard_n,
                  const FeatureMeta *expect) {
    int done = 0, missing = 0, partial = 0, other = 0;
    char target[8192], temp[8192];
    for (int i = 0; i < n; i++) {
        if (i % shard_n != shard_k) continue;
        int alive = 0;
        ExtractFileState state = EXTRACT_FILE_OTHER;
        if (extract_target_path(out, names[i], target, sizeof(target)) == 0)
            state = extract_file_state(target, expect, temp, sizeof(temp), &alive);
        switch (state) {
        case EXTRACT_FILE_DONE: done++; break;
        case EXTRACT_FILE_OTHER:
            other++;
            printf("other settings or broken: %s: %s\n", names[i], sd_last_error());
            break;
        case EXTRACT_FILE_PARTIAL:
            partial++;
            printf("half-written: %s (%s, %s)\n", names[i], temp, alive ? "its writer is running" : "writer gone");
            break;
        default:
            missing++;
            printf("missing: %s\n", names[i]);
        }
    }
    printf("check %s%s: %d done, %d missing, %d half-written, %d made with other settings or broken\n", out,
           shard_n > 1 ? " (this shard)" : "", done, missing, partial, other);
    return missing || partial || other ? 1 : 0;
}
