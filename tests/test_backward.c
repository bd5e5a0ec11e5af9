// Gradient checks for the layers' backwards: kernels/ (conv_backward.c, gemm.c, norm.c,
// activations.c, resample.c) and fusion/layers.c (softmax over dim 1, channel slices, Dropout2d).
//
// Method ("double-checked"): for every layer a float64 reference forward is
// written here and first compared with the float32 kernel forward (so the
// reference is the same function); the scalar loss is L = sum(R * forward(...))
// with a fixed random R, so dout = R. Each analytic gradient (float32, from the
// backward under test) is compared with central differences of the float64
// reference, h = 1e-5:
//     max_i |analytic_i - fd_i| <= 1e-5 * max_i |fd_i|   (relative to the gradient's scale;
// the largest seen is 7e-7). TEST_VERBOSE=1 prints every error.
// Linear maps (resize, pooling, concat, dropout with a fixed mask) are checked
// column by column: the gradient element i must equal <R, forward(e_i)> of the
// float32 kernel forward itself, within 1e-5 relative.
// Also: accumulation (+= into pre-filled buffers), NULL gradients, and the same
// bits with 1 and 2 threads.
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "core/runtime.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"
#include "fusion/layers.h"

#define FD_H 1e-5
#define FD_REL_TOL 1e-5
#define FWD_REL_TOL 1e-5

static unsigned long long g_seed = 1;

static float *rand_floats(long n, float scale) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    test_fill(x, n, g_seed++);
    for (long i = 0; i < n; i++) x[i] *= scale;
    return x;
}
static double *to_double(const float *x, long n) {
    double *d = (double *)malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (long i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static float *filled(long n, float v) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++) x[i] = v;
    return x;
}
static double max_abs_d(const double *x, long n) {
    double m = 0.0;
    for (long i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

// Compares a float32 forward with the float64 reference forward.
static void check_forward(const char *what, const float *got, const double *want, long n) {
    double err = 0.0, scale = max_abs_d(want, n);
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) err = e;
    }
    CHECK(err <= FWD_REL_TOL * (scale > 1.0 ? scale : 1.0), "%s forward: max |kernel - float64 ref| = %g (scale %g)",
          what, err, scale);
}

// Central differences of loss() with respect to each element of param (a
// float64 array the loss reads), compared with the analytic float gradient.
// `base` is what the analytic buffer held before the backward (accumulation).
typedef double (*LossFn)(void *ctx);
static void check_grad(const char *what, LossFn loss, void *ctx, double *param, long n, const float *analytic,
                       float base) {
    double *fd = (double *)malloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) {
        double save = param[i];
        param[i] = save + FD_H;
        double lp = loss(ctx);
        param[i] = save - FD_H;
        double lm = loss(ctx);
        param[i] = save;
        fd[i] = (lp - lm) / (2.0 * FD_H);
    }
    double scale = max_abs_d(fd, n), err = 0.0;
    for (long i = 0; i < n; i++) {
        double e = fabs(((double)analytic[i] - base) - fd[i]);
        if (!(e <= err)) err = e;
    }
    if (getenv("TEST_VERBOSE")) printf("%-70s rel err %.2e\n", what, err / scale);
    if (getenv("TEST_VERBOSE")) printf("%-80s rel err %.2e\n", what, err / scale);
    CHECK(scale > 0.0 && err <= FD_REL_TOL * scale, "%s: max |analytic - fd| = %g, max |fd| = %g (rel %g)", what, err,
          scale, err / scale);
    free(fd);
}

// ---------------------------------------------------------------------------
// Convolution

typedef struct {
    int N, Cin, H, W, Cout, Ho, Wo;
    Conv2dGeometry g;
    double *x, *w, *b, *R;  // b may be NULL
} ConvCtx;

static void conv_ref(const ConvCtx *c, double *y) {
    for (int n = 0; n < c->N; n++)
        for (int co = 0; co < c->Cout; co++)
            for (int oh = 0; oh < c->Ho; oh++)
                for (int ow = 0; ow < c->Wo; ow++) {
                    double acc = c->b ? c->b[co] : 0.0;
                    for (int ci = 0; ci < c->Cin; ci++)
                        for (int kh = 0; kh < c->g.kernel_h; kh++)
                            for (int kw = 0; kw < c->g.kernel_w; kw++) {
                                int ih = oh * c->g.stride - c->g.pad_top + kh, iw = ow * c->g.stride - c->g.pad_left + kw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                acc += c->w[((co * c->Cin + ci) * c->g.kernel_h + kh) * c->g.kernel_w + kw] *
                                       c->x[((n * c->Cin + ci) * c->H + ih) * c->W + iw];
                            }
                    y[((n * c->Cout + co) * c->Ho + oh) * c->Wo + ow] = acc;
                }
}
static double conv_loss(void *p) {
    ConvCtx *c = (ConvCtx *)p;
    long n = (long)c->N * c->Cout * c->Ho * c->Wo;
    double *y = (double *)malloc((size_t)n * sizeof(double)), L = 0.0;
    conv_ref(c, y);
    for (long i = 0; i < n; i++) L += c->R[i] * y[i];
    free(y);
    return L;
}

