// satdifuser figures: pictures of what the features, the fusion and the heads see, drawn from the
// files the pipeline writes (feature cache, run folder, predictions). See docs/figures.md.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "figures/figures.h"

static void figures_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser figures <figure> [options] [--out FILE.png]\n\n"
            "Draws a figure as a PNG from the files the pipeline already wrote (nothing is recomputed\n"
            "but a PCA). train writes RUN/training_curves.png and RUN/confusion_test.png, eval\n"
            "RUN/confusion_<split>.png, predict a segmentation's OUT_overlay.png, without being asked.\n"
            "Figures (docs/figures.md):\n\n"
            "  features   every captured stream (layer x timestep) of one or more images, PCA to RGB;\n"
            "             several ids share one PCA basis, so a colour means the same in each\n"
            "             --features DIR --id ID[,ID...] [--scale S] [--panel PX] [--input IMG] [--bands 3,2,1]\n"
            "             e.g. satdifuser figures features --features demo_out/features --id s4_r1_c1,s2_r0_c0 \\\n"
            "                    --out demo_out/features_pca.png\n"
            "  mixing     the global fuser's softmax mixing weights, timesteps x layers per scale, in %%\n"
            "             --run RUN (fuser gw)         e.g. satdifuser figures mixing --run demo_out/run\n"
            "  gates      the localized fuser's per-pixel gate of every stream of one image, over it\n"
            "             --run RUN (fuser lw) --features DIR --id ID [--input IMG] [--bands 3,2,1]\n"
            "             e.g. satdifuser figures gates --run run_lw --features demo_out/features --id s4_r1_c1 \\\n"
            "                    --out gates.png\n"
            "  moe        the mixture of experts' routing: one image's gate probabilities (--id) and, with\n"
            "             --labels, the experts chosen over a split and the gate probability per class\n"
            "             --run RUN (fuser moe) --features DIR [--id ID] [--labels CSV] [--split test]\n"
            "             e.g. satdifuser figures moe --run run_moe --features demo_out/features --id s4_r1_c1 \\\n"
            "                    --labels tests/data/demo/labels.csv --out moe.png\n"
            "  fused      the paper's Fig. 4: each run's fused map at one scale for the same images, side by\n"
            "             side, PCA to RGB with one shared basis\n"
            "             --runs RUN[,RUN...] --features DIR --id ID[,ID...] [--scale S]\n"
            "             e.g. satdifuser figures fused --runs run_gw,run_lw,run_moe --features demo_out/features \\\n"
            "                    --id s4_r1_c1,s2_r0_c0 --out fused.png\n"
            "  experts    the paper's Fig. 5: every MoE expert's output for one image at one scale\n"
            "             --run RUN (fuser moe) --features DIR --id ID [--scale S]\n"
            "             e.g. satdifuser figures experts --run run_moe --features demo_out/features --id s4_r1_c1 \\\n"
            "                    --out experts.png\n"
            "  single     the paper's Fig. 3: the test metric of --fuser single runs per stream and timestep\n"
            "             --runs RUN[,RUN...]          e.g. satdifuser figures single --runs s0_47,s0_45,s3_47,s3_45 \\\n"
            "                                                 --out single.png\n"
            "  attention  where one pixel looks: the attn1 probabilities of a query pixel over the feature map of\n"
            "             a decoder transformer at a saved step (extracts the image; one softmax row per head)\n"
            "             --model DIR --input IMG --query X,Y [--layer up_blocks.B.attentions.J] [--step 47]\n"
            "             [--bands 3,2,1] [--value-scale 4095|255|clip] [--size 256] [--unet DIR] [--prompt TEXT]\n"
            "             e.g. satdifuser figures attention --model tests/data/tiny_pipeline \\\n"
            "                    --input tests/data/demo/images/s4_r1_c1.npy --bands 3,2,1 --value-scale clip --size 64 \\\n"
            "                    --query 20,8 --out attention.png\n"
            "  confusion  confusion matrix of an evaluation (counts and row-normalised)\n"
            "             --run RUN [--split test]     e.g. satdifuser figures confusion --run demo_out/run\n"
            "  curves     training curves: loss per step, validation metric, learning rate\n"
            "             --run RUN                    e.g. satdifuser figures curves --run demo_out/run\n"
            "  overlay    predict's segmentation PNG over its image, the ground truth and a class legend\n"
            "             --pred PRED.png --input IMG [--labels CSV] [--id ID] [--bands 3,2,1] [--alpha A]\n"
            "             [--max-size PX] [--num-classes N]\n"
            "             e.g. satdifuser figures overlay --pred demo_out/s4_r1_c1_prediction.png \\\n"
            "                    --input tests/data/demo/images/s4_r1_c1.npy --labels tests/data/demo/labels.csv \\\n"
            "                    --out demo_out/s4_r1_c1_overlay.png\n"
            "  topk       a classification's top-k class probabilities (predict's JSON) as bars\n"
            "             --pred PRED.json [--labels CSV] [--k 5]\n"
            "             e.g. satdifuser figures topk --pred pred.json --labels labels.csv --out top5.png\n\n"
            "--out defaults to RUN/mixing_weights.png, RUN/confusion_<split>.png, RUN/training_curves.png\n"
            "for the run figures; the others need it.\n");
}

