// Plot elements. See plots.h.
#include "figures/plots.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "figures/colormap.h"
#include "figures/font.h"

const char *text_fit(const char *s, int max_w, char *buf, int size) {
    snprintf(buf, (size_t)size, "%s", s ? s : "");
    int n = (int)strlen(buf);
    if (text_width(buf, 1) <= max_w) return buf;
    while (n > 0 && text_width(buf, 1) > max_w) {
        n--;
        buf[n] = 0;
        if (n >= 2) { buf[n - 1] = '.'; buf[n - 2] = '.'; }
    }
    return buf;
}

// ---- heatmap -----------------------------------------------------------------

static int max_label_width(const char *const *labels, int n) {
    int m = 0;
    for (int i = 0; labels && i < n; i++) {
        int w = text_width(labels[i] ? labels[i] : "", 1);
        if (w > m) m = w;
    }
    return m;
}

void heatmap_layout(const Heatmap *hm, int *w, int *h, int *cx, int *cy) {
    int left = 0, top = 0;
    if (hm->row_title) left += FONT_LINE + 2;
    if (hm->row_labels) left += max_label_width(hm->row_labels, hm->rows) + 6;
    if (hm->title) top += FONT_LINE + 6;
    if (hm->col_title) top += FONT_LINE + 2;
    if (hm->col_labels) {
        int lw = max_label_width(hm->col_labels, hm->cols);
        top += (lw > hm->cell_w - 8 ? lw : FONT_H) + 5;
    }
    int gw = hm->cols * hm->cell_w, gh = hm->rows * hm->cell_h;
    int tw = hm->title ? text_width(hm->title, 1) : 0;
    *w = left + gw > tw ? left + gw : tw;
    *h = top + gh;
    *cx = left;
    *cy = top;
}

Rgb heatmap_colour(const Heatmap *hm, double v) {
    if (hm->diverging) {
        double m = fabs(hm->lo) > fabs(hm->hi) ? fabs(hm->lo) : fabs(hm->hi);
        return colormap_diverging(m > 0 ? v / m : 0.0);
    }
    return colormap_viridis(colormap_norm(v, hm->lo, hm->hi));
}

static Rgb ink_on(Rgb bg) {
    // Rec. 709 luma of the background: dark text on light cells
    double y = 0.2126 * bg.r + 0.7152 * bg.g + 0.0722 * bg.b;
    return y > 140 ? RGB_BLACK : RGB_WHITE;
}

void heatmap_draw(Canvas *c, int x, int y, const Heatmap *hm) {
    int w, h, cx, cy;
    heatmap_layout(hm, &w, &h, &cx, &cy);
    int gx = x + cx, gy = y + cy, gw = hm->cols * hm->cell_w, gh = hm->rows * hm->cell_h;
    if (hm->title) draw_text(c, x, y, hm->title, RGB_BLACK, 1);
    if (hm->col_title) draw_text_centered(c, gx + gw / 2, y + (hm->title ? FONT_LINE + 6 : 0), hm->col_title, RGB_BLACK, 1);
    if (hm->row_title) draw_text_up(c, x, gy + gh / 2 + text_width(hm->row_title, 1) / 2, hm->row_title, RGB_BLACK, 1);
    if (hm->col_labels) {
        int lw = max_label_width(hm->col_labels, hm->cols), up = lw > hm->cell_w - 8;  // room between labels
        for (int j = 0; j < hm->cols; j++) {
            const char *s = hm->col_labels[j] ? hm->col_labels[j] : "";
            int mx = gx + j * hm->cell_w + hm->cell_w / 2;
            if (up) draw_text_up(c, mx - FONT_H / 2, gy - 4, s, RGB_BLACK, 1);
            else draw_text_centered(c, mx, gy - 4 - FONT_H, s, RGB_BLACK, 1);
        }
    }
    double scale = hm->print_scale != 0 ? hm->print_scale : 1.0;
    char num[32], fit[32];
    for (int i = 0; i < hm->rows; i++) {
        if (hm->row_labels && hm->row_labels[i])
            draw_text_right(c, gx - 5, gy + i * hm->cell_h + (hm->cell_h - FONT_H) / 2, hm->row_labels[i], RGB_BLACK, 1);
        for (int j = 0; j < hm->cols; j++) {
            double v = hm->values[(size_t)i * hm->cols + j];
            Rgb k = heatmap_colour(hm, v);
            int px = gx + j * hm->cell_w, py = gy + i * hm->cell_h;
            canvas_fill_rect(c, px, py, hm->cell_w, hm->cell_h, k, 1.0f);
            if (hm->fmt && !isnan(v)) {
                snprintf(num, sizeof(num), hm->fmt, v * scale);
                text_fit(num, hm->cell_w - 2, fit, sizeof(fit));
                draw_text_centered(c, px + hm->cell_w / 2, py + (hm->cell_h - FONT_H) / 2, fit, ink_on(k), 1);
            }
        }
    }
    canvas_rect(c, gx - 1, gy - 1, gw + 2, gh + 2, RGB_GRAY);
}

