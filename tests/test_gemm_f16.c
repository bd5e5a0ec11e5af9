// f16 resident weights (gemm_pack_weights_f16): the GEMM with weights stored as IEEE half and
// widened to f32 block by block must give the bits of the f32 GEMM run on the same weights
// rounded to f16 (f32_from_f16(f16_from_f32(w))) and packed as f32, on every kernel set this
// CPU runs, with the weights as A (a convolution's) and as B (a linear's), odd shapes, K over
// several k blocks, biases, beta, and 1 or 2 threads. Also: each set's widening against the
// portable one on all 65536 halves, the portable one against ldexp, the read-back
// (gemm_packed_at), weights packed for one set run on another, and the range error.
#include <math.h>
#include <stdint.h>

#include "core/error.h"
#include "core/half.h"
#include "core/runtime.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

static float round_f16(float x) { return f32_from_f16(f16_from_f32(x)); }

// Weights: uniform [-1, 1) with a few values that exercise the conversion: f16 subnormals,
// zeros of both signs, halfway cases, values near the top of the range.
static void fill_weights(float *w, long n, unsigned long long seed) {
    test_fill(w, n, seed);
    for (long i = 0; i < n; i += 37) w[i] *= 1e-5f;         // f16 subnormals (< 6.1e-5)
    for (long i = 5; i < n; i += 101) w[i] = -0.0f;
    for (long i = 11; i < n; i += 211) w[i] = 1.0f + 1.0f / 2048.0f;  // a tie: rounds to even, 1.0
    for (long i = 17; i < n; i += 307) w[i] = 65504.0f * (i % 2 ? 1.0f : -1.0f);
}

static int same_bits(const float *a, const float *b, long n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

// The exact value of a half by its definition: (-1)^s 2^(e-15) (1 + m/1024), subnormals 2^-14 m/1024.
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
    return s ? -v : v;
}

static void check_widening(const GemmKernelInfo *ki) {
    static uint16_t all[65536];
    static float a[65536], b[65536];
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    gemm_widen_f16_portable(all, a, 65536);
    gemm_widen_f16(ki, all, b, 65536);
    int bad = 0, bad_ref = 0;
    for (int i = 0; i < 65536; i++) {
        int e = (i >> 10) & 31;
        if (e == 31 && (i & 1023)) {  // NaN: stays NaN, sign kept
            bad += !isnan(b[i]) || !!signbit(b[i]) != !!signbit(a[i]);
            bad_ref += !isnan(a[i]);
            continue;
        }
        bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
        double ref = e == 31 ? ((i >> 15) ? -INFINITY : INFINITY) : half_value((uint16_t)i);
        bad_ref += (double)a[i] != ref || !!signbit(a[i]) != (i >> 15);
    }
    CHECK(bad_ref == 0, "portable f32_from_f16: %d of 65536 halves not their exact value", bad_ref);
    CHECK(bad == 0, "%s widen_f16: %d of 65536 halves differ from the portable widening", ki->name, bad);
    // odd lengths (tails) and an unaligned start
    for (int n = 0; n <= 40; n++) {
        float c[48];
        memset(c, 0x55, sizeof c);
        gemm_widen_f16(ki, all + 15361 + n, c, (size_t)n);
        uint32_t after;
        memcpy(&after, &c[n], 4);
        CHECK(same_bits(c, a + 15361 + n, n) && after == 0x55555555u, "%s widen_f16 of %d values (tail, and nothing "
              "written after)", ki->name, n);
    }
}

typedef struct {
    int as_b, M, N, K, trans, bias, beta;
} Case;

