// Scaled dot-product attention with an online softmax (the "flash" recurrence):
// for each query row, keys are visited once while a running max m, running sum
// l and running output o are kept:
//   s_j = scale * q.k_j;  m' = max(m, s_j);  o = o*exp(m-m') + exp(s_j-m') v_j;
//   l = l*exp(m-m') + exp(s_j-m');  out = o / l.
// Memory is O(head_dim) per row; the Nq x Nk matrix never exists.
#include <math.h>

#include "kernels/kernels.h"

int attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                      int head_dim, float scale, int causal, Arena *scratch) {
    (void)scratch;
    int D = heads * head_dim;
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < Nq; i++) {
                const float *qi = q + ((int64_t)b * Nq + i) * D + h * head_dim;
                float *oi = out + ((int64_t)b * Nq + i) * D + h * head_dim;
                for (int d = 0; d < head_dim; d++) oi[d] = 0.0f;
                float m = -INFINITY, l = 0.0f;
                int n_keys = causal ? (i + 1 < Nk ? i + 1 : Nk) : Nk;
                for (int j = 0; j < n_keys; j++) {
                    const float *kj = k + ((int64_t)b * Nk + j) * D + h * head_dim;
                    const float *vj = v + ((int64_t)b * Nk + j) * D + h * head_dim;
                    float s = 0.0f;
                    for (int d = 0; d < head_dim; d++) s += qi[d] * kj[d];
                    s *= scale;
                    if (s > m) {
                        float c = expf(m - s);  // 0 on the first key (m = -inf)
                        l *= c;
                        for (int d = 0; d < head_dim; d++) oi[d] *= c;
                        m = s;
                    }
                    float p = expf(s - m);
                    l += p;
                    for (int d = 0; d < head_dim; d++) oi[d] += p * vj[d];
                }
                float inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int d = 0; d < head_dim; d++) oi[d] *= inv;
            }
        }
    }
    return 0;
}