void colorbar_draw(Canvas *c, Rect r, const Heatmap *hm, const char *fmt) {
    int bw = 12;
    for (int j = 0; j < r.h; j++) {
        double t = r.h > 1 ? 1.0 - (double)j / (r.h - 1) : 0.5;
        double v;
        if (hm->diverging) {
            double m = fabs(hm->lo) > fabs(hm->hi) ? fabs(hm->lo) : fabs(hm->hi);
            v = -m + 2 * m * t;
        } else {
            v = hm->lo + (hm->hi - hm->lo) * t;
        }
        canvas_fill_rect(c, r.x, r.y + j, bw, 1, heatmap_colour(hm, v), 1.0f);
    }
    canvas_rect(c, r.x - 1, r.y - 1, bw + 2, r.h + 2, RGB_GRAY);
    double lo = hm->lo, hi = hm->hi;
    if (hm->diverging) {
        hi = fabs(hm->lo) > fabs(hm->hi) ? fabs(hm->lo) : fabs(hm->hi);
        lo = -hi;
    }
    double scale = hm->print_scale != 0 ? hm->print_scale : 1.0;
    char buf[32];
    for (int k = 0; k < 3; k++) {
        double v = lo + (hi - lo) * k / 2.0;
        int py = r.y + r.h - 1 - (int)((r.h - 1) * k / 2.0 + 0.5);
        canvas_fill_rect(c, r.x + bw, py, 3, 1, RGB_BLACK, 1.0f);
        snprintf(buf, sizeof(buf), fmt, v * scale);
        draw_text(c, r.x + bw + 5, py - FONT_H / 2, buf, RGB_BLACK, 1);
    }
}

// ---- bars ---------------------------------------------------------------------

void bars_draw(Canvas *c, Rect r, const double *values, int n, const char *const *labels, const Rgb *colours,
               double vmax, int label_w, const char *fmt, double print_scale) {
    if (n < 1) return;
    int row_h = r.h / n, num_w = 6 * FONT_ADV, bar_max = r.w - label_w - num_w - 8;
    if (bar_max < 4) bar_max = 4;
    char buf[64];
    for (int i = 0; i < n; i++) {
        int py = r.y + i * row_h, bh = row_h - 4 > 4 ? row_h - 4 : row_h;
        if (labels && labels[i]) draw_text_right(c, r.x + label_w - 4, py + (row_h - FONT_H) / 2, text_fit(labels[i], label_w - 4, buf, sizeof(buf)), RGB_BLACK, 1);
        double v = values[i];
        int len = vmax > 0 && v > 0 ? (int)(bar_max * (v > vmax ? 1.0 : v / vmax) + 0.5) : 0;
        canvas_fill_rect(c, r.x + label_w, py + (row_h - bh) / 2, len, bh, colours ? colours[i] : colormap_viridis(0.35), 1.0f);
        snprintf(buf, sizeof(buf), fmt, v * (print_scale != 0 ? print_scale : 1.0));
        draw_text(c, r.x + label_w + len + 4, py + (row_h - FONT_H) / 2, buf, RGB_BLACK, 1);
    }
    canvas_fill_rect(c, r.x + label_w, r.y, 1, n * row_h, RGB_BLACK, 1.0f);
}

