// Golden handler for module "vae_encoder": not implemented yet (its issue is open).
#include "golden/golden.h"

int golden_case_vae_encoder(GoldenCase *gc) {
    (void)gc;
    return GOLDEN_NOT_IMPLEMENTED;
}
