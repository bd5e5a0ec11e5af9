// The bf16 kernel set on arm64 (FEAT_BF16): gemm.c's loop nest with operands in bf16 k pairs,
// the layout of the x86 set (gemm_avx512_bf16.c), so weights packed at load
// (gemm_bf16_pack_weights: panels of 14 rows for side A, 32 for side BT) are read in place:
//   packed A micro-panel: a[q * MR + i] = pair (A[i][2q], A[i][2q+1])     (even k in the low half)
//   packed B micro-panel: b[q * NR + j] = pair (B[2q][j], B[2q+1][j])
// The sum is the one vdpbf16ps defines, per C element, k pairs q in increasing order:
//   acc = acc + a_odd * b_odd;  acc = acc + a_even * b_even        (each rounded to nearest even)
// done with BFMLALT then BFMLALB (vbfmlaltq_f32, vbfmlalbq_f32: widen the odd / even bf16
// lanes, fused multiply-add in f32 under FPCR). A bf16 x bf16 product is exact in f32, so each
// step is one rounding of (acc + product), as vdpbf16ps does: the same bits as the x86 set on
// the same inputs, except where a partial sum is an f32 subnormal (vdpbf16ps flushes it to
// zero, FMLAL keeps it; Linux runs with FPCR.FZ = 0). BFDOT (vbfdotq_f32) would do a pair in
// one instruction, but it adds the two products first, rounding to odd (FPCR.EBF = 0): other
// bits, and a wider error bound than the tests' (K + 4) u sum|ab|.
// The f32 operand is rounded (bf16_from_f32: to nearest even, subnormals to zero) and packed
// call by call by this file's packers. Compiled for armv8.2-a+bf16 per function (the rest of
// the build stays plain armv8-a) and run only when getauxval(AT_HWCAP2) has HWCAP2_BF16.
// Also the pieces of the bf16 attention (attention.c), with the x86 pieces' bits.
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/gemm_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <sys/auxv.h>

#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1UL << 14)  // linux/arch/arm64/include/uapi/asm/hwcap.h
#endif

#define BF16_FUNC __attribute__((target("arch=armv8.2-a+bf16")))

// Register tile 14 x 32 (the Bf16Packed panels), computed as sub-tiles of up to 4 rows x 16
// columns (16 accumulators, 4 B vectors, 1 broadcast A word: 21 of the 32 q registers). Cache
// blocks as on x86 (not measured on arm64 hardware): KC even (whole pairs), MC a multiple of MR.
enum { MR = GEMM_BF16_MR, NR = GEMM_BF16_NR };
enum { MC = 112, KC = 1024, NC_A = 1024, NC_BT = 4096 };

int gemm_bf16_supported(void) {
    // cached: -1 not known yet, else the answer; read and written atomically (any thread may ask)
    static int cached = -1;
    int v;
#pragma omp atomic read
    v = cached;
    if (v < 0) {
        // the NEON path in use (SATDIFUSER_ISA=scalar turns bf16 off, as avx2 does on x86) and FEAT_BF16
        v = sd_cpu_isa() == ISA_NEON && (getauxval(AT_HWCAP2) & HWCAP2_BF16) != 0;
#pragma omp atomic write
        cached = v;
    }
    return v;
}

// ---- The micro-kernel ----------------------------------------------------------------------

// acc[r][v] (rows r < R, columns 4v..4v+3 of a 16-column half) over kp pairs: a[q*MR + r] is
// row r's word, b[q*NR + 4v + l] column 4v+l's. R is a constant after inlining.
BF16_FUNC static inline __attribute__((always_inline)) void sub_tile(const int R, int kp, const uint32_t *a,
                                                                      const uint32_t *b, float32x4_t acc[4][4]) {
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 4; v++) acc[r][v] = vdupq_n_f32(0.0f);
    for (int q = 0; q < kp; q++) {
        bfloat16x8_t bv[4];
        for (int v = 0; v < 4; v++) bv[v] = vreinterpretq_bf16_u32(vld1q_u32(b + 4 * v));
        for (int r = 0; r < R; r++) {
            // the word (even, odd) in every lane pair: lanes 2l = A's even value, 2l+1 = its odd one
            bfloat16x8_t ar = vreinterpretq_bf16_u32(vdupq_n_u32(a[r]));
            for (int v = 0; v < 4; v++) {
                acc[r][v] = vbfmlaltq_f32(acc[r][v], bv[v], ar);  // + B odd * A odd
                acc[r][v] = vbfmlalbq_f32(acc[r][v], bv[v], ar);  // + B even * A even
            }
        }
        a += MR;
        b += NR;
    }
}

