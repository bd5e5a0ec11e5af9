// Element-wise activations and the row softmax. Each op has a scalar loop
// (libm) and AVX2+FMA, AVX-512 (target attributes) and NEON (AArch64) versions,
// chosen per call by eltwise_isa(). The SIMD versions evaluate the same polynomials
// with the same fused multiply-adds in the same order, so they give the same bits;
// the scalar loops use libm.
//
// Bounds checked by tests/test_norm_act_simd.c against double references (ulp =
// 2^-23 relative; "measured" is the worst seen over 2M inputs on the SIMD paths):
//   exp(x)          1 ulp; measured 8.9e-8 (x in [-87, 88]; below: denormals, then 0; above 88.72: inf)
//   silu            3 ulp; measured 2.3e-7
//   quick_gelu      (2 + |1.702 x|) ulp: the rounding of w = 1.702 x is amplified by |w| in exp(-|w|)
//   gelu (erf)      1e-6 relative everywhere, measured 3.8e-7, the far negative tail included: it is
//                   evaluated through erfc, without the cancellation of 1 + erf(x/sqrt2) (the old
//                   scalar loop lost all relative accuracy below x = -5)
//   gelu_tanh       (4 + 2|w|) ulp, w = 2 sqrt(2/pi) (x + 0.044715 x^3); written x / (1 + exp(-w))
//                   (no cancellation in 1 + tanh)
//   softmax_rows    (|x - max| + 8 + sqrt(n)) ulp per output (the rounding of x - max, exp, the sum)
// Results under 1e-36 in magnitude are only accurate in absolute terms (denormals).
// NaN in gives NaN out; f(+inf) = inf and f(-inf) = NaN (-inf * 0) for silu, gelu,
// gelu_tanh and quick_gelu, as PyTorch; relu(NaN) = NaN; a softmax row holding NaN
// or +inf, or only -inf, is NaN.
// Threads: element-wise ops cut the array into fixed chunks (a static OpenMP
// partition), softmax rows are one thread's each; no result depends on the thread count.
#include <math.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/fused.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512_FUNC __attribute__((target("avx512f,avx512dq,fma")))
#define AVX2_FUNC __attribute__((target("avx2,fma")))
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

int eltwise_isa(void) {
    const GemmKernelInfo *k = gemm_kernel_info();
    if (k == gemm_kernel_avx512()) return ISA_AVX512;
    if (k == gemm_kernel_avx2()) return ISA_AVX2;
    if (k == gemm_kernel_neon()) return ISA_NEON;
    return ISA_SCALAR;
}

// ---- Constants of the polynomial approximations (SIMD paths) --------------------------
#if defined(__x86_64__) || defined(__aarch64__)

// exp(x) = 2^n exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2] (ln2 split in a
// float and the rest: with FMA, r is exact to 1e-16). exp(r) = 1 + r + r^2 q(r), q of degree 4
// (Chebyshev fit to (exp(r) - 1 - r) / r^2 on [-ln2/2, ln2/2], mpmath; 5.5e-9 relative).
static const float kExpLog2e = 1.44269504088896341f;
static const float kExpLn2Hi = 0.693147182464599609375f;  // float(ln 2)
static const float kExpLn2Lo = -1.904654299957768e-09f;    // ln 2 - kExpLn2Hi
static const float kExpQ[5] = {1.3926176120e-03f, 8.3631730745e-03f, 4.1666554662e-02f, 1.6666577026e-01f, 0.5f};
// Inputs are clamped to [-104, 88.8]: exp(-104) rounds to 0, exp(88.8) to inf.
static const float kExpMin = -104.0f, kExpMax = 88.8f;

