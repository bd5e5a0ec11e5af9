// `make bench`: the element-wise and normalisation kernels at the UNet's shapes, the
// scalar loops they replaced (copied below as old_*) against the current kernels on
// each ISA path, measured in the same run. GB/s counts the least traffic of the op
// (each input float read once, each output written once).
// Usage: bench_norm_act [--quick]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "tests/test_env.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "tests/bench_peak.h"

// ---- The scalar kernels before the SIMD rewrite (norm.c / activations.c at 1bb73c8) -----------

static void old_groupnorm(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                          int groups, float eps) {
    int cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < groups; g++) {
            const float *xg = x + ((int64_t)n * C + (int64_t)g * cpg) * HW;
            float *yg = y + ((int64_t)n * C + (int64_t)g * cpg) * HW;
            int64_t count = (int64_t)cpg * HW;
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < count; i++) sum += xg[i];
            double mean = sum / (double)count;
            for (int64_t i = 0; i < count; i++) {
                double d = xg[i] - mean;
                sq += d * d;
            }
            float rstd = (float)(1.0 / sqrt(sq / (double)count + eps));
            float m = (float)mean;
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                float s = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
                for (int i = 0; i < HW; i++) {
                    int64_t k = (int64_t)c * HW + i;
                    yg[k] = (xg[k] - m) * rstd * s + b;
                }
            }
        }
    }
}

static void old_layernorm(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim,
                          float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < dim; i++) sum += xr[i];
        double mean = sum / dim;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            sq += d * d;
        }
        float rstd = (float)(1.0 / sqrt(sq / dim + eps));
        float m = (float)mean;
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * rstd * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
    }
}

