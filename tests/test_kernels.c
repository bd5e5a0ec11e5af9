// Unit tests of the compute kernels (GEMM, convolution, attention) against the
// reference path (src/kernels/reference.c: the plain loops, sums in double), on
// odd shapes, on every ISA path this CPU can run (forced in turn with
// gemm_force_isa), and checking that 1, 2 and 3 threads give the same bits.
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/runtime.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_util.h"

static float *rand_buf(size_t n, unsigned long long seed) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    test_fill(x, (long)n, seed);
    return x;
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

// ---- GEMM ---------------------------------------------------------------------

// One sgemm against the reference; lda/ldb/ldc are padded by `pad` to test strides.
static void check_gemm(const char *isa, int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t a_rows = ta ? K : M, b_rows = tb ? N : K;
    float *A = rand_buf(a_rows * lda, 1 + M), *B = rand_buf(b_rows * ldb, 2 + N);
    float *C = malloc(((size_t)M * ldc + 1) * sizeof(float)), *R = malloc(((size_t)M * ldc + 1) * sizeof(float));
    if (beta == 0.0f) {
        fill_nan(C, (size_t)M * ldc);  // beta 0: C must not be read
        for (size_t i = 0; i < (size_t)M * ldc; i++) R[i] = 0.0f;
    } else {
        test_fill(C, (long)M * ldc, 3);
        memcpy(R, C, (size_t)M * ldc * sizeof(float));
    }
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    reference_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    double worst = 0.0;
    for (int i = 0; i < M; i++) {
        double d = max_abs_diff(C + (int64_t)i * ldc, R + (int64_t)i * ldc, N);
        if (!(d <= worst)) worst = d;
    }
    double tol = 1e-6 * (K + 8);
    CHECK(worst <= tol, "%s sgemm ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: max diff %g > %g", isa, ta, tb, M,
          N, K, alpha, beta, pad, worst, tol);
    free(A);
    free(B);
    free(C);
    free(R);
}

static void test_gemm(const char *isa) {
    static const int shapes[][3] = {{1, 1, 1},    {1, 37, 5},    {37, 1, 5},   {13, 17, 19},  {14, 32, 1},
                                    {15, 33, 2},  {29, 65, 300}, {3, 200, 7},  {100, 70, 600}, {200, 9, 257},
                                    {77, 160, 64}, {64, 77, 160}, {350, 66, 513}};
    int nshapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
    for (int s = 0; s < nshapes; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                check_gemm(isa, ta, tb, M, N, K, 1.0f, 0.0f, 0);
                check_gemm(isa, ta, tb, M, N, K, 0.5f, 1.0f, 3);
                if (s % 3 == 0) check_gemm(isa, ta, tb, M, N, K, -1.5f, 0.25f, 17);
            }
    check_gemm(isa, 0, 0, 5, 7, 0, 1.0f, 0.5f, 1);  // K = 0: C = beta C
    check_gemm(isa, 0, 0, 5, 7, 0, 1.0f, 0.0f, 1);

    // linear_forward: y = x W^T + b
    int rows = 45, in = 70, out = 53;
    float *x = rand_buf((size_t)rows * in, 11), *W = rand_buf((size_t)out * in, 12), *b = rand_buf(out, 13);
    float *y = malloc((size_t)rows * out * sizeof(float)), *r = malloc((size_t)rows * out * sizeof(float));
    fill_nan(y, (size_t)rows * out);
    linear_forward(x, W, b, y, rows, in, out);
    reference_linear(x, W, b, r, rows, in, out);
    double d = max_abs_diff(y, r, (long)rows * out);
    CHECK(d <= 1e-4, "%s linear_forward: max diff %g", isa, d);
    fill_nan(y, (size_t)rows * out);
    linear_forward(x, W, NULL, y, rows, in, out);
    reference_linear(x, W, NULL, r, rows, in, out);
    d = max_abs_diff(y, r, (long)rows * out);
    CHECK(d <= 1e-4, "%s linear_forward (no bias): max diff %g", isa, d);
    free(x);
    free(W);
    free(b);
    free(y);
    free(r);
}

