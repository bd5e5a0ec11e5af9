// Tests of the bf16 GEMM (gemm.c with the bf16 kernel set, src/kernels/gemm_avx512_bf16.c): rounding (ties to even, NaN,
// inf, subnormals) in the scalar and the SIMD packing paths; products against a
// double-precision reference on the bf16-rounded inputs (a tight bound: only the
// f32 summation's rounding) and against the f32 GEMM (a loose bound: bf16's own
// error); odd and edge sizes, both weight sides, every packing path (plain,
// transposed, pack_b callback, a real 3x3 convolution), biases and beta, 1 vs 2
// vs 3 threads bit-identical, calls from inside a parallel region, and errors.
// Without AVX512_BF16 only the portable rounding is tested (the rest is SKIPped).
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

static const double U = 1.0 / 16777216.0;  // f32 unit roundoff, 2^-24
static double g_worst_tight = 0.0;          // largest |C - ref| / (u sum|ab|) seen by check_product
static int g_worst_tight_k = 0;

static float bits_to_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float round_bf16(float x) { return f32_from_bf16(bf16_from_f32(x)); }

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        printf("out of memory\n");
        exit(1);
    }
    return p;
}

// ---- Rounding (portable) ------------------------------------------------------------

static void test_rounding(void) {
    // Ties to even at 1.0: the bf16 ulp is 2^-7; 1 + 2^-8 is a tie and goes down to 1 (even),
    // 1 + 3*2^-8 is a tie and goes up to 1 + 2^-6 (even), anything above a tie goes up.
    CHECK(bf16_from_f32(1.0f) == 0x3F80, "1.0 -> %04x", bf16_from_f32(1.0f));
    CHECK(bf16_from_f32(1.0f + 0x1p-8f) == 0x3F80, "1+2^-8 -> %04x", bf16_from_f32(1.0f + 0x1p-8f));
    CHECK(bf16_from_f32(1.0f + 3 * 0x1p-8f) == 0x3F82, "1+3*2^-8 -> %04x", bf16_from_f32(1.0f + 3 * 0x1p-8f));
    CHECK(bf16_from_f32(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81, "just above a tie goes up");
    CHECK(bf16_from_f32(-1.0f - 0x1p-8f) == 0xBF80, "negative tie to even");
    CHECK(bf16_from_f32(bits_to_f32(0x3F81FFFF)) == 0x3F82, "below-tie mantissa carry");
    // A carry through the mantissa into the exponent: 2 - 2^-23 -> 2.0.
    CHECK(bf16_from_f32(bits_to_f32(0x3FFFFFFF)) == 0x4000, "carry into the exponent");
    // inf stays inf, the largest finite f32 rounds to inf, the largest finite bf16 stays.
    CHECK(bf16_from_f32(INFINITY) == 0x7F80 && bf16_from_f32(-INFINITY) == 0xFF80, "inf");
    CHECK(bf16_from_f32(bits_to_f32(0x7F7FFFFF)) == 0x7F80, "FLT_MAX rounds to inf");
    CHECK(bf16_from_f32(bits_to_f32(0x7F7F0000)) == 0x7F7F, "largest bf16 stays");
    // NaN stays NaN even when its payload is only in the low 16 bits (truncation would give inf).
    uint16_t n1 = bf16_from_f32(bits_to_f32(0x7F800001)), n2 = bf16_from_f32(bits_to_f32(0xFFC00000));
    CHECK(isnan(f32_from_bf16(n1)) && n1 == 0x7FC0, "signalling NaN 7f800001 -> %04x", n1);
    CHECK(isnan(f32_from_bf16(n2)) && n2 == 0xFFC0, "negative NaN -> %04x", n2);
    CHECK(isnan(f32_from_bf16(bf16_from_f32(NAN))), "NAN");
    // Subnormals become a zero of the same sign (as vcvtneps2bf16 does); zeros keep their sign.
    CHECK(bf16_from_f32(bits_to_f32(0x007FFFFF)) == 0x0000 && bf16_from_f32(bits_to_f32(0x80000001)) == 0x8000,
          "subnormals flush to signed zero");
    CHECK(bf16_from_f32(0.0f) == 0x0000 && bf16_from_f32(-0.0f) == 0x8000, "signed zeros");
    // Every bf16 that is not NaN or subnormal converts to f32 and back to itself.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t exp = h & 0x7F80, man = h & 0x007F;
        if ((exp == 0x7F80 && man) || (exp == 0 && man)) continue;
        bad += bf16_from_f32(f32_from_bf16((uint16_t)h)) != h;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    // Rounding error: |x - bf16(x)| <= 2^-8 |x| for normal x (8 significant bits, half an ulp).
    double worst = 0.0;
    unsigned long long s = 12345;
    for (int i = 0; i < 100000; i++) {
        float x = test_rand(&s) * 1000.0f;
        if (x == 0.0f) continue;
        double e = fabs((double)round_bf16(x) - x) / fabs((double)x);
        if (e > worst) worst = e;
    }
    CHECK(worst <= 1.0 / 256 && worst > 1.0 / 300, "bf16 relative rounding error %g, expected just under 2^-8", worst);
}

// ---- The SIMD rounding inside every packing path ----------------------------------------
// A product with a weight of exact ones picks single values out: C = bf16(x) exactly.

static float special_value(unsigned long long *s, int i) {
    // random bit patterns over the whole exponent range, and the interesting ones
    static const uint32_t fixed[] = {0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x00000001,
                                     0x807FFFFF, 0x00800000, 0x80000000, 0x3F80FFFF, 0x7F800001, 0xFFC00001};
    if (i < (int)(sizeof fixed / sizeof fixed[0])) return bits_to_f32(fixed[i]);
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return bits_to_f32((uint32_t)(*s >> 11));
}

// f32 equality that treats every NaN alike and ignores the sign of zero.
static int same_value(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

typedef struct {
    const float *b;  // K x N, row-major, ld = ldb
    int ldb;
} PlainPackCtx;

// A pack_b callback over a stored K x N matrix: the driver's pack_b path without a convolution.
static void pack_plain(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const PlainPackCtx *cx = vctx;
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        for (int p = 0; p < kc; p++)
            for (int j = 0; j < nr; j++)
                dst[(size_t)jr * kc + (size_t)p * nr + j] = j < n ? cx->b[(size_t)(p0 + p) * cx->ldb + j0 + jr + j] : 0.0f;
    }
}

static void test_simd_rounding(void) {
    enum { COUNT = 3000 };
    float *x = xmalloc(COUNT * 2 * sizeof(float)), *c = xmalloc(COUNT * sizeof(float));
    unsigned long long s = 777;
    for (int i = 0; i < 2 * COUNT; i++) x[i] = special_value(&s, i % COUNT < 12 ? i % COUNT : 100);
    // Weights (1) and (0, 1): pick the even and the odd member of each pair.
    const float one[1] = {1.0f}, zero_one[2] = {0.0f, 1.0f};
    for (int odd = 0; odd < 2; odd++) {
        int K = odd + 1;
        Bf16Packed wa, wb;
        CHECK(gemm_bf16_pack_weights(&wa, odd ? zero_one : one, 1, K, GEMM_BF16_A) == 0, "pack");
        CHECK(gemm_bf16_pack_weights(&wb, odd ? zero_one : one, 1, K, GEMM_BF16_BT) == 0, "pack");
        // The picked value is x[odd * COUNT + t]; the other member of the pair is finite (it meets a 0).
        float *vals = xmalloc((size_t)K * COUNT * sizeof(float));
        for (int t = 0; t < COUNT; t++) {
            vals[(size_t)odd * COUNT + t] = x[t];  // K x COUNT row-major (rows = k)
            if (odd) vals[t] = 0.5f;
        }
        float *valsT = xmalloc((size_t)K * COUNT * sizeof(float));  // COUNT x K
        for (int t = 0; t < COUNT; t++)
            for (int k = 0; k < K; k++) valsT[(size_t)t * K + k] = vals[(size_t)k * COUNT + t];
        PlainPackCtx pc = {vals, COUNT};
        for (int path = 0; path < 5; path++) {
            GemmProblem g;
            memset(&g, 0, sizeof g);
            g.K = K;
            g.alpha = 1.0f;
            g.c = c;
            const Bf16Packed *w = &wa;
            const char *name = "";
            if (path <= 2) {  // side A: C[1, COUNT] = w B
                g.M = 1;
                g.N = COUNT;
                g.ldc = COUNT;
                if (path == 0) { g.b = vals; g.ldb = COUNT; name = "side A, B plain"; }
                if (path == 1) { g.b = valsT; g.ldb = K; g.trans_b = 1; name = "side A, B transposed"; }
                if (path == 2) { g.pack_b = pack_plain; g.pack_b_ctx = &pc; name = "side A, pack_b"; }
            } else {  // side BT: C[COUNT, 1] = A w^T
                w = &wb;
                g.M = COUNT;
                g.N = 1;
                g.ldc = 1;
                if (path == 3) { g.a = valsT; g.lda = K; name = "side BT, A plain"; }
                if (path == 4) { g.a = vals; g.lda = COUNT; g.trans_a = 1; name = "side BT, A transposed"; }
            }
            for (int t = 0; t < COUNT; t++) c[t] = NAN;
            CHECK(gemm_bf16_run(&g, w) == 0, "%s: run: %s", name, sd_last_error());
            int bad = 0;
            for (int t = 0; t < COUNT; t++) {
                float want = round_bf16(x[t]);
                if (!same_value(c[t], want)) {
                    uint32_t bits;
                    memcpy(&bits, &x[t], sizeof bits);
                    if (bad < 3) printf("  %s k%%2=%d: x=%08x gives %g, want %g\n", name, odd, bits, c[t], want);
                    bad++;
                }
            }
            CHECK(bad == 0, "%s, %s member of the pair: %d values not rounded like bf16_from_f32", name,
                  odd ? "odd" : "even", bad);
        }
        free(vals);
        free(valsT);
        gemm_bf16_packed_free(&wa);
        gemm_bf16_packed_free(&wb);
    }
    free(x);
    free(c);
}

// ---- Products against the references ------------------------------------------------------

typedef struct {
    int side;           // GEMM_BF16_A or GEMM_BF16_BT
    int M, N, K;
    int trans;          // side A: trans_b; side BT: trans_a
    int use_pack_b;     // side A: B through pack_plain
    int pad;            // extra leading-dimension padding
    int bias_m, bias_n;
    float beta;
} Spec;

// Runs one problem with bf16 and f32; checks against the double reference on the rounded
// inputs (tight) and the f32 GEMM (loose). Returns the bf16 output (caller frees) in *out.
static void check_product(Spec sp, unsigned long long seed) {
    const int M = sp.M, N = sp.N, K = sp.K, pad = sp.pad;
    const int wrows = sp.side == GEMM_BF16_A ? M : N;
    float *W = xmalloc((size_t)wrows * K * sizeof(float));
    test_fill(W, (long)wrows * K, seed);
    // The f32 operand: side A: B (K x N or, transposed, N x K); side BT: A (M x K or K x M).
    int x_rows, x_cols;
    if (sp.side == GEMM_BF16_A) { x_rows = sp.trans ? N : K; x_cols = sp.trans ? K : N; }
    else { x_rows = sp.trans ? K : M; x_cols = sp.trans ? M : K; }
    int ldx = x_cols + pad, ldc = N + pad;
    float *X = xmalloc((size_t)x_rows * ldx * sizeof(float));
    test_fill(X, (long)x_rows * ldx, seed + 1);
    float *bm = xmalloc((size_t)M * sizeof(float)), *bn = xmalloc((size_t)N * sizeof(float));
    test_fill(bm, M, seed + 2);
    test_fill(bn, N, seed + 3);
    float *C0 = xmalloc((size_t)M * ldc * sizeof(float)), *C = xmalloc((size_t)M * ldc * sizeof(float));
    float *C32 = xmalloc((size_t)M * ldc * sizeof(float));
    test_fill(C0, (long)M * ldc, seed + 4);
    if (sp.beta == 0.0f)
        for (long i = 0; i < (long)M * ldc; i++) C0[i] = NAN;  // must not be read
    memcpy(C, C0, (size_t)M * ldc * sizeof(float));
    memcpy(C32, C0, (size_t)M * ldc * sizeof(float));

    Bf16Packed w;
    CHECK(gemm_bf16_pack_weights(&w, W, wrows, K, sp.side) == 0, "pack: %s", sd_last_error());
    GemmProblem g = {.M = M, .N = N, .K = K, .alpha = 1.0f};
    g.bias_m = sp.bias_m ? bm : NULL;
    g.bias_n = sp.bias_n ? bn : NULL;
    g.beta = sp.beta;
    g.ldc = ldc;
    PlainPackCtx pc = {X, ldx};
    if (sp.side == GEMM_BF16_A) {
        g.a = W;
        g.lda = K;
        g.b = X;
        g.ldb = ldx;
        g.trans_b = sp.trans;
        if (sp.use_pack_b) {
            g.pack_b = pack_plain;
            g.pack_b_ctx = &pc;
        }
    } else {
        g.a = X;
        g.lda = ldx;
        g.trans_a = sp.trans;
        g.b = W;
        g.ldb = K;
        g.trans_b = 1;
    }
    g.c = C;
    CHECK(gemm_bf16_run(&g, &w) == 0, "run: %s", sd_last_error());
    g.c = C32;
    gemm_run(&g);  // f32 (the weight operand read from W as a plain matrix)

    double worst_tight = 0.0, worst_loose = 0.0;
    int bad_tight = 0, bad_loose = 0, bad_pad = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double sum = 0.0, abs_sum = 0.0, abs_sum32 = 0.0;
            for (int k = 0; k < K; k++) {
                float a, b;
                if (sp.side == GEMM_BF16_A) {
                    a = W[(size_t)i * K + k];
                    b = sp.trans ? X[(size_t)j * ldx + k] : X[(size_t)k * ldx + j];
                } else {
                    a = sp.trans ? X[(size_t)k * ldx + i] : X[(size_t)i * ldx + k];
                    b = W[(size_t)j * K + k];
                }
                double p = (double)round_bf16(a) * round_bf16(b);
                sum += p;
                abs_sum += fabs(p);
                abs_sum32 += fabs((double)a * b);
            }
            double extra = (sp.bias_m ? bm[i] : 0.0) + (sp.bias_n ? bn[j] : 0.0);
            double cterm = sp.beta != 0.0f ? (double)sp.beta * C0[(size_t)i * ldc + j] : 0.0;
            double ref = sum + extra + cterm;
            double scale = abs_sum + fabs(sp.bias_m ? bm[i] : 0.0) + fabs(sp.bias_n ? bn[j] : 0.0) + fabs(cterm);
            // Tight: each of the K products is exact in f32; at most K + 4 + K/384 f32 additions (the
            // products, the biases, beta C, and more than one per 1024-wide k block), each off by at
            // most u times a partial sum <= scale.
            double tight = (K + 4 + K / 384.0) * U * scale + 1e-30;
            double e = fabs((double)C[(size_t)i * ldc + j] - ref);
            if (!(e <= tight)) bad_tight++;
            if (e / (scale * U + 1e-30) > worst_tight) worst_tight = e / (scale * U + 1e-30);
            // Loose, against f32: each bf16 input is off by <= 2^-8 relatively, a product by <= 2^-7 + 2^-16,
            // plus both summations' rounding.
            double loose = (0x1p-7 + 0x1p-16) * abs_sum32 + 2.0 * tight + 1e-30;
            double e32 = fabs((double)C[(size_t)i * ldc + j] - C32[(size_t)i * ldc + j]);
            if (!(e32 <= loose)) bad_loose++;
            if (abs_sum32 > 0 && e32 / abs_sum32 > worst_loose) worst_loose = e32 / abs_sum32;
        }
        for (int j = N; j < ldc; j++) bad_pad += memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], 4) != 0;
    }
    if (worst_tight > g_worst_tight) {
        g_worst_tight = worst_tight;
        g_worst_tight_k = K;
    }
    CHECK(bad_tight == 0, "side %s M=%d N=%d K=%d trans=%d pack_b=%d bias %d%d beta %g: %d outputs off the double "
          "reference by more than (K+4+K/384) u sum|ab| (worst %.2f u sum|ab|)", sp.side ? "BT" : "A", M, N, K,
          sp.trans, sp.use_pack_b, sp.bias_m, sp.bias_n, (double)sp.beta, bad_tight, worst_tight);
    CHECK(bad_loose == 0, "side %s M=%d N=%d K=%d: %d outputs off f32 by more than 2^-7 sum|ab| (worst %g)",
          sp.side ? "BT" : "A", M, N, K, bad_loose, worst_loose);
    CHECK(bad_pad == 0, "side %s M=%d N=%d K=%d: %d values written past N", sp.side ? "BT" : "A", M, N, K, bad_pad);
    gemm_bf16_packed_free(&w);
    free(W);
    free(X);
    free(bm);
    free(bn);
    free(C0);
    free(C);
    free(C32);
}

