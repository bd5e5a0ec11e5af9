// An extraction job around the model: what `satdifuser extract` runs for a folder of images and what
// any program that extracts a folder needs, as plain calls. The model's part (image -> features) is
// features.h; this file holds the rest:
//   - the inputs: an image, a folder (recursive), a text list of images or a GEO-Bench task folder
//     -> (path, name) pairs sorted by name, where OUT/<name>.safetensors is the image's feature file;
//     two images of one name, or an image named as the folder's prompt embedding, are refused;
//   - the job's settings as the metadata every feature file records (the job's fingerprint: model
//     fingerprint, prompt, steps, save steps, layers, latent, dtype, preprocessing ...) and the
//     per-file record (pyramid layout, source, scaling), and the writer of one file;
//   - resume: the state of a target (done: whole and made with these settings; missing; half-written:
//     only a <target>.tmp.<pid>; made otherwise or broken), the clean-up of a killed run's temporary
//     files, and the prompt embedding kept beside the features.
// Nothing here prints or reads the environment: errors are values (sd_errorf, sd_last_error()) and
// states are returned; the command (src/cli/cmd_extract.c, extract_check.c) prints.
#ifndef SD_MODELS_EXTRACT_JOB_H
#define SD_MODELS_EXTRACT_JOB_H

#include <stddef.h>

#include "io/feature_cache.h"
#include "models/features.h"

// The prompt embedding a feature folder keeps: OUT/.prompt_embedding.safetensors. No image takes that
// name (extract_inputs_collect refuses an input of that stem; folder scans skip hidden files); caches
// made before keep text_embedding.safetensors, which an image named text_embedding.png hit.
#define PROMPT_EMBEDDING_NAME ".prompt_embedding"

// ---- inputs ------------------------------------------------------------------------------------

typedef struct {
    char *path;  // the image file (or GEO-Bench sample .hdf5) as it is opened
    char *name;  // its feature file's stem below the output folder ("Forest/Forest_1")
} ExtractItem;

typedef struct {
    ExtractItem *items;
    int n, cap;
} ExtractInputs;

// The images of `input`, sorted by name (strcmp), into an empty list:
//   - a GEO-Bench task folder (default_partition.json or partition given): every sample of the
//     partition (NAME_partition.json), <input>/<sample>.hdf5 named <sample>;
//   - a folder: every .png .tif .tiff .npy .jpg .jpeg below it (any case; hidden files skipped),
//     named by its path relative to the folder without the extension;
//   - an image file (by its content, any name): named by its file name without the extension;
//   - a text file: a list of images, one per line ('#' starts a comment line, blank lines skipped),
//     relative paths relative to the list's folder, named by the path as written (a path leaving the
//     folder, absolute or with "..", by its file name).
// Errors: no images, two images of one name ("A and B would both be written as 'N.safetensors'"),
// an image named PROMPT_EMBEDDING_NAME, a binary file that is no image. -1 with the message; the
// list is then partly filled (extract_inputs_free it).
int extract_inputs_collect(const char *input, const char *partition, ExtractInputs *l);
void extract_inputs_free(ExtractInputs *l);
// 1 if the file name ends in an image extension a folder scan takes (.png .tif .tiff .npy .jpg .jpeg).
int extract_is_image_name(const char *name);
// The output name of a relative path: "a/b/c.png" -> "a/b/c"; a path that would leave the output
// folder (absolute, "../", "/../") keeps its last component only; leading "./" dropped. -1 when no
// name is left.
int extract_output_name(const char *rel, char *out, size_t size);
// OUT/<name>.safetensors; -1 when it does not fit in size.
int extract_target_path(const char *out_dir, const char *name, char *path, size_t size);

#endif
