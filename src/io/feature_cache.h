// The feature cache: one safetensors file per image holding the UNet decoder
// feature pyramid at each saved inversion step, written once by
// `satdifuser extract` and read by training and evaluation.
//
// Tensors (float32, or float16 with --dtype f16):
//   feat.<i>.<s>   (1, C_s, H_s, W_s)  i: position in the save list (0 for 47 in 47,45,40),
//                                      s: scale, 0 at the largest width (as the golden "head" cases)
//   latent         (1, 4, h, w)        the clean latent z0 (VAE mean * scaling factor, or a sample)
// Metadata (__metadata__, every value a string; JSON where marked):
//   format "satdifuser-features/1", tool_version, model, prompt, num_inference_steps,
//   save_timesteps (JSON list of step indices, as the original names them), save_t (JSON list of
//   UNet timesteps), layers (JSON list of module paths, in concatenation order), feature_dims (JSON
//   object width -> [channels per layer], widths largest first, as collect_layer_dims), scales (JSON list of [H, W] per scale), latent ("mean" | "sample:<seed>"), dtype, convention,
//   output_handling, preprocessing (JSON object), source (the image path), source_shape (JSON [C, H, W]).
// A file is written to a temporary name and renamed, so it is either whole or absent.
#ifndef SD_FEATURE_CACHE_H
#define SD_FEATURE_CACHE_H

#include "core/tensor.h"
#include "io/safetensors.h"

#define FEATURE_CACHE_FORMAT "satdifuser-features/1"
#define FEATURE_CACHE_MAX_STEPS 16
#define FEATURE_CACHE_MAX_SCALES 8

// Key/value pairs of metadata (strings).
typedef struct {
    int count, capacity;
    char **keys, **values;
} FeatureMeta;

void feature_meta_init(FeatureMeta *m);
void feature_meta_free(FeatureMeta *m);
// Sets (or replaces) a key; the strings are copied. 0 or -1 (memory).
int feature_meta_set(FeatureMeta *m, const char *key, const char *value);
int feature_meta_setf(FeatureMeta *m, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *feature_meta_get(const FeatureMeta *m, const char *key);

// Writes path atomically. feats: n_steps * n_scales tensors, feats[i * n_scales + s];
// latent may be NULL. f16: store as float16. The metadata gets "format".
int feature_cache_write(const char *path, const Tensor *feats, int n_steps, int n_scales, const Tensor *latent,
                        int f16, const FeatureMeta *meta);

// Checks that an existing file is a whole feature file made with the same
// settings: it opens (header, offsets), has format FEATURE_CACHE_FORMAT, every
// key of `expect` has the same value, and every feat.<i>.<s> of the metadata's
// save_timesteps x scales is present with the shape the metadata gives.
// Returns 0 when valid, -1 with a message naming the file and what is wrong.
int feature_cache_validate(const char *path, const FeatureMeta *expect);

// A feature file opened for reading (what training and evaluation use).
typedef struct {
    SafeTensors st;
    int n_steps, n_scales;
    int save_steps[FEATURE_CACHE_MAX_STEPS];
    int scale_h[FEATURE_CACHE_MAX_SCALES], scale_w[FEATURE_CACHE_MAX_SCALES];
    int scale_c[FEATURE_CACHE_MAX_SCALES];  // channels per scale (sum of feature_dims[width])
} FeatureFile;

int feature_file_open(FeatureFile *f, const char *path);
void feature_file_close(FeatureFile *f);
// feat.<i>.<s> as float32 (1, C, H, W); converts f16 (then out owns its data).
int feature_file_load(const FeatureFile *f, int step, int scale, Tensor *out);
// A metadata value of the file, or NULL.
const char *feature_file_meta(const FeatureFile *f, const char *key);

#endif
