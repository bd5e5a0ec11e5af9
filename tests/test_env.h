// The environment settings of the command, for test and bench programs: the library reads no
// environment (the command applies $SATDIFUSER_ISA and $SATDIFUSER_THREADS in src/cli/main.c), so a
// program that wants them - `SATDIFUSER_ISA=avx2 make bench`, run_cross.sh's SATDIFUSER_THREADS=1 -
// applies them itself with test_env_apply(), first thing in main.
#ifndef SD_TEST_ENV_H
#define SD_TEST_ENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"

// $SATDIFUSER_ISA as the process's path (runtime.h: sd_isa_set_default), then $SATDIFUSER_THREADS
// (unset: every core). Returns the thread count in use, or -1 after printing what is wrong.
static inline int test_env_apply(void) {
    const char *isa = getenv("SATDIFUSER_ISA"), *threads = getenv("SATDIFUSER_THREADS");
    if (isa && *isa) {
        int k = ISA_SCALAR;
        while (k <= ISA_REFERENCE && strcmp(isa, sd_isa_name((SdIsa)k))) k++;
        if (k > ISA_REFERENCE || sd_isa_set_default(k)) {
            fprintf(stderr, "SATDIFUSER_ISA='%s': not a path this CPU runs (reference, scalar, ... up to %s)\n", isa,
                    sd_isa_name(sd_isa_best()));
            return -1;
        }
    }
    int n = 0;
    if (threads && *threads) {
        char *end = NULL;
        long v = strtol(threads, &end, 10);
        if (*end || v < 1 || v > 4096) {
            fprintf(stderr, "SATDIFUSER_THREADS='%s': expected a whole number from 1 to 4096\n", threads);
            return -1;
        }
        n = (int)v;
    }
    return sd_threads_set(n);
}

#endif
