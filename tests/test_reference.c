// The reference path (kernels/reference.c) itself: small cases worked out by hand (so the
// loops the fast kernels are tested against are right on their own), packed weights read
// back give the bits of the plain ones, 1 and 2 threads give the same bits, and with
// the reference path as the process default (sd_isa_set_default, before any kernel runs, as the
// command does for $SATDIFUSER_ISA=reference) every hooked entry point -
// sgemm, linear_forward(_packed, _cf), conv2d_forward(_packed), attention_forward, the
// GroupNorms and LayerNorm - gives exactly the reference's bits.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/fused.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_util.h"

static float *rand_buf(size_t n, unsigned long long seed) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    test_fill(x, (long)n, seed);
    return x;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

// ---- By hand ------------------------------------------------------------------------------

static void test_by_hand(void) {
    // GEMM: [1 2; 3 4] [5 6; 7 8] = [19 22; 43 50]; with alpha 2, beta 1 on C = 1: [39 45; 87 101]
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4] = {1, 1, 1, 1};
    reference_sgemm(0, 0, 2, 2, 2, 2.0f, A, 2, B, 2, 1.0f, C, 2);
    CHECK(C[0] == 39 && C[1] == 45 && C[2] == 87 && C[3] == 101, "gemm 2x2: %g %g %g %g", C[0], C[1], C[2], C[3]);
    // A^T B^T: [1 3; 2 4] [5 7; 6 8] = [23 31; 34 46]
    reference_sgemm(1, 1, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 23 && C[1] == 31 && C[2] == 34 && C[3] == 46, "gemm A^T B^T: %g %g %g %g", C[0], C[1], C[2], C[3]);
    // nn.Linear: x = [1 2 3], W = [[1 0 -1], [2 2 2]], b = [10 20] -> [8 32]
    float x[3] = {1, 2, 3}, W[6] = {1, 0, -1, 2, 2, 2}, b[2] = {10, 20}, y[2];
    reference_linear(x, W, b, y, 1, 3, 2);
    CHECK(y[0] == 8 && y[1] == 32, "linear: %g %g", y[0], y[1]);

    // conv: a 3x3 map 1..9, 3x3 kernel of ones, padding 1: each output sums its neighbourhood
    float m[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, out[9], bias = 0.5f;
    reference_conv2d(m, 1, 1, 3, 3, ones, NULL, &bias, 1, conv_geometry(3, 1, 1), out);
    const float want[9] = {12.5f, 21.5f, 16.5f, 27.5f, 45.5f, 33.5f, 24.5f, 39.5f, 28.5f};
    CHECK(same_bits(out, want, 9), "conv 3x3 pad 1: %g %g %g / %g %g", out[0], out[1], out[2], out[4], out[8]);
    // stride 2, no padding, 2x2 kernel [1 0; 0 -1] on the 3x3 map: one output, 1 - 5 = -4
    float k2[4] = {1, 0, 0, -1}, o2[1];
    Conv2dGeometry g2 = conv_geometry(2, 2, 0);
    reference_conv2d(m, 1, 1, 3, 3, k2, NULL, NULL, 1, g2, o2);
    CHECK(o2[0] == -4.0f, "conv 2x2 stride 2: %g", o2[0]);

    // attention, one head of dim 2: q = 0 gives equal weights (out = mean of v); causal query 0
    // sees key 0 only (out = v_0); query 1 with q = (s, 0), keys (1,0), (0,0): weights e^s : 1
    float q[4] = {0, 0, 3, 0}, k[4] = {1, 0, 0, 0}, v[4] = {2, 4, 6, 10}, o[4];
    reference_attention(q, k, v, o, 1, 1, 2, 2, 2, 1.0f, 0, NULL);
    double w = exp(3.0) / (exp(3.0) + 1.0);
    CHECK(o[0] == 4.0f && o[1] == 7.0f, "attention uniform: %g %g", o[0], o[1]);
    CHECK(fabs(o[2] - (w * 2 + (1 - w) * 6)) < 1e-6 && fabs(o[3] - (w * 4 + (1 - w) * 10)) < 1e-6,
          "attention weights e^3 : 1: %g %g", o[2], o[3]);
    reference_attention(q, k, v, o, 1, 1, 2, 2, 2, 1.0f, 1, NULL);
    CHECK(o[0] == 2.0f && o[1] == 4.0f, "causal query 0 sees key 0 only: %g %g", o[0], o[1]);

    // LayerNorm of [1 2 3 4]: mean 2.5, var 1.25
    float ln[4] = {1, 2, 3, 4}, lo[4];
    reference_layernorm(ln, lo, NULL, NULL, 1, 4, 0.0f);
    double r = 1.0 / sqrt(1.25);
    CHECK(fabs(lo[0] + 1.5 * r) < 1e-7 && fabs(lo[3] - 1.5 * r) < 1e-7, "layernorm: %g %g", lo[0], lo[3]);
    // GroupNorm, 2 channels of 2 values in one group with a channel bias (+1, -1): v = [2 3 2 3]
    float gx[4] = {1, 2, 3, 4}, cb[2] = {1, -1}, gy[4], mean, rstd, gamma[2] = {1, 2}, beta[2] = {0, 1};
    reference_groupnorm(gx, gy, gamma, beta, cb, 1, 2, 2, 1, 0.0f, &mean, &rstd);
    CHECK(mean == 2.5f && rstd == 2.0f && gy[0] == -1 && gy[1] == 1 && gy[2] == -1 && gy[3] == 3,
          "groupnorm with channel bias: mean %g rstd %g y %g %g %g %g", mean, rstd, gy[0], gy[1], gy[2], gy[3]);
}