static void test_products(void) {
    // Edge sizes around the 14 x 32 tile, K = 1 and odd K (K % 32 in 17..31 too), K across two
    // KC blocks with an odd remainder, M across two MC blocks, N past the 4096 block.
    static const int sizes[][3] = {{1, 1, 1},    {1, 1, 2},    {1, 37, 3},    {15, 1, 5},    {14, 32, 8},
                                   {13, 31, 7},  {15, 33, 9},  {29, 65, 64},  {47, 70, 101}, {3, 5, 1},
                                   {200, 40, 33}, {33, 100, 1537}, {5, 4100, 3}, {15, 33, 59}, {29, 16, 27}};
    unsigned long long seed = 100;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
        for (int side = 0; side < 2; side++) {
            for (int variant = 0; variant < 3; variant++) {
                if (side == GEMM_BF16_BT && variant == 2) continue;
                Spec sp = {side, M, N, K, variant == 1, variant == 2, (int)(s % 3) * 5, 0, 0, 0.0f};
                check_product(sp, seed++);
            }
        }
    }
    // Biases and beta on every path.
    for (int side = 0; side < 2; side++) {
        for (int variant = 0; variant < 3; variant++) {
            if (side == GEMM_BF16_BT && variant == 2) continue;
            Spec a = {side, 30, 45, 77, variant == 1, variant == 2, 3, 1, 0, 0.0f};
            Spec b = {side, 30, 45, 77, variant == 1, variant == 2, 0, 0, 1, 0.5f};
            Spec c = {side, 31, 47, 900, variant == 1, variant == 2, 2, 1, 1, -1.25f};
            Spec d = {side, 16, 33, 12, variant == 1, variant == 2, 0, 0, 0, 1.0f};
            Spec e = {side, 31, 47, 1100, variant == 1, variant == 2, 0, 1, 1, -1.25f};  // narrow tile, 2 k blocks
            check_product(a, seed++);
            check_product(b, seed++);
            check_product(c, seed++);
            check_product(d, seed++);
            check_product(e, seed++);
        }
    }
}

