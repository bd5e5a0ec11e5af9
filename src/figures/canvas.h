// A raster canvas for figures: 8-bit RGB pixels, row-major, (0, 0) at the top left.
// Lines, rectangles, filled polygons, scaled images, all with alpha blending:
//   out = alpha * colour + (1 - alpha) * out        (per channel, rounded to nearest)
// Drawing outside the canvas is clipped, never an error.
#ifndef SD_FIGURES_CANVAS_H
#define SD_FIGURES_CANVAS_H

#include <stdint.h>

typedef struct {
    uint8_t r, g, b;
} Rgb;

typedef struct {
    int w, h;
    uint8_t *px;  // h * w * 3
} Canvas;

#define RGB_WHITE ((Rgb){255, 255, 255})
#define RGB_BLACK ((Rgb){0, 0, 0})
#define RGB_GRAY ((Rgb){128, 128, 128})
#define RGB_LIGHT ((Rgb){225, 225, 225})

// Allocates a w x h canvas filled with bg. -1 with a message on a bad size or no memory.
int canvas_init(Canvas *c, int w, int h, Rgb bg);
void canvas_free(Canvas *c);
// The colour at (x, y) (black outside).
Rgb canvas_get(const Canvas *c, int x, int y);
void canvas_blend(Canvas *c, int x, int y, Rgb col, float alpha);
// Filled rectangle [x, x+w) x [y, y+h).
void canvas_fill_rect(Canvas *c, int x, int y, int w, int h, Rgb col, float alpha);
// 1-pixel outline of the same rectangle.
void canvas_rect(Canvas *c, int x, int y, int w, int h, Rgb col);
// Line from (x0, y0) to (x1, y1), both ends included (Bresenham), `width` pixels thick (a square pen).
void canvas_line(Canvas *c, int x0, int y0, int x1, int y1, Rgb col, int width, float alpha);
// Filled polygon (even-odd rule, pixel centres), n vertices in xs/ys (float pixel coordinates).
void canvas_fill_polygon(Canvas *c, const float *xs, const float *ys, int n, Rgb col, float alpha);
// An RGB image (ih x iw x 3) drawn into [x, x+w) x [y, y+h) by nearest neighbour.
void canvas_image(Canvas *c, int x, int y, int w, int h, const uint8_t *rgb, int iw, int ih, float alpha);
// Writes the canvas as an RGB PNG (the project's writer, src/io/png.h).
int canvas_write_png(const Canvas *c, const char *path);

#endif
