// PNG reader and writer (PNG spec, ISO/IEC 15948), our own code.
// Reader: all colour types and bit depths, Adam7, all 5 filters, PLTE/tRNS,
// every chunk CRC checked. Ancillary chunks other than tRNS are ignored
// (no gamma, sBIT or background applied).
#ifndef SD_PNG_H
#define SD_PNG_H

#include <stddef.h>
#include <stdint.h>

// Decoded pixels of one image above this many bytes are refused.
#define PNG_MAX_PIXEL_BYTES ((uint64_t)1 << 31)

typedef struct {
    int width, height;
    int bit_depth;         // 1, 2, 4, 8 or 16
    int color_type;        // 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
    int interlace;         // 0 none, 1 Adam7
    int channels;          // samples per pixel as stored: 1 (gray, palette index), 2, 3 or 4
    int bytes_per_sample;  // 1 (bit depth <= 8, values 0..2^depth-1) or 2 (16-bit, native uint16)
    void *pixels;          // height*width*channels samples, row-major: uint8_t or uint16_t
    int palette_size;      // PLTE entries (0 if none)
    uint8_t palette[256][4];  // RGBA; alpha from tRNS, 255 where tRNS is absent or shorter
    int has_trns_key;      // gray/RGB tRNS: pixels whose raw samples equal trns_key are transparent
    uint16_t trns_key[3];
} PngImage;

// Decodes a PNG held in memory. On failure img->pixels is NULL and nothing leaks.
int png_decode(const uint8_t *data, size_t len, PngImage *img);
// Reads and decodes a file; messages start with the path.
int png_read(const char *path, PngImage *img);
void png_free(PngImage *img);

// Converts to height*width*4 RGBA: uint8 if bit depth <= 8 (always for
// palette images), else uint16. Palette -> PLTE colour + tRNS alpha; gray
// below 8 bits scaled by 255/(2^d-1); gray -> R=G=B; a gray/RGB tRNS key makes
// matching raw pixels alpha 0 (others fully opaque); alpha channels are copied.
// A palette index past the palette's end gives opaque black (spec: an error;
// decoders may substitute). *rgba is malloc'd.
int png_to_rgba(const PngImage *img, void **rgba, int *bytes_per_sample);

// Encodes 8-bit pixels (height*width*channels, row-major) as a PNG in memory:
// channels 1 = gray (or palette indices when palette_rgb != NULL), 3 = RGB,
// 4 = RGBA. palette_rgb holds palette_size (1..256) RGB triplets. Filter 0,
// zlib fixed-Huffman compression. *out is malloc'd.
int png_encode(const uint8_t *pixels, int width, int height, int channels, const uint8_t *palette_rgb,
               int palette_size, uint8_t **out, size_t *out_len);
int png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
              const uint8_t *palette_rgb, int palette_size);

// CRC-32 as used by PNG chunks (ISO 3309), start with crc = 0.
uint32_t png_crc32(uint32_t crc, const uint8_t *buf, size_t len);

#endif
