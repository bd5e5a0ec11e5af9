// core/half.h against the definition written with doubles: a 16-bit value is
// sign * 2^e * (1 + m / 2^bits) (or the subnormal form), and rounding to nearest-even picks
// the multiple of the grid spacing 2^(e - bits) nearest to x (the even one on a tie).
// Every f16/bf16 is checked one way, ~1M f32 bit patterns plus every tie and its neighbours
// the other way.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "tests/test_util.h"

static float from_bits(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }

// The value of a 16-bit float with `eb` exponent bits (bias 2^(eb-1)-1) and `mb` mantissa bits.
static double value16(uint16_t h, int eb, int mb) {
    int bias = (1 << (eb - 1)) - 1, e = (h >> mb) & ((1 << eb) - 1), m = h & ((1 << mb) - 1);
    double s = (h >> 15) ? -1.0 : 1.0;
    if (e == (1 << eb) - 1) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp(m, 1 - bias - mb);
    return s * ldexp(1.0 + ldexp(m, -mb), e - bias);
}

// |x| rounded to the nearest multiple of 2^(max(e, emin) - mb), ties to even; e = floor(log2 |x|).
static double round_grid(double ax, int emin, int mb) {
    int k;
    frexp(ax, &k);
    int e = k - 1 < emin ? emin : k - 1;
    double sp = ldexp(1.0, e - mb), q = ax / sp, f = floor(q), d = q - f;
    if (d > 0.5 || (d == 0.5 && fmod(f, 2.0) == 1.0)) f += 1.0;
    return f * sp;
}

// One f32 against both conversions; returns the number of mismatches.
static int check_one(float x) {
    int bad = 0;
    double ax = fabs((double)x);
    uint32_t sign = bits_of(x) >> 31;
    uint16_t h = f16_from_f32(x), b = bf16_from_f32(x);
    if (isnan(x)) {
        bad += !(isnan(f32_from_f16(h)) && (h >> 15) == sign && (h & 0x200));  // quiet NaN, sign kept
        bad += !(isnan(f32_from_bf16(b)) && (b >> 15) == sign && (b & 0x40));
        return bad;
    }
    // f16: 5 exponent bits, 10 mantissa bits; 65520 and above (half-way past 65504) is inf.
    double r16 = ax >= 65520.0 ? INFINITY : ax == 0.0 ? 0.0 : round_grid(ax, -14, 10);
    bad += fabs((double)f32_from_f16(h)) != r16 || (uint32_t)(h >> 15) != sign;
    // bf16: 8 exponent bits, 7 mantissa bits; f32 subnormals become a signed zero; past the
    // largest bf16 (half-way beyond it rounds up) inf.
    double rb = ax < 0x1p-126 ? 0.0 : round_grid(ax, -126, 7);
    if (rb >= 0x1p128) rb = INFINITY;
    bad += fabs((double)f32_from_bf16(b)) != rb || (uint32_t)(b >> 15) != sign;
    return bad;
}

int main(void) {
    // 16 -> 32: every value.
    int bad16 = 0, badb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        double v16 = value16((uint16_t)h, 5, 10), vb = value16((uint16_t)h, 8, 7);
        float f = f32_from_f16((uint16_t)h), g = f32_from_bf16((uint16_t)h);
        bad16 += isnan(v16) ? !isnan(f) : ((double)f != v16 || !signbit(f) != !signbit(v16));
        badb += isnan(vb) ? !isnan(g) : ((double)g != vb || !signbit(g) != !signbit(vb));
    }
    CHECK(bad16 == 0, "f32_from_f16: %d of 65536 values wrong", bad16);
    CHECK(badb == 0, "f32_from_bf16: %d of 65536 values wrong", badb);

    // 32 -> 16: a spread of bit patterns (both signs, every exponent), then each tie between
    // neighbouring 16-bit values and the f32 just below and above it.
    int bad = 0;
    long n = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4099, n++) bad += check_one(from_bits((uint32_t)u));
    for (uint32_t h = 0; h < 0x7C00; h++) {  // finite positive f16, then bf16 with the same bits
        for (int kind = 0; kind < 2; kind++) {
            double lo = kind ? value16((uint16_t)h, 8, 7) : value16((uint16_t)h, 5, 10);
            double hi = kind ? value16((uint16_t)(h + 1), 8, 7) : value16((uint16_t)(h + 1), 5, 10);
            if (isinf(hi)) hi = kind ? 0x1p128 : 65536.0;  // the tie at the top rounds to inf
            float t = (float)((lo + hi) / 2);
            if ((double)t != (lo + hi) / 2) continue;  // not an f32 (bf16 ties always are; f16 too)
            float around[3] = {nextafterf(t, 0.0f), t, nextafterf(t, INFINITY)};
            for (int i = 0; i < 3; i++, n += 2) bad += check_one(around[i]) + check_one(-around[i]);
        }
    }
    CHECK(bad == 0, "f16_from_f32 / bf16_from_f32: %d mismatches in %ld values", bad, n);
    // Spot values (IEEE 754 binary16 tables): the largest f16, the smallest subnormal, ties.
    CHECK(f16_from_f32(65504.0f) == 0x7BFF && f16_from_f32(65519.99f) == 0x7BFF && f16_from_f32(65520.0f) == 0x7C00,
          "f16 overflow edge");
    CHECK(f16_from_f32(0x1p-24f) == 0x0001 && f16_from_f32(0x1p-25f) == 0x0000 && f16_from_f32(0x1.8p-24f) == 0x0002,
          "f16 subnormal ties");
    CHECK(f16_from_f32(-0.0f) == 0x8000 && bf16_from_f32(-0.0f) == 0x8000, "negative zero");
    CHECK(bf16_from_f32(0x1p-130f) == 0x0000 && bf16_from_f32(-0x1p-130f) == 0x8000, "bf16: f32 subnormal to zero");
    return test_report("test_half");
}
