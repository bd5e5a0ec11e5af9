// The whole model's backward (head_model_backward in heads/head.h) against finite differences
// of the training loss, for every fuser (gw, lw released and corrected, MoE dense
// and top-k, concat, single) with every head (linear + cross-entropy, linear +
// BCE, UPerNet + per-pixel cross-entropy with ignored pixels and Dropout2d),
// on tiny random configs in training mode (BatchNorm batch statistics).
//
// For every trainable tensor, the element with the largest |gradient| and one
// pseudo-random element are perturbed by +-h; so are three elements of every
// input feature tensor; and every tensor is moved as a whole along a random
// direction v (checked against <grad, v>). The forward is float32 (the loss is
// summed in double from the float logits), so a difference quotient carries a
// rounding noise of about 1e-7 |L| / h and a truncation error that is large on
// these tiny models (ReLU kinks, GroupNorm over 8 values, BatchNorm over 2).
// So h runs over 3e-3, 1e-3, 3e-4 and the central, forward and backward
// quotients are all tried (next to a kink only one side is smooth; the
// gradient is the derivative on the side of the current ReLU states); a check
// passes when one of the nine is within
//     |fd - g| <= 0.02 |g| + 0.01 gmax + 5e-5
// gmax being the tensor's largest |gradient| (for the direction: its norm
// times |v|'s rms). Measured: worst 0.6 of that tolerance over ~5000 checks;
// mutations of the backward (LW mean term dropped, MoE top-k softmax backward
// skipped, temperature gradient x1.3, one MoE scale's dfused x1.05, Dropout2d
// mask ignored) each fail dozens of checks.
//
// Also: MoE top-k leaves the experts nobody chose without a gradient (has_grad 0)
// and every other parameter with one; the backward does not move the MoE counters,
// the parameters or the BatchNorm statistics; the gradients are bit-identical with
// 1 and 2 threads; a backward after an evaluation forward is refused.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/error.h"
#include "heads/head.h"
#include "train/losses.h"
#include "tests/test_util.h"

#define NSCALE 2
#define NTS 2

typedef struct {
    const char *name;
    const char *fuser_json;  // fuser options
    int task;                // 0 cls (ce), 1 multi-label (bce), 2 seg (ce, ignored pixels, dropout)
} Combo;

typedef struct {
    HeadConfig cfg;
    HeadModel m;
    int B;
    float *feat[NTS][NSCALE], *dfeat[NTS][NSCALE];
    int64_t feat_n[NSCALE];
    FusionInput in;
    int64_t *labels;    // ce
    float *targets;     // bce
    float *dlogits;
    int64_t n_logits;
    int C, HW;
    uint64_t rng0;      // UPerNet dropout generator state before the base forward
    int *choice;        // MoE top-k choices of the base forward, per call (B * k)
} Model;

