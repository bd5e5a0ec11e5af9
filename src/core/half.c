// 16-bit floats <-> f32 (half.h). Bit manipulation through memcpy: no aliasing tricks.
#include "core/half.h"

#include <math.h>
#include <string.h>

float f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {  // subnormal: value = mant * 2^-24, exact in f32
            float v = (float)mant * (1.0f / 16777216.0f);
            return (h >> 15) ? -v : v;
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN
    else bits = sign | ((exp + 112) << 23) | (mant << 13);           // rebias 15 -> 127
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absx = u & 0x7FFFFFFF;
    if (absx >= 0x7F800000) return (uint16_t)(sign | 0x7C00 | (absx > 0x7F800000 ? 0x200 : 0));  // inf / NaN
    if (absx >= 0x477FF000) return (uint16_t)(sign | 0x7C00);  // >= 65520 rounds to inf
    if (absx < 0x38800000) {  // below 2^-14: subnormal or zero in f16
        float a;
        memcpy(&a, &absx, 4);
        // a * 2^24 (exact) rounded to nearest even is the subnormal mantissa; 1024 carries
        // into the smallest normal, which is the right bit pattern too.
        float m = nearbyintf(a * 16777216.0f);
        return (uint16_t)(sign | (uint32_t)m);
    }
    uint32_t exp = ((absx >> 23) - 112) << 10;  // rebias 127 -> 15
    uint32_t mant = (absx >> 13) & 0x3FF;
    uint32_t rest = absx & 0x1FFF;  // the 13 bits dropped
    uint32_t h = exp | mant;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;  // a carry into the exponent is right, up to inf
    return (uint16_t)(sign | h);
}

float f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN: keep it, make it quiet
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          // zero, subnormal: signed zero
    u += 0x7FFFu + ((u >> 16) & 1u);  // to nearest, ties to even (a carry into the exponent is right, up to inf)
    return (uint16_t)(u >> 16);
}
