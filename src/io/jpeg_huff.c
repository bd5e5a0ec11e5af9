// JPEG entropy decoding (T.81 annex F and G, Huffman only): the bit reader over
// byte-stuffed data, canonical Huffman tables, and the block decoders of
// sequential scans and of the four progressive scan kinds (DC/AC, first/refine).
// Every block's coefficients land in the component's coefficient buffer; the
// IDCT runs once all scans are read (jpeg_idct.c).
#include <string.h>

#include "core/error.h"
#include "io/jpeg_priv.h"

const uint8_t jpeg_zigzag[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

// Codes are assigned in order of length (T.81 C.2); the all-ones code of a length is
// not allowed (libjpeg's JERR_BAD_HUFF_TABLE test).
int jpeg_build_huff(JpegDecoder *d, JpegHuff *t, const uint8_t *counts, const uint8_t *vals, int tc, int th) {
    memset(t, 0, sizeof(*t));
    int k = 0, code = 0;
    for (int l = 1; l <= 16; l++) {
        t->valoff[l] = k - code;
        t->maxcode[l] = -1;
        if (counts[l - 1]) {
            for (int i = 0; i < counts[l - 1]; i++, k++, code++) {
                if (code + 1 >= 1 << l)
                    return sd_errorf("%s: DHT: %s table %d has more codes of length %d than fit", d->name,
                                     tc ? "AC" : "DC", th, l);
                if (tc == 0 && vals[k] > 15)
                    return sd_errorf("%s: DHT: DC table %d holds the value %d (at most 15)", d->name, th, vals[k]);
                if (l <= 9)
                    for (int f = 0; f < 1 << (9 - l); f++) t->look[(code << (9 - l)) | f] = (uint16_t)(l << 8 | vals[k]);
            }
            t->maxcode[l] = code - 1;
        }
        code <<= 1;
    }
    t->nvals = k;
    memcpy(t->vals, vals, (size_t)k);
    t->defined = 1;
    return 0;
}

// Keeps at least 25 bits in the buffer. At a marker (or the end of the data) zero
// bits are supplied, as libjpeg does; consuming them is an error (d->padded_bits).
static void fill(JpegDecoder *d) {
    while (d->bitcnt <= 24) {
        uint32_t b = 0;
        if (!d->hit_marker) {
            if (d->pos >= d->len) {
                d->hit_marker = 1;
            } else if (d->data[d->pos] != 0xFF) {
                b = d->data[d->pos++];
            } else if (d->pos + 1 < d->len && d->data[d->pos + 1] == 0x00) {
                b = 0xFF;  // stuffed byte
                d->pos += 2;
            } else {
                d->hit_marker = 1;  // pos stays on the marker's 0xFF
            }
        }
        if (d->hit_marker) d->padded_bits += 8;
        d->bitbuf |= b << (24 - d->bitcnt);
        d->bitcnt += 8;
    }
}

static void consume(JpegDecoder *d, int n) {
    d->bitbuf <<= n;
    d->bitcnt -= n;
    if (d->bitcnt < d->padded_bits) {
        d->overrun = 1;
        d->padded_bits = d->bitcnt;
    }
}

static int get_bits(JpegDecoder *d, int n) {
    if (n == 0) return 0;
    fill(d);
    int v = (int)(d->bitbuf >> (32 - n));
    consume(d, n);
    return v;
}

// T.81 F.2.2.1 EXTEND: an s-bit magnitude category value to a signed number.
static int extend(int v, int s) { return v < (1 << (s - 1)) ? v - (1 << s) + 1 : v; }

// One Huffman symbol (0..255), or -1 with an error for a code no table entry has.
static int huff(JpegDecoder *d, const JpegHuff *t) {
    fill(d);
    uint16_t e = t->look[d->bitbuf >> 23];
    if (e) {
        consume(d, e >> 8);
        return e & 255;
    }
    for (int l = 10; l <= 16; l++) {
        int32_t code = (int32_t)(d->bitbuf >> (32 - l));
        if (code <= t->maxcode[l]) {
            int32_t i = t->valoff[l] + code;
            if (i < 0 || i >= t->nvals) break;
            consume(d, l);
            return t->vals[i];
        }
    }
    return sd_errorf("%s: invalid Huffman code in the scan data (corrupt file)", d->name);
}

static int coef_range(JpegDecoder *d, int v) {
    if (v < -32768 || v > 32767) return sd_errorf("%s: DCT coefficient %d out of range (corrupt file)", d->name, v);
    return 0;
}

static int decode_dc(JpegDecoder *d, JpegComp *c) {
    int s = huff(d, &d->dc[c->td]);
    if (s < 0) return -1;
    if (s > 15) return sd_errorf("%s: DC magnitude category %d (corrupt file)", d->name, s);
    c->dc_pred += s ? extend(get_bits(d, s), s) : 0;
    return coef_range(d, c->dc_pred);
}

// Sequential (baseline / extended): all 64 coefficients of a block (F.2.2).
static int block_sequential(JpegDecoder *d, JpegComp *c, int16_t *blk) {
    memset(blk, 0, 64 * sizeof(int16_t));
    if (decode_dc(d, c)) return -1;
    blk[0] = (int16_t)c->dc_pred;
    const JpegHuff *t = &d->ac[c->ta];
    for (int k = 1; k < 64; k++) {
        int rs = huff(d, t);
        if (rs < 0) return -1;
        int r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            if (k > 63) return sd_errorf("%s: AC run past the end of a block (corrupt file)", d->name);
            blk[jpeg_zigzag[k]] = (int16_t)extend(get_bits(d, s), s);  // |v| < 2^15
        } else {
            if (r != 15) break;  // EOB
            k += 15;             // ZRL: 16 zeros
        }
    }
    return 0;
}

