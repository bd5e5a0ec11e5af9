// Optional bf16 compute path (AVX512_BF16, vdpbf16ps): the GEMM of gemm.c run with the bf16
// kernel set (gemm_avx512_bf16.c), both operands rounded to bf16 and the products summed in f32. A weight matrix
// is rounded and packed once (gemm_bf16_pack_weights); the other operand is
// rounded while it is packed, call by call. f32 stays the default everywhere:
// callers choose this path explicitly, and only where gemm_bf16_supported().
// Layout, rounding and the measured error and speed: docs/bf16.md.
#ifndef SD_GEMM_BF16_H
#define SD_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

// bf16 is the top half of an f32: sign, 8 exponent bits, 7 mantissa bits.
// Rounding is to nearest, ties to even, as vcvtneps2bf16 does it: NaN stays NaN
// (made quiet, sign kept), +-inf stay inf, finite values too large round to inf,
// and f32 subnormals become a zero of the same sign (vdpbf16ps reads bf16
// subnormals as zero anyway).
uint16_t bf16_from_f32(float x);
float f32_from_bf16(uint16_t h);

// 1 if this build and CPU can run the bf16 kernel: x86-64, AVX-512 in use
// (sd_cpu_isa() == ISA_AVX512, so SATDIFUSER_ISA=avx2 turns it off too) and AVX512_BF16.
int gemm_bf16_supported(void);

// Which GEMM operand a packed weight matrix w (rows x K, row-major) stands for:
//   GEMM_BF16_A:  C[M = rows, N] = W X           (conv weights Cout x Cin*kh*kw)
//   GEMM_BF16_BT: C[M, N = rows] = X W^T         (nn.Linear weights (out, in))
enum { GEMM_BF16_A = 0, GEMM_BF16_BT = 1 };

// W rounded to bf16, in the k-pair layout vdpbf16ps reads: one 32-bit word per
// (row, k pair), the bf16 of the even k in the low half, of the odd k in the high
// half (a zero there when K is odd). Rows are grouped in micro-panels of `panel`
// rows (the kernel's register tile: 14 for side A, 32 for side BT; rows past
// `rows` are zeros), each panel holding all kpairs = ceil(K/2) pairs:
//   word of (r, k) = data[(r / panel) * kpairs * panel + (k / 2) * panel + r % panel].
typedef struct {
    int rows, K, side;
    int panel, kpairs;
    uint32_t *data;
    size_t bytes;
} Bf16Packed;

// Rounds and packs w (rows x K f32, row-major). Returns 0, or -1 via sd_errorf
// (bad arguments, out of memory). Free with gemm_bf16_packed_free.
int gemm_bf16_pack_weights(Bf16Packed *p, const float *w, int rows, int K, int side);
void gemm_bf16_packed_free(Bf16Packed *p);

// gemm_run's contract (C = op(A) B + bias_m[i] + bias_n[j] + beta C, B plain or via
// g->pack_b), except that the weight operand comes from w: side A ignores g->a,
// lda, trans_a, packed_a; side BT ignores g->b, ldb, trans_b, pack_b, packed_b.
// g->alpha must be 1, and the other operand cannot be f32 packed weights (side A:
// packed_b, side BT: packed_a must be NULL). That operand (f32) is rounded to bf16
// while it is packed. Products are summed in f32 by vdpbf16ps, k pairs in increasing
// order, in blocks of a fixed size: the bits do not depend on the thread count.
// Returns 0, or -1 via sd_errorf (CPU without AVX512_BF16, shapes that do not match
// w, alpha != 1, out of memory).
int gemm_bf16_run(const GemmProblem *g, const Bf16Packed *w);

// y[rows, out] = x[rows, in] W^T + b with W packed as side GEMM_BF16_BT (W->rows = out,
// W->K = in); b (out) may be NULL. Returns 0 or -1 like gemm_bf16_run.
int linear_forward_bf16(const float *x, const Bf16Packed *W, const float *b, float *y, int rows);
// The same with x stored channels first, x[p*rows + r] (as linear_forward_packed_cf): same bits.
int linear_forward_bf16_cf(const float *x, const Bf16Packed *W, const float *b, float *y, int rows);

// conv2d_forward (kernels.h) in bf16: y[N,Cout,Ho,Wo] = conv(x[N,Cin,H,W], weight) + bias[Cout]
// (bias may be NULL), weight packed as side GEMM_BF16_A from the (Cout, Cin*kh*kw) f32 weight.
// Each sample is rounded to bf16 once into a zero-padded copy (Cin x (H+pads) x (W+pads)
// uint16; kept between calls up to 32 MB), from which the implicit im2col is read in pairs.
// Returns 0 or -1.
int conv2d_forward_bf16(const float *x, int N, int Cin, int H, int W, const Bf16Packed *weight, const float *bias,
                        int Cout, Conv2dGeometry g, float *y);

// Multi-head attention with Q K^T and P V in bf16 (q, k, v and the softmax's P rounded to
// bf16, every sum in f32; the online softmax in f32): attention_forward's contract
// (kernels.h) otherwise. Returns -1 via sd_errorf on a CPU without AVX512_BF16.
int attention_forward_bf16(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                           int Nk, int head_dim, float scale, int causal, Arena *scratch);

#endif
