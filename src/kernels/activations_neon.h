// NEON (AArch64) versions of the element-wise activations and the row softmax, included
// by activations.c (its constants and sum16). The same operations as the AVX2 code on 4
// lanes: the same fused multiply-adds (vfmaq/vfmsq are IEEE fused like _mm256_fmadd_ps),
// roundings and order, so NEON gives the AVX2 results bit for bit. Tails (n % 4) go through
// a zero-padded copy. vmaxq/vminq return NaN when either operand is NaN, so NaN in gives
// NaN out as on x86.
#ifndef SD_ACTIVATIONS_NEON_H
#define SD_ACTIVATIONS_NEON_H

// As exp_avx2: n = round(x log2e) (to nearest even, as _MM_FROUND_TO_NEAREST_INT),
// r = x - n ln2 (two FMAs), exp(r) = 1 + r + r^2 q(r), then 2^n as 2^(n>>1) 2^(n - (n>>1)).
static inline float32x4_t exp_neon(float32x4_t x) {
    x = vmaxq_f32(vdupq_n_f32(kExpMin), x);
    x = vminq_f32(vdupq_n_f32(kExpMax), x);
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(kExpLog2e)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(kExpLn2Hi));
    r = vfmsq_f32(r, n, vdupq_n_f32(kExpLn2Lo));
    float32x4_t q = vdupq_n_f32(kExpQ[0]);
    for (int k = 1; k < 5; k++) q = vfmaq_f32(vdupq_n_f32(kExpQ[k]), q, r);
    float32x4_t y = vaddq_f32(vfmaq_f32(r, q, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    int32x4_t ni = vcvtnq_s32_f32(n);
    int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    int32x4_t bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    return vmulq_f32(vmulq_f32(y, s1), s2);
}

// x sigmoid(w) = (w < 0 ? x e : x) / (1 + e), e = exp(-|w|).
static inline float32x4_t x_sigmoid_neon(float32x4_t x, float32x4_t w) {
    float32x4_t e = exp_neon(vsubq_f32(vdupq_n_f32(0.0f), vabsq_f32(w)));
    uint32x4_t neg = vcltq_f32(w, vdupq_n_f32(0.0f));
    float32x4_t num = vbslq_f32(neg, vmulq_f32(x, e), x);
    return vdivq_f32(num, vaddq_f32(vdupq_n_f32(1.0f), e));
}

static inline float32x4_t silu4(float32x4_t x) { return x_sigmoid_neon(x, x); }

static inline float32x4_t quick_gelu4(float32x4_t x) {
    return x_sigmoid_neon(x, vmulq_f32(vdupq_n_f32(kQuickGeluAlpha), x));
}

// As gelu_avx2 (erfc through exp of a polynomial, z^2 carried as hi + lo, a 2Sum).
static inline float32x4_t gelu4(float32x4_t x) {
    float32x4_t ax = vminq_f32(vdupq_n_f32(kGeluClamp), vabsq_f32(x));
    float32x4_t one = vdupq_n_f32(1.0f), half = vdupq_n_f32(0.5f);
    float32x4_t t = vdivq_f32(one, vfmaq_f32(one, ax, vdupq_n_f32(kGeluHalfInvSqrt2)));
    float32x4_t u = vsubq_f32(t, half);
    float32x4_t p = vdupq_n_f32(kGeluP[0]);
    for (int k = 1; k < 12; k++) p = vfmaq_f32(vdupq_n_f32(kGeluP[k]), p, u);
    float32x4_t hi = vmulq_f32(ax, ax);
    float32x4_t lo = vmulq_f32(vnegq_f32(vfmsq_f32(hi, ax, ax)), half);  // ax*ax - hi, exact
    hi = vmulq_f32(hi, half);
    float32x4_t s = vsubq_f32(p, lo);
    float32x4_t a = vsubq_f32(s, hi);
    float32x4_t bb = vsubq_f32(a, s);
    float32x4_t err = vsubq_f32(vsubq_f32(s, vsubq_f32(a, bb)), vaddq_f32(hi, bb));
    float32x4_t e = exp_neon(a);
    e = vfmaq_f32(e, e, err);
    float32x4_t ht = vmulq_f32(half, t);
    float32x4_t pos = vmulq_f32(x, vsubq_f32(one, vmulq_f32(ht, e)));
    float32x4_t neg = vmulq_f32(vmulq_f32(x, ht), e);
    return vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), neg, pos);
}