// Rows [r0, r0 + rows) x columns [c0, c0 + n) of C from acc (n <= 16), as tile_store does:
//   v = acc + bias_m[i] + bias_n[j];  C = beta != 0 ? fma(beta, C, v) : v.
static void store_rows(float *c, int ldc, int r0, int rows, int c0, int n, float32x4_t acc[4][4], float beta,
                       const float *bias_m, const float *bias_n) {
    for (int r = 0; r < rows; r++) {
        float t[16];
        for (int v = 0; v < 4; v++) vst1q_f32(t + 4 * v, acc[r][v]);
        float *row = c + (ptrdiff_t)(r0 + r) * ldc + c0;
        for (int j = 0; j < n; j++) {
            float x = t[j];
            if (bias_m) x = x + bias_m[r0 + r];
            if (bias_n) x = x + bias_n[c0 + j];
            row[j] = beta != 0.0f ? fmaf(beta, row[j], x) : x;
        }
    }
}

// C tile (m <= MR rows, n <= NR columns) from kp pairs of packed A (a[q*MR + i]) and packed B
// (b[q*NR + j]): GemmMicroKernel's contract (gemm_internal.h). Sub-tiles past m or n are not run.
BF16_FUNC static void micro_neon_bf16(int kp, const void *va, const void *vb, float *c, int ldc, int m, int n,
                                      float beta, const float *bias_m, const float *bias_n) {
    const uint32_t *a = va, *b = vb;
    for (int c0 = 0; c0 < n; c0 += 16) {
        int cols = n - c0 < 16 ? n - c0 : 16;
        for (int r0 = 0; r0 < m; r0 += 4) {
            int rows = m - r0 < 4 ? m - r0 : 4;
            float32x4_t acc[4][4];
            if (rows == 4) sub_tile(4, kp, a + r0, b + c0, acc);
            else if (rows == 3) sub_tile(3, kp, a + r0, b + c0, acc);
            else if (rows == 2) sub_tile(2, kp, a + r0, b + c0, acc);
            else sub_tile(1, kp, a + r0, b + c0, acc);
            store_rows(c, ldc, r0, rows, c0, cols, acc, beta, bias_m, bias_n);
        }
    }
}

// ---- Rounding and packing the f32 operand ----------------------------------------------------

// width words: word j < n = pair (even[j*stride], odd[j*stride]) rounded by bf16_from_f32 (odd
// NULL: zeros), words n.. zero.
static void pair_words(const float *even, const float *odd, int64_t stride, int n, int width, uint32_t *dst) {
    int j = 0;
    for (; j < n; j++)
        dst[j] = (uint32_t)bf16_from_f32(even[j * stride]) | (uint32_t)(odd ? bf16_from_f32(odd[j * stride]) : 0) << 16;
    for (; j < width; j++) dst[j] = 0;
}

// Side A: the B panel rows [p0, p0+kc) x columns [j0, j0+nc) of op(B) (or of the implicit B)
// as micro-panels of NR columns and kp = ceil(kc/2) pairs: dst[jr*kp + q*NR + j]; columns past
// nc zero. The values of gemm_avx512_bf16.c's pack_b_bf16.
static void pack_b_neon_bf16(const GemmKernelInfo *ki, const GemmProblem *g, int p0, int kc, int j0, int nc,
                             void *vdst, float *scratch) {
    (void)ki;
    uint32_t *dst = vdst;
    const int kp = (kc + 1) / 2;
    if (g->pack_b_pairs) {  // made in pairs already
        g->pack_b_pairs(g->pack_b_ctx, p0, kc, j0, nc, dst);
        return;
    }
    for (int jr = 0; jr < nc; jr += NR) {
        int n = nc - jr < NR ? nc - jr : NR;
        uint32_t *d = dst + (size_t)jr * kp;
        if (g->pack_b) {
            // the implicit B (im2col) one micro-panel at a time into kc x NR floats, then to pairs
            g->pack_b(g->pack_b_ctx, p0, kc, j0 + jr, n, NR, scratch);
            for (int q = 0; q < kp; q++) {
                const float *even = scratch + (size_t)2 * q * NR;
                pair_words(even, 2 * q + 1 < kc ? even + NR : NULL, 1, NR, NR, d + (size_t)q * NR);
            }
        } else if (!g->trans_b) {
            // B is K x N: rows 2q and 2q+1 give the pairs
            for (int q = 0; q < kp; q++) {
                const float *even = g->b + (int64_t)(p0 + 2 * q) * g->ldb + j0 + jr;
                pair_words(even, 2 * q + 1 < kc ? even + g->ldb : NULL, 1, n, NR, d + (size_t)q * NR);
            }
        } else {
            // B stored N x K: column j of op(B) is row j of b
            for (int q = 0; q < kp; q++) {
                const float *even = g->b + (int64_t)(j0 + jr) * g->ldb + p0 + 2 * q;
                pair_words(even, 2 * q + 1 < kc ? even + 1 : NULL, g->ldb, n, NR, d + (size_t)q * NR);
            }
        }
    }
}