// The same product with 1, 2 and 3 threads must give the same bits (large enough to be threaded).
static void test_gemm_threads(const char *isa) {
    // The last two are the smallest that every kernel set cuts into a grid of both rows and
    // columns at 2 and at 3 threads (3-4 k blocks); {200, 4200, 800} has two NC panels of
    // columns; {900, 20, 1000} is a grid of rows with all of B packed once and shared (3 k blocks)
    static const int shapes[][5] = {{300, 500, 700, 0, 0}, {64, 1300, 333, 0, 1}, {1100, 40, 300, 1, 0},
                                    {900, 20, 1000, 0, 1},  {200, 4200, 800, 0, 0}, {944, 948, 800, 0, 0},
                                    {720, 884, 800, 1, 0}};
    for (int s = 0; s < 7; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
        float *A = rand_buf((size_t)M * K, 21), *B = rand_buf((size_t)K * N, 22);
        float *C1 = malloc((size_t)M * N * sizeof(float)), *C2 = malloc((size_t)M * N * sizeof(float));
        int lda = ta ? M : K, ldb = tb ? K : N;
        set_threads(1);
        sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C1, N);
        for (int t = 2; t <= 3; t++) {
            set_threads(t);
            fill_nan(C2, (size_t)M * N);
            sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C2, N);
            CHECK(memcmp(C1, C2, (size_t)M * N * sizeof(float)) == 0, "%s sgemm %dx%dx%d: 1 and %d threads differ",
                  isa, M, N, K, t);
        }
        set_threads(2);
        free(A);
        free(B);
        free(C1);
        free(C2);
    }
}

// sgemm called from inside a parallel region (each thread its own product) runs on the calling
// thread with its own workspace and gives the same bits as a top-level call.
static void test_gemm_nested(const char *isa) {
    int M = 90, N = 130, K = 400;
    float *A = rand_buf((size_t)M * K, 51), *B = rand_buf((size_t)K * N, 52);
    float *R = malloc((size_t)M * N * sizeof(float)), *C = malloc(4 * (size_t)M * N * sizeof(float));
    sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, R, N);
    int same = 1;
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int t = 0; t < 4; t++) sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C + (size_t)t * M * N, N);
    for (int t = 0; t < 4; t++) same &= memcmp(R, C + (size_t)t * M * N, (size_t)M * N * sizeof(float)) == 0;
    CHECK(same, "%s sgemm inside a parallel region differs from the top-level call", isa);
    free(A);
    free(B);
    free(R);
    free(C);
}

// ---- Convolution ----------------------------------------------------------------

typedef struct {
    int N, Cin, H, W, Cout, k, stride, pt, pl, pb, pr, bias;
} ConvCase;

static void check_conv(const char *isa, ConvCase c, int check_threads) {
    Conv2dGeometry g = {c.k, c.k, c.stride, c.pt, c.pl, c.pb, c.pr};
    int Ho = conv_out_size(c.H, c.k, c.stride, c.pt, c.pb), Wo = conv_out_size(c.W, c.k, c.stride, c.pl, c.pr);
    size_t nx = (size_t)c.N * c.Cin * c.H * c.W, nw = (size_t)c.Cout * c.Cin * c.k * c.k;
    size_t ny = (size_t)c.N * c.Cout * Ho * Wo;
    float *x = rand_buf(nx, 31), *w = rand_buf(nw, 32), *b = c.bias ? rand_buf(c.Cout, 33) : NULL;
    float *y = malloc(ny * sizeof(float)), *r = malloc(ny * sizeof(float));
    fill_nan(y, ny);
    conv2d_forward(x, c.N, c.Cin, c.H, c.W, w, b, c.Cout, g, y);
    reference_conv2d(x, c.N, c.Cin, c.H, c.W, w, NULL, b, c.Cout, g, r);
    double d = max_abs_diff(y, r, (long)ny), tol = 1e-6 * (c.Cin * c.k * c.k + 8);
    CHECK(d <= tol, "%s conv N=%d Cin=%d %dx%d Cout=%d k=%d s=%d pad=(%d,%d,%d,%d) bias=%d: max diff %g", isa, c.N,
          c.Cin, c.H, c.W, c.Cout, c.k, c.stride, c.pt, c.pl, c.pb, c.pr, c.bias, d);
    if (check_threads) {
        float *y1 = malloc(ny * sizeof(float));
        set_threads(1);
        conv2d_forward(x, c.N, c.Cin, c.H, c.W, w, b, c.Cout, g, y1);
        set_threads(2);
        CHECK(memcmp(y, y1, ny * sizeof(float)) == 0, "%s conv Cin=%d %dx%d Cout=%d k=%d: 1 and 2 threads differ",
              isa, c.Cin, c.H, c.W, c.Cout, c.k);
        free(y1);
    }
    free(x);
    free(w);
    free(b);
    free(y);
    free(r);
}

