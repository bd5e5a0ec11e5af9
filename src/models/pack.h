// A packed model file (.sdpack): the whole pipeline of a diffusers folder in one file whose
// linear and conv weights are already in the GEMM micro-kernel's panel layout, so that loading
// is mapping the file: no conversion, no packing, and the pages are shared by every process on
// the machine (the page cache holds the weights once).
//
// The container is a safetensors file (`satdifuser info` reads it):
//   unet.<name>, vae.<name>, text_encoder.<name>   every tensor a loader reads as stored (F32):
//                                                    biases, norms, embeddings
//   <component>.<name>.weight.packed               a linear or conv weight in panels (F32, the
//                                                    data starts at a multiple of 64 bytes);
//                                                    ".packed.0" / ".packed.1": the two halves of
//                                                    a GEGLU projection
//   pack.pad.<i>                                   U8 padding before a packed weight (alignment)
//   metadata: pack.format "satdifuser-pack/1", pack.isa / pack.mr / pack.nr / pack.kc (the kernel
//     set whose layout the panels have), pack.precision "f32" or "f16" (the panels in F16: the
//     precision f16, nn.h), pack.source (the folder),
//     pack.source_fingerprint (diffusion_model_fingerprint of the folder: features from the pack
//     are recorded as made by the folder's model), config.unet / config.vae / config.text_encoder
//     / config.scheduler / model_index (the JSON files), tokenizer/<file> (vocab.json, merges.txt,
//     special_tokens_map.json, tokenizer_config.json).
// A file packed for another kernel set still loads: its panels are read back and packed for the
// kernel set in use (DiffusionModel.pack_repacked counts them; slower to load, same features).
// Precision: f32 panels serve every precision (rounded to f16 or bf16 at load, counted in
// pack_repacked); f16 panels serve only the precision f16 (used in place), anything else is an
// error naming the file (the weights are rounded already: an f32 run on them would not be f32).
#ifndef SD_MODELS_PACK_H
#define SD_MODELS_PACK_H

#include <stdint.h>

#include "models/pipeline.h"

#define PACK_FORMAT "satdifuser-pack/1"

// Writes the packed file of the model folder dir (unet_dir as diffusion_model_load) for the
// kernel set in use (gemm_force_isa before, to pack for another). Written to a temporary file
// renamed into place: a stopped run leaves no half file. summary (may be NULL) gets one line.
int model_pack_write(const char *dir, const char *unet_dir, const char *out_path, char *summary, int summary_size);

// 1 if path is a regular file (the loaders then take it as a packed model file).
int model_pack_path_is_file(const char *path);
// Loads a packed model file into m (as diffusion_model_load does a folder).
int model_pack_load(DiffusionModel *m, const char *path, int use_metadata, const char *prompt);
// The text encoder of a packed m (config and weights), for a prompt after it was released.
int model_pack_load_text_encoder(DiffusionModel *m);
// The notice for a packed m whose panels were not used as they are (m->pack_repacked > 0): f32
// panels rounded at load for another precision, or panels of another kernel set packed again.
// buf gets "" when nothing was repacked.
void model_pack_note(const DiffusionModel *m, char *buf, int size);
// The source folder's fingerprint recorded in the file (0 if unreadable).
uint64_t model_pack_fingerprint(const char *path);

#endif