static inline float32x4_t gelu_tanh4(float32x4_t x) {
    float32x4_t w = vmulq_f32(x, vfmaq_f32(vdupq_n_f32(kTanhC1), vdupq_n_f32(kTanhC2), vmulq_f32(x, x)));
    return x_sigmoid_neon(x, w);
}

// As relu_scalar: x <= 0 (false for NaN) gives +0.
static inline float32x4_t relu4(float32x4_t x) {
    float32x4_t zero = vdupq_n_f32(0.0f);
    return vbslq_f32(vcleq_f32(x, zero), zero, x);
}

// f over x[0, n): 4 lanes at a time, the tail through a zero-padded copy.
#define NEON_UNARY_SPAN(name, f)                                       \
    static void name(float *x, int64_t n) {                            \
        int64_t i = 0;                                                 \
        for (; i + 4 <= n; i += 4) vst1q_f32(x + i, f(vld1q_f32(x + i))); \
        if (i < n) {                                                   \
            float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};                   \
            memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));       \
            vst1q_f32(buf, f(vld1q_f32(buf)));                         \
            memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));       \
        }                                                              \
    }
NEON_UNARY_SPAN(silu_neon, silu4)
NEON_UNARY_SPAN(quick_gelu_neon, quick_gelu4)
NEON_UNARY_SPAN(gelu_neon_span, gelu4)
NEON_UNARY_SPAN(gelu_tanh_neon_span, gelu_tanh4)
NEON_UNARY_SPAN(relu_neon, relu4)
NEON_UNARY_SPAN(exp_neon_span, exp_neon)
#undef NEON_UNARY_SPAN

static void add_neon(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

static void scale_neon(float *y, float s, int64_t n) {
    float32x4_t vs = vdupq_n_f32(s);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vld1q_f32(y + i), vs));
    for (; i < n; i++) y[i] *= s;
}

// x[i, i+4) with lanes past n set to -inf.
static inline float32x4_t load4_or_ninf(const float *x, int rem) {
    if (rem >= 4) return vld1q_f32(x);
    float buf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    if (rem > 0) memcpy(buf, x, (size_t)rem * sizeof(float));
    return vld1q_f32(buf);
}

// As softmax_row_avx2: max; e = exp(x - max) stored and summed in 16 lanes (element i to
// lane i % 16, here four 4-lane accumulators), the lanes added by sum16; x = e / sum.
static void softmax_row_neon(float *x, int n) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    for (int i = 0; i < n; i += 4) vmax = vmaxq_f32(vmax, load4_or_ninf(x + i, n - i));
    float m4[4];
    vst1q_f32(m4, vmax);
    float m = m4[0];
    for (int j = 1; j < 4; j++) m = m4[j] > m ? m4[j] : m;
    float32x4_t mx = vdupq_n_f32(m), acc[4];
    for (int h = 0; h < 4; h++) acc[h] = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += 16) {
        float buf[16];
        for (int h = 0; h < 4; h++) {
            float32x4_t e = exp_neon(vsubq_f32(load4_or_ninf(x + i + 4 * h, n - i - 4 * h), mx));
            vst1q_f32(buf + 4 * h, e);
            acc[h] = vaddq_f32(acc[h], e);
        }
        memcpy(x + i, buf, (size_t)(n - i < 16 ? n - i : 16) * sizeof(float));
    }
    float lanes[16];
    for (int h = 0; h < 4; h++) vst1q_f32(lanes + 4 * h, acc[h]);
    float sum = sum16(lanes);
    float32x4_t vsum = vdupq_n_f32(sum);
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vdivq_f32(vld1q_f32(x + i), vsum));
    for (; i < n; i++) x[i] /= sum;
}

#endif
