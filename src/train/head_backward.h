// Backward pass of the whole trainable model (heads/head.h: fuser + task head)
// and of the two heads on their own. Same conventions as fusion_backward.h:
// parameter gradients accumulate into Param->grad with has_grad = 1 on every
// parameter that received one; input gradients accumulate; NULL = not wanted.
//
// Training step (run.py's inner loop):
//   params_zero_grads(&m.params);                     // optimizer.zero_grad(set_to_none=True)
//   head_model_set_mode(&m, 1, 1);                    // model.train()
//   head_model_forward(&m, &in);                      // in's feature tensors must stay alive until
//                                                     // the backward: the MoE gate reads them there
//   memset(dlogits, 0, ...);
//   cross_entropy_loss(&loss, dlogits, head_model_logits(&m), labels, ...);   // or bce_with_logits_loss
//   head_model_backward(&m, dlogits);
//   adam_step(&opt, &m.params, &adam_cfg);            // skips parameters with has_grad == 0
#ifndef SD_TRAIN_HEAD_BACKWARD_H
#define SD_TRAIN_HEAD_BACKWARD_H

#include "heads/head.h"
#include "fusion/fuser.h"

// Given dlogits = d loss / d logits of the last TRAINING forward (the shape of
// head_model_logits: (B, classes) or (B, classes, out_h, out_w)), accumulates
// every parameter's gradient into its Param->grad (allocating the gradient
// buffers on first use) and sets has_grad = 1 on each parameter that received
// one (an MoE expert that no batch item chose in top-k receives none). Does not
// change parameters, BatchNorm statistics or the MoE counters. -1 with a
// message if the last forward was not a training forward.
int head_model_backward(HeadModel *m, const float *dlogits);
// The same, and dfeat (may be NULL) += d loss / d input features.
int head_model_backward_ex(HeadModel *m, const float *dlogits, FusionGrad *dfeat);

// Linear classifier: dlogits (B, classes) -> dfused[s] += (B, P, H_s, W_s).
int linear_head_backward(LinearHead *h, const float *dlogits, float *const *dfused);
// UPerNet after a training forward (BatchNorm batch statistics, the Dropout2d
// mask of that forward when p > 0): dlogits (B, classes, out_h, out_w) ->
// dfused[s] += (B, P, H_s, W_s).
int uper_head_backward(UperHead *u, const float *dlogits, float *const *dfused);

#endif
