// Single-feature baseline (the paper's Table 3; not in the released code):
// per scale, one stream at one timestep through its own Phi:
//
//   fused[s] = Phi_s(x[t][s][:, channels of stream l_s])
//
// l_s = single_stream, clamped to the scale's stream count; t = single_timestep
// (default: the largest saved timestep, the first the other fusers visit).
// Parameters: "bottleneck_layers.<s>.<block>...", one Phi per scale.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fusion/fuser.h"
#include "kernels/kernels.h"

int single_init(SingleFuser *g, const FeatureLayout *fl, const FuserConfig *cfg, ParamSet *ps) {
    memset(g, 0, sizeof(*g));
    g->input_pos = fl->ts_input[0];
    if (cfg->single_timestep >= 0) {
        g->input_pos = -1;
        for (int i = 0; i < fl->num_timesteps; i++)
            if (fl->timesteps[i] == cfg->single_timestep) g->input_pos = i;
        if (g->input_pos < 0) return sd_errorf("single_timestep %d is not one of save_timesteps", cfg->single_timestep);
    }
    if (cfg->single_stream < 0) return sd_errorf("single_stream %d", cfg->single_stream);
    for (int s = 0; s < fl->num_scales; s++) {
        int l = cfg->single_stream < fl->num_streams[s] ? cfg->single_stream : fl->num_streams[s] - 1;
        g->stream[s] = l;
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "bottleneck_layers.%d", s);
        if (phi_init(&g->phis[s], ps, prefix, fl->channels[s][l], cfg->projection_dim, cfg->num_res_blocks,
                     cfg->num_norm_groups))
            return SD_FAIL;
    }
    return 0;
}

int single_forward(SingleFuser *g, const FeatureLayout *fl, const FusionInput *in, FBuf *fused, int training) {
    for (int s = 0; s < fl->num_scales; s++) {
        int H = in->H[s], W = in->W[s], l = g->stream[s], c = fl->channels[s][l], c0 = 0;
        for (int i = 0; i < l; i++) c0 += fl->channels[s][i];
        float *xs = fbuf(&g->inputs[s], (size_t)in->B * c * H * W);
        if (!xs) return SD_FAIL;
        copy_channels(xs, in->feat[g->input_pos][s], in->B, fl->scale_channels[s], c0, c, H * W);
        if (phi_forward(&g->phis[s], &g->caches[s], xs, in->B, H, W, fused[s].data, training)) return SD_FAIL;
    }
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
// Single-feature baseline: fused[s] = Phi_s(x[t][s][:, stream channels]).

int single_backward(SingleFuser *g, const FeatureLayout *fl, int B, const int *H, const int *W,
                    const float *const *dfused, const FBuf *fused, FusionGrad *dfeat) {
    for (int s = 0; s < fl->num_scales; s++) {
        const int HW = H[s] * W[s], l = g->stream[s], c = fl->channels[s][l];
        int c0 = 0;
        for (int i = 0; i < l; i++) c0 += fl->channels[s][i];
        float *dx_all = dfeat ? dfeat->feat[g->input_pos][s] : NULL;
        float *dxs = dx_all ? zalloc_floats((size_t)B * c * HW) : NULL;
        if (dx_all && !dxs) return SD_FAIL;
        int r = phi_backward(&g->phis[s], &g->caches[s], fused[s].data, dfused[s], dxs);
        if (!r && dxs) copy_channels_backward(dx_all, dxs, B, fl->scale_channels[s], c0, c, HW);
        free(dxs);
        if (r) return SD_FAIL;
    }
    return 0;
}

void single_free(SingleFuser *g) {
    for (int s = 0; s < FUSION_MAX_SCALES; s++) {
        fbuf_free(&g->inputs[s]);
        phi_cache_free(&g->caches[s]);
    }
}
