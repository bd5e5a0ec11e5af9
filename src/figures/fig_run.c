// Figures of a training run: the global fuser's mixing weights (figure 2), the confusion matrix and
// the training curves (figure 7), and the hooks train and eval call. See figures.h.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "figures/colormap.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/plots.h"
#include "heads/head.h"
#include "io/json.h"
#include "io/safetensors.h"

// ---- layer and timestep names (RUN/features_meta.json; numbers when it is absent) ----------------

typedef struct {
    int num_layers, num_t;
    char layer[FUSION_MAX_SCALES * FUSION_MAX_STREAMS][24];  // short names, by global stream index
    int t[FUSION_MAX_TIMESTEPS];                             // UNet timestep of each input position (-1: unknown)
    char suffix[64];                                         // the captured module suffixes, for the key
} RunNames;

// "up_blocks.3.attentions.0.transformer_blocks.0.attn1" -> "up3.A0", "up_blocks.1.resnets.2.conv2" -> "up1.R2".
void figure_short_layer_name(const char *path, char *out, size_t size) {
    const char *b = strstr(path, "up_blocks."), *a = strstr(path, "attentions."), *r = strstr(path, "resnets.");
    if (b && (a || r)) {
        int nb = atoi(b + 10), n = atoi(a ? a + 11 : r + 8);
        snprintf(out, size, "up%d.%c%d", nb, a ? 'A' : 'R', n);
    } else {
        size_t len = strlen(path);
        snprintf(out, size, "%s", len > 8 ? path + len - 8 : path);
    }
}

static void run_names(const char *run_dir, const FeatureLayout *fl, RunNames *rn) {
    memset(rn, 0, sizeof(*rn));
    rn->num_layers = feature_layout_total_streams(fl);
    rn->num_t = fl->num_timesteps;
    for (int i = 0; i < rn->num_layers; i++) snprintf(rn->layer[i], sizeof(rn->layer[i]), "L%d", i);
    for (int k = 0; k < rn->num_t; k++) rn->t[k] = -1;
    char path[4200];
    snprintf(path, sizeof(path), "%s/features_meta.json", run_dir);
    JsonValue meta, list;
    if (json_parse_file(path, &meta)) { sd_clear_error(); return; }
    const char *s = NULL;
    if (json_get_string(&meta, "layers", NULL, &s) == 0 && s && json_parse(s, strlen(s), "layers", &list) == 0) {
        if (list.type == JSON_ARRAY && list.count == rn->num_layers)
            for (int i = 0; i < list.count; i++)
                if (list.items[i].type == JSON_STRING)
                    figure_short_layer_name(list.items[i].string, rn->layer[i], sizeof(rn->layer[i]));
        json_free(&list);
    }
    if (json_get_string(&meta, "save_t", NULL, &s) == 0 && s && json_parse(s, strlen(s), "save_t", &list) == 0) {
        if (list.type == JSON_ARRAY && list.count == rn->num_t)
            for (int k = 0; k < list.count; k++) rn->t[k] = (int)list.items[k].number;
        json_free(&list);
    }
    if (json_get_string(&meta, "layer_suffixes", NULL, &s) == 0 && s) snprintf(rn->suffix, sizeof(rn->suffix), "%s", s);
    json_free(&meta);
    sd_clear_error();
}

static int read_head_config(const char *run_dir, HeadConfig *hc) {
    char path[4200];
    JsonValue j;
    if (figure_run_file(run_dir, "head_config.json", "satdifuser train", path, sizeof(path))) return SD_FAIL;
    if (json_parse_file(path, &j)) return SD_FAIL;
    int rc = head_config_from_json(hc, &j);
    json_free(&j);
    if (rc) sd_error_context("%s", path);
    return rc;
}

// ---- figure 2: mixing weights --------------------------------------------------------------------