// K = 0: C = bias_m + bias_n + beta C; bad arguments are errors.
static void test_degenerate(void) {
    float C[6] = {1, 2, 3, 4, 5, 6}, bm[2] = {10, 20}, bn[3] = {100, 200, 300};
    Bf16Packed w;
    CHECK(gemm_bf16_pack_weights(&w, NULL, 2, 0, GEMM_BF16_A) == 0 && w.data == NULL, "empty weights");
    GemmProblem g;
    memset(&g, 0, sizeof g);
    g.M = 2;
    g.N = 3;
    g.K = 0;
    g.alpha = 1.0f;
    g.bias_m = bm;
    g.bias_n = bn;
    g.beta = 2.0f;
    g.c = C;
    g.ldc = 3;
    CHECK(gemm_bf16_run(&g, &w) == 0, "K = 0");
    CHECK(C[0] == 112 && C[5] == 332, "K = 0: C = bias + beta C (%g %g)", C[0], C[5]);
    gemm_bf16_packed_free(&w);

    float W[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 1, 1, 1, 1, 1};
    CHECK(gemm_bf16_pack_weights(&w, W, 2, 3, GEMM_BF16_A) == 0, "pack 2x3");
    memset(&g, 0, sizeof g);
    g.M = 2;
    g.N = 2;
    g.K = 3;
    g.alpha = 2.0f;
    g.b = B;
    g.ldb = 2;
    g.c = C;
    g.ldc = 2;
    CHECK(gemm_bf16_run(&g, &w) == -1 && strstr(sd_last_error(), "alpha"), "alpha != 1 is an error");
    g.alpha = 1.0f;
    g.M = 3;
    CHECK(gemm_bf16_run(&g, &w) == -1 && strstr(sd_last_error(), "M x K"), "M mismatch is an error: %s", sd_last_error());
    g.M = 2;
    GemmPackedWeights pw;
    CHECK(gemm_pack_weights(&pw, B, 2, 3, 1) == 0, "f32 packed weights");
    g.packed_b = &pw;  // the f32 operand of side A from f32 packed weights: not supported
    CHECK(gemm_bf16_run(&g, &w) == -1 && strstr(sd_last_error(), "packed f32"), "packed_b on side A is an error");
    g.packed_b = NULL;
    g.packed_a = &pw;  // side A's weight operand: ignored
    CHECK(gemm_bf16_run(&g, &w) == 0 && C[0] == 6 && C[3] == 15, "2x3 times ones: %g %g", C[0], C[3]);
    gemm_packed_weights_free(&pw);
    gemm_bf16_packed_free(&w);
    CHECK(gemm_bf16_pack_weights(&w, W, 2, 3, 7) == -1, "unknown side is an error");
    CHECK(gemm_bf16_pack_weights(&w, W, -1, 3, GEMM_BF16_A) == -1, "negative rows is an error");
}