static int build(Model *x, const Combo *c, unsigned long long seed) {
    char text[2048];
    const char *task = c->task == 0 ? "classification" : c->task == 1 ? "multi_label_classification" : "segmentation";
    snprintf(text, sizeof(text),
             "{\"task\": \"%s\", %s, \"feature_dims\": {\"4\": [3, 2], \"2\": [4]}, \"save_timesteps\": [40, 47],"
             " \"projection_dim\": 16, \"num_classes\": 3, \"num_norm_groups\": 2, \"output_shape\": [5, 7],"
             " \"channels\": 8, \"pool_scales\": [1, 2], \"dropout\": 0.5}",
             task, c->fuser_json);
    JsonValue j;
    memset(x, 0, sizeof(*x));
    if (json_parse(text, strlen(text), "test", &j)) return -1;
    int rc = head_config_from_json_golden(&x->cfg, &j);
    json_free(&j);
    if (rc || head_model_init(&x->m, &x->cfg)) return -1;
    // parameters: conv / linear weights ~ U(-1,1) sqrt(3 / fan_in), biases 0.1 U, norm scales 1 + 0.2 U
    ParamSet *ps = &x->m.params;
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind != PARAM_WEIGHT) continue;
        test_fill(p->data, (long)p->numel, seed * 131 + (unsigned long long)i);
        int64_t fan_in = p->ndim >= 2 ? p->numel / p->shape[0] : 1;
        for (int64_t k = 0; k < p->numel; k++) {
            float r = p->data[k];
            if (strstr(p->name, "mixing_weights")) p->data[k] = 1.0f + 0.5f * r;
            else if (strstr(p->name, "temperature")) p->data[k] = 0.8f;
            else if (p->ndim >= 2) p->data[k] = r * sqrtf(3.0f / (float)fan_in) * (strstr(p->name, "gate_network") ? 4.0f : 1.0f);
            else if (strstr(p->name, "bias")) p->data[k] = 0.1f * r;
            else p->data[k] = 1.0f + 0.2f * r;  // GroupNorm / BatchNorm scale
        }
    }
    // features: scale 0 is 3 x 4 (a non-square map, resized by the heads), scale 1 is 2 x 2
    const FeatureLayout *fl = &x->cfg.layout;
    int Hs[NSCALE] = {3, 2};
    x->B = 2;
    x->in.B = x->B;
    for (int s = 0; s < NSCALE; s++) {
        x->in.H[s] = Hs[s];
        x->in.W[s] = fl->width[s];
        x->feat_n[s] = (int64_t)x->B * fl->scale_channels[s] * Hs[s] * fl->width[s];
        for (int t = 0; t < NTS; t++) {
            x->feat[t][s] = (float *)malloc((size_t)x->feat_n[s] * sizeof(float));
            x->dfeat[t][s] = (float *)calloc((size_t)x->feat_n[s], sizeof(float));
            test_fill(x->feat[t][s], (long)x->feat_n[s], seed * 7 + (unsigned long long)(t * 8 + s));
            x->in.feat[t][s] = x->feat[t][s];
        }
    }
    x->C = x->cfg.num_classes;
    x->HW = c->task == 2 ? x->cfg.output_h * x->cfg.output_w : 1;
    x->n_logits = (int64_t)x->B * x->C * x->HW;
    x->dlogits = (float *)malloc((size_t)x->n_logits * sizeof(float));
    x->labels = (int64_t *)malloc((size_t)x->B * x->HW * sizeof(int64_t));
    x->targets = (float *)malloc((size_t)x->n_logits * sizeof(float));
    unsigned long long st = seed + 99;
    for (int64_t i = 0; i < (int64_t)x->B * x->HW; i++) {
        float r = test_rand(&st);
        x->labels[i] = c->task == 2 && r < -0.8f ? -100 : (int64_t)((r + 1.0f) * 0.5f * (float)x->C) % x->C;
    }
    for (int64_t i = 0; i < x->n_logits; i++) x->targets[i] = test_rand(&st) > 0.0f ? 1.0f : 0.0f;
    if (params_alloc_grads(ps)) return -1;
    head_model_set_mode(&x->m, 1, 1);
    x->rng0 = x->m.uper.rng_state;
    return 0;
}

static void release(Model *x) {
    for (int s = 0; s < NSCALE; s++)
        for (int t = 0; t < NTS; t++) {
            free(x->feat[t][s]);
            free(x->dfeat[t][s]);
        }
    free(x->dlogits);
    free(x->labels);
    free(x->targets);
    free(x->choice);
    head_model_free(&x->m);
}

// One training forward and the loss (dlogits filled when want_grad). The Dropout2d
// generator restarts from the same state, so every forward draws the same masks.
// The loss is summed in double here (the float loss functions give dlogits), so
// the finite differences see the logits' rounding only.
static int forward_loss(Model *x, int task, double *loss_out, int want_grad) {
    x->m.uper.rng_state = x->rng0;
    if (head_model_forward(&x->m, &x->in)) return -1;
    const float *logits = head_model_logits(&x->m);
    if (want_grad) {
        float loss;
        memset(x->dlogits, 0, (size_t)x->n_logits * sizeof(float));
        int rc = task == 1 ? bce_with_logits_loss(&loss, x->dlogits, logits, x->targets, x->n_logits)
                           : cross_entropy_loss(&loss, x->dlogits, logits, x->labels, x->B, x->C, x->HW, -100);
        if (rc) return rc;
    }
    double sum = 0.0;
    int64_t count = 0;
    if (task == 1) {  // BCE with logits, mean
        for (int64_t i = 0; i < x->n_logits; i++) {
            double z = logits[i];
            sum += (z > 0 ? z : 0) - z * x->targets[i] + log1p(exp(-fabs(z)));
        }
        count = x->n_logits;
    } else {  // cross-entropy over classes at every kept position, mean
        for (int b = 0; b < x->B; b++)
            for (int p = 0; p < x->HW; p++) {
                int64_t label = x->labels[(int64_t)b * x->HW + p];
                if (label == -100) continue;
                const float *z = logits + (int64_t)b * x->C * x->HW + p;
                double mx = -INFINITY, se = 0.0;
                for (int c = 0; c < x->C; c++) mx = z[(int64_t)c * x->HW] > mx ? z[(int64_t)c * x->HW] : mx;
                for (int c = 0; c < x->C; c++) se += exp(z[(int64_t)c * x->HW] - mx);
                sum += mx + log(se) - z[label * x->HW];
                count++;
            }
    }
    *loss_out = sum / (double)count;
    return 0;
}

