// The feature pyramid of one image: the UNet decoder's module captures at each save step,
// grouped by spatial width (largest first) and concatenated on channels (block ascending;
// in a block all attn1, then all conv2), as SatDiFuser's collect_layers / collect_feats.
#ifndef SD_PYRAMID_H
#define SD_PYRAMID_H

#include "core/tensor.h"
#include "models/capture.h"
#include "models/ddim.h"
#include "models/unet.h"

#define PYRAMID_MAX_SCALES 8
#define PYRAMID_MAX_LAYERS 64

typedef struct {
    int n_steps;                  // save steps (o.walk.n_save)
    int save_index[DDIM_MAX_SAVE];
    int save_t[DDIM_MAX_SAVE];    // UNet timestep of each save
    int n_scales;
    int scale_h[PYRAMID_MAX_SCALES], scale_w[PYRAMID_MAX_SCALES], scale_c[PYRAMID_MAX_SCALES];
    int n_layers;
    char *layer_path[PYRAMID_MAX_LAYERS];   // in concatenation order within each scale
    int layer_scale[PYRAMID_MAX_LAYERS];
    int layer_channels[PYRAMID_MAX_LAYERS];
    Tensor *feats;                // n_steps * n_scales, (1, C_s, H_s, W_s)
    Tensor latent;                // (1, 4, h, w) z0
    Tensor *noisy_latents;        // optional history: latent after each walking call (NULL unless asked)
    int n_noisy;
} FeaturePyramid;

void feature_pyramid_free(FeaturePyramid *p);

// The layout (layers -> scales, channels, sizes) from the first set of captures of an (h, w) latent:
// p->n_layers, layer_*, n_scales, scale_*.
int pyramid_layout(const UNet *u, const ModuleCaptures *cap, int h, int w, FeaturePyramid *p);
// dst's layout := src's (the paths copied).
int pyramid_copy_layout(FeaturePyramid *dst, const FeaturePyramid *src);
// One save step's captures of batch element b (captures made at batch B) into its scales:
// p->feats[slot * n_scales + s] (1, C_s, H_s, W_s), allocated here.
int pyramid_fill(FeaturePyramid *p, const ModuleCaptures *cap, int slot, int b);

#endif
