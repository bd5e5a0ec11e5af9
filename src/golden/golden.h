// Golden cases: one module of this implementation run on the inputs and
// weights the original PyTorch module was run on, compared element-wise with
// its outputs: |got - want| <= atol + rtol * |want| (../shared/golden-format.md).
#ifndef SD_GOLDEN_H
#define SD_GOLDEN_H

#include "core/tensor.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/capture.h"

typedef struct {
    const char *dir;
    JsonValue root;           // case.json
    const JsonValue *config;  // root["config"]
    const char *module;
    double rtol, atol;
    SafeTensors weights;      // weights.safetensors
    SafeTensors tensors;      // tensors.safetensors
    unsigned char *checked;   // per entry of `tensors`: compared yet?
    int n_checked, n_failed;
    int verbose;
} GoldenCase;

// A handler's return value when the module is not implemented yet.
#define GOLDEN_NOT_IMPLEMENTED 1

typedef int (*GoldenHandler)(GoldenCase *gc);

// Path of a file inside the case folder (vocab.json, merges.txt).
const char *golden_path(const GoldenCase *gc, const char *file, char *buf, size_t size);
// Loads tensor `name` (e.g. "input.sample") of tensors.safetensors as float32.
int golden_load(GoldenCase *gc, const char *name, Tensor *out);
int golden_has(const GoldenCase *gc, const char *name);
// Compares got (float32, shape) with the expected tensor `name` ("output.sample",
// "capture.up_blocks.1.resnets.0"). Prints one line. A missing tensor or a shape
// mismatch is a failure. Returns 0 when within tolerance.
int golden_check(GoldenCase *gc, const char *name, const float *got, int ndim, const int *shape);
int golden_check_tensor(GoldenCase *gc, const char *name, const Tensor *got);
// One capture per capture.<path> tensor of the case (those named "...@t<T>", the captures of one
// timestep of a multi-timestep run, are not a module's), and their comparison after the forward.
int golden_captures_init(const GoldenCase *gc, ModuleCaptures *cap);
void golden_check_captures(GoldenCase *gc, const ModuleCaptures *cap);

// The handlers, one per module name (src/golden/case_<module>.c).
int golden_case_unet(GoldenCase *gc);
int golden_case_vae_encoder(GoldenCase *gc);
int golden_case_clip_text(GoldenCase *gc);
int golden_case_tokenizer(GoldenCase *gc);
int golden_case_ddim_schedule(GoldenCase *gc);
int golden_case_ddim_inversion(GoldenCase *gc);
int golden_case_extract(GoldenCase *gc);
int golden_case_resize(GoldenCase *gc);
int golden_case_head(GoldenCase *gc);
int golden_case_head_train(GoldenCase *gc);

typedef struct {
    int passed, failed, not_implemented;
} GoldenSummary;

// Runs every case found (recursively) under each of dirs. Prints per case and
// per tensor; fills the summary. Returns -1 only on a usage error.
int golden_run_dirs(const char *const *dirs, int n_dirs, int verbose, const char *only, GoldenSummary *sum);

#endif
