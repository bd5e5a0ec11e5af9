// Backward of the convolution (conv.c): conv2d_backward, declared beside conv2d_forward in kernels.h.
// Gradients accumulate (+=); a NULL gradient is not computed. The weight and the stride-1 input
// gradients run on the forward's GEMM (float, each element summed in a fixed order); the bias
// gradient is summed in double. So any thread count gives the same bits.
#include <stdlib.h>

#include "core/error.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"

// Per sample, with X_col[(ci,kh,kw), (oh,ow)] = x[ci, oh*S - pt + kh, ow*S - pl + kw] (zero outside),
// the forward is Y = W X_col + b, so
//   dW += dY X_col^T        one GEMM per sample on the implicit (HoWo x Cin*KH*KW) matrix X_col^T
//   dX_col = W^T dY         scattered back (col2im) into dx
// For stride 1 the second is itself a convolution: dx = conv(dY, W'), W'[ci,co,a,b] =
// W[co,ci,KH-1-a,KW-1-b], padding KH-1-pt (top), KW-1-pl (left), KH-1-pb, KW-1-pr, which runs
// on the forward's implicit GEMM. Larger strides (not used by the heads) take a direct loop.

// Output indices o in [*lo, *hi] whose input index o*stride - pad + k lies in [0, in).
static void valid_output_range(int k, int pad, int stride, int in, int out, int *lo, int *hi) {
    int first = pad - k;  // need o*stride >= first
    int l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int last = in - 1 + pad - k;  // need o*stride <= last
    int h = last < 0 ? -1 : last / stride;
    if (h > out - 1) h = out - 1;
    *lo = l;
    *hi = h;
}

typedef struct {
    const float *x;  // one sample, Cin x H x W
    int H, W, KH, KW, stride, pad_top, pad_left, Wo;
} ConvColCtx;

// Packs the implicit B = X_col^T (rows: output pixels p, columns: (ci,kh,kw) j) for gemm_run:
// rows [p0, p0+kc) x columns [j0, j0+nc) as micro-panels dst[(jr/nr)*kc*nr + p*nr + t].
static void pack_col_transposed(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const ConvColCtx *cx = (const ConvColCtx *)vctx;
    const int KHW = cx->KH * cx->KW;
    for (int jr = 0; jr < nc; jr += nr) {
        const int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        for (int t = 0; t < n; t++) {
            const int j = j0 + jr + t, ci = j / KHW, kh = (j % KHW) / cx->KW, kw = j % cx->KW;
            const float *plane = cx->x + (size_t)ci * cx->H * cx->W;
            int oh = p0 / cx->Wo, ow = p0 % cx->Wo;
            for (int p = 0; p < kc; p++) {
                const int ih = oh * cx->stride - cx->pad_top + kh, iw = ow * cx->stride - cx->pad_left + kw;
                d[(size_t)p * nr + t] = ih >= 0 && ih < cx->H && iw >= 0 && iw < cx->W ? plane[ih * cx->W + iw] : 0.0f;
                if (++ow == cx->Wo) {
                    ow = 0;
                    oh++;
                }
            }
        }
        for (int t = n; t < nr; t++)
            for (int p = 0; p < kc; p++) d[(size_t)p * nr + t] = 0.0f;
    }
}

// dinp[n,ci,ih,iw] += sum_{co,kh,kw} weight[co,ci,kh,kw] * dout[n,co,oh,ow] where ih = oh*S-pt+kh, ...
// One thread owns each (n, ci) plane and adds the terms in (co, kh, kw, oh, ow) order.
static void conv2d_backward_input_direct(float *dinp, const float *dout, const float *weight, int N, int Cin, int H,
                                         int W, int Cout, int Ho, int Wo, Conv2dGeometry g) {
    const int KH = g.kernel_h, KW = g.kernel_w, S = g.stride;
    const int64_t out_plane = (int64_t)Ho * Wo, in_plane = (int64_t)H * W;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int ci = 0; ci < Cin; ci++) {
            float *dx = dinp + ((int64_t)n * Cin + ci) * in_plane;
            for (int co = 0; co < Cout; co++) {
                const float *d = dout + ((int64_t)n * Cout + co) * out_plane;
                const float *w = weight + ((int64_t)co * Cin + ci) * KH * KW;
                for (int kh = 0; kh < KH; kh++) {
                    int oh_lo, oh_hi;
                    valid_output_range(kh, g.pad_top, S, H, Ho, &oh_lo, &oh_hi);
                    for (int kw = 0; kw < KW; kw++) {
                        int ow_lo, ow_hi;
                        valid_output_range(kw, g.pad_left, S, W, Wo, &ow_lo, &ow_hi);
                        if (ow_lo > ow_hi) continue;
                        const float wv = w[kh * KW + kw];
                        const int len = ow_hi - ow_lo + 1;
                        for (int oh = oh_lo; oh <= oh_hi; oh++) {
                            const float *dr = d + (int64_t)oh * Wo + ow_lo;
                            // input index of output column ow: (oh*S - pt + kh) * W + ow*S - pl + kw
                            float *xr = dx + (int64_t)(oh * S - g.pad_top + kh) * W + (int64_t)ow_lo * S - g.pad_left + kw;
                            for (int j = 0; j < len; j++) xr[(int64_t)j * S] += wv * dr[j];
                        }
                    }
                }
            }
        }
    }
}

int conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                    const float *weight, int N, int Cin, int H, int W, int Cout, Conv2dGeometry g) {
    const int Ho = conv_out_size(H, g.kernel_h, g.stride, g.pad_top, g.pad_bottom);
    const int Wo = conv_out_size(W, g.kernel_w, g.stride, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0 || N <= 0) return 0;
    const int KH = g.kernel_h, KW = g.kernel_w, K = Cin * KH * KW;
    const int64_t out_plane = (int64_t)Ho * Wo, in_plane = (int64_t)H * W;
    const int plain_1x1 = KH == 1 && KW == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_left == 0 &&
                          g.pad_bottom == 0 && g.pad_right == 0;

    // dbias[co] += sum_{n,oh,ow} dout[n,co,oh,ow]
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int co = 0; co < Cout; co++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) {
                const float *d = dout + ((int64_t)n * Cout + co) * out_plane;
                for (int64_t i = 0; i < out_plane; i++) acc += d[i];
            }
            dbias[co] += (float)acc;
        }
    }

    // dW (Cout x K) += dY_n (Cout x HoWo) X_col_n^T (HoWo x K), samples in order.
    if (dweight) {
        for (int n = 0; n < N; n++) {
            const float *xn = inp + (int64_t)n * Cin * in_plane;
            ConvColCtx cx = {xn, H, W, KH, KW, g.stride, g.pad_top, g.pad_left, Wo};
            GemmProblem p = {.M = Cout, .N = K, .K = (int)out_plane,
                             .a = dout + (int64_t)n * Cout * out_plane, .lda = (int)out_plane, .alpha = 1.0f,
                             .beta = 1.0f, .c = dweight, .ldc = K};
            if (plain_1x1) {
                p.b = xn;  // X_col^T = x_n^T
                p.ldb = (int)in_plane;
                p.trans_b = 1;
            } else {
                p.pack_b = pack_col_transposed;
                p.pack_b_ctx = &cx;
            }
            gemm_run(&p);
        }
    }

    if (!dinp) return 0;
    if (plain_1x1) {
        // dx_n (Cin x HW) += W^T (Cin x Cout) dY_n (Cout x HW)
        for (int n = 0; n < N; n++) {
            GemmProblem p = {.M = Cin, .N = (int)in_plane, .K = Cout, .a = weight, .lda = Cin, .trans_a = 1,
                             .alpha = 1.0f, .b = dout + (int64_t)n * Cout * out_plane, .ldb = (int)out_plane,
                             .beta = 1.0f, .c = dinp + (int64_t)n * Cin * in_plane, .ldc = (int)in_plane};
            gemm_run(&p);
        }
        return 0;
    }
    const int transposable = g.stride == 1 && g.pad_top <= KH - 1 && g.pad_bottom <= KH - 1 && g.pad_left <= KW - 1 &&
                             g.pad_right <= KW - 1;
    if (!transposable) {
        conv2d_backward_input_direct(dinp, dout, weight, N, Cin, H, W, Cout, Ho, Wo, g);
        return 0;
    }
    // Stride 1: dx = conv(dY, W') with the flipped, transposed kernel (see the top of this section).
    float *wt = (float *)malloc((size_t)K * Cout * sizeof(float));
    float *tmp = (float *)malloc((size_t)Cin * in_plane * sizeof(float));
    if (!wt || !tmp) {
        free(wt);
        free(tmp);
        return sd_errorf("conv2d_backward: out of memory (%d x %d x %d x %d transposed kernel, %d x %d x %d scratch)",
                         Cin, Cout, KH, KW, Cin, H, W);
    }
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int a = 0; a < KH; a++)
                for (int b = 0; b < KW; b++)
                    wt[(((int64_t)ci * Cout + co) * KH + a) * KW + b] =
                        weight[(((int64_t)co * Cin + ci) * KH + (KH - 1 - a)) * KW + (KW - 1 - b)];
    Conv2dGeometry gt = {.kernel_h = KH, .kernel_w = KW, .stride = 1, .pad_top = KH - 1 - g.pad_top,
                         .pad_left = KW - 1 - g.pad_left, .pad_bottom = KH - 1 - g.pad_bottom,
                         .pad_right = KW - 1 - g.pad_right};
    for (int n = 0; n < N; n++) {
        conv2d_forward(dout + (int64_t)n * Cout * out_plane, 1, Cout, Ho, Wo, wt, NULL, Cin, gt, tmp);
        float *dx = dinp + (int64_t)n * Cin * in_plane;
        const int64_t count = (int64_t)Cin * in_plane;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) dx[i] += tmp[i];
    }
    free(wt);
    free(tmp);
    return 0;
}