// ---- Packed weights and threads -----------------------------------------------------------

static void test_packed_and_threads(void) {
    // a linear whose weight is packed as B (read back with gemm_packed_at) and a conv packed as A
    const int rows = 37, in = 300, out = 45;
    float *x = rand_buf((size_t)rows * in, 1), *W = rand_buf((size_t)out * in, 2), *b = rand_buf(out, 3);
    float *y1 = malloc((size_t)rows * out * sizeof(float)), *y2 = malloc((size_t)rows * out * sizeof(float));
    GemmPackedWeights pw;
    if (gemm_pack_weights(&pw, W, out, in, 1) == 0) {
        reference_linear(x, W, b, y1, rows, in, out);
        GemmProblem g = {.M = rows, .N = out, .K = in, .a = x, .lda = in, .alpha = 1.0f, .bias_n = b, .c = y2,
                         .ldc = out, .packed_b = &pw};
        reference_gemm(&g);
        CHECK(same_bits(y1, y2, (size_t)rows * out), "reference linear: packed weight changes the bits");
        gemm_packed_weights_free(&pw);
    }
    set_threads(1);
    reference_linear(x, W, b, y2, rows, in, out);
    set_threads(2);
    CHECK(same_bits(y1, y2, (size_t)rows * out), "reference linear: 1 and 2 threads differ");

    const int Cin = 20, H = 13, Wd = 11, Cout = 24, K = Cin * 9;
    Conv2dGeometry g = conv_geometry(3, 2, 1);
    const int Ho = conv_out_size(H, 3, 2, 1, 1), Wo = conv_out_size(Wd, 3, 2, 1, 1);
    size_t ny = (size_t)2 * Cout * Ho * Wo;
    float *cx = rand_buf((size_t)2 * Cin * H * Wd, 4), *cw = rand_buf((size_t)Cout * K, 5), *cb = rand_buf(Cout, 6);
    float *c1 = malloc(ny * sizeof(float)), *c2 = malloc(ny * sizeof(float));
    reference_conv2d(cx, 2, Cin, H, Wd, cw, NULL, cb, Cout, g, c1);
    if (gemm_pack_weights(&pw, cw, Cout, K, 0) == 0) {
        reference_conv2d(cx, 2, Cin, H, Wd, NULL, &pw, cb, Cout, g, c2);
        CHECK(same_bits(c1, c2, ny), "reference conv: packed weight changes the bits");
        gemm_packed_weights_free(&pw);
    }
    set_threads(1);
    reference_conv2d(cx, 2, Cin, H, Wd, cw, NULL, cb, Cout, g, c2);
    set_threads(2);
    CHECK(same_bits(c1, c2, ny), "reference conv: 1 and 2 threads differ");
    free(x), free(W), free(b), free(y1), free(y2), free(cx), free(cw), free(cb), free(c1), free(c2);
}

// ---- The hooks: SATDIFUSER_ISA=reference routes the entry points here -----------------------

