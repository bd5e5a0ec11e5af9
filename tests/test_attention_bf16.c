// attention_forward_bf16 (src/kernels/attention.c) against reference_attention
// (kernels/reference.c, sums in double) seeing q, k and v rounded to bf16 as the
// kernel does: what is left is the rounding of the softmax's P to bf16 (2^-9
// relative per weight) and f32 sums, so the output must be within 4e-3 of max |v|.
// Also: it is not the f32 result, its bits do not depend on the thread count, and
// causal masking, odd key counts, key tiles, odd and large head_dim take the same
// path. And the fused softmax step + pairing of P (gemm_bf16_softmax_pairs) has the
// bits of the two steps it replaces.
// Every bf16 kernel set (x86 AVX512_BF16, arm64 FEAT_BF16) must give the bits of a scalar
// model of the tiles' arithmetic (attention_model below): so x86 and arm64 give the same bits.
#include <stdint.h>

#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_util.h"

static float round_bf16(float x) { return f32_from_bf16(bf16_from_f32(x)); }

// ---- A scalar model of the bf16 path's arithmetic ------------------------------------------
// exp of the x86 softmax (exp512, gemm_avx512_tile.h) in plain C: x < -87 (or NaN) gives 0;
// n = round(x log2e) to nearest even, r = x - n ln2 in two fused steps, exp(r) by Cephes'
// degree-6 polynomial (Horner in fused multiply-adds), times 2^n rounded once (ldexpf).
// Built with -std=c99, so gcc contracts nothing into FMAs behind our back.
static float exp_model(float x) {
    if (!(x >= -87.0f)) return 0.0f;
    if (!(x < 88.0f)) x = 88.0f;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float r2 = r * r, r1 = r + 1.0f;
    return ldexpf(fmaf(p, r2, r1), (int)n);
}

// The online-softmax step over a 32-column score tile (s[r*32 + j], rows r), per column:
// m' = max (a > b ? a : b, vmaxps's rule), shift = m' (0 if -inf), corr = exp(m - shift),
// s = exp(s - shift) summed in row order, l = fma(l, corr, sum), m = m'.
static void softmax_step_model(float *s, int rows, float *m, float *l, float *corr) {
    for (int j = 0; j < 32; j++) {
        float mx = m[j];
        for (int r = 0; r < rows; r++) mx = mx > s[r * 32 + j] ? mx : s[r * 32 + j];
        float shift = mx == -INFINITY ? 0.0f : mx, c = exp_model(m[j] - shift), sum = 0.0f;
        for (int r = 0; r < rows; r++) {
            s[r * 32 + j] = exp_model(s[r * 32 + j] - shift);
            sum += s[r * 32 + j];
        }
        l[j] = fmaf(l[j], c, sum);
        m[j] = mx;
        corr[j] = c;
    }
}

