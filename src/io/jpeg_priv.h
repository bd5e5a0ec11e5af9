// Internal state of the JPEG decoder shared by jpeg.c (markers, frame, driver),
// jpeg_huff.c (entropy decoding of scans) and jpeg_idct.c (IDCT, upsampling, colour).
#ifndef SD_JPEG_PRIV_H
#define SD_JPEG_PRIV_H

#include <stddef.h>
#include <stdint.h>

// A canonical Huffman table (T.81 annex C) with a 9-bit lookahead.
typedef struct {
    int defined;
    int nvals;
    uint8_t vals[256];
    int32_t maxcode[18];  // largest code of each length, -1 if none; [17] sentinel
    int32_t valoff[17];   // vals index of the first code of each length minus that code
    uint16_t look[512];   // (length << 8 | value) for codes of <= 9 bits, 0 otherwise
} JpegHuff;

typedef struct {
    int id, h, v, tq;     // component id, sampling factors (1..4), quant table slot
    int wd, ht;           // samples of this component: ceil(width*h/hmax), ceil(height*v/vmax)
    int bw, bh;           // blocks in the coefficient buffer: mcux*h, mcuy*v
    int td, ta;           // DC and AC table of the current scan
    int dc_pred;          // DC predictor (T.81 F.2.1.3.1)
    int quant_latched;    // quant table copied at the first scan holding it (as libjpeg)
    uint16_t quant[64];   // natural order
    int scanned;          // scans that coded this component
    int16_t *coef;        // bw*bh blocks of 64 coefficients, natural order
    uint8_t *plane;       // (bw*8) x (bh*8) samples after the IDCT
} JpegComp;

typedef struct {
    const char *name;     // file name for messages
    const uint8_t *data;
    size_t len, pos;      // pos: next byte to read
    // frame
    int sof;              // 0xC0, 0xC1 or 0xC2; 0 before SOF
    int progressive;
    int width, height, ncomp, hmax, vmax, mcux, mcuy;
    JpegComp comp[3];
    uint16_t qt[4][64];   // natural order
    int qt_defined[4];
    JpegHuff dc[4], ac[4];
    int restart_interval;
    int saw_jfif, saw_adobe, adobe_transform;
    // scan
    int scomp[4], nscomp;  // frame indices of the scan's components
    int ss, se, ah, al;
    int eobrun;
    uint32_t bitbuf;      // bits not yet consumed, MSB first
    int bitcnt;
    int hit_marker;       // the entropy data ended at a marker: zero bits are supplied
    int padded_bits;      // zero bits supplied past the data (still in the buffer)
    int overrun;          // some of those were consumed: the data ended inside the scan
} JpegDecoder;

int jpeg_build_huff(JpegDecoder *d, JpegHuff *t, const uint8_t *counts, const uint8_t *vals, int tc, int th);
// Decodes the entropy-coded data of the current scan; d->pos is just past the SOS header
// and ends just past the scan's data (at the next marker).
int jpeg_decode_scan(JpegDecoder *d);
// Coefficients -> samples: every component's plane, then upsampled and colour converted.
int jpeg_output(JpegDecoder *d, uint8_t *out);

extern const uint8_t jpeg_zigzag[64];  // zigzag index -> natural index

#endif