static void test_conv(const char *isa) {
    static const ConvCase cases[] = {
        {1, 3, 17, 19, 8, 3, 1, 1, 1, 1, 1, 1},      // Cin = 3 (the VAE's first conv)
        {2, 5, 9, 11, 7, 3, 1, 1, 1, 1, 1, 0},       // batch 2, no bias
        {1, 6, 16, 16, 5, 3, 2, 0, 0, 1, 1, 1},      // stride 2, asymmetric (VAE Downsample2D)
        {1, 4, 15, 13, 9, 3, 2, 1, 1, 1, 1, 1},      // stride 2, odd map
        {2, 7, 10, 12, 11, 1, 1, 0, 0, 0, 0, 1},     // 1x1 = GEMM
        {1, 5, 9, 9, 6, 1, 2, 0, 0, 0, 0, 1},        // 1x1 stride 2
        {1, 3, 8, 8, 4, 3, 1, 0, 0, 0, 0, 1},        // no padding
        {1, 2, 7, 6, 3, 3, 1, 2, 0, 1, 3, 1},        // odd asymmetric padding
        {1, 3, 6, 6, 2, 5, 1, 2, 2, 2, 2, 1},        // 5x5 kernel
        {1, 40, 12, 12, 37, 3, 1, 1, 1, 1, 1, 1},    // K = 360 > kc
        {1, 300, 5, 5, 20, 3, 1, 1, 1, 1, 1, 1},     // K = 2700, tiny map
        {1, 4, 5, 45, 6, 3, 1, 1, 1, 1, 1, 1},       // rows wider than a micro-panel: runs start mid-row
        {1, 3, 4, 70, 5, 3, 1, 0, 0, 2, 1, 1},       // wide rows, uneven left/right padding
        {1, 4, 40, 1, 5, 3, 1, 1, 1, 1, 1, 1},       // 1 column: 32 runs in a micro-panel
        {1, 3, 5, 6, 4, 1, 1, 1, 1, 1, 1, 1},        // 1x1 with padding (not a plain GEMM)
        {1, 3, 9, 10, 4, 3, 1, 1, 2, 0, 0, 1},       // left padding only
    };
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < n; i++) check_conv(isa, cases[i], 0);
    // Big enough to be threaded.
    ConvCase big = {1, 64, 24, 24, 96, 3, 1, 1, 1, 1, 1, 1};
    check_conv(isa, big, 1);
    ConvCase big2 = {1, 48, 25, 23, 40, 3, 2, 0, 0, 1, 1, 1};
    check_conv(isa, big2, 1);
    ConvCase small_map = {1, 150, 4, 4, 300, 3, 1, 1, 1, 1, 1, 1};  // 4x4 map: B shared by the row blocks
    check_conv(isa, small_map, 1);
}

// ---- Weights packed at load ------------------------------------------------------
// Packed weights must give the same bits as the per-call packing on the kernel set they
// were packed for, and the right values (repacked on the fly) on any other.