// The documented layout: word of (r, k) = data[(r/panel)*kpairs*panel + (k/2)*panel + r%panel].
static void test_layout(void) {
    enum { ROWS = 17, K = 5 };
    float W[ROWS * K];
    test_fill(W, ROWS * K, 5);
    for (int side = 0; side < 2; side++) {
        Bf16Packed w;
        CHECK(gemm_bf16_pack_weights(&w, W, ROWS, K, side) == 0, "pack");
        int bad = 0, panels = (ROWS + w.panel - 1) / w.panel;
        CHECK(w.kpairs == 3 && w.bytes == (size_t)panels * w.panel * w.kpairs * 4, "kpairs %d bytes %zu", w.kpairs, w.bytes);
        for (int r = 0; r < panels * w.panel; r++) {
            for (int k = 0; k < 2 * w.kpairs; k++) {
                uint32_t word = w.data[(size_t)(r / w.panel) * w.kpairs * w.panel + (size_t)(k / 2) * w.panel + r % w.panel];
                uint16_t h = (uint16_t)(k % 2 ? word >> 16 : word & 0xFFFF);
                uint16_t want = r < ROWS && k < K ? bf16_from_f32(W[r * K + k]) : 0;
                bad += h != want;
            }
        }
        CHECK(bad == 0, "side %d: %d packed values not where docs say", side, bad);
        gemm_bf16_packed_free(&w);
    }
}

