// Converting a single-file Stable Diffusion checkpoint in the original LDM/CompVis layout (SD 1.x /
// 2.x, e.g. v2-1_512-ema-pruned.safetensors or a PyTorch .ckpt) into a diffusers pipeline folder that
// diffusion_model_load reads: the library part of `satdifuser convert` (src/cli/cmd_convert.c parses
// the arguments and prints). Where each tensor goes is ldm_plan.h; docs/convert.md has the tables.
//
//   ConvertOptions o;  convert_options_default(&o);  o.from = "sd21.safetensors"; o.out = "sd21/";
//   ConvertJob j;      convert_open(&j, &o);    // the checkpoint read and planned, configs checked
//                      convert_write(&j, &o);   // OUT written whole (or not at all), loaded back
//                      convert_close(&j);
#ifndef SD_CONVERT_H
#define SD_CONVERT_H

#include "convert/ldm_plan.h"
#include "io/json.h"
#include "io/safetensors.h"

#define CONVERT_PATH_LEN 4096

typedef enum { CONVERT_DTYPE_KEEP, CONVERT_DTYPE_F32, CONVERT_DTYPE_F16 } ConvertDtype;

typedef struct {
    const char *from;         // the checkpoint: .safetensors, or a PyTorch .ckpt / .pt / .pth / .bin
    const char *key;          // NULL, or the entry of a PyTorch checkpoint that holds the weights
    const char *out;          // the folder to write (an existing one is replaced)
    const char *config_from;  // NULL, or a diffusers folder whose configs (and tokenizer/) are taken,
                              // checked against the tensor shapes; else configs from the shapes
    const char *tokenizer;    // NULL, or a folder with vocab.json and merges.txt to copy
    const char *prediction;   // "epsilon" (default) or "v_prediction" (scheduler config)
    ConvertDtype dtype;       // the weights' dtype (default: as stored; bf16/f64 as f32)
    int ema;                  // convert the UNet's EMA copies (model_ema.*)
    int verify;               // load the folder back before renaming it into place (default 1)
    int image_size;           // the training resolution, for sample_size (default 512)
    void (*on_tensor)(void *ctx);   // after each tensor written; may be NULL
    int (*should_stop)(void *ctx);  // non-zero stops the conversion (nothing left behind); may be NULL
    void *ctx;
} ConvertOptions;

typedef struct {
    char out[CONVERT_PATH_LEN];  // o->out without trailing slashes
    SafeTensors st;
    int st_opened;
    LdmPlan plan;                // plan.layout: what the checkpoint is; plan.skipped: what is not converted
    LdmShapes shapes;
    JsonValue cfg[LDM_PARTS + 2];  // --config-from: unet, vae, text_encoder, scheduler, model_index
    int have[LDM_PARTS + 2];
    char cfg_path[LDM_PARTS + 2][CONVERT_PATH_LEN];
    int train_steps;             // the schedule of the checkpoint's betas (SD's when it has none)
    double beta_start, beta_end;
    double betas_error;          // their largest relative deviation from scaled_linear (> 1e-4: check it)
    int tokenizer_complete;      // vocab.json and merges.txt were copied (else OUT/tokenizer needs them)
    int stopped;                 // should_stop ended convert_write
} ConvertJob;

void convert_options_default(ConvertOptions *o);
// Opens and plans the checkpoint, reads and checks --config-from's configs. Errors name the file.
int convert_open(ConvertJob *j, const ConvertOptions *o);
// Writes OUT.tmp.<pid>, loads it back (o->verify) and renames it to OUT: OUT appears whole or not at
// all, and a failed or stopped conversion leaves no temporary folder.
int convert_write(ConvertJob *j, const ConvertOptions *o);
void convert_close(ConvertJob *j);

// The tensors of any checkpoint (key: only those under one entry, named relative to it) written as
// one safetensors file, dtypes and bytes unchanged; *count: the number of tensors.
int convert_tensors_file(const char *from, const char *key, const char *out, int *count);

#endif