static void check_packed_conv(const char *isa, ConvCase c, const GemmKernelInfo *other) {
    Conv2dGeometry g = {c.k, c.k, c.stride, c.pt, c.pl, c.pb, c.pr};
    int Ho = conv_out_size(c.H, c.k, c.stride, c.pt, c.pb), Wo = conv_out_size(c.W, c.k, c.stride, c.pl, c.pr);
    int K = c.Cin * c.k * c.k;
    size_t nx = (size_t)c.N * c.Cin * c.H * c.W, nw = (size_t)c.Cout * K, ny = (size_t)c.N * c.Cout * Ho * Wo;
    float *x = rand_buf(nx, 41), *w = rand_buf(nw, 42), *b = c.bias ? rand_buf(c.Cout, 43) : NULL;
    float *y = malloc(ny * sizeof(float)), *yp = malloc(ny * sizeof(float)), *r = malloc(ny * sizeof(float));
    GemmPackedWeights pw;
    int rc = gemm_pack_weights(&pw, w, c.Cout, K, 0);
    CHECK(rc == 0 && pw.width == gemm_kernel_info()->mr && pw.kernel == gemm_kernel_info(), "%s pack conv weight", isa);
    if (rc) goto out;
    int exact = 1;
    for (int o = 0; o < c.Cout; o++)
        for (int p = 0; p < K; p++) exact &= gemm_packed_at(&pw, o, p) == w[(size_t)o * K + p];
    CHECK(exact, "%s packed conv weight %dx%d: gemm_packed_at differs from the weight", isa, c.Cout, K);
    // padding rows of the last panel are zeros
    int padded = (c.Cout + pw.width - 1) / pw.width * pw.width, zeros = 1;
    for (int o = c.Cout; o < padded; o++)
        for (int p = 0; p < K; p++) {
            int pc = p / pw.kc * pw.kc, kc = K - pc < pw.kc ? K - pc : pw.kc;
            zeros &= pw.data[(size_t)pc * pw.padded_rows + (size_t)(o / pw.width) * pw.width * kc +
                             (size_t)(p - pc) * pw.width + o % pw.width] == 0.0f;
        }
    CHECK(zeros, "%s packed conv weight: padding rows are not zero", isa);
    fill_nan(y, ny);
    fill_nan(yp, ny);
    conv2d_forward(x, c.N, c.Cin, c.H, c.W, w, b, c.Cout, g, y);
    conv2d_forward_packed(x, c.N, c.Cin, c.H, c.W, &pw, b, c.Cout, g, yp);
    CHECK(memcmp(y, yp, ny * sizeof(float)) == 0, "%s conv Cin=%d Cout=%d k=%d: packed weights change the bits", isa,
          c.Cin, c.Cout, c.k);
    set_threads(1);
    conv2d_forward_packed(x, c.N, c.Cin, c.H, c.W, &pw, b, c.Cout, g, r);
    set_threads(2);
    CHECK(memcmp(r, yp, ny * sizeof(float)) == 0, "%s packed conv Cin=%d Cout=%d: 1 and 2 threads differ", isa, c.Cin,
          c.Cout);
    if (other) {
        // the layout belongs to this kernel set; another one reads it back element by element
        const GemmKernelInfo *mine = gemm_kernel_info();
        gemm_force_isa(strcmp(other->name, "scalar") == 0 ? ISA_SCALAR : ISA_AVX2);
        fill_nan(yp, ny);
        conv2d_forward_packed(x, c.N, c.Cin, c.H, c.W, &pw, b, c.Cout, g, yp);
        reference_conv2d(x, c.N, c.Cin, c.H, c.W, w, NULL, b, c.Cout, g, r);
        double d = max_abs_diff(yp, r, (long)ny), tol = 1e-6 * (K + 8);
        CHECK(d <= tol, "%s-packed conv run on the %s path: max diff %g", isa, gemm_kernel_info()->name, d);
        gemm_force_isa(strcmp(mine->name, "scalar") == 0 ? ISA_SCALAR
                       : strcmp(mine->name, "avx2") == 0 ? ISA_AVX2
                       : strcmp(mine->name, "avx512") == 0 ? ISA_AVX512 : ISA_NEON);
    }
    gemm_packed_weights_free(&pw);
out:
    free(x);
    free(w);
    free(b);
    free(y);
    free(yp);
    free(r);
}

