// Raster canvas. See canvas.h.
#include "figures/canvas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/png.h"

enum { CANVAS_MAX_SIDE = 1 << 14 };

int canvas_init(Canvas *c, int w, int h, Rgb bg) {
    memset(c, 0, sizeof(*c));
    if (w < 1 || h < 1 || w > CANVAS_MAX_SIDE || h > CANVAS_MAX_SIDE)
        return sd_errorf("figure size %d x %d: each side must be 1..%d pixels", w, h, CANVAS_MAX_SIDE);
    c->px = (uint8_t *)malloc((size_t)w * h * 3);
    if (!c->px) return sd_errorf("out of memory for a %d x %d figure", w, h);
    c->w = w;
    c->h = h;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        c->px[3 * i] = bg.r;
        c->px[3 * i + 1] = bg.g;
        c->px[3 * i + 2] = bg.b;
    }
    return 0;
}

void canvas_free(Canvas *c) {
    free(c->px);
    memset(c, 0, sizeof(*c));
}

Rgb canvas_get(const Canvas *c, int x, int y) {
    Rgb k = {0, 0, 0};
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return k;
    const uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    k.r = p[0];
    k.g = p[1];
    k.b = p[2];
    return k;
}

static uint8_t mix(uint8_t src, uint8_t dst, float a) {
    float v = a * src + (1.0f - a) * dst;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : (int)(v + 0.5f));
}

void canvas_blend(Canvas *c, int x, int y, Rgb col, float alpha) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    if (alpha >= 1.0f) {
        p[0] = col.r;
        p[1] = col.g;
        p[2] = col.b;
        return;
    }
    if (alpha <= 0.0f) return;
    p[0] = mix(col.r, p[0], alpha);
    p[1] = mix(col.g, p[1], alpha);
    p[2] = mix(col.b, p[2], alpha);
}

void canvas_fill_rect(Canvas *c, int x, int y, int w, int h, Rgb col, float alpha) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) canvas_blend(c, i, j, col, alpha);
}

void canvas_rect(Canvas *c, int x, int y, int w, int h, Rgb col) {
    if (w < 1 || h < 1) return;
    canvas_fill_rect(c, x, y, w, 1, col, 1.0f);
    canvas_fill_rect(c, x, y + h - 1, w, 1, col, 1.0f);
    canvas_fill_rect(c, x, y, 1, h, col, 1.0f);
    canvas_fill_rect(c, x + w - 1, y, 1, h, col, 1.0f);
}

void canvas_line(Canvas *c, int x0, int y0, int x1, int y1, Rgb col, int width, float alpha) {
    // Bresenham over the major axis; each point stamps a width x width square (blended once per
    // pixel would need a mask: lines here are opaque or thin, where the overlap does not show)
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy, lo = -(width - 1) / 2;
    if (width < 1) width = 1;
    for (int guard = 0; guard <= 4 * CANVAS_MAX_SIDE; guard++) {
        if (width == 1) canvas_blend(c, x0, y0, col, alpha);
        else canvas_fill_rect(c, x0 + lo, y0 + lo, width, width, col, alpha);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) { err += dy; x0 += sx; }
        if (e2 <= dx) { err += dx; y0 += sy; }
    }
}

void canvas_fill_polygon(Canvas *c, const float *xs, const float *ys, int n, Rgb col, float alpha) {
    if (n < 3) return;
    float ymin = ys[0], ymax = ys[0];
    for (int i = 1; i < n; i++) {
        if (ys[i] < ymin) ymin = ys[i];
        if (ys[i] > ymax) ymax = ys[i];
    }
    int j0 = (int)floorf(ymin), j1 = (int)ceilf(ymax);
    if (j0 < 0) j0 = 0;
    if (j1 > c->h - 1) j1 = c->h - 1;
    float *cross = (float *)malloc((size_t)n * sizeof(float));
    if (!cross) return;
    for (int j = j0; j <= j1; j++) {
        float yc = j + 0.5f;  // scan line through the pixel centres
        int m = 0;
        for (int i = 0; i < n; i++) {
            int k = (i + 1) % n;
            float ya = ys[i], yb = ys[k];
            if ((ya <= yc && yb > yc) || (yb <= yc && ya > yc)) cross[m++] = xs[i] + (yc - ya) / (yb - ya) * (xs[k] - xs[i]);
        }
        for (int a = 1; a < m; a++)  // insertion sort: few crossings
            for (int b = a; b > 0 && cross[b - 1] > cross[b]; b--) {
                float t = cross[b];
                cross[b] = cross[b - 1];
                cross[b - 1] = t;
            }
        for (int a = 0; a + 1 < m; a += 2) {
            // centres in [left, right): a pixel on a shared edge is filled once
            int i0 = (int)ceilf(cross[a] - 0.5f), i1 = (int)ceilf(cross[a + 1] - 0.5f) - 1;
            for (int i = i0; i <= i1; i++) canvas_blend(c, i, j, col, alpha);
        }
    }
    free(cross);
}

void canvas_image(Canvas *c, int x, int y, int w, int h, const uint8_t *rgb, int iw, int ih, float alpha) {
    if (w < 1 || h < 1 || iw < 1 || ih < 1) return;
    for (int j = 0; j < h; j++) {
        int sy = (int)((int64_t)j * ih / h);
        for (int i = 0; i < w; i++) {
            int sx = (int)((int64_t)i * iw / w);
            const uint8_t *p = rgb + 3 * ((size_t)sy * iw + sx);
            Rgb k = {p[0], p[1], p[2]};
            canvas_blend(c, x + i, y + j, k, alpha);
        }
    }
}

int canvas_write_png(const Canvas *c, const char *path) {
    return png_write(path, c->px, c->w, c->h, 3, NULL, 0);
}