static void test_hooks(void) {
    CHECK(sd_reference_path() == 1 && strcmp(sd_isa_in_use(), "reference") == 0 && sd_cpu_isa() == ISA_SCALAR,
          "the reference default: reference path %d, in use '%s', element-wise ISA %s", sd_reference_path(),
          sd_isa_in_use(), sd_isa_name(sd_cpu_isa()));
    // sgemm and the linears
    const int M = 33, N = 29, Kd = 70;
    float *A = rand_buf((size_t)Kd * M, 11), *B = rand_buf((size_t)N * Kd, 12), *bias = rand_buf(N, 13);
    float *C = rand_buf((size_t)M * N, 14), *R = malloc((size_t)M * N * sizeof(float));
    memcpy(R, C, (size_t)M * N * sizeof(float));
    sgemm(1, 1, M, N, Kd, 0.5f, A, M, B, Kd, 0.25f, C, N);
    reference_sgemm(1, 1, M, N, Kd, 0.5f, A, M, B, Kd, 0.25f, R, N);
    CHECK(same_bits(C, R, (size_t)M * N), "sgemm under SATDIFUSER_ISA=reference is not the reference");
    linear_forward(A, B, bias, C, M, Kd, N);  // A as x (M x Kd), B as W (N x Kd)
    reference_linear(A, B, bias, R, M, Kd, N);
    CHECK(same_bits(C, R, (size_t)M * N), "linear_forward under reference");
    GemmPackedWeights pw;
    if (gemm_pack_weights(&pw, B, N, Kd, 1) == 0) {
        linear_forward_packed(A, Kd, &pw, bias, C, M);
        CHECK(same_bits(C, R, (size_t)M * N), "linear_forward_packed under reference");
        // channels first: x[p*rows + r] is x^T
        float *xt = malloc((size_t)M * Kd * sizeof(float));
        for (int r = 0; r < M; r++)
            for (int p = 0; p < Kd; p++) xt[(size_t)p * M + r] = A[(size_t)r * Kd + p];
        linear_forward_packed_cf(xt, &pw, bias, C, M);
        CHECK(same_bits(C, R, (size_t)M * N), "linear_forward_packed_cf under reference");
        free(xt);
        gemm_packed_weights_free(&pw);
    }
    // convolutions, plain and packed
    const int Cin = 6, H = 9, W = 10, Cout = 7, K = Cin * 9;
    Conv2dGeometry g = {.kernel_h = 3, .kernel_w = 3, .stride = 1,
                        .pad_top = 1, .pad_left = 0, .pad_bottom = 1, .pad_right = 2};
    const int Ho = conv_out_size(H, 3, 1, 1, 1), Wo = conv_out_size(W, 3, 1, 0, 2);
    size_t ny = (size_t)Cout * Ho * Wo;
    float *x = rand_buf((size_t)Cin * H * W, 15), *w = rand_buf((size_t)Cout * K, 16), *cb = rand_buf(Cout, 17);
    float *y = malloc(ny * sizeof(float)), *yr = malloc(ny * sizeof(float));
    conv2d_forward(x, 1, Cin, H, W, w, cb, Cout, g, y);
    reference_conv2d(x, 1, Cin, H, W, w, NULL, cb, Cout, g, yr);
    CHECK(same_bits(y, yr, ny), "conv2d_forward under reference is not the reference");
    if (gemm_pack_weights(&pw, w, Cout, K, 0) == 0) {
        conv2d_forward_packed(x, 1, Cin, H, W, &pw, cb, Cout, g, y);
        CHECK(same_bits(y, yr, ny), "conv2d_forward_packed under reference");
        gemm_packed_weights_free(&pw);
    }
    // attention, causal
    const int Bt = 2, heads = 3, Nq = 17, Nk = 17, hd = 8, D = heads * hd;
    size_t nq = (size_t)Bt * Nq * D;
    float *q = rand_buf(nq, 18), *k = rand_buf(nq, 19), *v = rand_buf(nq, 20);
    float *o = malloc(nq * sizeof(float)), *orf = malloc(nq * sizeof(float));
    CHECK(attention_forward(q, k, v, o, Bt, heads, Nq, Nk, hd, 0.35f, 1, NULL) == 0, "attention under reference");
    reference_attention(q, k, v, orf, Bt, heads, Nq, Nk, hd, 0.35f, 1, NULL);
    CHECK(same_bits(o, orf, nq), "attention_forward under reference is not the reference");
    // norms: groupnorm (with stats), groupnorm + silu with a channel bias, layernorm
    const int Nn = 2, Cn = 8, HW = 15, G = 4;
    size_t nn = (size_t)Nn * Cn * HW;
    float *gx = rand_buf(nn, 21), *gg = rand_buf(Cn, 22), *gb = rand_buf(Cn, 23);
    float *cbias = rand_buf((size_t)Nn * Cn, 24);
    float *gy = malloc(nn * sizeof(float)), *gr = malloc(nn * sizeof(float));
    float m1[8], r1[8], m2[8], r2[8];
    groupnorm_forward_stats(gx, gy, gg, gb, Nn, Cn, HW, G, 1e-5f, m1, r1);
    reference_groupnorm(gx, gr, gg, gb, NULL, Nn, Cn, HW, G, 1e-5f, m2, r2);
    CHECK(same_bits(gy, gr, nn) && same_bits(m1, m2, 8) && same_bits(r1, r2, 8),
          "groupnorm_forward_stats under reference");
    groupnorm_silu_forward(gx, gy, gg, gb, cbias, Nn, Cn, HW, G, 1e-5f);
    reference_groupnorm(gx, gr, gg, gb, cbias, Nn, Cn, HW, G, 1e-5f, NULL, NULL);
    silu_inplace(gr, (int64_t)nn);
    CHECK(same_bits(gy, gr, nn), "groupnorm_silu_forward under reference");
    layernorm_forward(gx, gy, gg, gb, Nn * HW, Cn, 1e-5f);
    reference_layernorm(gx, gr, gg, gb, Nn * HW, Cn, 1e-5f);
    CHECK(same_bits(gy, gr, nn), "layernorm_forward under reference");
    free(A), free(B), free(bias), free(C), free(R), free(x), free(w), free(cb), free(y), free(yr);
    free(q), free(k), free(v), free(o), free(orf), free(gx), free(gg), free(gb), free(cbias), free(gy), free(gr);
}

int main(void) {
    CHECK(sd_isa_set_default(ISA_REFERENCE) == 0, "the reference path: %s", sd_last_error());  // before any kernel
    set_threads(2);
    test_by_hand();
    test_packed_and_threads();
    test_hooks();
    return test_report("test_reference");
}
