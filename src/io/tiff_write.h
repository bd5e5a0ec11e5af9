// Minimal baseline TIFF writer, our own code: one 8-bit image (1 or 3 samples per pixel) in
// strips, little-endian, classic TIFF (files under 4 GiB), uncompressed or Deflate (zlib_compress
// of io/inflate.h, compression 8). What the class maps of `predict` need: a palette (Photometric 3
// + ColorMap) and the GeoTIFF tags of the image the map was computed on (io/tiff.h TiffGeoTags),
// written back unchanged, so GIS tools put the map where the image is.
#ifndef SD_TIFF_WRITE_H
#define SD_TIFF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "io/tiff.h"

typedef struct {
    int width, height;
    int channels;                 // 1 (gray or palette indices) or 3 (RGB)
    const uint8_t *pixels;        // height*width*channels, row-major, interleaved
    const uint8_t *palette_rgb;   // channels 1: palette_size RGB triplets (Photometric 3), or NULL (gray)
    int palette_size;             // 1..256; the ColorMap's other entries are black
    int deflate;                  // 1: compression 8 (zlib), 0: none
    const TiffGeoTags *geo;       // GeoTIFF tags to write, or NULL
    const char *description;      // ImageDescription (270), or NULL
    int has_nodata;               // GDAL_NODATA (42113) as text, e.g. a "no data" class index
    double nodata;
} TiffWriteImage;

// Encodes the image as a TIFF in memory (*out malloc'd).
int tiff_encode(const TiffWriteImage *img, uint8_t **out, size_t *out_len);
// Writes it to path through a temporary file in the same folder renamed into place, so an
// interrupted run leaves the old file or none, never half of one. Messages start with the path.
int tiff_write(const char *path, const TiffWriteImage *img);
// Writes len bytes to path through path.tmp.<pid> + rename (the same guarantee), for other encoders.
int write_file_atomic(const char *path, const uint8_t *data, size_t len);

#endif
