// The element-wise and normalisation kernels (activations.c, norm.c, fused.c) on
// every ISA path this CPU runs (scalar, AVX2, AVX-512 on x86-64; scalar, NEON on
// arm64; forced in turn with gemm_force_isa), against naive
// double references with stated bounds; odd sizes, in place, 1 vs 2 threads
// bit-identical, the same bits across SIMD paths, fused GroupNorm+SiLU equal to the
// unfused sequence, NaN and inf.
#include <float.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/runtime.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

static const double ULP = 1.0 / 16777216.0;  // 2^-24: half a float ulp at 1, relative

static float *alloc_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float *copy_floats(const float *x, int64_t n) {
    float *p = alloc_floats(n);
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

// ---- Activations: every float of interest vs a double reference ---------------------------

typedef void (*Unary)(float *x, int64_t n);

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
static double ref_quick_gelu(double x) { return x / (1.0 + exp(-(double)1.702f * x)); }
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }  // = 0.5 x (1 + erf(x / sqrt2))
static double ref_gelu_tanh(double x) {  // = 0.5 x (1 + tanh(u)), without the cancellation
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}
static double ref_exp(double x) { return exp(x); }

// Inputs: a dense grid over [-lim, lim] and values of every magnitude from 1e-30 to 1e4, both signs.
static int64_t make_inputs(float *x, int64_t cap, double lim) {
    int64_t n = 0;
    for (int64_t i = 0; i < cap / 2; i++) x[n++] = (float)(-lim + 2.0 * lim * (double)i / (double)(cap / 2));
    unsigned long long s = 12345;
    while (n < cap) {
        double e = -30.0 + 34.0 * (0.5 * (test_rand(&s) + 1.0f));
        float v = (float)pow(10.0, e);
        x[n++] = test_rand(&s) < 0 ? -v : v;
    }
    return n;
}

// The rounding of w in exp(-|w|) (gelu_tanh, quick_gelu) is amplified by |w|: their bounds grow with it.
static double amp_none(double x) { (void)x; return 0.0; }
static double amp_quick_gelu(double x) { return fabs(1.702 * x); }
static double amp_gelu_tanh(double x) { return 2.0 * fabs(2.0 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)); }
// glibc's erfcf loses about z^2 ulp in the tail (the rounding of z^2 in its exp(-z^2))
static double amp_erfcf(double x) { return x * x; }

typedef struct {
    const char *name;
    Unary f;
    double (*ref)(double);
    double (*amp)(double), (*amp_scalar)(double);
    double base;  // bound: |y - ref| <= (base + amp(x)) 2^-23 |ref| + abs_allow, abs_allow = that bound * 1e-36
                  // on the SIMD paths (exp(-|w|) and erfc go denormal there) and 1e-36 on the scalar path (its
                  // x / (1 + expf(-w)) gives 0 for w < -88.7, where |ref| < 1e-36)
} ActCase;

// Max over x of |y - ref| / max(|ref|, floor) / ((base + amp(x)) 2^-23): <= 1 passes. Also the plain max
// relative error (amp = 0 region) for the log.
static void check_activation(const char *isa_name, const ActCase *c, int simd, const float *x, int64_t n) {
    float *y = copy_floats(x, n);
    c->f(y, n);
    double (*amp)(double) = simd ? c->amp : c->amp_scalar;
    double worst = 0.0, worst_rel = 0.0;
    float worst_x = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        double r = c->ref(x[i]);
        double err = fabs((double)y[i] - r), bound_rel = (c->base + amp(x[i])) * 2.0 * ULP;
        double rel = err / fmax(fabs(r), 1e-36);
        double ratio = err / (bound_rel * fabs(r) + (simd ? bound_rel * 1e-36 : 1e-36));
        if (!(ratio <= worst)) {
            worst = ratio;
            worst_x = x[i];
        }
        if (!(rel <= worst_rel)) worst_rel = rel;
    }
    printf("  %-7s %-10s max rel error %.3g; worst error / bound %.2f at x = %g\n", isa_name, c->name, worst_rel,
           worst, worst_x);
    CHECK(worst <= 1.0, "%s %s: error %.3g x the bound at x = %g", isa_name, c->name, worst, worst_x);
    free(y);
}

