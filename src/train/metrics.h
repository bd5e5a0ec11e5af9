// Evaluation metrics exactly as the original's utils/val_logger.py.
// Equations and the quirks they keep: docs/training.md.
#ifndef SD_METRICS_H
#define SD_METRICS_H

#include <stdint.h>

// preds[n*HW + p] = argmax over c of logits (N, C, HW) (torch.argmax(dim=1): the first maximum;
// a NaN counts as the maximum).
void argmax_channels(int *preds, const float *logits, int N, int C, int HW);

// ---- Single-label classification (SingleLabelClsEvaluator) ----------------------
// conf (C x C, int64, row = true label, column = prediction, as sklearn's confusion_matrix)
// += one count per sample whose label is not ignore_index. Returns -1 on a label or
// prediction outside [0, C).
int cls_confusion_update(int64_t *conf, int C, const int64_t *labels, const int *preds, int64_t n,
                         int64_t ignore_index);

typedef struct {
    double accuracy;   // correct / counted samples (a fraction, not a percentage)
    double precision;  // macro: mean over ALL C classes of TP / (TP + FP + 1e-10)
    double recall;     // macro: mean over all classes of TP / (TP + FN + 1e-10)
    double f1;         // 2 P R / (P + R + 1e-10) of the macro averages (not the mean of per-class F1)
} ClsMetrics;
// Returns -1 if the matrix holds no samples (the original divides by zero).
int cls_metrics(const int64_t *conf, int C, ClsMetrics *out);

// ---- Multi-label classification (MultiLabelClsEvaluator) -------------------------
typedef struct {
    int64_t tp, fp, fn;
} MultiLabelCounts;
// Predictions are sigmoid(logit) > 0.5 in float32 (as torch.sigmoid); targets must be 0 or 1.
// Returns -1 on any other target value (sklearn rejects them).
int multilabel_update(MultiLabelCounts *counts, const float *logits, const float *targets, int64_t n);
typedef struct {
    double precision, recall, f1;  // micro averages, 0 where the denominator is 0 (zero_division=0)
} MultiLabelMetrics;
MultiLabelMetrics multilabel_metrics(const MultiLabelCounts *counts);

// ---- Segmentation (SegmentationEvaluator) -----------------------------------------
// conf (C x C, float32, row = PREDICTION, column = label: bincount(pred*C + label).view(C, C)).
// One call per batch: the batch's counts are exact integers, then added to the float32
// accumulator as the original does (sums past 2^24 round like the original's).
// Pixels with label == ignore_index are skipped; if a batch has no other pixel the original
// counts every pixel of the batch (possible only when ignore_index is in [0, C)), and so does
// this. Returns -1 on a label outside [0, C) that is not ignore_index (the original would crash
// or miscount), on a prediction outside [0, C), or out of memory.
int seg_confusion_update(float *conf, int C, const int *preds, const int64_t *labels, int64_t n,
                         int64_t ignore_index);

typedef struct {
    float miou, mf1, mprecision, mrecall;  // means over all C classes of the per-class values, in %
    double macc;                           // overall pixel accuracy in % (the original's "mAcc")
} SegMetrics;
// Per-class values in % (each array C floats, may be NULL), float32 arithmetic as the original:
//   iou = I / (U + 1e-6) * 100 with I = diag, U = rowsum + colsum - I
//   precision = I / (colsum + 1e-6) * 100, recall = I / (rowsum + 1e-6) * 100   (the original's names:
//   with rows = predictions its "precision" is the per-class recall and vice versa)
//   f1 = 2 precision recall / (precision + recall + 1e-6)
void seg_metrics(const float *conf, int C, float *iou, float *f1, float *precision, float *recall,
                 SegMetrics *out);

#endif
