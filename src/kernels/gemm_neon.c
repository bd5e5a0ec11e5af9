// NEON micro-kernel (AArch64): an 8 x 8 tile of C in 16 q registers; each k
// step loads 8 values of packed B (two q) and 8 of packed A (two q) and does
// 16 FMAs by lane. Also the kernel set's A packer and attention helpers (4 x 4
// transposes; the same values and products as the portable loops, so the same bits).
// Compiles to nothing but a NULL getter elsewhere.
#include "kernels/gemm_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

enum { MR = 8, NR = 8 };

// One row of the epilogue: v = acc + bias; C = beta*C + v (C read only if beta != 0).
// Partial rows go through a zero-padded copy so that the arithmetic is the same.
static inline void store_row(float *c, float32x4_t acc0, float32x4_t acc1, int n, float beta, const float *bias_m_i,
                             const float *bias_n) {
    float tmp[8], tb[8];
    if (bias_m_i) {
        float32x4_t bm = vdupq_n_f32(*bias_m_i);
        acc0 = vaddq_f32(acc0, bm);
        acc1 = vaddq_f32(acc1, bm);
    }
    if (bias_n) {
        const float *bn = bias_n;
        if (n < NR) {
            memset(tb, 0, sizeof(tb));
            memcpy(tb, bias_n, (size_t)n * sizeof(float));
            bn = tb;
        }
        acc0 = vaddq_f32(acc0, vld1q_f32(bn));
        acc1 = vaddq_f32(acc1, vld1q_f32(bn + 4));
    }
    float *dst = n < NR ? tmp : c;
    if (beta != 0.0f) {
        if (n < NR) {
            memset(tmp, 0, sizeof(tmp));
            memcpy(tmp, c, (size_t)n * sizeof(float));
        }
        float32x4_t vb = vdupq_n_f32(beta);
        acc0 = vfmaq_f32(acc0, vb, vld1q_f32(dst));
        acc1 = vfmaq_f32(acc1, vb, vld1q_f32(dst + 4));
    }
    vst1q_f32(dst, acc0);
    vst1q_f32(dst + 4, acc1);
    if (n < NR) memcpy(c, tmp, (size_t)n * sizeof(float));
}

static void micro_neon(int k, const void *va, const void *vb, float *c, int ldc, int m, int n, float beta,
                       const float *bias_m, const float *bias_n) {
    const float *a = va, *b = vb;
    float32x4_t c00 = vdupq_n_f32(0), c01 = vdupq_n_f32(0), c10 = vdupq_n_f32(0), c11 = vdupq_n_f32(0);
    float32x4_t c20 = vdupq_n_f32(0), c21 = vdupq_n_f32(0), c30 = vdupq_n_f32(0), c31 = vdupq_n_f32(0);
    float32x4_t c40 = vdupq_n_f32(0), c41 = vdupq_n_f32(0), c50 = vdupq_n_f32(0), c51 = vdupq_n_f32(0);
    float32x4_t c60 = vdupq_n_f32(0), c61 = vdupq_n_f32(0), c70 = vdupq_n_f32(0), c71 = vdupq_n_f32(0);
    for (int p = 0; p < k; p++) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        c00 = vfmaq_laneq_f32(c00, b0, a0, 0); c01 = vfmaq_laneq_f32(c01, b1, a0, 0);
        c10 = vfmaq_laneq_f32(c10, b0, a0, 1); c11 = vfmaq_laneq_f32(c11, b1, a0, 1);
        c20 = vfmaq_laneq_f32(c20, b0, a0, 2); c21 = vfmaq_laneq_f32(c21, b1, a0, 2);
        c30 = vfmaq_laneq_f32(c30, b0, a0, 3); c31 = vfmaq_laneq_f32(c31, b1, a0, 3);
        c40 = vfmaq_laneq_f32(c40, b0, a1, 0); c41 = vfmaq_laneq_f32(c41, b1, a1, 0);
        c50 = vfmaq_laneq_f32(c50, b0, a1, 1); c51 = vfmaq_laneq_f32(c51, b1, a1, 1);
        c60 = vfmaq_laneq_f32(c60, b0, a1, 2); c61 = vfmaq_laneq_f32(c61, b1, a1, 2);
        c70 = vfmaq_laneq_f32(c70, b0, a1, 3); c71 = vfmaq_laneq_f32(c71, b1, a1, 3);
        a += MR;
        b += NR;
    }
    // Rows past m are padding: fall through from the last real row down to row 0.
    switch (m) {
    case 8: store_row(c + 7 * (long)ldc, c70, c71, n, beta, bias_m ? bias_m + 7 : NULL, bias_n); /* fall through */
    case 7: store_row(c + 6 * (long)ldc, c60, c61, n, beta, bias_m ? bias_m + 6 : NULL, bias_n); /* fall through */
    case 6: store_row(c + 5 * (long)ldc, c50, c51, n, beta, bias_m ? bias_m + 5 : NULL, bias_n); /* fall through */
    case 5: store_row(c + 4 * (long)ldc, c40, c41, n, beta, bias_m ? bias_m + 4 : NULL, bias_n); /* fall through */
    case 4: store_row(c + 3 * (long)ldc, c30, c31, n, beta, bias_m ? bias_m + 3 : NULL, bias_n); /* fall through */
    case 3: store_row(c + 2 * (long)ldc, c20, c21, n, beta, bias_m ? bias_m + 2 : NULL, bias_n); /* fall through */
    case 2: store_row(c + 1 * (long)ldc, c10, c11, n, beta, bias_m ? bias_m + 1 : NULL, bias_n); /* fall through */
    case 1: store_row(c, c00, c01, n, beta, bias_m, bias_n); /* fall through */
    default: break;
    }
}

