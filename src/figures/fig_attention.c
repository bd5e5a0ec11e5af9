// Figure 5: self-attention of one query pixel. For a chosen layer (a transformer block of the UNet
// decoder) and saved timestep, the attn1 probabilities of the query pixel over every pixel of the
// feature map, one row of softmax(q k^T * scale) per head: the forward never keeps the N x N matrix,
// so the row is computed here from the block's input.
//
// The block's input h0 is not captured, but its output and its three residual branches are:
//   h3 = h0 + attn1(norm1(h0)) + attn2(norm2(h1)) + ff(norm3(h2))  =>  h0 = h3 - attn1 - attn2 - ff
// (up to float rounding), then n = norm1(h0), q = to_q(n[query]), K = to_k(n), and per head h
//   p_h[j] = softmax_j(scale * q_h . K[j]_h)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "figures/colormap.h"
#include "figures/figures.h"
#include "figures/font.h"
#include "figures/plots.h"
#include "io/image.h"
#include "models/features.h"
#include "models/preprocess.h"

int attention_row(const float *q, const float *K, int N, int heads, int head_dim, float scale, float *p) {
    int dim = heads * head_dim;
    for (int h = 0; h < heads; h++) {
        float *ph = p + (int64_t)h * N;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            const float *kj = K + (int64_t)j * dim + h * head_dim;
            for (int d = 0; d < head_dim; d++) s += (double)q[h * head_dim + d] * kj[d];
            ph[j] = (float)(s * scale);
            mx = ph[j] > mx ? ph[j] : mx;
        }
        for (int j = 0; j < N; j++) sum += exp(ph[j] - mx);
        if (!(sum > 0)) return sd_errorf("attention row: no finite logit");
        for (int j = 0; j < N; j++) ph[j] = (float)(exp(ph[j] - mx) / sum);
    }
    return 0;
}

// "up_blocks.B.attentions.J" -> B, J.
static int parse_layer(const char *s, int *b, int *j) {
    return sscanf(s, "up_blocks.%d.attentions.%d", b, j) == 2 ? 0 : -1;
}