// ---- A real convolution through pack_b -----------------------------------------------------

typedef struct {
    const float *x;  // Cin x H x W
    int H, W, KH, KW, stride, pad, Wo;
} ConvCtx;

// X_col[(ci,kh,kw), (oh,ow)] = x[ci, oh*s - pad + kh, ow*s - pad + kw] (zero outside), like conv.c.
static void pack_conv(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const ConvCtx *cx = vctx;
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        for (int p = 0; p < kc; p++) {
            int k = p0 + p, ci = k / (cx->KH * cx->KW), kh = k / cx->KW % cx->KH, kw = k % cx->KW;
            float *row = dst + (size_t)jr * kc + (size_t)p * nr;
            for (int j = 0; j < nr; j++) {
                int pix = j0 + jr + j, oh = pix / cx->Wo, ow = pix % cx->Wo;
                int ih = oh * cx->stride - cx->pad + kh, iw = ow * cx->stride - cx->pad + kw;
                row[j] = j < n && ih >= 0 && ih < cx->H && iw >= 0 && iw < cx->W ? cx->x[((size_t)ci * cx->H + ih) * cx->W + iw] : 0.0f;
            }
        }
    }
}

static void test_conv(void) {
    enum { CIN = 5, H = 9, W = 11, COUT = 17 };
    float x[CIN * H * W], wt[COUT * CIN * 9], bias[COUT];
    test_fill(x, CIN * H * W, 21);
    test_fill(wt, COUT * CIN * 9, 22);
    test_fill(bias, COUT, 23);
    Bf16Packed w;
    CHECK(gemm_bf16_pack_weights(&w, wt, COUT, CIN * 9, GEMM_BF16_A) == 0, "pack conv weights");
    for (int stride = 1; stride <= 2; stride++) {
        int Ho = conv_out_size(H, 3, stride, 1, 1), Wo = conv_out_size(W, 3, stride, 1, 1), K = CIN * 9;
        float *y = xmalloc((size_t)COUT * Ho * Wo * sizeof(float)), *y32 = xmalloc((size_t)COUT * Ho * Wo * sizeof(float));
        ConvCtx cx = {x, H, W, 3, 3, stride, 1, Wo};
        GemmProblem g;
        memset(&g, 0, sizeof g);
        g.M = COUT;
        g.N = Ho * Wo;
        g.K = K;
        g.alpha = 1.0f;
        g.pack_b = pack_conv;
        g.pack_b_ctx = &cx;
        g.bias_m = bias;
        g.c = y;
        g.ldc = Ho * Wo;
        CHECK(gemm_bf16_run(&g, &w) == 0, "conv run: %s", sd_last_error());
        conv2d_forward(x, 1, CIN, H, W, wt, bias, COUT, conv_geometry(3, stride, 1), y32);
        int bad_tight = 0, bad_loose = 0;
        for (int co = 0; co < COUT; co++) {
            for (int pix = 0; pix < Ho * Wo; pix++) {
                int oh = pix / Wo, ow = pix % Wo;
                double sum = bias[co], abs_sum = fabs(bias[co]), abs32 = 0.0;
                for (int k = 0; k < K; k++) {
                    int ci = k / 9, kh = k / 3 % 3, kw = k % 3, ih = oh * stride - 1 + kh, iw = ow * stride - 1 + kw;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    float a = wt[co * K + k], b = x[(ci * H + ih) * W + iw];
                    double p = (double)round_bf16(a) * round_bf16(b);
                    sum += p;
                    abs_sum += fabs(p);
                    abs32 += fabs((double)a * b);
                }
                double got = y[(size_t)co * Ho * Wo + pix];
                bad_tight += !(fabs(got - sum) <= (K + 5) * U * abs_sum);
                bad_loose += !(fabs(got - y32[(size_t)co * Ho * Wo + pix]) <= 0x1p-7 * abs32 + 1e-6);
            }
        }
        CHECK(bad_tight == 0, "conv3x3 stride %d: %d outputs off the double reference", stride, bad_tight);
        CHECK(bad_loose == 0, "conv3x3 stride %d: %d outputs off conv2d_forward (f32) by more than 2^-7 sum|ab|", stride,
              bad_loose);
        free(y);
        free(y32);
    }
    gemm_bf16_packed_free(&w);
}