int fig_mixing(const char *run_dir, const char *out) {
    HeadConfig hc;
    if (read_head_config(run_dir, &hc)) return SD_FAIL;
    const FeatureLayout *fl = &hc.layout;
    if (hc.fuser.kind != FUSER_GW)
        return sd_errorf("%s: the run's fuser is '%s'; mixing weights belong to the global fuser (--fuser gw)", run_dir,
                         fuser_kind_name(hc.fuser.kind));
    char path[4200];
    if (figure_run_file(run_dir, "best.safetensors", "satdifuser train, at its first validation", path, sizeof(path)))
        return SD_FAIL;
    SafeTensors st;
    if (st_open(&st, path)) return SD_FAIL;
    const StEntry *e;
    int L = feature_layout_total_streams(fl), T = fl->num_timesteps;
    if (st_require(&st, "mixing_weights", &e)) { st_close(&st); return SD_FAIL; }
    if (e->numel != (int64_t)L * T) {
        st_close(&st);
        return sd_errorf("%s: 'mixing_weights' has %lld values, the head config's layout %d streams x %d timesteps",
                         path, (long long)e->numel, L, T);
    }
    float *raw = (float *)malloc((size_t)L * T * sizeof(float));
    double *w = (double *)malloc((size_t)L * T * sizeof(double));
    if (!raw || !w || st_entry_to_f32(e, raw)) {
        st_close(&st);
        free(raw);
        free(w);
        return sd_errorf("%s: cannot read 'mixing_weights'", path);
    }
    st_close(&st);
    // w = softmax(mixing_weights), one softmax over all streams x timesteps (fusion/global.c)
    double mx = raw[0], sum = 0.0, wmax = 0.0, wmin = 1.0;
    for (int i = 1; i < L * T; i++) mx = raw[i] > mx ? raw[i] : mx;
    for (int i = 0; i < L * T; i++) sum += (w[i] = exp((double)raw[i] - mx));
    for (int i = 0; i < L * T; i++) {
        w[i] /= sum;
        wmax = w[i] > wmax ? w[i] : wmax;
        wmin = w[i] < wmin ? w[i] : wmin;
    }
    free(raw);
    RunNames rn;
    run_names(run_dir, fl, &rn);

    char rowbuf[FUSION_MAX_TIMESTEPS][24];
    const char *rows[FUSION_MAX_TIMESTEPS];
    for (int k = 0; k < T; k++) {  // row k = ts_idx k (timesteps by step index, descending)
        int pos = fl->ts_input[k];
        if (rn.t[pos] >= 0) snprintf(rowbuf[k], sizeof(rowbuf[k]), "t=%d", rn.t[pos]);
        else snprintf(rowbuf[k], sizeof(rowbuf[k]), "step %d", fl->timesteps[pos]);
        rows[k] = rowbuf[k];
    }
    Heatmap hm[FUSION_MAX_SCALES];
    double *vals[FUSION_MAX_SCALES] = {0};
    const char *cols[FUSION_MAX_SCALES][FUSION_MAX_STREAMS];
    char titles[FUSION_MAX_SCALES][48];
    int total_w = 0, max_h = 0, gap = 24, rc = SD_FAIL;
    for (int s = 0; s < fl->num_scales; s++) {
        int Ls = fl->num_streams[s];
        vals[s] = (double *)malloc((size_t)T * Ls * sizeof(double));
        if (!vals[s]) { sd_errorf("out of memory"); goto done; }
        for (int k = 0; k < T; k++)
            for (int l = 0; l < Ls; l++) vals[s][k * Ls + l] = w[k * L + feature_layout_stream_index(fl, s, l)];
        for (int l = 0; l < Ls; l++) cols[s][l] = rn.layer[feature_layout_stream_index(fl, s, l)];
        snprintf(titles[s], sizeof(titles[s]), "scale %d (%dx%d)", s, fl->width[s], fl->width[s]);
        Heatmap h = {vals[s], T, Ls, wmin, wmax, 0, s == 0 ? rows : NULL, cols[s], "%.2f", 100.0, 40, 22,
                     titles[s], NULL, NULL};
        hm[s] = h;
        int hw, hh, cx, cy;
        heatmap_layout(&hm[s], &hw, &hh, &cx, &cy);
        total_w += hw + gap;
        max_h = hh > max_h ? hh : max_h;
    }
    int margin = 16, top = 3 * FONT_LINE + 12, foot = 3 * FONT_LINE + 8;
    int W = margin + total_w + COLORBAR_W + margin, H = top + max_h + foot + margin;
    Canvas c;
    if (canvas_init(&c, W < 420 ? 420 : W, H, RGB_WHITE)) goto done;
    char line[512];
    snprintf(line, sizeof(line), "Global fusion: softmax mixing weights (%%), %d timesteps x %d layers", T, L);
    draw_text(&c, margin, margin / 2, line, RGB_BLACK, 1);
    snprintf(line, sizeof(line), "%s/best.safetensors; uniform would be %.2f%% each; colours span min..max", run_dir,
             100.0 / (L * T));
    draw_text(&c, margin, margin / 2 + FONT_LINE + 2, line, RGB_GRAY, 1);
    int x = margin, y0 = top;
    for (int s = 0; s < fl->num_scales; s++) {
        int hw, hh, cx, cy;
        heatmap_layout(&hm[s], &hw, &hh, &cx, &cy);
        heatmap_draw(&c, x, y0 + (max_h - hh), &hm[s]);
        x += hw + gap;
    }
    Rect cb = {x, top + FONT_LINE, 12, max_h - FONT_LINE};
    colorbar_draw(&c, cb, &hm[0], "%.1f");
    snprintf(line, sizeof(line), "upB.An: up_blocks.B.attentions.n, upB.Rn: up_blocks.B.resnets.n; captured: %s",
             rn.suffix[0] ? rn.suffix : "(RUN/features_meta.json absent)");
    draw_text(&c, margin, top + max_h + 10, line, RGB_GRAY, 1);
    draw_text(&c, margin, top + max_h + 10 + FONT_LINE + 2,
              "rows: the UNet timestep of each saved inversion step; each weight scales its layer's Phi output",
              RGB_GRAY, 1);
    rc = canvas_write_png(&c, out);
    canvas_free(&c);
done:
    for (int s = 0; s < fl->num_scales; s++) free(vals[s]);
    free(w);
    return rc;
}

