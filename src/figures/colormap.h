// Colour maps for figures.
//   viridis   values (perceptually uniform, dark blue -> yellow): matplotlib's 256-entry table
//   diverging signed values: blue (negative) -> white (0) -> red (positive), ColorBrewer RdBu
//   class     categorical: the colours `satdifuser predict` gives its palette PNG
#ifndef SD_FIGURES_COLORMAP_H
#define SD_FIGURES_COLORMAP_H

#include "figures/canvas.h"

// t in [0, 1] (clamped; NaN gives gray): entry round(t * 255) of the table.
Rgb colormap_viridis(double t);
// t in [-1, 1] (clamped; NaN gives gray): linear between the 11 ColorBrewer RdBu colours.
Rgb colormap_diverging(double t);
// Class c's colour (c >= 0): tab10 in predict's order, shifted by 37 per channel every 10 classes.
Rgb colormap_class(int c);
// (v - lo) / (hi - lo), 0.5 when hi <= lo.
double colormap_norm(double v, double lo, double hi);

#endif