static void test_conv(int N, int Cin, int H, int W, int Cout, Conv2dGeometry g, int with_bias) {
    char what[160];
    snprintf(what, sizeof(what), "conv2d %dx%d s%d pad(t%d l%d b%d r%d) N%d Cin%d %dx%d Cout%d bias%d", g.kernel_h,
             g.kernel_w, g.stride, g.pad_top, g.pad_left, g.pad_bottom, g.pad_right, N, Cin, H, W, Cout, with_bias);
    ConvCtx c = {N, Cin, H, W, Cout, conv_out_size(H, g.kernel_h, g.stride, g.pad_top, g.pad_bottom),
                 conv_out_size(W, g.kernel_w, g.stride, g.pad_left, g.pad_right), g, NULL, NULL, NULL, NULL};
    long nx = (long)N * Cin * H * W, nw = (long)Cout * Cin * g.kernel_h * g.kernel_w, ny = (long)N * Cout * c.Ho * c.Wo;
    float *x = rand_floats(nx, 1.0f), *w = rand_floats(nw, 0.5f), *b = with_bias ? rand_floats(Cout, 0.5f) : NULL;
    float *R = rand_floats(ny, 1.0f), *y = filled(ny, 0.0f);
    c.x = to_double(x, nx);
    c.w = to_double(w, nw);
    c.b = b ? to_double(b, Cout) : NULL;
    c.R = to_double(R, ny);
    double *yref = (double *)malloc((size_t)ny * sizeof(double));
    conv_ref(&c, yref);
    conv2d_forward(x, N, Cin, H, W, w, b, Cout, g, y);
    check_forward(what, y, yref, ny);
    // Accumulation: the buffers start at 0.25 and must end at 0.25 + gradient.
    float *dx = filled(nx, 0.25f), *dw = filled(nw, 0.25f), *db = filled(Cout, 0.25f);
    conv2d_backward(dx, dw, with_bias ? db : NULL, R, x, w, N, Cin, H, W, Cout, g);
    char sub[200];
    snprintf(sub, sizeof(sub), "%s dinp", what);
    check_grad(sub, conv_loss, &c, c.x, nx, dx, 0.25f);
    snprintf(sub, sizeof(sub), "%s dweight", what);
    check_grad(sub, conv_loss, &c, c.w, nw, dw, 0.25f);
    if (with_bias) {
        snprintf(sub, sizeof(sub), "%s dbias", what);
        check_grad(sub, conv_loss, &c, c.b, Cout, db, 0.25f);
    } else {
        int untouched = 1;
        for (int i = 0; i < Cout; i++) untouched &= db[i] == 0.25f;
        CHECK(untouched, "%s: dbias buffer touched although NULL was passed", what);
    }
    // NULL dinp/dweight: the other gradients are the same bits.
    float *dw2 = filled(nw, 0.25f);
    conv2d_backward(NULL, dw2, NULL, R, x, w, N, Cin, H, W, Cout, g);
    CHECK(max_abs_diff(dw, dw2, nw) == 0.0, "%s: dweight differs when dinp is NULL", what);
    free(dw2);
    free(x), free(w), free(b), free(R), free(y), free(yref), free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.R);
}

// ---------------------------------------------------------------------------
// Linear

typedef struct {
    int rows, in, out;
    double *x, *w, *b, *R;
} LinCtx;
static double linear_loss(void *p) {
    LinCtx *c = (LinCtx *)p;
    double L = 0.0;
    for (int r = 0; r < c->rows; r++)
        for (int o = 0; o < c->out; o++) {
            double acc = c->b[o];
            for (int i = 0; i < c->in; i++) acc += c->x[r * c->in + i] * c->w[o * c->in + i];
            L += c->R[r * c->out + o] * acc;
        }
    return L;
}
static void test_linear(void) {
    int rows = 3, in = 7, out = 5;
    float *x = rand_floats(rows * in, 1.0f), *w = rand_floats(out * in, 0.5f), *b = rand_floats(out, 0.5f);
    float *R = rand_floats(rows * out, 1.0f), *y = filled(rows * out, 0.0f);
    LinCtx c = {rows, in, out, to_double(x, rows * in), to_double(w, out * in), to_double(b, out), to_double(R, rows * out)};
    linear_forward(x, w, b, y, rows, in, out);
    double *yref = (double *)malloc(sizeof(double) * rows * out);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double acc = c.b[o];
            for (int i = 0; i < in; i++) acc += c.x[r * in + i] * c.w[o * in + i];
            yref[r * out + o] = acc;
        }
    check_forward("linear", y, yref, rows * out);
    float *dx = filled(rows * in, -0.5f), *dw = filled(out * in, -0.5f), *db = filled(out, -0.5f);
    linear_backward(dx, dw, db, R, x, w, rows, in, out);
    check_grad("linear dinp", linear_loss, &c, c.x, rows * in, dx, -0.5f);
    check_grad("linear dweight", linear_loss, &c, c.w, out * in, dw, -0.5f);
    check_grad("linear dbias", linear_loss, &c, c.b, out, db, -0.5f);
    free(x), free(w), free(b), free(R), free(y), free(yref), free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.R);
}

// ---------------------------------------------------------------------------
// GroupNorm

