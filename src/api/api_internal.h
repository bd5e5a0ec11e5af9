// What the library face's files (src/api/) share: the structs behind satdifuser.h's handles and the
// entry/exit of a call (the calling thread's settings from the context, then its own back).
#ifndef SD_API_INTERNAL_H
#define SD_API_INTERNAL_H

#include <stdint.h>

#include "heads/head.h"
#include "io/json.h"
#include "models/features.h"
#include "models/nn.h"
#include "satdifuser.h"

struct SdfContext {
    SdfOptions opts;  // checked by sdf_context_new; only read afterwards
};

struct SdfModel {
    DiffusionModel m;
    int loaded;
    char *path, *unet_dir;
    uint64_t fingerprint;  // diffusion_model_fingerprint: recorded in saved feature files
    int precision;         // loaded in this precision (SDF_* = NN_*)
};

struct SdfFeatures {
    FeaturePyramid p;
    int have_p;
    SdfExtractOptions opts;  // as used; prompt and layers point into this struct
    char *prompt, *model_path;
    char layers[256];
    uint64_t fingerprint;
    int precision;           // the model's (SDF_* = NN_*)
    int src_h, src_w;        // the image as given (a segmentation head's map has this size)
};

struct SdfHead {
    char *run, *weights;
    HeadConfig hc;           // from RUN/head_config.json (output size of the training masks)
    HeadModel m;
    int ready, model_h, model_w;  // m built for a map of model_h x model_w (segmentation)
    JsonValue names;         // RUN/classes.json, or empty
    JsonValue meta;          // RUN/features_meta.json, or empty
    char number[16];         // sdf_head_class_name's text for a class without a name
    char *prompt, *layers;   // sdf_head_extract_options' strings
    // MoE: each scale's call counter after load (RUN/moe_counter.json, else the config's), put back
    // before every prediction so that the gates do not drift with the number of images predicted
    int n_moe;
    int64_t moe_steps[FUSION_MAX_SCALES];
};

typedef struct {
    int threads, precision, isa;
} ApiSaved;

// Sets the calling thread's threads, precision and ISA path from ctx and clears its message;
// api_leave puts the thread's own back.
void api_enter(const SdfContext *ctx, ApiSaved *saved);
void api_leave(const ApiSaved *saved);
// Records fmt (one %s: what) as the message; SDF_ERR_ARGUMENT.
SdfStatus api_arg(const char *fmt, const char *what);
void api_notice(const SdfContext *ctx, const char *message);
char *api_strdup(const char *s);

#endif
