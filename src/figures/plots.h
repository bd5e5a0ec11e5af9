// Plot elements drawn on a Canvas: heatmaps with numbers in the cells, colour bars, horizontal
// bars, line plots with axes, ticks and legends, titled image panels, legends.
#ifndef SD_FIGURES_PLOTS_H
#define SD_FIGURES_PLOTS_H

#include "figures/canvas.h"

typedef struct {
    int x, y, w, h;
} Rect;

// ---- heatmap ---------------------------------------------------------------
// cell (r, c) = values[r * cols + c], coloured viridis((v - lo) / (hi - lo)) or, with `diverging`,
// RdBu(v / max(|lo|, |hi|)); NaN cells are gray. With fmt, each cell shows printf(fmt, v * print_scale)
// in black or white (whichever reads better on the cell's colour).
typedef struct {
    const double *values;
    int rows, cols;
    double lo, hi;
    int diverging;
    const char *const *row_labels;   // rows names (NULL: none)
    const char *const *col_labels;   // cols names (NULL: none); drawn upwards when wider than a cell
    const char *fmt;                 // e.g. "%.1f" (NULL: no numbers)
    double print_scale;              // 0 is taken as 1
    int cell_w, cell_h;
    const char *title;               // above (NULL: none)
    const char *row_title, *col_title;  // axis titles (NULL: none)
} Heatmap;

// Size of the whole heatmap (labels and titles included); cells start at (*cx, *cy) from its corner.
void heatmap_layout(const Heatmap *hm, int *w, int *h, int *cx, int *cy);
void heatmap_draw(Canvas *c, int x, int y, const Heatmap *hm);
// The colour heatmap_draw gives value v.
Rgb heatmap_colour(const Heatmap *hm, double v);
// A vertical colour bar for the same mapping, its ticks (lo, middle, hi) printed with fmt on the right.
void colorbar_draw(Canvas *c, Rect r, const Heatmap *hm, const char *fmt);
enum { COLORBAR_W = 64 };  // width of a 12-pixel bar with its tick labels

// ---- bars ------------------------------------------------------------------
// Horizontal bars, one per row: label on the left (label_w pixels), a bar of length v / vmax of the
// rest, the value printed (fmt of v * print_scale) after it.
void bars_draw(Canvas *c, Rect r, const double *values, int n, const char *const *labels, const Rgb *colours,
               double vmax, int label_w, const char *fmt, double print_scale);

// ---- line plots ------------------------------------------------------------
typedef struct {
    const double *x, *y;
    int n;
    Rgb colour;
    const char *name;    // legend entry (NULL: not in the legend)
    int markers;         // 1: a 3x3 dot at each point, 2: dots only (no line)
} Series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int logy;            // log10 y axis (non-positive values skipped)
    int legend;          // draw the legend inside the axes: 1 top right, 2 bottom right
} Axes;

// Axes in r (title, tick labels and axis titles inside r), then the series. NaN points are skipped.
void lineplot_draw(Canvas *c, Rect r, const Series *s, int ns, const Axes *ax);
// "Nice" ticks covering [lo, hi]: step 1, 2 or 5 x 10^k, about `target` of them; returns the count
// (at most max_ticks), the values in ticks.
int nice_ticks(double lo, double hi, int target, double *ticks, int max_ticks);

// ---- legends, panels ---------------------------------------------------------
// A vertical legend: a size x size swatch and the name per entry; returns its height.
int legend_draw(Canvas *c, int x, int y, const char *const *names, const Rgb *colours, int n, int size);
int legend_height(int n, int size);
int legend_width(const char *const *names, int n, int size);
// An image (ih x iw x 3) scaled into r, with a 1-pixel frame and a centred title above it (the title
// is cut to the panel's width).
void panel_draw(Canvas *c, Rect r, const uint8_t *rgb, int iw, int ih, const char *title);
// s cut (with "..") to fit max_w pixels at scale 1, into buf.
const char *text_fit(const char *s, int max_w, char *buf, int size);

#endif
