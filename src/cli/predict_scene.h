// predict --tile: a segmentation head over a scene of any size, window by window (models/tiling.h),
// and the class-map writers of predict (.tif GeoTIFF with palette + preview PNG, .png palette PNG).
#ifndef SD_CLI_PREDICT_SCENE_H
#define SD_CLI_PREDICT_SCENE_H

#include <stdint.h>

#include "io/json.h"

typedef struct {
    const char *model, *unet, *run, *input, *out, *weights;
    int tile, overlap;       // window size and overlap in the scene's pixels
    int moe_restart;         // MoE call counters start at 0 instead of RUN/moe_counter.json
    char **user;             // --bands / --scale / --precision option-value pairs given to predict
    int n_user;
} SceneArgs;

// Runs the scene prediction; returns the exit status (0, 1 failure, 2 usage, 130/143 stopped).
int predict_scene(const SceneArgs *a);

// The colour of class c in every map predict writes.
void predict_palette_colour(int c, unsigned char rgb[3]);

// Writes a class map (H x W bytes, classes 0..C-1; nodata_class >= 0: that value means no data)
// by out's extension: NAME.tif / NAME.tiff a TIFF with the palette, Deflate strips and, when
// `georef` is a GeoTIFF, its georeferencing tags, plus NAME_preview.png (the map, at most 2048
// pixels on its longer side); NAME.png a palette PNG. Both through a temporary file renamed into
// place. names: RUN/classes.json's value or an empty one.
int predict_write_map(const char *out, const uint8_t *map, int W, int H, int C, int nodata_class, const char *georef,
                      const JsonValue *names);

// satdifuser info FILE.tif (info_tiff.c): 1 if the file starts with a TIFF header; the listing.
int is_tiff_path(const char *path);
int info_tiff(const char *path);

#endif