typedef struct {
    int N, C, HW, groups;
    double eps;
    double *x, *gamma, *beta, *R;
} GnCtx;
static void gn_ref(const GnCtx *c, double *y) {
    int cpg = c->C / c->groups;
    for (int n = 0; n < c->N; n++)
        for (int g = 0; g < c->groups; g++) {
            const double *xg = c->x + ((long)n * c->C + g * cpg) * c->HW;
            long cnt = (long)cpg * c->HW;
            double mu = 0.0, var = 0.0;
            for (long i = 0; i < cnt; i++) mu += xg[i];
            mu /= cnt;
            for (long i = 0; i < cnt; i++) var += (xg[i] - mu) * (xg[i] - mu);
            var /= cnt;
            for (int k = 0; k < cpg; k++)
                for (int i = 0; i < c->HW; i++) {
                    long idx = ((long)n * c->C + g * cpg + k) * c->HW + i;
                    y[idx] = (c->x[idx] - mu) / sqrt(var + c->eps) * c->gamma[g * cpg + k] + c->beta[g * cpg + k];
                }
        }
}
static double gn_loss(void *p) {
    GnCtx *c = (GnCtx *)p;
    long n = (long)c->N * c->C * c->HW;
    double *y = (double *)malloc((size_t)n * sizeof(double)), L = 0.0;
    gn_ref(c, y);
    for (long i = 0; i < n; i++) L += c->R[i] * y[i];
    free(y);
    return L;
}
static void test_groupnorm(int N, int C, int HW, int groups) {
    char what[96];
    snprintf(what, sizeof(what), "groupnorm N%d C%d HW%d G%d", N, C, HW, groups);
    long n = (long)N * C * HW;
    float *x = rand_floats(n, 2.0f), *gamma = rand_floats(C, 1.0f), *beta = rand_floats(C, 1.0f), *R = rand_floats(n, 1.0f);
    for (long i = 0; i < n; i++) x[i] += 0.5f;  // a non-zero mean
    float *y = filled(n, 0.0f), *y_eval = filled(n, 0.0f), *mean = filled(N * groups, 0.0f), *rstd = filled(N * groups, 0.0f);
    GnCtx c = {N, C, HW, groups, 1e-5, to_double(x, n), to_double(gamma, C), to_double(beta, C), to_double(R, n)};
    groupnorm_forward_stats(x, y, gamma, beta, N, C, HW, groups, 1e-5f, mean, rstd);
    groupnorm_forward(x, y_eval, gamma, beta, N, C, HW, groups, 1e-5f);
    CHECK(max_abs_diff(y, y_eval, n) == 0.0, "%s: forward_train differs from groupnorm_forward", what);
    double *yref = (double *)malloc((size_t)n * sizeof(double));
    gn_ref(&c, yref);
    check_forward(what, y, yref, n);
    float *dx = filled(n, 1.0f), *dg = filled(C, 1.0f), *dbeta = filled(C, 1.0f);
    groupnorm_backward(dx, dg, dbeta, R, x, mean, rstd, gamma, N, C, HW, groups);
    char sub[128];
    snprintf(sub, sizeof(sub), "%s dinp", what);
    check_grad(sub, gn_loss, &c, c.x, n, dx, 1.0f);
    snprintf(sub, sizeof(sub), "%s dgamma", what);
    check_grad(sub, gn_loss, &c, c.gamma, C, dg, 1.0f);
    snprintf(sub, sizeof(sub), "%s dbeta", what);
    check_grad(sub, gn_loss, &c, c.beta, C, dbeta, 1.0f);
    free(x), free(gamma), free(beta), free(R), free(y), free(y_eval), free(mean), free(rstd), free(yref);
    free(dx), free(dg), free(dbeta), free(c.x), free(c.gamma), free(c.beta), free(c.R);
}

// The training GroupNorm must give groupnorm_forward's bits for every input, and save the statistics
// norm_stats computes (what groupnorm_forward normalises with). Inputs where the two statistics codes
// round differently: pairs +v, -v with |v| up to 1e4 and small values between them, so the group's
// sums cancel and its mean is tiny; float(mean) then depends on the order of the double additions
// (the old two-pass sums differed from norm_stats' in about 1 case in 7), and the small values show
// a change of mean in the output. Also every ISA path (gemm_force_isa), gamma/beta given and not.
static void test_groupnorm_same_bits_as_inference(void) {
    const int N = 2, C = 8, HW = 48, groups = 2, cpg = C / groups;
    const long n = (long)N * C * HW;
    float *x = filled(n, 0.0f), *y = filled(n, 0.0f), *y_eval = filled(n, 0.0f);
    float *gamma = rand_floats(C, 1.0f), *beta = rand_floats(C, 1.0f);
    float mean[N * groups], rstd[N * groups];
    const int isas[3] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512};
    int cases = 0, differ = 0, stats_differ = 0;
    for (int k = 0; k < 3; k++) {
        if (gemm_force_isa(isas[k]) != 0) continue;  // this build or CPU cannot run that path
        for (int trial = 0; trial < 100; trial++) {
            unsigned long long s = 1000 + (unsigned long long)trial;
            for (long i = 0; i + 4 <= n; i += 4) {
                float v = 1e4f * test_rand(&s);
                x[i] = v, x[i + 1] = 1e-3f * test_rand(&s), x[i + 2] = -v, x[i + 3] = 1e-3f * test_rand(&s);
            }
            const int affine = trial % 2;
            groupnorm_forward_stats(x, y, affine ? gamma : NULL, affine ? beta : NULL, N, C, HW, groups, 1e-5f, mean,
                                    rstd);
            groupnorm_forward(x, y_eval, affine ? gamma : NULL, affine ? beta : NULL, N, C, HW, groups, 1e-5f);
            differ += memcmp(y, y_eval, (size_t)n * sizeof(float)) != 0;
            for (int b = 0; b < N; b++)
                for (int g = 0; g < groups; g++) {
                    float m, r;
                    norm_stats(x + ((long)b * C + (long)g * cpg) * HW, cpg, HW, HW, NULL, 1e-5f, eltwise_isa(), &m, &r);
                    stats_differ += memcmp(&m, &mean[b * groups + g], sizeof(float)) != 0 ||
                                    memcmp(&r, &rstd[b * groups + g], sizeof(float)) != 0;
                }
            cases++;
        }
    }
    gemm_force_isa(-1);
    CHECK(cases >= 100 && differ == 0, "groupnorm_forward_stats differs from groupnorm_forward in %d of %d cancelling inputs",
          differ, cases);
    CHECK(stats_differ == 0, "groupnorm_forward_stats' mean/rstd differ from norm_stats in %d groups", stats_differ);
    free(x), free(y), free(y_eval), free(gamma), free(beta);
}

