// Embedding satdifuser: one image -> diffusion features -> a trained head's prediction, through the
// public header alone (docs/library.md). Usage: embed MODEL RUN IMAGE.npy [FEATURES.safetensors]
// IMAGE.npy: float32 (C, H, W) reflectances in [0, 1], e.g. tests/data/demo/images/*.npy (bands 3,2,1: R,G,B).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "satdifuser.h"

static float *read_npy_rgb(const char *path, int *h, int *w) {  // a '<f4' C-order (C, H, W) .npy, C >= 3
    unsigned char pre[10];
    char header[1024] = "";
    int c = 0;
    FILE *f = fopen(path, "rb");
    if (!f || fread(pre, 1, 10, f) != 10 || pre[6] != 1 || pre[8] + 256 * pre[9] >= (int)sizeof(header) ||
        fread(header, 1, pre[8] + 256 * pre[9], f) != (size_t)(pre[8] + 256 * pre[9]) || !strstr(header, "'<f4'") ||
        !strstr(header, "(") || sscanf(strstr(header, "(") + 1, "%d, %d, %d", &c, h, w) != 3 || c < 3) {
        if (f) fclose(f);
        return NULL;
    }
    float *all = malloc(sizeof(float) * c * *h * *w), *rgb = malloc(sizeof(float) * 3 * *h * *w);
    int ok = all && rgb && fread(all, sizeof(float), (size_t)c * *h * *w, f) == (size_t)c * *h * *w;
    for (int k = 0; ok && k < 3; k++)  // bands 3, 2, 1 (1-based) as R, G, B
        memcpy(rgb + (size_t)k * *h * *w, all + (size_t)(2 - k) * *h * *w, sizeof(float) * *h * *w);
    fclose(f);
    free(all);
    if (!ok) { free(rgb); return NULL; }
    return rgb;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: embed MODEL RUN IMAGE.npy [FEATURES.safetensors]\n"); return 2; }
    int h, w;
    float *image = read_npy_rgb(argv[3], &h, &w);
    if (!image) { fprintf(stderr, "embed: %s: not a float32 (C>=3, H, W) .npy\n", argv[3]); return 1; }
    SdfContext *ctx = NULL;
    SdfModel *model = NULL;
    SdfHead *head = NULL;
    SdfFeatures *feats = NULL;
    SdfPrediction pred = {0};
    SdfExtractOptions eo;
    if (sdf_context_new(NULL, &ctx) || sdf_model_load(ctx, argv[1], NULL, &model) ||
        sdf_head_load(ctx, argv[2], NULL, &head) || sdf_head_extract_options(head, &eo) ||
        sdf_extract(ctx, model, &eo, image, 3, h, w, &feats) ||
        (argc > 4 && sdf_features_save(ctx, feats, argv[4])) || sdf_predict(ctx, head, feats, &pred)) {
        fprintf(stderr, "embed: %s\n", sdf_last_error());
        return 1;
    }
    int n = pred.height * pred.width, C = pred.num_classes;
    for (int c = 0; c < C; c++) {  // segmentation: the share of each class; classification: the scores
        int count = 0;
        for (int p = 0; p < n; p++) count += pred.classes[p] == c;
        if (pred.task == SDF_TASK_SEGMENTATION && count)
            printf("class %d %s: %.1f%% of the pixels\n", c, sdf_head_class_name(head, c), 100.0 * count / n);
        if (pred.task != SDF_TASK_SEGMENTATION)
            printf("class %d %s: %.4f%s\n", c, sdf_head_class_name(head, c), pred.probs[c], count ? " (best)" : "");
    }
    sdf_prediction_free(&pred);
    sdf_features_free(feats);
    sdf_head_free(head);
    sdf_model_free(model);
    sdf_context_free(ctx);
    free(image);
    return 0;
}
