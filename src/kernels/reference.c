// The reference path (reference.h): each operator as the loop nest of its equation, to be
// read beside the PyTorch it reproduces, e.g. for nn.Linear
//   y = x @ W.T + b          ->   y[r][o] = b[o] + sum_i x[r][i] * W[o][i]
// Sums are kept in double and rounded to float once per output element; the loops over
// output elements may be shared among OpenMP threads, but each element is summed by one
// thread in the order written, so the bits do not depend on the thread count.
// Nothing here is fast: gemm.c, conv.c, attention.c and norm.c are the same maths blocked,
// packed and vectorised, and the unit tests compare them with these loops.
#include "kernels/reference.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"

// Loops this small run on the calling thread: waking the others costs more than they save.
#define PARALLEL_MIN_WORK 32768.0

// ---- GEMM --------------------------------------------------------------------------------

// op(A)[i][p]: A (M x K), A^T (A is K x M), or row i of a weight packed at load.
static float a_at(const GemmProblem *g, int i, int p) {
    if (g->packed_a) return gemm_packed_at(g->packed_a, i, p);
    return g->trans_a ? g->a[(int64_t)p * g->lda + i] : g->a[(int64_t)i * g->lda + p];
}

// B[p][j]: op(b), row j of a weight packed at load (as_b: B's columns are its rows), or
// what the problem's pack_b callback writes for it (one row of one column: kc = nc = nr = 1).
static float b_at(const GemmProblem *g, int p, int j) {
    if (g->packed_b) return gemm_packed_at(g->packed_b, j, p);
    if (g->pack_b) {
        float v;
        g->pack_b(g->pack_b_ctx, p, 1, j, 1, 1, &v);
        return v;
    }
    return g->trans_b ? g->b[(int64_t)j * g->ldb + p] : g->b[(int64_t)p * g->ldb + j];
}

// C[i][j] = alpha * sum + bias_m[i] + bias_n[j]  (+ beta * C[i][j] when beta != 0)
static void store(const GemmProblem *g, int i, int j, double sum) {
    double v = (double)g->alpha * sum;
    if (g->bias_m) v += g->bias_m[i];
    if (g->bias_n) v += g->bias_n[j];
    float *c = g->c + (int64_t)i * g->ldc + j;
    if (g->beta != 0.0f) v += (double)g->beta * *c;  // beta == 0: C is not read
    *c = (float)v;
}

// C[i][j] = alpha * sum_p op(A)[i][p] * B[p][j] + bias_m[i] + bias_n[j]  (+ beta * C[i][j])
// Column by column. Plain matrices are read in place (a row of op(A) and a column of B are
// strided vectors); a B that is packed or made by its pack_b callback (a convolution's
// implicit im2col: pack_b with nr = 1 writes column j) is first copied out column by column,
// a packed A row by row.
void reference_gemm(const GemmProblem *g) {
    const int M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0) return;
    const int64_t a_row = g->trans_a ? 1 : g->lda, a_step = g->trans_a ? g->lda : 1;  // op(A)[i][p]
    const int64_t b_col = g->trans_b ? g->ldb : 1, b_step = g->trans_b ? 1 : g->ldb;  // B[p][j]
    const int copy_b = g->packed_b || g->pack_b, copy_a = g->packed_a != NULL;
#pragma omp parallel if ((double)M * N * (K + 1) >= PARALLEL_MIN_WORK)
    {
        size_t bytes = (size_t)(K > 0 ? K : 1) * sizeof(float);
        float *arow = copy_a ? malloc(bytes) : NULL, *bcol = copy_b ? malloc(bytes) : NULL;
        int copies = (!copy_a || arow) && (!copy_b || bcol);  // else element by element (no memory)
#pragma omp for schedule(static)
        for (int j = 0; j < N; j++) {
            if (!copies) {
                for (int i = 0; i < M; i++) {
                    double sum = 0.0;
                    for (int p = 0; p < K; p++) sum += (double)a_at(g, i, p) * b_at(g, p, j);
                    store(g, i, j, sum);
                }
                continue;
            }
            const float *bj = g->b + (int64_t)j * b_col;  // column j of B, b_step apart
            int64_t bs = b_step;
            if (copy_b) {
                if (g->pack_b && K > 0) g->pack_b(g->pack_b_ctx, 0, K, j, 1, 1, bcol);
                if (g->packed_b)
                    for (int p = 0; p < K; p++) bcol[p] = gemm_packed_at(g->packed_b, j, p);
                bj = bcol, bs = 1;
            }
            for (int i = 0; i < M; i++) {
                const float *ai = g->a + (int64_t)i * a_row;  // row i of op(A), a_step apart
                int64_t as = a_step;
                if (copy_a) {
                    for (int p = 0; p < K; p++) arow[p] = gemm_packed_at(g->packed_a, i, p);
                    ai = arow, as = 1;
                }
                double sum = 0.0;
                for (int p = 0; p < K; p++) sum += (double)ai[p * as] * bj[p * bs];
                store(g, i, j, sum);
            }
        }
        free(arow);
        free(bcol);
    }
}

