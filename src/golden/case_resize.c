// Golden handler for module "resize": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_resize(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
