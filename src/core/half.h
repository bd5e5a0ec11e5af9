// 16-bit floats <-> f32, in portable C (no F16C, no AVX512_BF16): the one home of these
// conversions (safetensors/npy reading, the converter, the bf16 kernel sets' packers).
//
// f16 (IEEE 754 binary16): sign, 5 exponent bits (bias 15), 10 mantissa bits.
// bf16: the top half of an f32: sign, 8 exponent bits (bias 127), 7 mantissa bits.
// Every f16 and bf16 value is exactly an f32, so the widening conversions are exact.
#ifndef SATDIFUSER_CORE_HALF_H
#define SATDIFUSER_CORE_HALF_H

#include <stdint.h>

// Exact: normals rebias 15 -> 127, subnormals mant * 2^-24, inf and NaN kept.
float f32_from_f16(uint16_t h);

// To nearest, ties to even. Finite values at or above 65520 (half-way past 65504, the largest
// f16) become inf; values below 2^-14 become f16 subnormals (or a signed zero); NaN stays
// NaN (made quiet, sign kept).
uint16_t f16_from_f32(float x);

// Exact: the bits shifted up by 16.
float f32_from_bf16(uint16_t h);

// To nearest, ties to even, as vcvtneps2bf16 does it: NaN stays NaN (made quiet, sign kept),
// +-inf stay inf, finite values too large round to inf, and f32 subnormals become a zero of
// the same sign (vdpbf16ps reads bf16 subnormals as zero anyway). The bf16 kernel sets
// depend on exactly this rounding (docs/bf16.md).
uint16_t bf16_from_f32(float x);

#endif