// ---- line plots -----------------------------------------------------------------

int nice_ticks(double lo, double hi, int target, double *ticks, int max_ticks) {
    if (!(hi > lo)) {
        if (max_ticks > 0) ticks[0] = lo;
        return max_ticks > 0 ? 1 : 0;
    }
    double raw = (hi - lo) / (target > 1 ? target : 1), p = pow(10.0, floor(log10(raw))), step;
    double f = raw / p;
    step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
    int n = 0;
    for (double t = ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9 && n < max_ticks; t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    return n;
}

static void format_tick(double v, char *buf, size_t size) {
    if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(buf, size, "%.0e", v);
    else snprintf(buf, size, "%g", v);
}

void lineplot_draw(Canvas *c, Rect r, const Series *s, int ns, const Axes *ax) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double xv = s[k].x[i], yv = s[k].y[i];
            if (isnan(xv) || isnan(yv) || (ax->logy && !(yv > 0))) continue;
            if (ax->logy) yv = log10(yv);
            if (xv < xlo) xlo = xv;
            if (xv > xhi) xhi = xv;
            if (yv < ylo) ylo = yv;
            if (yv > yhi) yhi = yv;
        }
    if (!(xhi >= xlo)) { xlo = 0; xhi = 1; }
    if (!(yhi >= ylo)) { ylo = 0; yhi = 1; }
    if (xhi == xlo) { xlo -= 0.5; xhi += 0.5; }
    if (yhi == ylo) { double d = fabs(ylo) > 0 ? fabs(ylo) * 0.1 : 0.5; ylo -= d; yhi += d; }
    double pad = (yhi - ylo) * 0.05, xpad = (xhi - xlo) * 0.02;  // points off the frame
    ylo -= pad;
    yhi += pad;
    xlo -= xpad;
    xhi += xpad;
    // plot area: left room for tick labels and the y title, bottom for tick labels and the x title
    int left = 8 * FONT_ADV + (ax->ylabel ? FONT_LINE + 4 : 0), top = ax->title ? FONT_LINE + 6 : 4;
    int bottom = FONT_LINE + 6 + (ax->xlabel ? FONT_LINE + 2 : 0), right = 8;
    Rect p = {r.x + left, r.y + top, r.w - left - right, r.h - top - bottom};
    if (p.w < 10 || p.h < 10) return;
    if (ax->title) draw_text_centered(c, p.x + p.w / 2, r.y, ax->title, RGB_BLACK, 1);
    if (ax->ylabel) draw_text_up(c, r.x, p.y + p.h / 2 + text_width(ax->ylabel, 1) / 2, ax->ylabel, RGB_BLACK, 1);
    if (ax->xlabel) draw_text_centered(c, p.x + p.w / 2, r.y + r.h - FONT_LINE, ax->xlabel, RGB_BLACK, 1);
    double ticks[32];
    char buf[32];
    int nt = nice_ticks(ylo, yhi, 5, ticks, 32);
    if (ax->logy) {  // ticks at the powers of ten inside the range when there are two or more
        int n10 = 0;
        for (double e = ceil(ylo); e <= floor(yhi) && n10 < 32; e += 1) ticks[n10++] = e;
        if (n10 >= 2) nt = n10;
    }
    for (int i = 0; i < nt; i++) {
        int py = p.y + p.h - 1 - (int)((ticks[i] - ylo) / (yhi - ylo) * (p.h - 1) + 0.5);
        canvas_fill_rect(c, p.x, py, p.w, 1, RGB_LIGHT, 1.0f);
        canvas_fill_rect(c, p.x - 4, py, 4, 1, RGB_BLACK, 1.0f);
        if (ax->logy) snprintf(buf, sizeof(buf), "%.2g", pow(10.0, ticks[i]));
        else format_tick(ticks[i], buf, sizeof(buf));
        draw_text_right(c, p.x - 6, py - FONT_H / 2, buf, RGB_BLACK, 1);
    }
    nt = nice_ticks(xlo, xhi, 6, ticks, 32);
    for (int i = 0; i < nt; i++) {
        int px = p.x + (int)((ticks[i] - xlo) / (xhi - xlo) * (p.w - 1) + 0.5);
        canvas_fill_rect(c, px, p.y + p.h, 1, 4, RGB_BLACK, 1.0f);
        format_tick(ticks[i], buf, sizeof(buf));
        draw_text_centered(c, px, p.y + p.h + 6, buf, RGB_BLACK, 1);
    }
    canvas_rect(c, p.x - 1, p.y - 1, p.w + 2, p.h + 2, RGB_BLACK);
    for (int k = 0; k < ns; k++) {
        int have = 0, lx = 0, ly = 0;
        for (int i = 0; i < s[k].n; i++) {
            double xv = s[k].x[i], yv = s[k].y[i];
            if (isnan(xv) || isnan(yv) || (ax->logy && !(yv > 0))) continue;
            if (ax->logy) yv = log10(yv);
            int px = p.x + (int)((xv - xlo) / (xhi - xlo) * (p.w - 1) + 0.5);
            int py = p.y + p.h - 1 - (int)((yv - ylo) / (yhi - ylo) * (p.h - 1) + 0.5);
            if (have && s[k].markers != 2) canvas_line(c, lx, ly, px, py, s[k].colour, 1, 1.0f);
            if (s[k].markers) canvas_fill_rect(c, px - 1, py - 1, 3, 3, s[k].colour, 1.0f);
            have = 1;
            lx = px;
            ly = py;
        }
    }
    if (ax->legend) {
        const char *names[16];
        Rgb cols[16];
        int n = 0;
        for (int k = 0; k < ns && n < 16; k++)
            if (s[k].name) { names[n] = s[k].name; cols[n++] = s[k].colour; }
        if (n) {
            int lw = legend_width(names, n, 8) + 8, lh = legend_height(n, 8) + 6;
            int ly = ax->legend == 2 ? p.y + p.h - lh - 4 : p.y + 4;
            canvas_fill_rect(c, p.x + p.w - lw - 4, ly, lw, lh, RGB_WHITE, 0.85f);
            canvas_rect(c, p.x + p.w - lw - 4, ly, lw, lh, RGB_GRAY);
            legend_draw(c, p.x + p.w - lw, ly + 3, names, cols, n, 8);
        }
    }
}

