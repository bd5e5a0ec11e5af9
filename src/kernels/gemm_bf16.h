// The bf16 compute API is declared in kernels.h (section "bf16 compute"), gemm_bf16_run (it
// takes a GemmProblem) in kernels/gemm_internal.h. This header stays for the files that still
// include it (models/nn.h, cli/main.c, api/api.c).
#ifndef SD_GEMM_BF16_H
#define SD_GEMM_BF16_H

#include "kernels/kernels.h"

#endif