// ---------------------------------------------------------------------------
// BatchNorm (training mode)

typedef struct {
    int N, C, HW;
    double eps;
    double *x, *gamma, *beta, *R;
} BnCtx;
static void bn_ref(const BnCtx *c, double *y, double *mean_out, double *var_biased, double *var_unbiased) {
    long M = (long)c->N * c->HW;
    for (int ch = 0; ch < c->C; ch++) {
        double mu = 0.0, ss = 0.0;
        for (int n = 0; n < c->N; n++)
            for (int i = 0; i < c->HW; i++) mu += c->x[((long)n * c->C + ch) * c->HW + i];
        mu /= M;
        for (int n = 0; n < c->N; n++)
            for (int i = 0; i < c->HW; i++) {
                double d = c->x[((long)n * c->C + ch) * c->HW + i] - mu;
                ss += d * d;
            }
        if (mean_out) mean_out[ch] = mu;
        if (var_biased) var_biased[ch] = ss / M;
        if (var_unbiased) var_unbiased[ch] = ss / (M - 1);
        for (int n = 0; n < c->N; n++)
            for (int i = 0; i < c->HW; i++) {
                long idx = ((long)n * c->C + ch) * c->HW + i;
                y[idx] = (c->x[idx] - mu) / sqrt(ss / M + c->eps) * c->gamma[ch] + c->beta[ch];
            }
    }
}
static double bn_loss(void *p) {
    BnCtx *c = (BnCtx *)p;
    long n = (long)c->N * c->C * c->HW;
    double *y = (double *)malloc((size_t)n * sizeof(double)), L = 0.0;
    bn_ref(c, y, NULL, NULL, NULL);
    for (long i = 0; i < n; i++) L += c->R[i] * y[i];
    free(y);
    return L;
}
static void test_batchnorm(int N, int C, int HW) {
    char what[96];
    snprintf(what, sizeof(what), "batchnorm N%d C%d HW%d", N, C, HW);
    long n = (long)N * C * HW;
    float *x = rand_floats(n, 2.0f), *gamma = rand_floats(C, 1.0f), *beta = rand_floats(C, 1.0f), *R = rand_floats(n, 1.0f);
    for (long i = 0; i < n; i++) x[i] += 0.3f;
    float *rm = rand_floats(C, 0.2f), *rv = filled(C, 0.0f), *rm0 = filled(C, 0.0f), *rv0 = filled(C, 0.0f);
    for (int c = 0; c < C; c++) rv[c] = 1.0f + 0.5f * rm[c], rm0[c] = rm[c], rv0[c] = rv[c];
    float *y = filled(n, 0.0f), *mean = filled(C, 0.0f), *rstd = filled(C, 0.0f);
    int64_t tracked = 7;
    BnCtx c = {N, C, HW, 1e-5, to_double(x, n), to_double(gamma, C), to_double(beta, C), to_double(R, n)};
    int rc = batchnorm_forward_train(y, mean, rstd, rm, rv, &tracked, x, gamma, beta, N, C, HW, 0.1, 1e-5);
    CHECK(rc == 0 && tracked == 8, "%s: rc %d, num_batches_tracked %lld (want 8)", what, rc, (long long)tracked);
    double *yref = (double *)malloc((size_t)n * sizeof(double)), *mu = (double *)malloc(sizeof(double) * C);
    double *vb = (double *)malloc(sizeof(double) * C), *vu = (double *)malloc(sizeof(double) * C);
    bn_ref(&c, yref, mu, vb, vu);
    check_forward(what, y, yref, n);
    double stat_err = 0.0;
    for (int k = 0; k < C; k++) {
        double want_rm = 0.9 * rm0[k] + 0.1 * mu[k], want_rv = 0.9 * rv0[k] + 0.1 * vu[k];  // unbiased
        stat_err = fmax(stat_err, fabs(rm[k] - want_rm));
        stat_err = fmax(stat_err, fabs(rv[k] - want_rv) / want_rv);
        stat_err = fmax(stat_err, fabs(mean[k] - mu[k]));
        stat_err = fmax(stat_err, fabs(rstd[k] - 1.0 / sqrt(vb[k] + 1e-5)) * sqrt(vb[k] + 1e-5));  // biased
    }
    CHECK(stat_err < 2e-6, "%s: running/saved statistics off by %g", what, stat_err);
    float *dx = filled(n, 0.125f), *dg = filled(C, 0.125f), *dbeta = filled(C, 0.125f);
    batchnorm_backward(dx, dg, dbeta, R, x, mean, rstd, gamma, N, C, HW);
    char sub[128];
    snprintf(sub, sizeof(sub), "%s dinp", what);
    check_grad(sub, bn_loss, &c, c.x, n, dx, 0.125f);
    snprintf(sub, sizeof(sub), "%s dgamma", what);
    check_grad(sub, bn_loss, &c, c.gamma, C, dg, 0.125f);
    snprintf(sub, sizeof(sub), "%s dbeta", what);
    check_grad(sub, bn_loss, &c, c.beta, C, dbeta, 0.125f);
    free(x), free(gamma), free(beta), free(R), free(rm), free(rv), free(rm0), free(rv0), free(y), free(mean), free(rstd);
    free(yref), free(mu), free(vb), free(vu), free(dx), free(dg), free(dbeta);
    free(c.x), free(c.gamma), free(c.beta), free(c.R);
}