// ---- figure 7: confusion matrix --------------------------------------------------------------------

// RUN/confusion_<split>.json: {"split", "task", "unit", "rows": "label", "cols": "prediction",
//                              "classes": [names], "counts": [[...], ...]}
static int write_confusion_json(const char *path, const char *split, const EvalResult *ev, const LabelSet *labels) {
    int C = ev->num_classes;
    char tmp[4300], buf[32], esc[512];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return sd_errorf("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "{\"split\": \"%s\", \"task\": \"%s\", \"unit\": \"%s\", \"rows\": \"label\", \"cols\": \"prediction\",\n",
            split, label_task_name(ev->task), ev->task == LABELS_SEGMENTATION ? "pixels" : "images");
    fprintf(f, " \"classes\": [");
    for (int c = 0; c < C; c++) {
        json_escape(labels_class_name(labels, c, buf, (int)sizeof(buf)), esc, sizeof(esc));
        fprintf(f, "%s%s", c ? ", " : "", esc);
    }
    fprintf(f, "],\n \"counts\": [");
    for (int r = 0; r < C; r++) {
        fprintf(f, "%s[", r ? ",\n            " : "");
        for (int p = 0; p < C; p++) {
            // classification: row = label; segmentation: the original's matrix has row = prediction
            double v = ev->task == LABELS_SEGMENTATION ? (double)ev->seg_confusion[(int64_t)p * C + r]
                                                       : (double)ev->confusion[(int64_t)r * C + p];
            fprintf(f, "%s%.0f", p ? ", " : "", v);
        }
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) return sd_errorf("%s: write failed", path);
    return 0;
}

int fig_confusion(const char *run_dir, const char *split, const char *out) {
    char name[128], path[4200];
    snprintf(name, sizeof(name), "confusion_%s.json", split);
    if (figure_run_file(run_dir, name, "satdifuser train (test) or satdifuser eval --split", path, sizeof(path)))
        return SD_FAIL;
    JsonValue j;
    if (json_parse_file(path, &j)) return SD_FAIL;
    const JsonValue *classes = json_get(&j, "classes"), *counts = json_get(&j, "counts");
    const char *unit = "images";
    json_get_string(&j, "unit", "images", &unit);
    int C = classes && classes->type == JSON_ARRAY ? classes->count : 0, rc = SD_FAIL;
    double *cnt = NULL, *norm = NULL;
    const char *names[256];
    if (C < 1 || C > 256 || !counts || counts->type != JSON_ARRAY || counts->count != C) {
        sd_errorf("%s: expected 'classes' (1..256 names) and 'counts' (one row per class)", path);
        goto done;
    }
    cnt = (double *)malloc((size_t)C * C * sizeof(double));
    norm = (double *)malloc((size_t)C * C * sizeof(double));
    if (!cnt || !norm) { sd_errorf("out of memory"); goto done; }
    double total = 0, correct = 0;
    for (int r = 0; r < C; r++) {
        const JsonValue *row = &counts->items[r];
        names[r] = classes->items[r].type == JSON_STRING ? classes->items[r].string : "?";
        if (row->type != JSON_ARRAY || row->count != C) { sd_errorf("%s: counts row %d: expected %d numbers", path, r, C); goto done; }
        double rs = 0;
        for (int p = 0; p < C; p++) {
            if (row->items[p].type != JSON_NUMBER || !(row->items[p].number >= 0)) { sd_errorf("%s: counts[%d][%d]: expected a count", path, r, p); goto done; }
            rs += cnt[r * C + p] = row->items[p].number;
        }
        for (int p = 0; p < C; p++) norm[r * C + p] = rs > 0 ? cnt[r * C + p] / rs : NAN;
        total += rs;
        correct += cnt[r * C + r];
    }
    double cmax = 0;
    for (int i = 0; i < C * C; i++) cmax = cnt[i] > cmax ? cnt[i] : cmax;
    int cell = C <= 6 ? 56 : C <= 12 ? 40 : C <= 24 ? 28 : 14;
    Heatmap a = {cnt, C, C, 0.0, cmax, 0, names, names, C <= 24 ? "%.0f" : NULL, 1.0, cell, cell < 22 ? 22 : cell,
                 "counts", "label", "prediction"};
    Heatmap b = {norm, C, C, 0.0, 1.0, 0, names, names, C <= 24 ? "%.2f" : NULL, 1.0, cell, cell < 22 ? 22 : cell,
                 "row-normalised (recall on the diagonal)", "label", "prediction"};
    if (cell < 22) { a.cell_h = b.cell_h = cell; }
    int aw, ah, bw, bh, cx, cy, margin = 16, gap = 40, top = 2 * FONT_LINE + 16;
    heatmap_layout(&a, &aw, &ah, &cx, &cy);
    heatmap_layout(&b, &bw, &bh, &cx, &cy);
    Canvas c;
    int W = margin + aw + gap + bw + 16 + COLORBAR_W + margin, H = top + (ah > bh ? ah : bh) + 2 * margin;
    if (canvas_init(&c, W < 360 ? 360 : W, H, RGB_WHITE)) goto done;
    char line[512];
    snprintf(line, sizeof(line), "Confusion matrix, %s split (%s): %.0f %s, %.2f%% correct", split, run_dir, total, unit,
             total > 0 ? 100.0 * correct / total : 0.0);
    draw_text(&c, margin, margin / 2, line, RGB_BLACK, 1);
    heatmap_draw(&c, margin, top, &a);
    heatmap_draw(&c, margin + aw + gap, top, &b);
    heatmap_layout(&b, &bw, &bh, &cx, &cy);
    Rect cb = {margin + aw + gap + bw + 16, top + cy, 12, C * b.cell_h};
    colorbar_draw(&c, cb, &b, "%.1f");
    rc = canvas_write_png(&c, out);
    canvas_free(&c);
done:
    free(cnt);
    free(norm);
    json_free(&j);
    return rc;
}

// ---- figure 7: training curves ----------------------------------------------------------------------

typedef struct {
    double *x, *y;
    int n, cap;
} Pts;

static int pts_add(Pts *p, double x, double y) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        double *nx = (double *)realloc(p->x, (size_t)cap * sizeof(double));
        if (!nx) return sd_errorf("out of memory");
        p->x = nx;
        double *ny = (double *)realloc(p->y, (size_t)cap * sizeof(double));
        if (!ny) return sd_errorf("out of memory");
        p->y = ny;
        p->cap = cap;
    }
    p->x[p->n] = x;
    p->y[p->n++] = y;
    return 0;
}

