// Resizing and pooling with PyTorch's index conventions.
#include "kernels/kernels.h"

// Source coordinate of output index i, as ATen's area_pixel_compute_source_index.
static float source_index(int i, int in, int out, int align_corners) {
    if (align_corners) return out > 1 ? (float)i * (float)(in - 1) / (float)(out - 1) : 0.0f;
    float s = ((float)i + 0.5f) * ((float)in / (float)out) - 0.5f;
    return s < 0.0f ? 0.0f : s;
}

void resize_bilinear(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo, int align_corners) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                float sh = source_index(oh, H, Ho, align_corners);
                int h0 = (int)sh;
                int h1 = h0 + (h0 < H - 1 ? 1 : 0);
                float lh = sh - (float)h0;
                for (int ow = 0; ow < Wo; ow++) {
                    float sw = source_index(ow, W, Wo, align_corners);
                    int w0 = (int)sw;
                    int w1 = w0 + (w0 < W - 1 ? 1 : 0);
                    float lw = sw - (float)w0;
                    o[oh * Wo + ow] = (1.0f - lh) * ((1.0f - lw) * in[h0 * W + w0] + lw * in[h0 * W + w1]) +
                                      lh * ((1.0f - lw) * in[h1 * W + w0] + lw * in[h1 * W + w1]);
                }
            }
        }
    }
}

void upsample_nearest2x(const float *x, float *y, int N, int C, int H, int W) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * 4 * H * W;
            for (int oh = 0; oh < 2 * H; oh++)
                for (int ow = 0; ow < 2 * W; ow++) o[oh * 2 * W + ow] = in[(oh / 2) * W + ow / 2];
        }
    }
}

void adaptive_avg_pool2d(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0 = (oh * H) / Ho, h1 = ((oh + 1) * H + Ho - 1) / Ho;
                for (int ow = 0; ow < Wo; ow++) {
                    int w0 = (ow * W) / Wo, w1 = ((ow + 1) * W + Wo - 1) / Wo;
                    float sum = 0.0f;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) sum += in[h * W + w];
                    o[oh * Wo + ow] = sum / (float)((h1 - h0) * (w1 - w0));
                }
            }
        }
    }
}
