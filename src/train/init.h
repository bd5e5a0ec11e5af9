// Initial values of a head's parameters, as the original modules' constructors
// draw them: Detectron2 BottleneckBlock convs (bottleneck_layers.*, experts.*)
// c2_msra_fill = kaiming_normal(fan_out, relu), no bias; every other conv and
// Linear PyTorch's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in));
// norm scales 1, shifts 0, BN running stats (0, 1), mixing weights 1, MoE
// temperature its configured value. The draws are ours (seeded), not torch's.
#ifndef SD_TRAIN_INIT_H
#define SD_TRAIN_INIT_H

#include <stdint.h>

#include "fusion/params.h"

void head_init_weights(ParamSet *ps, uint64_t seed);

#endif
