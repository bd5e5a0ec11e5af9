// A diffusers pipeline loaded as one bundle: the UNet, the VAE encoder, the text encoder and
// tokenizer, the DDIM scheduler, and the prompt embedding cached. From a pipeline folder
// (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a packed model
// file (models/pack.h). features.h runs the extraction with it.
//
//   DiffusionModel m;  diffusion_model_load(&m, "pipeline_dir", NULL, 0, "A satellite image");
//   const float *text; diffusion_model_prompt(&m, "A satellite image", &text);   // (1, m.L, m.D)
//   diffusion_model_free(&m);
#ifndef SD_PIPELINE_H
#define SD_PIPELINE_H

#include <stdint.h>

#include "io/safetensors.h"
#include "models/bpe.h"
#include "models/clip.h"
#include "models/ddim.h"
#include "models/unet.h"
#include "models/vae.h"

// A diffusers pipeline folder: model_index.json, unet/, vae/, text_encoder/,
// tokenizer/, scheduler/ (each with its config and weights: safetensors or PyTorch .bin,
// f32, f16 or bf16).
typedef struct {
    char *dir;
    SafeTensors unet_st, vae_st, text_st;  // must outlive the models (f32 weights are views)
    UNet unet;
    VaeEncoder vae;
    ClipTextModel text;        // loaded while needed (see release_text)
    ClipTextConfig text_config;
    ClipTokenizer tokenizer;
    int max_length;            // tokenizer model_max_length (77)
    DdimScheduler scheduler;
    JsonValue scheduler_config;
    // The prompt embedding, computed once per prompt.
    char *cached_prompt;
    float *cached_embedding;   // (1, L, D)
    int L, D;
    int loaded_unet, loaded_vae, loaded_text, loaded_tok, loaded_sched;
    int release_text;          // 1: the text encoder is freed once a prompt is embedded (reloaded for another)
    // A packed model file (models/pack.h) instead of a folder: every part's weights are in pack_st.
    int is_pack;
    SafeTensors pack_st;
    int pack_repacked;         // weights read back from another kernel set's layout and packed again
} DiffusionModel;

// Loads every part; a missing or broken part is an error naming the file. dir may also be a
// packed model file (models/pack.h: `satdifuser pack`), loaded by mapping it. Each component
// folder may hold safetensors, PyTorch .bin or sharded (*.index.json) weights.
// unet_dir: the UNet's folder when it is not dir/unet (DiffusionSat's release keeps it in
// ROOT/checkpoint-150000/unet), or NULL.
// use_metadata: as unet_load (-1 follows the config; SatDiFuser uses 0).
// prompt: when not NULL, the text encoder is loaded first, this prompt embedded (cached) and the
// text encoder freed before the UNet and VAE are loaded: it is needed once per prompt, and the
// SD 2.1 text encoder is 1.36 GB in f32. A later call with another prompt loads it again.
int diffusion_model_load(DiffusionModel *m, const char *dir, const char *unet_dir, int use_metadata, const char *prompt);
// A hash of the model's configs, tokenizer and weight files (sizes and first / last bytes): two
// checkpoints of one architecture get different ones. Feature files record it; a packed model file
// (models/pack.h) records the one of the folder it was packed from, so its features match that folder's.
uint64_t diffusion_model_fingerprint(const char *dir, const char *unet_dir);
// m->scheduler from m->scheduler_config (already parsed); source names it in messages. Sets loaded_sched.
int diffusion_model_init_scheduler(DiffusionModel *m, const char *source);
// The weight file names a component folder may hold, in order of preference
// (NULL-terminated): the UNet's and VAE's (text_encoder 0) or the text encoder's (1).
const char *const *diffusion_weight_file_names(int text_encoder);
void diffusion_model_free(DiffusionModel *m);

// The prompt embedding text_encoder(tokenizer(prompt, padding="max_length",
// truncation=True))[0] (1, L, D), cached: the pointer stays valid until the
// next call with another prompt or diffusion_model_free.
int diffusion_model_prompt(DiffusionModel *m, const char *prompt, const float **embedding);

#endif