static void test_batchnorm_single_value(void) {
    float x[3] = {1, 2, 3}, y[3], m[3], r[3];
    int rc = batchnorm_forward_train(y, m, r, NULL, NULL, NULL, x, NULL, NULL, 1, 3, 1, 0.1, 1e-5);
    CHECK(rc == -1, "batchnorm with one value per channel must fail (got %d)", rc);
}

// ---------------------------------------------------------------------------
// ReLU, softmax, temperature

typedef struct {
    long n;
    double *x, *R;
} EwCtx;
static double relu_loss(void *p) {
    EwCtx *c = (EwCtx *)p;
    double L = 0.0;
    for (long i = 0; i < c->n; i++) L += c->R[i] * (c->x[i] > 0.0 ? c->x[i] : 0.0);
    return L;
}
static void test_relu(void) {
    long n = 200;
    float *x = rand_floats(n, 1.0f), *R = rand_floats(n, 1.0f);
    for (long i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.01f) x[i] = 0.5f;  // keep FD away from the kink
    float *y = filled(n, 0.0f), *dx = filled(n, 0.0f);
    for (long i = 0; i < n; i++) y[i] = x[i];
    relu_inplace(y, n);
    relu_backward(dx, R, y, n);
    EwCtx c = {n, to_double(x, n), to_double(R, n)};
    check_grad("relu dinp", relu_loss, &c, c.x, n, dx, 0.0f);
    free(x), free(R), free(y), free(dx), free(c.x), free(c.R);
}

typedef struct {
    int N, C, HW;  // softmax over C with stride HW (rows: N rows, C = n, HW = 1)
    double *x, *R, t;  // softmax(x / t)
} SmCtx;
static double softmax_loss(void *p) {
    SmCtx *c = (SmCtx *)p;
    double L = 0.0;
    for (int n = 0; n < c->N; n++)
        for (int q = 0; q < c->HW; q++) {
            const double *x = c->x + (long)n * c->C * c->HW + q;
            double mx = -INFINITY, s = 0.0;
            for (int k = 0; k < c->C; k++) mx = fmax(mx, x[(long)k * c->HW] / c->t);
            for (int k = 0; k < c->C; k++) s += exp(x[(long)k * c->HW] / c->t - mx);
            for (int k = 0; k < c->C; k++)
                L += c->R[(long)n * c->C * c->HW + (long)k * c->HW + q] * exp(x[(long)k * c->HW] / c->t - mx) / s;
        }
    return L;
}
static void test_softmax(void) {
    {  // rows
        int rows = 4, n = 6;
        float *x = rand_floats(rows * n, 3.0f), *R = rand_floats(rows * n, 1.0f), *y = filled(rows * n, 0.0f);
        float *dx = filled(rows * n, 0.0f);
        for (int i = 0; i < rows * n; i++) y[i] = x[i];
        softmax_rows(y, rows, n);
        softmax_backward(dx, R, y, rows, n);
        SmCtx c = {rows, n, 1, to_double(x, rows * n), to_double(R, rows * n), 1.0};
        check_grad("softmax rows dinp", softmax_loss, &c, c.x, rows * n, dx, 0.0f);
        free(x), free(R), free(y), free(dx), free(c.x), free(c.R);
    }
    for (int tk = 0; tk < 2; tk++) {  // channels of NCHW (the localized fuser's gate), temperature 1 and 0.7
        int N = 2, C = 5, HW = 7;
        long n = (long)N * C * HW;
        const float temp = tk ? 0.7f : 1.0f;
        float *x = rand_floats(n, 3.0f), *R = rand_floats(n, 1.0f), *y = filled(n, 0.0f), *dx = filled(n, 2.0f);
        for (long i = 0; i < n; i++) y[i] = x[i];
        softmax_dim1(y, N, C, HW, temp);
        SmCtx c = {N, C, HW, to_double(x, n), to_double(R, n), (double)temp};
        double *yref = (double *)malloc(sizeof(double) * n);
        for (long i = 0; i < n; i++) {  // reference probabilities
            int nn = (int)(i / (C * HW)), q = (int)(i % HW);
            const double *xx = c.x + (long)nn * C * HW + q;
            double mx = -INFINITY, s = 0.0;
            for (int k = 0; k < C; k++) mx = fmax(mx, xx[(long)k * HW] / c.t);
            for (int k = 0; k < C; k++) s += exp(xx[(long)k * HW] / c.t - mx);
            yref[i] = exp(c.x[i] / c.t - mx) / s;
        }
        check_forward("softmax_dim1", y, yref, n);
        softmax_dim1_backward(dx, R, y, N, C, HW, temp);
        check_grad("softmax_dim1 dinp", softmax_loss, &c, c.x, n, dx, 2.0f);
        free(x), free(R), free(y), free(dx), free(c.x), free(c.R), free(yref);
    }
}

