// Batched extraction (features_extract_batch, extract --batch): B images walked together give each
// image the bits of its own extraction (batch 1), at 1 and 2 threads, for the posterior mean and a
// sampled latent, on the bundled tiny pipeline (tests/data/tiny_pipeline). Every layer of the UNet and
// the VAE works per sample, and the GEMM sums each output over K in an order that does not depend on
// the number of rows, so no tolerance is needed; a difference of one bit fails.
#include "core/error.h"
#include "models/features.h"
#include "tests/test_util.h"

enum { B = 3, H = 64, W = 64 };

static int same_pyramid(const FeaturePyramid *a, const FeaturePyramid *b) {
    if (a->n_steps != b->n_steps || a->n_scales != b->n_scales) return 0;
    for (int i = 0; i < a->n_steps * a->n_scales; i++) {
        const Tensor *x = &a->feats[i], *y = &b->feats[i];
        if (tensor_numel(x) != tensor_numel(y) || memcmp(x->data, y->data, (size_t)tensor_numel(x) * sizeof(float))) return 0;
    }
    return memcmp(a->latent.data, b->latent.data, (size_t)tensor_numel(&a->latent) * sizeof(float)) == 0;
}

int main(void) {
    DiffusionModel m;
    if (diffusion_model_load(&m, "tests/data/tiny_pipeline", NULL, 0, "A satellite image")) {
        CHECK(0, "load: %s", sd_last_error());
        return test_report("test_extract_batch");
    }
    Tensor images, one;
    CHECK(tensor_alloc(&images, 4, (int[4]){B, 3, H, W}, "images") == 0, "alloc");
    CHECK(tensor_alloc(&one, 4, (int[4]){1, 3, H, W}, "image") == 0, "alloc");
    test_fill(images.data, B * 3 * H * W, 11);  // in [-1, 1]
    for (int sample = 0; sample < 2; sample++) {
        ExtractOptions o;
        extract_options_default(&o);
        o.latent_sample = sample;
        o.seed = 7;
        for (int threads = 1; threads <= 2; threads++) {
            set_threads(threads);
            FeaturePyramid alone[B], together[B];
            for (int b = 0; b < B; b++) {
                memcpy(one.data, images.data + (size_t)b * 3 * H * W, (size_t)3 * H * W * sizeof(float));
                CHECK(features_extract(&m, &o, &one, &alone[b]) == 0, "image %d alone: %s", b, sd_last_error());
            }
            CHECK(features_extract_batch(&m, &o, &images, together) == 0, "batch of %d: %s", B, sd_last_error());
            for (int b = 0; b < B; b++) {
                CHECK(same_pyramid(&alone[b], &together[b]), "image %d: batch-%d features differ from batch 1 (%s latent, %d threads)",
                      b, B, sample ? "sampled" : "mean", threads);
                feature_pyramid_free(&alone[b]);
                feature_pyramid_free(&together[b]);
            }
        }
    }
    // a batch of mixed sizes cannot be one tensor; a wrong channel count is an error
    Tensor bad;
    CHECK(tensor_alloc(&bad, 4, (int[4]){2, 4, H, W}, "bad") == 0, "alloc");
    FeaturePyramid p[2];
    CHECK(features_extract_batch(&m, &(ExtractOptions){0}, &bad, p) != 0, "4-channel images accepted");
    tensor_free(&bad);
    tensor_free(&images);
    tensor_free(&one);
    diffusion_model_free(&m);
    return test_report("test_extract_batch");
}
