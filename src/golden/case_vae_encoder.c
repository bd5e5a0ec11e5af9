// Golden handler for module "vae_encoder": diffusers AutoencoderKL encoder + quant_conv.
// Input: input.image (B,3,H,W). Compares output.latent_mean (the posterior mean, unscaled),
// output.latent_logvar when present (clamped to [-30, 20]) and every capture.<path> of the case.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/vae.h"

int golden_case_vae_encoder(GoldenCase *gc) {
    int rc = SD_FAIL;
    VaeEncoder vae;
    Tensor image = {0};
    ModuleCaptures cap = {0};
    float *mean = NULL, *logvar = NULL;
    int loaded = 0;

    const char *prefix = st_find(&gc->weights, "vae.encoder.conv_in.weight") ? "vae." : "";
    if (vae_encoder_load(&vae, gc->config, &gc->weights, prefix)) goto done;
    loaded = 1;
    if (golden_load(gc, "input.image", &image)) goto done;
    if (image.ndim != 4 || image.shape[1] != vae.in_channels) {
        sd_errorf("input.image: expected (B, %d, H, W)", vae.in_channels);
        goto done;
    }
    const int B = image.shape[0], H = image.shape[2], W = image.shape[3];
    int h, w;
    vae_latent_size(&vae, H, W, &h, &w);
    const int64_t n = (int64_t)B * vae.latent_channels * h * w;

    if (golden_captures_init(gc, &cap)) goto done;

    mean = (float *)malloc((size_t)n * sizeof(float));
    logvar = (float *)malloc((size_t)n * sizeof(float));
    if (!mean || !logvar) {
        sd_errorf("out of memory");
        goto done;
    }
    if (vae_encode_run(&vae, image.data, B, H, W, mean, logvar, cap.count ? &cap : NULL)) goto done;
    rc = 0;
    const int shape[4] = {B, vae.latent_channels, h, w};
    golden_check(gc, "output.latent_mean", mean, 4, shape);
    if (golden_has(gc, "output.latent_logvar")) golden_check(gc, "output.latent_logvar", logvar, 4, shape);
    golden_check_captures(gc, &cap);
done:
    captures_free(&cap);
    free(mean);
    free(logvar);
    tensor_free(&image);
    if (loaded) vae_encoder_free(&vae);
    return rc;
}
