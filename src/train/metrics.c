// Metrics of utils/val_logger.py. Single-label and multi-label metrics are
// computed in double (numpy float64 / sklearn); segmentation metrics in float32
// (the original's torch.float32 confusion matrix).
#include "train/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

void argmax_channels(int *preds, const float *logits, int N, int C, int HW) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int p = 0; p < HW; p++) {
            const float *x = logits + (int64_t)n * C * HW + p;
            int best = 0;
            float bv = x[0];
            for (int c = 1; c < C && !isnan(bv); c++) {
                float v = x[(int64_t)c * HW];
                if (v > bv || isnan(v)) {
                    bv = v;
                    best = c;
                }
            }
            preds[(int64_t)n * HW + p] = best;
        }
    }
}

int cls_confusion_update(int64_t *conf, int C, const int64_t *labels, const int *preds, int64_t n,
                         int64_t ignore_index) {
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == ignore_index) continue;
        if (labels[i] < 0 || labels[i] >= C || preds[i] < 0 || preds[i] >= C)
            return sd_errorf("cls_confusion_update: sample %lld has label %lld / prediction %d outside [0, %d)",
                             (long long)i, (long long)labels[i], preds[i], C);
        conf[labels[i] * C + preds[i]]++;
    }
    return 0;
}

int cls_metrics(const int64_t *conf, int C, ClsMetrics *out) {
    double total = 0.0, correct = 0.0, precision = 0.0, recall = 0.0;
    for (int c = 0; c < C; c++) {
        double tp = (double)conf[(int64_t)c * C + c], col = 0.0, row = 0.0;
        for (int k = 0; k < C; k++) {
            col += (double)conf[(int64_t)k * C + c];  // predicted c
            row += (double)conf[(int64_t)c * C + k];  // labelled c
        }
        total += row;
        correct += tp;
        precision += tp / (tp + (col - tp) + 1e-10);
        recall += tp / (tp + (row - tp) + 1e-10);
    }
    if (total == 0.0) return sd_errorf("cls_metrics: no samples counted");
    out->accuracy = correct / total;
    out->precision = precision / C;
    out->recall = recall / C;
    out->f1 = 2.0 * (out->precision * out->recall) / (out->precision + out->recall + 1e-10);
    return 0;
}

int multilabel_update(MultiLabelCounts *counts, const float *logits, const float *targets, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (targets[i] != 0.0f && targets[i] != 1.0f)
            return sd_errorf("multilabel_update: target %g at %lld is not 0 or 1", (double)targets[i], (long long)i);
        const float sig = 1.0f / (1.0f + expf(-logits[i]));
        const int pred = sig > 0.5f, truth = targets[i] == 1.0f;
        counts->tp += pred && truth;
        counts->fp += pred && !truth;
        counts->fn += !pred && truth;
    }
    return 0;
}

MultiLabelMetrics multilabel_metrics(const MultiLabelCounts *counts) {
    // sklearn precision_recall_fscore_support(average="micro", zero_division=0)
    const double tp = (double)counts->tp, fp = (double)counts->fp, fn = (double)counts->fn;
    MultiLabelMetrics m;
    m.precision = tp + fp > 0.0 ? tp / (tp + fp) : 0.0;
    m.recall = tp + fn > 0.0 ? tp / (tp + fn) : 0.0;
    m.f1 = 2.0 * tp + fp + fn > 0.0 ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
    return m;
}

int seg_confusion_update(float *conf, int C, const int *preds, const int64_t *labels, int64_t n,
                         int64_t ignore_index) {
    const int64_t cells = (int64_t)C * C;
    int64_t *count = (int64_t *)calloc((size_t)cells, sizeof(int64_t));
    if (!count) return sd_errorf("seg_confusion_update: out of memory (%d x %d counts)", C, C);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        if (preds[i] < 0 || preds[i] >= C) {
            free(count);
            return sd_errorf("seg_confusion_update: prediction %d at pixel %lld is outside [0, %d)", preds[i],
                             (long long)i, C);
        }
        if (labels[i] == ignore_index) continue;
        if (labels[i] < 0 || labels[i] >= C) {
            free(count);
            return sd_errorf("seg_confusion_update: label %lld at pixel %lld is outside [0, %d) and is not the "
                             "ignore index %lld",
                             (long long)labels[i], (long long)i, C, (long long)ignore_index);
        }
        count[(int64_t)preds[i] * C + labels[i]]++;
        kept++;
    }
    if (kept == 0 && n > 0) {
        // The original then bincounts every pixel of the batch, ignored ones included.
        if (ignore_index < 0 || ignore_index >= C) {
            free(count);
            return sd_errorf("seg_confusion_update: every pixel of the batch has the ignore index %lld (the "
                             "original fails on such a batch)",
                             (long long)ignore_index);
        }
        for (int64_t i = 0; i < n; i++) count[(int64_t)preds[i] * C + labels[i]]++;
    }
    for (int64_t k = 0; k < cells; k++) conf[k] += (float)count[k];
    free(count);
    return 0;
}

void seg_metrics(const float *conf, int C, float *iou, float *f1, float *precision, float *recall,
                 SegMetrics *out) {
    double sum_iou = 0.0, sum_f1 = 0.0, sum_prec = 0.0, sum_rec = 0.0;  // for torch's float32 .mean()
    float inter_sum = 0.0f, all = 0.0f;
    for (int c = 0; c < C; c++) {
        float col = 0.0f, row = 0.0f;  // float32 sums, as torch.sum(dim=0) / sum(dim=1)
        for (int k = 0; k < C; k++) {
            col += conf[(int64_t)k * C + c];
            row += conf[(int64_t)c * C + k];
        }
        const float inter = conf[(int64_t)c * C + c];
        const float uni = col + row - inter;
        const float iou_c = inter / (uni + 1e-6f) * 100.0f;
        const float prec_c = inter / (col + 1e-6f) * 100.0f;
        const float rec_c = inter / (row + 1e-6f) * 100.0f;
        const float f1_c = 2.0f * (prec_c * rec_c) / (prec_c + rec_c + 1e-6f);
        if (iou) iou[c] = iou_c;
        if (f1) f1[c] = f1_c;
        if (precision) precision[c] = prec_c;
        if (recall) recall[c] = rec_c;
        sum_iou += iou_c;
        sum_f1 += f1_c;
        sum_prec += prec_c;
        sum_rec += rec_c;
        inter_sum += inter;
        all += row;
    }
    out->miou = (float)(sum_iou / C);
    out->mf1 = (float)(sum_f1 / C);
    out->mprecision = (float)(sum_prec / C);
    out->mrecall = (float)(sum_rec / C);
    out->macc = (double)(inter_sum / (all + 1e-6f)) * 100.0;  // (I.sum() / (conf.sum() + 1e-6)).item() * 100
}
