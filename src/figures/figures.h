// Figures drawn from the files the pipeline writes (docs/figures.md): each reads its numbers from a
// feature cache, a run folder or a prediction, so it can be redrawn without recomputing.
//   fig_features   PCA of every captured stream of one or more images to RGB (a shared basis)
//   fig_mixing     the global fuser's softmax mixing weights (timesteps x layers, per scale)
//   fig_confusion  the confusion matrix of an evaluation (counts and row-normalised)
//   fig_curves     training curves from log.jsonl (loss, validation metric, learning rate)
//   fig_gates      the localized fuser's per-pixel gates over the image (a forward of the head)
//   fig_moe        the mixture of experts' routing: one image, a split, per class
//   fig_overlay    a segmentation map over its image, the ground truth beside it, a class legend
//   fig_topk       a classification's top-k class probabilities as bars
// Every one writes a PNG; errors name the missing file, tensor, image id or argument.
#ifndef SD_FIGURES_FIGURES_H
#define SD_FIGURES_FIGURES_H

#include "io/labels.h"
#include "train/trainer.h"

typedef struct {
    const char *features_dir;
    const char *const *ids;  // image ids (feature files <dir>/<id>.safetensors)
    int n_ids;
    int scale;               // -1: every scale, else that one only
    int panel;               // panel side in pixels (0: 64)
    const char *input;       // the image to show beside the features (NULL: the feature file's "source")
    const char *bands;       // 1-based bands of it, e.g. "3,2,1" (NULL: the feature file's bands_used)
    // An image that cannot be shown is left out with a note (one line, no newline) to this callback
    // (NULL: the note is dropped). The library prints nothing.
    void (*note)(const char *text, void *user);
    void *note_user;
} FeatureFigure;

int fig_features(const FeatureFigure *f, const char *out);
int fig_mixing(const char *run_dir, const char *out);
int fig_confusion(const char *run_dir, const char *split, const char *out);
int fig_curves(const char *run_dir, const char *out);
// Figure 4b (the paper's Fig. 3): the test metric of --fuser single runs, one curve per stream over
// the UNet timestep of each run (metrics_test.json or metrics.json, head_config.json, features_meta.json).
int fig_single(const char *const *runs, int n_runs, const char *out);

typedef struct {
    const char *pred;        // predict's PNG of class indices
    const char *input;       // the image it was made from
    const char *labels;      // labels CSV (class names; the ground-truth mask of `id` if it has one), or NULL
    const char *id;          // image id in the labels (NULL: the input's file stem)
    const char *bands;       // 1-based bands shown, e.g. "3,2,1" (NULL: 1,2,3 or the only band)
    int num_classes;         // 0: from the labels, else the largest index in the map + 1
    float alpha;             // opacity of the class colours over the image (0.5)
    int max_side;            // preview: maps larger than this are downsampled (0: 512)
} OverlayFigure;

int fig_overlay(const OverlayFigure *o, const char *out);
// Figure 3: the localized fuser's per-pixel gate of every stream of one image, over the image
// (input / bands: as FeatureFigure). Figure 4: the MoE gate probabilities of one image (id) and,
// with labels_path, the experts chosen over a split (bars per scale) and the mean gate probability
// per class. Both run the head of RUN (best weights, MoE counters as eval) on the feature cache.
// note: as FeatureFigure's (the gates are drawn without an image that cannot be read), NULL: dropped.
int fig_gates(const char *run_dir, const char *features_dir, const char *id, const char *input, const char *bands,
              const char *out, void (*note)(const char *text, void *user), void *note_user);
int fig_moe(const char *run_dir, const char *features_dir, const char *id, const char *labels_path, const char *split,
            const char *out);
// Figure 4b (the paper's Fig. 4): the fused map at one scale of each run (e.g. gw, lw, moe) for the
// same images, side by side, PCA to RGB with one basis over all of them.
// Figure 4b (the paper's Fig. 5): every MoE expert's output at one scale for one image (all experts
// run: a dense call), rows = timesteps, PCA to RGB with one basis, titled with the gate probability.
int fig_experts(const char *run_dir, const char *features_dir, const char *id, int scale, const char *out);
int fig_fused(const char *const *runs, int n_runs, const char *features_dir, const char *const *ids, int n_ids,
              int scale, const char *out);
int fig_topk(const char *pred_json, const char *labels_path, int k, const char *out);

// Figure 5: the attn1 probabilities of one query pixel (qx, qy in the input image) over the feature
// map of a decoder transformer at a saved step, from an extraction of the image (fig_attention.c).
typedef struct {
    const char *model, *unet;   // pipeline folder (and its UNet folder when elsewhere, or NULL)
    const char *input;          // the image
    const char *bands, *scale;  // as extract: "3,2,1" (NULL: auto), "4095" | "255" | "clip" (NULL: 4095)
    int size;                   // as extract (0: 256)
    const char *prompt;         // NULL: extract's default
    const char *layer;          // "up_blocks.B.attentions.J" (NULL: the first of the largest decoder block)
    int step;                   // save step index (-1: 47)
    int qx, qy;
    double check;               // set (>= 0) once computed: max |attn1 output of the query row recomputed
                                // from these probabilities - the captured one| / max |captured| (a self-check)
} AttentionFigure;
int fig_attention(AttentionFigure *a, const char *out);
// One query row of self-attention per head: p[h * N + j] = softmax_j(scale * q_h . K[j]_h), q holds
// heads * head_dim values, K is (N, heads * head_dim).
int attention_row(const float *q, const float *K, int N, int heads, int head_dim, float scale, float *p);

// Written by train (after its final test) and eval without being asked: RUN/confusion_<split>.json
// (the counts, rows = label, columns = prediction) and RUN/confusion_<split>.png; train also writes
// RUN/training_curves.png. figures_after_eval returns 0 (written), 1 (nothing to draw: a multi-label
// result) or -1 with a message; figures_after_train 0 or -1. The CLI reports them (a failure is a
// warning there: the run itself is done).
int figures_after_eval(const char *run_dir, const char *split, const EvalResult *ev, const LabelSet *labels);
int figures_after_train(const char *run_dir);

// Helpers shared by the figure files (figures_util.c).
// An image file as display RGB (h x w x 3, malloc'd): bands (1-based list "3,2,1", or NULL: 1,2,3, or
// band 1 as gray), each stretched from its 2nd to its 98th percentile.
int figure_load_rgb(const char *path, const char *bands, uint8_t **rgb, int *w, int *h);
// "up_blocks.3.attentions.0.transformer_blocks.0.attn1" -> "up3.A0" ("R" for resnets).
void figure_short_layer_name(const char *path, char *out, size_t size);
// A run folder file's path, or an error naming what is missing and which command writes it.
int figure_run_file(const char *run_dir, const char *name, const char *made_by, char *path, size_t size);

#endif
