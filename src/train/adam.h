// Adam as torch.optim.Adam (and AdamW as torch.optim.AdamW) over the heads'
// parameter registry (fusion/params.h: ParamSet, the C state_dict). The
// optimiser keeps its own state (m, v, step) per registered tensor; the
// registry keeps the values, gradients and has_grad flags. Equations:
// docs/training.md.
//
// Gradients are cleared to "none" before each step (torch zero_grad(set_to_none=True)):
// params_zero_grads() zeroes every gradient and clears has_grad; a backward that
// touches a parameter accumulates into grad and sets has_grad = 1. Adam skips a
// parameter whose has_grad is 0: its value, moments and step count stay as they
// are (an MoE expert no batch item chose). A parameter that took part in the
// graph but got an all-zero gradient has has_grad = 1 and IS updated (its
// moments decay), as in PyTorch. Buffers and counters (BatchNorm running
// statistics, num_batches_tracked) are never touched.
#ifndef SD_ADAM_H
#define SD_ADAM_H

#include <stdint.h>

#include "fusion/params.h"

typedef struct {
    double lr;            // set it from the schedule before each step (torch's param_group["lr"])
    double beta1, beta2;  // 0.9, 0.999
    double eps;           // 1e-8
    double weight_decay;  // Adam: L2 term added to the gradient; AdamW: decoupled decay
    int decoupled;        // 0 = Adam (torch.optim.Adam), 1 = AdamW (torch.optim.AdamW)
} AdamConfig;

// Adam with torch defaults (betas 0.9/0.999, eps 1e-8) and the given lr and L2 weight decay.
AdamConfig adam_config_default(double lr, double weight_decay);

// torch's optimizer.state[p] for one registered tensor (PARAM_WEIGHT only; NULL moments otherwise).
typedef struct {
    float *m;      // exp_avg, numel floats, zero at start
    float *v;      // exp_avg_sq, numel floats, zero at start
    int64_t step;  // steps this tensor has taken
} AdamState;

typedef struct {
    int count;         // ParamSet count at adam_init; state[i] belongs to ps->items[i]
    AdamState *state;  // count entries
} Adam;

// Allocates zeroed moments for every PARAM_WEIGHT of ps (register every parameter first).
// -1 with a message when out of memory.
int adam_init(Adam *opt, const ParamSet *ps);
void adam_free(Adam *opt);

// One optimiser step over every PARAM_WEIGHT with a gradient (grad != NULL, has_grad == 1),
// with the float32 arithmetic of torch 1.13's single-tensor Adam:
//   step += 1;  g = grad (+ wd * p for Adam);  m = m*b1 + g*(1-b1);  v = v*b2 + (1-b2)*g*g
//   p += -(lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// AdamW first does p *= 1 - lr*wd and adds nothing to g.
// Returns -1 if ps no longer matches the set adam_init saw.
int adam_step(Adam *opt, ParamSet *ps, const AdamConfig *cfg);

#endif
