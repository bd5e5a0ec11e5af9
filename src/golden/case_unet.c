// Golden handler for module "unet": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_unet(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