// GELU exact: gelu(x) = x Phi(x), Phi(x) = 0.5 erfc(-x / sqrt2). With z = |x| / sqrt2 and
// t = 1 / (1 + z / 2):  erfc(z) = t exp(-z^2 + P(t - 1/2)), P of degree 11 (Chebyshev fit of
// log(erfc(z) / t) + z^2 over t in [0, 1], i.e. every z >= 0, mpmath: 1.4e-8 absolute, so
// erfc to 1.4e-8 relative before rounding). z^2 = x^2/2 is carried as hi + lo (FMA) and the
// exponent's sum by a 2Sum: the tail Phi(-12) ~ 1e-33 keeps its relative accuracy.
// Phi(x) = 0.5 erfc(z) for x < 0, 1 - 0.5 erfc(z) for x >= 0. |x| is clamped at 16 for the
// erfc (exp(-128) is 0 in float), so Phi(+-inf) = 1 or 0 and gelu(+inf) = inf, gelu(-inf) = NaN
// (-inf * 0, as PyTorch).
static const float kGeluHalfInvSqrt2 = 0.353553390593273762f;  // t = 1 / (1 + |x| * this)
static const float kGeluP[12] = {-1.893674557e-01f, 8.712516208e-03f, 3.010927046e-01f,  -5.867321856e-02f,
                                 -2.948023636e-01f, 1.148928956e-01f, 2.820850226e-01f,  -1.580869062e-01f,
                                 -3.751582481e-01f, 1.893757616e-01f, 1.345286425e+00f, -6.717940928e-01f};
static const float kGeluClamp = 16.0f;
#endif

// GELU tanh: 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), 2u = w = x (kTanhC1 + kTanhC2 x^2)
// with kTanhC1 = 2 sqrt(2/pi), kTanhC2 = 2 sqrt(2/pi) * 0.044715.
static const float kTanhC1 = 1.5957691216057308f, kTanhC2 = 0.071354816273067355f;
static const float kQuickGeluAlpha = 1.702f;

// ---- Scalar loops (libm) -------------------------------------------------------------

// x sigmoid(w) = x / (1 + exp(-w)). For w < -88.7 exp overflows and this gives 0 where the
// true value is below 1e-37 in magnitude (the SIMD versions avoid the overflow with a blend,
// which costs nothing there; here a select costs 1.5x and a branch 4x on random signs).
static inline float x_sigmoid(float x, float w) { return x / (1.0f + expf(-w)); }

static void silu_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x_sigmoid(x[i], x[i]);
}

static void quick_gelu_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x_sigmoid(x[i], kQuickGeluAlpha * x[i]);
}

// 0.5 x erfc(-x/sqrt2): the same function as 0.5 x (1 + erf(x/sqrt2)) without its
// cancellation for x << 0.
static void gelu_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * erfcf(-x[i] * 0.70710678118654752f);
}

static void gelu_tanh_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = x_sigmoid(v, v * (kTanhC1 + kTanhC2 * v * v));
    }
}

// NaN stays NaN (as torch.relu); -0 and negatives give +0.
static void relu_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = !(x[i] <= 0.0f) ? x[i] : 0.0f;
}

static void exp_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

static void add_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void scale_scalar(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

static void softmax_row_scalar(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

#if defined(__x86_64__) || defined(__aarch64__)
// The 16 lane sums of a SIMD softmax added in a fixed pairwise order (AVX2 and NEON do the
// same with their two and four parts).
static inline float sum16(const float v[16]) {
    float s8[8], s4[4];
    for (int j = 0; j < 8; j++) s8[j] = v[2 * j] + v[2 * j + 1];
    for (int j = 0; j < 4; j++) s4[j] = s8[2 * j] + s8[2 * j + 1];
    return (s4[0] + s4[1]) + (s4[2] + s4[3]);
}
#endif

#if defined(__x86_64__)

// ---- AVX-512 ---------------------------------------------------------------------------
// Tails (n % 16) go through the same code with masked loads and stores.

static inline __mmask16 tail_mask16(int64_t rem) { return (__mmask16)((1u << rem) - 1u); }

// max/min keep a NaN x: the intrinsics return their second operand when either is NaN.
AVX512_FUNC static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
    x = _mm512_min_ps(_mm512_set1_ps(kExpMax), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kExpLog2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Lo), r);
    __m512 q = _mm512_set1_ps(kExpQ[0]);
    for (int k = 1; k < 5; k++) q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kExpQ[k]));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);  // y 2^n, one rounding (denormals, 0 and inf as they fall)
}

