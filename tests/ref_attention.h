// The attention reference of the kernel tests, in double: out = softmax(scale * q k^T
// [+ causal mask]) v per head (q, k, v, out: (B, N, heads*hd)). round_input (NULL: none) is
// applied to scale*q, k and v first: the bf16 test rounds them as its kernel does.
#ifndef SD_TESTS_REF_ATTENTION_H
#define SD_TESTS_REF_ATTENTION_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static void ref_attention(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                          int hd, float scale, int causal, float (*round_input)(float)) {
    const int D = heads * hd;
    double *s = malloc((size_t)Nk * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < Nq; i++) {
                const float *qi = q + ((int64_t)b * Nq + i) * D + h * hd;
                int nk = causal ? (i + 1 < Nk ? i + 1 : Nk) : Nk;
                double m = -INFINITY, l = 0.0;
                for (int j = 0; j < nk; j++) {
                    const float *kj = k + ((int64_t)b * Nk + j) * D + h * hd;
                    double dot = 0.0;
                    if (round_input) {
                        for (int d = 0; d < hd; d++) dot += (double)round_input(scale * qi[d]) * round_input(kj[d]);
                        s[j] = dot;
                    } else {
                        for (int d = 0; d < hd; d++) dot += (double)qi[d] * kj[d];
                        s[j] = scale * dot;
                    }
                    if (s[j] > m) m = s[j];
                }
                for (int j = 0; j < nk; j++) {
                    s[j] = exp(s[j] - m);
                    l += s[j];
                }
                for (int d = 0; d < hd; d++) {
                    double o = 0.0;
                    for (int j = 0; j < nk; j++) {
                        float vj = v[((int64_t)b * Nk + j) * D + h * hd + d];
                        o += s[j] * (round_input ? round_input(vj) : vj);
                    }
                    out[((int64_t)b * Nq + i) * D + h * hd + d] = (float)(o / l);
                }
            }
    free(s);
}

#endif
