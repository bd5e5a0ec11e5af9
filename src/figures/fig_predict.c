// Figure 6: predictions. A segmentation map (predict's PNG of class indices) blended over its image,
// the ground truth beside it when the labels have the image, and a legend of class names and colours;
// a classification's top-k class probabilities as bars. Large scenes are downsampled for a preview.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "figures/colormap.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/plots.h"
#include "io/json.h"
#include "io/labels.h"
#include "io/png.h"

enum { MAX_CLASSES = 256, IGNORED = -1 };

// The id of an image file: its name without folder and extension.
static void file_stem(const char *path, char *out, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    int len = dot && dot > b ? (int)(dot - b) : (int)strlen(b);
    snprintf(out, size, "%.*s", len, b);
}

// Downsamples by an integer factor f: RGB by the block mean, classes by the block's most frequent
// class (ties: the lower index; IGNORED only when the whole block is).
static void downsample(const uint8_t *rgb, const int *cls, int w, int h, int f, uint8_t *rgb_out, int *cls_out, int C) {
    int wo = w / f, ho = h / f;
    int counts[MAX_CLASSES];
    for (int y = 0; y < ho; y++)
        for (int x = 0; x < wo; x++) {
            int sum[3] = {0, 0, 0};
            memset(counts, 0, (size_t)C * sizeof(int));
            for (int j = 0; j < f; j++)
                for (int i = 0; i < f; i++) {
                    size_t p = (size_t)(y * f + j) * w + (x * f + i);
                    for (int k = 0; k < 3; k++) sum[k] += rgb ? rgb[3 * p + k] : 0;
                    if (cls && cls[p] >= 0 && cls[p] < C) counts[cls[p]]++;
                }
            size_t q = (size_t)y * wo + x;
            if (rgb_out)
                for (int k = 0; k < 3; k++) rgb_out[3 * q + k] = (uint8_t)((sum[k] + f * f / 2) / (f * f));
            if (cls_out) {
                int best = IGNORED;
                for (int c = 0; c < C; c++)
                    if (counts[c] > 0 && (best < 0 || counts[c] > counts[best])) best = c;
                cls_out[q] = best;
            }
        }
}

// Class map -> RGB: class colours blended over the image with alpha (ignored pixels: the image, or gray).
static void colour_map(const int *cls, const uint8_t *under, int n, float alpha, uint8_t *out) {
    for (int p = 0; p < n; p++) {
        Rgb base = under ? (Rgb){under[3 * p], under[3 * p + 1], under[3 * p + 2]} : (Rgb){200, 200, 200};
        Rgb k = cls[p] >= 0 ? colormap_class(cls[p]) : base;
        float a = cls[p] >= 0 ? alpha : 1.0f;
        out[3 * p] = (uint8_t)(a * k.r + (1 - a) * base.r + 0.5f);
        out[3 * p + 1] = (uint8_t)(a * k.g + (1 - a) * base.g + 0.5f);
        out[3 * p + 2] = (uint8_t)(a * k.b + (1 - a) * base.b + 0.5f);
    }
}