// conv2d_forward_bf16 (pairs from a padded bf16 copy of the input) has the bits of gemm_bf16_run
// with the f32 im2col callback above, and stays within bf16's error of conv2d_forward (f32).
static void check_conv_bf16(int N, int Cin, int H, int W, int Cout, Conv2dGeometry geo, unsigned long long seed) {
    int K = Cin * geo.kernel_h * geo.kernel_w;
    int Ho = conv_out_size(H, geo.kernel_h, geo.stride, geo.pad_top, geo.pad_bottom);
    int Wo = conv_out_size(W, geo.kernel_w, geo.stride, geo.pad_left, geo.pad_right);
    size_t xs = (size_t)N * Cin * H * W, ys = (size_t)N * Cout * Ho * Wo;
    float *x = xmalloc(xs * sizeof(float)), *wt = xmalloc((size_t)Cout * K * sizeof(float));
    float *bias = xmalloc((size_t)Cout * sizeof(float)), *y = xmalloc(ys * sizeof(float));
    float *ref = xmalloc(ys * sizeof(float)), *y32 = xmalloc(ys * sizeof(float)), *y1 = xmalloc(ys * sizeof(float));
    test_fill(x, (long)xs, seed);
    test_fill(wt, (long)Cout * K, seed + 1);
    test_fill(bias, Cout, seed + 2);
    Bf16Packed w;
    CHECK(gemm_bf16_pack_weights(&w, wt, Cout, K, GEMM_BF16_A) == 0, "pack");
    CHECK(conv2d_forward_bf16(x, N, Cin, H, W, &w, bias, Cout, geo, y) == 0, "conv2d_forward_bf16: %s", sd_last_error());
    for (int n = 0; n < N; n++) {
        ConvCtx cx = {x + (size_t)n * Cin * H * W, H, W, geo.kernel_h, geo.kernel_w, geo.stride, geo.pad_top, Wo};
        GemmProblem g;
        memset(&g, 0, sizeof g);
        g.M = Cout;
        g.N = Ho * Wo;
        g.K = K;
        g.alpha = 1.0f;
        g.pack_b = pack_conv;
        g.pack_b_ctx = &cx;
        g.bias_m = bias;
        g.c = ref + (size_t)n * Cout * Ho * Wo;
        g.ldc = Ho * Wo;
        CHECK(gemm_bf16_run(&g, &w) == 0, "run");
    }
    CHECK(memcmp(y, ref, ys * sizeof(float)) == 0, "conv2d_forward_bf16 %dx%d s%d pad %d,%d,%d,%d Cin %d %dx%d: bits "
          "differ from gemm_bf16_run with an f32 im2col (max diff %g)", geo.kernel_h, geo.kernel_w, geo.stride,
          geo.pad_top, geo.pad_left, geo.pad_bottom, geo.pad_right, Cin, H, W, max_abs_diff(y, ref, (long)ys));
    conv2d_forward(x, N, Cin, H, W, wt, bias, Cout, geo, y32);
    double scale = 0.0;
    for (size_t i = 0; i < ys; i++) scale = fabs(y32[i]) > scale ? fabs(y32[i]) : scale;
    // |a|, |x| < 1: each output's sum|ab| <= K, its bf16 error <= 2^-7 K; this checks far tighter, 2^-7 max|y|.
    double d = max_abs_diff(y, y32, (long)ys);
    CHECK(d <= 0x1p-7 * scale, "conv2d_forward_bf16 %dx%d s%d: %g off conv2d_forward (max |y| %g)", geo.kernel_h,
          geo.kernel_w, geo.stride, d, scale);
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(conv2d_forward_bf16(x, N, Cin, H, W, &w, bias, Cout, geo, y1) == 0, "1 thread");
    omp_set_num_threads(saved);
    CHECK(memcmp(y, y1, ys * sizeof(float)) == 0, "conv2d_forward_bf16 %dx%d s%d Cin %d %dx%d: 1 and %d threads differ",
          geo.kernel_h, geo.kernel_w, geo.stride, Cin, H, W, saved);
    // Inside a parallel region (each thread its own conv, on itself): the same bits.
    int same = 1;
#pragma omp parallel num_threads(2) reduction(&& : same)
    {
        float *yt = xmalloc(ys * sizeof(float));
        same = conv2d_forward_bf16(x, N, Cin, H, W, &w, bias, Cout, geo, yt) == 0 && memcmp(yt, y, ys * sizeof(float)) == 0;
        free(yt);
    }
    CHECK(same, "conv2d_forward_bf16 %dx%d s%d: a call inside a parallel region differs", geo.kernel_h, geo.kernel_w,
          geo.stride);
#endif
    gemm_bf16_packed_free(&w);
    free(x);
    free(wt);
    free(bias);
    free(y);
    free(ref);
    free(y32);
    free(y1);
}