typedef struct {
    long n;
    double *x, *R, t;
} DivCtx;
static double div_loss(void *p) {
    DivCtx *c = (DivCtx *)p;
    double L = 0.0;
    for (long i = 0; i < c->n; i++) L += c->R[i] * c->x[i] / c->t;
    return L;
}
static void test_div_scalar(void) {
    long n = 16;
    float t = 0.8f;
    float *x = rand_floats(n, 2.0f), *R = rand_floats(n, 1.0f), *dx = filled(n, 0.0f), dt = 0.5f;
    div_scalar_backward(dx, &dt, R, x, t, n);
    DivCtx c = {n, to_double(x, n), to_double(R, n), t};
    check_grad("div by temperature dinp", div_loss, &c, c.x, n, dx, 0.0f);
    check_grad("div by temperature dt", div_loss, &c, &c.t, 1, &dt, 0.5f);
    free(x), free(R), free(dx), free(c.x), free(c.R);
}

// ---------------------------------------------------------------------------
// Linear maps, checked column by column against the float32 forward itself.

typedef void (*LinearMap)(const float *x, float *y, const int *shape);
// For each input element i: gradient_i must equal <R, forward(e_i)>.
static void check_linear_map(const char *what, LinearMap fwd, const int *shape, long nin, long nout, const float *R,
                             const float *grad, float base) {
    float *e = filled(nin, 0.0f), *y = filled(nout, 0.0f);
    double err = 0.0, scale = 0.0;
    for (long i = 0; i < nin; i++) {
        e[i] = 1.0f;
        fwd(e, y, shape);
        e[i] = 0.0f;
        double want = 0.0;
        for (long j = 0; j < nout; j++) want += (double)R[j] * y[j];
        scale = fmax(scale, fabs(want));
        err = fmax(err, fabs((double)grad[i] - base - want));
    }
    if (getenv("TEST_VERBOSE")) printf("%-80s rel err %.2e\n", what, err / scale);
    CHECK(scale > 0.0 && err <= 1e-5 * scale, "%s: max |grad - <R, forward(e_i)>| = %g (scale %g)", what, err, scale);
    free(e), free(y);
}

// shape: N, C, H, W, Ho, Wo, align_corners
static void resize_map(const float *x, float *y, const int *s) {
    resize_bilinear(x, y, s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
}
static void pool_map(const float *x, float *y, const int *s) {
    adaptive_avg_pool2d(x, y, s[0], s[1], s[2], s[3], s[4], s[5]);
}

static void test_resize_and_pool(void) {
    // (H, W) -> (Ho, Wo): up, down, odd ratios, same size, to and from 1.
    const int sizes[][4] = {{4, 5, 7, 9}, {7, 6, 3, 4}, {5, 5, 5, 5}, {3, 4, 8, 2}, {1, 3, 4, 5}, {6, 6, 1, 1}, {2, 2, 30, 30}};
    for (int s = 0; s < (int)(sizeof(sizes) / sizeof(sizes[0])); s++) {
        for (int ac = 0; ac < 2; ac++) {
            int shape[7] = {2, 2, sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], ac};
            long nin = 4L * shape[2] * shape[3], nout = 4L * shape[4] * shape[5];
            float *R = rand_floats(nout, 1.0f), *dx = filled(nin, 0.5f);
            resize_bilinear_backward(dx, R, 2, 2, shape[2], shape[3], shape[4], shape[5], ac);
            char what[96];
            snprintf(what, sizeof(what), "resize_bilinear_backward %dx%d->%dx%d align_corners=%d", shape[2], shape[3],
                     shape[4], shape[5], ac);
            check_linear_map(what, resize_map, shape, nin, nout, R, dx, 0.5f);
            free(R), free(dx);
        }
    }
    // Adaptive average pooling with the PSP scales and overlapping bins.
    const int pools[][4] = {{6, 6, 1, 1}, {6, 6, 2, 2}, {6, 6, 3, 3}, {6, 6, 6, 6}, {5, 7, 3, 2}, {4, 4, 6, 6}, {7, 5, 6, 4}};
    for (int s = 0; s < (int)(sizeof(pools) / sizeof(pools[0])); s++) {
        int shape[6] = {2, 3, pools[s][0], pools[s][1], pools[s][2], pools[s][3]};
        long nin = 6L * shape[2] * shape[3], nout = 6L * shape[4] * shape[5];
        float *R = rand_floats(nout, 1.0f), *dx = filled(nin, -1.0f);
        adaptive_avg_pool2d_backward(dx, R, 2, 3, shape[2], shape[3], shape[4], shape[5]);
        char what[96];
        snprintf(what, sizeof(what), "adaptive_avg_pool2d_backward %dx%d->%dx%d", shape[2], shape[3], shape[4], shape[5]);
        check_linear_map(what, pool_map, shape, nin, nout, R, dx, -1.0f);
        free(R), free(dx);
    }
    {
        // The global average pool of the linear head and the MoE gate: AdaptiveAvgPool2d(1).
        int shape[6] = {3, 4, 5, 6, 1, 1};
        long nin = 3L * 4 * 30, nout = 12;
        float *R = rand_floats(nout, 1.0f), *dx = filled(nin, 0.0f);
        adaptive_avg_pool2d_backward(dx, R, 3, 4, 5, 6, 1, 1);
        check_linear_map("adaptive_avg_pool2d_backward 5x6->1x1", pool_map, shape, nin, nout, R, dx, 0.0f);
        free(R), free(dx);
    }
}