int fig_overlay(const OverlayFigure *o, const char *out) {
    PngImage pred;
    LabelSet labels;
    memset(&labels, 0, sizeof(labels));
    int have_labels = 0, rc = SD_FAIL, w = 0, h = 0, C = 0, gt_row = -1;
    uint8_t *img = NULL, *img_s = NULL, *over = NULL, *gt_rgb = NULL, *plain = NULL;
    int *cls = NULL, *cls_s = NULL, *gt = NULL, *gt_s = NULL;
    int64_t *gt64 = NULL;
    char id[256], buf[512];
    float alpha = o->alpha > 0 && o->alpha <= 1 ? o->alpha : 0.5f;
    if (png_read(o->pred, &pred)) return SD_FAIL;
    if (pred.channels != 1 || pred.bytes_per_sample != 1) {
        sd_errorf("%s: expected predict's map of class indices (an 8-bit palette or gray PNG), got %d channels of %d bits",
                  o->pred, pred.channels, pred.bit_depth);
        goto done;
    }
    if (figure_load_rgb(o->input, o->bands, &img, &w, &h)) goto done;
    if (w != pred.width || h != pred.height) {
        sd_errorf("%s is %dx%d but the image %s is %dx%d: give the image the prediction was made from", o->pred,
                  pred.width, pred.height, o->input, w, h);
        goto done;
    }
    size_t n = (size_t)w * h;
    cls = (int *)malloc(n * sizeof(int));
    if (!cls) { sd_errorf("out of memory"); goto done; }
    int maxc = 0;
    for (size_t p = 0; p < n; p++) {
        cls[p] = ((const uint8_t *)pred.pixels)[p];
        maxc = cls[p] > maxc ? cls[p] : maxc;
    }
    if (o->id) snprintf(id, sizeof(id), "%s", o->id);
    else file_stem(o->input, id, sizeof(id));
    if (o->labels) {
        if (labels_load(o->labels, LABELS_SEGMENTATION, &labels)) goto done;
        have_labels = 1;
        for (int r = 0; r < labels.count; r++)
            if (!strcmp(labels.rows[r].image, id)) gt_row = r;
    }
    C = o->num_classes > 0 ? o->num_classes : have_labels && labels.num_classes > 0 ? labels.num_classes : maxc + 1;
    if (C > MAX_CLASSES) { sd_errorf("%d classes: at most %d", C, MAX_CLASSES); goto done; }
    if (maxc >= C) {
        sd_errorf("%s: class index %d, but %s has %d classes", o->pred, maxc, o->labels ? o->labels : "--num-classes", C);
        goto done;
    }
    if (gt_row >= 0) {
        gt64 = (int64_t *)malloc(n * sizeof(int64_t));
        gt = (int *)malloc(n * sizeof(int));
        if (!gt64 || !gt) { sd_errorf("out of memory"); goto done; }
        if (labels_load_mask(&labels, gt_row, h, w, 255, IGNORED, gt64)) goto done;
        for (size_t p = 0; p < n; p++) gt[p] = (int)gt64[p];
    }
    // preview size: an integer downsampling factor brings the longer side to max_side or below
    int max_side = o->max_side > 0 ? o->max_side : 512, f = 1;
    while ((w / f > max_side || h / f > max_side) && f < w && f < h) f++;
    int ws = w / f, hs = h / f;
    size_t ns = (size_t)ws * hs;
    img_s = (uint8_t *)malloc(ns * 3);
    over = (uint8_t *)malloc(ns * 3);
    plain = (uint8_t *)malloc(ns * 3);
    cls_s = (int *)malloc(ns * sizeof(int));
    gt_s = gt ? (int *)malloc(ns * sizeof(int)) : NULL;
    gt_rgb = gt ? (uint8_t *)malloc(ns * 3) : NULL;
    if (!img_s || !over || !plain || !cls_s || (gt && (!gt_s || !gt_rgb))) { sd_errorf("out of memory"); goto done; }
    downsample(img, cls, w, h, f, img_s, cls_s, C);
    if (gt) downsample(NULL, gt, w, h, f, NULL, gt_s, C);
    colour_map(cls_s, img_s, (int)ns, alpha, over);
    colour_map(cls_s, NULL, (int)ns, 1.0f, plain);
    if (gt) colour_map(gt_s, NULL, (int)ns, 1.0f, gt_rgb);
    // panels: input | prediction over input | prediction | ground truth, then the legend
    int P = ws > hs ? ws : hs, zoom = P < 256 ? (256 + P - 1) / P : 1;
    int pw = ws * zoom, ph = hs * zoom, th = FONT_LINE + 2, margin = 14, gap = 14;
    int npanels = gt ? 4 : 3;
    const char *names[MAX_CLASSES + 1];
    char name_buf[MAX_CLASSES][64];
    Rgb cols[MAX_CLASSES + 1];
    long counts[MAX_CLASSES] = {0};
    for (size_t p = 0; p < n; p++) counts[cls[p]]++;
    for (int c = 0; c < C; c++) {
        char nb[32];
        const char *nm = have_labels ? labels_class_name(&labels, c, nb, (int)sizeof(nb)) : NULL;
        if (!nm) { snprintf(nb, sizeof(nb), "class %d", c); nm = nb; }
        snprintf(name_buf[c], sizeof(name_buf[c]), "%d %s: %.1f%%", c, nm, 100.0 * counts[c] / (double)n);
        names[c] = name_buf[c];
        cols[c] = colormap_class(c);
    }
    int n_leg = C;
    if (gt) {  // ignored ground-truth pixels are drawn gray
        int any = 0;
        for (size_t p = 0; p < n; p++) any |= gt[p] < 0;
        if (any) { names[n_leg] = "ignored (ground truth)"; cols[n_leg++] = (Rgb){200, 200, 200}; }
    }
    const char *leg_title = "classes (% of prediction)";
    int legend_w = legend_width(names, n_leg, 12) + 8, lh = legend_height(n_leg, 12);
    if (text_width(leg_title, 1) + 8 > legend_w) legend_w = text_width(leg_title, 1) + 8;
    int W = margin + npanels * (pw + gap) + legend_w + margin;
    int H = 2 * FONT_LINE + 14 + th + (ph > lh + FONT_LINE + 4 ? ph : lh + FONT_LINE + 4) + 2 * margin;
    Canvas cv;
    if (canvas_init(&cv, W, H, RGB_WHITE)) goto done;
    snprintf(buf, sizeof(buf), "Segmentation of %s (%dx%d%s)", id, w, h, f > 1 ? ", preview" : "");
    draw_text(&cv, margin, 6, buf, RGB_BLACK, 1);
    snprintf(buf, sizeof(buf), "%s over %s, class colours at %.0f%% opacity%s", o->pred, o->input, 100.0 * alpha,
             f > 1 ? "; each preview pixel is the most frequent class of its block" : "");
    draw_text(&cv, margin, 6 + FONT_LINE + 2, buf, RGB_GRAY, 1);
    int y = 2 * FONT_LINE + 14, x = margin;
    snprintf(buf, sizeof(buf), f > 1 ? "input (1/%d)" : "input", f);
    panel_draw(&cv, (Rect){x, y, pw, ph + th}, img_s, ws, hs, buf);
    x += pw + gap;
    panel_draw(&cv, (Rect){x, y, pw, ph + th}, over, ws, hs, "prediction over input");
    x += pw + gap;
    panel_draw(&cv, (Rect){x, y, pw, ph + th}, plain, ws, hs, "prediction");
    x += pw + gap;
    if (gt) {
        panel_draw(&cv, (Rect){x, y, pw, ph + th}, gt_rgb, ws, hs, "ground truth");
        x += pw + gap;
    }
    draw_text(&cv, x, y, leg_title, RGB_BLACK, 1);
    legend_draw(&cv, x + 2, y + th + 4, names, cols, n_leg, 12);
    rc = canvas_write_png(&cv, out);
    canvas_free(&cv);
done:
    png_free(&pred);
    if (have_labels) labels_free(&labels);
    free(img); free(img_s); free(over); free(plain); free(gt_rgb);
    free(cls); free(cls_s); free(gt); free(gt_s); free(gt64);
    return rc;
}

