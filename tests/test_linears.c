// Linear paths the GEMM tests do not reach on their own.
// 1. linear_forward_packed_cf / linear_forward_bf16_cf (x stored channels first, x[p*rows + r],
// as the transformer's proj_in reads one sample of an NCHW map) against linear_forward_packed /
// linear_forward_bf16 on the transposed copy of x: the packed panels hold the same values, so
// the outputs must be bit-identical, on every f32 ISA path this CPU has and on 1 and 2 threads.
// Shapes: rows not a multiple of the 14-row tile, more rows than one 168-row block, K odd (a zero
// in bf16's last pair) and K over one k block (384 f32, 1024 bf16).
// 2. A 1-row bf16 linear whose weight is over 1 MB (a time-embedding projection, 1280 -> 640:
// 1.6 MB in bf16) runs on all threads though it has few FLOPs: the bits must not change.
#include <stdint.h>

#include "core/runtime.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

typedef struct {
    int rows, in, out;
} Shape;

static const Shape SHAPES[] = {{1, 7, 5}, {29, 33, 40}, {200, 320, 64}, {64, 1281, 96}, {300, 45, 33}};

// xt[r][p] = x[p][r]
static void transpose(const float *x, float *xt, int in, int rows) {
    for (int p = 0; p < in; p++)
        for (int r = 0; r < rows; r++) xt[(size_t)r * in + p] = x[(size_t)p * rows + r];
}

static void check_shape(const Shape *s, int isa_label, int bf16) {
    const int rows = s->rows, in = s->in, out = s->out;
    float *x = malloc((size_t)in * rows * sizeof(float)), *xt = malloc((size_t)in * rows * sizeof(float));
    float *w = malloc((size_t)out * in * sizeof(float)), *b = malloc((size_t)out * sizeof(float));
    float *y = malloc((size_t)rows * out * sizeof(float)), *y_cf = malloc((size_t)rows * out * sizeof(float));
    float *y_cf1 = malloc((size_t)rows * out * sizeof(float));
    test_fill(x, (long)in * rows, 3 + rows);
    test_fill(w, (long)out * in, 5 + in);
    test_fill(b, out, 7 + out);
    transpose(x, xt, in, rows);
    int rc = 0;
    if (bf16) {
        Bf16Packed pw;
        rc |= gemm_bf16_pack_weights(&pw, w, out, in, GEMM_BF16_BT);
        set_threads(2);
        rc |= linear_forward_bf16(xt, &pw, b, y, rows);
        rc |= linear_forward_bf16_cf(x, &pw, b, y_cf, rows);
        set_threads(1);
        rc |= linear_forward_bf16_cf(x, &pw, b, y_cf1, rows);
        set_threads(2);
        gemm_bf16_packed_free(&pw);
    } else {
        GemmPackedWeights pw;
        rc |= gemm_pack_weights(&pw, w, out, in, 1);
        set_threads(2);
        linear_forward_packed(xt, in, &pw, b, y, rows);
        linear_forward_packed_cf(x, &pw, b, y_cf, rows);
        set_threads(1);
        linear_forward_packed_cf(x, &pw, b, y_cf1, rows);
        set_threads(2);
        gemm_packed_weights_free(&pw);
    }
    size_t bytes = (size_t)rows * out * sizeof(float);
    CHECK(rc == 0 && memcmp(y, y_cf, bytes) == 0 && memcmp(y, y_cf1, bytes) == 0,
          "%s linear channels first (isa %d), rows %d in %d out %d: rc %d, max diff %g (2 threads), %g (1 thread)",
          bf16 ? "bf16" : "f32", isa_label, rows, in, out, rc, max_abs_diff(y, y_cf, (long)rows * out),
          max_abs_diff(y, y_cf1, (long)rows * out));
    free(x);
    free(xt);
    free(w);
    free(b);
    free(y);
    free(y_cf);
    free(y_cf1);
}

static void check_bf16_gemv_threads(void) {
    const int in = 1280, out = 640;
    float *x = malloc(in * sizeof(float)), *w = malloc((size_t)out * in * sizeof(float));
    float *y1 = malloc(out * sizeof(float)), *y2 = malloc(out * sizeof(float));
    test_fill(x, in, 41);
    test_fill(w, (long)out * in, 43);
    Bf16Packed pw;
    int rc = gemm_bf16_pack_weights(&pw, w, out, in, GEMM_BF16_BT);
    set_threads(1);
    rc |= linear_forward_bf16(x, &pw, NULL, y1, 1);
    set_threads(2);
    rc |= linear_forward_bf16(x, &pw, NULL, y2, 1);
    CHECK(rc == 0 && memcmp(y1, y2, out * sizeof(float)) == 0,
          "bf16 1-row linear 1280 -> 640: 1 and 2 threads differ (rc %d, max diff %g)", rc, max_abs_diff(y1, y2, out));
    gemm_bf16_packed_free(&pw);
    free(x);
    free(w);
    free(y1);
    free(y2);
}

int main(void) {
    const int n = (int)(sizeof(SHAPES) / sizeof(SHAPES[0]));
    int isas[] = {ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON};
    for (int k = 0; k < 4; k++) {
        if (gemm_force_isa(isas[k]) != 0) continue;  // this build or CPU cannot run that path
        for (int i = 0; i < n; i++) check_shape(&SHAPES[i], isas[k], 0);
    }
    gemm_force_isa(-1);
    if (gemm_bf16_supported()) {
        for (int i = 0; i < n; i++) check_shape(&SHAPES[i], ISA_AVX512, 1);
        check_bf16_gemv_threads();
    } else {
        printf("SKIP test_linears bf16: no AVX512_BF16 here (or AVX-512 not in use)\n");
    }
    return test_report("test_linears");
}