// Progressive DC, first scan (G.1.2.1): the DC value shifted left by Al.
static int block_dc_first(JpegDecoder *d, JpegComp *c, int16_t *blk) {
    if (decode_dc(d, c)) return -1;
    int v = c->dc_pred * (1 << d->al);
    if (coef_range(d, v)) return -1;
    blk[0] = (int16_t)v;
    return 0;
}

// Progressive DC, refinement (G.1.2.1): one more bit, no Huffman code.
static int block_dc_refine(JpegDecoder *d, int16_t *blk) {
    if (get_bits(d, 1)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
    return 0;
}

// Progressive AC, first scan (G.1.2.2): band Ss..Se with end-of-band runs.
static int block_ac_first(JpegDecoder *d, const JpegComp *c, int16_t *blk) {
    if (d->eobrun > 0) {
        d->eobrun--;
        return 0;
    }
    const JpegHuff *t = &d->ac[c->ta];
    for (int k = d->ss; k <= d->se; k++) {
        int rs = huff(d, t);
        if (rs < 0) return -1;
        int r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            if (k > d->se) return sd_errorf("%s: AC run past the end of the band (corrupt file)", d->name);
            int v = extend(get_bits(d, s), s) * (1 << d->al);
            if (coef_range(d, v)) return -1;
            blk[jpeg_zigzag[k]] = (int16_t)v;
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = (1 << r) - 1;  // this block is the first of the run
            if (r) d->eobrun += get_bits(d, r);
            break;
        }
    }
    return 0;
}

// A correction bit for a coefficient already nonzero (G.1.2.3): magnitude += 2^Al.
static int refine_nonzero(JpegDecoder *d, int16_t *coef) {
    if (get_bits(d, 1) && (*coef & (1 << d->al)) == 0) {
        int v = *coef + (*coef >= 0 ? 1 << d->al : -(1 << d->al));
        if (coef_range(d, v)) return -1;
        *coef = (int16_t)v;
    }
    return 0;
}