// One product with the weights packed as f16 and as f32 (rounded), on the kernel set in use.
static void check_case(const GemmKernelInfo *ki, Case c, unsigned long long seed) {
    const int M = c.M, N = c.N, K = c.K, wrows = c.as_b ? N : M, xrows = c.as_b ? M : N;
    float *W = malloc((size_t)wrows * K * sizeof(float)), *Wr = malloc((size_t)wrows * K * sizeof(float));
    float *X = malloc((size_t)K * xrows * sizeof(float)), *bm = malloc((size_t)M * sizeof(float));
    float *bn = malloc((size_t)N * sizeof(float)), *C0 = malloc((size_t)M * N * sizeof(float));
    float *C32 = malloc((size_t)M * N * sizeof(float)), *C16 = malloc((size_t)M * N * sizeof(float));
    float *C16b = malloc((size_t)M * N * sizeof(float)), *Cx = malloc((size_t)M * N * sizeof(float));
    fill_weights(W, (long)wrows * K, seed);
    for (long i = 0; i < (long)wrows * K; i++) Wr[i] = round_f16(W[i]);
    test_fill(X, (long)K * xrows, seed + 1);
    test_fill(bm, M, seed + 2);
    test_fill(bn, N, seed + 3);
    test_fill(C0, (long)M * N, seed + 4);
    GemmPackedWeights p32, p16;
    CHECK(gemm_pack_weights(&p32, Wr, wrows, K, c.as_b) == 0, "pack f32: %s", sd_last_error());
    CHECK(gemm_pack_weights_f16(&p16, W, wrows, K, c.as_b) == 0, "pack f16: %s", sd_last_error());
    CHECK(p16.half && !p16.data && p16.kernel == ki, "f16 weights: half panels of the set in use");
    // the read-back gives the rounded weights
    int bad_at = 0;
    for (int r = 0; r < wrows; r += 3)
        for (int p = 0; p < K; p += 5) bad_at += gemm_packed_at(&p16, r, p) != Wr[(size_t)r * K + p];
    CHECK(bad_at == 0, "gemm_packed_at of f16 weights: %d values not the rounded weight", bad_at);
    GemmProblem g = {.M = M, .N = N, .K = K, .alpha = 1.0f, .bias_m = c.bias ? bm : NULL, .bias_n = c.bias ? bn : NULL,
                     .beta = c.beta ? 0.75f : 0.0f, .ldc = N};
    if (c.as_b) {  // C = op(X) W^T, X plain (M x K) or transposed (K x M)
        g.a = X;
        g.lda = c.trans ? M : K;
        g.trans_a = c.trans;
    } else {  // C = W op(X), X plain (K x N) or transposed (N x K)
        g.b = X;
        g.ldb = c.trans ? K : N;
        g.trans_b = c.trans;
    }
    float *outs[3] = {C32, C16, C16b};
    for (int run = 0; run < 3; run++) {
        const GemmPackedWeights *pw = run == 0 ? &p32 : &p16;
        set_threads(run == 2 ? 1 : 2);
        memcpy(outs[run], C0, (size_t)M * N * sizeof(float));
        GemmProblem p = g;
        p.c = outs[run];
        if (c.as_b) p.packed_b = pw;
        else p.packed_a = pw;
        gemm_run(&p);
    }
    set_threads(2);
    CHECK(same_bits(C16, C32, (long)M * N), "%s %s M=%d N=%d K=%d trans %d bias %d beta %d: f16 weights not the bits "
          "of f32 on rounded weights (max diff %g)", ki->name, c.as_b ? "B" : "A", M, N, K, c.trans, c.bias, c.beta,
          max_abs_diff(C16, C32, (long)M * N));
    CHECK(same_bits(C16, C16b, (long)M * N), "%s %s M=%d N=%d K=%d: 1 and 2 threads differ", ki->name,
          c.as_b ? "B" : "A", M, N, K);
    // and not the product of the unrounded weights (the rounding happened)
    memcpy(Cx, C0, (size_t)M * N * sizeof(float));
    GemmProblem p = g;
    p.c = Cx;
    if (c.as_b) p.b = W, p.ldb = K, p.trans_b = 1;
    else p.a = W, p.lda = K;
    gemm_run(&p);
    CHECK(!same_bits(Cx, C16, (long)M * N), "%s M=%d N=%d K=%d: f16 result equals the unrounded one", ki->name, M, N, K);
    gemm_packed_weights_free(&p32);
    gemm_packed_weights_free(&p16);
    free(W), free(Wr), free(X), free(bm), free(bn), free(C0), free(C32), free(C16), free(C16b), free(Cx);
}

// A 3x3 convolution (implicit im2col, the packers' conv paths) and a linear on channels-first input.
static void check_layers(const GemmKernelInfo *ki) {
    const int Cin = 19, Cout = 37, H = 13, Wd = 11, N = 2, K = Cin * 9;
    Conv2dGeometry geo = conv_geometry(3, 1, 1);
    float *w = malloc((size_t)Cout * K * sizeof(float)), *wr = malloc((size_t)Cout * K * sizeof(float));
    float *x = malloc((size_t)N * Cin * H * Wd * sizeof(float)), *bias = malloc((size_t)Cout * sizeof(float));
    float *y32 = malloc((size_t)N * Cout * H * Wd * sizeof(float)), *y16 = malloc((size_t)N * Cout * H * Wd * sizeof(float));
    fill_weights(w, (long)Cout * K, 7);
    for (long i = 0; i < (long)Cout * K; i++) wr[i] = round_f16(w[i]);
    test_fill(x, (long)N * Cin * H * Wd, 8);
    test_fill(bias, Cout, 9);
    GemmPackedWeights p32, p16;
    CHECK(gemm_pack_weights(&p32, wr, Cout, K, 0) == 0 && gemm_pack_weights_f16(&p16, w, Cout, K, 0) == 0, "pack conv");
    for (int s = 1; s <= 2; s++) {
        geo.stride = s;
        int Ho = conv_out_size(H, 3, s, 1, 1), Wo = conv_out_size(Wd, 3, s, 1, 1);
        conv2d_forward_packed(x, N, Cin, H, Wd, &p32, bias, Cout, geo, y32);
        conv2d_forward_packed(x, N, Cin, H, Wd, &p16, bias, Cout, geo, y16);
        CHECK(same_bits(y32, y16, (long)N * Cout * Ho * Wo), "%s conv3x3 stride %d: f16 weights not the bits of f32",
              ki->name, s);
    }
    gemm_packed_weights_free(&p32);
    gemm_packed_weights_free(&p16);
    // linear (out 37, in 19) on H*Wd rows, channels first and rows first
    const int rows = H * Wd, in = Cin, out = Cout;
    CHECK(gemm_pack_weights(&p32, wr, out, in, 1) == 0 && gemm_pack_weights_f16(&p16, w, out, in, 1) == 0, "pack linear");
    linear_forward_packed_cf(x, &p32, bias, y32, rows);
    linear_forward_packed_cf(x, &p16, bias, y16, rows);
    CHECK(same_bits(y32, y16, (long)rows * out), "%s linear channels first: f16 weights not the bits of f32", ki->name);
    linear_forward_packed(x, in, &p32, bias, y32, rows);
    linear_forward_packed(x, in, &p16, bias, y16, rows);
    CHECK(same_bits(y32, y16, (long)rows * out), "%s linear: f16 weights not the bits of f32", ki->name);
    gemm_packed_weights_free(&p32);
    gemm_packed_weights_free(&p16);
    free(w), free(wr), free(x), free(bias), free(y32), free(y16);
}

