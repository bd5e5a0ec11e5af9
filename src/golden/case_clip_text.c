// Golden handler for module "clip_text": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_clip_text(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
