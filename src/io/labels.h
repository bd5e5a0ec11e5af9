// Labels for training and evaluation: one CSV per dataset (docs/labels-format.md).
//
//   # classes: water,tree canopy,low vegetation        (optional: class names)
//   image,split,label
//   chip_0001,train,2              classification: a class index
//   chip_0002,val,0;4;7            multi-label: class indices separated by ';' (empty: none)
//   chip_0003,test,masks/0003.png  segmentation: a mask (PNG gray/palette or NPY integer), path
//                                  relative to the CSV's folder; pixel value = class index
//
// `image` is the image id: the path of its feature file (<id>.safetensors) relative
// to the feature cache, e.g. "Forest/Forest_1" for class folders (no absolute path,
// no "." or ".."). `split` is train, val or test.
#ifndef SD_LABELS_H
#define SD_LABELS_H

#include <stdint.h>

typedef enum { LABELS_CLASSIFICATION = 0, LABELS_MULTILABEL = 1, LABELS_SEGMENTATION = 2 } LabelTask;
typedef enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2 } SplitKind;

const char *label_task_name(LabelTask t);
int label_task_from_name(const char *name, LabelTask *out);  // "cls"/"classification", "multilabel", "seg"/"segmentation"
const char *split_name(SplitKind s);

typedef struct {
    char *image;        // image id
    SplitKind split;
    int label;          // classification
    int num_labels;     // multi-label: how many classes are on
    int *labels;        // multi-label: the class indices
    char *mask_path;    // segmentation: full path of the mask file
    int line;           // its line in the CSV (for errors)
} LabelRow;

typedef struct {
    char *path;
    LabelTask task;
    int count;
    LabelRow *rows;
    int num_classes;     // from "# classes:", else 1 + the largest class index seen
    char **class_names;  // num_names names (NULL if none given)
    int num_names;       // how many names the "# classes:" line gave (0: none); always num_classes
                         // after labels_set_num_classes, which refuses any other count
} LabelSet;

// Parses the CSV for the task. Errors name the file, the line and the field.
int labels_load(const char *path, LabelTask task, LabelSet *out);
void labels_free(LabelSet *ls);
// Indices of the rows of one split, in file order; returns how many (n <= count).
int labels_split(const LabelSet *ls, SplitKind split, int *rows_out);

// Sets the number of classes the model has (--num-classes, a head config: `source` names it
// in the error). With class names, their count must be exactly num_classes: fewer names would
// leave classes unnamed, more would be ignored silently; both are errors naming the file, the
// counts and what to change. Without names any count is taken (indices are checked later).
int labels_set_num_classes(LabelSet *ls, int num_classes, const char *source);
// The name of class c, or its number written into buf when the labels name no classes.
const char *labels_class_name(const LabelSet *ls, int c, char *buf, int size);

// Checks every class index of a classification / multi-label set against
// ls->num_classes (which the caller may have set from --num-classes or a head
// config); errors name the file, the line, the index and num_classes.
// Segmentation masks are checked by reading them (labels_load_mask).
int labels_check_classes(const LabelSet *ls);

// Reads row `r`'s mask as class indices (H*W int64). Pixels equal to
// ignore_value become ignore_index; other values must be in 0 .. num_classes-1
// (the error names the mask, the value, its row and column, and num_classes).
int labels_load_mask(const LabelSet *ls, int r, int expect_h, int expect_w, int ignore_value, int64_t ignore_index,
                     int64_t *out);

#endif