int main(void) {
    static const int isas[] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON};
    static const char *const names[] = {"scalar", "avx2", "avx512", "neon"};
    // odd shapes at tile edges; K over one, two and three k blocks (kc = 256 or 384); sizes over the
    // 2-MFLOP threshold so that 2 threads split the grid
    static const Case cases[] = {
        {0, 15, 33, 9, 0, 1, 0},     {0, 29, 65, 1100, 0, 1, 1}, {0, 3, 70, 801, 1, 0, 1}, {0, 187, 141, 517, 0, 1, 0},
        {0, 47, 40, 101, 1, 1, 1},   {1, 13, 31, 7, 0, 1, 1},    {1, 64, 37, 1100, 1, 1, 0}, {1, 1, 96, 777, 0, 0, 1},
        {1, 230, 150, 385, 0, 1, 1}, {1, 30, 100, 64, 1, 0, 0}, {1, 1, 1280, 1280, 0, 1, 0},
    };
    int ran = 0;
    for (int s = 0; s < 4; s++) {
        if (gemm_force_isa(isas[s]) != 0) {
            printf("kernel set %s: not on this build or CPU\n", names[s]);
            continue;
        }
        const GemmKernelInfo *ki = gemm_kernel_info();
        printf("kernel set %s (mr %d, nr %d, kc %d)\n", ki->name, ki->mr, ki->nr, ki->kc);
        ran++;
        check_widening(ki);
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) check_case(ki, cases[t], 300 + 10 * t);
        check_layers(ki);
    }
    CHECK(ran >= 1, "the scalar set at least ran (%d sets)", ran);
    // weights packed (f16) for the scalar set, run on the set this CPU prefers: read back through
    // gemm_packed_at and packed per call; the bits of the f32 weights packed for the scalar set.
    gemm_force_isa(ISA_SCALAR);
    const int M = 70, N = 90, K = 300;
    float *W = malloc((size_t)M * K * sizeof(float)), *Wr = malloc((size_t)M * K * sizeof(float));
    float *X = malloc((size_t)K * N * sizeof(float)), *C32 = malloc((size_t)M * N * sizeof(float));
    float *C16 = malloc((size_t)M * N * sizeof(float));
    fill_weights(W, (long)M * K, 1);
    for (long i = 0; i < (long)M * K; i++) Wr[i] = round_f16(W[i]);
    test_fill(X, (long)K * N, 2);
    GemmPackedWeights p32, p16;
    CHECK(gemm_pack_weights(&p32, Wr, M, K, 0) == 0 && gemm_pack_weights_f16(&p16, W, M, K, 0) == 0, "pack scalar");
    gemm_force_isa(-1);
    GemmProblem g = {.M = M, .N = N, .K = K, .alpha = 1.0f, .b = X, .ldb = N, .c = C32, .ldc = N, .packed_a = &p32};
    gemm_run(&g);
    g.packed_a = &p16;
    g.c = C16;
    gemm_run(&g);
    CHECK(same_bits(C16, C32, (long)M * N), "f16 weights of the scalar set on %s: not the bits of f32",
          gemm_kernel_info()->name);
    // alpha != 1 reads them back too
    g.alpha = 0.5f;
    gemm_run(&g);
    g.packed_a = &p32;
    g.c = C32;
    gemm_run(&g);
    CHECK(same_bits(C16, C32, (long)M * N), "alpha 0.5: f16 weights not the bits of f32");
    gemm_packed_weights_free(&p32);
    gemm_packed_weights_free(&p16);
    // beyond f16's range: a clear error, nothing allocated
    W[5] = 70000.0f;
    CHECK(gemm_pack_weights_f16(&p16, W, M, K, 0) != 0 && !p16.half, "a weight of 70000 must be refused");
    CHECK(strstr(sd_last_error(), "f16's range") != NULL, "the message names f16's range: %s", sd_last_error());
    W[5] = 65519.0f;  // rounds down to 65504
    CHECK(gemm_pack_weights_f16(&p16, W, M, K, 0) == 0, "65519 rounds to 65504: accepted");
    gemm_packed_weights_free(&p16);
    free(W), free(Wr), free(X), free(C32), free(C16);
    return test_report("test_gemm_f16");
}
