// Losses of the original training (utils/tasks.py set_criterion): cross-entropy
// with an ignore index (single-label classification and segmentation) and
// BCE-with-logits (multi-label). Each returns the mean loss and ACCUMULATES
// (+=) d loss / d logits into dlogits (may be NULL), ready for the head's
// backward. Results do not depend on the thread count. Equations: docs/training.md.
#ifndef SD_LOSSES_H
#define SD_LOSSES_H

#include <stdint.h>

// nn.CrossEntropyLoss(ignore_index) with reduction "mean".
// logits (N, C, HW) (HW = 1 for (N, C) classification logits, H*W for per-pixel logits, softmax over C),
// labels (N, HW) int64, labels[n*HW + p] in [0, C) or == ignore_index.
//   loss = sum over kept positions of (logsumexp_c logits - logits[label]) / (number kept)
//   dlogits += (softmax - onehot(label)) / (number kept) at kept positions, nothing at ignored ones.
// When every position is ignored the loss is NaN (0/0, as PyTorch) and no gradient is added.
// Returns -1 (with a message) on a label outside [0, C) that is not ignore_index, or out of memory.
int cross_entropy_loss(float *loss, float *dlogits, const float *logits, const int64_t *labels, int N, int C, int HW,
                       int64_t ignore_index);

// nn.BCEWithLogitsLoss() (mean over all n elements), numerically stable:
//   loss = mean( max(x, 0) - x t + log(1 + exp(-|x|)) );  dlogits += (sigmoid(x) - t) / n.
// n = 0 gives a NaN loss (mean of nothing, as PyTorch). Returns -1 only when out of memory.
int bce_with_logits_loss(float *loss, float *dlogits, const float *logits, const float *targets, int64_t n);

#endif