static void check_packed_linear(const char *isa, int rows, int in, int out, int ldx, int with_bias) {
    float *x = rand_buf((size_t)rows * ldx, 51), *w = rand_buf((size_t)out * in, 52);
    float *b = with_bias ? rand_buf(out, 53) : NULL;
    float *xc = malloc((size_t)rows * in * sizeof(float));
    for (int r = 0; r < rows; r++) memcpy(xc + (size_t)r * in, x + (size_t)r * ldx, (size_t)in * sizeof(float));
    float *y = malloc((size_t)rows * out * sizeof(float)), *yp = malloc((size_t)rows * out * sizeof(float));
    GemmPackedWeights pw;
    int rc = gemm_pack_weights(&pw, w, out, in, 1);
    CHECK(rc == 0 && pw.width == gemm_kernel_info()->nr, "%s pack linear weight", isa);
    if (!rc) {
        int exact = 1;
        for (int o = 0; o < out; o++)
            for (int p = 0; p < in; p++) exact &= gemm_packed_at(&pw, o, p) == w[(size_t)o * in + p];
        CHECK(exact, "%s packed linear weight %dx%d: gemm_packed_at differs", isa, out, in);
        fill_nan(y, (size_t)rows * out);
        fill_nan(yp, (size_t)rows * out);
        linear_forward(xc, w, b, y, rows, in, out);
        linear_forward_packed(x, ldx, &pw, b, yp, rows);
        CHECK(memcmp(y, yp, (size_t)rows * out * sizeof(float)) == 0,
              "%s linear rows=%d in=%d out=%d ldx=%d: packed weights change the bits", isa, rows, in, out, ldx);
        set_threads(1);
        linear_forward_packed(x, ldx, &pw, b, y, rows);
        set_threads(2);
        CHECK(memcmp(y, yp, (size_t)rows * out * sizeof(float)) == 0, "%s packed linear rows=%d: 1 and 2 threads differ",
              isa, rows);
        gemm_packed_weights_free(&pw);
    }
    free(x);
    free(w);
    free(b);
    free(xc);
    free(y);
    free(yp);
}

// A B micro-panel with at most nr/2 real columns may go through the kernel set's narrow tile
// (two A micro-panels at once): it must give the bits the full tile gives to the same columns.
static void test_gemm_narrow(const char *isa) {
    static const int Ms[] = {1, 15, 30, 200};
    for (int t = 0; t < 4; t++) {
        int M = Ms[t], K = 517, Nw = 48, Nn = 16;
        float *A = rand_buf((size_t)M * K, 61), *Bw = rand_buf((size_t)K * Nw, 62), *bias = rand_buf(M, 63);
        float *Bn = malloc((size_t)K * Nn * sizeof(float));
        for (int p = 0; p < K; p++) memcpy(Bn + (size_t)p * Nn, Bw + (size_t)p * Nw, (size_t)Nn * sizeof(float));
        float *Cw = malloc((size_t)M * Nw * sizeof(float)), *Cn = malloc((size_t)M * Nn * sizeof(float));
        GemmProblem gw = {.M = M, .N = Nw, .K = K, .a = A, .lda = K, .alpha = 1.0f, .b = Bw, .ldb = Nw, .bias_m = bias,
                          .beta = 0.0f, .c = Cw, .ldc = Nw};
        GemmProblem gn = {.M = M, .N = Nn, .K = K, .a = A, .lda = K, .alpha = 1.0f, .b = Bn, .ldb = Nn, .bias_m = bias,
                          .beta = 0.0f, .c = Cn, .ldc = Nn};
        gemm_run(&gw);
        gemm_run(&gn);
        int same = same_leading_columns(Cn, Nn, Cw, Nw, M, Nn);
        CHECK(same, "%s gemm M=%d K=%d: 16 columns alone differ from the same columns of 48", isa, M, K);
        free(A);
        free(Bw);
        free(Bn);
        free(bias);
        free(Cw);
        free(Cn);
    }
}

