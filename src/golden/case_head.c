// Golden handler for module "head": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_head(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
