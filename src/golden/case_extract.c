// Golden handler for module "extract": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_extract(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