int fig_topk(const char *pred_json, const char *labels_path, int k, const char *out) {
    JsonValue j;
    LabelSet labels;
    memset(&labels, 0, sizeof(labels));
    int have_labels = 0, rc = SD_FAIL;
    if (json_parse_file(pred_json, &j)) return SD_FAIL;
    const JsonValue *scores = json_get(&j, "scores");
    const char *task = "classification";
    json_get_string(&j, "task", "classification", &task);
    int multi = strstr(task, "multi") != NULL, C = scores && scores->type == JSON_ARRAY ? scores->count : 0;
    double v[MAX_CLASSES];
    int order[MAX_CLASSES];
    const char *names[MAX_CLASSES];
    char name_buf[MAX_CLASSES][64];
    Rgb cols[MAX_CLASSES];
    if (C < 1 || C > MAX_CLASSES) { sd_errorf("%s: expected 'scores', a list of 1..%d class probabilities (predict writes it)", pred_json, MAX_CLASSES); goto done; }
    for (int c = 0; c < C; c++) {
        if (scores->items[c].type != JSON_NUMBER) { sd_errorf("%s: scores[%d] is not a number", pred_json, c); goto done; }
        v[c] = scores->items[c].number;
        order[c] = c;
    }
    if (labels_path) {
        if (labels_load(labels_path, multi ? LABELS_MULTILABEL : LABELS_CLASSIFICATION, &labels)) goto done;
        have_labels = 1;
    }
    for (int a = 1; a < C; a++)  // descending by score, stable
        for (int b = a; b > 0 && v[order[b - 1]] < v[order[b]]; b--) { int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t; }
    if (k < 1) k = 5;
    if (k > C) k = C;
    double vals[MAX_CLASSES];
    for (int i = 0; i < k; i++) {
        int c = order[i];
        char nb[32];
        const char *nm = have_labels && c < labels.num_classes ? labels_class_name(&labels, c, nb, (int)sizeof(nb)) : NULL;
        if (nm) snprintf(name_buf[i], sizeof(name_buf[i]), "%s (%d)", nm, c);
        else snprintf(name_buf[i], sizeof(name_buf[i]), "class %d", c);
        names[i] = name_buf[i];
        cols[i] = colormap_class(c);
        vals[i] = v[c];
    }
    int margin = 14, row = 22, label_w = 150, W = 520, H = 2 * FONT_LINE + 20 + k * row + margin;
    Canvas cv;
    if (canvas_init(&cv, W, H, RGB_WHITE)) goto done;
    char buf[512];
    snprintf(buf, sizeof(buf), "Top-%d classes (%s probability, %%)", k, multi ? "sigmoid" : "softmax");
    draw_text(&cv, margin, 6, buf, RGB_BLACK, 1);
    draw_text(&cv, margin, 6 + FONT_LINE + 2, pred_json, RGB_GRAY, 1);
    bars_draw(&cv, (Rect){margin, 2 * FONT_LINE + 16, W - 2 * margin, k * row}, vals, k, names, cols, 1.0, label_w,
              "%.1f", 100.0);
    rc = canvas_write_png(&cv, out);
    canvas_free(&cv);
done:
    json_free(&j);
    if (have_labels) labels_free(&labels);
    return rc;
}