// The MoE top-k choices of the last forward, flattened; -1 marks a dense call.
static int moe_choices(const Model *x, int *out) {
    const MoEFuser *mf = &x->m.fuser.moe;
    int n = 0;
    for (int c = 0; c < mf->num_calls; c++) {
        const MoECall *cl = &mf->calls[c];
        int K = mf->scales[c / mf->num_timesteps].top_k;
        for (int i = 0; i < cl->B * K; i++) out[n++] = cl->topk_active ? cl->topk_idx.data[i] : -1;
    }
    return n;
}

typedef struct {
    int checked, failed, flips;
    double worst;  // largest |fd - g| / tolerance
} FdStats;

// Step sizes tried: the tiny models are far from linear at 1e-2 (ReLU kinks, GroupNorm over
// a few values, BatchNorm over 2), and float32 rounding dominates below 1e-4; an element
// passes when one of them agrees.
static const float STEPS[3] = {3e-3f, 1e-3f, 3e-4f};
// |fd - g| <= FD_RTOL |g| + FD_GTOL gmax + FD_ATOL (gmax: the tensor's largest |gradient|)
#define FD_RTOL 0.02
#define FD_GTOL 0.01
#define FD_ATOL 5e-5

// Difference quotients of the loss for the value *v moved by +-h, compared with g.
static void fd_check(Model *x, int task, float *v, float g, float gmax, const char *what, long elem, FdStats *st,
                     int is_moe) {
    const float v0 = *v;
    double loss0;
    forward_loss(x, task, &loss0, 0);
    double best = INFINITY, best_fd = 0.0;
    int rc = 0, flip = 0, tmp[4096];
    for (int k = 0; k < 3; k++) {
        double lp, lm;
        *v = v0 + STEPS[k];
        rc |= forward_loss(x, task, &lp, 0);
        if (is_moe && x->choice) flip |= memcmp(tmp, x->choice, (size_t)moe_choices(x, tmp) * sizeof(int)) != 0;
        *v = v0 - STEPS[k];
        rc |= forward_loss(x, task, &lm, 0);
        if (is_moe && x->choice) flip |= memcmp(tmp, x->choice, (size_t)moe_choices(x, tmp) * sizeof(int)) != 0;
        *v = v0;
        // central, forward and backward differences: next to a kink only one side is smooth
        double fds[3] = {(lp - lm) / (2.0 * (double)STEPS[k]), (lp - loss0) / (double)STEPS[k],
                         (loss0 - lm) / (double)STEPS[k]};
        for (int q = 0; q < 3; q++) {
            double r = fabs(fds[q] - g) / (FD_RTOL * fabs(g) + FD_GTOL * gmax + FD_ATOL);
            if (r < best) { best = r; best_fd = fds[q]; }
        }
    }
    st->checked++;
    st->flips += flip;
    if (best > st->worst) st->worst = best;
    if (rc || !(best <= 1.0)) {
        st->failed++;
        printf("  %s[%ld]: fd %.6g grad %.6g (gmax %.3g)%s\n", what, elem, best_fd, (double)g, (double)gmax,
               flip ? " (top-k choice flipped)" : "");
    }
}

static long argmax_abs(const float *g, long n, float *gmax) {
    long best = 0;
    *gmax = 0.0f;
    for (long i = 0; i < n; i++)
        if (fabsf(g[i]) > *gmax) { *gmax = fabsf(g[i]); best = i; }
    return best;
}