void reference_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    GemmProblem g = {.M = M, .N = N, .K = K, .a = A, .lda = lda, .trans_a = trans_a, .alpha = alpha,
                     .b = B, .ldb = ldb, .trans_b = trans_b, .beta = beta, .c = C, .ldc = ldc};
    reference_gemm(&g);
}

void reference_linear(const float *x, const float *W, const float *b, float *y, int rows, int in, int out) {
    // A = x (rows x in), B = W^T (W is out x in), C = y (rows x out), bias per column
    GemmProblem g = {.M = rows, .N = out, .K = in, .a = x, .lda = in, .alpha = 1.0f, .b = W, .ldb = in,
                     .trans_b = 1, .bias_n = b, .c = y, .ldc = out};
    reference_gemm(&g);
}

// ---- Convolution ---------------------------------------------------------------------------

// w[co][ci][kh][kw] with k = (ci*KH + kh)*KW + kw: the plain array or the packed weight.
static float weight_at(const float *weight, const GemmPackedWeights *packed, int co, int K, int k) {
    return weight ? weight[(int64_t)co * K + k] : gemm_packed_at(packed, co, k);
}

// y[n][co][oh][ow] = bias[co] + sum_{ci,kh,kw} w[co][ci][kh][kw] * x[n][ci][ih][iw],
//   ih = oh*stride - pad_top + kh,  iw = ow*stride - pad_left + kw  (x = 0 outside the map)
void reference_conv2d(const float *x, int N, int Cin, int H, int W, const float *weight,
                      const GemmPackedWeights *packed, const float *bias, int Cout, Conv2dGeometry g, float *y) {
    const int KH = g.kernel_h, KW = g.kernel_w, s = g.stride, K = Cin * KH * KW;
    const int Ho = conv_out_size(H, KH, s, g.pad_top, g.pad_bottom);
    const int Wo = conv_out_size(W, KW, s, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0) return;
#pragma omp parallel for collapse(3) schedule(static) if ((double)N * Cout * Ho * Wo * K >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int co = 0; co < Cout; co++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double sum = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * s - g.pad_top + kh, iw = ow * s - g.pad_left + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;  // zero padding
                                float w = weight_at(weight, packed, co, K, (ci * KH + kh) * KW + kw);
                                sum += (double)w * x[(((int64_t)n * Cin + ci) * H + ih) * W + iw];
                            }
                    y[(((int64_t)n * Cout + co) * Ho + oh) * Wo + ow] = (float)sum;
                }
}

// ---- Attention -----------------------------------------------------------------------------

int reference_attention(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                        int Nk, int hd, float scale, int causal, float (*round_input)(float)) {
    const int D = heads * hd;
    int failed = 0;
#pragma omp parallel if ((double)B * heads * Nq * Nk * hd >= PARALLEL_MIN_WORK)
    {
        // one query's scores, then its softmax weights (Nk), and its output row (hd)
        double *p = malloc((size_t)(Nk + hd + 1) * sizeof(double)), *o = p ? p + Nk : NULL;
        if (!p) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < Nq; i++) {
                    if (!p) continue;
                    const float *qi = q + ((int64_t)b * Nq + i) * D + h * hd;
                    const int nk = causal ? (i + 1 < Nk ? i + 1 : Nk) : Nk;  // causal: keys j <= i
                    // pass 1: scores s_j = scale * q_i . k_j, and their max
                    double mx = -INFINITY;
                    for (int j = 0; j < nk; j++) {
                        const float *kj = k + ((int64_t)b * Nk + j) * D + h * hd;
                        double dot = 0.0;
                        if (round_input) {
                            for (int d = 0; d < hd; d++) dot += (double)round_input(scale * qi[d]) * round_input(kj[d]);
                        } else {
                            for (int d = 0; d < hd; d++) dot += (double)qi[d] * kj[d];
                            dot *= scale;
                        }
                        p[j] = dot;
                        if (p[j] > mx) mx = p[j];
                    }
                    // pass 2: softmax, p_j = exp(s_j - max) / sum_j exp(s_j - max)
                    double total = 0.0;
                    for (int j = 0; j < nk; j++) {
                        p[j] = exp(p[j] - mx);
                        total += p[j];
                    }
                    // pass 3: out_i = sum_j p_j v_j (each o[d] summed over j in increasing order)
                    for (int d = 0; d < hd; d++) o[d] = 0.0;
                    for (int j = 0; j < nk; j++) {
                        const float *vj = v + ((int64_t)b * Nk + j) * D + h * hd;
                        for (int d = 0; d < hd; d++) o[d] += p[j] * (round_input ? round_input(vj[d]) : vj[d]);
                    }
                    float *oi = out + ((int64_t)b * Nq + i) * D + h * hd;
                    for (int d = 0; d < hd; d++) oi[d] = (float)(o[d] / total);
                }
        free(p);
    }
    return failed ? sd_errorf("reference attention: out of memory for %d scores", Nk) : 0;
}

