// JPEG sample reconstruction, as libjpeg(-turbo) does it with its defaults:
// dequantization and the "islow" integer IDCT (jidctint.c, same constants and
// rounding), "fancy" triangle upsampling of h2v1/h1v2/h2v2 chroma (jdsample.c),
// box replication for other factors, and YCbCr -> RGB with jdcolor.c's tables.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/jpeg_priv.h"

// jidctint.c: CONST_BITS 13, PASS1_BITS 2, FIX(x) = round(x * 2^13).
#define CONST_BITS 13
#define PASS1_BITS 2
#define FIX_0_298631336 2446
#define FIX_0_390180644 3196
#define FIX_0_541196100 4433
#define FIX_0_765366865 6270
#define FIX_0_899976223 7373
#define FIX_1_175875602 9633
#define FIX_1_501321110 12299
#define FIX_1_847759065 15137
#define FIX_1_961570560 16069
#define FIX_2_053119869 16819
#define FIX_2_562915447 20995
#define FIX_3_072711026 25172

// Arithmetic right shift (libjpeg's RIGHT_SHIFT), written so that it does not depend on
// how the compiler shifts negative numbers.
static int64_t asr(int64_t x, int n) { return x >= 0 ? x >> n : -((-x - 1) >> n) - 1; }
static int64_t descale(int64_t x, int n) { return asr(x + ((int64_t)1 << (n - 1)), n); }

// libjpeg's post-IDCT range limit: the value is taken modulo 1024 as a signed 10-bit
// number, then clamped to 0..255 after adding 128 (jdmaster.c prepare_range_limit_table).
static uint8_t range_limit(int64_t x) {
    int m = (int)(x & 1023);
    if (m >= 512) m -= 1024;
    m += 128;
    return (uint8_t)(m < 0 ? 0 : m > 255 ? 255 : m);
}

// The even and odd parts of one 8-point 1-D IDCT (jidctint.c, both passes); out[i] are
// the un-descaled sums of outputs 0..7.
static void idct_1d(int64_t i0, int64_t i1, int64_t i2, int64_t i3, int64_t i4, int64_t i5, int64_t i6, int64_t i7,
                    int64_t out[8]) {
    // even part: the rotator is sqrt(2)*c(-6)
    int64_t z1 = (i2 + i6) * FIX_0_541196100;
    int64_t tmp2 = z1 + i6 * -FIX_1_847759065;
    int64_t tmp3 = z1 + i2 * FIX_0_765366865;
    int64_t tmp0 = (i0 + i4) * (1 << CONST_BITS);
    int64_t tmp1 = (i0 - i4) * (1 << CONST_BITS);
    int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    // odd part
    tmp0 = i7, tmp1 = i5, tmp2 = i3, tmp3 = i1;
    z1 = tmp0 + tmp3;
    int64_t z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
    int64_t z5 = (z3 + z4) * FIX_1_175875602;  // sqrt(2) * c3
    tmp0 *= FIX_0_298631336;                    // sqrt(2) * (-c1+c3+c5-c7)
    tmp1 *= FIX_2_053119869;                    // sqrt(2) * ( c1+c3-c5+c7)
    tmp2 *= FIX_3_072711026;                    // sqrt(2) * ( c1+c3+c5-c7)
    tmp3 *= FIX_1_501321110;                    // sqrt(2) * ( c1+c3-c5-c7)
    z1 *= -FIX_0_899976223;                     // sqrt(2) * ( c7-c3)
    z2 *= -FIX_2_562915447;                     // sqrt(2) * (-c1-c3)
    z3 *= -FIX_1_961570560;                     // sqrt(2) * (-c3-c5)
    z4 *= -FIX_0_390180644;                     // sqrt(2) * ( c5-c3)
    z3 += z5;
    z4 += z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    out[0] = tmp10 + tmp3, out[7] = tmp10 - tmp3;
    out[1] = tmp11 + tmp2, out[6] = tmp11 - tmp2;
    out[2] = tmp12 + tmp1, out[5] = tmp12 - tmp1;
    out[3] = tmp13 + tmp0, out[4] = tmp13 - tmp0;
}

