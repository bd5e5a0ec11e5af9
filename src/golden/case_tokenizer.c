// Golden handler for module "tokenizer": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_tokenizer(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
