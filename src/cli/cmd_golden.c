// satdifuser golden DIR...: runs every golden case under the folders.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "golden/golden.h"

static void golden_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser golden [--verbose] [--only TEXT] [--allow-unimplemented] DIR...\n\n"
            "Runs every golden case (a folder with case.json, weights.safetensors, tensors.safetensors)\n"
            "found under the folders, prints the max abs and max rel error of each compared tensor,\n"
            "and exits 1 if any case fails. A case whose module is not implemented counts as a failure\n"
            "unless --allow-unimplemented is given (then it is counted as skipped; `make test` uses this).\n"
            "  --only TEXT   run only the cases whose path contains TEXT\n"
            "  --verbose     print every compared tensor, captures included\n");
}

int cmd_golden(int argc, char **argv) {
    const char *dirs[256];
    int n = 0, verbose = 0, allow = 0;
    const char *only = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { golden_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "--allow-unimplemented")) allow = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (argv[i][0] == '-') { fprintf(stderr, "satdifuser golden: unknown option '%s'\n", argv[i]); golden_usage(stderr); return 2; }
        else if (n < 256) dirs[n++] = argv[i];
    }
    if (n == 0) { golden_usage(stderr); return 2; }
    GoldenSummary sum;
    if (golden_run_dirs(dirs, n, verbose, only, &sum)) {
        fprintf(stderr, "satdifuser golden: %s\n", sd_last_error());
        return 2;
    }
    printf("golden: %d passed, %d failed, %d not implemented\n", sum.passed, sum.failed, sum.not_implemented);
    if (sum.failed) return 1;
    if (sum.not_implemented && !allow) return 1;
    return 0;
}