int fig_attention(AttentionFigure *a, const char *out) {
    Image img;
    memset(&img, 0, sizeof(img));
    DiffusionModel dm;
    memset(&dm, 0, sizeof(dm));
    FeaturePyramid pyr;
    memset(&pyr, 0, sizeof(pyr));
    Tensor x;
    memset(&x, 0, sizeof(x));
    int loaded = 0, extracted = 0, rc = SD_FAIL, blk = -1, att = -1;
    float *h0 = NULL, *nrm = NULL, *K = NULL, *q = NULL, *p = NULL;
    uint8_t *rgb = NULL, *panel = NULL;
    Canvas c = {0, 0, NULL};
    if (a->layer && parse_layer(a->layer, &blk, &att))
        return sd_errorf("--layer '%s': expected up_blocks.B.attentions.J (a transformer of the UNet decoder)", a->layer);
    if (image_load(a->input, &img)) return SD_FAIL;
    if (a->qx < 0 || a->qy < 0 || a->qx >= img.width || a->qy >= img.height) {
        sd_errorf("--query %d,%d: outside the %dx%d image %s (x in 0..%d, y in 0..%d)", a->qx, a->qy, img.width, img.height,
                  a->input, img.width - 1, img.height - 1);
        goto done;
    }
    PreprocessOptions pre;
    preprocess_options_default(&pre);
    if (a->size > 0) pre.size = a->size;
    if (a->bands && sscanf(a->bands, "%d,%d,%d", &pre.bands[0], &pre.bands[1], &pre.bands[2]) == 3) pre.n_bands = 3;
    else if (a->bands) { sd_errorf("--bands '%s': give 3 bands (R,G,B), e.g. 3,2,1", a->bands); goto done; }
    if (a->scale && !strcmp(a->scale, "255")) pre.scale = SCALE_DIV255;
    else if (a->scale && !strcmp(a->scale, "clip")) pre.scale = SCALE_CLIP;
    else if (a->scale && strcmp(a->scale, "4095")) { sd_errorf("--scale '%s': expected 4095, 255 or clip", a->scale); goto done; }
    if (preprocess_image(img.data, img.channels, img.height, img.width, &pre, a->input, &x)) goto done;
    ExtractOptions o;
    extract_options_default(&o);
    if (a->prompt) o.prompt = a->prompt;
    if (diffusion_model_load(&dm, a->model, a->unet, 0, o.prompt)) goto done;
    loaded = 1;
    const UNet *u = &dm.unet;
    if (blk < 0) {  // default: the first transformer of the last (largest) decoder block that has one
        for (int b = u->n_blocks - 1; b >= 0 && blk < 0; b--)
            if (u->up_blocks[b].has_attention) { blk = b; att = 0; }
        if (blk < 0) { sd_errorf("%s: the UNet decoder has no attention block", a->model); goto done; }
    }
    if (blk >= u->n_blocks || !u->up_blocks[blk].has_attention || att < 0 || att >= u->up_blocks[blk].num_layers) {
        sd_errorf("--layer up_blocks.%d.attentions.%d: not in this UNet's decoder", blk, att);
        goto done;
    }
    o.n_suffixes = 4;
    o.suffixes[0] = "transformer_blocks.0";
    o.suffixes[1] = "transformer_blocks.0.attn1";
    o.suffixes[2] = "transformer_blocks.0.attn2";
    o.suffixes[3] = "transformer_blocks.0.ff";
    o.walk.n_save = 1;
    o.walk.save_index[0] = a->step >= 0 ? a->step : 47;
    if (features_extract(&dm, &o, &x, &pyr)) goto done;
    extracted = 1;
    // the block's four captures: channel ranges inside their scale's tensor
    char base[96], want[4][128];
    const float *part[4] = {0};
    int s_of = -1, dim = 0, c0[PYRAMID_MAX_SCALES] = {0};
    snprintf(base, sizeof(base), "up_blocks.%d.attentions.%d.transformer_blocks.0", blk, att);
    snprintf(want[0], sizeof(want[0]), "%s", base);
    for (int k = 1; k < 4; k++) snprintf(want[k], sizeof(want[k]), "%s.%s", base, k == 1 ? "attn1" : k == 2 ? "attn2" : "ff");
    for (int l = 0; l < pyr.n_layers; l++) {  // each layer's first channel inside its scale's tensor
        int s = pyr.layer_scale[l];
        for (int k = 0; k < 4; k++)
            if (!strcmp(pyr.layer_path[l], want[k])) {
                part[k] = pyr.feats[s].data + (int64_t)c0[s] * pyr.scale_h[s] * pyr.scale_w[s];
                s_of = s;
                dim = pyr.layer_channels[l];
            }
        c0[s] += pyr.layer_channels[l];
    }
    if (!part[0] || !part[1] || !part[2] || !part[3]) { sd_errorf("%s: its captures were not produced", want[0]); goto done; }
    const BasicTransformerBlock *tb = &u->up_blocks[blk].attentions[att].blocks[0];
    int H = pyr.scale_h[s_of], W = pyr.scale_w[s_of], N = H * W, heads = tb->attn1.heads, hd = tb->attn1.head_dim;
    if (dim != tb->dim) { sd_errorf("%s: %d channels captured, the block has %d", want[0], dim, tb->dim); goto done; }
    h0 = (float *)malloc((size_t)N * dim * sizeof(float));
    nrm = (float *)malloc((size_t)N * dim * sizeof(float));
    K = (float *)malloc((size_t)N * heads * hd * sizeof(float));
    q = (float *)malloc((size_t)heads * hd * sizeof(float));
    p = (float *)malloc((size_t)heads * N * sizeof(float));
    if (!h0 || !nrm || !K || !q || !p) { sd_errorf("out of memory"); goto done; }
    for (int j = 0; j < N; j++)  // (C, H, W) captures -> (N, C) rows, h0 = h3 - attn1 - attn2 - ff
        for (int ch = 0; ch < dim; ch++) {
            int64_t i = (int64_t)ch * N + j;
            h0[(int64_t)j * dim + ch] = part[0][i] - part[1][i] - part[2][i] - part[3][i];
        }
    nn_layernorm(&tb->norm1, h0, nrm, N);
    int qi = (a->qy * H / img.height) * W + a->qx * W / img.width;
    if (nn_linear(&tb->attn1.to_k, nrm, K, N) || nn_linear(&tb->attn1.to_q, nrm + (int64_t)qi * dim, q, 1)) goto done;
    if (attention_row(q, K, N, heads, hd, tb->attn1.scale, p)) goto done;
    // self-check: the query row's attn1 output, to_out(sum_j p_h[j] v_j per head), against the capture
    {
        float *V = (float *)malloc((size_t)N * heads * hd * sizeof(float));
        float *o1 = (float *)calloc((size_t)heads * hd, sizeof(float)), *y1 = (float *)malloc((size_t)dim * sizeof(float));
        int bad = !V || !o1 || !y1 || nn_linear(&tb->attn1.to_v, nrm, V, N);
        for (int h = 0; !bad && h < heads; h++)
            for (int j = 0; j < N; j++)
                for (int d = 0; d < hd; d++) o1[h * hd + d] += p[(int64_t)h * N + j] * V[(int64_t)j * heads * hd + h * hd + d];
        if (!bad) bad = nn_linear(&tb->attn1.to_out, o1, y1, 1);
        double md = 0, mc = 0;
        for (int ch = 0; !bad && ch < dim; ch++) {
            double cap = part[1][(int64_t)ch * N + qi];
            md = fmax(md, fabs(y1[ch] - cap));
            mc = fmax(mc, fabs(cap));
        }
        free(V);
        free(o1);
        free(y1);
        if (bad) { sd_errorf("out of memory"); goto done; }
        a->check = mc > 0 ? md / mc : md;  // the CLI says it
    }
    // the mean over heads, and the picture
    int iw, ih;
    if (figure_load_rgb(a->input, a->bands, &rgb, &iw, &ih)) goto done;
    int Pp = 192, sp = 96, gap = 10, th = FONT_LINE + 2, margin = 12, nh = heads < 8 ? heads : 8;
    int Wc = margin + 2 * (Pp + gap) + COLORBAR_W + margin, Hc = 3 * FONT_LINE + 16 + Pp + th + gap + (nh ? sp + th + gap : 0) + margin;
    if (Wc < margin + nh * (sp + gap) + margin) Wc = margin + nh * (sp + gap) + margin;
    char line[512];
    snprintf(line, sizeof(line), "%s.attn1 at t=%d (step %d): where pixel (%d, %d) of %s looks", want[0], pyr.save_t[0],
             o.walk.save_index[0], a->qx, a->qy, a->input);
    if (Wc < text_width(line, 1) + 2 * margin) Wc = text_width(line, 1) + 2 * margin;
    if (canvas_init(&c, Wc, Hc, RGB_WHITE)) goto done;
    draw_text(&c, margin, 6, line, RGB_BLACK, 1);
    double pmax = 0;
    float *mean = (float *)calloc((size_t)N, sizeof(float));
    panel = (uint8_t *)malloc((size_t)Pp * Pp * 3);
    if (!mean || !panel) { free(mean); sd_errorf("out of memory"); goto done; }
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < N; j++) mean[j] += p[(int64_t)h * N + j] / heads;
    for (int j = 0; j < N; j++) pmax = mean[j] > pmax ? mean[j] : pmax;
    snprintf(line, sizeof(line), "feature map %dx%d (query at %d, %d), %d heads of %d; softmax over N = %d pixels, uniform %.4f, max %.4f",
             W, H, qi % W, qi / W, heads, hd, N, 1.0 / N, pmax);
    draw_text(&c, margin, 6 + FONT_LINE + 2, line, RGB_GRAY, 1);
    int y = 3 * FONT_LINE + 12, qpx = a->qx * Pp / img.width, qpy = a->qy * Pp / img.height;
    panel_draw(&c, (Rect){margin, y, Pp, Pp + th}, rgb, iw, ih, "input, query +");
    // the mean map, blended over the image
    for (int py = 0; py < Pp; py++)
        for (int px = 0; px < Pp; px++) {
            Rgb k = colormap_viridis(colormap_norm(mean[(py * H / Pp) * W + px * W / Pp], 0.0, pmax));
            const uint8_t *s = rgb + 3 * ((size_t)(py * ih / Pp) * iw + px * iw / Pp);
            uint8_t *o2 = panel + 3 * (py * Pp + px);
            o2[0] = (uint8_t)(0.7 * k.r + 0.3 * s[0] + 0.5);
            o2[1] = (uint8_t)(0.7 * k.g + 0.3 * s[1] + 0.5);
            o2[2] = (uint8_t)(0.7 * k.b + 0.3 * s[2] + 0.5);
        }
    panel_draw(&c, (Rect){margin + Pp + gap, y, Pp, Pp + th}, panel, Pp, Pp, "mean over heads");
    for (int k = 0; k < 2; k++) {  // the query marker on both panels
        int ox = margin + k * (Pp + gap) + qpx, oy = y + th + qpy;
        canvas_line(&c, ox - 5, oy, ox + 5, oy, (Rgb){255, 0, 0}, 1, 1.0f);
        canvas_line(&c, ox, oy - 5, ox, oy + 5, (Rgb){255, 0, 0}, 1, 1.0f);
    }
    double v0[1] = {0};
    Heatmap hm = {v0, 1, 1, 0.0, pmax, 0, NULL, NULL, NULL, 1.0, 1, 1, NULL, NULL, NULL};
    colorbar_draw(&c, (Rect){margin + 2 * (Pp + gap), y + th, 12, Pp}, &hm, "%.3f");
    y += Pp + th + gap;
    for (int h = 0; h < nh; h++) {  // the first heads on their own, each from 0 to its max
        double hmax = 0;
        for (int j = 0; j < N; j++) hmax = p[(int64_t)h * N + j] > hmax ? p[(int64_t)h * N + j] : hmax;
        for (int py = 0; py < sp; py++)
            for (int px = 0; px < sp; px++) {
                Rgb k = colormap_viridis(colormap_norm(p[(int64_t)h * N + (py * H / sp) * W + px * W / sp], 0.0, hmax));
                uint8_t *o2 = panel + 3 * (py * sp + px);
                o2[0] = k.r; o2[1] = k.g; o2[2] = k.b;
            }
        snprintf(line, sizeof(line), "head %d", h);
        panel_draw(&c, (Rect){margin + h * (sp + gap), y, sp, sp + th}, panel, sp, sp, line);
    }
    free(mean);
    rc = canvas_write_png(&c, out);
done:
    canvas_free(&c);
    free(h0); free(nrm); free(K); free(q); free(p); free(rgb); free(panel);
    if (extracted) feature_pyramid_free(&pyr);
    if (loaded) diffusion_model_free(&dm);
    tensor_free(&x);
    image_free(&img);
    return rc;
}
