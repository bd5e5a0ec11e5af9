// Figures of the fusion, from a forward of a run's head on cached features: the localized fuser's
// per-pixel gates over the image (figure 3) and the mixture of experts' routing (figure 4): per
// scale the gate probabilities of one image, how often each expert is chosen over a split, and the
// mean gate probability per class. See figures.h.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "figures/colormap.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/pca.h"
#include "figures/plots.h"
#include "heads/head.h"
#include "io/feature_cache.h"
#include "io/json.h"
#include "train/checkpoint.h"
#include "train/dataset.h"

// The run's model with its best weights and (MoE) the call counters train's final test started from.
static int load_run_model(const char *run_dir, HeadModel *m, JsonValue *cfg) {
    char path[4200];
    HeadConfig hc;
    memset(m, 0, sizeof(*m));
    memset(cfg, 0, sizeof(*cfg));
    if (figure_run_file(run_dir, "head_config.json", "satdifuser train", path, sizeof(path))) return SD_FAIL;
    if (json_parse_file(path, cfg)) return SD_FAIL;
    if (head_config_from_json(&hc, cfg)) return sd_error_context("%s", path);
    if (figure_run_file(run_dir, "best.safetensors", "satdifuser train, at its first validation", path, sizeof(path)))
        return SD_FAIL;
    if (head_model_init(m, &hc) || head_model_load(m, path)) return SD_FAIL;
    int found = 0;
    if (moe_counter_read(run_dir, m, &found)) return SD_FAIL;
    head_model_set_mode(m, 0, 0);
    return 0;
}

// One image's feature file as a batch of 1 (bufs: the loaded tensors, freed by the caller).
static int load_image(const char *features_dir, const char *id, const HeadModel *m, FusionInput *in, Tensor *bufs,
                      FeatureFile *ff) {
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s.safetensors", features_dir, id);
    if (stat(features_dir, &sb) != 0) return sd_errorf("--features %s: no such folder", features_dir);
    if (stat(path, &sb) != 0) return sd_errorf("image id '%s' is not in the feature cache %s (no %s)", id, features_dir, path);
    if (feature_file_open(ff, path)) return SD_FAIL;
    const FeatureLayout *fl = &m->cfg.layout;
    if (ff->n_steps != fl->num_timesteps || ff->n_scales != fl->num_scales)
        return sd_errorf("%s: %d steps x %d scales, the run's head %d x %d: another extraction", path, ff->n_steps,
                         ff->n_scales, fl->num_timesteps, fl->num_scales);
    memset(in, 0, sizeof(*in));
    in->B = 1;
    for (int i = 0; i < fl->num_timesteps; i++)
        for (int s = 0; s < fl->num_scales; s++) {
            Tensor *t = &bufs[i * FUSION_MAX_SCALES + s];
            if (feature_file_load(ff, i, s, t)) return SD_FAIL;
            if (t->shape[1] != fl->scale_channels[s] || t->shape[3] != fl->width[s])
                return sd_errorf("%s: scale %d has %d channels at width %d, the run's head %d at %d", path, s, t->shape[1],
                                 t->shape[3], fl->scale_channels[s], fl->width[s]);
            in->feat[i][s] = t->data;
            in->H[s] = t->shape[2];
            in->W[s] = t->shape[3];
        }
    return 0;
}

static void row_label(const FeatureFile *ff, const FeatureLayout *fl, int k, char *buf, size_t size) {
    // ts_idx k -> input position -> the UNet timestep from the file's save_t (else the step index)
    int pos = fl->ts_input[k], t = -1;
    const char *s = feature_file_meta(ff, "save_t");
    JsonValue v;
    if (s && json_parse(s, strlen(s), "save_t", &v) == 0) {
        if (v.type == JSON_ARRAY && pos < v.count && v.items[pos].type == JSON_NUMBER) t = (int)v.items[pos].number;
        json_free(&v);
    }
    sd_clear_error();
    if (t >= 0) snprintf(buf, size, "t=%d", t);
    else snprintf(buf, size, "step %d", fl->timesteps[pos]);
}