static void exp_inplace_for_test(float *x, int64_t n) { exp_span(x, n, eltwise_isa()); }

static void test_activation_accuracy(const char *isa_name, int simd) {
    const int64_t n = 1 << 21;
    float *x = alloc_floats(n);
    make_inputs(x, n, 20.0);
    // exp over [-87, 87] (its own inputs, scaled from the grid)
    float *xe = copy_floats(x, n);
    for (int64_t i = 0; i < n; i++) xe[i] = fmaxf(-87.0f, fminf(87.0f, 4.35f * xe[i]));
    const ActCase exp_case = {"exp", exp_inplace_for_test, ref_exp, amp_none, amp_none, 1.0};
    check_activation(isa_name, &exp_case, simd, xe, n);
    free(xe);
    const ActCase cases[] = {
        // ulp = 2^-23 relative; w the argument of exp(-|w|)
        {"silu", silu_inplace, ref_silu, amp_none, amp_none, 3.0},                              // 3 ulp
        {"quick_gelu", quick_gelu_inplace, ref_quick_gelu, amp_quick_gelu, amp_quick_gelu, 2.0},  // (2 + |w|) ulp
        {"gelu", gelu_inplace, ref_gelu, amp_none, amp_erfcf, 8.4},  // SIMD: 1e-6 (8.4 ulp); libm (8.4 + x^2) ulp
        {"gelu_tanh", gelu_tanh_inplace, ref_gelu_tanh, amp_gelu_tanh, amp_gelu_tanh, 4.0},      // (4 + 2|w|) ulp
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) check_activation(isa_name, &cases[c], simd, x, n);
    // relu, add, scale: exact
    {
        float *y = copy_floats(x, n), *z = copy_floats(x, n);
        relu_inplace(y, n);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= y[i] == (x[i] > 0.0f ? x[i] : 0.0f);
        CHECK(ok, "%s relu", isa_name);
        memcpy(y, x, (size_t)n * sizeof(float));
        add_inplace(y, z + 1, n - 1);
        scale_inplace(z, 0.3f, n);
        ok = 1;
        // exact: the kernels compute the same sum and product; the volatile stores round them to float
        // (with FLT_EVAL_METHOD 1, s390x gcc -std=c99, an unstored x + y stays in double)
        for (int64_t i = 0; i < n - 1; i++) {
            volatile float want = x[i] + x[i + 1];
            ok &= y[i] == want;
        }
        const float s = 0.3f;  // a float: under FLT_EVAL_METHOD 1 the constant 0.3f itself may stay a double
        for (int64_t i = 0; i < n; i++) {
            volatile float want = x[i] * s;
            ok &= z[i] == want;
        }
        CHECK(ok, "%s add / scale", isa_name);
        free(y);
        free(z);
    }
    free(x);
}

// Each op on n values must give the bits of the same op on a long array (body vs tail code).
static void test_activation_sizes(const char *isa_name) {
    const int64_t big = 3 * 16384 + 77;
    float *x = alloc_floats(big);
    test_fill(x, big, 7);
    for (int64_t i = 0; i < big; i++) x[i] *= 6.0f;
    Unary ops[] = {silu_inplace, quick_gelu_inplace, gelu_inplace, gelu_tanh_inplace, relu_inplace};
    const char *names[] = {"silu", "quick_gelu", "gelu", "gelu_tanh", "relu"};
    const int64_t sizes[] = {1, 7, 15, 16, 17, 31, 33, 100, 16385, big};
    for (int o = 0; o < 5; o++) {
        float *full = copy_floats(x, big);
        ops[o](full, big);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            int64_t n = sizes[s], off = 3;  // an unaligned start
            if (off + n > big) off = 0;
            float *y = copy_floats(x + off, n);
            ops[o](y, n);
            CHECK(same_bits(y, full + off, n), "%s %s: n = %lld differs from the long array", isa_name, names[o],
                  (long long)n);
            free(y);
        }
        free(full);
    }
    free(x);
}

