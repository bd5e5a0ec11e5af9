// satdifuser extract: not implemented yet (issue 5).
#include <stdio.h>

#include "cli/cli.h"

int cmd_extract(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "satdifuser extract: not implemented yet (issue 5)\n");
    return 2;
}