int fig_curves(const char *run_dir, const char *out) {
    char path[4200], line[1024];
    if (figure_run_file(run_dir, "log.jsonl", "satdifuser train", path, sizeof(path))) return SD_FAIL;
    HeadConfig hc;
    const char *metric = "val metric";
    if (read_head_config(run_dir, &hc) == 0)
        metric = hc.task == TASK_SEGMENTATION ? "val mIoU (%)" : hc.task == TASK_MULTILABEL ? "val micro F1" : "val accuracy";
    sd_clear_error();
    FILE *f = fopen(path, "r");
    if (!f) return sd_errorf("%s: cannot read: %s", path, strerror(errno));
    Pts loss = {0}, lr = {0}, vloss = {0}, vmet = {0}, best = {0};
    int rc = SD_FAIL, lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        JsonValue j;
        size_t len = strlen(line);
        if (len <= 1) continue;
        if (json_parse(line, len, path, &j)) { sd_error_context("line %d", lineno); goto done; }
        const char *ev = NULL, *split = NULL;
        double step = NAN, v = NAN, l = NAN, r = NAN;
        int is_best = 0, err = 0;
        err |= json_get_string(&j, "event", "", &ev);
        err |= json_get_string(&j, "split", "", &split);
        err |= json_get_double(&j, "global_step", NAN, &step);
        err |= json_get_double(&j, "loss", NAN, &l);
        err |= json_get_double(&j, "lr", NAN, &r);
        err |= json_get_double(&j, "metric", NAN, &v);
        err |= json_get_bool(&j, "best", 0, &is_best);
        if (!err && !strcmp(ev, "step")) err |= pts_add(&loss, step, l) | pts_add(&lr, step, r);
        if (!err && !strcmp(ev, "eval") && !strcmp(split, "val")) {
            err |= pts_add(&vmet, step, v);
            if (!isnan(l)) err |= pts_add(&vloss, step, l);
            if (is_best) err |= pts_add(&best, step, v);
        }
        json_free(&j);
        if (err) { sd_error_context("%s: line %d", path, lineno); goto done; }
    }
    if (loss.n == 0) { sd_errorf("%s: no training step logged yet", path); goto done; }
    int pw = 380, ph = 280, margin = 12, top = FONT_LINE + 16;
    Canvas c;
    if (canvas_init(&c, 3 * pw + 2 * margin, top + ph + margin, RGB_WHITE)) goto done;
    snprintf(line, sizeof(line), "Training curves: %s/log.jsonl (%d steps, %d validations)", run_dir, loss.n, vmet.n);
    draw_text(&c, margin, 8, line, RGB_BLACK, 1);
    Rgb blue = colormap_class(0), orange = colormap_class(2), green = colormap_class(1), red = colormap_class(3);
    Series s1[2] = {{loss.x, loss.y, loss.n, blue, "train (per step)", 0}, {vloss.x, vloss.y, vloss.n, orange, "val", 1}};
    Axes a1 = {"loss", "global step", "cross-entropy", 0, 1};
    lineplot_draw(&c, (Rect){margin, top, pw, ph}, s1, vloss.n ? 2 : 1, &a1);
    Series s2[2] = {{vmet.x, vmet.y, vmet.n, green, metric, 1}, {best.x, best.y, best.n, red, "new best (saved)", 2}};
    Axes a2 = {metric, "global step", NULL, 0, 2};
    lineplot_draw(&c, (Rect){margin + pw, top, pw, ph}, s2, 2, &a2);
    Series s3[1] = {{lr.x, lr.y, lr.n, blue, NULL, 0}};
    Axes a3 = {"learning rate (log scale)", "global step", NULL, 1, 0};
    lineplot_draw(&c, (Rect){margin + 2 * pw, top, pw, ph}, s3, 1, &a3);
    rc = canvas_write_png(&c, out);
    canvas_free(&c);