// ---- legends, panels -------------------------------------------------------------

int legend_height(int n, int size) {
    int row = size > FONT_H ? size + 4 : FONT_H + 4;
    return n * row;
}

int legend_width(const char *const *names, int n, int size) {
    return size + 6 + max_label_width(names, n);
}

int legend_draw(Canvas *c, int x, int y, const char *const *names, const Rgb *colours, int n, int size) {
    int row = size > FONT_H ? size + 4 : FONT_H + 4;
    for (int i = 0; i < n; i++) {
        int py = y + i * row;
        canvas_fill_rect(c, x, py, size, size, colours[i], 1.0f);
        canvas_rect(c, x - 1, py - 1, size + 2, size + 2, RGB_GRAY);
        draw_text(c, x + size + 6, py + (size - FONT_H) / 2, names[i] ? names[i] : "", RGB_BLACK, 1);
    }
    return n * row;
}

void panel_draw(Canvas *c, Rect r, const uint8_t *rgb, int iw, int ih, const char *title) {
    int th = title ? FONT_LINE + 2 : 0;
    char buf[128];
    if (title) draw_text_centered(c, r.x + r.w / 2, r.y, text_fit(title, r.w, buf, sizeof(buf)), RGB_BLACK, 1);
    canvas_image(c, r.x, r.y + th, r.w, r.h - th, rgb, iw, ih, 1.0f);
    canvas_rect(c, r.x - 1, r.y + th - 1, r.w + 2, r.h - th + 2, RGB_GRAY);
}
