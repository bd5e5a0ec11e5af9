// The reference path: the operators of kernels.h as the plain loops of their equations
// (reference.c), the second, independent implementation the fast kernels are tested against
// and the golden cases can run on ($SATDIFUSER_ISA=reference: gemm_run, conv, attention and
// the norms then call these; docs/kernels.md). Every sum is accumulated in double in one fixed
// order per output element and rounded to float once, so results do not depend on the thread
// count. Slow by design: no packing, no blocking, no SIMD, no online softmax.
#ifndef SD_REFERENCE_H
#define SD_REFERENCE_H

#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"

// gemm_run's contract: C[i][j] = alpha * sum_p op(A)[i][p] * B[p][j] + bias_m[i] + bias_n[j]
// (+ beta * C[i][j] when beta != 0), with A and B read element by element from wherever the
// problem keeps them (plain matrices, weights packed at load, or B column by column from its
// pack_b callback).
void reference_gemm(const GemmProblem *g);
// sgemm's arguments: C = alpha op(A) op(B) + beta C.
void reference_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);
// nn.Linear, y = x W^T + b: y[r][o] = b[o] + sum_i x[r][i] * W[o][i] (x (rows, in), W (out, in),
// b (out) may be NULL).
void reference_linear(const float *x, const float *W, const float *b, float *y, int rows, int in, int out);

// Direct convolution: y[n][co][oh][ow] = bias[co] + sum_{ci,kh,kw} w[co][ci][kh][kw] *
// x[n][ci][oh*s - pad_top + kh][ow*s - pad_left + kw] (zero outside the map). The weight is
// either the (Cout, Cin, kh, kw) array or, when weight is NULL, packed (read back with
// gemm_packed_at).
void reference_conv2d(const float *x, int N, int Cin, int H, int W, const float *weight,
                      const GemmPackedWeights *packed, const float *bias, int Cout, Conv2dGeometry g, float *y);

// Three-pass softmax attention per (batch, head, query i):
//   s_j = scale * q_i . k_j   (j < Nk, or j <= i when causal)
//   p_j = exp(s_j - max s) / sum_j exp(s_j - max s)
//   out_i = sum_j p_j v_j
// q (B, Nq, heads*hd), k and v (B, Nk, heads*hd), out (B, Nq, heads*hd). round_input (NULL:
// none) is applied to scale*q_i, k_j and v_j first, and s_j is then their plain dot product:
// the bf16 tests pass a rounding to bf16. Returns -1 (with a message) if out of memory.
int reference_attention(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                        int Nk, int hd, float scale, int causal, float (*round_input)(float));

// GroupNorm, two passes per (sample, group) over v = x[n][c][:] + channel_bias[n][c]
// (channel_bias (N, C) may be NULL): mean = sum v / n, var = sum (v - mean)^2 / n, then
// y = (v - mean) / sqrt(var + eps) * gamma[c] + beta[c] (gamma/beta may be NULL). mean_out and
// rstd_out ((N, groups), may be NULL) get mean and 1/sqrt(var + eps). y may equal x.
void reference_groupnorm(const float *x, float *y, const float *gamma, const float *beta, const float *channel_bias,
                         int N, int C, int HW, int groups, float eps, float *mean_out, float *rstd_out);
// LayerNorm over the last dim, the same two passes per row. y may equal x.
void reference_layernorm(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim,
                         float eps);

#endif