static void test_activation_specials(const char *isa_name) {
    const float inf = INFINITY, nan = NAN;
    float x[8] = {nan, inf, -inf, 0.0f, -0.0f, -200.0f, 200.0f, 1e-30f};
    Unary ops[] = {silu_inplace, quick_gelu_inplace, gelu_inplace, gelu_tanh_inplace};
    const char *names[] = {"silu", "quick_gelu", "gelu", "gelu_tanh"};
    for (int o = 0; o < 4; o++) {
        float y[8];
        memcpy(y, x, sizeof(y));
        ops[o](y, 8);
        // as PyTorch: f(NaN) = NaN, f(inf) = inf, f(-inf) = NaN (-inf * 0), f(+-0) = 0, f(-200) = -0
        CHECK(isnan(y[0]) && y[1] == inf && isnan(y[2]), "%s %s: NaN/+inf/-inf -> %g %g %g", isa_name, names[o], y[0],
              y[1], y[2]);
        CHECK(y[3] == 0.0f && y[4] == 0.0f && y[5] == 0.0f && y[6] == 200.0f,
              "%s %s: 0, -0, -200, 200 -> %g %g %g %g", isa_name, names[o], y[3], y[4], y[5], y[6]);
        CHECK(fabs(y[7] / (0.5 * (double)1e-30f) - 1.0) < 1e-6, "%s %s: f(1e-30) = %g, not 0.5e-30", isa_name,
              names[o], y[7]);
    }
    float r[3] = {nan, -1.0f, -0.0f};
    relu_inplace(r, 3);
    CHECK(isnan(r[0]) && r[1] == 0.0f && r[2] == 0.0f && !signbit(r[2]), "%s relu NaN/-1/-0 -> %g %g %g", isa_name,
          r[0], r[1], r[2]);
}

// ---- Softmax ------------------------------------------------------------------------------

static void test_softmax(const char *isa_name) {
    const int ns[] = {1, 2, 7, 16, 17, 77, 1000, 4099};
    for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
        int n = ns[t], rows = 5;
        float *x = alloc_floats((int64_t)rows * n);
        test_fill(x, (int64_t)rows * n, 100 + t);
        for (int64_t i = 0; i < (int64_t)rows * n; i++) x[i] *= 30.0f;  // exps spread over 1e-26 .. 1
        float *y = copy_floats(x, (int64_t)rows * n);
        softmax_rows(y, rows, n);
        double worst = 0.0;  // error / bound, bound = (|x - max| + 8 + sqrt(n)) 2^-23 relative
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (int64_t)r * n;
            double mx = -INFINITY, sum = 0.0;
            for (int i = 0; i < n; i++) mx = fmax(mx, xr[i]);
            for (int i = 0; i < n; i++) sum += exp(xr[i] - mx);
            for (int i = 0; i < n; i++) {
                double ref = exp(xr[i] - mx) / sum;
                if (ref < FLT_MIN) continue;
                double e = fabs(y[(int64_t)r * n + i] - ref) / ref / ((fabs(xr[i] - mx) + 8.0 + sqrt(n)) * 2.0 * ULP);
                if (!(e <= worst)) worst = e;
            }
        }
        CHECK(worst <= 1.0, "%s softmax n = %d: error %.3g x the bound", isa_name, n, worst);
        free(x);
        free(y);
    }
    // NaN anywhere, +inf, or all -inf make the row NaN (as torch); other rows are untouched
    float s[4][3] = {{1.0f, NAN, 2.0f}, {1.0f, INFINITY, 2.0f}, {-INFINITY, -INFINITY, -INFINITY}, {0.0f, 0.0f, 0.0f}};
    softmax_rows(&s[0][0], 4, 3);
    int ok = 1;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 3; i++) ok &= isnan(s[r][i]);
    CHECK(ok, "%s softmax: NaN / inf / all -inf rows are NaN", isa_name);
    CHECK(fabs(s[3][0] - 1.0 / 3.0) < 1e-7 && s[3][0] == s[3][2], "%s softmax: the finite row %g", isa_name, s[3][0]);
}

// ---- Normalisation vs double references -----------------------------------------------------

