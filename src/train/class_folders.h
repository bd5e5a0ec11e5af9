// Labels from class folders, as many scene-classification datasets ship (EuroSAT:
// DIR/Forest/Forest_1.tif): `satdifuser labels from-folders`.
//
//   class  = the first folder under DIR; classes are numbered in sorted (strcmp) order,
//            as torchvision's ImageFolder does
//   id     = the file's path under DIR without its extension ("Forest/Forest_1"), which is
//            the name `satdifuser extract --input DIR` gives its feature file
//   split  = stratified: per class, the ids (sorted) are shuffled with (seed, class index)
//            and cut at round(n * train) and round(n * (train + val)); the rest is test
//
// DIR may be the image folder (.png .tif .tiff .npy .jpg .jpeg) or the feature cache
// (.safetensors). Files directly in DIR are not in a class and are skipped (counted).
#ifndef SD_TRAIN_CLASS_FOLDERS_H
#define SD_TRAIN_CLASS_FOLDERS_H

#include <stdint.h>

typedef struct {
    int num_classes, count;
    int split_count[3];  // train, val, test
    int skipped_root;    // files directly in DIR
} ClassFolderSummary;

// Writes the labels CSV (docs/labels-format.md: "# classes:" line, image,split,label rows)
// to out_csv atomically. frac: train, val, test fractions, each in [0, 1], summing to 1.
// `command` (may be NULL) is recorded in a comment line.
int labels_from_folders(const char *dir, const double frac[3], uint64_t seed, const char *out_csv,
                        const char *command, ClassFolderSummary *summary);

#endif
