// Losses, Adam, the LR schedule and the metrics.
// References: values worked out by hand (in the comments), the formulas
// re-evaluated here in double, and a few numbers printed by PyTorch 1.13
// (torch.nn.CrossEntropyLoss / BCEWithLogitsLoss / optim.Adam / optim.AdamW /
// BatchNorm2d) for the same inputs, quoted to 9 significant digits.
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "tests/test_util.h"
#include "train/adam.h"
#include "train/losses.h"
#include "train/lr_schedule.h"
#include "train/metrics.h"

static int close_to(double got, double want, double tol) { return fabs(got - want) <= tol; }
// got == want rounded to float (9 significant digits identify a float32).
// Bit-equal to PyTorch's float32 results: this assumes float arithmetic rounds every operation to
// float (FLT_EVAL_METHOD 0, as on x86-64 and arm64). Where the compiler evaluates float in double
// (s390x gcc -std=c99: FLT_EVAL_METHOD 1) the library's roundings differ: within 2 ulp there.
static int all_equal_f32(const float *got, const double *want, int n) {
    for (int i = 0; i < n; i++)
#if FLT_EVAL_METHOD == 0
        if (got[i] != (float)want[i]) {
#else
        if (!(fabs((double)got[i] - (double)(float)want[i]) <= 2.0 * FLT_EPSILON * fabs((double)(float)want[i]))) {
#endif
            printf("  element %d: got %.9g want %.9g\n", i, got[i], want[i]);
            return 0;
        }
    return 1;
}
static int all_close(const float *got, const double *want, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (!close_to(got[i], want[i], tol)) {
            printf("  element %d: got %.9g want %.9g\n", i, got[i], want[i]);
            return 0;
        }
    return 1;
}

// ---------------------------------------------------------------------------
// Losses

static void test_cross_entropy(void) {
    {  // (N, C) logits
        const float x[6] = {1.0f, 2.0f, 0.5f, -1.0f, 0.0f, 3.0f};
        const int64_t y[2] = {1, 2};
        float loss = 0.0f, d[6] = {0};
        int rc = cross_entropy_loss(&loss, d, x, y, 2, 3, 1, -100);
        // By hand: row 0: log(e^1 + e^2 + e^0.5) - 2; row 1: log(e^-1 + 1 + e^3) - 3; mean of the two.
        double l0 = log(exp(1.0) + exp(2.0) + exp(0.5)) - 2.0, l1 = log(exp(-1.0) + 1.0 + exp(3.0)) - 3.0;
        CHECK(rc == 0 && close_to(loss, 0.5 * (l0 + l1), 1e-6), "CE (N,C): loss %.9g, want %.9g", loss, 0.5 * (l0 + l1));
        const double torch_loss = 0.265126348;
        const double torch_grad[6] = {0.115611941, -0.185734153, 0.0701221898, 0.00857391115, 0.023306312, -0.0318802297};
        CHECK(close_to(loss, torch_loss, 1e-7), "CE (N,C): loss %.9g vs torch %.9g", loss, torch_loss);
        // torch computes the softmax in float32: within 2 ulp.
        CHECK(all_close(d, torch_grad, 6, 3e-8), "CE (N,C): dlogits differ from torch");
    }
    {  // per pixel (N=2, C=3, H=1, W=3) with ignored pixels; dlogits accumulate onto 0.5
        const float x[18] = {0.2f, -1.0f, 3.0f, 1.5f, 0.3f, -0.7f, -0.4f, 2.2f, 0.0f,
                             1.0f, 1.0f, 1.0f, 0.0f, -2.0f, 4.0f, 2.5f, 0.5f, -1.5f};
        const int64_t y[6] = {0, -100, 2, 1, 2, -100};
        float loss = 0.0f, d[18];
        for (int i = 0; i < 18; i++) d[i] = 0.5f;
        int rc = cross_entropy_loss(&loss, d, x, y, 2, 3, 3, -100);
        const double torch_loss = 2.12374115;
        const double torch_grad[18] = {-0.202089921, 0, 0.232664064, 0.175796315, 0, 0.0057522757,
                                       0.0262936149, 0, -0.238416344, 0.0427381955, 0.150937229, 0,
                                       -0.234277502, 0.00751472171, 0, 0.191539302, -0.158451945, 0};
        double want[18];
        for (int i = 0; i < 18; i++) want[i] = 0.5 + torch_grad[i];
        CHECK(rc == 0 && close_to(loss, torch_loss, 1e-6), "CE per pixel: loss %.9g vs torch %.9g", loss, torch_loss);
        CHECK(all_close(d, want, 18, 1e-7), "CE per pixel: dlogits (accumulated onto 0.5) differ from torch");
        // Same bits with 1 and 2 threads.
        float l1, l2, d1[18] = {0}, d2[18] = {0};
        omp_set_num_threads(1);
        cross_entropy_loss(&l1, d1, x, y, 2, 3, 3, -100);
        omp_set_num_threads(2);
        cross_entropy_loss(&l2, d2, x, y, 2, 3, 3, -100);
        CHECK(l1 == l2 && memcmp(d1, d2, sizeof(d1)) == 0, "CE: 1 and 2 threads differ");
    }
    {  // everything ignored: NaN, no gradient; a bad label: an error
        const float x[4] = {1, 2, 3, 4};
        const int64_t all_ignored[2] = {255, 255}, bad[2] = {0, 2};
        float loss = 0.0f, d[4] = {0};
        int rc = cross_entropy_loss(&loss, d, x, all_ignored, 2, 2, 1, 255);
        CHECK(rc == 0 && isnan(loss) && d[0] == 0 && d[3] == 0, "CE all ignored: want NaN loss and no gradient");
        rc = cross_entropy_loss(&loss, d, x, bad, 2, 2, 1, -100);
        CHECK(rc == -1, "CE: label 2 with C=2 must fail");
    }
}

static void test_bce(void) {
    const float x[6] = {0.5f, -1.5f, 100.0f, -100.0f, 0.0f, 3.0f};
    const float t[6] = {1, 0, 0, 0, 1, 1};
    float loss = 0.0f, d[6] = {0};
    int rc = bce_with_logits_loss(&loss, d, x, t, 6);
    // By hand: softplus(-0.5) + softplus(-1.5)... i.e. log(1+e^-x) for t=1 and log(1+e^x) for t=0, mean of 6.
    double want = (log1p(exp(-0.5)) + log1p(exp(-1.5)) + (100.0 + log1p(exp(-100.0))) + log1p(exp(-100.0)) + log(2.0) +
                   log1p(exp(-3.0))) / 6.0;
    CHECK(rc == 0 && close_to(loss, want, 1e-5), "BCE: loss %.9g, want %.9g", loss, want);
    const double torch_loss = 16.9028702;
    const double torch_grad[6] = {-0.0629234388, 0.0304042548, 0.166666672, 0, -0.0833333358, -0.00790431071};
    CHECK(close_to(loss, torch_loss, 2e-6), "BCE: loss %.9g vs torch %.9g", loss, torch_loss);
    CHECK(all_close(d, torch_grad, 6, 1e-8), "BCE: dlogits differ from torch");
    CHECK(isfinite(loss), "BCE must stay finite for |logit| = 100");
    rc = bce_with_logits_loss(&loss, d, x, t, 0);
    CHECK(rc == 0 && isnan(loss), "BCE over no elements: NaN");
}

// ---------------------------------------------------------------------------
// Adam

// The same updates in double, written from the equations (docs/training.md).
typedef struct {
    double p[4], m[4], v[4];
    int step;
} RefParam;
static void ref_adam(RefParam *r, const double *g, int n, double lr, double wd, int decoupled) {
    r->step++;
    for (int i = 0; i < n; i++) {
        double gi = g[i];
        if (decoupled) r->p[i] *= 1.0 - lr * wd;
        else gi += wd * r->p[i];
        r->m[i] = 0.9 * r->m[i] + 0.1 * gi;
        r->v[i] = 0.999 * r->v[i] + 0.001 * gi * gi;
        double mhat = r->m[i] / (1.0 - pow(0.9, r->step)), vhat = r->v[i] / (1.0 - pow(0.999, r->step));
        r->p[i] -= lr * mhat / (sqrt(vhat) + 1e-8);
    }
}

static void test_adam_run(int decoupled) {
    const char *name = decoupled ? "AdamW" : "Adam";
    const double ga[3][4] = {{0.1, -0.2, 0.0, 3.0}, {-0.05, 0.4, 1e-3, -2.0}, {0.2, 0.2, -0.3, 1.0}};
    const double gb[3][2] = {{0.5, -0.5}, {0, 0}, {1e-4, 2.0}};
    const int b_has_grad[3] = {1, 0, 1};  // b's gradient is "none" at step 1
    ParamSet ps = {NULL, 0, 0};
    const int shape_a[1] = {4}, shape_b[1] = {2}, shape_buf[1] = {2};
    Param *pa = params_add(&ps, PARAM_WEIGHT, 0.0f, 1, shape_a, "a");
    Param *buf = params_add(&ps, PARAM_BUFFER, 7.0f, 1, shape_buf, "bn.running_var");  // never touched
    Param *pb = params_add(&ps, PARAM_WEIGHT, 0.0f, 1, shape_b, "b");
    CHECK(pa && pb && buf && params_alloc_grads(&ps) == 0, "parameter registry");
    if (!pa || !pb || !buf) return;
    const float a0[4] = {0.5f, -1.0f, 2.0f, 0.0f}, b0[2] = {1.0f, -0.25f};
    memcpy(pa->data, a0, sizeof(a0));
    memcpy(pb->data, b0, sizeof(b0));
    Adam opt;
    CHECK(adam_init(&opt, &ps) == 0 && opt.state[1].m == NULL, "adam_init (no state for buffers)");
    AdamConfig cfg = adam_config_default(0.01, 0.01);
    cfg.decoupled = decoupled;
    RefParam ra = {{0.5, -1.0, 2.0, 0.0}, {0}, {0}, 0}, rb = {{1.0, -0.25}, {0}, {0}, 0};
    float b_after_step0[2] = {0};
    for (int k = 0; k < 3; k++) {
        params_zero_grads(&ps);
        for (int i = 0; i < 4; i++) pa->grad[i] += (float)ga[k][i];
        pa->has_grad = 1;
        if (b_has_grad[k]) {
            for (int i = 0; i < 2; i++) pb->grad[i] += (float)gb[k][i];
            pb->has_grad = 1;
        }
        CHECK(adam_step(&opt, &ps, &cfg) == 0, "adam_step");
        double gaf[4], gbf[2];
        for (int i = 0; i < 4; i++) gaf[i] = (float)ga[k][i];
        for (int i = 0; i < 2; i++) gbf[i] = (float)gb[k][i];
        ref_adam(&ra, gaf, 4, 0.01, 0.01, decoupled);
        if (b_has_grad[k]) ref_adam(&rb, gbf, 2, 0.01, 0.01, decoupled);
        if (k == 0) memcpy(b_after_step0, pb->data, sizeof(b_after_step0));
        if (k == 1) {
            CHECK(memcmp(b_after_step0, pb->data, sizeof(b_after_step0)) == 0 && opt.state[2].step == 1,
                  "%s: a parameter without gradient must not move (step %lld)", name, (long long)opt.state[2].step);
        }
    }
    CHECK(opt.state[0].step == 3 && opt.state[2].step == 2, "%s: step counts %lld %lld, want 3 2", name,
          (long long)opt.state[0].step, (long long)opt.state[2].step);
    CHECK(buf->data[0] == 7.0f && buf->data[1] == 7.0f, "%s: a buffer was modified", name);
    CHECK(all_close(pa->data, ra.p, 4, 2e-7) && all_close(pb->data, rb.p, 2, 2e-7),
          "%s: parameters differ from the float64 reference", name);
    // PyTorch 1.13 (CPU) after the same three steps.
    const double torch_adam_a[4] = {0.479990721, -0.998297632, 1.98555136, -0.0142297009};
    const double torch_adam_b[2] = {0.983154774, -0.245582908};
    const double torch_adam_am[4] = {0.0249327831, 0.0371056199, -0.0245190095, 0.162979573};
    const double torch_adam_av[4] = {5.50057666e-05, 0.000232162871, 7.93476647e-05, 0.0139781795};
    const double torch_adam_bm[2] = {0.0468999967, 0.154534996};
    const double torch_adamw_a[4] = {0.480607778, -0.998555064, 1.99832845, -0.0142281512};
    const double torch_adamw_b[2] = {0.983098924, -0.245546013};
    const double torch_adamw_am[4] = {0.0236000009, 0.0397999994, -0.0299100019, 0.163000017};
    const double torch_adamw_av[4] = {5.24775132e-05, 0.000239760047, 9.00010054e-05, 0.0139780091};
    const double torch_adamw_bm[2] = {0.0450099967, 0.155000001};
    // Bit for bit (adam.c uses the fused multiply-adds of ATen's AVX2 kernels).
    CHECK(all_equal_f32(pa->data, decoupled ? torch_adamw_a : torch_adam_a, 4), "%s: a differs from torch", name);
    CHECK(all_equal_f32(pb->data, decoupled ? torch_adamw_b : torch_adam_b, 2), "%s: b differs from torch", name);
    CHECK(all_equal_f32(opt.state[0].m, decoupled ? torch_adamw_am : torch_adam_am, 4), "%s: exp_avg differs", name);
    CHECK(all_equal_f32(opt.state[0].v, decoupled ? torch_adamw_av : torch_adam_av, 4), "%s: exp_avg_sq differs", name);
    CHECK(all_equal_f32(opt.state[2].m, decoupled ? torch_adamw_bm : torch_adam_bm, 2), "%s: b exp_avg differs", name);
    // A parameter added after adam_init is refused.
    Param *late = params_add(&ps, PARAM_WEIGHT, 0.0f, 1, shape_b, "late");
    CHECK(late && adam_step(&opt, &ps, &cfg) == -1, "adam_step must refuse a changed parameter set");
    adam_free(&opt);
    params_free(&ps);
}

static void test_adam_first_step(void) {
    // First step by hand, no decay: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2,
    // p -= lr * g / (|g| + 1e-8) = lr * sign(g) (for |g| >> 1e-8), and a zero gradient leaves p alone.
    ParamSet ps = {NULL, 0, 0};
    const int shape[1] = {3};
    Param *p = params_add(&ps, PARAM_WEIGHT, 1.0f, 1, shape, "p");
    params_alloc_grads(&ps);
    p->grad[0] = 0.3f;
    p->grad[1] = -7.0f;
    p->has_grad = 1;
    Adam opt;
    adam_init(&opt, &ps);
    AdamConfig cfg = adam_config_default(0.01, 0.0);
    adam_step(&opt, &ps, &cfg);
    CHECK(close_to(p->data[0], 0.99, 1e-7) && close_to(p->data[1], 1.01, 1e-7) && p->data[2] == 1.0f,
          "Adam first step: %.9g %.9g %.9g, want 0.99 1.01 1", p->data[0], p->data[1], p->data[2]);
    adam_free(&opt);
    params_free(&ps);
}

// ---------------------------------------------------------------------------
// LR schedule

static void test_lr_schedule(void) {
    LrSchedule s = lr_schedule_default(0.01, 40);
    CHECK(lr_schedule_check(&s) == 0, "default schedule is valid");
    // Values of the original get_lr() (Python), epoch: lr.
    const int epochs[13] = {0, 1, 2, 3, 4, 5, 6, 10, 22, 39, 40, 41, 100};
    const double want[13] = {2e-05, 0.0020160000000000004, 0.004012000000000001, 0.006008, 0.008004, 0.01,
                             0.00997989159850622, 0.009505339495172583, 0.005229099827600822, 3.0108401493780852e-05,
                             1e-05, 1e-05, 1e-05};
    for (int i = 0; i < 13; i++) {
        double lr = lr_schedule_at(&s, epochs[i]);
        CHECK(close_to(lr, want[i], 1e-17 + 1e-15 * want[i]), "lr at epoch %d: %.17g, want %.17g", epochs[i], lr, want[i]);
    }
    // By hand: epoch 1 = 2e-5 + (0.01 - 2e-5) / 5 = 0.002016; the cosine midpoint of a 5 + 40 schedule.
    CHECK(close_to(lr_schedule_at(&s, 1), 0.002016, 1e-15), "epoch 1 by hand");
    LrSchedule s45 = lr_schedule_default(0.01, 45);
    CHECK(close_to(lr_schedule_at(&s45, 25), 1e-5 + (0.01 - 1e-5) * 0.5, 1e-15), "cosine midpoint: %.17g",
          lr_schedule_at(&s45, 25));
    LrSchedule bad = lr_schedule_default(0.01, 5);
    CHECK(lr_schedule_check(&bad) == -1, "total == warmup must be rejected");
}

// ---------------------------------------------------------------------------
// Metrics

static void test_single_label_metrics(void) {
    // labels 0 0 1 1 2 2 (and one ignored), predictions 0 1 1 1 0 2:
    // confusion (rows = truth) [[1,1,0],[0,2,0],[1,0,1]]; TP = 1 2 1; predicted 2 3 1; labelled 2 2 2.
    const int64_t labels[7] = {0, 0, 1, 1, 2, 2, -100};
    const int preds[7] = {0, 1, 1, 1, 0, 2, 2};
    int64_t conf[9] = {0};
    CHECK(cls_confusion_update(conf, 3, labels, preds, 7, -100) == 0, "cls_confusion_update");
    const int64_t want_conf[9] = {1, 1, 0, 0, 2, 0, 1, 0, 1};
    CHECK(memcmp(conf, want_conf, sizeof(conf)) == 0, "single-label confusion matrix");
    ClsMetrics m;
    cls_metrics(conf, 3, &m);
    // accuracy 4/6; precision mean(1/2, 2/3, 1/1) = 13/18; recall mean(1/2, 1, 1/2) = 2/3;
    // F1 of the means = 2 (13/18)(2/3) / (13/18 + 2/3) = 52/75.
    CHECK(close_to(m.accuracy, 4.0 / 6.0, 1e-12), "accuracy %.12g", m.accuracy);
    CHECK(close_to(m.precision, 13.0 / 18.0, 1e-9) && close_to(m.recall, 2.0 / 3.0, 1e-9), "macro P %.12g R %.12g",
          m.precision, m.recall);
    CHECK(close_to(m.f1, 52.0 / 75.0, 1e-9), "F1 of the macro averages %.12g, want %.12g", m.f1, 52.0 / 75.0);
    // The same predictions with a 4th class nobody has: it counts as P = R = 0 in the macro means.
    int64_t conf4[16] = {0};
    cls_confusion_update(conf4, 4, labels, preds, 7, -100);
    cls_metrics(conf4, 4, &m);
    CHECK(close_to(m.precision, 13.0 / 24.0, 1e-9) && close_to(m.recall, 0.5, 1e-9) && close_to(m.f1, 0.52, 1e-9),
          "absent class: P %.12g (13/24) R %.12g (1/2) F1 %.12g (0.52)", m.precision, m.recall, m.f1);
    int64_t empty[4] = {0};
    CHECK(cls_metrics(empty, 2, &m) == -1, "no samples must fail");
    const int64_t bad_label[1] = {3};
    CHECK(cls_confusion_update(conf, 3, bad_label, preds, 1, -100) == -1, "label out of range must fail");
    // argmax: first maximum, NaN wins (torch.argmax); per-pixel layout.
    const float logits[9] = {1.0f, NAN, 0.0f, 3.0f, 1.0f, NAN, 3.0f, NAN, 5.0f};  // (N=1, C=3, HW=3)
    int am[3];
    argmax_channels(am, logits, 1, 3, 3);
    CHECK(am[0] == 1 && am[1] == 0 && am[2] == 1, "argmax: got %d %d %d, want 1 0 1", am[0], am[1], am[2]);
}

static void test_multilabel_metrics(void) {
    // sigmoid(x) > 0.5 in float32: 1e-8 rounds to exactly 0.5 and is NOT positive (as torch); 1e-7 is.
    const float logits[7] = {2.0f, -1.0f, 0.3f, -0.2f, 1e-8f, -3.0f, 1e-7f};
    const float targets[7] = {1, 1, 0, 0, 1, 0, 0};
    MultiLabelCounts c = {0, 0, 0};
    CHECK(multilabel_update(&c, logits, targets, 7) == 0, "multilabel_update");
    // TP: #0; FP: #2, #6; FN: #1, #4.
    CHECK(c.tp == 1 && c.fp == 2 && c.fn == 2, "counts tp %lld fp %lld fn %lld, want 1 2 2", (long long)c.tp,
          (long long)c.fp, (long long)c.fn);
    MultiLabelMetrics m = multilabel_metrics(&c);
    CHECK(close_to(m.precision, 1.0 / 3.0, 1e-12) && close_to(m.recall, 1.0 / 3.0, 1e-12) &&
              close_to(m.f1, 2.0 / 6.0, 1e-12),
          "micro P %.12g R %.12g F1 %.12g", m.precision, m.recall, m.f1);
    MultiLabelCounts none = {0, 0, 3};
    m = multilabel_metrics(&none);
    CHECK(m.precision == 0.0 && m.recall == 0.0 && m.f1 == 0.0, "zero_division=0");
    const float bad[1] = {0.5f};
    CHECK(multilabel_update(&c, logits, bad, 1) == -1, "a target of 0.5 must fail");
}

static void test_seg_metrics(void) {
    // labels 0 0 1 1 2 255 2 1, predictions 0 0 0 1 2 0 2 1, ignore 255.
    // conf[pred][label]: (0,0)=2 (0,1)=1 (1,1)=2 (2,2)=2 -> [[2,1,0],[0,2,0],[0,0,2]].
    const int64_t labels[8] = {0, 0, 1, 1, 2, 255, 2, 1};
    const int preds[8] = {0, 0, 0, 1, 2, 0, 2, 1};
    float conf[9] = {0};
    CHECK(seg_confusion_update(conf, 3, preds, labels, 8, 255) == 0, "seg_confusion_update");
    const float want_conf[9] = {2, 1, 0, 0, 2, 0, 0, 0, 2};
    CHECK(memcmp(conf, want_conf, sizeof(conf)) == 0, "segmentation confusion matrix (rows = prediction)");
    float iou[3], f1[3], prec[3], rec[3];
    SegMetrics m;
    seg_metrics(conf, 3, iou, f1, prec, rec, &m);
    // I = 2 2 2; column sums (label counts) 2 3 2; row sums (prediction counts) 3 2 2; U = 3 3 2.
    // IoU = 66.67 66.67 100, mIoU = 77.78. "Precision" = I/colsum = 100 66.67 100 (really the recall),
    // "Recall" = I/rowsum = 66.67 100 100; F1 = 80 80 100, mF1 = 86.67; mAcc = 6/7.
    const double w_iou[3] = {200.0 / 3, 200.0 / 3, 100}, w_prec[3] = {100, 200.0 / 3, 100}, w_rec[3] = {200.0 / 3, 100, 100};
    const double w_f1[3] = {80, 80, 100};
    CHECK(all_close(iou, w_iou, 3, 1e-4) && all_close(prec, w_prec, 3, 1e-4) && all_close(rec, w_rec, 3, 1e-4) &&
              all_close(f1, w_f1, 3, 1e-4),
          "per-class IoU/precision/recall/F1");
    CHECK(close_to(m.miou, 700.0 / 9, 1e-4) && close_to(m.mf1, 260.0 / 3, 1e-4) && close_to(m.macc, 600.0 / 7, 1e-4),
          "mIoU %.7g mF1 %.7g mAcc %.7g", m.miou, m.mf1, m.macc);
    // A 4th class nobody has or predicts: IoU 0, and mIoU drops to (66.67 + 66.67 + 100 + 0) / 4.
    float conf4[16] = {0};
    seg_confusion_update(conf4, 4, preds, labels, 8, 255);
    seg_metrics(conf4, 4, NULL, NULL, NULL, NULL, &m);
    CHECK(close_to(m.miou, 175.0 / 3, 1e-4), "absent class: mIoU %.7g, want 58.333", m.miou);
    // A batch where every pixel is ignored: with ignore 255 the original fails; with an ignore index
    // inside [0, C) it counts the whole batch.
    const int64_t ign[2] = {255, 255}, ign0[2] = {0, 0};
    const int p2[2] = {1, 0};
    CHECK(seg_confusion_update(conf, 3, p2, ign, 2, 255) == -1, "all-ignored batch (ignore 255) must fail");
    float c3[9] = {0};
    seg_confusion_update(c3, 3, p2, ign0, 2, 0);
    CHECK(c3[1 * 3 + 0] == 1.0f && c3[0] == 1.0f, "all-ignored batch with ignore 0 counts every pixel");
    // The float32 accumulator: 2^24 + 1 stays 2^24, as in the original's torch.zeros matrix.
    float big[1] = {16777216.0f};
    const int p0[1] = {0};
    const int64_t l0[1] = {0};
    seg_confusion_update(big, 1, p0, l0, 1, 255);
    CHECK(big[0] == 16777216.0f, "float32 accumulation");
    const int64_t bad[1] = {3};
    CHECK(seg_confusion_update(conf, 3, p0, bad, 1, 255) == -1, "label out of range must fail");
}

// ---------------------------------------------------------------------------
// BatchNorm running statistics against PyTorch (BatchNorm2d(2), train mode, momentum 0.1).

static void test_batchnorm_vs_torch(void) {
    const float x[16] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 3.5f, -2.0f, 0.0f, 0.0f, 0.25f, 1.5f, 2.0f, 1.0f, -1.0f, 2.0f, 0.5f};
    float rm[2] = {0.1f, -0.2f}, rv[2] = {0.9f, 1.2f}, y[16], mean[2], rstd[2];
    const float gamma[2] = {1, 1}, beta[2] = {0, 0};
    int64_t nbt = 0;
    batchnorm_forward_train(y, mean, rstd, rm, rv, &nbt, x, gamma, beta, 2, 2, 4, 0.1, 1e-5);
    const double t_rm[2] = {0.168125004, -0.0924999937}, t_rv[2] = {0.919709742, 1.4425};
    const double t_out[16] = {0.223264158,  1.2439003,  -0.287053943, -1.81800818, 1.19316423,  1.47390878,
                              -1.61428094,  -0.491302907, -0.797372043, -0.542212963, 0.733582258, 1.2439003,
                              0.0701861382, -1.05279195, 0.631675184,  -0.210558385};
    CHECK(all_equal_f32(rm, t_rm, 2) && all_equal_f32(rv, t_rv, 2) && nbt == 1, "BN running stats vs torch");
    CHECK(all_equal_f32(y, t_out, 16), "BN train output vs torch");
}

int main(void) {
    test_cross_entropy();
    test_bce();
    test_adam_run(0);
    test_adam_run(1);
    test_adam_first_step();
    test_lr_schedule();
    test_single_label_metrics();
    test_multilabel_metrics();
    test_seg_metrics();
    test_batchnorm_vs_torch();
    return test_report("test_train_utils");
}