// copy_channels / paste_channels (a channel slice, a piece of torch.cat) and their backwards:
// linear maps, so checked column by column like resize and pooling, and exact layouts.
static void copy_map(const float *x, float *y, const int *s) { copy_channels(y, x, s[0], s[1], s[2], s[3], s[4]); }
static void paste_map(const float *x, float *y, const int *s) {
    for (long i = 0; i < (long)s[0] * s[1] * s[4]; i++) y[i] = 0.0f;
    paste_channels(y, x, s[0], s[1], s[2], s[3], s[4]);
}
static void test_concat(void) {
    const int B = 2, C = 6, c0 = 2, c = 3, HW = 3;
    const int shape[5] = {B, C, c0, c, HW};
    const long big = (long)B * C * HW, small = (long)B * c * HW;
    float *full = rand_floats(big, 1.0f), *part = filled(small, 0.0f);
    copy_channels(part, full, B, C, c0, c, HW);
    int ok = 1;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < c; k++)
            for (int i = 0; i < HW; i++) ok &= part[((long)b * c + k) * HW + i] == full[((long)b * C + c0 + k) * HW + i];
    CHECK(ok, "copy_channels: wrong slice");
    float *R = rand_floats(small, 1.0f), *dfull = filled(big, 1.0f);
    copy_channels_backward(dfull, R, B, C, c0, c, HW);
    check_linear_map("copy_channels_backward", copy_map, shape, big, small, R, dfull, 1.0f);
    float *R2 = rand_floats(big, 1.0f), *dpart = filled(small, -0.5f);
    paste_channels_backward(dpart, R2, B, C, c0, c, HW);
    check_linear_map("paste_channels_backward", paste_map, shape, small, big, R2, dpart, -0.5f);
    free(full), free(part), free(R), free(dfull), free(R2), free(dpart);
}

static void test_dropout(void) {
    int N = 50, C = 200, HW = 3;
    long n = (long)N * C * HW;
    float *x = rand_floats(n, 1.0f), *y = filled(n, 0.0f), *mask = filled(N * C, -1.0f), *mask2 = filled(N * C, -1.0f);
    uint64_t rng = 42;
    dropout2d_forward(y, mask, x, N, C, HW, 0.1f, &rng);
    const float scale = 1.0f / 0.9f;
    long kept = 0;
    int values_ok = 1, out_ok = 1;
    for (long k = 0; k < (long)N * C; k++) {
        values_ok &= mask[k] == 0.0f || mask[k] == scale;
        kept += mask[k] != 0.0f;
        for (int i = 0; i < HW; i++) {
            // exact equality assumes the library evaluates the same product: the volatile store rounds
            // it to float here as the library's store does there (s390x gcc -std=c99: FLT_EVAL_METHOD 1,
            // float arithmetic in double, so an unstored product keeps 48 bits)
            volatile float want = x[k * HW + i] * mask[k];
            out_ok &= y[k * HW + i] == want;
        }
    }
    CHECK(values_ok && out_ok, "dropout2d: mask values must be 0 or 1/(1-p), out = inp * mask");
    double frac = (double)kept / (N * C), sigma = sqrt(0.9 * 0.1 / (N * C));
    CHECK(fabs(frac - 0.9) < 4 * sigma, "dropout2d: kept fraction %g, expected 0.9 +- %g", frac, 4 * sigma);
    rng = 42;
    dropout2d_forward(y, mask2, x, N, C, HW, 0.1f, &rng);
    CHECK(max_abs_diff(mask, mask2, N * C) == 0.0, "dropout2d: same seed, different mask");
    dropout2d_forward(y, mask2, x, N, C, HW, 0.1f, &rng);
    CHECK(max_abs_diff(mask, mask2, N * C) > 0.0, "dropout2d: the generator did not advance");
    float *R = rand_floats(n, 1.0f), *dx = filled(n, 0.5f);
    dropout2d_backward(dx, R, mask, N, C, HW);
    int grad_ok = 1;
    for (long i = 0; i < n; i++) {
        volatile float want = 0.5f + R[i] * mask[i / HW];  // rounded to float as the library's dx += (see above)
        grad_ok &= dx[i] == want;
    }
    CHECK(grad_ok, "dropout2d_backward: dinp != base + dout * mask");
    dropout2d_forward(y, mask2, x, N, C, HW, 0.0f, &rng);
    CHECK(max_abs_diff(y, x, n) == 0.0, "dropout2d p=0 must be the identity");
    dropout2d_forward(y, mask2, x, N, C, HW, 1.0f, &rng);
    int zero = 1;
    for (long i = 0; i < n; i++) zero &= y[i] == 0.0f;
    CHECK(zero, "dropout2d p=1 must zero everything");
    free(x), free(y), free(mask), free(mask2), free(R), free(dx);
}