// Per element: |y - ref| <= 2^-24 (|mean| rstd |gamma| + 4 |(x - mean) rstd gamma| + |y|) * 1.5: the float
// roundings of mean, rstd, the subtraction, the two products and the sum (statistics in double).
static int gn_check(const char *what, const float *x, const float *y, const float *gamma, const float *beta,
                    const float *add, int N, int C, int HW, int groups, double eps, int silu) {
    int cpg = C / groups, bad = 0;
    double worst = 0.0;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < groups; g++) {
            double sum = 0.0, sq = 0.0, cnt = (double)cpg * HW;
            for (int c = 0; c < cpg; c++)
                for (int i = 0; i < HW; i++) {
                    int64_t k = ((int64_t)n * C + g * cpg + c) * HW + i;
                    sum += (double)(add ? x[k] + add[n * C + g * cpg + c] : x[k]);
                }
            double mean = sum / cnt;
            for (int c = 0; c < cpg; c++)
                for (int i = 0; i < HW; i++) {
                    int64_t k = ((int64_t)n * C + g * cpg + c) * HW + i;
                    double d = (double)(add ? x[k] + add[n * C + g * cpg + c] : x[k]) - mean;
                    sq += d * d;
                }
            double rstd = 1.0 / sqrt(sq / cnt + eps);
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                double ga = gamma ? gamma[ch] : 1.0, be = beta ? beta[ch] : 0.0;
                for (int i = 0; i < HW; i++) {
                    int64_t k = ((int64_t)n * C + ch) * HW + i;
                    double v = add ? x[k] + add[n * C + ch] : x[k];
                    double a = (v - mean) * rstd * ga, ref = a + be;
                    double tol = 1.5 * ULP * (fabs(mean) * rstd * fabs(ga) + 4.0 * fabs(a) + fabs(ref)) + 1e-30;
                    if (silu) {  // silu is 1-Lipschitz-ish (|silu'| <= 1.1) plus its own 4 ulp
                        tol = 1.1 * tol + 8.0 * ULP * fabs(ref_silu(ref));
                        ref = ref_silu(ref);
                    }
                    double e = fabs(y[k] - ref);
                    if (!(e <= tol)) bad++;
                    if (e / tol > worst) worst = e / tol;
                }
            }
        }
    CHECK(bad == 0, "%s: %d elements outside the bound (worst %.2f x bound)", what, bad, worst);
    return bad;
}

static void test_groupnorm(const char *isa_name) {
    struct {
        int N, C, HW, groups, null_affine;
        float offset;
    } shapes[] = {
        {1, 64, 1024, 32, 0, 0.0f}, {2, 6, 33, 3, 0, 0.5f},  {3, 8, 1, 2, 0, 0.0f},     {1, 5, 37, 1, 0, -2.0f},
        {2, 7, 50, 7, 0, 0.0f},     {1, 4, 17, 2, 1, 0.0f},  {1, 32, 96, 8, 0, 100.0f}, {2, 1280, 64, 32, 0, 0.0f},
    };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int N = shapes[s].N, C = shapes[s].C, HW = shapes[s].HW, G = shapes[s].groups;
        int64_t n = (int64_t)N * C * HW;
        float *x = alloc_floats(n), *gamma = alloc_floats(C), *beta = alloc_floats(C), *bias = alloc_floats(N * C);
        test_fill(x, n, 11 + s);
        test_fill(gamma, C, 21 + s);
        test_fill(beta, C, 31 + s);
        test_fill(bias, N * C, 41 + s);
        for (int64_t i = 0; i < n; i++) x[i] = 3.0f * x[i] + shapes[s].offset;
        const float *ga = shapes[s].null_affine ? NULL : gamma, *be = shapes[s].null_affine ? NULL : beta;
        char what[128];
        snprintf(what, sizeof(what), "%s groupnorm N%d C%d HW%d G%d%s offset %g", isa_name, N, C, HW, G,
                 ga ? "" : " (no affine)", shapes[s].offset);
        float *y = alloc_floats(n);
        groupnorm_forward(x, y, ga, be, N, C, HW, G, 1e-5f);
        gn_check(what, x, y, ga, be, NULL, N, C, HW, G, 1e-5, 0);
        // in place
        float *z = copy_floats(x, n);
        groupnorm_forward(z, z, ga, be, N, C, HW, G, 1e-5f);
        CHECK(same_bits(y, z, n), "%s: in place differs", what);

        // fused: the same bits as add bias + groupnorm + silu; checked against the double reference too
        float *f = alloc_floats(n), *u = copy_floats(x, n), *x_before = copy_floats(x, n);
        for (int b = 0; b < 2; b++) {
            const float *cb = b ? bias : NULL;
            groupnorm_silu_forward(x, f, ga, be, cb, N, C, HW, G, 1e-5f);
            CHECK(same_bits(x, x_before, n), "%s: fused changed its input", what);
            memcpy(u, x, (size_t)n * sizeof(float));
            if (cb)
                for (int64_t k = 0; k < n; k++) u[k] += cb[k / HW];
            groupnorm_forward(u, u, ga, be, N, C, HW, G, 1e-5f);
            silu_inplace(u, n);
            CHECK(same_bits(f, u, n), "%s: fused GN+SiLU (bias %d) differs from GN then SiLU", what, b);
            char w2[160];
            snprintf(w2, sizeof(w2), "%s fused bias %d", what, b);
            gn_check(w2, x, f, ga, be, cb, N, C, HW, G, 1e-5, 1);
            memcpy(u, x, (size_t)n * sizeof(float));
            groupnorm_silu_forward(u, u, ga, be, cb, N, C, HW, G, 1e-5f);
            CHECK(same_bits(f, u, n), "%s: fused in place (bias %d) differs", what, b);
        }
        free(x);
        free(gamma);
        free(beta);
        free(bias);
        free(y);
        free(z);
        free(f);
        free(u);
        free(x_before);
    }
}

