// NEON micro-kernel (AArch64): an 8 x 8 tile of C in 16 q registers; each k
// step loads 8 values of packed B (two q) and 8 of packed A (two q) and does
// 16 FMAs by lane. Compiles to nothing but a NULL getter elsewhere.
#include "kernels/kernels.h"

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

static void micro_neon(int k, const float *a, const float *b, float *c, int ldc, int m, int n, float beta,
                       const float *bias_m, const float *bias_n) {
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

static const GemmKernelInfo k_neon = {"neon", MR, NR, 128, 256, 2048, micro_neon, softmax_step_neon, NULL, NULL,
                                      NULL, NULL, NULL};

const GemmKernelInfo *gemm_kernel_neon(void) { return &k_neon; }

#else
const GemmKernelInfo *gemm_kernel_neon(void) { return 0; }
#endif
