// The linear classifier head. See linear.h.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "heads/linear.h"
#include "kernels/kernels.h"

int linear_head_init(LinearHead *h, ParamSet *ps, int in_features, int num_classes) {
    memset(h, 0, sizeof(*h));
    if (in_features < 1 || num_classes < 1)
        return sd_errorf("linear head: in_features %d, num_classes %d", in_features, num_classes);
    h->in_features = in_features;
    h->num_classes = num_classes;
    int wshape[2] = {num_classes, in_features};
    h->weight = params_add(ps, PARAM_WEIGHT, 0.0f, 2, wshape, "decoder_head.2.weight");
    h->bias = h->weight ? params_add(ps, PARAM_WEIGHT, 0.0f, 1, &num_classes, "decoder_head.2.bias") : NULL;
    return h->bias ? 0 : SD_FAIL;
}

int linear_head_forward(LinearHead *h, const FBuf *fused, int num_scales, int B, const int *H, const int *W) {
    int P = h->in_features, H0 = H[0], W0 = W[0], HW0 = H0 * W0;
    int64_t n = (int64_t)B * P * HW0;
    h->B = B;
    h->num_scales = num_scales;
    float *sum = fbuf(&h->sum, (size_t)n);
    float *pooled = fbuf(&h->pooled, (size_t)B * P);
    float *logits = fbuf(&h->logits, (size_t)B * h->num_classes);
    if (!sum || !pooled || !logits) return SD_FAIL;
    for (int s = 0; s < num_scales; s++) {
        h->H[s] = H[s];
        h->W[s] = W[s];
        const float *r = fused[s].data;
        if (H[s] != H0 || W[s] != W0) {
            float *rs = fbuf(&h->resized[s], (size_t)n);
            if (!rs) return SD_FAIL;
            resize_bilinear(fused[s].data, rs, B, P, H[s], W[s], H0, W0, 0);
            r = rs;
        }
        if (s == 0) memcpy(sum, r, (size_t)n * sizeof(float));  // sum() starts at 0: 0 + r_0 = r_0
        else add_inplace(sum, r, n);
    }
    adaptive_avg_pool2d(sum, pooled, B, P, H0, W0, 1, 1);
    linear_forward(pooled, h->weight->data, h->bias->data, logits, B, P, h->num_classes);
    return 0;
}

// ---- Backward ------------------------------------------------------------------------
// Linear classifier:  z = sum_s r_s (r_s = resize(fused[s]) to the largest scale),
// pooled = mean_HW z, logits = pooled W^T + b
//   dpooled, dW, db = linear'(dlogits);  dz = dpooled / HW0;  dfused[s] += resize'(dz) (or dz)

int linear_head_backward(LinearHead *h, const float *dlogits, float *const *dfused) {
    const int B = h->B, P = h->in_features, H0 = h->H[0], W0 = h->W[0], HW0 = H0 * W0;
    float *dpooled = zalloc_floats((size_t)B * P), *dsum = zalloc_floats((size_t)B * P * HW0);
    if (!dpooled || !dsum) { free(dpooled); free(dsum); return SD_FAIL; }
    linear_backward(dpooled, param_grad(h->weight), param_grad(h->bias), dlogits, h->pooled.data, h->weight->data, B, P,
                    h->num_classes);
    adaptive_avg_pool2d_backward(dsum, dpooled, B, P, H0, W0, 1, 1);
    for (int s = 0; s < h->num_scales; s++) {
        if (h->H[s] != H0 || h->W[s] != W0)
            resize_bilinear_backward(dfused[s], dsum, B, P, h->H[s], h->W[s], H0, W0, 0);
        else
            add_inplace(dfused[s], dsum, (int64_t)B * P * HW0);
    }
    free(dpooled);
    free(dsum);
    return 0;
}

void linear_head_free(LinearHead *h) {
    for (int s = 0; s < FUSION_MAX_SCALES; s++) fbuf_free(&h->resized[s]);
    fbuf_free(&h->sum);
    fbuf_free(&h->pooled);
    fbuf_free(&h->logits);
}