static void test_layernorm_batchnorm(const char *isa_name) {
    const int dims[] = {1, 17, 320, 1027};
    for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
        int rows = 9, dim = dims[d];
        int64_t n = (int64_t)rows * dim;
        float *x = alloc_floats(n), *y = alloc_floats(n), *gamma = alloc_floats(dim), *beta = alloc_floats(dim);
        test_fill(x, n, 51 + d);
        test_fill(gamma, dim, 61 + d);
        test_fill(beta, dim, 71 + d);
        for (int64_t i = 0; i < n; i++) x[i] = 2.0f * x[i] + 1.0f;
        for (int affine = 0; affine < 2; affine++) {
            const float *ga = affine ? gamma : NULL, *be = affine ? beta : NULL;
            layernorm_forward(x, y, ga, be, rows, dim, 1e-5f);
            char what[96];
            snprintf(what, sizeof(what), "%s layernorm dim %d affine %d", isa_name, dim, affine);
            // a LayerNorm row is a GroupNorm with one group over (1, dim, 1) with a per-element affine
            int bad = 0;
            for (int r = 0; r < rows; r++) {
                const float *xr = x + (int64_t)r * dim;
                double sum = 0.0, sq = 0.0;
                for (int i = 0; i < dim; i++) sum += xr[i];
                double mean = sum / dim;
                for (int i = 0; i < dim; i++) sq += (xr[i] - mean) * (xr[i] - mean);
                double rstd = 1.0 / sqrt(sq / dim + 1e-5);
                for (int i = 0; i < dim; i++) {
                    double g = ga ? ga[i] : 1.0, b = be ? be[i] : 0.0, a = (xr[i] - mean) * rstd * g, ref = a + b;
                    double tol = 1.5 * ULP * (fabs(mean) * rstd * fabs(g) + 4.0 * fabs(a) + fabs(ref)) + 1e-30;
                    bad += !(fabs(y[(int64_t)r * dim + i] - ref) <= tol);
                }
            }
            CHECK(bad == 0, "%s: %d elements outside the bound", what, bad);
            float *z = copy_floats(x, n);
            layernorm_forward(z, z, ga, be, rows, dim, 1e-5f);
            CHECK(same_bits(y, z, n), "%s: in place differs", what);
            free(z);
        }
        free(x);
        free(y);
        free(gamma);
        free(beta);
    }
    // BatchNorm eval: y = (x - mean) / sqrt(var + eps) * gamma + beta
    int N = 2, C = 5, HW = 37;
    int64_t n = (int64_t)N * C * HW;
    float *x = alloc_floats(n), *y = alloc_floats(n), mean[5], var[5], gamma[5], beta[5];
    test_fill(x, n, 81);
    test_fill(mean, C, 82);
    test_fill(var, C, 83);
    test_fill(gamma, C, 84);
    test_fill(beta, C, 85);
    for (int c = 0; c < C; c++) var[c] = var[c] * var[c] + 0.1f;
    batchnorm_forward_eval(x, y, mean, var, gamma, beta, N, C, HW, 1e-5f);
    int bad = 0;
    for (int64_t k = 0; k < n; k++) {
        int c = (int)((k / HW) % C);
        double s = gamma[c] / sqrt(var[c] + 1e-5), ref = (x[k] - mean[c]) * s + beta[c];
        double tol = 4.0 * ULP * (fabs(x[k] * s) + fabs(mean[c] * s) + fabs(beta[c]) + fabs(ref)) + 1e-30;
        bad += !(fabs(y[k] - ref) <= tol);
    }
    CHECK(bad == 0, "%s batchnorm eval: %d elements outside the bound", isa_name, bad);
    float *z = copy_floats(x, n);
    batchnorm_forward_eval(z, z, mean, var, gamma, beta, N, C, HW, 1e-5f);
    CHECK(same_bits(y, z, n), "%s batchnorm in place differs", isa_name);
    free(x);
    free(y);
    free(z);
}