static void old_silu(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

static void old_gelu(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void old_gelu_tanh(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

static void old_softmax_rows(float *x, int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *xr = x + (int64_t)r * n;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = xr[i] > mx ? xr[i] : mx;
        float sum = 0.0f;
        for (int i = 0; i < n; i++) {
            xr[i] = expf(xr[i] - mx);
            sum += xr[i];
        }
        for (int i = 0; i < n; i++) xr[i] /= sum;
    }
}

// ---- The cases ---------------------------------------------------------------------------------

typedef enum { OP_GN, OP_GN_SILU, OP_GN_THEN_SILU, OP_SILU, OP_GELU, OP_GELU_TANH, OP_LN, OP_SOFTMAX } Op;

typedef struct {
    const char *name;
    Op op;
    int a, b, c, d;  // GN: C, HW, groups; LN / softmax: rows, dim; element-wise: n = a * b
} Case;

typedef struct {
    const Case *cs;
    const float *src;  // the input, copied into work before each in-place run
    float *work, *out;
    const float *gamma, *beta;
    int old;  // 1: the old scalar loops; 0: the current kernels
} Run;

static int64_t case_floats(const Case *c) { return (int64_t)c->a * c->b; }

static void run_once(const Run *r) {
    const Case *c = r->cs;
    int64_t n = case_floats(c);
    switch (c->op) {
    case OP_GN:
        if (r->old) old_groupnorm(r->src, r->out, r->gamma, r->beta, 1, c->a, c->b, c->c, 1e-5f);
        else groupnorm_forward(r->src, r->out, r->gamma, r->beta, 1, c->a, c->b, c->c, 1e-5f);
        break;
    case OP_GN_SILU:
        if (r->old) {
            old_groupnorm(r->src, r->out, r->gamma, r->beta, 1, c->a, c->b, c->c, 1e-5f);
            old_silu(r->out, n);
        } else {
            groupnorm_silu_forward(r->src, r->out, r->gamma, r->beta, NULL, 1, c->a, c->b, c->c, 1e-5f);
        }
        break;
    case OP_GN_THEN_SILU:  // the unfused sequence (old: the same as OP_GN_SILU)
        if (r->old) {
            old_groupnorm(r->src, r->out, r->gamma, r->beta, 1, c->a, c->b, c->c, 1e-5f);
            old_silu(r->out, n);
        } else {
            groupnorm_forward(r->src, r->out, r->gamma, r->beta, 1, c->a, c->b, c->c, 1e-5f);
            silu_inplace(r->out, n);
        }
        break;
    case OP_SILU: r->old ? old_silu(r->work, n) : silu_inplace(r->work, n); break;
    case OP_GELU: r->old ? old_gelu(r->work, n) : gelu_inplace(r->work, n); break;
    case OP_GELU_TANH: r->old ? old_gelu_tanh(r->work, n) : gelu_tanh_inplace(r->work, n); break;
    case OP_LN:
        if (r->old) old_layernorm(r->src, r->out, r->gamma, r->beta, c->a, c->b, 1e-5f);
        else layernorm_forward(r->src, r->out, r->gamma, r->beta, c->a, c->b, 1e-5f);
        break;
    case OP_SOFTMAX: r->old ? old_softmax_rows(r->work, c->a, c->b) : softmax_rows(r->work, c->a, c->b); break;
    }
}

// Best time of at least 3 runs and min_total seconds; in-place ops get a fresh copy of the
// input before each run (not timed), so repeated application never drifts into denormals.
static double time_best(const Run *r, double min_total) {
    int64_t n = case_floats(r->cs);
    double best = 1e30, total = 0.0;
    for (int rep = 0; rep < 3 || total < min_total; rep++) {
        memcpy(r->work, r->src, (size_t)n * sizeof(float));
        double t0 = sd_now();
        run_once(r);
        double t = sd_now() - t0;
        total += t;
        if (t < best) best = t;
        if (rep >= 200) break;
    }
    return best;
}

static float *rand_floats(int64_t n, unsigned seed, float scale, float offset) {
    return bench_rand_floats((size_t)n, seed, scale, offset);
}

int main(int argc, char **argv) {
    double min_total = 0.15;
    if (argc > 1 && !strcmp(argv[1], "--quick")) min_total = 0.03;
    int threads = test_env_apply();
    if (threads < 1) {
        fprintf(stderr, "bench: bad SATDIFUSER_THREADS\n");
        return 1;
    }
    static const Case cases[] = {
        {"groupnorm C320 HW4096 G32", OP_GN, 320, 4096, 32, 0},
        {"groupnorm C1280 HW64 G32", OP_GN, 1280, 64, 32, 0},
        {"groupnorm, silu C320 HW4096 (unfused)", OP_GN_THEN_SILU, 320, 4096, 32, 0},
        {"groupnorm+silu C320 HW4096 (fused)", OP_GN_SILU, 320, 4096, 32, 0},
        {"groupnorm+silu C1280 HW256 (fused)", OP_GN_SILU, 1280, 256, 32, 0},
        {"groupnorm, silu C128 HW65536 (unfused)", OP_GN_THEN_SILU, 128, 65536, 32, 0},
        {"groupnorm+silu C128 HW65536 (fused)", OP_GN_SILU, 128, 65536, 32, 0},
        {"silu 1.3M (320x4096)", OP_SILU, 320, 4096, 0, 0},
        {"gelu 4096x2560", OP_GELU, 4096, 2560, 0, 0},
        {"gelu_tanh 4096x2560", OP_GELU_TANH, 4096, 2560, 0, 0},
        {"layernorm 4096x320", OP_LN, 4096, 320, 0, 0},
        {"softmax_rows 4096x77", OP_SOFTMAX, 4096, 77, 0, 0},
        {"softmax_rows 1024x1024", OP_SOFTMAX, 1024, 1024, 0, 0},
    };
    const int isas[] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512};
    printf("\nelement-wise / normalisation kernels: %d threads, CPU path %s; ratio = old scalar time / time\n", threads,
           sd_isa_name(sd_cpu_isa()));
    printf("(old = the scalar loops before the SIMD rewrite; GB/s = one read of the input + one write of the output)\n");
    printf("%-38s %18s", "op", "old scalar");
    for (int t = 0; t < 3; t++) printf(" %24s", sd_isa_name((SdIsa)isas[t]));
    printf("\n");
    double t_start = sd_now();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const Case *c = &cases[i];
        int64_t n = case_floats(c);
        int dim = c->op == OP_LN ? c->b : c->a;
        float *src = rand_floats(n, 1 + (unsigned)i, 3.0f, 0.2f), *work = rand_floats(n, 2, 1.0f, 0.0f);
        float *out = rand_floats(n, 3, 1.0f, 0.0f);
        float *gamma = rand_floats(dim, 4, 0.5f, 1.0f), *beta = rand_floats(dim, 5, 0.5f, 0.0f);
        double bytes = 2.0 * (double)n * sizeof(float);
        Run r = {c, src, work, out, gamma, beta, 1};
        double t_old = time_best(&r, min_total);
        printf("%-38s %7.2f ms %5.1f GB/s", c->name, t_old * 1e3, bytes / t_old * 1e-9);
        r.old = 0;
        for (int t = 0; t < 3; t++) {
            if (gemm_force_isa(isas[t]) != 0) {
                printf(" %24s", "-");
                continue;
            }
            double tn = time_best(&r, min_total);
            printf(" %6.2f ms %5.1f GB/s %5.1fx", tn * 1e3, bytes / tn * 1e-9, t_old / tn);
        }
        gemm_force_isa(-1);
        printf("\n");
        fflush(stdout);
        free(src);
        free(work);
        free(out);
        free(gamma);
        free(beta);
    }
    printf("(%.1f s)\n", sd_now() - t_start);
    return 0;
}