// Progressive AC, refinement (G.1.2.3), in libjpeg's order (jdphuff.c decode_mcu_AC_refine).
static int block_ac_refine(JpegDecoder *d, const JpegComp *c, int16_t *blk) {
    int k = d->ss;
    if (d->eobrun == 0) {
        const JpegHuff *t = &d->ac[c->ta];
        for (; k <= d->se; k++) {
            int rs = huff(d, t);
            if (rs < 0) return -1;
            int r = rs >> 4, s = rs & 15, v = 0;
            if (s) {
                if (s != 1) return sd_errorf("%s: refinement scan codes a magnitude of %d bits (corrupt file)", d->name, s);
                v = get_bits(d, 1) ? 1 << d->al : -(1 << d->al);
            } else if (r != 15) {
                d->eobrun = 1 << r;
                if (r) d->eobrun += get_bits(d, r);
                break;
            }
            // skip r zero coefficients (refining the nonzero ones passed), then place v
            for (; k <= d->se; k++) {
                int16_t *coef = blk + jpeg_zigzag[k];
                if (*coef != 0) {
                    if (refine_nonzero(d, coef)) return -1;
                } else if (--r < 0) {
                    break;
                }
            }
            if (v) {
                if (k > d->se) return sd_errorf("%s: refinement past the end of the band (corrupt file)", d->name);
                blk[jpeg_zigzag[k]] = (int16_t)v;
            }
        }
    }
    if (d->eobrun > 0) {
        for (; k <= d->se; k++)
            if (blk[jpeg_zigzag[k]] != 0 && refine_nonzero(d, blk + jpeg_zigzag[k])) return -1;
        d->eobrun--;
    }
    return 0;
}

static int decode_block(JpegDecoder *d, JpegComp *c, int bx, int by) {
    int16_t *blk = c->coef + ((size_t)by * (size_t)c->bw + (size_t)bx) * 64;
    if (!d->progressive) return block_sequential(d, c, blk);
    if (d->ss == 0) return d->ah == 0 ? block_dc_first(d, c, blk) : block_dc_refine(d, blk);
    return d->ah == 0 ? block_ac_first(d, c, blk) : block_ac_refine(d, c, blk);
}

// Next marker at or after d->pos (bytes before it are skipped, as libjpeg does after
// a warning); returns its code, or -1 at the end of the data. d->pos is left on the 0xFF.
static int find_marker(JpegDecoder *d) {
    while (d->pos + 1 < d->len) {
        if (d->data[d->pos] == 0xFF && d->data[d->pos + 1] != 0x00 && d->data[d->pos + 1] != 0xFF)
            return d->data[d->pos + 1];
        d->pos++;
    }
    d->pos = d->len;
    return -1;
}

static void reset_bits(JpegDecoder *d) {
    d->bitbuf = 0;
    d->bitcnt = 0;
    d->hit_marker = 0;
    d->padded_bits = 0;
    d->overrun = 0;
    d->eobrun = 0;
    for (int i = 0; i < d->nscomp; i++) d->comp[d->scomp[i]].dc_pred = 0;
}

int jpeg_decode_scan(JpegDecoder *d) {
    reset_bits(d);
    JpegComp *c0 = &d->comp[d->scomp[0]];
    // A one-component scan codes the component's own blocks, one per MCU (A.2.2);
    // an interleaved scan codes h x v blocks of each component per MCU (A.2.3).
    int single = d->nscomp == 1;
    int mx = single ? (c0->wd + 7) / 8 : d->mcux, my = single ? (c0->ht + 7) / 8 : d->mcuy;
    int todo = d->restart_interval, expect = 0;
    for (int y = 0; y < my; y++)
        for (int x = 0; x < mx; x++) {
            if (d->restart_interval && todo == 0) {
                // RSTm: byte aligned; predictors and end-of-band runs start over
                int m = find_marker(d);
                if (m != 0xD0 + expect)
                    return sd_errorf("%s: expected restart marker RST%d before MCU %d of the scan, found %s%02X", d->name,
                                     expect, y * mx + x, m < 0 ? "the end of the data" : "marker FF",
                                     m < 0 ? 0 : m);
                d->pos += 2;
                expect = (expect + 1) & 7;
                todo = d->restart_interval;
                reset_bits(d);
            }
            if (single) {
                if (decode_block(d, c0, x, y)) return -1;
            } else {
                for (int i = 0; i < d->nscomp; i++) {
                    JpegComp *c = &d->comp[d->scomp[i]];
                    for (int v = 0; v < c->v; v++)
                        for (int h = 0; h < c->h; h++)
                            if (decode_block(d, c, x * c->h + h, y * c->v + v)) return -1;
                }
            }
            if (d->overrun)
                return sd_errorf("%s: the scan data ends at MCU %d of %d (truncated or corrupt file)", d->name,
                                 y * mx + x, mx * my);
            todo--;
        }
    for (int i = 0; i < d->nscomp; i++) d->comp[d->scomp[i]].scanned++;
    find_marker(d);
    return 0;
}
