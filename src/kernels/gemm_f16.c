// f16 resident weights: the kernel sets' widening of IEEE half weights to f32 (GemmKernelOps
// .widen_f16).
// The loop nest (gemm.c) calls it where it would have read f32 weights in place: the A block
// (mc x kc) of a conv weight, or the B panel (kc x nc) of a linear's, both contiguous runs of the
// packed layout, into its pack buffer, which the f32 micro-kernels then read as usual. The
// conversion is exact, so every instruction gives the same floats: the products are those of the
// f32 path on the rounded weights, bit for bit, on every kernel set (tests/test_gemm_f16.c).
#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "kernels/gemm_internal.h"

void gemm_widen_f16_portable(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_from_f16(src[i]);
}

void gemm_widen_f16(const GemmKernelInfo *ki, const uint16_t *src, float *dst, size_t n) {
    if (ki->ops->widen_f16) ki->ops->widen_f16(src, dst, n);
    else gemm_widen_f16_portable(src, dst, n);
}

#if defined(__x86_64__)
#include <immintrin.h>

// F16C (vcvtph2ps): 8 halves per instruction. Every AVX2 CPU we know has it (Haswell, Zen), but
// it is a separate CPUID bit: checked per call.
__attribute__((target("avx,f16c"))) static void widen_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i h0 = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i h1 = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h0));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(h1));
    }
    for (; i < n; i++) dst[i] = f32_from_f16(src[i]);
}

void gemm_widen_f16_avx2(const uint16_t *src, float *dst, size_t n) {
    if (__builtin_cpu_supports("f16c")) widen_f16c(src, dst, n);  // a load of libgcc's CPU model
    else gemm_widen_f16_portable(src, dst, n);
}

// AVX-512F (vcvtph2ps zmm): 16 halves per instruction, the tail masked.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void gemm_widen_f16_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i h0 = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i h1 = _mm256_loadu_si256((const __m256i *)(src + i + 16));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h0));
        _mm512_storeu_ps(dst + i + 16, _mm512_cvtph_ps(h1));
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm256_maskz_loadu_epi16(k, src + i);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(h));
    }
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

// FCVTL / FCVTL2: 4 halves each, 8 per 128-bit load.
void gemm_widen_f16_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) dst[i] = f32_from_f16(src[i]);
}
#endif
