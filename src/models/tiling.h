// Scene-scale inference: a model that sees tile x tile windows run over an image of any size
// (a Sentinel-2 tile is 10980 x 10980 pixels), in bounded memory.
//
//   windows   start at 0, S, 2S, ... (S = tile - overlap) on each axis; the last one is moved back
//             to end at the image's edge, so every window is whole and inside the image
//   blending  each window's class probabilities (classes, tile, tile) are added with a weight
//             w(x, y) = r(x) r(y), r a linear ramp over the `overlap` pixels at each window side
//             that has a neighbour (1 elsewhere, and at the image's edges), then divided by the
//             summed weight: two neighbours cross-fade across their overlap (their ramps sum to 1)
//             and a pixel that only one window covers gets exactly that window's probabilities
//   class     argmax of the blended probabilities (ties: the lower class), 8 bits
//   memory    the image is read one row of windows at a time (tile rows x width x bands); the
//             probabilities are kept for tile rows x width (classes of them), the rows that no later
//             window touches are turned into classes and the buffer moves down; only the class map
//             (height x width bytes) covers the whole image.
//
// Why blend probabilities instead of stitching centre crops: a window's border pixels see the
// least context (zero padding inside the network), the ramp gives them the least weight; and
// where two windows disagree the average changes smoothly instead of at a seam. In the part of a
// window that no other window covers, both ways give that window's own prediction.
#ifndef SD_MODELS_TILING_H
#define SD_MODELS_TILING_H

#include <stdint.h>

#include "io/image.h"
#include "io/tiff.h"

// Window starts on an axis of length n: *count of them in pos (malloc'd). tile <= n, 0 <= overlap < tile.
int tile_positions(int n, int tile, int overlap, int **pos, int *count);
// Blending weight of pixel i (0..tile-1) of a window along one axis: a ramp of `overlap` pixels at
// each side, left out at a side that lies on the image's edge (first / last window).
float tile_ramp(int i, int tile, int overlap, int first, int last);

// An image read by rows: a TIFF/GeoTIFF decoded strip by strip (io/tiff.h tiff_open), or any
// other format image_load reads, held whole.
typedef struct {
    int bands, height, width;
    Image facts;          // channels/height/width/src_dtype_bits/is_float/is_signed/nodata (data NULL)
    int is_tiff;
    TiffReader *tiff;
    TiffImage tiff_info;  // georeferencing (tiff_info.geo: the GeoTIFF tags); data NULL
    Image whole;          // non-TIFF inputs
    void *native;         // TIFF rows in the file's sample type
    size_t native_cap;
} SceneSource;

// 1 if the file starts with a TIFF or BigTIFF header (II/MM, 42/43).
int scene_is_tiff(const char *path);
int scene_open(SceneSource *s, const char *path);
// Rows [y0, y0 + rows) of every band as float: out (bands, rows, width).
int scene_read_rows(SceneSource *s, int y0, int rows, float *out);
void scene_close(SceneSource *s);

// The model run on one window: win (bands, tile, tile) in source units (as read) -> probs
// (classes, tile, tile), each pixel's class probabilities. Non-zero: failure (error set).
typedef int (*TileWindowFn)(void *ctx, const float *win, int bands, int tile, float *probs);

typedef struct {
    int done, total;        // windows
    int row, rows;          // rows of windows
} TileProgress;

typedef struct {
    SceneSource *src;
    int tile, overlap, classes;  // classes <= 255
    TileWindowFn window;
    void *ctx;
    int (*should_stop)(void *ctx);                       // between windows, may be NULL
    void (*progress)(void *ctx, const TileProgress *p);  // after each window, may be NULL
    int nodata_class;       // >= 0: pixels whose every band is the source's nodata value (or NaN) get it
    uint8_t *classmap;      // out: (height, width), allocated by the caller
} TileJob;

// Runs every window in row order and fills job->classmap. Returns 0, -1 on failure (error set), or
// 1 when should_stop said so (the class map is then incomplete).
int tiles_run(const TileJob *job);

#endif
