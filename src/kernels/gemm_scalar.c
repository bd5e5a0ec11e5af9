// Portable micro-kernel (any C99 compiler): a 4 x 16 tile of C in a local
// array, the fallback when the CPU has no SIMD path we know and the reference
// path the SIMD kernels are tested against.
#include <math.h>

#include "kernels/gemm_internal.h"

enum { MR = 4, NR = 16 };

static void micro_scalar(int k, const void *va, const void *vb, float *c, int ldc, int m, int n, float beta,
                         const float *bias_m, const float *bias_n) {
    const float *a = va, *b = vb;
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0.0f;
    for (int p = 0; p < k; p++) {
        for (int i = 0; i < MR; i++) {
            float ai = a[i];
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[j];
        }
        a += MR;
        b += NR;
    }
    for (int i = 0; i < m; i++) {
        float *ci = c + (long)i * ldc;
        for (int j = 0; j < n; j++) {
            float v = acc[i][j];
            if (bias_m) v += bias_m[i];
            if (bias_n) v += bias_n[j];
            ci[j] = beta != 0.0f ? beta * ci[j] + v : v;
        }
    }
}

// The online-softmax step of GemmKernelInfo, one query column at a time (expf from libm).
static void softmax_step_scalar(float *s, int rows, float *m, float *l, float *corr) {
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

static const GemmKernelOps k_scalar_ops = {
    .kpack = 1, .pack_a = gemm_pack_a_f32, .pack_b = gemm_pack_b_f32,
    // a multiply-add costs ~1/32 cycle (vector FMA), packing a float ~1 cycle, streaming a float of
    // weights packed at load ~1/4 cycle (every thread whose blocks need those rows reads them)
    .fma_per_cycle = 32.0, .pack_cost = 1.0, .stream_cost = 0.25, .shared_b_words = (size_t)2 << 20,
    .micro = micro_scalar, .softmax_step = softmax_step_scalar,
};
static const GemmKernelInfo k_scalar = {.name = "scalar", .mr = MR, .nr = NR, .mc = 128, .kc = 256, .nc = 2048,
                                        .ops = &k_scalar_ops};

const GemmKernelInfo *gemm_kernel_scalar(void) { return &k_scalar; }