// jpeg_idct_islow: columns into a workspace scaled by 2^PASS1_BITS, then rows. The
// shortcuts for an all-zero AC column (DC << PASS1_BITS) and row (DC descaled) are those of
// jidctint.c; they give the numbers of the full transform, only faster.
static void idct_islow(const int16_t *coef, const uint16_t *q, uint8_t *out, size_t stride) {
    int64_t ws[64], o[8];
    for (int x = 0; x < 8; x++) {
        const int16_t *c = coef + x;
        if (!(c[8] | c[16] | c[24] | c[32] | c[40] | c[48] | c[56])) {
            int64_t dc = (int64_t)c[0] * q[x] * (1 << PASS1_BITS);
            for (int y = 0; y < 8; y++) ws[y * 8 + x] = (int)dc;
            continue;
        }
        int64_t in[8];
        for (int y = 0; y < 8; y++) in[y] = (int64_t)coef[y * 8 + x] * q[y * 8 + x];
        idct_1d(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], o);
        for (int y = 0; y < 8; y++) ws[y * 8 + x] = (int)descale(o[y], CONST_BITS - PASS1_BITS);  // int workspace
    }
    for (int y = 0; y < 8; y++) {
        const int64_t *w = ws + y * 8;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            uint8_t v = range_limit(descale(w[0], PASS1_BITS + 3));
            memset(out + (size_t)y * stride, v, 8);
            continue;
        }
        idct_1d(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], o);
        for (int x = 0; x < 8; x++) out[(size_t)y * stride + x] = range_limit(descale(o[x], CONST_BITS + PASS1_BITS + 3));
    }
}

enum { UP_FULL, UP_BOX, UP_H2V1, UP_H1V2, UP_H2V2 };

// jdsample.c jinit_upsampler with do_fancy_upsampling (the default).
static int up_method(const JpegDecoder *d, const JpegComp *c) {
    int he = d->hmax / c->h, ve = d->vmax / c->v;
    if (he == 1 && ve == 1) return UP_FULL;
    if (he == 2 && ve == 1) return c->wd > 2 ? UP_H2V1 : UP_BOX;
    if (he == 1 && ve == 2) return UP_H1V2;
    if (he == 2 && ve == 2) return c->wd > 2 ? UP_H2V2 : UP_BOX;
    return UP_BOX;
}

// Output row y of component c at full resolution (width d->width). Rows above the first
// and below the last (c->ht) repeat the edge row, as libjpeg's context rows do.
static void upsample_row(const JpegDecoder *d, const JpegComp *c, int method, int y, uint8_t *out) {
    size_t stride = (size_t)c->bw * 8;
    int W = d->width, last = c->wd - 1;
    if (method == UP_FULL) {
        memcpy(out, c->plane + (size_t)y * stride, (size_t)W);
        return;
    }
    if (method == UP_BOX) {
        int he = d->hmax / c->h, ve = d->vmax / c->v;
        const uint8_t *r = c->plane + (size_t)(y / ve) * stride;
        for (int x = 0; x < W; x++) out[x] = r[x / he];
        return;
    }
    if (method == UP_H2V1) {
        // 3/4 nearer + 1/4 further sample, biases 1 and 2 (h2v1_fancy_upsample)
        const uint8_t *r = c->plane + (size_t)y * stride;
        for (int x = 0; x < W; x++) {
            int j = x >> 1;
            if (x & 1) out[x] = (uint8_t)((3 * r[j] + r[j < last ? j + 1 : last] + 2) >> 2);
            else out[x] = (uint8_t)((3 * r[j] + r[j > 0 ? j - 1 : 0] + 1) >> 2);
        }
        return;
    }
    int iy = y >> 1, ny = (y & 1) ? (iy + 1 < c->ht ? iy + 1 : c->ht - 1) : (iy > 0 ? iy - 1 : 0);
    const uint8_t *r0 = c->plane + (size_t)iy * stride, *r1 = c->plane + (size_t)ny * stride;
    if (method == UP_H1V2) {
        // vertical only, biases 1 (upper output row) and 2 (h1v2_fancy_upsample)
        int bias = (y & 1) ? 2 : 1;
        for (int x = 0; x < W; x++) out[x] = (uint8_t)((3 * r0[x] + r1[x] + bias) >> 2);
        return;
    }
    // h2v2: column sums 3*nearer row + further row, then horizontally with biases 8 and 7
    for (int x = 0; x < W; x++) {
        int j = x >> 1, k = (x & 1) ? (j < last ? j + 1 : last) : (j > 0 ? j - 1 : 0);
        int cj = 3 * r0[j] + r1[j], ck = 3 * r0[k] + r1[k];
        out[x] = (uint8_t)((3 * cj + ck + ((x & 1) ? 7 : 8)) >> 4);
    }
}