static void layer_names(const FeatureFile *ff, const FeatureLayout *fl, char (*names)[24]) {
    int L = feature_layout_total_streams(fl);
    for (int i = 0; i < L; i++) snprintf(names[i], 24, "L%d", i);
    const char *s = feature_file_meta(ff, "layers");
    JsonValue v;
    if (s && json_parse(s, strlen(s), "layers", &v) == 0) {
        if (v.type == JSON_ARRAY && v.count == L)
            for (int i = 0; i < L; i++)
                if (v.items[i].type == JSON_STRING) figure_short_layer_name(v.items[i].string, names[i], 24);
        json_free(&v);
    }
    sd_clear_error();
}

// ---- figure 3: the localized fuser's gates ------------------------------------------------------

int fig_gates(const char *run_dir, const char *features_dir, const char *id, const char *input, const char *bands,
              const char *out, void (*note)(const char *text, void *user), void *note_user) {
    HeadModel m;
    JsonValue cfg;
    FeatureFile ff;
    memset(&ff, 0, sizeof(ff));
    Tensor bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    memset(bufs, 0, sizeof(bufs));
    uint8_t *img = NULL, *panel = NULL;
    int iw = 0, ih = 0, rc = SD_FAIL;
    Canvas c = {0, 0, NULL};
    FusionInput in;
    if (load_run_model(run_dir, &m, &cfg)) goto done;
    if (m.cfg.fuser.kind != FUSER_LW) {
        sd_errorf("%s: the run's fuser is '%s'; per-pixel gates belong to the localized fuser (--fuser lw)", run_dir,
                  fuser_kind_name(m.cfg.fuser.kind));
        goto done;
    }
    if (load_image(features_dir, id, &m, &in, bufs, &ff) || head_model_forward(&m, &in)) goto done;
    const FeatureLayout *fl = &m.cfg.layout;
    const char *src = input ? input : feature_file_meta(&ff, "source");
    char bbuf[64] = "";
    const char *bu = feature_file_meta(&ff, "bands_used");
    if (!bands && bu && bu[0] == '[') {
        size_t k = 0;
        for (const char *q = bu + 1; *q && *q != ']' && k + 1 < sizeof(bbuf); q++)
            if (*q != ' ') bbuf[k++] = *q;
        bbuf[k] = 0;
        bands = bbuf;
    }
    if (src && figure_load_rgb(src, bands && bands[0] ? bands : NULL, &img, &iw, &ih)) {
        if (note) {
            char text[1100];
            snprintf(text, sizeof(text), "note: the gates are drawn without the image: %s", sd_last_error());
            note(text, note_user);
        }
        img = NULL;
    }
    char names[FUSION_MAX_SCALES * FUSION_MAX_STREAMS][24];
    layer_names(&ff, fl, names);
    int T = fl->num_timesteps, P = 72, gap = 6, th = FONT_LINE + 2, margin = 12, label_w = 44;
    int max_l = 0;
    for (int s = 0; s < fl->num_scales; s++) max_l = fl->num_streams[s] > max_l ? fl->num_streams[s] : max_l;
    int block_h = FONT_LINE + 6 + T * (P + th + gap) + 6;
    int W = margin + label_w + max_l * (P + gap) + COLORBAR_W + margin, H = 3 * FONT_LINE + 12 + fl->num_scales * block_h + margin;
    if (W < 640) W = 640;
    if (canvas_init(&c, W, H, RGB_WHITE)) goto done;
    char line[512];
    snprintf(line, sizeof(line), "Localized fusion gates of image %s (%s)", id, run_dir);
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    draw_text(&c, margin, 6 + FONT_LINE + 2,
              "per pixel: softmax over the K timesteps x layers of a scale; colours 0..the scale's largest gate", RGB_GRAY, 1);
    int y = 3 * FONT_LINE + 8;
    for (int s = 0; s < fl->num_scales; s++) {
        int Ls = fl->num_streams[s], K = T * Ls, Hs = in.H[s], Ws = in.W[s];
        const float *g = m.fuser.lw.gate[s].data;  // (1, K, H, W), K = ts_idx * L_s + l
        double gmax = 0;
        for (int64_t i = 0; i < (int64_t)K * Hs * Ws; i++) gmax = g[i] > gmax ? g[i] : gmax;
        snprintf(line, sizeof(line), "scale %d (%dx%d): K = %d gates, uniform 1/K = %.3f, max %.3f", s, Hs, Ws, K, 1.0 / K, gmax);
        draw_text(&c, margin, y, line, RGB_BLACK, 1);
        y += FONT_LINE + 6;
        // panels at P x P: the image resampled to the panel, the gate map nearest-upsampled, blended
        free(panel);
        panel = (uint8_t *)malloc((size_t)P * P * 3);
        if (!panel) { sd_errorf("out of memory"); goto done; }
        for (int k = 0; k < T; k++) {
            row_label(&ff, fl, k, line, sizeof(line));
            draw_text(&c, margin, y + th + P / 2 - FONT_H / 2, line, RGB_BLACK, 1);
            for (int l = 0; l < Ls; l++) {
                const float *gk = g + (int64_t)(k * Ls + l) * Hs * Ws;
                for (int py = 0; py < P; py++)
                    for (int px = 0; px < P; px++) {
                        double v = gk[(py * Hs / P) * Ws + px * Ws / P];
                        Rgb col = colormap_viridis(colormap_norm(v, 0.0, gmax));
                        uint8_t *o = panel + 3 * (py * P + px);
                        if (img) {
                            const uint8_t *q = img + 3 * ((size_t)(py * ih / P) * iw + px * iw / P);
                            o[0] = (uint8_t)(0.65 * col.r + 0.35 * q[0] + 0.5);
                            o[1] = (uint8_t)(0.65 * col.g + 0.35 * q[1] + 0.5);
                            o[2] = (uint8_t)(0.65 * col.b + 0.35 * q[2] + 0.5);
                        } else {
                            o[0] = col.r; o[1] = col.g; o[2] = col.b;
                        }
                    }
                panel_draw(&c, (Rect){margin + label_w + l * (P + gap), y, P, P + th}, panel, P, P,
                           names[feature_layout_stream_index(fl, s, l)]);
            }
            y += P + th + gap;
        }
        double v[1] = {0};
        Heatmap hm = {v, 1, 1, 0.0, gmax, 0, NULL, NULL, NULL, 1.0, 1, 1, NULL, NULL, NULL};
        colorbar_draw(&c, (Rect){margin + label_w + max_l * (P + gap) + 4, y - T * (P + th + gap) + th, 12, T * (P + th + gap) - th - gap}, &hm, "%.2f");
        y += 6;
    }
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    free(img);
    free(panel);
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&bufs[i]);
    feature_file_close(&ff);
    head_model_free(&m);
    json_free(&cfg);
    return rc;
}