// x sigmoid(w) as the scalar x_sigmoid: (w < 0 ? x e : x) / (1 + e), e = exp(-|w|).
AVX512_FUNC static inline __m512 x_sigmoid_avx512(__m512 x, __m512 w) {
    __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(w)));
    __mmask16 neg = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_div_ps(_mm512_mask_mul_ps(x, neg, x, e), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

AVX512_FUNC static inline __m512 silu16(__m512 x) { return x_sigmoid_avx512(x, x); }

AVX512_FUNC static inline __m512 quick_gelu16(__m512 x) {
    return x_sigmoid_avx512(x, _mm512_mul_ps(_mm512_set1_ps(kQuickGeluAlpha), x));
}

AVX512_FUNC static inline __m512 gelu_avx512(__m512 x) {
    __m512 ax = _mm512_min_ps(_mm512_set1_ps(kGeluClamp), _mm512_abs_ps(x));
    __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(ax, _mm512_set1_ps(kGeluHalfInvSqrt2), one));
    __m512 u = _mm512_sub_ps(t, half);
    __m512 p = _mm512_set1_ps(kGeluP[0]);
    for (int k = 1; k < 12; k++) p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(kGeluP[k]));
    // z^2 = hi + lo exactly; the exponent p - z^2 = a + err (2Sum of s = p - lo and -hi)
    __m512 hi = _mm512_mul_ps(ax, ax);
    __m512 lo = _mm512_mul_ps(_mm512_fmsub_ps(ax, ax, hi), half);
    hi = _mm512_mul_ps(hi, half);
    __m512 s = _mm512_sub_ps(p, lo);
    __m512 a = _mm512_sub_ps(s, hi);
    __m512 bb = _mm512_sub_ps(a, s);
    __m512 err = _mm512_sub_ps(_mm512_sub_ps(s, _mm512_sub_ps(a, bb)), _mm512_add_ps(hi, bb));
    __m512 e = exp_avx512(a);
    e = _mm512_fmadd_ps(e, err, e);
    __m512 ht = _mm512_mul_ps(half, t);
    // x >= 0: x (1 - Phi(-x)); x < 0: (x t/2) e, in this order so that nothing is denormal before the end
    __m512 pos = _mm512_mul_ps(x, _mm512_sub_ps(one, _mm512_mul_ps(ht, e)));
    __m512 neg = _mm512_mul_ps(_mm512_mul_ps(x, ht), e);
    return _mm512_mask_mov_ps(pos, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), neg);
}

AVX512_FUNC static inline __m512 gelu_tanh_avx512(__m512 x) {
    __m512 w = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(kTanhC2), _mm512_mul_ps(x, x),
                                                 _mm512_set1_ps(kTanhC1)));
    return x_sigmoid_avx512(x, w);
}

AVX512_FUNC static void silu_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, silu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, silu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void quick_gelu_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, quick_gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, quick_gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void gelu_avx512_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, gelu_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void gelu_tanh_avx512_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu_tanh_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, gelu_tanh_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

// As relu_scalar: x <= 0 (false for NaN) gives +0.
AVX512_FUNC static inline __m512 relu16(__m512 x) {
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LE_OQ), _mm512_setzero_ps());
}

AVX512_FUNC static void relu_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, relu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, relu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void exp_avx512_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, exp_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(x + i, k, exp_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void add_avx512(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + i), _mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_FUNC static void scale_avx512(float *y, float s, int64_t n) {
    __m512 vs = _mm512_set1_ps(s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), vs));
    if (i < n) {
        __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + i), vs));
    }
}

