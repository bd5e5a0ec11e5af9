// Fused operators (one pass over memory instead of two or three), and the
// element-wise building blocks that norm.c, activations.c and fused.c share.
#ifndef SD_FUSED_H
#define SD_FUSED_H

#include <stdint.h>

// ---- Fused operators (fused.c) -------------------------------------------------

// y = silu(groupnorm(x + channel_bias)) over x[N, C, HW], groups as groupnorm_forward.
// channel_bias (N x C, may be NULL) is added to every x[n, c, :] first: the UNet ResNet
// block's "h += temb_proj(silu(temb))[:, :, None, None]; h = silu(norm2(h))".
// gamma/beta (C) may be NULL. y may equal x (x is left unchanged otherwise).
// Same bits as: x[n,c,:] += channel_bias[n,c] (if given); groupnorm_forward(x, y, ...);
// silu_inplace(y, N*C*HW), on every ISA path and for any thread count; the map is read
// twice and written once (the unfused sequence reads it 3-5 times and writes it 2-3 times).
void groupnorm_silu_forward(const float *x, float *y, const float *gamma, const float *beta,
                            const float *channel_bias, int N, int C, int HW, int groups, float eps);

// ---- Internals shared by norm.c, activations.c and fused.c (not for models) ---------

// The SIMD path of the element-wise and normalisation kernels: the GEMM's
// (gemm_kernel_info(), so $SATDIFUSER_ISA and the gemm_force_isa() test hook apply):
// ISA_AVX512, ISA_AVX2, ISA_NEON or ISA_SCALAR.
int eltwise_isa(void);

// Mean and rstd = 1/sqrt(var + eps) (biased variance) of the rows*len values
// x[r*stride + i] (+ row_add[r] when row_add is not NULL, added in float first).
// Sums are in double, shifted by a pilot mean of the first values; each row's
// element i goes to accumulator lane i % 16 in order and the 16 lanes are added
// in a fixed pairwise order at the end, so every ISA path gives the same bits.
void norm_stats(const float *x, int rows, int64_t len, int64_t stride, const float *row_add, float eps, int isa,
                float *mean, float *rstd);

// y[i] = ((v - mean) * rstd) * scale + shift with v = x[i] (+ *add when add is not NULL),
// in float without FMA contraction: the same bits on every ISA path. y may equal x.
void norm_apply_span(const float *x, float *y, int64_t n, const float *add, float mean, float rstd, float scale,
                     float shift, int isa);

// GroupNorm of (N, C, HW) with an optional per-(sample, channel) bias added first (N x C, may
// be NULL) and an optional SiLU after, keeping each group's mean and rstd in mean_out/rstd_out
// (N x groups, may be NULL): groupnorm_forward_stats and groupnorm_silu_forward.
void groupnorm_run(const float *x, float *y, const float *gamma, const float *beta, const float *channel_bias,
                   int silu, int N, int C, int HW, int groups, float eps, float *mean_out, float *rstd_out);

// x[i] = x[i] * sigmoid(x[i]) on one thread, as silu_inplace does on each element.
void silu_span(float *x, int64_t n, int isa);
// x[i] = exp(x[i]) on one thread: the approximation inside the SIMD activations
// (1.5 ulp), exposed for its test; expf on the scalar path.
void exp_span(float *x, int64_t n, int isa);

#endif
