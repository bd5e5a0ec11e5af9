// Reference direct convolution. OpenMP over (sample, output channel).
#include "kernels/kernels.h"

Conv2dGeometry conv_geometry(int kernel, int stride, int pad) {
    Conv2dGeometry g = {kernel, kernel, stride, pad, pad, pad, pad};
    return g;
}

int conv_out_size(int in, int kernel, int stride, int pad_before, int pad_after) {
    return (in + pad_before + pad_after - kernel) / stride + 1;
}

int conv2d_forward(const float *x, int N, int Cin, int H, int W, const float *weight, const float *bias, int Cout,
                   Conv2dGeometry g, float *y, Arena *scratch) {
    (void)scratch;
    int Ho = conv_out_size(H, g.kernel_h, g.stride, g.pad_top, g.pad_bottom);
    int Wo = conv_out_size(W, g.kernel_w, g.stride, g.pad_left, g.pad_right);
    int KH = g.kernel_h, KW = g.kernel_w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int co = 0; co < Cout; co++) {
            float *out = y + ((int64_t)n * Cout + co) * Ho * Wo;
            float b = bias ? bias[co] : 0.0f;
            for (int i = 0; i < Ho * Wo; i++) out[i] = b;
            for (int ci = 0; ci < Cin; ci++) {
                const float *in = x + ((int64_t)n * Cin + ci) * H * W;
                const float *w = weight + ((int64_t)co * Cin + ci) * KH * KW;
                for (int oh = 0; oh < Ho; oh++) {
                    for (int ow = 0; ow < Wo; ow++) {
                        float acc = 0.0f;
                        for (int kh = 0; kh < KH; kh++) {
                            int ih = oh * g.stride - g.pad_top + kh;
                            if (ih < 0 || ih >= H) continue;
                            for (int kw = 0; kw < KW; kw++) {
                                int iw = ow * g.stride - g.pad_left + kw;
                                if (iw < 0 || iw >= W) continue;
                                acc += in[ih * W + iw] * w[kh * KW + kw];
                            }
                        }
                        out[oh * Wo + ow] += acc;
                    }
                }
            }
        }
    }
    return 0;
}
