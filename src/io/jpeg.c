// JPEG reader: markers, frame and scan headers, and the decode driver.
//
// File = SOI (FFD8), then marker segments: FFxx + 2-byte big-endian length
// (counting itself) + payload. Tables (DQT, DHT), the restart interval (DRI) and
// skipped segments (APPn, COM) may come before the frame header (SOFn) and
// between scans; each SOS header is followed by entropy-coded data that runs to
// the next marker (0xFF bytes in it are stuffed as FF 00). EOI (FFD9) ends it.
// Coefficients of all scans are gathered per component (jpeg_huff.c), then
// turned into samples once (jpeg_idct.c).
#include "io/jpeg.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"
#include "io/jpeg_priv.h"

#define JPEG_MAX_SCANS 1000

static int be16(const uint8_t *p) { return p[0] << 8 | p[1]; }

static const char *sof_kind(int m) {
    switch (m) {
    case 0xC3: return "lossless (SOF3)";
    case 0xC5: return "hierarchical, differential sequential (SOF5)";
    case 0xC6: return "hierarchical, differential progressive (SOF6)";
    case 0xC7: return "hierarchical, differential lossless (SOF7)";
    case 0xC9: return "arithmetic-coded sequential (SOF9)";
    case 0xCA: return "arithmetic-coded progressive (SOF10)";
    case 0xCB: return "arithmetic-coded lossless (SOF11)";
    case 0xCD: return "arithmetic-coded hierarchical sequential (SOF13)";
    case 0xCE: return "arithmetic-coded hierarchical progressive (SOF14)";
    case 0xCF: return "arithmetic-coded hierarchical lossless (SOF15)";
    default: return NULL;
    }
}

// DQT (B.2.4.1): Pq/Tq, then 64 values in zigzag order, 8 or 16 bits each.
static int parse_dqt(JpegDecoder *d, const uint8_t *p, int n) {
    while (n > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15, size = pq ? 128 : 64;
        if (pq > 1 || tq > 3) return sd_errorf("%s: DQT: invalid precision %d / table %d", d->name, pq, tq);
        if (n < 1 + size) return sd_errorf("%s: DQT: table %d runs past its segment", d->name, tq);
        for (int k = 0; k < 64; k++) d->qt[tq][jpeg_zigzag[k]] = (uint16_t)(pq ? be16(p + 1 + 2 * k) : p[1 + k]);
        d->qt_defined[tq] = 1;
        p += 1 + size, n -= 1 + size;
    }
    return 0;
}

// DHT (B.2.4.2): Tc/Th, 16 code counts, then the values.
static int parse_dht(JpegDecoder *d, const uint8_t *p, int n) {
    while (n > 0) {
        if (n < 17) return sd_errorf("%s: DHT: table header runs past its segment", d->name);
        int tc = p[0] >> 4, th = p[0] & 15, total = 0;
        if (tc > 1 || th > 3) return sd_errorf("%s: DHT: invalid class %d / table %d", d->name, tc, th);
        for (int l = 0; l < 16; l++) total += p[1 + l];
        if (total > 256) return sd_errorf("%s: DHT: table %d has %d codes (at most 256)", d->name, th, total);
        if (n < 17 + total) return sd_errorf("%s: DHT: table %d runs past its segment", d->name, th);
        if (jpeg_build_huff(d, tc ? &d->ac[th] : &d->dc[th], p + 1, p + 17, tc, th)) return -1;
        p += 17 + total, n -= 17 + total;
    }
    return 0;
}

