// Shared by the head and head_train golden handlers (defined in case_head.c).
#ifndef SD_GOLDEN_HEAD_INPUTS_H
#define SD_GOLDEN_HEAD_INPUTS_H

#include "fusion/fuser.h"
#include "golden/golden.h"

// Loads input.feat.<i>.<s> into `in` (tensors[i * S + s] keep the data alive).
int golden_head_inputs(GoldenCase *gc, const FeatureLayout *fl, FusionInput *in, Tensor *tensors);

#endif