// ---- figure 4: the mixture of experts' routing -------------------------------------------------------

enum { MAX_EXPERTS = 64, MAX_CLS = 64 };

// The k experts with the largest gate probability (ties: the lower index), as top-k routing picks them.
static void top_experts(const float *p, int E, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= idx[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        idx[j] = best;
    }
}

int fig_moe(const char *run_dir, const char *features_dir, const char *id, const char *labels_path, const char *split,
            const char *out) {
    HeadModel m;
    JsonValue cfg;
    FeatureFile ff;
    memset(&ff, 0, sizeof(ff));
    Tensor bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    memset(bufs, 0, sizeof(bufs));
    LabelSet labels;
    memset(&labels, 0, sizeof(labels));
    Dataset data;
    memset(&data, 0, sizeof(data));
    int have_labels = 0, have_data = 0, rc = SD_FAIL, *rows = NULL;
    Canvas c = {0, 0, NULL};
    double *one = NULL, *usage = NULL, *per_class = NULL;
    if (load_run_model(run_dir, &m, &cfg)) goto done;
    if (m.cfg.fuser.kind != FUSER_MOE) {
        sd_errorf("%s: the run's fuser is '%s'; expert routing belongs to the mixture of experts (--fuser moe)", run_dir,
                  fuser_kind_name(m.cfg.fuser.kind));
        goto done;
    }
    if (!id && !labels_path) { sd_errorf("give --id (one image's routing) and/or --labels (a split's)"); goto done; }
    const FeatureLayout *fl = &m.cfg.layout;
    MoEFuser *mf = &m.fuser.moe;
    int S = fl->num_scales, T = fl->num_timesteps, E = mf->num_experts, K = m.cfg.fuser.top_k;
    if (E > MAX_EXPERTS) { sd_errorf("%d experts: at most %d drawn", E, MAX_EXPERTS); goto done; }
    if (K > E) K = E;
    int64_t start_step = mf->scales[0].global_step;
    one = (double *)calloc((size_t)S * T * E, sizeof(double));
    usage = (double *)calloc((size_t)S * E, sizeof(double));
    per_class = (double *)calloc((size_t)MAX_CLS * E, sizeof(double));
    if (!one || !usage || !per_class) { sd_errorf("out of memory"); goto done; }
    int topk_one[FUSION_MAX_SCALES] = {0}, topk_split = 0, n_items = 0, C = 0, n_per[MAX_CLS] = {0};
    int64_t step_one[FUSION_MAX_SCALES] = {0};
    char rowbuf[FUSION_MAX_TIMESTEPS][24];
    const char *rowl[FUSION_MAX_TIMESTEPS];
    for (int k = 0; k < T; k++) { snprintf(rowbuf[k], 24, "ts %d", k); rowl[k] = rowbuf[k]; }
    if (id) {
        FusionInput in;
        if (load_image(features_dir, id, &m, &in, bufs, &ff) || head_model_forward(&m, &in)) goto done;
        for (int s = 0; s < S; s++)
            for (int k = 0; k < T; k++) {
                const MoECall *cl = &mf->calls[s * T + k];
                for (int e = 0; e < E; e++) one[(s * T + k) * E + e] = cl->probs.data[e];
                topk_one[s] |= cl->topk_active;
                step_one[s] = cl->step;
            }
        for (int k = 0; k < T; k++) row_label(&ff, fl, k, rowbuf[k], sizeof(rowbuf[k]));
    }
    if (labels_path) {
        // the split, in batches, from the same counters (as eval): usage per scale, gate probabilities per class
        moe_set_global_step(mf, start_step);
        LabelTask task = m.cfg.task == TASK_SEGMENTATION ? LABELS_SEGMENTATION : m.cfg.task == TASK_MULTILABEL ? LABELS_MULTILABEL : LABELS_CLASSIFICATION;
        SplitKind sk = !strcmp(split, "train") ? SPLIT_TRAIN : !strcmp(split, "val") ? SPLIT_VAL : SPLIT_TEST;
        if (strcmp(split, "train") && strcmp(split, "val") && strcmp(split, "test")) { sd_errorf("--split '%s': expected test, val or train", split); goto done; }
        if (labels_load(labels_path, task, &labels)) goto done;
        have_labels = 1;
        if (labels_set_num_classes(&labels, m.cfg.num_classes, "the run's head_config.json")) goto done;
        C = labels.num_classes < MAX_CLS ? labels.num_classes : MAX_CLS;
        rows = (int *)malloc((size_t)labels.count * sizeof(int));
        if (!rows) { sd_errorf("out of memory"); goto done; }
        n_items = labels_split(&labels, sk, rows);
        if (n_items == 0) { sd_errorf("%s: the %s split is empty", labels_path, split); goto done; }
        int batch = n_items < 8 ? n_items : 8;
        if (dataset_open(&data, features_dir, &labels, batch, 255)) goto done;
        have_data = 1;
        for (int b0 = 0; b0 < n_items; b0 += batch) {
            int B = n_items - b0 < batch ? n_items - b0 : batch;
            FusionInput in;
            if (dataset_load_batch(&data, rows + b0, B, &in) || head_model_forward(&m, &in)) goto done;
            for (int b = 0; b < B; b++) {
                // the item's class: its label, or (segmentation) its mask's most frequent class
                int cls = -1;
                if (task == LABELS_CLASSIFICATION) cls = (int)data.targets_i64[b];
                else if (task == LABELS_SEGMENTATION) {
                    int cnt[MAX_CLS] = {0};
                    int64_t hw = (int64_t)data.mask_h * data.mask_w;
                    for (int64_t p = 0; p < hw; p++) {
                        int64_t v = data.targets_i64[b * hw + p];
                        if (v >= 0 && v < C) cnt[v]++;
                    }
                    for (int q = 0; q < C; q++) if (cnt[q] > 0 && (cls < 0 || cnt[q] > cnt[cls])) cls = q;
                }
                for (int s = 0; s < S; s++)
                    for (int k = 0; k < T; k++) {
                        const MoECall *cl = &mf->calls[s * T + k];
                        const float *p = cl->probs.data + (int64_t)b * E;
                        int idx[MAX_EXPERTS];
                        top_experts(p, E, K, idx);
                        for (int j = 0; j < K; j++) usage[s * E + idx[j]] += 1.0;
                        topk_split |= cl->topk_active;
                        if (cls >= 0 && cls < C)
                            for (int e = 0; e < E; e++) per_class[cls * E + e] += p[e];
                    }
                if (cls >= 0 && cls < C) n_per[cls] += S * T;
            }
        }
        for (int i = 0; i < S * E; i++) usage[i] /= (double)n_items * T;  // fraction of image-timesteps
        for (int q = 0; q < C; q++)
            for (int e = 0; e < E; e++) per_class[q * E + e] = n_per[q] ? per_class[q * E + e] / n_per[q] : NAN;
    }
    // layout: the image's routing (S heatmaps), the split's usage (S bar charts), the per-class heatmap
    char ebuf[MAX_EXPERTS][12];
    const char *enames[MAX_EXPERTS];
    for (int e = 0; e < E; e++) { snprintf(ebuf[e], sizeof(ebuf[e]), "e%d", e); enames[e] = ebuf[e]; }
    int margin = 12, gap = 24, cw = 34, y = 2 * FONT_LINE + 14, W = 2 * margin, H = y + margin;
    Heatmap hm[FUSION_MAX_SCALES];
    char titles[FUSION_MAX_SCALES][64];
    int hw_max = 0, hh_max = 0, cx, cy, w1, h1;
    if (id) {
        int wsum = 0;
        for (int s = 0; s < S; s++) {
            snprintf(titles[s], sizeof(titles[s]), "scale %d: %s (call %lld)", s, topk_one[s] ? "top-k" : "dense warmup", (long long)step_one[s]);
            Heatmap h = {one + (size_t)s * T * E, T, E, 0.0, 1.0, 0, s == 0 ? rowl : NULL, enames, "%.0f", 100.0, cw, 20, titles[s], NULL, NULL};
            hm[s] = h;
            heatmap_layout(&hm[s], &w1, &h1, &cx, &cy);
            wsum += w1 + gap;
            hh_max = h1 > hh_max ? h1 : hh_max;
        }
        hw_max = wsum;
        H += FONT_LINE + 6 + hh_max + gap;
    }
    int bar_w = 220, bar_row = 14;
    if (labels_path) {
        H += FONT_LINE + 6 + FONT_LINE + E * bar_row + gap;
        H += FONT_LINE + 6 + FONT_LINE * 2 + C * 20 + 40 + gap;
        if (S * (bar_w + gap) > hw_max) hw_max = S * (bar_w + gap);
    }
    W += hw_max + COLORBAR_W;
    if (W < 640) W = 640;
    if (canvas_init(&c, W, H, RGB_WHITE)) goto done;
    char line[512];
    snprintf(line, sizeof(line), "Mixture of experts: %d experts per scale, top-%d (%s)", E, K, run_dir);
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    snprintf(line, sizeof(line), "gate probabilities softmax(pooled gate conv / temperature); calls from %lld on (warmup %d), as eval",
             (long long)start_step, mf->scales[0].warmup_steps);
    draw_text(&c, margin, 6 + FONT_LINE + 2, line, RGB_GRAY, 1);
    if (id) {
        snprintf(line, sizeof(line), "routing of image %s: gate probability (%%) per timestep and expert", id);
        draw_text(&c, margin, y, line, RGB_BLACK, 1);
        y += FONT_LINE + 6;
        int x = margin;
        for (int s = 0; s < S; s++) {
            heatmap_layout(&hm[s], &w1, &h1, &cx, &cy);
            heatmap_draw(&c, x, y + hh_max - h1, &hm[s]);
            x += w1 + gap;
        }
        y += hh_max + gap;
    }
    if (labels_path) {
        snprintf(line, sizeof(line), "%s split, %d images: share of image-timesteps routed to each expert (%s; %%)", split,
                 n_items, topk_split ? "top-k" : "dense warmup: the k most probable");
        draw_text(&c, margin, y, line, RGB_BLACK, 1);
        y += FONT_LINE + 6;
        for (int s = 0; s < S; s++) {
            Rgb cols[MAX_EXPERTS];
            for (int e = 0; e < E; e++) cols[e] = colormap_class(e);
            snprintf(line, sizeof(line), "scale %d", s);
            draw_text(&c, margin + s * (bar_w + gap), y, line, RGB_BLACK, 1);
            bars_draw(&c, (Rect){margin + s * (bar_w + gap), y + FONT_LINE, bar_w, E * bar_row}, usage + s * E, E, enames,
                      cols, 1.0, 24, "%.0f", 100.0);
        }
        y += FONT_LINE + E * bar_row + gap;
        const char *cnames[MAX_CLS];
        char cbuf[MAX_CLS][32];
        for (int q = 0; q < C; q++) cnames[q] = labels_class_name(&labels, q, cbuf[q], (int)sizeof(cbuf[q]));
        Heatmap pc = {per_class, C, E, 0.0, 1.0, 0, cnames, enames, "%.0f", 100.0, cw, 20,
                      m.cfg.task == TASK_SEGMENTATION ? "mean gate probability (%) per class, over scales and timesteps (an image's class: its mask's most frequent)"
                                                      : "mean gate probability (%) per class, over scales and timesteps",
                      NULL, NULL};
        double pmax = 0;
        for (int i = 0; i < C * E; i++) pmax = per_class[i] > pmax ? per_class[i] : pmax;
        pc.hi = pmax > 0 ? pmax : 1.0;
        heatmap_draw(&c, margin, y, &pc);
    }
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    free(one); free(usage); free(per_class); free(rows);
    if (have_data) dataset_close(&data);
    if (have_labels) labels_free(&labels);
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&bufs[i]);
    feature_file_close(&ff);
    head_model_free(&m);
    json_free(&cfg);
    return rc;
}