// The figures' notes (an image left out of a picture): on stderr.
static void print_note(const char *text, void *user) {
    (void)user;
    fprintf(stderr, "%s\n", text);
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "satdifuser figures: %s '%s': expected a whole number from %d to %d\n", opt, v, lo, hi);
        return 2;
    }
    *out = (int)x;
    return 0;
}

int cmd_figures(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        figures_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *fig = argv[0], *out = NULL, *run = NULL, *split = "test", *features = NULL, *ids = NULL, *input = NULL;
    const char *bands = NULL, *pred = NULL, *labels = NULL, *id = NULL, *runs = NULL;
    const char *model = NULL, *unet = NULL, *query = NULL, *layer = NULL, *value_scale = NULL, *prompt = NULL;
    int size = 0, step = -1;
    int scale = -1, panel = 0, k = 5, max_size = 0, num_classes = 0;
    double alpha = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { figures_usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "satdifuser figures: %s needs a value\n", a); return 2; }
        i++;
        int bad = 0;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--run")) run = v;
        else if (!strcmp(a, "--runs")) runs = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--unet")) unet = v;
        else if (!strcmp(a, "--query")) query = v;
        else if (!strcmp(a, "--layer")) layer = v;
        else if (!strcmp(a, "--value-scale")) value_scale = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--size")) bad = parse_int(a, v, 8, 4096, &size);
        else if (!strcmp(a, "--step")) bad = parse_int(a, v, 0, 1000, &step);
        else if (!strcmp(a, "--split")) split = v;
        else if (!strcmp(a, "--features")) features = v;
        else if (!strcmp(a, "--id")) ids = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--bands")) bands = v;
        else if (!strcmp(a, "--pred")) pred = v;
        else if (!strcmp(a, "--labels")) labels = v;
        else if (!strcmp(a, "--scale")) bad = parse_int(a, v, 0, 7, &scale);
        else if (!strcmp(a, "--panel")) bad = parse_int(a, v, 8, 512, &panel);
        else if (!strcmp(a, "--k")) bad = parse_int(a, v, 1, 256, &k);
        else if (!strcmp(a, "--max-size")) bad = parse_int(a, v, 16, 8192, &max_size);
        else if (!strcmp(a, "--num-classes")) bad = parse_int(a, v, 1, 256, &num_classes);
        else if (!strcmp(a, "--alpha")) {
            char *end = NULL;
            alpha = strtod(v, &end);
            if (!*v || *end || !(alpha > 0 && alpha <= 1)) { fprintf(stderr, "satdifuser figures: --alpha '%s': expected a number in (0, 1]\n", v); return 2; }
        } else { fprintf(stderr, "satdifuser figures: unknown option '%s' for '%s'\n", a, fig); figures_usage(stderr); return 2; }
        if (bad) return bad;
        if (!strcmp(a, "--id")) id = v;
    }
    char def_out[4200];
    int rc;