// max, then e = exp(x - max) stored and summed in 16 lanes, then x = e / sum.
// Lanes past n hold -inf: exp(-inf - max) = 0 adds nothing.
AVX512_FUNC static void softmax_row_avx512(float *x, int n) {
    __m512 ninf = _mm512_set1_ps(-INFINITY), vmax = ninf;
    int i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    __mmask16 k = tail_mask16(n - i);
    if (i < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(ninf, k, x + i));
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 acc = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, x + i), mx));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    float lanes[16];
    _mm512_storeu_ps(lanes, acc);
    __m512 sum = _mm512_set1_ps(sum16(lanes));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_div_ps(_mm512_loadu_ps(x + i), sum));
    if (i < n) _mm512_mask_storeu_ps(x + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), sum));
}

// ---- AVX2 + FMA ------------------------------------------------------------------------
// The same operations as the AVX-512 code on 8 lanes; tails through masked loads/stores.

static const int32_t kTailMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

AVX2_FUNC static inline __m256i tail_mask8(int64_t rem) {
    return _mm256_loadu_si256((const __m256i *)(kTailMask + 8 - rem));
}

// As exp_avx512; 2^n is applied as 2^(n>>1) * 2^(n - (n>>1)), both normal floats, so
// results in the denormal range are rounded once as with scalef.
AVX2_FUNC static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(kExpMin), x);
    x = _mm256_min_ps(_mm256_set1_ps(kExpMax), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Lo), r);
    __m256 q = _mm256_set1_ps(kExpQ[0]);
    for (int k = 1; k < 5; k++) q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kExpQ[k]));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

AVX2_FUNC static inline __m256 x_sigmoid_avx2(__m256 x, __m256 w) {
    __m256 absw = _mm256_and_ps(w, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), absw));
    __m256 neg = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), neg);
    return _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

AVX2_FUNC static inline __m256 silu8(__m256 x) { return x_sigmoid_avx2(x, x); }

AVX2_FUNC static inline __m256 quick_gelu8(__m256 x) {
    return x_sigmoid_avx2(x, _mm256_mul_ps(_mm256_set1_ps(kQuickGeluAlpha), x));
}

AVX2_FUNC static inline __m256 gelu_avx2(__m256 x) {
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 ax = _mm256_min_ps(_mm256_set1_ps(kGeluClamp), _mm256_and_ps(x, absmask));
    __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(ax, _mm256_set1_ps(kGeluHalfInvSqrt2), one));
    __m256 u = _mm256_sub_ps(t, half);
    __m256 p = _mm256_set1_ps(kGeluP[0]);
    for (int k = 1; k < 12; k++) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(kGeluP[k]));
    __m256 hi = _mm256_mul_ps(ax, ax);
    __m256 lo = _mm256_mul_ps(_mm256_fmsub_ps(ax, ax, hi), half);
    hi = _mm256_mul_ps(hi, half);
    __m256 s = _mm256_sub_ps(p, lo);
    __m256 a = _mm256_sub_ps(s, hi);
    __m256 bb = _mm256_sub_ps(a, s);
    __m256 err = _mm256_sub_ps(_mm256_sub_ps(s, _mm256_sub_ps(a, bb)), _mm256_add_ps(hi, bb));
    __m256 e = exp_avx2(a);
    e = _mm256_fmadd_ps(e, err, e);
    __m256 ht = _mm256_mul_ps(half, t);
    __m256 pos = _mm256_mul_ps(x, _mm256_sub_ps(one, _mm256_mul_ps(ht, e)));
    __m256 neg = _mm256_mul_ps(_mm256_mul_ps(x, ht), e);
    return _mm256_blendv_ps(pos, neg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

AVX2_FUNC static inline __m256 gelu_tanh_avx2(__m256 x) {
    __m256 w = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(kTanhC2), _mm256_mul_ps(x, x), _mm256_set1_ps(kTanhC1)));
    return x_sigmoid_avx2(x, w);
}