static void test_conv_bf16(void) {
    Conv2dGeometry down = {3, 3, 2, 0, 0, 1, 1};  // diffusers' Downsample2D: F.pad(0,1,0,1), then stride 2
    check_conv_bf16(2, 5, 9, 11, 17, conv_geometry(3, 1, 1), 71);
    check_conv_bf16(2, 5, 9, 11, 17, conv_geometry(3, 2, 1), 72);
    check_conv_bf16(1, 5, 9, 11, 17, down, 73);
    check_conv_bf16(2, 5, 9, 11, 17, conv_geometry(3, 1, 0), 74);
    check_conv_bf16(2, 6, 9, 11, 17, conv_geometry(1, 1, 0), 75);
    check_conv_bf16(1, 6, 9, 11, 17, conv_geometry(1, 2, 0), 76);
    check_conv_bf16(1, 3, 7, 5, 4, conv_geometry(5, 1, 2), 77);
    check_conv_bf16(1, 3, 1, 1, 2, conv_geometry(3, 1, 1), 78);
    check_conv_bf16(1, 16, 40, 70, 30, conv_geometry(3, 1, 1), 79);  // rows longer than a micro-panel
    check_conv_bf16(1, 40, 16, 16, 64, down, 80);                    // threads, stride 2
    // A weight packed for another shape is an error.
    Bf16Packed w;
    float wt[4 * 9] = {0};
    gemm_bf16_pack_weights(&w, wt, 4, 9, GEMM_BF16_A);
    float x[2 * 9] = {0}, y[4 * 9];
    CHECK(conv2d_forward_bf16(x, 1, 2, 3, 3, &w, NULL, 4, conv_geometry(3, 1, 1), y) == -1, "K mismatch is an error");
    gemm_bf16_packed_free(&w);
}

// ---- Threads ---------------------------------------------------------------------------------

#ifdef _OPENMP
// test_threads' product: X is A (side BT), B (side A) or the image of a conv's pack_b.
static GemmProblem thread_problem(int side, int conv, int M, int N, int K, float *X, float *bias, ConvCtx *cx,
                                  float *C) {
    GemmProblem g = {.M = M, .N = N, .K = K, .alpha = 1.0f};
    if (side == GEMM_BF16_BT) {
        g.a = X;
        g.lda = K;
        g.bias_n = bias;
    } else if (conv) {
        g.pack_b = pack_conv;
        g.pack_b_ctx = cx;
        g.bias_m = bias;
    } else {
        g.b = X;
        g.ldb = N;
        g.bias_m = bias;
    }
    g.c = C;
    g.ldc = N;
    return g;
}
#endif

static void test_threads(void) {
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    enum { CIN = 40, H = 24, W = 20, COUT = 50 };
    static const int shapes[][3] = {{200, 300, 701}, {97, 1000, 64}, {1000, 45, 800}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int side = 0; side < 3; side++) {  // side A plain, side BT, side A through a conv's pack_b
            int conv = side == 2;
            if (conv && s > 0) continue;
            if (conv) {
                M = COUT;
                N = H * W;
                K = CIN * 9;
            }
            int wrows = side == GEMM_BF16_BT ? N : M;
            float *Wt = xmalloc((size_t)wrows * K * sizeof(float)), *X = xmalloc((size_t)(conv ? CIN * H * W : (size_t)K * (M > N ? M : N)) * sizeof(float));
            float *bias = xmalloc((size_t)(M > N ? M : N) * sizeof(float));
            test_fill(Wt, (long)wrows * K, 31 + s);
            test_fill(X, conv ? CIN * H * W : (long)K * (M > N ? M : N), 32 + s);
            test_fill(bias, M > N ? M : N, 33);
            Bf16Packed w;
            gemm_bf16_pack_weights(&w, Wt, wrows, K, side == GEMM_BF16_BT ? GEMM_BF16_BT : GEMM_BF16_A);
            ConvCtx cx = {X, H, W, 3, 3, 1, 1, W};
            float *C[3];
            for (int t = 0; t < 3; t++) {
                C[t] = xmalloc((size_t)M * N * sizeof(float));
                GemmProblem g = thread_problem(side, conv, M, N, K, X, bias, &cx, C[t]);
                omp_set_num_threads(t + 1);
                CHECK(gemm_bf16_run(&g, &w) == 0, "run");
            }
            omp_set_num_threads(saved);
            CHECK(memcmp(C[0], C[1], (size_t)M * N * sizeof(float)) == 0, "side %d %dx%dx%d: 1 and 2 threads differ",
                  side, M, N, K);
            CHECK(memcmp(C[0], C[2], (size_t)M * N * sizeof(float)) == 0, "side %d %dx%dx%d: 1 and 3 threads differ",
                  side, M, N, K);
            // Inside a parallel region each thread runs its own product on itself: the same bits.
            int same = 1;
#pragma omp parallel num_threads(2) reduction(&& : same)
            {
                float *Ct = xmalloc((size_t)M * N * sizeof(float));
                GemmProblem g = thread_problem(side, conv, M, N, K, X, bias, &cx, Ct);
                same = gemm_bf16_run(&g, &w) == 0 && memcmp(Ct, C[0], (size_t)M * N * sizeof(float)) == 0;
                free(Ct);
            }
            CHECK(same, "side %d %dx%dx%d: a call inside a parallel region differs", side, M, N, K);
            for (int t = 0; t < 3; t++) free(C[t]);
            gemm_bf16_packed_free(&w);
            free(Wt);
            free(X);
            free(bias);
        }
    }
#endif
}

// ---- Error against f32 on random data, by K (printed; docs/bf16.md) ----------------------------

