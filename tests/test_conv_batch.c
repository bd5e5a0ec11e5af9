// Batched convolution (issue 20): conv2d_forward / conv2d_forward_packed (f32 and f16 weights) on
// N samples run the samples of a small map in one GEMM (conv.c: the implicit im2col spans the
// samples). The result must be, bit for bit, the N = 1 call on each sample in turn, on every
// kernel set this CPU runs, on 1 and 2 threads; and the direct convolution of
// src/kernels/reference.c (sums in double) within rounding.
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/runtime.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_util.h"

typedef struct {
    int Cin, H, W, Cout, k, stride, pt, pl, pb, pr, bias;
} Case;

enum { PLAIN, PACKED_F32, PACKED_F16, NKINDS };
static const char *kind_name[NKINDS] = {"plain", "packed f32", "packed f16"};

static float *rand_buf(size_t n, unsigned long long seed) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    test_fill(x, (long)n, seed);
    return x;
}

static void conv(int kind, const float *x, int N, Case c, const float *w, const GemmPackedWeights *pw,
                 const float *b, float *y) {
    Conv2dGeometry g = {c.k, c.k, c.stride, c.pt, c.pl, c.pb, c.pr};
    if (kind == PLAIN) conv2d_forward(x, N, c.Cin, c.H, c.W, w, b, c.Cout, g, y);
    else conv2d_forward_packed(x, N, c.Cin, c.H, c.W, pw, b, c.Cout, g, y);
}

// N samples at once against each sample alone (memcmp) and against the reference, for one kind of
// weights; the batched call also on 1 thread (the same bits).
static void check_case(const char *isa, Case c, int N, int kind) {
    int Ho = conv_out_size(c.H, c.k, c.stride, c.pt, c.pb), Wo = conv_out_size(c.W, c.k, c.stride, c.pl, c.pr);
    int K = c.Cin * c.k * c.k;
    size_t xs = (size_t)c.Cin * c.H * c.W, ys = (size_t)c.Cout * Ho * Wo, ny = (size_t)N * ys;
    float *x = rand_buf((size_t)N * xs, 100 + N), *w = rand_buf((size_t)c.Cout * K, 200 + K);
    float *b = c.bias ? rand_buf(c.Cout, 300) : NULL;
    float *y = malloc(ny * sizeof(float)), *y1 = malloc(ny * sizeof(float)), *one = malloc(ny * sizeof(float));
    float *ref = malloc(ny * sizeof(float));
    GemmPackedWeights pw = {0};
    if (kind == PACKED_F16) {
        // the f16 path computes on the weights rounded to half: the reference gets those too
        for (size_t i = 0; i < (size_t)c.Cout * K; i++) w[i] = f32_from_f16(f16_from_f32(w[i]));
        CHECK(gemm_pack_weights_f16(&pw, w, c.Cout, K, 0) == 0, "%s pack f16", isa);
    } else if (kind == PACKED_F32) {
        CHECK(gemm_pack_weights(&pw, w, c.Cout, K, 0) == 0, "%s pack f32", isa);
    }
    for (size_t i = 0; i < ny; i++) y[i] = y1[i] = NAN;
    set_threads(2);
    conv(kind, x, N, c, w, &pw, b, y);
    for (int n = 0; n < N; n++) conv(kind, x + n * xs, 1, c, w, &pw, b, one + n * ys);
    set_threads(1);
    conv(kind, x, N, c, w, &pw, b, y1);
    set_threads(2);
    reference_conv2d(x, N, c.Cin, c.H, c.W, w, NULL, b, c.Cout, (Conv2dGeometry){c.k, c.k, c.stride, c.pt, c.pl, c.pb, c.pr},
                     ref);
    CHECK(memcmp(y, one, ny * sizeof(float)) == 0,
          "%s %s conv N=%d Cin=%d %dx%d Cout=%d k=%d s=%d pad=(%d,%d,%d,%d): batched != one sample at a time", isa,
          kind_name[kind], N, c.Cin, c.H, c.W, c.Cout, c.k, c.stride, c.pt, c.pl, c.pb, c.pr);
    CHECK(memcmp(y, y1, ny * sizeof(float)) == 0, "%s %s conv N=%d Cin=%d %dx%d Cout=%d k=%d: 1 and 2 threads differ",
          isa, kind_name[kind], N, c.Cin, c.H, c.W, c.Cout, c.k);
    double d = max_abs_diff(y, ref, (long)ny), tol = 1e-6 * (K + 8);
    CHECK(d <= tol, "%s %s conv N=%d Cin=%d %dx%d Cout=%d k=%d s=%d: max diff %g from the reference > %g", isa,
          kind_name[kind], N, c.Cin, c.H, c.W, c.Cout, c.k, c.stride, d, tol);
    if (kind != PLAIN) gemm_packed_weights_free(&pw);
    free(x);
    free(w);
    free(b);
    free(y);
    free(y1);
    free(one);
    free(ref);
}