// ---- figure 4b (the paper's Fig. 4): the fused map of each fusion, side by side ------------------------

int fig_fused(const char *const *runs, int n_runs, const char *features_dir, const char *const *ids, int n_ids,
              int scale, const char *out) {
    enum { MAX_RUNS = 6, MAX_IDS = 8 };
    if (n_runs < 1 || n_runs > MAX_RUNS) return sd_errorf("--runs: give 1 to %d run folders (got %d)", MAX_RUNS, n_runs);
    if (n_ids < 1 || n_ids > MAX_IDS) return sd_errorf("--id: give 1 to %d image ids (got %d)", MAX_IDS, n_ids);
    float *maps[MAX_RUNS][MAX_IDS] = {{0}};
    uint8_t *rgb[MAX_RUNS][MAX_IDS] = {{0}}, *img[MAX_IDS] = {0};
    int iw[MAX_IDS] = {0}, ih[MAX_IDS] = {0}, P = 0, H = 0, W = 0, rc = SD_FAIL;
    char kind[MAX_RUNS][16];
    PcaAccum acc;
    PcaBasis basis;
    memset(&acc, 0, sizeof(acc));
    memset(&basis, 0, sizeof(basis));
    Canvas c = {0, 0, NULL};
    if (scale < 0) scale = 0;
    for (int r = 0; r < n_runs; r++) {
        HeadModel m;
        JsonValue cfg;
        int bad = load_run_model(runs[r], &m, &cfg);
        if (!bad && scale >= m.cfg.layout.num_scales) bad = sd_errorf("--scale %d: %s has scales 0..%d", scale, runs[r], m.cfg.layout.num_scales - 1);
        snprintf(kind[r], sizeof(kind[r]), "%s", bad ? "?" : fuser_kind_name(m.cfg.fuser.kind));
        for (int n = 0; n < n_ids && !bad; n++) {
            Tensor bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
            memset(bufs, 0, sizeof(bufs));
            FeatureFile ff;
            memset(&ff, 0, sizeof(ff));
            FusionInput in;
            bad = load_image(features_dir, ids[n], &m, &in, bufs, &ff) || head_model_forward(&m, &in);
            if (!bad) {
                int p = m.cfg.fuser.projection_dim, h = in.H[scale], w = in.W[scale];
                if (P && (p != P || h != H || w != W))
                    bad = sd_errorf("%s: fused maps of %d channels at %dx%d, %s's %d at %dx%d: a shared basis needs the same size",
                                    runs[r], p, h, w, runs[0], P, H, W);
                P = p; H = h; W = w;
                maps[r][n] = bad ? NULL : (float *)malloc((size_t)P * H * W * sizeof(float));
                if (!bad && !maps[r][n]) bad = sd_errorf("out of memory");
                if (!bad) memcpy(maps[r][n], m.fuser.fused[scale].data, (size_t)P * H * W * sizeof(float));
            }
            if (!bad && r == 0) {  // the image, from the feature file's source
                const char *src = feature_file_meta(&ff, "source"), *bu = feature_file_meta(&ff, "bands_used");
                char bands[64] = "";
                if (bu && bu[0] == '[') {
                    size_t k = 0;
                    for (const char *q = bu + 1; *q && *q != ']' && k + 1 < sizeof(bands); q++)
                        if (*q != ' ') bands[k++] = *q;
                    bands[k] = 0;
                }
                if (src && figure_load_rgb(src, bands[0] ? bands : NULL, &img[n], &iw[n], &ih[n])) img[n] = NULL;
                sd_clear_error();
            }
            for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&bufs[i]);
            feature_file_close(&ff);
        }
        head_model_free(&m);
        json_free(&cfg);
        if (bad) goto done;
    }
    // one PCA basis over every run's and image's fused pixels: colours compare across fusions
    if (pca_accum_init(&acc, P)) goto done;
    for (int r = 0; r < n_runs; r++)
        for (int n = 0; n < n_ids; n++) pca_accum_add(&acc, maps[r][n], (int64_t)H * W);
    if (pca_fit(&acc, &basis)) goto done;
    for (int r = 0; r < n_runs; r++)
        for (int n = 0; n < n_ids; n++) {
            rgb[r][n] = (uint8_t *)malloc((size_t)H * W * 3);
            if (!rgb[r][n] || pca_to_rgb(&basis, maps[r][n], (int64_t)H * W, rgb[r][n])) { sd_errorf("out of memory"); goto done; }
        }
    int Pp = 128, gap = 8, th = FONT_LINE + 2, margin = 12, label_w = 90;
    int Wc = margin + label_w + (n_runs + 1) * (Pp + gap) + margin, Hc = 2 * FONT_LINE + 16 + n_ids * (Pp + th + gap) + margin;
    if (Wc < 560) Wc = 560;
    if (canvas_init(&c, Wc, Hc, RGB_WHITE)) goto done;
    char line[512], title[64];
    snprintf(line, sizeof(line), "Fused feature maps at scale %d (%dx%d, %d channels), PCA to RGB with one basis for all", scale, H, W, P);
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    draw_text(&c, margin, 6 + FONT_LINE + 2, "columns: the image, then each run's fuser output (best weights); rows: images", RGB_GRAY, 1);
    for (int n = 0; n < n_ids; n++) {
        int y = 2 * FONT_LINE + 16 + n * (Pp + th + gap);
        draw_text(&c, margin, y + th + Pp / 2 - FONT_H / 2, text_fit(ids[n], label_w - 4, title, sizeof(title)), RGB_BLACK, 1);
        if (img[n]) panel_draw(&c, (Rect){margin + label_w, y, Pp, Pp + th}, img[n], iw[n], ih[n], "input");
        for (int r = 0; r < n_runs; r++) {
            snprintf(title, sizeof(title), "%s", kind[r]);
            panel_draw(&c, (Rect){margin + label_w + (r + 1) * (Pp + gap), y, Pp, Pp + th}, rgb[r][n], W, H, title);
        }
    }
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    pca_accum_free(&acc);
    pca_basis_free(&basis);
    for (int r = 0; r < MAX_RUNS; r++)
        for (int n = 0; n < MAX_IDS; n++) { free(maps[r][n]); free(rgb[r][n]); }
    for (int n = 0; n < MAX_IDS; n++) free(img[n]);
    return rc;
}

