// satdifuser predict: not implemented yet (issue 7).
#include <stdio.h>

#include "cli/cli.h"

int cmd_predict(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "satdifuser predict: not implemented yet (issue 7)\n");
    return 2;
}