// attention_forward_bf16's output bit for bit, per query i of head h, as the tiles do it
// (attention.c): queries in tiles of 128, keys in tiles of 252 (18 x 14; causal: a query tile
// sees the keys up to its end, masked), q*scale, k, v and P rounded to bf16, and per key tile
//   S[key] = acc over d pairs in order: acc += k_odd q_odd; acc += k_even q_even (vdpbf16ps);
//   the softmax step; O = O * corr; O = O + (acc from 0 over key pairs: v_odd p_odd, v_even p_even)
// then out = O * (1 / l). A bf16 product is exact in f32, so each step is one fmaf.
static void attention_model(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                            int Nk, int hd, float scale, int causal) {
    const int D = heads * hd, br = 128, bc = 252;
    float *s = malloc((size_t)bc * sizeof(float)), *o = malloc((size_t)hd * sizeof(float));
    float *qs = malloc((size_t)(hd + 1) * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < Nq; i++) {
                const float *qi = q + ((size_t)b * Nq + i) * D + h * hd;
                for (int d = 0; d <= hd; d++) qs[d] = d < hd ? round_bf16(scale * qi[d]) : 0.0f;
                int q0 = i / br * br, nq = Nq - q0 < br ? Nq - q0 : br;
                int nk_tile = causal && q0 + nq < Nk ? q0 + nq : Nk;
                float m = -INFINITY, l = 0.0f;
                for (int d = 0; d < hd; d++) o[d] = 0.0f;
                for (int k0 = 0; k0 < nk_tile; k0 += bc) {
                    int nkt = nk_tile - k0 < bc ? nk_tile - k0 : bc;
                    for (int r = 0; r < nkt; r++) {
                        const float *kr = k + ((size_t)b * Nk + k0 + r) * D + h * hd;
                        float acc = 0.0f;
                        for (int d = 0; d < hd; d += 2) {
                            acc = fmaf(d + 1 < hd ? round_bf16(kr[d + 1]) : 0.0f, qs[d + 1], acc);
                            acc = fmaf(round_bf16(kr[d]), qs[d], acc);
                        }
                        s[r] = causal && k0 + r > i ? -INFINITY : acc;
                    }
                    float mx = m;
                    for (int r = 0; r < nkt; r++) mx = mx > s[r] ? mx : s[r];
                    float shift = mx == -INFINITY ? 0.0f : mx, c = exp_model(m - shift), sum = 0.0f;
                    for (int r = 0; r < nkt; r++) {
                        s[r] = exp_model(s[r] - shift);
                        sum += s[r];
                    }
                    l = fmaf(l, c, sum);
                    m = mx;
                    for (int d = 0; d < hd; d++) {
                        float acc = 0.0f;
                        for (int r = 0; r < nkt; r += 2) {
                            const float *ve = v + ((size_t)b * Nk + k0 + r) * D + h * hd;
                            if (r + 1 < nkt) acc = fmaf(round_bf16(ve[D + d]), round_bf16(s[r + 1]), acc);
                            acc = fmaf(round_bf16(ve[d]), round_bf16(s[r]), acc);
                        }
                        o[d] = o[d] * c;
                        o[d] = o[d] + acc;
                    }
                }
                float inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int d = 0; d < hd; d++) out[((size_t)b * Nq + i) * D + h * hd + d] = o[d] * inv;
            }
    free(s);
    free(o);
    free(qs);
}

static void check_case(int B, int heads, int Nq, int Nk, int hd, int causal, Arena *arena) {
    const int D = heads * hd;
    const size_t nq = (size_t)B * Nq * D, nk = (size_t)B * Nk * D;
    float *q = malloc(nq * sizeof(float)), *k = malloc(nk * sizeof(float)), *v = malloc(nk * sizeof(float));
    float *o = malloc(nq * sizeof(float)), *o1 = malloc(nq * sizeof(float)), *r = malloc(nq * sizeof(float));
    float *f = malloc(nq * sizeof(float));
    test_fill(q, (long)nq, 11 + Nq);
    test_fill(k, (long)nk, 12 + Nk);
    test_fill(v, (long)nk, 13 + hd);
    for (size_t i = 0; i < nq; i++) q[i] *= 4.0f;  // scores of a few units: a peaked softmax
    const float scale = 1.0f / sqrtf((float)hd);
    set_threads(2);
    int rc = attention_forward_bf16(q, k, v, o, B, heads, Nq, Nk, hd, scale, causal, arena);
    reference_attention(q, k, v, r, B, heads, Nq, Nk, hd, scale, causal, round_bf16);
    double vmax = 0.0;
    for (size_t i = 0; i < nk; i++) vmax = fabs(v[i]) > vmax ? fabs(v[i]) : vmax;
    double d = max_abs_diff(o, r, (long)nq);
    CHECK(rc == 0 && d <= 4e-3 * vmax,
          "bf16 attention B=%d heads=%d Nq=%d Nk=%d hd=%d causal=%d: rc %d, max diff %g (max |v| %g)", B, heads, Nq,
          Nk, hd, causal, rc, d, vmax);
    attention_model(q, k, v, r, B, heads, Nq, Nk, hd, scale, causal);
    size_t bad = 0;
    for (size_t i = 0; i < nq; i++) bad += memcmp(o + i, r + i, sizeof(float)) != 0;
    CHECK(bad == 0, "bf16 attention B=%d heads=%d Nq=%d Nk=%d hd=%d causal=%d: %zu of %zu values are not the model's bits "
          "(max diff %g)", B, heads, Nq, Nk, hd, causal, bad, nq, max_abs_diff(o, r, (long)nq));
    attention_forward(q, k, v, f, B, heads, Nq, Nk, hd, scale, causal, arena);
    CHECK(memcmp(f, o, nq * sizeof(float)) != 0, "bf16 attention Nq=%d Nk=%d hd=%d: identical to f32", Nq, Nk, hd);
    set_threads(1);
    attention_forward_bf16(q, k, v, o1, B, heads, Nq, Nk, hd, scale, causal, arena);
    set_threads(2);
    CHECK(memcmp(o, o1, nq * sizeof(float)) == 0, "bf16 attention Nq=%d Nk=%d hd=%d causal=%d: 1 and 2 threads differ",
          Nq, Nk, hd, causal);
    free(q);
    free(k);
    free(v);
    free(o);
    free(o1);
    free(r);
    free(f);
}

