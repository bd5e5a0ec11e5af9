// The operators every model and head is built from. All tensors are float32,
// row-major; images are NCHW. Each function states its shapes. Results do not
// depend on the thread count: every output element is reduced by one thread in
// a fixed order.
#ifndef SD_KERNELS_H
#define SD_KERNELS_H

#include "core/tensor.h"

// ---- GEMM (gemm.c) -------------------------------------------------------
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major like BLAS
// cblas_sgemm(CblasRowMajor, ...). op(A) = A (M x K, lda) or A^T (A is K x M).
// beta == 0 means C is not read (it may hold garbage or NaN).
void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc);

// y[rows,out] = x[rows,in] W^T + b, W is (out, in) as nn.Linear stores it; b may be NULL.
void linear_forward(const float *x, const float *W, const float *b, float *y, int rows, int in, int out);

// ---- Convolution (conv.c) ------------------------------------------------
typedef struct {
    int kernel_h, kernel_w;
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;  // zero padding
} Conv2dGeometry;

Conv2dGeometry conv_geometry(int kernel, int stride, int pad);  // symmetric padding
int conv_out_size(int in, int kernel, int stride, int pad_before, int pad_after);

// y[N,Cout,Ho,Wo] = conv(x[N,Cin,H,W], weight[Cout,Cin,kh,kw]) + bias[Cout] (bias may be NULL).
// Scratch comes from the arena (may be NULL for 1x1 stride-1 convs); returns -1 if it runs out.
int conv2d_forward(const float *x, int N, int Cin, int H, int W, const float *weight, const float *bias, int Cout,
                   Conv2dGeometry g, float *y, Arena *scratch);

// ---- Normalisation (norm.c) ----------------------------------------------
// GroupNorm over (C/groups, HW) per sample and group; gamma/beta (C) may be NULL. y may equal x.
void groupnorm_forward(const float *x, float *y, const float *gamma, const float *beta, int N, int C, int HW,
                       int groups, float eps);
// LayerNorm over the last dim; gamma/beta (dim) may be NULL. y may equal x.
void layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim, float eps);
// BatchNorm with given statistics (eval mode): y = (x - mean) / sqrt(var + eps) * gamma + beta.
void batchnorm_forward_eval(const float *x, float *y, const float *mean, const float *var, const float *gamma,
                            const float *beta, int N, int C, int HW, float eps);

// ---- Element-wise (activations.c) ------------------------------------------
void silu_inplace(float *x, int64_t n);            // x * sigmoid(x)
void relu_inplace(float *x, int64_t n);
void gelu_inplace(float *x, int64_t n);            // exact: 0.5 x (1 + erf(x / sqrt 2))
void gelu_tanh_inplace(float *x, int64_t n);       // tanh approximation
void quick_gelu_inplace(float *x, int64_t n);      // x * sigmoid(1.702 x)
void add_inplace(float *y, const float *x, int64_t n);     // y += x
void scale_inplace(float *y, float s, int64_t n);          // y *= s
// Softmax over the last dim of x[rows, n], in place.
void softmax_rows(float *x, int rows, int n);

// ---- Attention (attention.c) ----------------------------------------------
// Multi-head scaled dot-product attention with an online softmax over key tiles:
// never the Nq x Nk matrix. q (B, Nq, heads*head_dim), k and v (B, Nk, heads*head_dim),
// out (B, Nq, heads*head_dim). out = softmax(scale * q k^T [+ causal mask]) v per head.
// causal: query i sees keys j <= i (CLIP text).
int attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                      int head_dim, float scale, int causal, Arena *scratch);

// ---- Resampling and pooling (resample.c) ------------------------------------
// Bilinear resize like F.interpolate(mode="bilinear", antialias=False).
void resize_bilinear(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo, int align_corners);
// Nearest-neighbour x2 upsampling (F.interpolate(scale_factor=2, mode="nearest")).
void upsample_nearest2x(const float *x, float *y, int N, int C, int H, int W);
// AdaptiveAvgPool2d to (Ho, Wo): bins [floor(i*H/Ho), ceil((i+1)*H/Ho)).
void adaptive_avg_pool2d(const float *x, float *y, int N, int C, int H, int W, int Ho, int Wo);

#endif