// ---------------------------------------------------------------------------
// The same bits with 1 and 2 threads.

static void test_thread_independence(void) {
    int N = 3, Cin = 32, H = 16, W = 15, Cout = 32, groups = 8;  // large enough for the GEMM to use 2 threads
    Conv2dGeometry g = conv_geometry(3, 1, 1);
    long nx = (long)N * Cin * H * W, nw = (long)Cout * Cin * 9, ny = (long)N * Cout * H * W;
    float *x = rand_floats(nx, 1.0f), *w = rand_floats(nw, 0.3f), *R = rand_floats(ny, 1.0f);
    float *gamma = rand_floats(Cin, 1.0f), *beta = rand_floats(Cin, 1.0f);
    float *res[2][8];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        float *dx = filled(nx, 0.0f), *dw = filled(nw, 0.0f), *db = filled(Cout, 0.0f);
        conv2d_backward(dx, dw, db, R, x, w, N, Cin, H, W, Cout, g);
        float *y = filled(nx, 0.0f), *mean = filled(N * groups, 0), *rstd = filled(N * groups, 0);
        float *gdx = filled(nx, 0.0f), *gdg = filled(Cin, 0.0f), *gdb = filled(Cin, 0.0f);
        groupnorm_forward_stats(x, y, gamma, beta, N, Cin, H * W, groups, 1e-5f, mean, rstd);
        groupnorm_backward(gdx, gdg, gdb, R, x, mean, rstd, gamma, N, Cin, H * W, groups);
        float *bm = filled(Cin, 0), *br = filled(Cin, 0), *bdx = filled(nx, 0.0f);
        batchnorm_forward_train(y, bm, br, NULL, NULL, NULL, x, gamma, beta, N, Cin, H * W, 0.1, 1e-5);
        batchnorm_backward(bdx, gdg, gdb, R, x, bm, br, gamma, N, Cin, H * W);
        float *rdx = filled(4 * nx, 0.0f);
        resize_bilinear_backward(rdx, R, N, Cin, 2 * H, 2 * W, H, W, 0);  // the adjoint of a 2x down-scale
        res[t][0] = dx, res[t][1] = dw, res[t][2] = db, res[t][3] = gdx, res[t][4] = gdg, res[t][5] = gdb;
        res[t][6] = bdx, res[t][7] = rdx;
        free(y), free(mean), free(rstd), free(bm), free(br);
    }
    long sizes[8] = {nx, nw, Cout, nx, Cin, Cin, nx, 4 * nx};
    const char *names[8] = {"conv dinp", "conv dweight", "conv dbias", "groupnorm dinp", "norm dgamma", "norm dbeta",
                            "batchnorm dinp", "resize dinp"};
    for (int k = 0; k < 8; k++) {
        CHECK(memcmp(res[0][k], res[1][k], (size_t)sizes[k] * sizeof(float)) == 0, "%s differs between 1 and 2 threads",
              names[k]);
        free(res[0][k]), free(res[1][k]);
    }
    omp_set_num_threads(2);
    free(x), free(w), free(R), free(gamma), free(beta);
}

int main(void) {
    // Convolutions: the head's 1x1 and 3x3, strides, asymmetric padding, kernels wider than the input.
    test_conv(2, 3, 5, 6, 4, conv_geometry(3, 1, 1), 1);
    test_conv(2, 3, 5, 6, 4, conv_geometry(3, 1, 1), 0);
    test_conv(2, 5, 4, 3, 3, conv_geometry(1, 1, 0), 0);
    test_conv(1, 2, 7, 8, 3, conv_geometry(3, 2, 1), 1);
    test_conv(1, 2, 6, 5, 2, conv_geometry(1, 2, 0), 1);
    {
        Conv2dGeometry g = {2, 3, 2, 0, 1, 1, 0};  // 2x3 kernel, stride 2, pads top 0 left 1 bottom 1 right 0
        test_conv(2, 2, 5, 7, 3, g, 1);
        Conv2dGeometry big = {5, 5, 1, 2, 2, 2, 2};  // kernel wider than the 3x2 input
        test_conv(1, 2, 3, 2, 2, big, 1);
        Conv2dGeometry s3 = {3, 3, 3, 1, 1, 1, 1};  // stride 3: some kernel columns never overlap
        test_conv(1, 1, 4, 4, 2, s3, 0);
    }
    test_linear();
    test_groupnorm(2, 8, 6, 4);
    test_groupnorm(3, 6, 1, 2);   // one pixel: statistics over the group's channels only
    test_groupnorm(1, 4, 10, 4);  // one channel per group
    test_groupnorm_same_bits_as_inference();
    test_batchnorm(3, 4, 5);
    test_batchnorm(4, 3, 1);  // PPM scale 1: one value per sample
    test_batchnorm_single_value();
    test_relu();
    test_softmax();
    test_div_scalar();
    test_resize_and_pool();
    test_concat();
    test_dropout();
    test_thread_independence();
    return test_report("test_backward");
}