// Directional derivative: the whole tensor moved along v (a fixed pseudo-random direction).
static void fd_direction(Model *x, int task, float *data, const float *g, long n, const char *what, FdStats *st,
                         unsigned long long seed) {
    float *v = (float *)malloc((size_t)n * sizeof(float)), *d0 = (float *)malloc((size_t)n * sizeof(float));
    test_fill(v, n, seed);
    memcpy(d0, data, (size_t)n * sizeof(float));
    double gv = 0.0, gn = 0.0;
    for (long i = 0; i < n; i++) { gv += (double)g[i] * v[i]; gn += (double)g[i] * g[i]; }
    double tol = FD_RTOL * fabs(gv) + FD_GTOL * sqrt(gn * (double)n / 3.0) + FD_ATOL;  // |v_i| ~ U(-1,1): E v^2 = 1/3
    double best = INFINITY, best_fd = 0.0, loss0;
    int rc = forward_loss(x, task, &loss0, 0);
    for (int k = 0; k < 3; k++) {
        double lp, lm;
        for (long i = 0; i < n; i++) data[i] = d0[i] + STEPS[k] * v[i];
        rc |= forward_loss(x, task, &lp, 0);
        for (long i = 0; i < n; i++) data[i] = d0[i] - STEPS[k] * v[i];
        rc |= forward_loss(x, task, &lm, 0);
        memcpy(data, d0, (size_t)n * sizeof(float));
        double fds[3] = {(lp - lm) / (2.0 * (double)STEPS[k]), (lp - loss0) / (double)STEPS[k],
                         (loss0 - lm) / (double)STEPS[k]};
        for (int q = 0; q < 3; q++)
            if (fabs(fds[q] - gv) / tol < best) { best = fabs(fds[q] - gv) / tol; best_fd = fds[q]; }
    }
    st->checked++;
    if (best > st->worst) st->worst = best;
    if (rc || !(best <= 1.0)) {
        st->failed++;
        printf("  %s (direction): fd %.6g <grad, v> %.6g\n", what, best_fd, gv);
    }
    free(v);
    free(d0);
}

