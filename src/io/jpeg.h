// JPEG reader (ITU-T T.81 / ISO 10918-1, JFIF), our own code.
// Decodes Huffman-coded 8-bit JPEG: baseline (SOF0), extended sequential (SOF1)
// and progressive (SOF2); 1 component (gray) or 3 (YCbCr -> RGB, or RGB when
// an Adobe marker / component ids say so); any integer chroma subsampling
// (4:4:4, 4:2:2, 4:2:0, 4:1:1, 4:4:0, ...); restart markers. Output follows
// libjpeg(-turbo) with its defaults: the islow integer IDCT (jidctint.c),
// "fancy" triangle upsampling for h2v1/h2v2/h1v2 chroma, box replication for
// the other factors, and the same fixed-point YCbCr->RGB tables (jdcolor.c).
// Refused with a message naming the file, the marker and the reason:
// arithmetic coding, 12/16-bit samples, lossless, hierarchical, 2 or 4
// components (CMYK/YCCK), DNL (height given after the first scan).
#ifndef SD_JPEG_H
#define SD_JPEG_H

#include <stddef.h>
#include <stdint.h>

// Frames with more pixels than this are refused before anything is allocated.
#ifndef JPEG_MAX_PIXELS
#define JPEG_MAX_PIXELS ((uint64_t)1 << 28)
#endif

typedef struct {
    int width, height;
    int channels;     // 1 (gray) or 3 (RGB)
    uint8_t *pixels;  // height*width*channels bytes, row-major, interleaved
} JpegImage;

// Decodes a JPEG held in memory; messages start with name. On failure
// img->pixels is NULL and nothing leaks.
int jpeg_decode(const uint8_t *data, size_t len, const char *name, JpegImage *img);
// Reads and decodes a file; messages start with the path.
int jpeg_read(const char *path, JpegImage *img);
void jpeg_free(JpegImage *img);

#endif