// SOFn (B.2.2): P, Y, X, Nf, then id, HiVi, Tq per component.
static int parse_sof(JpegDecoder *d, int m, const uint8_t *p, int n) {
    if (d->sof) return sd_errorf("%s: marker SOF%d: a second frame header (multiple frames are not supported)", d->name, m - 0xC0);
    if (n < 6) return sd_errorf("%s: SOF%d: segment of %d bytes is too short", d->name, m - 0xC0, n);
    int prec = p[0], h = be16(p + 1), w = be16(p + 3), nc = p[5];
    if (prec != 8)
        return sd_errorf("%s: SOF%d: %d-bit samples are not supported (8-bit JPEG only)", d->name, m - 0xC0, prec);
    if (nc == 4) return sd_errorf("%s: SOF%d: 4 components (CMYK/YCCK) are not supported", d->name, m - 0xC0);
    if (nc != 1 && nc != 3) return sd_errorf("%s: SOF%d: %d components (1 or 3 are supported)", d->name, m - 0xC0, nc);
    if (n != 6 + 3 * nc) return sd_errorf("%s: SOF%d: segment of %d bytes for %d components", d->name, m - 0xC0, n, nc);
    if (h == 0) return sd_errorf("%s: SOF%d: height 0 (given later by a DNL marker) is not supported", d->name, m - 0xC0);
    if (w == 0) return sd_errorf("%s: SOF%d: width 0", d->name, m - 0xC0);
    if ((uint64_t)w * (uint64_t)h > JPEG_MAX_PIXELS)
        return sd_errorf("%s: SOF%d: %dx%d pixels exceeds the limit of %llu", d->name, m - 0xC0, w, h,
                         (unsigned long long)JPEG_MAX_PIXELS);
    d->sof = m, d->progressive = m == 0xC2, d->width = w, d->height = h, d->ncomp = nc;
    d->hmax = d->vmax = 1;
    for (int i = 0; i < nc; i++) {
        JpegComp *c = &d->comp[i];
        c->id = p[6 + 3 * i], c->h = p[7 + 3 * i] >> 4, c->v = p[7 + 3 * i] & 15, c->tq = p[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4 || c->tq > 3)
            return sd_errorf("%s: SOF%d: component %d has sampling %dx%d, table %d (1..4, 1..4, 0..3)", d->name,
                             m - 0xC0, c->id, c->h, c->v, c->tq);
        for (int j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return sd_errorf("%s: SOF%d: component id %d given twice", d->name, m - 0xC0, c->id);
        if (c->h > d->hmax) d->hmax = c->h;
        if (c->v > d->vmax) d->vmax = c->v;
    }
    d->mcux = (w + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (h + 8 * d->vmax - 1) / (8 * d->vmax);
    int blocks_per_mcu = 0;
    for (int i = 0; i < nc; i++) {
        JpegComp *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return sd_errorf("%s: SOF%d: component %d sampling %dx%d is not a divisor of %dx%d (fractional "
                             "upsampling is not supported)", d->name, m - 0xC0, c->id, c->h, c->v, d->hmax, d->vmax);
        c->wd = (int)(((int64_t)w * c->h + d->hmax - 1) / d->hmax);
        c->ht = (int)(((int64_t)h * c->v + d->vmax - 1) / d->vmax);
        c->bw = d->mcux * c->h, c->bh = d->mcuy * c->v;
        blocks_per_mcu += c->h * c->v;
    }
    if (nc > 1 && blocks_per_mcu > 10)
        return sd_errorf("%s: SOF%d: %d blocks per MCU (at most 10)", d->name, m - 0xC0, blocks_per_mcu);
    // A sequential scan codes each block with at least 2 bits: a much shorter file is truncated.
    uint64_t blocks = 0;
    for (int i = 0; i < nc; i++) blocks += (uint64_t)((d->comp[i].wd + 7) / 8) * (uint64_t)((d->comp[i].ht + 7) / 8);
    if (!d->progressive && blocks / 4 > d->len)
        return sd_errorf("%s: SOF%d: %dx%d pixels cannot be coded in a file of %zu bytes (truncated)", d->name,
                         m - 0xC0, w, h, d->len);
    for (int i = 0; i < nc; i++) {
        JpegComp *c = &d->comp[i];
        c->coef = (int16_t *)calloc((size_t)c->bw * (size_t)c->bh * 64, sizeof(int16_t));
        if (!c->coef) return sd_errorf("%s: out of memory for the coefficients of a %dx%d JPEG", d->name, w, h);
    }
    return 0;
}

// SOS (B.2.3): Ns, then id, TdTa per component, then Ss, Se, AhAl.
static int parse_sos(JpegDecoder *d, const uint8_t *p, int n) {
    if (!d->sof) return sd_errorf("%s: marker SOS before the frame header (SOFn)", d->name);
    if (n < 1) return sd_errorf("%s: SOS: empty segment", d->name);
    int ns = p[0];
    if (ns < 1 || ns > d->ncomp || n != 4 + 2 * ns)
        return sd_errorf("%s: SOS: %d components in a segment of %d bytes (frame has %d)", d->name, ns, n, d->ncomp);
    d->nscomp = ns;
    int blocks = 0;
    for (int i = 0; i < ns; i++) {
        int id = p[1 + 2 * i], k = 0;
        while (k < d->ncomp && d->comp[k].id != id) k++;
        if (k == d->ncomp) return sd_errorf("%s: SOS: component id %d is not in the frame", d->name, id);
        for (int j = 0; j < i; j++)
            if (d->scomp[j] == k) return sd_errorf("%s: SOS: component id %d given twice", d->name, id);
        d->scomp[i] = k;
        JpegComp *c = &d->comp[k];
        c->td = p[2 + 2 * i] >> 4, c->ta = p[2 + 2 * i] & 15;
        if (c->td > 3 || c->ta > 3) return sd_errorf("%s: SOS: Huffman table %d/%d (0..3)", d->name, c->td, c->ta);
        blocks += c->h * c->v;
    }
    if (ns > 1 && blocks > 10) return sd_errorf("%s: SOS: %d blocks per MCU (at most 10)", d->name, blocks);
    d->ss = p[1 + 2 * ns], d->se = p[2 + 2 * ns], d->ah = p[3 + 2 * ns] >> 4, d->al = p[3 + 2 * ns] & 15;
    if (d->progressive) {
        // G.1.1.1.1: a DC scan (Ss = 0) has Se = 0; an AC scan holds one component
        if (d->ss > d->se || d->se > 63 || (d->ss == 0 && d->se != 0) || (d->ss > 0 && ns != 1) || d->al > 13 ||
            (d->ah != 0 && d->al != d->ah - 1))
            return sd_errorf("%s: SOS: invalid progressive parameters Ss=%d Se=%d Ah=%d Al=%d", d->name, d->ss, d->se,
                             d->ah, d->al);
    } else {
        d->ss = 0, d->se = 63, d->ah = d->al = 0;  // ignored in sequential mode, as libjpeg
    }
    for (int i = 0; i < ns; i++) {
        JpegComp *c = &d->comp[d->scomp[i]];
        int need_dc = !d->progressive || (d->ss == 0 && d->ah == 0), need_ac = !d->progressive || d->ss > 0;
        if (need_dc && !d->dc[c->td].defined)
            return sd_errorf("%s: SOS: DC Huffman table %d of component %d is not defined", d->name, c->td, c->id);
        if (need_ac && !d->ac[c->ta].defined)
            return sd_errorf("%s: SOS: AC Huffman table %d of component %d is not defined", d->name, c->ta, c->id);
        // quantization tables are latched at the component's first scan (libjpeg jdinput.c)
        if (!c->quant_latched) {
            if (!d->qt_defined[c->tq])
                return sd_errorf("%s: SOS: quantization table %d of component %d is not defined", d->name, c->tq, c->id);
            memcpy(c->quant, d->qt[c->tq], sizeof(c->quant));
            c->quant_latched = 1;
        }
    }
    return 0;
}

static void decoder_free(JpegDecoder *d) {
    for (int i = 0; i < 3; i++) {
        free(d->comp[i].coef);
        free(d->comp[i].plane);
        d->comp[i].coef = NULL, d->comp[i].plane = NULL;
    }
}

static int decode(JpegDecoder *d, JpegImage *img) {
    if (d->len < 4 || d->data[0] != 0xFF || d->data[1] != 0xD8) return sd_errorf("%s: not a JPEG file (no SOI marker)", d->name);
    d->pos = 2;
    int scans = 0;
    for (;;) {
        // markers may be preceded by fill bytes 0xFF
        while (d->pos < d->len && d->data[d->pos] == 0xFF && d->pos + 1 < d->len && d->data[d->pos + 1] == 0xFF) d->pos++;
        if (d->pos + 2 > d->len) {
            // no EOI: complete if every component was coded by a sequential scan
            int complete = d->sof && !d->progressive && scans > 0;
            for (int i = 0; complete && i < d->ncomp; i++) complete = d->comp[i].scanned > 0;
            if (complete) break;
            return sd_errorf("%s: the data ends before the EOI marker%s (truncated file)", d->name,
                             scans ? "" : " and before any image data");
        }
        if (d->data[d->pos] != 0xFF)
            return sd_errorf("%s: expected a marker at byte %zu, found 0x%02X (corrupt file)", d->name, d->pos, d->data[d->pos]);
        int m = d->data[d->pos + 1];
        size_t at = d->pos;
        d->pos += 2;
        if (m == 0xD9) break;  // EOI
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
            if (m == 0xD8) return sd_errorf("%s: a second SOI marker at byte %zu", d->name, at);
            continue;  // stray RSTm / TEM: no segment (libjpeg skips them with a warning)
        }
        if (d->pos + 2 > d->len) return sd_errorf("%s: marker FF%02X at byte %zu: the data ends in its length", d->name, m, at);
        int seg = be16(d->data + d->pos);
        if (seg < 2 || d->pos + (size_t)seg > d->len)
            return sd_errorf("%s: marker FF%02X at byte %zu: segment length %d runs past the end of the file (%zu bytes)",
                             d->name, m, at, seg, d->len);
        const uint8_t *p = d->data + d->pos + 2;
        int n = seg - 2;
        d->pos += (size_t)seg;
        int rc = 0;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            rc = parse_sof(d, m, p, n);
        } else if (sof_kind(m)) {
            rc = sd_errorf("%s: marker SOF%d: %s JPEG is not supported (baseline, extended and progressive Huffman only)",
                           d->name, m - 0xC0, sof_kind(m));
        } else if (m == 0xC4) {
            rc = parse_dht(d, p, n);
        } else if (m == 0xDB) {
            rc = parse_dqt(d, p, n);
        } else if (m == 0xDD) {
            if (n != 2) rc = sd_errorf("%s: DRI: segment of %d bytes, expected 2", d->name, n);
            else d->restart_interval = be16(p);
        } else if (m == 0xDA) {
            // each scan walks the whole frame: a few bytes per scan must not buy unbounded time
            // (progressive files have about 10 scans; libjpeg-turbo's tools stop at 500)
            if (scans >= JPEG_MAX_SCANS)
                return sd_errorf("%s: more than %d scans (corrupt or hostile file)", d->name, JPEG_MAX_SCANS);
            rc = parse_sos(d, p, n);
            if (!rc) rc = jpeg_decode_scan(d);
            scans++;
        } else if (m == 0xDC) {
            rc = sd_errorf("%s: marker DNL: a height defined after the first scan is not supported", d->name);
        } else if (m == 0xDE || m == 0xDF) {
            rc = sd_errorf("%s: marker %s: hierarchical JPEG is not supported", d->name, m == 0xDE ? "DHP" : "EXP");
        } else if (m == 0xE0 && n >= 5 && !memcmp(p, "JFIF\0", 5)) {
            d->saw_jfif = 1;
        } else if (m == 0xEE && n >= 12 && !memcmp(p, "Adobe", 5)) {
            d->saw_adobe = 1, d->adobe_transform = p[11];
        } else if (m == 0xCC) {
            rc = sd_errorf("%s: marker DAC: arithmetic coding is not supported", d->name);
        }
        // other APPn, COM, JPGn and reserved segments are skipped
        if (rc) return -1;
    }
    if (!d->sof) return sd_errorf("%s: no frame header (SOFn) before EOI", d->name);
    for (int i = 0; i < d->ncomp; i++)
        if (!d->comp[i].scanned) return sd_errorf("%s: component %d is in no scan (truncated file)", d->name, d->comp[i].id);
    size_t n = (size_t)d->width * (size_t)d->height * (size_t)d->ncomp;
    img->pixels = (uint8_t *)malloc(n);
    if (!img->pixels) return sd_errorf("%s: out of memory for a %dx%d JPEG", d->name, d->width, d->height);
    img->width = d->width, img->height = d->height, img->channels = d->ncomp;
    if (jpeg_output(d, img->pixels)) {
        free(img->pixels);
        img->pixels = NULL;
        return -1;
    }
    return 0;
}

int jpeg_decode(const uint8_t *data, size_t len, const char *name, JpegImage *img) {
    memset(img, 0, sizeof(*img));
    JpegDecoder *d = (JpegDecoder *)calloc(1, sizeof(JpegDecoder));
    if (!d) return sd_errorf("%s: out of memory", name);
    d->name = name, d->data = data, d->len = len;
    int rc = decode(d, img);
    decoder_free(d);
    free(d);
    return rc;
}

int jpeg_read(const char *path, JpegImage *img) {
    memset(img, 0, sizeof(*img));
    uint8_t *data;
    size_t len;
    if (read_whole_file(path, &data, &len, 0)) return -1;
    int rc = jpeg_decode(data, len, path, img);
    free(data);
    return rc;
}

void jpeg_free(JpegImage *img) {
    free(img->pixels);
    img->pixels = NULL;
}
