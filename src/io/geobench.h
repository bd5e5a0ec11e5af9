// GEO-Bench task folders (ServiceNow/geo-bench): one HDF5 file per sample
// (<sample>.hdf5: one root dataset per band, named by the band; the segmentation mask as
// dataset `label`; a root attribute `pickle` holding the Python repr of a pickled dict with
// `bands_order` and, for classification, `label`), a partition per split sweep
// (<name>_partition.json: {"train": [...], "valid": [...], "test": [...]}), and the labels
// in label_map.json (classification: class index -> sample names) or label_stats.json
// (per sample: one-hot, multi-hot or, for segmentation, class fractions).
// Read without Python: the pickle goes through io/pickle.c (geobench's classes stay inert
// placeholders), numpy arrays and scalars in it are decoded from their pickled state.
#ifndef SD_GEOBENCH_H
#define SD_GEOBENCH_H

#include <stddef.h>
#include <stdint.h>

#include "io/hdf5.h"
#include "io/image.h"

typedef enum { GB_TASK_CLS, GB_TASK_MULTILABEL, GB_TASK_SEG } GbTaskType;

#define GB_MAX_BANDS 64
#define GB_MAX_CLASSES 1024
#define GB_MAX_ALT 8

// What a sample's `pickle` attribute says.
typedef struct {
    int num_bands;                 // bands_order, in file order (the label band included)
    char *bands[GB_MAX_BANDS];
    char *alt[GB_MAX_BANDS][GB_MAX_ALT];  // each band's geobench alt_names ("red", "04", ...), NULL-ended
    int has_label;                 // 1: an int label, 2: a vector (multi-label)
    int64_t label;
    int label_len;
    int64_t *label_vec;
} GbSampleMeta;

// Decodes a Python bytes repr (b'\x80\x04...' or b"...") into *out (malloc'd).
int gb_bytes_literal(const char *s, size_t len, uint8_t **out, size_t *out_len);
// The band of bands_order that `want` names: its own name, else one of its alt_names (as
// geobench's pack_to_3d matches them); NULL if none.
const char *gb_resolve_band(const GbSampleMeta *m, const char *want);
// Reads the sample's pickle attribute (`path` for messages).
int gb_sample_meta(const H5File *f, GbSampleMeta *m);
// The same from the attribute's text (repr_len bytes; io/geobench_meta.c); path names the file in messages.
int gb_meta_parse(const char *path, const char *repr, size_t repr_len, GbSampleMeta *m);
void gb_sample_meta_free(GbSampleMeta *m);

typedef struct {
    char *dir, *partition;
    int num_samples;
    char **names;                  // sample names in partition order: train, then valid, then test
    int *split;                    // 0 train, 1 val, 2 test
    GbTaskType type;
    int num_classes;               // 0 when unknown (segmentation without label stats)
    char **class_names;            // NULL or num_classes names (task_specs.pkl)
    int64_t *cls;                  // classification: label per sample (-1: not in label_map.json)
    double **stats;                // label_stats.json vector per sample (NULL if absent), num_stats long
    int num_stats;
} GbTask;

// Reads TASKDIR/<partition>_partition.json, label_map.json / label_stats.json and the class
// names of task_specs.pkl; decides the task type from them and from the first sample's file.
int gb_task_open(GbTask *t, const char *dir, const char *partition);
void gb_task_free(GbTask *t);

// One sample: the image (C, H, W) float32 of the named bands (NULL/"" = the sample's
// bands_order without the label), the mask (seg: H x W int64), and the label (cls: *label;
// multi-label: label_vec[num_classes] 0/1). Every source of the label that the folder has is
// read and must agree.
typedef struct {
    int C, H, W;
    float *image;
    char *band_names[GB_MAX_BANDS];
    int64_t *mask;                 // seg: H*W values
    int mask_h, mask_w;
    int64_t label;                 // cls
    int64_t *label_vec;            // multi-label: num_classes entries
} GbSample;

int gb_load_sample(const GbTask *t, int index, const char *bands, GbSample *s);
void gb_sample_free(GbSample *s);

// The band names of a sample file, comma-separated into out (for messages).
void gb_list_bands(const H5File *f, char *out, size_t size);

// extract --input TASKDIR: 1 if DIR holds <partition>_partition.json (default: default); the
// partition's samples (names only, a sample listed in two splits kept once).
int gb_is_task_dir(const char *dir, const char *partition);
int gb_partition_open(GbTask *t, const char *dir, const char *partition);
// Loads an image: a GEO-Bench HDF5 sample as its exported NPY reads (the bands_order bands
// without the label, float32, is_float), any other file through image_load (io/image.h).
int gb_image_load(const char *path, Image *img);
// --bands by name: 1-based indices of the names (comma-separated) in the sample's bands_order.
int gb_band_indices(const char *path, const char *names, int *idx, int max, int *n);

// satdifuser geobench export: OUT/images/<sample>.npy, OUT/masks/<sample>.npy (seg),
// OUT/labels.csv; written into a temporary folder beside OUT and renamed at the end.
// images 0: labels.csv and masks only (satdifuser reproduce extracts from the task folder itself).
// progress (may be NULL: silent) is called after every 1000th sample with finished = 0, and once
// with finished = 1 when OUT is complete; task is "cls", "multilabel" or "seg". The library prints
// nothing: the CLI's callback does (cli_geobench_export_progress).
typedef void (*GbExportProgress)(void *user, int done, int total, int finished, const char *partition,
                                 const char *task);
int gb_export(const char *dir, const char *out, const char *partition, const char *bands, int images,
              GbExportProgress progress, void *user);

// configs/tasks/<task>.json (io/geobench_preset.c, docs/geobench.md): the original's settings for a task.
#define GB_PRESET_MAX_HEAD 6
typedef struct {
    int batch_size, val_batch_size, epochs, warmup_epochs, eval_every, patience, seed, max_steps;
    double lr, min_lr, weight_decay;
} PresetTrain;

typedef struct {
    char *path;                    // the preset file
    char *task, *folder;           // "m-eurosat", "classification_v1.0/m-eurosat" (under the GEO-Bench root)
    GbTaskType type;
    int num_classes;
    char *bands, *scale, *prompt;  // extract --bands, --scale, --prompt
    int size;                      // extract --size
    int ignore_value;              // train/eval --ignore-value (run.py's -100 by default)
    char *metric;                  // the key of eval's metrics JSON reported in the results table
    PresetTrain train;             // train options (configs/*_exp.yaml); max_steps 0 = no limit
    int num_head;                  // head options (train --projection-dim ...), optional
    char head_keys[GB_PRESET_MAX_HEAD][24];
    int head_vals[GB_PRESET_MAX_HEAD];
} GbPreset;

// NAME (a preset: NAME.json in CONFIGS/tasks when configs is not NULL, else or then in the binary's
// configs/tasks, its ../configs/tasks, ./configs/tasks) or a path to a .json file -> the file's path.
// The command passes $SATDIFUSER_CONFIGS as configs (the library reads no environment).
int gb_preset_find(const char *name, const char *configs, char *path, size_t size);
int gb_preset_load(GbPreset *p, const char *path);
void gb_preset_free(GbPreset *p);

#endif
