// A built-in 5 x 7 bitmap font for printable ASCII (32..126), drawn in 6 x 9 cells (one column and
// two rows of spacing), optionally scaled by an integer factor. Other bytes are drawn as '?'.
#ifndef SD_FIGURES_FONT_H
#define SD_FIGURES_FONT_H

#include "figures/canvas.h"

enum { FONT_W = 5, FONT_H = 7, FONT_ADV = 6, FONT_LINE = 9 };

// The 5 column bytes of a character's glyph: bit r of column x is the pixel at row r (0 = top).
const uint8_t *font_glyph(int ch);
// 1 if the glyph of ch has its pixel at column x (0..4), row y (0..6) set.
int font_pixel(int ch, int x, int y);
// Width in pixels of a string (no trailing spacing column), height FONT_H * scale.
int text_width(const char *s, int scale);
// Draws s with its top-left corner at (x, y).
void draw_text(Canvas *c, int x, int y, const char *s, Rgb col, int scale);
// The same, rotated 90 degrees counter-clockwise (reads bottom to top): (x, y) is the bottom-left
// corner of the rotated text, which grows upwards from y and rightwards to x + FONT_H * scale.
void draw_text_up(Canvas *c, int x, int y, const char *s, Rgb col, int scale);
// Alignment helpers: centred on cx / right-aligned at rx (top at y).
void draw_text_centered(Canvas *c, int cx, int y, const char *s, Rgb col, int scale);
void draw_text_right(Canvas *c, int rx, int y, const char *s, Rgb col, int scale);

#endif