// A NaN or inf in one group (row) makes that group (row) NaN and leaves the others' bits alone.
static void test_norm_specials(const char *isa_name) {
    int N = 2, C = 8, HW = 20, G = 4;
    int64_t n = (int64_t)N * C * HW;
    float *x = alloc_floats(n), *clean = alloc_floats(n), *y = alloc_floats(n);
    test_fill(x, n, 91);
    groupnorm_forward(x, clean, NULL, NULL, N, C, HW, G, 1e-5f);
    for (int bad = 0; bad < 2; bad++) {
        float *xb = copy_floats(x, n);
        xb[(int64_t)(1 * C + 2) * HW + 5] = bad ? INFINITY : NAN;  // sample 1, group 1 (channels 2, 3)
        groupnorm_forward(xb, y, NULL, NULL, N, C, HW, G, 1e-5f);
        int ok = 1;
        for (int64_t k = 0; k < n; k++) {
            int in_bad = k / HW / C == 1 && (k / HW) % C / 2 == 1;
            ok &= in_bad ? isnan(y[k]) : y[k] == clean[k];
        }
        CHECK(ok, "%s groupnorm with %s in one group", isa_name, bad ? "inf" : "NaN");
        free(xb);
    }
    float row[3 * 20];
    test_fill(row, 60, 92);
    row[20 + 3] = INFINITY;
    layernorm_forward(row, row, NULL, NULL, 3, 20, 1e-5f);
    int ok = 1;
    for (int i = 0; i < 60; i++) ok &= (i >= 20 && i < 40) ? isnan(row[i]) : isfinite(row[i]);
    CHECK(ok, "%s layernorm with inf in one row", isa_name);
    free(x);
    free(clean);
    free(y);
}

// ---- Threads and ISA paths ---------------------------------------------------------------------

// Every op at sizes with several chunks / groups / rows: outputs[k] of op k, for later comparison.
enum { N_OPS = 10 };
static const int64_t kBig = 3 * 16384 + 1000;

static void run_all_ops(float *out[N_OPS], const float *x) {
    const float bn_mean[1] = {0.1f}, bn_var[1] = {0.5f}, bn_gamma[1] = {1.3f}, bn_beta[1] = {-0.2f};
    for (int k = 0; k < N_OPS; k++) memcpy(out[k], x, (size_t)kBig * sizeof(float));
    silu_inplace(out[0], kBig);
    gelu_inplace(out[1], kBig);
    gelu_tanh_inplace(out[2], kBig);
    quick_gelu_inplace(out[3], kBig);
    softmax_rows(out[4], 50, (int)(kBig / 50));
    groupnorm_forward(x, out[5], x, x + 100, 2, 64, (int)(kBig / 128), 32, 1e-5f);
    layernorm_forward(x, out[6], x, x + 500, (int)(kBig / 333), 333, 1e-6f);
    groupnorm_silu_forward(x, out[7], x, x + 7, x + 300, 2, 64, (int)(kBig / 128), 32, 1e-6f);
    batchnorm_forward_eval(x, out[8], bn_mean, bn_var, bn_gamma, bn_beta, 1, 1, (int)kBig, 1e-5f);
    add_inplace(out[9], x + 1, kBig - 1);
    scale_inplace(out[9], 1.5f, kBig);
}

