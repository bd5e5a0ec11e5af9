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

// The GeoTIFF tags of IFD 0 as stored (values converted to the host's numbers), so a map
// computed on the same pixel grid can carry them unchanged (io/tiff_write.h). n_*: value
// count, 0 when the tag is absent.
typedef struct {
    int n_pixel_scale, n_tiepoint, n_transformation, n_key_directory, n_double_params, n_ascii_params;
    double *pixel_scale;       // ModelPixelScaleTag 33550 (3 doubles)
    double *tiepoint;          // ModelTiepointTag 33922 (6 per tie point)
    double *transformation;    // ModelTransformationTag 34264 (16 doubles)
    uint16_t *key_directory;   // GeoKeyDirectoryTag 34735 (4 + 4 per key)
    double *double_params;     // GeoDoubleParamsTag 34736
    char *ascii_params;        // GeoAsciiParamsTag 34737: n_ascii_params bytes as stored (its NULs included)
} TiffGeoTags;

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
    TiffGeoTags geo;       // the GeoTIFF tags themselves (freed by tiff_free)
} TiffImage;

// Decodes IFD 0 of a TIFF held in memory. On failure img->data is NULL.
int tiff_decode(const uint8_t *buf, size_t len, TiffImage *img);
// Reads a file; messages start with the path.
int tiff_read(const char *path, TiffImage *img);
void tiff_free(TiffImage *img);
// Frees the arrays of a TiffGeoTags (and zeroes it).
void tiff_geo_free(TiffGeoTags *g);

// Reading a large image by rows (a scene of any size in bounded memory): tiff_open maps the file
// and reads IFD 0 (every field of `info` but data, which stays NULL; the whole-image size limit
// does not apply), tiff_read_rows decodes only the strips or tiles that cross rows
// [y0, y0 + rows) into out: (bands, rows, width) samples of the file's type, host byte order.
typedef struct TiffReader TiffReader;
int tiff_open(const char *path, TiffReader **r, TiffImage *info);
int tiff_read_rows(TiffReader *r, int y0, int rows, void *out);
void tiff_close(TiffReader *r);

// Name of a TIFF compression code ("LZW", "JPEG", "ZSTD", ...; "unknown" otherwise).
const char *tiff_compression_name(int code);

#endif