static void report_error_by_k(void) {
    static const int ks[] = {320, 640, 1280, 2880, 5760, 11520};
    enum { M = 64, N = 96 };
    printf("bf16 vs f32 on uniform [-1,1) data, M=%d N=%d: K, max|d|/rms(C), rms(d)/rms(C), max|d|/sum|ab|\n", M, N);
    for (size_t s = 0; s < sizeof ks / sizeof ks[0]; s++) {
        int K = ks[s];
        float *A = xmalloc((size_t)M * K * sizeof(float)), *B = xmalloc((size_t)K * N * sizeof(float));
        float *C = xmalloc((size_t)M * N * sizeof(float)), *C32 = xmalloc((size_t)M * N * sizeof(float));
        test_fill(A, (long)M * K, 51 + s);
        test_fill(B, (long)K * N, 61 + s);
        Bf16Packed w;
        gemm_bf16_pack_weights(&w, A, M, K, GEMM_BF16_A);
        GemmProblem g;
        memset(&g, 0, sizeof g);
        g.M = M;
        g.N = N;
        g.K = K;
        g.a = A;
        g.lda = K;
        g.alpha = 1.0f;
        g.b = B;
        g.ldb = N;
        g.c = C;
        g.ldc = N;
        CHECK(gemm_bf16_run(&g, &w) == 0, "run");
        g.c = C32;
        gemm_run(&g);
        double ss = 0.0, sd = 0.0, maxd = 0.0, worst_rel_abs = 0.0;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double d = fabs((double)C[i * N + j] - C32[i * N + j]), abs_sum = 0.0;
                for (int k = 0; k < K; k++) abs_sum += fabs((double)A[(size_t)i * K + k] * B[(size_t)k * N + j]);
                ss += (double)C32[i * N + j] * C32[i * N + j];
                sd += d * d;
                if (d > maxd) maxd = d;
                if (d / abs_sum > worst_rel_abs) worst_rel_abs = d / abs_sum;
            }
        }
        double rms = sqrt(ss / (M * N));
        printf("  K=%5d  %.2e  %.2e  %.2e\n", K, maxd / rms, sqrt(sd / (M * N)) / rms, worst_rel_abs);
        CHECK(sqrt(sd / (M * N)) / rms < 1e-2, "K=%d: rms error %g of rms output", K, sqrt(sd / (M * N)) / rms);
        gemm_bf16_packed_free(&w);
        free(A);
        free(B);
        free(C);
        free(C32);
    }
}

// Side A with a B micro-panel of at most 16 real columns goes through the narrow tile (two A
// micro-panels at once): it must give the bits the full tile gives to the same 16 columns.
static void test_narrow_bits(void) {
    static const int Ms[] = {15, 30, 200};
    for (int t = 0; t < 3; t++) {
        int M = Ms[t], K = 1100, Nw = 48, Nn = 16;  // K: two k blocks
        float *A = xmalloc((size_t)M * K * sizeof(float)), *Bw = xmalloc((size_t)K * Nw * sizeof(float));
        float *Bn = xmalloc((size_t)K * Nn * sizeof(float)), *bias = xmalloc((size_t)M * sizeof(float));
        float *Cw = xmalloc((size_t)M * Nw * sizeof(float)), *Cn = xmalloc((size_t)M * Nn * sizeof(float));
        test_fill(A, (long)M * K, 71);
        test_fill(Bw, (long)K * Nw, 72);
        test_fill(bias, M, 73);
        for (int p = 0; p < K; p++) memcpy(Bn + (size_t)p * Nn, Bw + (size_t)p * Nw, (size_t)Nn * sizeof(float));
        Bf16Packed w;
        gemm_bf16_pack_weights(&w, A, M, K, GEMM_BF16_A);
        GemmProblem gw = {.M = M, .N = Nw, .K = K, .alpha = 1.0f, .b = Bw, .ldb = Nw, .bias_m = bias, .beta = 0.0f,
                          .c = Cw, .ldc = Nw};
        GemmProblem gn = {.M = M, .N = Nn, .K = K, .alpha = 1.0f, .b = Bn, .ldb = Nn, .bias_m = bias, .beta = 0.0f,
                          .c = Cn, .ldc = Nn};
        int rc = gemm_bf16_run(&gw, &w) | gemm_bf16_run(&gn, &w);
        int same = rc == 0 && same_leading_columns(Cn, Nn, Cw, Nw, M, Nn);
        CHECK(same, "bf16 side A M=%d K=%d: 16 columns alone differ from the same columns of 48", M, K);
        gemm_bf16_packed_free(&w);
        free(A);
        free(Bw);
        free(Bn);
        free(bias);
        free(Cw);
        free(Cn);
    }
}

int main(void) {
    test_rounding();
    test_layout();
    if (!gemm_bf16_supported()) {
        Bf16Packed w;
        float one = 1.0f, c = 0.0f;
        gemm_bf16_pack_weights(&w, &one, 1, 1, GEMM_BF16_A);
        GemmProblem g;
        memset(&g, 0, sizeof g);
        g.M = g.N = g.K = 1;
        g.alpha = 1.0f;
        g.b = &one;
        g.ldb = 1;
        g.c = &c;
        g.ldc = 1;
        CHECK(gemm_bf16_run(&g, &w) == -1, "gemm_bf16_run must fail without AVX512_BF16");
        gemm_bf16_packed_free(&w);
        printf("SKIP test_gemm_bf16: no AVX512_BF16 here (or AVX-512 not in use): only rounding tested\n");
        return test_report("test_gemm_bf16");
    }
    test_simd_rounding();
    test_degenerate();
    test_products();
    test_narrow_bits();
    printf("largest error against the double reference on bf16 inputs: %.2f u sum|ab| (at K = %d; bound K + 4 + K/384)\n",
           g_worst_tight, g_worst_tight_k);
    test_conv();
    test_conv_bf16();
    test_threads();
    report_error_by_k();
    return test_report("test_gemm_bf16");
}
