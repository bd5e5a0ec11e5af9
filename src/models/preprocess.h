// Image preprocessing of SatDiFuser's datasets (SPEC.md section 1): pick the
// RGB bands, scale to [0,1] and clip, resize the shorter side to the model
// size with torchvision's Resize(size, bilinear, antialias=True), map to [-1,1].
#ifndef SD_PREPROCESS_H
#define SD_PREPROCESS_H

#include "core/tensor.h"

#define PRE_MAX_BANDS 3

typedef enum {
    SCALE_DIV4095 = 0,  // Sentinel-2 reflectance: x / 4095, clipped (m_eurosat, m_bigearthnet)
    SCALE_DIV255 = 1,   // 8-bit imagery: x / 255, clipped (m_nz_cattle)
    SCALE_CLIP = 2,     // data already in [0,1]: clipped only (m_chesapeake)
    SCALE_MINMAX = 3,   // per-band (x - min) / (max - min), clipped, statistics given (the paper's wording)
    SCALE_DIV65535 = 4, // full-range 16-bit (PNG): x / 65535
    SCALE_IMAGE_MINMAX = 5,     // per band, min and max of this image (NaN and nodata left out)
    SCALE_PERCENTILE = 6,       // per band, the image's percentiles pct_lo / pct_hi (numpy 'linear') -> 0 / 1
} ScaleMode;

typedef enum {
    RESIZE_SHORTER = 0,  // torchvision Resize(size): the shorter side becomes size (the original's)
    RESIZE_EXACT = 1,    // torchvision Resize((size, size)): both sides, the aspect ratio is not kept
} ResizeMode;

typedef struct {
    int n_bands;                  // 0: choose from the image (see preprocess_choose_bands), else 3
    int bands[PRE_MAX_BANDS];     // 1-based source band numbers (GDAL style): 4,3,2 = Sentinel-2 B04,B03,B02
    ScaleMode scale;
    // SCALE_MINMAX statistics, one pair per source band (stats_count of them)
    // or one per selected band (stats_count == 3); owned by the caller.
    int stats_count;
    const double *stats_min, *stats_max;
    double pct_lo, pct_hi;        // SCALE_PERCENTILE, in [0, 100]
    int has_nodata;               // pixels equal to nodata are left out of the image's statistics
    double nodata;
    int size;       // shorter side after resizing (256 or 512); 0: no resize
    ResizeMode resize;
    int crop;       // 1: then the centre size x size (torchvision CenterCrop(size)); 0: none (the original's)
    int antialias;  // 1 (torchvision Resize(antialias=True)); 0 for plain bilinear
} PreprocessOptions;

// What the scaling did to each selected band: x = clip((v - offset) / range, 0, 1).
typedef struct {
    int bands[PRE_MAX_BANDS];                // 1-based source bands
    double offset[PRE_MAX_BANDS], range[PRE_MAX_BANDS];
    long long clipped_low[PRE_MAX_BANDS];    // pixels below 0 after scaling (set to 0)
    long long clipped_high[PRE_MAX_BANDS];   // pixels above 1 (set to 1)
    long long nan[PRE_MAX_BANDS];            // NaN pixels (set to 0)
    long long pixels;                        // per band
    int constant[PRE_MAX_BANDS];             // min-max / percentile: max == min, the band became 0
} PreprocessReport;

// "4095", "255", "65535", "clip", "minmax", "minmax:<stats>", "percentile:2,98": the mode as
// --scale names it (stats: the statistics file's name, may be NULL).
void preprocess_scale_name(const PreprocessOptions *o, const char *stats, char *buf, int size);

// 4,3,2-free defaults: bands chosen from the image, /4095, size 256, antialias.
void preprocess_options_default(PreprocessOptions *o);

// The bands used for an image with C bands: the options' bands when given,
// else 1,2,3 for 3 or 4 bands (RGB, RGBA) and 4,3,2 for 12 or 13 bands
// (Sentinel-2 L2A / L1C order). Fails (naming `source`) when a band is
// missing or no default applies.
int preprocess_choose_bands(const PreprocessOptions *o, int C, const char *source, int bands_out[PRE_MAX_BANDS]);

// torchvision Resize(size) with an int: the shorter side becomes `size`, the
// longer int(size * long / short). Square stays square.
void preprocess_resize_shape(int H, int W, int size, int *Ho, int *Wo);

// F.interpolate(x, (Ho, Wo), mode="bilinear", align_corners=False,
// antialias=True) as aten's _upsample_bilinear2d_aa computes it on the CPU:
// separable (width pass, then height pass, a pass skipped when the size does
// not change), triangle filter whose support grows with the downscale factor,
// weights normalised per output pixel. x (N,C,H,W) -> y (N,C,Ho,Wo).
int resize_bilinear_antialias(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo);

// The whole chain for one image. src holds C bands of H x W float samples in
// source units (band-major). out is allocated: (1, 3, Ho, Wo) in [-1, 1].
// `source` names the file in messages.
int preprocess_image(const float *src, int C, int H, int W, const PreprocessOptions *o, const char *source, Tensor *out);
// The same, telling what the scaling did (rep may be NULL).
int preprocess_image_report(const float *src, int C, int H, int W, const PreprocessOptions *o, const char *source,
                            Tensor *out, PreprocessReport *rep);

// numpy.percentile(x, p) (method 'linear') of the n values of x that are not NaN (nor nodata when
// has_nodata); x is not changed. *found = 0 when none is left.
double preprocess_percentile(const float *x, long n, double p, int has_nodata, double nodata, int *found);

// Reads per-band statistics {"min": [...], "max": [...]} (numbers, one per
// band) from a JSON file; *min and *max are malloc'd, *count values each.
int preprocess_load_stats(const char *path, double **min, double **max, int *count);

#endif
