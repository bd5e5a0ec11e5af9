// satdifuser train: not implemented yet (issue 7).
#include <stdio.h>

#include "cli/cli.h"

int cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "satdifuser train: not implemented yet (issue 7)\n");
    return 2;
}
