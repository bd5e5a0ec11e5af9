// Golden handler for module "ddim_inversion": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_ddim_inversion(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