AVX2_FUNC static void silu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, silu8(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void quick_gelu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, quick_gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, quick_gelu8(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void gelu_avx2_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, gelu_avx2(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void gelu_tanh_avx2_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu_tanh_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, gelu_tanh_avx2(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static inline __m256 relu8(__m256 x) {
    __m256 zero = _mm256_setzero_ps();
    return _mm256_blendv_ps(x, zero, _mm256_cmp_ps(x, zero, _CMP_LE_OQ));
}

AVX2_FUNC static void relu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, relu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, relu8(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void exp_avx2_span(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, exp_avx2(_mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void add_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(y + i, k, _mm256_add_ps(_mm256_maskload_ps(y + i, k), _mm256_maskload_ps(x + i, k)));
    }
}

AVX2_FUNC static void scale_avx2(float *y, float s, int64_t n) {
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vs));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(y + i, k, _mm256_mul_ps(_mm256_maskload_ps(y + i, k), vs));
    }
}

// x[i, i+8) with lanes past n set to -inf.
AVX2_FUNC static inline __m256 load_or_ninf(const float *x, int rem) {
    if (rem >= 8) return _mm256_loadu_ps(x);
    if (rem <= 0) return _mm256_set1_ps(-INFINITY);
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x, tail_mask8(rem)),
                            _mm256_castsi256_ps(tail_mask8(rem)));
}

// As softmax_row_avx512: 16 lanes (two 8-lane halves, 16 values per step), the same sums.
AVX2_FUNC static void softmax_row_avx2(float *x, int n) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 8) vmax = _mm256_max_ps(vmax, load_or_ninf(x + i, n - i));
    float m8[8];
    _mm256_storeu_ps(m8, vmax);
    float m = m8[0];
    for (int j = 1; j < 8; j++) m = m8[j] > m ? m8[j] : m;
    __m256 mx = _mm256_set1_ps(m), acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __m256 e0 = exp_avx2(_mm256_sub_ps(load_or_ninf(x + i, n - i), mx));
        __m256 e1 = exp_avx2(_mm256_sub_ps(load_or_ninf(x + i + 8, n - i - 8), mx));
        if (n - i >= 16) {
            _mm256_storeu_ps(x + i, e0);
            _mm256_storeu_ps(x + i + 8, e1);
        } else {
            float buf[16];
            _mm256_storeu_ps(buf, e0);
            _mm256_storeu_ps(buf + 8, e1);
            memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
        }
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
    }
    float lanes[16];
    _mm256_storeu_ps(lanes, acc0);
    _mm256_storeu_ps(lanes + 8, acc1);
    __m256 sum = _mm256_set1_ps(sum16(lanes));
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), sum));
    if (i < n) {
        __m256i k = tail_mask8(n - i);
        _mm256_maskstore_ps(x + i, k, _mm256_div_ps(_mm256_maskload_ps(x + i, k), sum));
    }
}

#endif  // __x86_64__

#if defined(__aarch64__)
#include "kernels/activations_neon.h"
#endif

// ---- Dispatch and threads -----------------------------------------------------------

typedef void (*UnarySpan)(float *x, int64_t n);

typedef struct {
    UnarySpan silu, quick_gelu, gelu, gelu_tanh, relu, exp;
    void (*add)(float *y, const float *x, int64_t n);
    void (*scale)(float *y, float s, int64_t n);
    void (*softmax_row)(float *x, int n);
} EltwiseKernels;

static const EltwiseKernels k_scalar = {silu_scalar, quick_gelu_scalar, gelu_scalar, gelu_tanh_scalar, relu_scalar,
                                        exp_scalar,  add_scalar,        scale_scalar, softmax_row_scalar};
#if defined(__x86_64__)
static const EltwiseKernels k_avx2 = {silu_avx2,     quick_gelu_avx2, gelu_avx2_span, gelu_tanh_avx2_span,
                                      relu_avx2,     exp_avx2_span,   add_avx2,       scale_avx2,
                                      softmax_row_avx2};
static const EltwiseKernels k_avx512 = {silu_avx512,     quick_gelu_avx512, gelu_avx512_span, gelu_tanh_avx512_span,
                                        relu_avx512,     exp_avx512_span,   add_avx512,       scale_avx512,
                                        softmax_row_avx512};
#endif
#if defined(__aarch64__)
static const EltwiseKernels k_neon = {silu_neon, quick_gelu_neon, gelu_neon_span, gelu_tanh_neon_span, relu_neon,
                                      exp_neon_span, add_neon, scale_neon, softmax_row_neon};