// The kernel set's optional attention helpers against attention.c's portable loops (the same
// multiplications, so the same bits): O^T (rows x 128, stride 128) rescaled per column, then
// written back as rows of queries times 1/l. Head dims 33, 40, 64, 512; 1-128 queries.
static void test_attention_helpers(const char *isa) {
    const GemmKernelInfo *ki = gemm_kernel_info();
    if (!ki->ops->scale_columns && !ki->ops->finish_rows) return;
    static const int dims[] = {33, 40, 64, 512}, queries[] = {1, 13, 16, 31, 100, 128};
    const int br = 128;
    for (int t = 0; t < 4; t++)
        for (int u = 0; u < 6; u++) {
            int hd = dims[t], nq = queries[u], ld_out = hd + 5;
            float *o = rand_buf((size_t)hd * br, 71 + t), *o_ref = malloc((size_t)hd * br * sizeof(float));
            float *scale = rand_buf(br, 72 + u), *out = malloc((size_t)nq * ld_out * sizeof(float));
            float *out_ref = malloc((size_t)nq * ld_out * sizeof(float));
            memcpy(o_ref, o, (size_t)hd * br * sizeof(float));
            fill_nan(out, (size_t)nq * ld_out);
            memcpy(out_ref, out, (size_t)nq * ld_out * sizeof(float));
            if (ki->ops->scale_columns) {
                ki->ops->scale_columns(o, hd, nq, br, scale);
                for (int d = 0; d < hd; d++)
                    for (int j = 0; j < nq; j++) o_ref[d * br + j] *= scale[j];
                CHECK(memcmp(o, o_ref, (size_t)hd * br * sizeof(float)) == 0,
                      "%s scale_columns hd=%d width=%d: not the bits of the loop (or a column past the width changed)",
                      isa, hd, nq);
            }
            if (ki->ops->finish_rows) {
                ki->ops->finish_rows(o_ref, hd, nq, br, scale, out, ld_out);
                for (int j = 0; j < nq; j++)
                    for (int d = 0; d < hd; d++) out_ref[(size_t)j * ld_out + d] = o_ref[d * br + j] * scale[j];
                // the 5 padding floats of every row must stay NaN: memcmp compares their bits too
                CHECK(memcmp(out, out_ref, (size_t)nq * ld_out * sizeof(float)) == 0,
                      "%s finish_rows hd=%d nq=%d: not the bits of the loop (or wrote past a row)", isa, hd, nq);
            }
            free(o);
            free(o_ref);
            free(scale);
            free(out);
            free(out_ref);
        }
}

static void test_packed(const char *isa) {
    const GemmKernelInfo *other = strcmp(isa, "scalar") != 0 ? gemm_kernel_scalar() : NULL;
    static const ConvCase cases[] = {
        {1, 3, 17, 19, 8, 3, 1, 1, 1, 1, 1, 1},     // Cout below one panel
        {2, 5, 9, 11, 29, 3, 2, 1, 1, 1, 1, 0},     // batch 2, stride 2, no bias, Cout not a panel multiple
        {1, 7, 10, 12, 33, 1, 1, 0, 0, 0, 0, 1},    // 1x1
        {1, 40, 12, 12, 37, 3, 1, 1, 1, 1, 1, 1},   // K = 360 > some kc
        {1, 64, 24, 24, 96, 3, 1, 1, 1, 1, 1, 1},   // big enough to be threaded, K = 576 > every kc
        {1, 200, 4, 4, 45, 3, 1, 1, 1, 1, 1, 1},    // a 4x4 map (16 pixels: the narrow tile), K = 1800
    };
    for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) check_packed_conv(isa, cases[i], other);
    check_packed_linear(isa, 1, 17, 5, 17, 1);        // one row (a time embedding)
    check_packed_linear(isa, 77, 64, 40, 64, 0);      // cross-attention K/V shape, no bias
    check_packed_linear(isa, 300, 100, 70, 130, 1);   // strided x (GEGLU halves)
    check_packed_linear(isa, 257, 700, 129, 700, 1);  // K > kc, threaded
    check_packed_linear(isa, 1, 520, 520, 520, 1);    // one row, a weight over 1 MB: threaded
    GemmPackedWeights pw;
    CHECK(gemm_pack_weights(&pw, NULL, 0, 5, 0) != 0, "packing a 0-row weight must fail");
}

// ---- Attention -------------------------------------------------------------------

