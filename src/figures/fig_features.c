// Figure 1: every captured stream (layer x timestep x scale) of one or more images, reduced to RGB
// by PCA, in a grid with rows = timesteps and columns = layers. The PCA of each (layer, timestep)
// runs over the pixels of all the images given, so they share its basis and colours compare.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/pca.h"
#include "figures/plots.h"
#include "io/feature_cache.h"
#include "io/json.h"

enum { MAX_IMAGES = 16, MAX_COLS = FUSION_MAX_SCALES * FUSION_MAX_STREAMS };

typedef struct {
    int s, l, c0, c;   // scale, stream in the scale, its first channel, its channels
    char name[24];
} Column;

// A metadata JSON list as ints ("[21, 61, 161]"); returns the count (0 on any problem).
static int meta_int_list(const FeatureFile *f, const char *key, int *out, int max) {
    const char *s = feature_file_meta(f, key);
    JsonValue v;
    if (!s || json_parse(s, strlen(s), key, &v)) { sd_clear_error(); return 0; }
    int n = 0;
    if (v.type == JSON_ARRAY && v.count <= max)
        for (; n < v.count && v.items[n].type == JSON_NUMBER; n++) out[n] = (int)v.items[n].number;
    json_free(&v);
    return n;
}

int fig_features(const FeatureFigure *ff, const char *out) {
    int N = ff->n_ids, P = ff->panel > 0 ? ff->panel : 64, rc = SD_FAIL;
    if (N < 1 || N > MAX_IMAGES) return sd_errorf("--id: give 1 to %d image ids (got %d)", MAX_IMAGES, N);
    if (P < 8 || P > 512) return sd_errorf("--panel %d: expected 8..512 pixels", P);
    FeatureFile files[MAX_IMAGES];
    memset(files, 0, sizeof(files));
    FeatureLayout fl;
    Column col[MAX_COLS];
    int ncol = 0, T = 0, t_of[FUSION_MAX_TIMESTEPS], row_pos[FUSION_MAX_TIMESTEPS];
    uint8_t **rgb = NULL;  // [image][row][column] panels, H_s x W_s x 3
    uint8_t *input_rgb[MAX_IMAGES] = {0};
    int in_w[MAX_IMAGES] = {0}, in_h[MAX_IMAGES] = {0};
    Tensor maps[MAX_IMAGES];
    memset(maps, 0, sizeof(maps));
    Canvas c = {0, 0, NULL};
    char path[4200];
    struct stat sb;
    if (stat(ff->features_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return sd_errorf("--features %s: no such folder (satdifuser extract --out writes it)", ff->features_dir);
    for (int n = 0; n < N; n++) {
        snprintf(path, sizeof(path), "%s/%s.safetensors", ff->features_dir, ff->ids[n]);
        if (stat(path, &sb) != 0) { sd_errorf("image id '%s' is not in the feature cache %s (no %s)", ff->ids[n], ff->features_dir, path); goto done; }
        if (feature_file_open(&files[n], path)) goto done;
        const char *fd = feature_file_meta(&files[n], "feature_dims"), *fd0 = feature_file_meta(&files[0], "feature_dims");
        if (n > 0 && (!fd || !fd0 || strcmp(fd, fd0) || files[n].n_steps != files[0].n_steps)) {
            sd_errorf("%s: its layers or steps differ from %s's: a shared PCA needs the same streams", path, ff->ids[0]);
            goto done;
        }
    }
    if (feature_layout_from_strings(&fl, feature_file_meta(&files[0], "feature_dims"),
                                    feature_file_meta(&files[0], "save_timesteps"))) { sd_error_context("%s", ff->ids[0]); goto done; }
    T = files[0].n_steps;
    if (ff->scale >= fl.num_scales) { sd_errorf("--scale %d: the features have scales 0..%d", ff->scale, fl.num_scales - 1); goto done; }
    // names: layers in concatenation order (scale by scale), UNet timesteps of the saved steps
    char names[MAX_COLS][24];
    int nl = 0;
    {
        const char *s = feature_file_meta(&files[0], "layers");
        JsonValue v;
        if (s && json_parse(s, strlen(s), "layers", &v) == 0) {
            if (v.type == JSON_ARRAY && v.count == feature_layout_total_streams(&fl))
                for (; nl < v.count && nl < MAX_COLS && v.items[nl].type == JSON_STRING; nl++)
                    figure_short_layer_name(v.items[nl].string, names[nl], sizeof(names[nl]));
            json_free(&v);
        }
        sd_clear_error();
    }
    if (meta_int_list(&files[0], "save_t", t_of, FUSION_MAX_TIMESTEPS) != T)
        for (int i = 0; i < T; i++) t_of[i] = -1;
    for (int i = 0; i < T; i++) row_pos[i] = i;
    for (int a = 1; a < T; a++)  // rows by UNet timestep, ascending (least noise first)
        for (int b = a; b > 0 && t_of[row_pos[b - 1]] > t_of[row_pos[b]]; b--) {
            int t = row_pos[b]; row_pos[b] = row_pos[b - 1]; row_pos[b - 1] = t;
        }
    for (int s = 0; s < fl.num_scales; s++) {
        if (ff->scale >= 0 && s != ff->scale) continue;
        int c0 = 0;
        for (int l = 0; l < fl.num_streams[s]; l++) {
            int g = feature_layout_stream_index(&fl, s, l);
            Column k = {s, l, c0, fl.channels[s][l], ""};
            if (g < nl) snprintf(k.name, sizeof(k.name), "%s", names[g]);
            else snprintf(k.name, sizeof(k.name), "s%d.%d", s, l);
            col[ncol++] = k;
            c0 += fl.channels[s][l];
        }
    }
    rgb = (uint8_t **)calloc((size_t)N * T * ncol, sizeof(uint8_t *));
    if (!rgb) { sd_errorf("out of memory"); goto done; }
    // PCA per (timestep, stream) over every image's pixels; one scale's maps loaded at a time
    for (int i = 0; i < T; i++) {
        for (int s = 0; s < fl.num_scales; s++) {
            if (ff->scale >= 0 && s != ff->scale) continue;
            for (int n = 0; n < N; n++)
                if (feature_file_load(&files[n], i, s, &maps[n])) goto done;
            int64_t hw = (int64_t)files[0].scale_h[s] * files[0].scale_w[s];
            for (int n = 1; n < N; n++)
                if ((int64_t)files[n].scale_h[s] * files[n].scale_w[s] != hw) {
                    // a shared basis works for any size, but the panels assume one
                    sd_errorf("%s and %s: scale %d maps differ in size", ff->ids[0], ff->ids[n], s);
                    goto done;
                }
            for (int k = 0; k < ncol; k++) {
                if (col[k].s != s) continue;
                PcaAccum acc;
                PcaBasis basis;
                if (pca_accum_init(&acc, col[k].c)) goto done;
                for (int n = 0; n < N; n++) pca_accum_add(&acc, maps[n].data + (int64_t)col[k].c0 * hw, hw);
                int frc = pca_fit(&acc, &basis);
                pca_accum_free(&acc);
                if (frc) goto done;
                for (int n = 0; n < N; n++) {
                    uint8_t *p = (uint8_t *)malloc((size_t)hw * 3);
                    rgb[((size_t)n * T + i) * ncol + k] = p;
                    if (!p || pca_to_rgb(&basis, maps[n].data + (int64_t)col[k].c0 * hw, hw, p)) {
                        pca_basis_free(&basis);
                        if (!p) sd_errorf("out of memory");
                        goto done;
                    }
                }
                pca_basis_free(&basis);
            }
            for (int n = 0; n < N; n++) tensor_free(&maps[n]);
        }
    }
    // the images themselves (a note when their file is not where the feature file says)
    for (int n = 0; n < N; n++) {
        const char *src = ff->input && N == 1 ? ff->input : feature_file_meta(&files[n], "source");
        char bands[64] = "";
        const char *bu = feature_file_meta(&files[n], "bands_used");
        if (ff->bands) snprintf(bands, sizeof(bands), "%s", ff->bands);
        else if (bu && bu[0] == '[') {
            size_t k = 0;
            for (const char *q = bu + 1; *q && *q != ']' && k + 1 < sizeof(bands); q++)
                if (*q != ' ') bands[k++] = *q;
            bands[k] = 0;
        }
        if (src && figure_load_rgb(src, bands[0] ? bands : NULL, &input_rgb[n], &in_w[n], &in_h[n])) {
            if (ff->note) {
                char text[1200];
                snprintf(text, sizeof(text), "note: image %s not shown: %s", ff->ids[n], sd_last_error());
                ff->note(text, ff->note_user);
            }
            input_rgb[n] = NULL;
        }
    }
    // layout: per image a block: title, scale band, T rows of [t label | input | panels]
    int margin = 12, gap = 6, label_w = 44, th = FONT_LINE + 2, row_h = P + th + gap;
    int block_h = FONT_LINE + 8 + FONT_LINE + 4 + T * row_h + 8;
    int grid_x = margin + label_w + P + 2 * gap;
    int W = grid_x + ncol * (P + gap) + margin, H = 2 * FONT_LINE + 12 + N * block_h + 2 * FONT_LINE + margin;
    if (W < 520) W = 520;
    if (canvas_init(&c, W, H, RGB_WHITE)) goto done;
    char line[512];
    snprintf(line, sizeof(line), "UNet decoder features, PCA to RGB: rows = timesteps, columns = layers (%s)", ff->features_dir);
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    snprintf(line, sizeof(line), "R, G, B = principal components 1, 2, 3 of each layer and timestep over the pixels of %s%d image%s, +-2 sd",
             N > 1 ? "all " : "", N, N > 1 ? "s (one shared basis: colours compare across images)" : "");
    draw_text(&c, margin, 6 + FONT_LINE + 2, line, RGB_GRAY, 1);
    for (int n = 0; n < N; n++) {
        int y = 2 * FONT_LINE + 12 + n * block_h;
        snprintf(line, sizeof(line), "image %s", ff->ids[n]);
        draw_text(&c, margin, y, line, RGB_BLACK, 1);
        y += FONT_LINE + 8;
        // scale bands above the columns
        for (int k = 0; k < ncol;) {
            int k1 = k;
            while (k1 < ncol && col[k1].s == col[k].s) k1++;
            int x0 = grid_x + k * (P + gap), x1 = grid_x + k1 * (P + gap) - gap;
            canvas_fill_rect(&c, x0, y + FONT_LINE, x1 - x0, 1, RGB_GRAY, 1.0f);
            snprintf(line, sizeof(line), "scale %d: %dx%d", col[k].s, files[n].scale_h[col[k].s], files[n].scale_w[col[k].s]);
            char fit[64];
            draw_text_centered(&c, (x0 + x1) / 2, y, text_fit(line, x1 - x0, fit, sizeof(fit)), RGB_BLACK, 1);
            k = k1;
        }
        y += FONT_LINE + 4;
        for (int r = 0; r < T; r++) {
            int i = row_pos[r], py = y + r * row_h;
            if (t_of[i] >= 0) snprintf(line, sizeof(line), "t=%d", t_of[i]);
            else snprintf(line, sizeof(line), "step %d", fl.timesteps[i]);
            draw_text(&c, margin, py + th + P / 2 - FONT_H / 2, line, RGB_BLACK, 1);
            if (r == 0 && input_rgb[n])
                panel_draw(&c, (Rect){margin + label_w, py, P, P + th}, input_rgb[n], in_w[n], in_h[n], "input");
            for (int k = 0; k < ncol; k++) {
                const uint8_t *p = rgb[((size_t)n * T + i) * ncol + k];
                panel_draw(&c, (Rect){grid_x + k * (P + gap), py, P, P + th}, p, files[n].scale_w[col[k].s],
                           files[n].scale_h[col[k].s], col[k].name);
            }
        }
    }
    draw_text(&c, margin, H - margin - 2 * FONT_LINE,
              "upB.An: up_blocks.B.attentions.n (its self-attention output), upB.Rn: up_blocks.B.resnets.n (conv2 output)",
              RGB_GRAY, 1);
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    for (int n = 0; n < MAX_IMAGES; n++) tensor_free(&maps[n]);
    if (rgb)
        for (size_t k = 0; k < (size_t)N * T * ncol; k++) free(rgb[k]);
    free(rgb);
    for (int n = 0; n < N; n++) free(input_rgb[n]);
    for (int n = 0; n < N; n++) feature_file_close(&files[n]);  // a zeroed one is a no-op
    return rc;
}
