// satdifuser eval: not implemented yet (issue 7).
#include <stdio.h>

#include "cli/cli.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "satdifuser eval: not implemented yet (issue 7)\n");
    return 2;
}