#define NEED(cond, what)                                                                        \
    if (!(cond)) {                                                                              \
        fprintf(stderr, "satdifuser figures %s: %s (satdifuser figures --help)\n", fig, what); \
        return 2;                                                                               \
    }
    if (!strcmp(fig, "features")) {
        NEED(features && ids && out, "needs --features DIR, --id ID[,ID...] and --out FILE.png");
        // split the comma list in a copy
        char *list = strdup(ids);
        const char *idv[17];
        int n = 0;
        if (!list) { fprintf(stderr, "satdifuser figures: out of memory\n"); return 1; }
        for (char *tok = strtok(list, ","); tok && n < 17; tok = strtok(NULL, ",")) idv[n++] = tok;
        FeatureFigure ff = {features, idv, n, scale, panel, input, bands, print_note, NULL};
        rc = fig_features(&ff, out);
        free(list);
    } else if (!strcmp(fig, "mixing")) {
        NEED(run, "needs --run RUN");
        if (!out) snprintf(def_out, sizeof(def_out), "%s/mixing_weights.png", run), out = def_out;
        rc = fig_mixing(run, out);
    } else if (!strcmp(fig, "confusion")) {
        NEED(run, "needs --run RUN");
        if (!out) snprintf(def_out, sizeof(def_out), "%s/confusion_%s.png", run, split), out = def_out;
        rc = fig_confusion(run, split, out);
    } else if (!strcmp(fig, "curves")) {
        NEED(run, "needs --run RUN");
        if (!out) snprintf(def_out, sizeof(def_out), "%s/training_curves.png", run), out = def_out;
        rc = fig_curves(run, out);
    } else if (!strcmp(fig, "gates")) {
        NEED(run && features && id && out, "needs --run RUN, --features DIR, --id ID and --out FILE.png");
        rc = fig_gates(run, features, id, input, bands, out, print_note, NULL);
    } else if (!strcmp(fig, "moe")) {
        NEED(run && features && (id || labels) && out, "needs --run RUN, --features DIR, --id ID and/or --labels CSV, --out FILE.png");
        rc = fig_moe(run, features, id, labels, split, out);
    } else if (!strcmp(fig, "attention")) {
        NEED(model && input && query && out, "needs --model DIR, --input IMG, --query X,Y and --out FILE.png");
        int qx, qy;
        char extra;
        if (sscanf(query, "%d,%d%c", &qx, &qy, &extra) != 2) {
            fprintf(stderr, "satdifuser figures: --query '%s': expected X,Y (a pixel of the input image)\n", query);
            return 2;
        }
        AttentionFigure af = {model, unet, input, bands, value_scale, size, prompt, layer, step, qx, qy, -1.0};
        rc = fig_attention(&af, out);
        if (af.check >= 0)
            printf("check: the query row's attn1 output recomputed from these probabilities differs from the captured "
                   "one by %.3g (relative to its largest value)\n", af.check);
    } else if (!strcmp(fig, "single")) {
        NEED(runs && out, "needs --runs RUN[,RUN...] and --out FILE.png");
        char *rl = strdup(runs);
        const char *rv[65];
        int nr = 0;
        for (char *t = rl ? strtok(rl, ",") : NULL; t && nr < 65; t = strtok(NULL, ",")) rv[nr++] = t;
        rc = rl ? fig_single(rv, nr, out) : sd_errorf("out of memory");
        free(rl);
    } else if (!strcmp(fig, "experts")) {
        NEED(run && features && id && out, "needs --run RUN, --features DIR, --id ID and --out FILE.png");
        rc = fig_experts(run, features, id, scale, out);
    } else if (!strcmp(fig, "fused")) {
        NEED(runs && features && ids && out, "needs --runs RUN[,RUN...], --features DIR, --id ID[,ID...] and --out FILE.png");
        char *rl = strdup(runs), *il = strdup(ids);
        const char *rv[8], *iv[9];
        int nr = 0, ni = 0;
        for (char *t = rl ? strtok(rl, ",") : NULL; t && nr < 8; t = strtok(NULL, ",")) rv[nr++] = t;
        for (char *t = il ? strtok(il, ",") : NULL; t && ni < 9; t = strtok(NULL, ",")) iv[ni++] = t;
        rc = rl && il ? fig_fused(rv, nr, features, iv, ni, scale, out) : sd_errorf("out of memory");
        free(rl);
        free(il);
    } else if (!strcmp(fig, "overlay")) {
        NEED(pred && input && out, "needs --pred PRED.png, --input IMG and --out FILE.png");
        OverlayFigure o = {pred, input, labels, id, bands, num_classes, (float)alpha, max_size};
        rc = fig_overlay(&o, out);
    } else if (!strcmp(fig, "topk")) {
        NEED(pred && out, "needs --pred PRED.json and --out FILE.png");
        rc = fig_topk(pred, labels, k, out);
    } else {
        fprintf(stderr, "satdifuser figures: unknown figure '%s'\n\n", fig);
        figures_usage(stderr);
        return 2;
    }
#undef NEED
    if (rc) {
        fprintf(stderr, "satdifuser figures %s: %s\n", fig, sd_last_error());
        return 1;
    }
    printf("figure: %s\n", out);
    return 0;
}
