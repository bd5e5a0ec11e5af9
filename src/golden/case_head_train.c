// Golden handler for module "head_train": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_head_train(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