// Side BT: the A block rows [i0, i0+mc) x columns [p0, p0+kc) of op(A) as micro-panels of MR
// rows and kp pairs: dst[ir*kp + q*MR + i]; rows past mc zero (alpha is 1: gemm_bf16_run).
static void pack_a_neon_bf16(const GemmKernelInfo *ki, const GemmProblem *g, int i0, int mc, int p0, int kc,
                             void *vdst) {
    (void)ki;
    uint32_t *dst = vdst;
    const int kp = (kc + 1) / 2;
    for (int ir = 0; ir < mc; ir += MR) {
        int m = mc - ir < MR ? mc - ir : MR;
        uint32_t *d = dst + (size_t)ir * kp;
        for (int q = 0; q < kp; q++) {
            const int odd = 2 * q + 1 < kc;
            if (!g->trans_a) {  // A is M x K: row i holds its k values
                const float *even = g->a + (int64_t)(i0 + ir) * g->lda + p0 + 2 * q;
                pair_words(even, odd ? even + 1 : NULL, g->lda, m, MR, d + (size_t)q * MR);
            } else {  // A is K x M
                const float *even = g->a + (int64_t)(p0 + 2 * q) * g->lda + i0 + ir;
                pair_words(even, odd ? even + g->lda : NULL, 1, m, MR, d + (size_t)q * MR);
            }
        }
    }
}

// ---- The pieces attention.c's bf16 path uses (gemm_internal.h; gemm_avx512_bf16.c on x86) ----
// The same values as the x86 pieces, so the bf16 attention has the x86 bits (tests/test_attention_bf16.c).

void gemm_bf16_micro(int kp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int m, int n, float beta) {
    micro_neon_bf16(kp, a, b, c, ldc, m, n, beta, NULL, NULL);
}

void gemm_bf16_pair_rows(const float *even, const float *odd, int n, int width, uint32_t *dst) {
    pair_words(even, odd, 1, n, width, dst);
}

// dst[q*width + i] = pair (scale*src[i][2q], scale*src[i][2q+1]) for i < rows (the odd half
// past an odd kc zero), rows [rows, width) zero. scale * x rounds once to f32 before the bf16
// rounding, as vmulps then vcvtne2ps2bf16 (scale = 1 changes no bits).
void gemm_bf16_rows_to_panel(const float *src, int64_t ld, int rows, int kc, float scale, uint32_t *dst, int width) {
    const int kp = (kc + 1) / 2;
    for (int i = 0; i < width; i++) {
        const float *row = src + (int64_t)i * ld;
        for (int q = 0; q < kp; q++) {
            uint32_t w = 0;
            if (i < rows) {
                float even = scale * row[2 * q], odd = 2 * q + 1 < kc ? scale * row[2 * q + 1] : 0.0f;
                w = (uint32_t)bf16_from_f32(even) | (uint32_t)bf16_from_f32(odd) << 16;
            }
            dst[(size_t)q * width + i] = w;
        }
    }
}

// bf16_from_f32 (gemm_pack.c) on 4 lanes, the bf16 in each lane's low half: to nearest even,
// NaN kept and made quiet, zeros and subnormals to a zero of the same sign.
static inline uint32x4_t bf16x4_from_f32(float32x4_t x) {
    uint32x4_t u = vreinterpretq_u32_f32(x), hi = vshrq_n_u32(u, 16);
    uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7FFFFFFFu)), vdupq_n_u32(0x7F800000u));
    uint32x4_t tiny = vceqq_u32(vandq_u32(u, vdupq_n_u32(0x7F800000u)), vdupq_n_u32(0));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7FFFu), vandq_u32(hi, vdupq_n_u32(1)))), 16);
    r = vbslq_u32(tiny, vandq_u32(hi, vdupq_n_u32(0x8000u)), r);
    return vbslq_u32(nan, vorrq_u32(hi, vdupq_n_u32(0x0040u)), r);
}