// ---- figure 4b (the paper's Fig. 5): every expert's output for one image --------------------------------

int fig_experts(const char *run_dir, const char *features_dir, const char *id, int scale, const char *out) {
    HeadModel m;
    JsonValue cfg;
    FeatureFile ff;
    memset(&ff, 0, sizeof(ff));
    Tensor bufs[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    memset(bufs, 0, sizeof(bufs));
    PcaAccum acc;
    PcaBasis basis;
    memset(&acc, 0, sizeof(acc));
    memset(&basis, 0, sizeof(basis));
    uint8_t *rgb = NULL, *img = NULL;
    int iw = 0, ih = 0, rc = SD_FAIL;
    Canvas c = {0, 0, NULL};
    FusionInput in;
    if (load_run_model(run_dir, &m, &cfg)) goto done;
    if (m.cfg.fuser.kind != FUSER_MOE) {
        sd_errorf("%s: the run's fuser is '%s'; experts belong to the mixture of experts (--fuser moe)", run_dir,
                  fuser_kind_name(m.cfg.fuser.kind));
        goto done;
    }
    const FeatureLayout *fl = &m.cfg.layout;
    MoEFuser *mf = &m.fuser.moe;
    if (scale < 0) scale = 0;
    if (scale >= fl->num_scales) { sd_errorf("--scale %d: the run has scales 0..%d", scale, fl->num_scales - 1); goto done; }
    // every expert runs (a dense call: the counter far below warmup) and every call's outputs are kept;
    // the gate probabilities do not depend on the counter
    head_model_set_mode(&m, 0, 1);
    moe_set_global_step(mf, -((int64_t)1 << 40));
    if (load_image(features_dir, id, &m, &in, bufs, &ff) || head_model_forward(&m, &in)) goto done;
    int T = fl->num_timesteps, E = mf->num_experts, P = m.cfg.fuser.projection_dim, H = in.H[scale], W = in.W[scale];
    int64_t hw = (int64_t)H * W;
    if (pca_accum_init(&acc, P)) goto done;
    for (int k = 0; k < T; k++)
        for (int e = 0; e < E; e++) pca_accum_add(&acc, mf->kept_runs[(size_t)(scale * T + k) * E + e].out.data, hw);
    if (pca_fit(&acc, &basis)) goto done;
    rgb = (uint8_t *)malloc((size_t)hw * 3);
    if (!rgb) { sd_errorf("out of memory"); goto done; }
    const char *src = feature_file_meta(&ff, "source"), *bu = feature_file_meta(&ff, "bands_used");
    char bands[64] = "";
    if (bu && bu[0] == '[') {
        size_t q = 0;
        for (const char *p = bu + 1; *p && *p != ']' && q + 1 < sizeof(bands); p++)
            if (*p != ' ') bands[q++] = *p;
        bands[q] = 0;
    }
    if (src && figure_load_rgb(src, bands[0] ? bands : NULL, &img, &iw, &ih)) img = NULL;
    sd_clear_error();
    int Pp = 80, gap = 6, th = FONT_LINE + 2, margin = 12, label_w = 44;
    int Wc = margin + label_w + (E + 1) * (Pp + gap) + margin, Hc = 3 * FONT_LINE + 16 + T * (Pp + th + gap) + margin;
    char line[512], line2[512], title[32];
    snprintf(line, sizeof(line), "Every expert's output for image %s at scale %d (%dx%d), PCA to RGB with one basis", id, scale, H, W);
    snprintf(line2, sizeof(line2), "%s; rows: timesteps; titles: the expert's gate probability (%%), top-%d routing takes the largest",
             run_dir, m.cfg.fuser.top_k);
    if (Wc < text_width(line2, 1) + 2 * margin) Wc = text_width(line2, 1) + 2 * margin;
    if (canvas_init(&c, Wc, Hc, RGB_WHITE)) goto done;
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    draw_text(&c, margin, 6 + FONT_LINE + 2, line2, RGB_GRAY, 1);
    for (int k = 0; k < T; k++) {
        int y = 3 * FONT_LINE + 12 + k * (Pp + th + gap);
        row_label(&ff, fl, k, line, sizeof(line));
        draw_text(&c, margin, y + th + Pp / 2 - FONT_H / 2, line, RGB_BLACK, 1);
        if (img && k == 0) panel_draw(&c, (Rect){margin + label_w, y, Pp, Pp + th}, img, iw, ih, "input");
        const MoECall *cl = &mf->calls[scale * T + k];
        for (int e = 0; e < E; e++) {
            if (pca_to_rgb(&basis, mf->kept_runs[(size_t)(scale * T + k) * E + e].out.data, hw, rgb)) goto done;
            snprintf(title, sizeof(title), "e%d %.0f%%", e, 100.0 * cl->probs.data[e]);
            panel_draw(&c, (Rect){margin + label_w + (e + 1) * (Pp + gap), y, Pp, Pp + th}, rgb, W, H, title);
        }
    }
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    free(rgb);
    free(img);
    pca_accum_free(&acc);
    pca_basis_free(&basis);
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&bufs[i]);
    feature_file_close(&ff);
    head_model_free(&m);
    json_free(&cfg);
    return rc;
}
