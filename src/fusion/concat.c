// Concatenation baseline (the paper's Table 3; not in the released code):
// per scale, the features of every timestep (descending order) concatenated on
// channels, then one 1x1 convolution with bias to projection_dim:
//
//   fused[s] = conv1x1(cat_ts x[ts][s])          (B, T * C_s, H, W) -> (B, P, H, W)
//
// Parameters: "proj_convs.<s>.weight" (P, T * C_s, 1, 1), "proj_convs.<s>.bias" (P).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"
#include "kernels/kernels.h"

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

int concat_forward(ConcatFuser *c, const FeatureLayout *fl, const FusionInput *in, FBuf *fused) {
    int T = fl->num_timesteps, B = in->B;
    for (int s = 0; s < fl->num_scales; s++) {
        int H = in->H[s], W = in->W[s], Cs = fl->scale_channels[s];
        float *cat = fbuf(&c->input[s], (size_t)B * T * Cs * H * W);
        if (!cat) return SD_FAIL;
        for (int k = 0; k < T; k++) paste_channels(cat, in->feat[fl->ts_input[k]][s], B, T * Cs, k * Cs, Cs, H * W);
        conv_layer_forward(&c->proj[s], cat, B, H, W, fused[s].data);
    }
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
// Concatenation baseline: fused[s] = conv1x1(cat_k x_k) + b; the input gradient splits by timestep.

int concat_backward(ConcatFuser *c, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, FusionGrad *dfeat) {
    const int T = fl->num_timesteps;
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s], Cs = fl->scale_channels[s];
        int want = 0;
        for (int k = 0; k < T; k++) want |= fusion_grad_at(dfeat, fl, k, s) != NULL;
        float *dcat = want ? zalloc_floats((size_t)B * T * Cs * HW) : NULL;
        if (want && !dcat) return SD_FAIL;
        ConvLayer *pc = &c->proj[s];
        if (conv2d_backward(dcat, param_grad(pc->weight), param_grad(pc->bias), dfused[s], c->input[s].data,
                            pc->weight->data, B, T * Cs, H[s], W[s], pc->cout, conv_geometry(1, 1, 0))) {
            free(dcat);
            return SD_FAIL;
        }
        for (int k = 0; dcat && k < T; k++) {
            float *dx = fusion_grad_at(dfeat, fl, k, s);
            if (dx) paste_channels_backward(dx, dcat, B, T * Cs, k * Cs, Cs, HW);
        }
        free(dcat);
    }
    return 0;
}

void concat_free(ConcatFuser *c) {
    for (int s = 0; s < FUSION_MAX_SCALES; s++) fbuf_free(&c->input[s]);
}