static void run_combo(const Combo *c, unsigned long long seed) {
    Model x;
    if (build(&x, c, seed)) {
        CHECK(0, "%s: build: %s", c->name, sd_last_error());
        release(&x);
        return;
    }
    int is_moe = x.cfg.fuser.kind == FUSER_MOE;
    ParamSet *ps = &x.m.params;
    params_zero_grads(ps);
    double loss;
    int rc = forward_loss(&x, c->task, &loss, 1);
    CHECK(rc == 0, "%s: forward: %s", c->name, sd_last_error());
    if (rc) { release(&x); return; }

    // the backward changes nothing but the gradients
    int64_t steps[FUSION_MAX_SCALES] = {0}, tracked = 0;
    for (int s = 0; is_moe && s < NSCALE; s++) steps[s] = x.m.fuser.moe.scales[s].global_step;
    for (int i = 0; i < ps->count; i++)
        if (ps->items[i]->kind == PARAM_COUNTER) tracked += ps->items[i]->counter;
    double sum_before = 0.0;
    for (int i = 0; i < ps->count; i++)
        for (int64_t k = 0; ps->items[i]->kind != PARAM_COUNTER && k < ps->items[i]->numel; k++)
            sum_before += ps->items[i]->data[k];
    FusionGrad dg;
    memset(&dg, 0, sizeof(dg));
    for (int t = 0; t < NTS; t++)
        for (int s = 0; s < NSCALE; s++) dg.feat[t][s] = x.dfeat[t][s];
    rc = head_model_backward_ex(&x.m, x.dlogits, &dg);
    CHECK(rc == 0, "%s: backward: %s", c->name, sd_last_error());
    if (rc) { release(&x); return; }
    int64_t tracked_after = 0;
    double sum_after = 0.0;
    for (int i = 0; i < ps->count; i++) {
        if (ps->items[i]->kind == PARAM_COUNTER) tracked_after += ps->items[i]->counter;
        for (int64_t k = 0; ps->items[i]->kind != PARAM_COUNTER && k < ps->items[i]->numel; k++)
            sum_after += ps->items[i]->data[k];
    }
    CHECK(tracked_after == tracked && sum_after == sum_before, "%s: the backward changed parameters or statistics",
          c->name);
    for (int s = 0; is_moe && s < NSCALE; s++)
        CHECK(x.m.fuser.moe.scales[s].global_step == steps[s], "%s: the backward moved MoE counter %d", c->name, s);

    // which parameters must have a gradient: all, but the MoE experts nobody chose
    int unchosen = 0, topk = 0;
    if (is_moe) {
        x.choice = (int *)malloc(4096 * sizeof(int));
        moe_choices(&x, x.choice);
        topk = x.m.fuser.moe.calls[0].topk_active;
    }
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind != PARAM_WEIGHT) continue;
        int want = 1, s, e;
        if (is_moe && topk && sscanf(p->name, "scale_moes.%d.experts.%d.", &s, &e) == 2) {
            const MoEFuser *mf = &x.m.fuser.moe;
            want = 0;
            for (int k = 0; k < mf->num_timesteps; k++) want |= mf->calls[s * mf->num_timesteps + k].runs[e].n > 0;
            if (!want && strstr(p->name, ".0.conv1.weight")) unchosen++;
        }
        CHECK(p->has_grad == want, "%s: %s has_grad %d, expected %d", c->name, p->name, p->has_grad, want);
    }
    if (is_moe && topk) CHECK(unchosen > 0, "%s: every expert was chosen; the test wants one left out", c->name);

    // finite differences, parameters
    FdStats st = {0, 0, 0, 0.0};
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind != PARAM_WEIGHT || !p->has_grad) continue;
        float gmax;
        long n = (long)p->numel;
        float *g = (float *)malloc((size_t)n * sizeof(float));
        memcpy(g, p->grad, (size_t)n * sizeof(float));  // the forwards below do not touch grad, but be safe
        long a = argmax_abs(g, n, &gmax);
        long r = (long)((unsigned long long)(i * 2654435761u + seed) % (unsigned long long)n);
        fd_check(&x, c->task, &p->data[a], g[a], gmax, p->name, a, &st, is_moe);
        if (r != a) fd_check(&x, c->task, &p->data[r], g[r], gmax, p->name, r, &st, is_moe);
        if (n > 1) fd_direction(&x, c->task, p->data, g, n, p->name, &st, seed + (unsigned long long)i);
        free(g);
    }
    // finite differences, input features (the whole input gradient path)
    for (int t = 0; t < NTS; t++)
        for (int s = 0; s < NSCALE; s++) {
            char what[64];
            snprintf(what, sizeof(what), "feat.%d.%d", t, s);
            float gmax;
            long n = (long)x.feat_n[s];
            long a = argmax_abs(x.dfeat[t][s], n, &gmax);
            fd_check(&x, c->task, &x.feat[t][s][a], x.dfeat[t][s][a], gmax, what, a, &st, is_moe);
            for (int q = 0; q < 2; q++) {
                long r = (long)(((unsigned long long)(t * 31 + s * 7 + q) * 2654435761u + seed) % (unsigned long long)n);
                fd_check(&x, c->task, &x.feat[t][s][r], x.dfeat[t][s][r], gmax, what, r, &st, is_moe);
            }
            fd_direction(&x, c->task, x.feat[t][s], x.dfeat[t][s], n, what, &st, seed + 1000 + t * 8 + s);
        }
    CHECK(st.failed == 0, "%s: %d of %d finite-difference checks out of tolerance", c->name, st.failed, st.checked);
    CHECK(st.flips == 0, "%s: %d perturbations changed a top-k choice (margins too small)", c->name, st.flips);
    printf("%-28s loss %.4f  %4d fd checks, worst %.2f of the tolerance%s\n", c->name, loss, st.checked, st.worst,
           is_moe ? (topk ? "  (top-k)" : "  (dense)") : "");
    release(&x);
}

