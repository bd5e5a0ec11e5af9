// Resizing and pooling with PyTorch's index conventions.
#include "kernels/kernels.h"

// Source coordinate of output index i, as ATen's area_pixel_compute_source_index.
static float source_index(int i, int in, int out, int align_corners) {
    if (align_corners) return out > 1 ? (float)i * (float)(in - 1) / (float)(out - 1) : 0.0f;
    float s = ((float)i + 0.5f) * ((float)in / (float)out) - 0.5f;
    return s < 0.0f ? 0.0f : s;
}

// The two input indices i0 <= i1 output index i reads and the weight of i1 (1 - lambda for i0):
// shared by resize_bilinear and its backward, so the adjoint uses exactly the forward's weights.
static void bilinear_taps(int i, int in, int out, int align_corners, int *i0, int *i1, float *lambda) {
    float s = source_index(i, in, out, align_corners);
    *i0 = (int)s;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    *lambda = s - (float)*i0;
}

// The input window [*i0, *i1) that adaptive pooling averages for output index i, as ATen's
// start_index / end_index: i0 = floor(i * in / out), i1 = ceil((i + 1) * in / out). Shared by
// adaptive_avg_pool2d and its backward.
static void pool_window(int i, int in, int out, int *i0, int *i1) {
    *i0 = (i * in) / out;
    *i1 = ((i + 1) * in + out - 1) / out;
}

void resize_bilinear(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo, int align_corners) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0, h1;
                float lh;
                bilinear_taps(oh, H, Ho, align_corners, &h0, &h1, &lh);
                for (int ow = 0; ow < Wo; ow++) {
                    int w0, w1;
                    float lw;
                    bilinear_taps(ow, W, Wo, align_corners, &w0, &w1, &lw);
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

// y[n][c][oh][ow] = mean of x[n][c][h0:h1][w0:w1] over the pool_window of (oh, ow).
void adaptive_avg_pool2d(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float *in = x + ((int64_t)n * C + c) * H * W;
            float *o = y + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0, h1;
                pool_window(oh, H, Ho, &h0, &h1);
                for (int ow = 0; ow < Wo; ow++) {
                    int w0, w1;
                    pool_window(ow, W, Wo, &w0, &w1);
                    float sum = 0.0f;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) sum += in[h * W + w];
                    o[oh * Wo + ow] = sum / (float)((h1 - h0) * (w1 - w0));
                }
            }
        }
    }
}

// ---- Backward (training): the adjoints, accumulated (+=) --------------------------------------

// Each (n, c) plane is scattered by one thread in output order, as ATen's
// upsample_bilinear2d_backward does.
void resize_bilinear_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo,
                              int align_corners) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float *dx = dinp + ((int64_t)n * C + c) * H * W;
            const float *d = dout + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0, h1;
                float lh;
                bilinear_taps(oh, H, Ho, align_corners, &h0, &h1, &lh);
                for (int ow = 0; ow < Wo; ow++) {
                    int w0, w1;
                    float lw;
                    bilinear_taps(ow, W, Wo, align_corners, &w0, &w1, &lw);
                    float g = d[oh * Wo + ow];
                    dx[h0 * W + w0] += (1.0f - lh) * (1.0f - lw) * g;
                    dx[h0 * W + w1] += (1.0f - lh) * lw * g;
                    dx[h1 * W + w0] += lh * (1.0f - lw) * g;
                    dx[h1 * W + w1] += lh * lw * g;
                }
            }
        }
    }
}

// dx[n][c][h][w] += dy[n][c][oh][ow] / window size, for every output window (oh, ow) holding (h, w).
void adaptive_avg_pool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int Ho, int Wo) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            float *dx = dinp + ((int64_t)n * C + c) * H * W;
            const float *d = dout + ((int64_t)n * C + c) * Ho * Wo;
            for (int oh = 0; oh < Ho; oh++) {
                int h0, h1;
                pool_window(oh, H, Ho, &h0, &h1);
                for (int ow = 0; ow < Wo; ow++) {
                    int w0, w1;
                    pool_window(ow, W, Wo, &w0, &w1);
                    float g = d[oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) dx[h * W + w] += g;
                }
            }
        }
    }
}