static void check_attention(const char *isa, int B, int heads, int Nq, int Nk, int hd, int causal, Arena *arena,
                            int check_threads) {
    int D = heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *q = rand_buf((size_t)B * Nq * D, 41), *k = rand_buf((size_t)B * Nk * D, 42);
    float *v = rand_buf((size_t)B * Nk * D, 43);
    // sharper softmax than uniform noise gives: scale the queries up
    for (size_t i = 0; i < (size_t)B * Nq * D; i++) q[i] *= 3.0f;
    size_t no = (size_t)B * Nq * D;
    float *o = malloc(no * sizeof(float)), *r = malloc(no * sizeof(float));
    fill_nan(o, no);
    int rc = attention_forward(q, k, v, o, B, heads, Nq, Nk, hd, scale, causal, arena);
    reference_attention(q, k, v, r, B, heads, Nq, Nk, hd, scale, causal, NULL);
    double d = max_abs_diff(o, r, (long)no);
    CHECK(rc == 0 && d <= 2e-5, "%s attention B=%d heads=%d Nq=%d Nk=%d hd=%d causal=%d arena=%d: rc %d, max diff %g",
          isa, B, heads, Nq, Nk, hd, causal, arena != NULL, rc, d);
    if (check_threads) {
        float *o1 = malloc(no * sizeof(float));
        set_threads(1);
        attention_forward(q, k, v, o1, B, heads, Nq, Nk, hd, scale, causal, arena);
        set_threads(2);
        CHECK(memcmp(o, o1, no * sizeof(float)) == 0, "%s attention Nq=%d Nk=%d hd=%d: 1 and 2 threads differ", isa,
              Nq, Nk, hd);
        free(o1);
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(r);
}

static void test_attention(const char *isa, Arena *arena) {
    static const int hds[] = {8, 40, 64, 80, 160};
    for (int i = 0; i < 5; i++) {
        check_attention(isa, 2, 2, 37, 77, hds[i], 0, arena, 0);   // cross-attention to 77 tokens
        check_attention(isa, 1, 3, 77, 77, hds[i], 1, arena, 0);   // causal (CLIP text)
    }
    check_attention(isa, 1, 1, 1, 1, 8, 0, arena, 0);
    check_attention(isa, 1, 2, 300, 129, 64, 0, arena, 0);
    check_attention(isa, 1, 2, 50, 300, 24, 1, arena, 0);  // causal with Nq < Nk
    check_attention(isa, 1, 2, 300, 50, 24, 1, arena, 0);  // causal with Nq > Nk
    check_attention(isa, 2, 5, 333, 333, 64, 0, arena, 1);  // self-attention, threads
    check_attention(isa, 1, 3, 200, 77, 160, 1, arena, 1);
    if (arena) {
        // an arena smaller than the workspace grows for it and is left at its mark
        Arena tiny;
        if (arena_init(&tiny, 4096) == 0) {
            check_attention(isa, 1, 2, 70, 90, 40, 0, &tiny, 0);
            CHECK(tiny.used == 0 && tiny.peak > 0 && tiny.capacity > 4096, "%s attention in a small arena: used %zu, peak %zu",
                  isa, tiny.used, tiny.peak);
            arena_free(&tiny);
        }
        size_t need = attention_scratch_bytes(333, 64);
        size_t before = arena->peak;
        arena->peak = 0;
        check_attention(isa, 2, 5, 333, 333, 64, 0, arena, 0);
        CHECK(need > 0 && arena->peak > 0 && arena->peak <= need, "%s attention_scratch_bytes %zu, arena peak %zu",
              isa, need, arena->peak);
        if (before > arena->peak) arena->peak = before;
    }
}

int main(void) {
    Arena arena;
    if (arena_init(&arena, (size_t)64 << 20) != 0) return 1;
    set_threads(2);
    static const int isas[] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON};
    int tested = 0;
    for (int t = 0; t < 4; t++) {
        if (gemm_force_isa(isas[t]) != 0) continue;
        const char *isa = gemm_kernel_info()->name;
        printf("testing the %s path\n", isa);
        tested++;
        test_gemm(isa);
        test_gemm_threads(isa);
        test_gemm_nested(isa);
        test_conv(isa);
        test_packed(isa);
        test_gemm_narrow(isa);
        test_attention_helpers(isa);
        test_attention(isa, NULL);
        test_attention(isa, &arena);
        CHECK(arena.used == 0, "%s: the kernels left %zu bytes of the arena in use", isa, arena.used);
    }
    CHECK(tested >= 1, "no ISA path could be forced");
    gemm_force_isa(-1);
    CHECK(strcmp(gemm_kernel_info()->name, sd_isa_name(sd_cpu_isa())) == 0, "automatic kernel %s for ISA %s",
          gemm_kernel_info()->name, sd_isa_name(sd_cpu_isa()));
    arena_free(&arena);
    return test_report("test_kernels");
}