// Gradients (parameters and features) with 1 and 2 threads: the same bits.
static void thread_invariance(const Combo *c) {
    float *res[2] = {NULL, NULL};
    long total = 0;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        Model x;
        if (build(&x, c, 5)) { CHECK(0, "build"); release(&x); return; }
        params_zero_grads(&x.m.params);
        double loss;
        FusionGrad dg;
        memset(&dg, 0, sizeof(dg));
        for (int a = 0; a < NTS; a++)
            for (int s = 0; s < NSCALE; s++) dg.feat[a][s] = x.dfeat[a][s];
        CHECK(forward_loss(&x, c->task, &loss, 1) == 0 && head_model_backward_ex(&x.m, x.dlogits, &dg) == 0,
              "%s threads %d: %s", c->name, t + 1, sd_last_error());
        long n = 0;
        for (int i = 0; i < x.m.params.count; i++)
            if (x.m.params.items[i]->grad) n += (long)x.m.params.items[i]->numel;
        for (int s = 0; s < NSCALE; s++) n += NTS * (long)x.feat_n[s];
        res[t] = (float *)malloc((size_t)n * sizeof(float));
        long o = 0;
        for (int i = 0; i < x.m.params.count; i++) {
            Param *p = x.m.params.items[i];
            if (!p->grad) continue;
            memcpy(res[t] + o, p->grad, (size_t)p->numel * sizeof(float));
            o += (long)p->numel;
        }
        for (int a = 0; a < NTS; a++)
            for (int s = 0; s < NSCALE; s++) {
                memcpy(res[t] + o, x.dfeat[a][s], (size_t)x.feat_n[s] * sizeof(float));
                o += (long)x.feat_n[s];
            }
        total = n;
        release(&x);
    }
    CHECK(memcmp(res[0], res[1], (size_t)total * sizeof(float)) == 0, "%s: gradients differ between 1 and 2 threads",
          c->name);
    free(res[0]);
    free(res[1]);
    omp_set_num_threads(1);
}

static void eval_forward_refused(void) {
    Combo c = {"gw", "\"fuser\": \"gw\"", 0};
    Model x;
    if (build(&x, &c, 3)) { CHECK(0, "build"); release(&x); return; }
    head_model_set_mode(&x.m, 0, 1);
    double loss;
    CHECK(forward_loss(&x, 0, &loss, 1) == 0, "eval forward");
    x.m.training = 0;
    CHECK(head_model_backward(&x.m, x.dlogits) != 0, "a backward after an evaluation forward must be refused");
    release(&x);
}

int main(void) {
    omp_set_num_threads(1);  // thousands of tiny forwards: thread start-up would dominate
    const char *fusers[][2] = {
        {"gw", "\"fuser\": \"gw\""},
        {"gw-2blocks", "\"fuser\": \"gw\", \"num_res_blocks\": 2"},
        {"lw", "\"fuser\": \"lw\", \"gating_tempature\": 0.7"},
        {"lw-advance-2blocks", "\"fuser\": \"lw\", \"lw_advance_channels\": true, \"num_res_blocks\": 2"},
        {"moe-dense", "\"fuser\": \"moe\", \"num_experts\": 3, \"top_k\": 2, \"warmup_steps\": 1000000"},
        {"moe-topk", "\"fuser\": \"moe\", \"num_experts\": 7, \"top_k\": 2, \"warmup_steps\": 0"},
        {"concat", "\"fuser\": \"concat\""},
        {"single", "\"fuser\": \"single\", \"single_stream\": 1, \"single_timestep\": 40"},
    };
    const char *tasks[3] = {"cls", "multilabel", "seg"};
    const char *only = getenv("FD_ONLY");  // e.g. FD_ONLY=moe-topk: one fuser only
    for (size_t f = 0; f < sizeof(fusers) / sizeof(fusers[0]); f++)
        for (int t = 0; t < 3; t++) {
            if (only && strcmp(only, fusers[f][0]) != 0) continue;
            char name[64];
            snprintf(name, sizeof(name), "%s + %s", fusers[f][0], tasks[t]);
            Combo c = {name, fusers[f][1], t};
            run_combo(&c, 11 + f * 3 + (unsigned long long)t);
        }
    Combo ti[3] = {{"gw + seg", "\"fuser\": \"gw\"", 2},
                   {"lw + cls", "\"fuser\": \"lw\"", 0},
                   {"moe-topk + seg", "\"fuser\": \"moe\", \"num_experts\": 7, \"top_k\": 2, \"warmup_steps\": 0", 2}};
    for (int i = 0; i < 3; i++) thread_invariance(&ti[i]);
    eval_forward_refused();
    return test_report("test_head_backward");
}
