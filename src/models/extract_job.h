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
//     folder, absolute or with "..", by its file name). A line that is neither an existing file nor
//     a path with an image extension is an error naming the list and the line (a text file that is
//     not a list of images, e.g. a README, is said to be one at its first such line).
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

// ---- the job's settings: what every feature file records ---------------------------------------

typedef struct {
    const char *model;           // the model's path as given ("model" metadata; fingerprinted with unet)
    const char *unet;            // the UNet folder when not MODEL/unet, else NULL
    const ExtractOptions *o;     // prompt, steps, save steps, layer suffixes, latent, output handling
    const DdimWalk *walk;        // the planned walk (its save_t)
    int f16;                     // the features stored as float16
    int precision;               // NN_F32, NN_BF16 or NN_F16 ("compute_precision": "bf16" / "f16"; absent for f32)
    const char *preprocessing;   // the "preprocessing" JSON object, as the caller's options give it
    const char *tool_version;    // "tool_version" of each file
} ExtractJob;

// The settings every file of the job records and a rerun must match (feature_cache_validate's
// `expect`): model_fingerprint, prompt, num_inference_steps, save_timesteps, save_t, layer_suffixes,
// latent, dtype, compute_precision (bf16, f16 only), convention, output_handling, preprocessing.
int extract_job_meta(const ExtractJob *job, FeatureMeta *meta);

// What one image's file records besides the job's settings.
typedef struct {
    const char *path;               // "source"
    int channels, height, width;    // "source_shape": the image as read
    int bands[3];                   // "bands_used" (1-based)
    const char *scaling;            // "scaling": what the scale mode did to each band (JSON)
} ExtractSource;

// The per-file keys: feature_dims, scales, layers (the pyramid's layout), source, source_shape,
// bands_used, scaling, tool_version.
int extract_file_meta(const FeaturePyramid *p, const ExtractSource *src, const char *tool_version, FeatureMeta *meta);
// Writes one image's feature file at target (atomically: a temporary file renamed): the job's
// settings (`expect`, extract_job_meta), the per-file keys and "model".
int extract_write_features(const char *target, const FeaturePyramid *p, const ExtractJob *job,
                           const FeatureMeta *expect, const ExtractSource *src);

// ---- resume --------------------------------------------------------------------------------------

typedef enum {
    EXTRACT_FILE_MISSING = 0,  // nothing there: to extract
    EXTRACT_FILE_DONE,         // whole and made with the settings of `expect`: skipped on a rerun
    EXTRACT_FILE_PARTIAL,      // only a <target>.tmp.<pid> of a stopped or running writer
    EXTRACT_FILE_OTHER,        // there, but made with other settings or broken (sd_last_error() says what)
} ExtractFileState;

// The state of target for a job whose files record `expect`. temp (size bytes) receives the
// temporary file's path for EXTRACT_FILE_PARTIAL and *writer_alive whether its writer runs; temp
// NULL: temporary files are not looked for (a missing target is EXTRACT_FILE_MISSING).
ExtractFileState extract_file_state(const char *target, const FeatureMeta *expect, char *temp, size_t size,
                                    int *writer_alive);
// Creates a folder and its parents (mkdir -p). Messages name the folder.
int extract_mkdirs(const char *path);
// Before writing target: creates its folder and removes the <target>.tmp.<pid> files of writers that
// are gone (a killed run's; a live writer's are kept).
int extract_prepare_target(const char *target);

// OUT/.prompt_embedding.safetensors: the prompt's embedding (1, L, D) for this model, computed once
// (diffusion_model_prompt's cache) and kept beside the features that used it, with the prompt, model
// fingerprint and model path as metadata. Left as it is when the folder already has it for this
// prompt and model (under the old name text_embedding.safetensors too).
int extract_keep_prompt_embedding(DiffusionModel *m, const ExtractJob *job, const char *out_dir);

#endif