// jdcolor.c build_ycc_rgb_table: SCALEBITS 16, FIX(x) = round(x * 2^16).
#define SCALEBITS 16
#define ONE_HALF ((int64_t)1 << (SCALEBITS - 1))
#define FIX16(x) ((int64_t)((x) * (1 << SCALEBITS) + 0.5))

static uint8_t clamp255(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

int jpeg_output(JpegDecoder *d, uint8_t *out) {
    int nc = d->ncomp, W = d->width, H = d->height;
    for (int i = 0; i < nc; i++) {
        JpegComp *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        c->plane = (uint8_t *)malloc(stride * (size_t)c->bh * 8);
        if (!c->plane) return sd_errorf("%s: out of memory for a %dx%d JPEG", d->name, W, H);
        // only the blocks holding samples of the image (the rest of an MCU's padding is unused)
        int nbx = (c->wd + 7) / 8, nby = (c->ht + 7) / 8;
        for (int by = 0; by < nby; by++)
            for (int bx = 0; bx < nbx; bx++)
                idct_islow(c->coef + ((size_t)by * c->bw + bx) * 64, c->quant,
                           c->plane + (size_t)by * 8 * stride + (size_t)bx * 8, stride);
    }
    int32_t cr_r[256], cb_b[256];
    int64_t cr_g[256], cb_g[256];
    for (int i = 0; i < 256; i++) {
        int64_t x = i - 128;
        cr_r[i] = (int32_t)asr(FIX16(1.40200) * x + ONE_HALF, SCALEBITS);
        cb_b[i] = (int32_t)asr(FIX16(1.77200) * x + ONE_HALF, SCALEBITS);
        cr_g[i] = -FIX16(0.71414) * x;
        cb_g[i] = -FIX16(0.34414) * x + ONE_HALF;
    }
    // RGB when an Adobe marker says transform 0, or without JFIF/Adobe the ids are 'R','G','B'
    // (jdapimin.c default_decompress_parms); YCbCr otherwise.
    int rgb = nc == 3 && !d->saw_jfif &&
              ((d->saw_adobe && d->adobe_transform == 0) ||
               (!d->saw_adobe && d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B'));
    uint8_t *row = (uint8_t *)malloc((size_t)W * 3);
    if (!row) return sd_errorf("%s: out of memory for a %dx%d JPEG", d->name, W, H);
    int method[3];
    for (int i = 0; i < nc; i++) method[i] = up_method(d, &d->comp[i]);
    for (int y = 0; y < H; y++) {
        uint8_t *o = out + (size_t)y * W * nc;
        if (nc == 1) {
            upsample_row(d, &d->comp[0], method[0], y, o);
            continue;
        }
        for (int i = 0; i < 3; i++) upsample_row(d, &d->comp[i], method[i], y, row + (size_t)i * W);
        for (int x = 0; x < W; x++) {
            int Y = row[x], cb = row[W + x], cr = row[2 * W + x];
            if (rgb) {
                o[3 * x] = (uint8_t)Y, o[3 * x + 1] = (uint8_t)cb, o[3 * x + 2] = (uint8_t)cr;
                continue;
            }
            o[3 * x] = clamp255(Y + cr_r[cr]);
            o[3 * x + 1] = clamp255(Y + (int)asr(cb_g[cb] + cr_g[cr], SCALEBITS));
            o[3 * x + 2] = clamp255(Y + cb_b[cb]);
        }
    }
    free(row);
    return 0;
}