// The online-softmax step of GemmKernelInfo, one query column at a time (expf from libm).
static void softmax_step_neon(float *s, int rows, float *m, float *l, float *corr) {
    for (int j = 0; j < NR; j++) {
        float m_new = m[j];
        for (int r = 0; r < rows; r++)
            if (s[r * NR + j] > m_new) m_new = s[r * NR + j];
        float shift = m_new == -INFINITY ? 0.0f : m_new;  // exp(-inf - shift) = 0, not NaN
        float c = expf(m[j] - shift), sum = 0.0f;
        for (int r = 0; r < rows; r++) {
            float e = expf(s[r * NR + j] - shift);
            s[r * NR + j] = e;
            sum += e;
        }
        l[j] = l[j] * c + sum;
        m[j] = m_new;
        corr[j] = c;
    }
}

// c[j] = column j of the 4 x 4 block r (r[i] = row i).
static inline void transpose4(const float32x4_t r[4], float32x4_t c[4]) {
    float32x4x2_t t01 = vtrnq_f32(r[0], r[1]), t23 = vtrnq_f32(r[2], r[3]);
    c[0] = vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0]));
    c[1] = vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1]));
    c[2] = vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0]));
    c[3] = vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1]));
}

// GemmKernelInfo.pack_a_rows: dst[p*8 + i] = src[i*lda + p] (rows m..7 zero), 4 columns of the
// 8 rows at a time as two 4 x 4 transposes; the last kc % 4 columns one by one.
static void pack_a_rows_neon(const float *src, int64_t lda, int m, int kc, float *dst) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    int p = 0;
    for (; p + 4 <= kc; p += 4) {
        float32x4_t r[8], c[4], c2[4];
        for (int i = 0; i < MR; i++) r[i] = i < m ? vld1q_f32(src + i * lda + p) : zero;
        transpose4(r, c);
        transpose4(r + 4, c2);
        for (int q = 0; q < 4; q++) {
            vst1q_f32(dst + (size_t)(p + q) * MR, c[q]);
            vst1q_f32(dst + (size_t)(p + q) * MR + 4, c2[q]);
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < MR; i++) dst[(size_t)p * MR + i] = i < m ? src[i * lda + p] : 0.0f;
}

// GemmKernelInfo.scale_columns: o[d*ld + j] *= corr[j], 4 columns at a time (the same products).
static void scale_columns_neon(float *o, int rows, int width, int ld, const float *corr) {
    int j = 0;
    for (; j + 4 <= width; j += 4) {
        float32x4_t c = vld1q_f32(corr + j);
        for (int d = 0; d < rows; d++) {
            float *od = o + (size_t)d * ld + j;
            vst1q_f32(od, vmulq_f32(vld1q_f32(od), c));
        }
    }
    for (; j < width; j++)
        for (int d = 0; d < rows; d++) o[(size_t)d * ld + j] *= corr[j];
}

// GemmKernelInfo.finish_rows: out[j*ld_out + d] = o[d*ld + j] * inv[j], by 4 x 4 blocks
// transposed in registers; the edges (rows % 4, nq % 4) one by one.
static void finish_rows_neon(const float *o, int rows, int nq, int ld, const float *inv, float *out, int64_t ld_out) {
    int j0 = 0;
    for (; j0 + 4 <= nq; j0 += 4) {
        int d0 = 0;
        for (; d0 + 4 <= rows; d0 += 4) {
            float32x4_t r[4], c[4];
            for (int i = 0; i < 4; i++) r[i] = vld1q_f32(o + (size_t)(d0 + i) * ld + j0);
            transpose4(r, c);  // c[j] = o[d0..d0+3][j0 + j]
            for (int j = 0; j < 4; j++) vst1q_f32(out + (j0 + j) * ld_out + d0, vmulq_n_f32(c[j], inv[j0 + j]));
        }
        for (; d0 < rows; d0++)
            for (int j = j0; j < j0 + 4; j++) out[j * ld_out + d0] = o[(size_t)d0 * ld + j] * inv[j];
    }
    for (; j0 < nq; j0++)
        for (int d = 0; d < rows; d++) out[j0 * ld_out + d] = o[(size_t)d * ld + j0] * inv[j0];
}

static const GemmKernelOps k_neon_ops = {
    .kpack = 1, .pack_a = gemm_pack_a_f32, .pack_b = gemm_pack_b_f32,
    // a multiply-add costs ~1/32 cycle (vector FMA), packing a float ~1 cycle, streaming a float of
    // weights packed at load ~1/4 cycle (every thread whose blocks need those rows reads them)
    .fma_per_cycle = 32.0, .pack_cost = 1.0, .stream_cost = 0.25, .shared_b_words = (size_t)2 << 20,
    .micro = micro_neon, .softmax_step = softmax_step_neon, .pack_a_rows = pack_a_rows_neon,
    .scale_columns = scale_columns_neon, .finish_rows = finish_rows_neon, .widen_f16 = gemm_widen_f16_neon,
};
static const GemmKernelInfo k_neon = {.name = "neon", .mr = MR, .nr = NR, .mc = 128, .kc = 256, .nc = 2048,
                                      .ops = &k_neon_ops};

const GemmKernelInfo *gemm_kernel_neon(void) { return &k_neon; }

#else
const GemmKernelInfo *gemm_kernel_neon(void) { return 0; }
#endif