// ---- Normalisation -------------------------------------------------------------------------

// The two passes over x[0..n): mean = sum x / n, var = sum (x - mean)^2 / n (biased, as
// nn.LayerNorm and nn.GroupNorm).
static void mean_var(const float *x, int64_t n, double *mean, double *var) {
    double sum = 0.0;
    for (int64_t t = 0; t < n; t++) sum += x[t];
    double m = sum / (double)n, sq = 0.0;
    for (int64_t t = 0; t < n; t++) sq += (x[t] - m) * (x[t] - m);
    *mean = m;
    *var = sq / (double)n;
}

// y = (v - mean) / sqrt(var + eps) * gamma[c] + beta[c] over the C/groups channels of each
// group, v = x + channel_bias added in float (PyTorch's h + temb[:, :, None, None]): the same
// two passes as mean_var, over the group's channels one after another.
void reference_groupnorm(const float *x, float *y, const float *gamma, const float *beta, const float *channel_bias,
                         int N, int C, int HW, int groups, float eps, float *mean_out, float *rstd_out) {
    const int cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(static) if ((double)N * C * HW >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int g = 0; g < groups; g++) {
            // pass 1: the mean, over every channel of the group (each with its own bias)
            double sum = 0.0, count = (double)cpg * HW;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                const float *xc = x + ((int64_t)n * C + c) * HW;
                float add = channel_bias ? channel_bias[(int64_t)n * C + c] : 0.0f;
                for (int t = 0; t < HW; t++) sum += (float)(xc[t] + add);
            }
            double mean = sum / count, sq = 0.0;
            // pass 2: the variance around it
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                const float *xc = x + ((int64_t)n * C + c) * HW;
                float add = channel_bias ? channel_bias[(int64_t)n * C + c] : 0.0f;
                for (int t = 0; t < HW; t++) {
                    double d = (float)(xc[t] + add) - mean;
                    sq += d * d;
                }
            }
            double rstd = 1.0 / sqrt(sq / count + eps);
            if (mean_out) mean_out[n * groups + g] = (float)mean;
            if (rstd_out) rstd_out[n * groups + g] = (float)rstd;
            for (int c = g * cpg; c < (g + 1) * cpg; c++) {
                const float *xc = x + ((int64_t)n * C + c) * HW;
                float *yc = y + ((int64_t)n * C + c) * HW;
                float add = channel_bias ? channel_bias[(int64_t)n * C + c] : 0.0f;
                double ga = gamma ? gamma[c] : 1.0, be = beta ? beta[c] : 0.0;
                for (int t = 0; t < HW; t++) yc[t] = (float)(((float)(xc[t] + add) - mean) * rstd * ga + be);
            }
        }
}

// y[r][i] = (x[r][i] - mean_r) / sqrt(var_r + eps) * gamma[i] + beta[i]
void reference_layernorm(const float *x, float *y, const float *gamma, const float *beta, int rows, int dim,
                         float eps) {
#pragma omp parallel for schedule(static) if ((double)rows * dim >= PARALLEL_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * dim;
        float *yr = y + (int64_t)r * dim;
        double mean, var;
        mean_var(xr, dim, &mean, &var);
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = (float)((xr[i] - mean) * rstd * (gamma ? gamma[i] : 1.0) + (beta ? beta[i] : 0.0));
    }
}