// gemm_bf16_softmax_pairs against softmax_step_model followed by bf16_from_f32 pairs of rows
// (2p, 2p+1), and on x86 against the AVX-512 softmax_step followed by gemm_bf16_pair_rows, on a
// 32-column score tile whose running max/sum come from an earlier step; some entries masked
// to -inf (causal), column 5 all -inf (a query that sees no key yet).
static void check_softmax_pairs(int rows) {
    const GemmKernelInfo *ki = gemm_kernel_info();
    float *s = malloc((size_t)rows * 32 * sizeof(float)), *s2 = malloc((size_t)rows * 32 * sizeof(float));
    float *s3 = malloc((size_t)rows * 32 * sizeof(float));
    uint32_t *w3 = malloc((size_t)(rows + 1) / 2 * 32 * sizeof(uint32_t));
    float m[32], l[32], c[32], m2[32], l2[32], c2[32], m3[32], l3[32], c3[32];
    test_fill(s, (long)rows * 32, 31 + rows);
    for (int i = 0; i < rows * 32; i++) s[i] *= 8.0f;
    for (int r = 0; r < rows; r++) {
        s[r * 32 + 5] = -INFINITY;
        if (r % 3 == 1) s[r * 32 + 17] = -INFINITY;
    }
    for (int j = 0; j < 32; j++) {
        m[j] = j == 5 ? -INFINITY : (j % 4) - 1.5f;
        l[j] = j == 5 ? 0.0f : 1.0f + j;
    }
    memcpy(s2, s, (size_t)rows * 32 * sizeof(float));
    memcpy(m2, m, sizeof(m));
    memcpy(l2, l, sizeof(l));
    memcpy(s3, s, (size_t)rows * 32 * sizeof(float));
    memcpy(m3, m, sizeof(m));
    memcpy(l3, l, sizeof(l));
    softmax_step_model(s3, rows, m3, l3, c3);
    for (int p = 0; 2 * p < rows; p++)
        for (int j = 0; j < 32; j++)
            w3[p * 32 + j] = (uint32_t)bf16_from_f32(s3[2 * p * 32 + j]) |
                             (uint32_t)(2 * p + 1 < rows ? bf16_from_f32(s3[(2 * p + 1) * 32 + j]) : 0) << 16;
    size_t words = (size_t)(rows + 1) / 2 * 32;
    if (gemm_kernel_avx512_bf16()) {  // x86: the f32 set is AVX-512's, with the same exp
        ki->ops->softmax_step(s2, rows, m2, l2, c2);
        for (int p = 0; 2 * p < rows; p++)
            gemm_bf16_pair_rows(s2 + (size_t)2 * p * 32, 2 * p + 1 < rows ? s2 + (size_t)(2 * p + 1) * 32 : NULL, 32,
                                32, (uint32_t *)s2 + (size_t)p * 32);
    }
    gemm_bf16_softmax_pairs(s, rows, m, l, c);
    CHECK(memcmp(s, w3, words * sizeof(uint32_t)) == 0 && memcmp(m, m3, sizeof(m)) == 0 &&
              memcmp(l, l3, sizeof(l)) == 0 && memcmp(c, c3, sizeof(c)) == 0,
          "gemm_bf16_softmax_pairs, %d rows: not the bits of the scalar model (x86's exp and sums)", rows);
    if (gemm_kernel_avx512_bf16())
        CHECK(memcmp(s, s2, words * sizeof(uint32_t)) == 0 && memcmp(m, m2, sizeof(m)) == 0 &&
                  memcmp(l, l2, sizeof(l)) == 0 && memcmp(c, c2, sizeof(c)) == 0,
              "gemm_bf16_softmax_pairs, %d rows: not the bits of softmax_step + gemm_bf16_pair_rows", rows);
    CHECK(l[5] == 0.0f && c[5] == 0.0f && ((uint32_t *)s)[5] == 0,
          "gemm_bf16_softmax_pairs: a column with every key masked must give P = 0, sum 0 (l %g, corr %g)", l[5], c[5]);
    free(s);
    free(s2);
    free(s3);
    free(w3);
}

