// The bf16 GEMM's sums, bit for bit: gemm_bf16_run against a scalar loop that does the sum the
// kernel sets define (gemm_avx512_bf16.c: vdpbf16ps; gemm_neon_bf16.c: BFMLALT then BFMLALB),
// per C element, in f32, rounded to nearest even after each addition:
//   for each k block of kc values (the set's kc), acc = 0, then for each k pair q in order:
//     acc = acc + a_odd * b_odd;  acc = acc + a_even * b_even      (bf16 products: exact in f32)
//   first block: v = acc + bias_m[i] + bias_n[j];  C = beta != 0 ? fma(beta, C, v) : v
//   later blocks: C = fma(1, C, acc)
// with a and b the operands rounded by bf16_from_f32. So x86-64 (AVX512_BF16) and arm64
// (FEAT_BF16) give the same bits on the same inputs (data away from f32 subnormals, which
// vdpbf16ps flushes and FMLAL keeps). Skipped where gemm_bf16_supported() is 0.
#include <stdint.h>

#include "core/error.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

static float rb(float x) { return f32_from_bf16(bf16_from_f32(x)); }

typedef struct {
    int side, M, N, K, trans, bias, beta;
} Case;

static void check_case(const GemmKernelInfo *ki, Case c, unsigned long long seed) {
    const int M = c.M, N = c.N, K = c.K, kc = ki->kc;
    const int wrows = c.side == GEMM_BF16_A ? M : N;
    float *W = malloc((size_t)wrows * K * sizeof(float)), *X = malloc((size_t)K * (M > N ? M : N) * sizeof(float));
    float *bm = malloc((size_t)M * sizeof(float)), *bn = malloc((size_t)N * sizeof(float));
    float *C = malloc((size_t)M * N * sizeof(float)), *R = malloc((size_t)M * N * sizeof(float));
    test_fill(W, (long)wrows * K, seed);
    test_fill(X, (long)K * (M > N ? M : N), seed + 1);
    test_fill(bm, M, seed + 2);
    test_fill(bn, N, seed + 3);
    test_fill(C, (long)M * N, seed + 4);
    memcpy(R, C, (size_t)M * N * sizeof(float));
    const float beta = c.beta ? 0.75f : 0.0f;
    // the f32 operand: side A: B (K x N, or N x K when trans); side BT: A (M x K, or K x M when trans)
    GemmProblem g = {.M = M, .N = N, .K = K, .alpha = 1.0f, .bias_m = c.bias ? bm : NULL, .bias_n = c.bias ? bn : NULL,
                     .beta = beta, .c = C, .ldc = N};
    if (c.side == GEMM_BF16_A) {
        g.b = X;
        g.ldb = c.trans ? K : N;
        g.trans_b = c.trans;
    } else {
        g.a = X;
        g.lda = c.trans ? M : K;
        g.trans_a = c.trans;
    }
    Bf16Packed w;
    CHECK(gemm_bf16_pack_weights(&w, W, wrows, K, c.side) == 0, "pack: %s", sd_last_error());
    CHECK(gemm_bf16_run(&g, &w) == 0, "run: %s", sd_last_error());
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float *r = &R[(size_t)i * N + j];
            for (int p0 = 0; p0 < K; p0 += kc) {
                int p1 = K - p0 < kc ? K : p0 + kc;
                float acc = 0.0f;
                for (int p = p0; p < p1; p += 2) {
                    float a[2] = {0.0f, 0.0f}, b[2] = {0.0f, 0.0f};
                    for (int t = 0; t < 2 && p + t < p1; t++) {
                        int k = p + t;
                        float wv = c.side == GEMM_BF16_A ? W[(size_t)i * K + k] : W[(size_t)j * K + k];
                        float xv = c.side == GEMM_BF16_A ? (c.trans ? X[(size_t)j * K + k] : X[(size_t)k * N + j])
                                                         : (c.trans ? X[(size_t)k * M + i] : X[(size_t)i * K + k]);
                        a[t] = rb(c.side == GEMM_BF16_A ? wv : xv);
                        b[t] = rb(c.side == GEMM_BF16_A ? xv : wv);
                    }
                    acc = acc + a[1] * b[1];
                    acc = acc + a[0] * b[0];
                }
                if (p0 == 0) {
                    float v = acc;
                    if (c.bias) v = v + bm[i];
                    if (c.bias) v = v + bn[j];
                    *r = beta != 0.0f ? fmaf(beta, *r, v) : v;
                } else {
                    *r = fmaf(1.0f, *r, acc);
                }
            }
        }
    int bad = 0;
    for (size_t e = 0; e < (size_t)M * N; e++) bad += memcmp(&C[e], &R[e], sizeof(float)) != 0;
    CHECK(bad == 0, "%s side %s M=%d N=%d K=%d trans %d bias %d beta %d: %d of %d outputs not the bits of the "
          "pair-order loop (max diff %g)", ki->name, c.side ? "BT" : "A", M, N, K, c.trans, c.bias, c.beta, bad, M * N,
          max_abs_diff(C, R, (long)M * N));
    gemm_bf16_packed_free(&w);
    free(W);
    free(X);
    free(bm);
    free(bn);
    free(C);
    free(R);
}

int main(void) {
    if (!gemm_bf16_supported()) {
        printf("SKIP test_gemm_bf16_order: no bf16 kernel set on this CPU (AVX512_BF16 / FEAT_BF16)\n");
        return test_report("test_gemm_bf16_order");
    }
    const GemmKernelInfo *ki = gemm_kernel_avx512_bf16() ? gemm_kernel_avx512_bf16() : gemm_kernel_neon_bf16();
    printf("bf16 kernel set: %s (k block %d)\n", ki->name, ki->kc);
    // tile edges (14 x 32), odd K, K over one and two k blocks (1100, 2049), both sides, transposed operands
    static const Case cases[] = {
        {GEMM_BF16_A, 15, 33, 9, 0, 1, 0},     {GEMM_BF16_A, 29, 65, 1100, 0, 1, 1}, {GEMM_BF16_A, 3, 70, 2049, 1, 0, 1},
        {GEMM_BF16_A, 47, 40, 101, 1, 1, 0},   {GEMM_BF16_BT, 13, 31, 7, 0, 1, 1},   {GEMM_BF16_BT, 64, 37, 1100, 1, 1, 0},
        {GEMM_BF16_BT, 1, 96, 2049, 0, 0, 1}, {GEMM_BF16_BT, 30, 100, 64, 1, 0, 0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) check_case(ki, cases[t], 100 + 10 * t);
    return test_report("test_gemm_bf16_order");
}