static void test_set(const char *isa) {
    // 4x4, 8x8, 16x16, 32x32 (the UNet's levels at 256 px) and odd maps; 3x3 and 1x1, strides 1 and 2,
    // padding
    static const Case cases[] = {
        {12, 4, 4, 10, 3, 1, 1, 1, 1, 1, 1},   {9, 8, 8, 13, 3, 1, 1, 1, 1, 1, 0},
        {7, 16, 16, 6, 3, 1, 1, 1, 1, 1, 1},   {8, 8, 8, 11, 3, 2, 0, 0, 1, 1, 1},  // VAE-style stride 2
        {6, 16, 16, 9, 3, 2, 1, 1, 1, 1, 1},   {5, 4, 4, 7, 3, 2, 1, 1, 1, 1, 0},
        {20, 4, 4, 17, 1, 1, 0, 0, 0, 0, 1},   {11, 8, 8, 9, 1, 1, 0, 0, 0, 0, 1},  // 1x1 = GEMM per sample
        {10, 16, 16, 5, 1, 1, 0, 0, 0, 0, 0},  {7, 8, 8, 6, 1, 2, 0, 0, 0, 0, 1},   // 1x1 stride 2
        {6, 5, 7, 8, 3, 1, 1, 1, 1, 1, 1},     {4, 3, 9, 5, 3, 1, 2, 0, 1, 3, 1},   // odd maps, asymmetric
        {3, 6, 1, 4, 3, 1, 1, 1, 1, 1, 1},     {5, 4, 4, 6, 1, 1, 1, 1, 1, 1, 1},   // 1 column; 1x1 padded
        {150, 4, 4, 40, 3, 1, 1, 1, 1, 1, 1},  // K = 1350: several k blocks
        {3, 32, 32, 5, 3, 1, 1, 1, 1, 1, 1},   {4, 64, 64, 3, 3, 2, 0, 0, 1, 1, 1},  // 32x32 out
        {2, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1},   // 64x64: one sample per GEMM
    };
    int ncases = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < ncases; i++)
        for (int N = 1; N <= 5; N++)
            for (int kind = 0; kind < NKINDS; kind++) check_case(isa, cases[i], N, kind);
    // big enough to be threaded, with several row blocks (the shared B panel at 4x4)
    Case big[] = {{64, 8, 8, 96, 3, 1, 1, 1, 1, 1, 1}, {150, 4, 4, 300, 3, 1, 1, 1, 1, 1, 1},
                  {32, 16, 16, 48, 3, 1, 1, 1, 1, 1, 1}};
    for (int i = 0; i < 3; i++)
        for (int kind = 0; kind < NKINDS; kind++) check_case(isa, big[i], 4, kind);
}

// Batched convolutions called inside a parallel region (each thread its own, one-thread GEMMs and
// a malloc'ed result buffer): the same bits as outside.
static void test_nested(const char *isa) {
    Case c = {16, 8, 8, 24, 3, 1, 1, 1, 1, 1, 1};
    const int N = 3, K = c.Cin * 9;
    size_t xs = (size_t)c.Cin * 64, ny = (size_t)N * c.Cout * 64;
    float *x = rand_buf(2 * N * xs, 7), *w = rand_buf((size_t)c.Cout * K, 8), *b = rand_buf(c.Cout, 9);
    float *y = malloc(2 * ny * sizeof(float)), *yn = malloc(2 * ny * sizeof(float));
    for (int t = 0; t < 2; t++) conv(PLAIN, x + t * N * xs, N, c, w, NULL, b, y + t * ny);
#pragma omp parallel for num_threads(2)
    for (int t = 0; t < 2; t++) conv(PLAIN, x + t * N * xs, N, c, w, NULL, b, yn + t * ny);
    CHECK(memcmp(y, yn, 2 * ny * sizeof(float)) == 0, "%s batched conv inside a parallel region differs", isa);
    free(x);
    free(w);
    free(b);
    free(y);
    free(yn);
}

// A result over the kept buffer's 32 MB (2048 x 5 x 961 floats = 39 MB): allocated for the call.
static void test_large_result(const char *isa) {
    Case c = {2, 31, 31, 2048, 1, 1, 0, 0, 0, 0, 1};
    check_case(isa, c, 5, PLAIN);
}

int main(void) {
    static const int isas[] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON};
    int tested = 0;
    for (int t = 0; t < 4; t++) {
        if (gemm_force_isa(isas[t]) != 0) continue;
        const char *isa = gemm_kernel_info()->name;
        printf("testing the %s path\n", isa);
        tested++;
        test_set(isa);
        test_nested(isa);
    }
    CHECK(tested >= 1, "no ISA path could be forced");
    gemm_force_isa(-1);
    test_large_result(gemm_kernel_info()->name);
    gemm_free_thread_buffers();
    return test_report("test_conv_batch");
}
