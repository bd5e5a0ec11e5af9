// Baseline TIFF / GeoTIFF reader (TIFF 6.0, BigTIFF), our own code.
// Reads the first image (IFD 0) into (bands, height, width) samples of the
// file's own sample type. Supported: II and MM byte orders, classic and
// BigTIFF, strips and tiles, PlanarConfiguration 1 (contig) and 2 (separate),
// compression none (1), LZW (5), Deflate (8 and 32946), PackBits (32773),
// predictor 2 (horizontal differencing) and 3 (floating point), 8/16/32/64-bit
// unsigned, signed and IEEE float samples. Other codecs (JPEG, ZSTD, WebP, ...)
// are rejected with a message naming the codec.
#ifndef SD_TIFF_H
#define SD_TIFF_H

#include <stddef.h>
#include <stdint.h>

#include "io/npy.h"  // NpyDtype names the sample type

// Decoded samples of one image above this many bytes are refused.
#define TIFF_MAX_PIXEL_BYTES ((uint64_t)1 << 31)

typedef struct {
    int width, height, bands;
    NpyDtype dtype;        // NPY_UINT8, NPY_INT8, NPY_UINT16, NPY_INT16, NPY_UINT32, NPY_INT32,
                           // NPY_UINT64, NPY_INT64, NPY_FLOAT32 or NPY_FLOAT64
    int bytes_per_sample;
    void *data;            // bands*height*width samples, host byte order, band-major (bands, H, W)
    // File facts.
    int big_endian, bigtiff, tiled, compression, predictor, planar, photometric;
    // GeoTIFF, when present. geotransform as GDAL's: x = gt[0] + col*gt[1] + row*gt[2],
    // y = gt[3] + col*gt[4] + row*gt[5], for the top-left corner of pixel (col, row).
    int has_geotransform;
    double geotransform[6];
    int pixel_is_point;    // GTRasterTypeGeoKey = PixelIsPoint (geotransform already shifted by half a pixel, as GDAL does)
    int epsg;              // ProjectedCSTypeGeoKey or GeographicTypeGeoKey, 0 if absent or user-defined
    int has_nodata;        // GDAL_NODATA tag (42113)
    double nodata;         // may be NaN
} TiffImage;

// Decodes IFD 0 of a TIFF held in memory. On failure img->data is NULL.
int tiff_decode(const uint8_t *buf, size_t len, TiffImage *img);
// Reads a file; messages start with the path.
int tiff_read(const char *path, TiffImage *img);
void tiff_free(TiffImage *img);

// Name of a TIFF compression code ("LZW", "JPEG", "ZSTD", ...; "unknown" otherwise).
const char *tiff_compression_name(int code);

#endif
