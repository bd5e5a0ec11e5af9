// Batches for training and evaluation, read from the feature cache written by
// `satdifuser extract` (one safetensors file per image, <dir>/<id>.safetensors):
//   tensors  feat.<i>.<s>  (C_s, H_s, W_s) or (1, C_s, H_s, W_s), float32 or float16:
//            i = position in save_timesteps, s = scale from the largest width down
//   metadata "feature_dims": {"<width>": [c, ...]}, "save_timesteps": [47, 45, 40] (JSON text)
// The layout is read from the first file and every other file must agree.
#ifndef SD_TRAIN_DATASET_H
#define SD_TRAIN_DATASET_H

#include <stdint.h>

#include "fusion/fuser.h"
#include "io/json.h"
#include "io/labels.h"

typedef struct {
    char *dir;
    const LabelSet *labels;
    JsonValue feature_dims;    // parsed from the first file's metadata
    JsonValue save_timesteps;
    char *feature_dims_text;   // the same, as the JSON text of the metadata
    char *save_timesteps_text;
    FeatureLayout layout;
    int num_timesteps, num_scales;
    int C[FUSION_MAX_SCALES], H[FUSION_MAX_SCALES], W[FUSION_MAX_SCALES];
    int max_batch;
    float *feat[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];  // (max_batch, C_s, H_s, W_s)
    // labels of the current batch
    int64_t *targets_i64;      // classification (B), segmentation (B, mask_h, mask_w)
    float *targets_f32;        // multi-label (B, classes)
    int mask_h, mask_w;        // segmentation: mask size = the head's output size
    int ignore_value;          // mask pixel value that is ignored
    int64_t ignore_index;      // what it becomes (-100)
    char *warning;             // dataset_open_mixed(allow_mixed): the settings that differ (NULL: none),
                               // for the caller to report (library code never prints)
} Dataset;

// Opens the cache for the labelled images: every one must have its file, and every
// label must be a class index below labels->num_classes (segmentation: every mask is
// read once here, of one size, its values in 0..num_classes-1 or ignore_value).
// Every file must have the first one's feature shapes and settings (scaling mode, preprocessing,
// model, prompt, steps, layers: the error names two files and what differs).
int dataset_open(Dataset *d, const char *features_dir, const LabelSet *labels, int max_batch, int ignore_value);
// The same; allow_mixed: files made with other settings (not shapes) are a warning, not an error
// (train/eval --allow-mixed-preprocessing).
int dataset_open_mixed(Dataset *d, const char *features_dir, const LabelSet *labels, int max_batch, int ignore_value,
                       int allow_mixed);
void dataset_close(Dataset *d);
// Path of an image's feature file.
void dataset_file(const Dataset *d, const char *image_id, char *buf, size_t size);
// Loads rows[0..n) (indices into labels) into the batch buffers and fills `in`.
int dataset_load_batch(Dataset *d, const int *rows, int n, FusionInput *in);

// Deterministic shuffle (xorshift64*, Fisher-Yates) of idx[0..n) for (seed, epoch).
void dataset_shuffle(int *idx, int n, uint64_t seed, int epoch);

#endif
