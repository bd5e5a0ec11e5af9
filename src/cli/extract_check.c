// extract --check (extract_check.h): lists what an extract run would do, computing nothing.
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/extract_check.h"
#include "core/error.h"

// A "<target>.tmp.<pid>" beside the target (extract writes there, then renames); *alive = its
// writer is still running.
static int find_temp(const char *target, char *found, size_t size, int *alive) {
    char dir[8192];
    snprintf(dir, sizeof(dir), "%s", target);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? target + (slash - dir) + 1 : target;
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int hit = 0;
    while (!hit && (e = readdir(d))) {
        if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".tmp.", 5) != 0) continue;
        long pid = strtol(e->d_name + blen + 5, NULL, 10);
        *alive = pid > 0 && kill((pid_t)pid, 0) == 0;
        snprintf(found, size, "%s/%s", dir, e->d_name);
        hit = 1;
    }
    closedir(d);
    return hit;
}

int extract_check(const char *out, const char *const *names, int n, int shard_k, int shard_n,
                  const FeatureMeta *expect) {
    int done = 0, missing = 0, partial = 0, other = 0;
    char target[8192], temp[8192];
    for (int i = 0; i < n; i++) {
        if (i % shard_n != shard_k) continue;
        snprintf(target, sizeof(target), "%s/%s.safetensors", out, names[i]);
        struct stat sb;
        int alive = 0;
        if (stat(target, &sb) == 0) {
            if (feature_cache_validate(target, expect) == 0) {
                done++;
            } else {
                other++;
                printf("other settings or broken: %s: %s\n", names[i], sd_last_error());
            }
        } else if (find_temp(target, temp, sizeof(temp), &alive)) {
            partial++;
            printf("half-written: %s (%s, %s)\n", names[i], temp, alive ? "its writer is running" : "writer gone");
        } else {
            missing++;
            printf("missing: %s\n", names[i]);
        }
    }
    printf("check %s%s: %d done, %d missing, %d half-written, %d made with other settings or broken\n", out,
           shard_n > 1 ? " (this shard)" : "", done, missing, partial, other);
    return missing || partial || other ? 1 : 0;
}