// exp512 of gemm_avx512_tile.h (the x86 attention softmax's exp) lane by lane: the same
// constants, roundings and fused multiply-adds (vfmsq_f32(x, n, c) = fnmadd(n, c, x),
// vfmaq_f32(c, p, r) = fmadd(p, r, c)), x < -87 (or NaN) gives +0. scalef(p, n) is p * 2^n
// rounded once; on the live lanes n is in [-126, 127] (x in [-87, 88]), so 2^n is a normal
// float and one multiply rounds the same way (subnormal results too: FPCR.FZ is 0 on Linux).
static inline float32x4_t exp_softmax4(float32x4_t x) {
    uint32x4_t live = vcgeq_f32(x, vdupq_n_f32(-87.0f));
    x = vminq_f32(x, vdupq_n_f32(88.0f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vbslq_f32(live, vmulq_f32(p, vreinterpretq_f32_s32(e)), vdupq_n_f32(0.0f));
}

// The x86 online-softmax step (softmax_step_avx512 with softmax_shift) and the pairing of P's
// rows, fused as gemm_avx512_bf16.c's gemm_bf16_softmax_pairs, 4 query columns at a time:
//   m' = max(m, s over rows) with vmaxps's rule (a > b ? a : b: a NaN score is taken);
//   shift = m' (0 where m' = -inf); corr = exp(m - shift); P = exp(s - shift) summed in row
//   order; l = fma(l, corr, sum); P's rows 2p, 2p+1 -> pair row p in place (p <= 2p: read already).
void gemm_bf16_softmax_pairs(float *s, int rows, float *m, float *l, float *corr) {
    uint32_t *pairs = (uint32_t *)s;
    const float32x4_t zero = vdupq_n_f32(0.0f), ninf = vdupq_n_f32(-INFINITY);
    for (int h = 0; h < NR; h += 4) {
        float32x4_t m_old = vld1q_f32(m + h), mx = m_old;
        for (int r = 0; r < rows; r++) {
            float32x4_t x = vld1q_f32(s + (size_t)r * NR + h);
            mx = vbslq_f32(vcgtq_f32(mx, x), mx, x);
        }
        float32x4_t shift = vbslq_f32(vceqq_f32(mx, ninf), zero, mx);
        float32x4_t c = exp_softmax4(vsubq_f32(m_old, shift)), sum = zero;
        for (int p = 0; 2 * p < rows; p++) {
            float32x4_t even = exp_softmax4(vsubq_f32(vld1q_f32(s + (size_t)2 * p * NR + h), shift)), odd = zero;
            sum = vaddq_f32(sum, even);
            if (2 * p + 1 < rows) {
                odd = exp_softmax4(vsubq_f32(vld1q_f32(s + (size_t)(2 * p + 1) * NR + h), shift));
                sum = vaddq_f32(sum, odd);
            }
            vst1q_u32(pairs + (size_t)p * NR + h, vorrq_u32(bf16x4_from_f32(even), vshlq_n_u32(bf16x4_from_f32(odd), 16)));
        }
        vst1q_f32(l + h, vfmaq_f32(sum, vld1q_f32(l + h), c));
        vst1q_f32(m + h, mx);
        vst1q_f32(corr + h, c);
    }
}

static const GemmKernelOps k_neon_bf16_ops = {
    .nc_in_place = NC_BT, .kpack = 2, .pack_a = pack_a_neon_bf16, .pack_b = pack_b_neon_bf16,
    .scratch_floats = KC * NR,
    // guesses, not measured on hardware: two BFMLAL (4 multiply-adds each) per pair of k values
    // and 4 columns, two pipes; scalar rounding ~2 cycles per value; a weight read ~1/4
    .fma_per_cycle = 8.0, .pack_cost = 2.0, .stream_cost = 0.25,
    .shared_b_words = 0, .weights_whole_k = 1, .micro = micro_neon_bf16};
static const GemmKernelInfo k_neon_bf16 = {
    .name = "neon_bf16", .mr = MR, .nr = NR, .mc = MC, .kc = KC, .nc = NC_A, .ops = &k_neon_bf16_ops};

const GemmKernelInfo *gemm_kernel_neon_bf16(void) { return &k_neon_bf16; }

#else  // not arm64: no NEON bf16 set (gemm_bf16_supported is gemm_avx512_bf16.c's)

const GemmKernelInfo *gemm_kernel_neon_bf16(void) { return NULL; }

#endif
