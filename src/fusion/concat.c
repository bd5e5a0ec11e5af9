// Concatenation baseline (the paper's Table 3; not in the released code):
// per scale, the features of every timestep (descending order) concatenated on
// channels, then one 1x1 convolution with bias to projection_dim:
//
//   fused[s] = conv1x1(cat_ts x[ts][s])          (B, T * C_s, H, W) -> (B, P, H, W)
//
// Parameters: "proj_convs.<s>.weight" (P, T * C_s, 1, 1), "proj_convs.<s>.bias" (P).
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"

int concat_init(ConcatFuser *c, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    memset(c, 0, sizeof(*c));
    for (int s = 0; s < fl->num_scales; s++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "proj_convs.%d", s);
        if (conv_layer_init(&c->proj[s], ps, prefix, fl->num_timesteps * fl->scale_channels[s], cfg->projection_dim,
                            1, 0, 1))
            return SD_FAIL;
    }
    return 0;
}

int concat_forward(ConcatFuser *c, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, Arena *scratch) {
    int T = fl->num_timesteps, B = in->B;
    for (int s = 0; s < fl->num_scales; s++) {
        int H = in->H[s], W = in->W[s], Cs = fl->scale_channels[s];
        float *cat = fbuf(&c->input[s], (size_t)B * T * Cs * H * W);
        if (!cat) return SD_FAIL;
        for (int k = 0; k < T; k++) paste_channels(cat, in->feat[fl->ts_input[k]][s], B, T * Cs, k * Cs, Cs, H * W);
        if (conv_layer_forward(&c->proj[s], cat, B, H, W, fused[s].data, scratch)) return SD_FAIL;
    }
    return 0;
}

void concat_free(ConcatFuser *c) {
    for (int s = 0; s < FUSION_MAX_SCALES; s++) fbuf_free(&c->input[s]);
}
