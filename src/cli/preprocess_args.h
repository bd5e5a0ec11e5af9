// The image preprocessing options of `extract`, shared by `predict` (one parser, one meaning):
//   --bands LIST   --scale MODE   --size N   --resize shorter|exact   --crop center|none
// and their record in every feature file ("preprocessing" metadata), from which predict rebuilds
// the options a head was trained with. Also the per-file "scaling" record (what --scale did to
// each band) and the warning when --scale auto clips pixels.
#ifndef SD_CLI_PREPROCESS_ARGS_H
#define SD_CLI_PREPROCESS_ARGS_H

#include <stddef.h>

#include "io/image.h"
#include "models/preprocess.h"

typedef struct {
    const char *bands;  // as given (NULL: chosen per image)
    const char *scale;  // as given ("auto" by default)
    int size;           // 256
    ResizeMode resize;  // RESIZE_SHORTER (torchvision Resize(size), the original's)
    int crop;           // 0 (the original's); 1: centre size x size after the resize
} PreArgs;

void pre_args_default(PreArgs *p);
// 1 when opt is one of the options above (each takes a value).
int pre_args_is_option(const char *opt);
// Takes opt with its value when it is one of them: 1 taken, 0 not one of them, -1 bad value (error set).
int pre_args_take(PreArgs *p, const char *opt, const char *val);

// The options as PreprocessOptions: numeric --bands (band names are resolved per image: *band_names
// = 1), the scale mode (minmax:STATS.json loads the file: *stats_min / *stats_max are malloc'd).
int pre_args_options(const PreArgs *p, PreprocessOptions *o, double **stats_min, double **stats_max, int *band_names);

// --scale auto for one image: 8-bit /255, 16-bit PNG /65535 (PNG's 16-bit is full range), other
// integers /4095 (Sentinel-2 reflectance, the original's), floats clipped to [0, 1].
ScaleMode pre_args_auto_scale(const Image *img, const char **why);

// The "preprocessing" metadata: {"bands", "scale", "size", "resize", "normalize"} as before, plus
// "crop" when cropping (the text of older caches is unchanged for the default options).
int pre_args_json(const PreArgs *p, char *buf, size_t size);

// Back from that JSON (predict): option/value pairs for extract in out->argv[0..argc).
typedef struct {
    int argc;
    char *argv[10];
    char text[3][1024];
    int size;  // the recorded --size (0: none)
} PreArgv;
int pre_args_from_json(const char *json, PreArgv *out);

// The per-file "scaling" metadata: mode, each band's x = clip((v - offset) / range, 0, 1) and how
// many pixels were clipped low / high or NaN.
int pre_scaling_json(const char *mode, int is_auto, const char *auto_why, const PreprocessReport *r, char *buf,
                     size_t size);
// Under --scale auto: a warning (stderr) per band that lost pixels to clipping, with the mode to use.
// Any mode: a warning when a band came out constant. Printed only when `print`; returns 1 when
// there was something to say (a caller can count the files it did not list).
int pre_scaling_warn(const char *source, const char *mode, int is_auto, const char *auto_why, const PreprocessReport *r,
                     int print);

#endif
