// Golden handler for module "resize": torchvision Resize(size, bilinear,
// antialias) on input.image (C,H,W) or (N,C,H,W). config.size is an int (the
// shorter side) or [H, W]; config.antialias (default true).
#include "core/error.h"
#include "golden/golden.h"
#include "kernels/kernels.h"
#include "models/preprocess.h"

int golden_case_resize(GoldenCase *gc) {
    Tensor x;
    if (golden_load(gc, "input.image", &x)) return -1;
    int rc = -1;
    Tensor y = {0};
    int antialias = 1;
    if (x.ndim != 3 && x.ndim != 4) {
        sd_errorf("%s: input.image has %d dims, expected 3 or 4", gc->dir, x.ndim);
        goto done;
    }
    if (json_get_bool(gc->config, "antialias", 1, &antialias)) goto done;
    int N = x.ndim == 4 ? x.shape[0] : 1, off = x.ndim == 4 ? 1 : 0;
    int C = x.shape[off], H = x.shape[off + 1], W = x.shape[off + 2], Ho, Wo;
    const JsonValue *size = json_get(gc->config, "size");
    if (size && size->type == JSON_NUMBER) {
        preprocess_resize_shape(H, W, (int)size->number, &Ho, &Wo);
    } else if (size && size->type == JSON_ARRAY && size->count == 2) {
        Ho = (int)size->items[0].number;
        Wo = (int)size->items[1].number;
    } else {
        sd_errorf("%s: config.size must be an int or [H, W]", gc->dir);
        goto done;
    }
    int shape[4] = {N, C, Ho, Wo};
    if (x.ndim == 3) shape[0] = C, shape[1] = Ho, shape[2] = Wo;
    if (tensor_alloc(&y, x.ndim, shape, "resize output")) goto done;
    if (antialias) {
        if (resize_bilinear_antialias(x.data, y.data, N, C, H, W, Ho, Wo)) goto done;
    } else {
        resize_bilinear(x.data, y.data, N, C, H, W, Ho, Wo, 0);
    }
    golden_check_tensor(gc, "output.image", &y);
    rc = 0;
done:
    tensor_free(&x);
    tensor_free(&y);
    return rc;
}