static const char *kOpNames[N_OPS] = {"silu",      "gelu",  "gelu_tanh",     "quick_gelu", "softmax_rows",
                                      "groupnorm", "layernorm", "groupnorm_silu", "batchnorm",  "add+scale"};

static void alloc_outputs(float *out[N_OPS]) {
    for (int k = 0; k < N_OPS; k++) out[k] = alloc_floats(kBig);
}
static void free_outputs(float *out[N_OPS]) {
    for (int k = 0; k < N_OPS; k++) free(out[k]);
}

static void test_threads(const char *isa_name, const float *x) {
    float *one[N_OPS], *two[N_OPS];
    alloc_outputs(one);
    alloc_outputs(two);
    set_threads(1);
    run_all_ops(one, x);
    set_threads(2);
    run_all_ops(two, x);
    for (int k = 0; k < N_OPS; k++)
        CHECK(same_bits(one[k], two[k], kBig), "%s %s: 1 and 2 threads differ", isa_name, kOpNames[k]);
    free_outputs(one);
    free_outputs(two);
}

int main(void) {
    set_threads(2);
    enum { N_ISAS = 4 };
    const int isas[N_ISAS] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON};
    float *x = alloc_floats(kBig);
    test_fill(x, kBig, 5);
    for (int64_t i = 0; i < kBig; i++) x[i] = 4.0f * x[i] + 0.25f;
    float *outs[N_ISAS][N_OPS] = {{0}};
    int ran[N_ISAS] = {0};
    for (int t = 0; t < N_ISAS; t++) {
        if (gemm_force_isa(isas[t]) != 0) continue;
        const char *name = sd_isa_name((SdIsa)isas[t]);
        CHECK(eltwise_isa() == isas[t], "eltwise_isa() follows gemm_force_isa(%s)", name);
        printf("ISA path %s\n", name);
        test_activation_accuracy(name, isas[t] != ISA_SCALAR);
        test_activation_sizes(name);
        test_activation_specials(name);
        test_softmax(name);
        test_groupnorm(name);
        test_layernorm_batchnorm(name);
        test_norm_specials(name);
        test_threads(name, x);
        alloc_outputs(outs[t]);
        run_all_ops(outs[t], x);
        ran[t] = 1;
    }
    gemm_force_isa(-1);
    // Normalisation and add/scale: the same bits on every path as the scalar loops; activations:
    // AVX2 and AVX-512 agree bit for bit (NEON computes what AVX2 does, but never runs beside it).
    for (int t = 1; t < N_ISAS; t++) {
        if (!ran[t]) continue;
        for (int k = 0; k < N_OPS; k++) {
            int norm = k >= 5 && k != 7, vs_scalar = norm || k == 9;
            if (vs_scalar && ran[0])
                CHECK(same_bits(outs[0][k], outs[t][k], kBig), "%s: %s differs from scalar", kOpNames[k],
                      sd_isa_name((SdIsa)isas[t]));
            if (isas[t] == ISA_AVX512 && ran[1])
                CHECK(same_bits(outs[1][k], outs[t][k], kBig), "%s: avx2 and avx512 differ", kOpNames[k]);
        }
    }
    int simd_paths = 0;
    for (int t = 1; t < N_ISAS; t++) simd_paths += ran[t];
#if defined(__x86_64__) || defined(__aarch64__)
    // a SIMD build that tested only the scalar loops would pass without testing what it runs
    CHECK(simd_paths > 0 || sd_cpu_isa() == ISA_SCALAR, "no SIMD path was tested on this %s CPU",
          sd_isa_name(sd_cpu_isa()));
#endif
    printf("%d SIMD path(s) tested beside the scalar loops\n", simd_paths);
    for (int t = 0; t < N_ISAS; t++)
        if (ran[t]) free_outputs(outs[t]);
    free(x);
    return test_report("test_norm_act_simd");
}