// gemm_bf16_rows_to_panel against bf16_from_f32(scale * x) value by value: rows past `rows`
// and the half word past an odd kc are zero, and nothing past the panel is written.
static void check_rows_to_panel(int rows, int kc, int width, float scale) {
    const int ld = kc + 3, kp = (kc + 1) / 2;
    float *src = malloc((size_t)rows * ld * sizeof(float));
    uint32_t *dst = malloc(((size_t)kp * width + 16) * sizeof(uint32_t));
    test_fill(src, (long)rows * ld, 7 + kc);
    for (size_t i = 0; i < (size_t)kp * width + 16; i++) dst[i] = 0xDEADBEEFu;
    gemm_bf16_rows_to_panel(src, ld, rows, kc, scale, dst, width);
    int bad = 0;
    for (int q = 0; q < kp; q++)
        for (int i = 0; i < width; i++) {
            uint32_t lo = i < rows ? bf16_from_f32(scale * src[(size_t)i * ld + 2 * q]) : 0;
            uint32_t hi = i < rows && 2 * q + 1 < kc ? bf16_from_f32(scale * src[(size_t)i * ld + 2 * q + 1]) : 0;
            bad += dst[(size_t)q * width + i] != (lo | hi << 16);
        }
    for (int t = 0; t < 16; t++) bad += dst[(size_t)kp * width + t] != 0xDEADBEEFu;
    CHECK(bad == 0, "gemm_bf16_rows_to_panel rows %d kc %d width %d scale %g: %d words wrong", rows, kc, width, scale, bad);
    free(src);
    free(dst);
}

int main(void) {
    if (!gemm_bf16_supported()) {
        float x = 1.0f, y = 0.0f;
        CHECK(attention_forward_bf16(&x, &x, &x, &y, 1, 1, 1, 1, 1, 1.0f, 0, NULL) == -1,
              "attention_forward_bf16 must fail without a bf16 kernel set");
        printf("SKIP test_attention_bf16: no bf16 kernel set here (x86 AVX512_BF16 or arm64 FEAT_BF16, and the "
               "AVX-512 / NEON path in use)\n");
        return test_report("test_attention_bf16");
    }
    int panel_rows[] = {1, 13, 14, 17, 32};
    for (int i = 0; i < 5; i++) {
        check_rows_to_panel(panel_rows[i] < 14 ? panel_rows[i] : 14, 33 + 31 * i, 14, 1.0f);  // K's panels
        check_rows_to_panel(panel_rows[i], 64 + 7 * i, 32, 0.125f + i);                      // Q^T * scale
    }
    int tile_rows[] = {1, 2, 13, 14, 27, 128, 255, 256};
    for (int i = 0; i < 8; i++) check_softmax_pairs(tile_rows[i]);
    Arena arena;
    arena_init(&arena, (size_t)64 << 20);
    check_case(1, 5, 100, 77, 64, 0, &arena);   // cross-attention to 77 tokens (odd key count)
    check_case(2, 3, 40, 301, 40, 0, &arena);   // two key tiles, an odd last one, batch 2
    check_case(1, 2, 77, 77, 64, 1, &arena);    // causal (CLIP text)
    check_case(1, 1, 300, 300, 40, 1, &arena);  // causal over three query tiles and two key tiles
    check_case(1, 2, 50, 64, 33, 0, NULL);      // odd head_dim (a zero in the last pair), heap workspace
    check_case(1, 1, 64, 64, 512, 0, &arena);   // the VAE mid-block's head_dim
    check_case(1, 1, 40, 30, 520, 0, &arena);   // past 512 (the bf16 path has no head_dim limit)
    check_case(1, 20, 16, 16, 64, 0, &arena);   // 4x4 map, many heads
    arena_free(&arena);
    return test_report("test_attention_bf16");
}