#endif

static const EltwiseKernels *kernels_for(int isa) {
#if defined(__x86_64__)
    if (isa == ISA_AVX512) return &k_avx512;
    if (isa == ISA_AVX2) return &k_avx2;
#endif
#if defined(__aarch64__)
    if (isa == ISA_NEON) return &k_neon;
#endif
    (void)isa;
    return &k_scalar;
}

void silu_span(float *x, int64_t n, int isa) { kernels_for(isa)->silu(x, n); }
void exp_span(float *x, int64_t n, int isa) { kernels_for(isa)->exp(x, n); }

// Element-wise work is cut into chunks of CHUNK floats, statically spread over the
// threads; one chunk (small tensors) runs on the calling thread without entering a
// parallel region (even an if(0) one costs about a microsecond).
enum { CHUNK = 16384 };

static int64_t chunk_count(int64_t n) { return (n + CHUNK - 1) / CHUNK; }
static int64_t chunk_len(int64_t n, int64_t c) { return n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK; }

static void run_unary(UnarySpan f, float *x, int64_t n) {
    int64_t chunks = chunk_count(n);
    if (chunks <= 1) {
        f(x, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) f(x + c * CHUNK, chunk_len(n, c));
}

void silu_inplace(float *x, int64_t n) { run_unary(kernels_for(eltwise_isa())->silu, x, n); }
void relu_inplace(float *x, int64_t n) { run_unary(kernels_for(eltwise_isa())->relu, x, n); }
void gelu_inplace(float *x, int64_t n) { run_unary(kernels_for(eltwise_isa())->gelu, x, n); }
void gelu_tanh_inplace(float *x, int64_t n) { run_unary(kernels_for(eltwise_isa())->gelu_tanh, x, n); }
void quick_gelu_inplace(float *x, int64_t n) { run_unary(kernels_for(eltwise_isa())->quick_gelu, x, n); }

void add_inplace(float *y, const float *x, int64_t n) {
    const EltwiseKernels *k = kernels_for(eltwise_isa());
    int64_t chunks = chunk_count(n);
    if (chunks <= 1) {
        k->add(y, x, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) k->add(y + c * CHUNK, x + c * CHUNK, chunk_len(n, c));
}

void scale_inplace(float *y, float s, int64_t n) {
    const EltwiseKernels *k = kernels_for(eltwise_isa());
    int64_t chunks = chunk_count(n);
    if (chunks <= 1) {
        k->scale(y, s, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) k->scale(y + c * CHUNK, s, chunk_len(n, c));
}

// Each row is one thread's: max, exp and sum in a fixed order whatever the thread count.
void softmax_rows(float *x, int rows, int n) {
    const EltwiseKernels *k = kernels_for(eltwise_isa());
    if ((int64_t)rows * n <= CHUNK || rows == 1) {
        for (int r = 0; r < rows; r++) k->softmax_row(x + (int64_t)r * n, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) k->softmax_row(x + (int64_t)r * n, n);
}

// ---- Backward (training): accumulated (+=), each element by one thread ------------------------

void relu_backward(float *dinp, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (out[i] > 0.0f) dinp[i] += dout[i];
}

void div_scalar_backward(float *dinp, float *dt, const float *dout, const float *inp, float t, int64_t n) {
    if (dinp) {
        for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] / t;
    }
    if (dt) {
        double acc = 0.0;  // d(x/t)/dt = -x/t^2
        for (int64_t i = 0; i < n; i++) acc += (double)dout[i] * inp[i];
        *dt += (float)(-acc / ((double)t * t));
    }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int rows, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *y = out + (int64_t)r * n;
        const float *d = dout + (int64_t)r * n;
        float *dx = dinp + (int64_t)r * n;
        double dot = 0.0;
        for (int i = 0; i < n; i++) dot += (double)d[i] * y[i];
        const float s = (float)dot;
        for (int i = 0; i < n; i++) dx[i] += y[i] * (d[i] - s);
    }
}
