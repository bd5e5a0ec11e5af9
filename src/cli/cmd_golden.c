// satdifuser golden DIR...: runs every golden case under the folders.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "golden/golden.h"

static void golden_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser golden [--verbose] [--only TEXT] [--allow-unimplemented] [--allow-empty] DIR...\n\n"
            "Runs every golden case (a folder with case.json, weights.safetensors - or a PyTorch weights.bin -\n"
            "and tensors.safetensors)\n"
            "found under the folders, prints the max abs and max rel error of each compared tensor,\n"
            "and exits 1 if any case fails. A case whose module is not implemented counts as a failure\n"
            "unless --allow-unimplemented is given (then it is counted as skipped; `make test` uses this).\n"
            "A folder that cannot be read, or a DIR under which no case ran, is a failure (exit 1)\n"
            "unless --allow-empty is given for the latter.\n"
            "  --only TEXT   run only the cases whose path contains TEXT\n"
            "  --verbose     print every compared tensor, captures included\n");
}

int cmd_golden(int argc, char **argv) {
    const char *dirs[256];
    int n = 0, verbose = 0, allow = 0, allow_empty = 0;
    const char *only = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { golden_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "--allow-unimplemented")) allow = 1;
        else if (!strcmp(argv[i], "--allow-empty")) allow_empty = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (argv[i][0] == '-') { fprintf(stderr, "satdifuser golden: unknown option '%s'\n", argv[i]); golden_usage(stderr); return 2; }
        else if (n < 256) dirs[n++] = argv[i];
    }
    if (n == 0) { golden_usage(stderr); return 2; }
    // One folder at a time, so that a DIR under which no case ran (a typo, an --only that
    // matches nothing there, a folder read wrongly) is seen even when another DIR has cases.
    GoldenSummary sum = {0, 0, 0};
    int empty = 0;
    for (int k = 0; k < n; k++) {
        GoldenSummary one;
        if (golden_run_dirs(&dirs[k], 1, verbose, only, &one)) {
            fprintf(stderr, "satdifuser golden: %s\n", sd_last_error());
            return 2;
        }
        if (one.passed + one.failed + one.not_implemented == 0) {
            printf("EMPTY  %s: no golden case ran%s\n", dirs[k], only ? " (with --only)" : "");
            empty++;
        }
        sum.passed += one.passed;
        sum.failed += one.failed;
        sum.not_implemented += one.not_implemented;
    }
    printf("golden: %d passed, %d failed, %d not implemented\n", sum.passed, sum.failed, sum.not_implemented);
    if (sum.failed) return 1;
    if (empty && !allow_empty) {
        fprintf(stderr, "satdifuser golden: %d of the folders had no case that ran (--allow-empty accepts this)\n", empty);
        return 1;
    }
    if (sum.not_implemented && !allow) return 1;
    return 0;
}