done:
    fclose(f);
    free(loss.x); free(loss.y); free(lr.x); free(lr.y); free(vloss.x); free(vloss.y);
    free(vmet.x); free(vmet.y); free(best.x); free(best.y);
    return rc;
}

// ---- hooks -----------------------------------------------------------------------------------

int figures_after_eval(const char *run_dir, const char *split, const EvalResult *ev, const LabelSet *labels) {
    if (ev->task == LABELS_MULTILABEL) return 1;  // no single confusion matrix
    if ((ev->task == LABELS_SEGMENTATION && !ev->seg_confusion) || (ev->task == LABELS_CLASSIFICATION && !ev->confusion)) return 1;
    char json[4200], png[4200];
    snprintf(json, sizeof(json), "%s/confusion_%s.json", run_dir, split);
    snprintf(png, sizeof(png), "%s/confusion_%s.png", run_dir, split);
    return write_confusion_json(json, split, ev, labels) || fig_confusion(run_dir, split, png) ? SD_FAIL : 0;
}

int figures_after_train(const char *run_dir) {
    char png[4200];
    snprintf(png, sizeof(png), "%s/training_curves.png", run_dir);
    return fig_curves(run_dir, png) ? SD_FAIL : 0;
}

// ---- figure 4b (the paper's Fig. 3): a metric per module and timestep, from single-stream runs ------------

