// Golden handler for module "unet": diffusers UNet2DConditionModel (and SatUNet with metadata).
// Inputs: input.sample (B,C,h,w), input.timestep (B) (or one value for the batch),
// input.encoder_hidden_states (B,L,D), input.metadata (B,M) when the model has metadata embeddings.
// Compares output.sample and every capture.<path> of the case (each path is requested from the forward).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/unet.h"

int golden_case_unet(GoldenCase *gc) {
    int rc = SD_FAIL;
    UNet unet;
    Tensor sample = {0}, timestep = {0}, context = {0}, metadata = {0};
    ModuleCaptures cap = {0};
    float *out = NULL, *t = NULL;
    int loaded = 0;

    // Pipeline files prefix the UNet's names with "unet.".
    const char *prefix = st_find(&gc->weights, "unet.conv_in.weight") ? "unet." : "";
    if (unet_load(&unet, gc->config, &gc->weights, prefix, -1)) goto done;
    loaded = 1;
    if (golden_load(gc, "input.sample", &sample) || golden_load(gc, "input.timestep", &timestep) ||
        golden_load(gc, "input.encoder_hidden_states", &context))
        goto done;
    if (golden_has(gc, "input.metadata") && golden_load(gc, "input.metadata", &metadata)) goto done;
    if (sample.ndim != 4 || sample.shape[1] != unet.in_channels) {
        sd_errorf("input.sample: expected (B, %d, h, w)", unet.in_channels);
        goto done;
    }
    const int B = sample.shape[0], h = sample.shape[2], w = sample.shape[3];
    if (context.ndim != 3 || context.shape[0] != B || context.shape[2] != unet.cross_attention_dim[0]) {
        sd_errorf("input.encoder_hidden_states: expected (%d, L, %d)", B, unet.cross_attention_dim[0]);
        goto done;
    }
    const int L = context.shape[1];
    // timesteps.expand(B): one value serves the whole batch.
    int64_t nt = tensor_numel(&timestep);
    if (nt != 1 && nt != B) {
        sd_errorf("input.timestep: %lld values for a batch of %d", (long long)nt, B);
        goto done;
    }
    t = (float *)malloc((size_t)B * sizeof(float));
    if (!t) goto done;
    for (int b = 0; b < B; b++) t[b] = timestep.data[nt == 1 ? 0 : b];
    if (unet.num_metadata > 0 &&
        (!metadata.data || tensor_numel(&metadata) != (int64_t)B * unet.num_metadata)) {
        sd_errorf("input.metadata: expected (%d, %d)", B, unet.num_metadata);
        goto done;
    }

    if (golden_captures_init(gc, &cap)) goto done;  // every capture.<path> of the case

    out = (float *)malloc((size_t)unet_output_floats(&unet, B, h, w) * sizeof(float));
    if (!out) goto done;
    if (unet_run(&unet, sample.data, B, h, w, t, context.data, L, unet.num_metadata ? metadata.data : NULL,
                 cap.count ? &cap : NULL, out))
        goto done;
    rc = 0;
    golden_check(gc, "output.sample", out, 4, (int[4]){B, unet.out_channels, h, w});
    golden_check_captures(gc, &cap);
done:
    captures_free(&cap);
    free(out);
    free(t);
    tensor_free(&sample);
    tensor_free(&timestep);
    tensor_free(&context);
    tensor_free(&metadata);
    if (loaded) unet_free(&unet);
    return rc;
}
