// Loads an input image of any supported file format (PNG, TIFF/GeoTIFF, NPY)
// as float32 (C, H, W) samples with their original values (no scaling), plus
// what the file's sample type was, so the caller can pick its normalisation
// (e.g. /255 for 8-bit, /4095 or dataset statistics for 12/16-bit sensors).
#ifndef SD_IMAGE_H
#define SD_IMAGE_H

typedef struct {
    float *data;         // channels*height*width values, band-major (C, H, W)
    int channels, height, width;
    int src_dtype_bits;  // bits per sample in the file: 8, 16, 32 or 64 (PNG palette and 1/2/4-bit gray: 8)
    int is_float;        // the file held floating-point samples
    int is_signed;       // the file held signed integers
    int has_nodata;      // GeoTIFF GDAL_NODATA, when present
    double nodata;
    const char *format;  // "PNG", "TIFF", "NPY", "JPEG" (a static string)
} Image;

// How a 3-D NPY array is read. AUTO: (H, W, C) when the last dimension is
// smaller than both others (e.g. (101, 100, 13)), else (C, H, W).
typedef enum { IMAGE_NPY_AUTO = 0, IMAGE_NPY_CHW, IMAGE_NPY_HWC } ImageNpyLayout;

// Picks the decoder by the file's first bytes (PNG signature, TIFF "II"/"MM",
// NPY magic). PNG: palette images become RGB (RGBA if the palette has
// transparency), gray below 8 bits is scaled to 0..255, other images keep
// their channels (gray, gray+alpha, RGB, RGBA); tRNS colour keys are ignored.
// TIFF: IFD 0, every band. NPY: 2-D is (H, W); 3-D see ImageNpyLayout; 4-D
// and more only with leading dimensions of size 1.
int image_load(const char *path, Image *img);

// What a file is, by its content (never its name): IMAGE_FILE_IMAGE for the formats image_load
// decodes (PNG, TIFF/GeoTIFF, NPY), IMAGE_FILE_TEXT for text (no NUL, almost no control bytes in
// its first 4 KB: a list of images), IMAGE_FILE_OTHER for anything else. `what` (size >= 48)
// names it: "PNG", "a JPEG image", "an HDF5 file", "binary data (starts with ff 00 ...)", "text".
// Returns -1 (error set) when the file cannot be read.
enum { IMAGE_FILE_IMAGE = 1, IMAGE_FILE_TEXT = 2, IMAGE_FILE_OTHER = 3 };
int image_file_kind(const char *path, char *what, int size);
int image_load_npy_layout(const char *path, ImageNpyLayout layout, Image *img);
void image_free(Image *img);

#endif