int fig_single(const char *const *runs, int n_runs, const char *out) {
    enum { MAX_RUNS = 64, MAX_SERIES = 16 };
    if (n_runs < 1 || n_runs > MAX_RUNS) return sd_errorf("--runs: give 1 to %d run folders (got %d)", MAX_RUNS, n_runs);
    int stream[MAX_RUNS], series_of[MAX_SERIES], ns = 0, task = -1;
    double t_of[MAX_RUNS], metric[MAX_RUNS];
    char names[MAX_SERIES][40];
    for (int r = 0; r < n_runs; r++) {
        HeadConfig hc;
        if (read_head_config(runs[r], &hc)) return SD_FAIL;
        if (hc.fuser.kind != FUSER_SINGLE)
            return sd_errorf("%s: the run's fuser is '%s'; this figure compares --fuser single runs", runs[r],
                             fuser_kind_name(hc.fuser.kind));
        if (task >= 0 && (int)hc.task != task) return sd_errorf("%s: another task than %s's", runs[r], runs[0]);
        task = (int)hc.task;
        const FeatureLayout *fl = &hc.layout;
        // the timestep: single_timestep (a step index; -1: the largest), its UNet t from features_meta.json
        int pos = 0;
        for (int i = 0; i < fl->num_timesteps; i++) {
            if (hc.fuser.single_timestep < 0 && fl->timesteps[i] > fl->timesteps[pos]) pos = i;
            if (hc.fuser.single_timestep >= 0 && fl->timesteps[i] == hc.fuser.single_timestep) pos = i;
        }
        RunNames rn;
        run_names(runs[r], fl, &rn);
        t_of[r] = rn.t[pos] >= 0 ? rn.t[pos] : fl->timesteps[pos];
        int l = hc.fuser.single_stream < fl->num_streams[0] ? hc.fuser.single_stream : fl->num_streams[0] - 1;
        stream[r] = l;
        // the metric of the final test (train's metrics.json, or eval's metrics_test.json)
        char path[4200];
        JsonValue j;
        snprintf(path, sizeof(path), "%s/metrics_test.json", runs[r]);
        if (json_parse_file(path, &j)) {
            sd_clear_error();
            if (figure_run_file(runs[r], "metrics.json", "satdifuser train (its final test) or eval", path, sizeof(path)) ||
                json_parse_file(path, &j))
                return SD_FAIL;
        }
        const char *key = hc.task == TASK_SEGMENTATION ? "mIoU" : hc.task == TASK_MULTILABEL ? "F1" : "accuracy";
        int bad = json_get_double(&j, key, NAN, &metric[r]);
        json_free(&j);
        if (bad || isnan(metric[r])) return sd_errorf("%s: no '%s'", path, key);
        int k = 0;
        while (k < ns && series_of[k] != l) k++;
        if (k == ns) {
            if (ns == MAX_SERIES) return sd_errorf("more than %d streams", MAX_SERIES);
            series_of[ns] = l;
            snprintf(names[ns], sizeof(names[ns]), "%s (%s)", rn.layer[l], strstr(rn.layer[l], ".A") ? "self-attention" : strstr(rn.layer[l], ".R") ? "ResNet" : "stream");
            ns++;
        }
    }
    // one curve per stream, its points by timestep
    double xs[MAX_SERIES][MAX_RUNS], ys[MAX_SERIES][MAX_RUNS];
    Series s[MAX_SERIES];
    for (int k = 0; k < ns; k++) {
        int n = 0;
        for (int r = 0; r < n_runs; r++)
            if (stream[r] == series_of[k]) {
                int at = n++;
                while (at > 0 && xs[k][at - 1] > t_of[r]) { xs[k][at] = xs[k][at - 1]; ys[k][at] = ys[k][at - 1]; at--; }
                xs[k][at] = t_of[r];
                ys[k][at] = metric[r];
            }
        Series one = {xs[k], ys[k], n, colormap_class(k), names[k], 1};
        s[k] = one;
    }
    Canvas c;
    int margin = 12, W = 640, H = 400;
    if (canvas_init(&c, W, H, RGB_WHITE)) return SD_FAIL;
    const char *mname = task == TASK_SEGMENTATION ? "test mIoU (%)" : task == TASK_MULTILABEL ? "test micro F1" : "test accuracy";
    char line[256];
    snprintf(line, sizeof(line), "One stream at one timestep (--fuser single): %s of %d runs", mname, n_runs);
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    draw_text(&c, margin, 6 + FONT_LINE + 2, "each curve: a stream (its scale-0 layer; other scales use the same index)", RGB_GRAY, 1);
    Axes ax = {NULL, "UNet timestep t", mname, 0, 1};
    lineplot_draw(&c, (Rect){margin, 2 * FONT_LINE + 14, W - 2 * margin, H - 2 * FONT_LINE - 14 - margin}, s, ns, &ax);
    int rc = canvas_write_png(&c, out);
    canvas_free(&c);
    return rc;
}
