// Reference GEMM: C = alpha op(A) op(B) + beta C. Row-major, OpenMP over rows
// of C; each C element is one dot product in k order, so any thread count
// gives the same bits.
#include "kernels/kernels.h"

void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = C + (int64_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int p = 0; p < K; p++) {
            float a = alpha * (trans_a ? A[(int64_t)p * lda + i] : A[(int64_t)i * lda + p]);
            if (!trans_b) {
                const float *b = B + (int64_t)p * ldb;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int j = 0; j < N; j++) c[j] += a * B[(int64_t)j * ldb + p];
            }
        }
    }
}

void linear_forward(const float *x, const float *W, const float *b, float *y, int rows, int in, int out) {
    sgemm(0, 1, rows, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (b) {
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) y[(int64_t)r * out + o] += b[o];
    }
}
