// Fused operators: one pass over memory where the unfused sequence takes several.
#include "kernels/fused.h"

#include "core/runtime.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"

// Maps smaller than this run on the calling thread (as groupnorm_forward). BLOCK floats
// (8 KiB) are normalised then passed through silu while they are in L1.
enum { PARALLEL_MIN = 16384, BLOCK = 2048 };

// Per (sample, group), on one thread: the statistics of v = x + channel_bias (one read of
// the group; kept in mean_out/rstd_out when given), then block by block v -> groupnorm
// (-> silu) while the block is in L1 (the second read and the only write). Normalising is
// element-wise, so the blocks do not change the bits; groupnorm_forward_stats (norm.c) is
// this without the bias and the SiLU, silu_inplace is the same silu_span.
void groupnorm_run(const float *x, float *y, const float *gamma, const float *beta, const float *channel_bias,
                   int silu, int N, int C, int HW, int groups, float eps, float *mean_out, float *rstd_out) {
    if (sd_reference_path()) {  // $SATDIFUSER_ISA=reference: two-pass statistics, then SiLU
        reference_groupnorm(x, y, gamma, beta, channel_bias, N, C, HW, groups, eps, mean_out, rstd_out);
        if (silu) silu_inplace(y, (int64_t)N * C * HW);
        return;
    }
    const int isa = eltwise_isa();
    const int cpg = C / groups;
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)N * C * HW >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < groups; g++) {
            int64_t base = ((int64_t)n * C + (int64_t)g * cpg) * HW;
            const float *bias = channel_bias ? channel_bias + (int64_t)n * C + (int64_t)g * cpg : NULL;
            float mean, rstd;
            norm_stats(x + base, cpg, HW, HW, bias, eps, isa, &mean, &rstd);
            if (mean_out) mean_out[n * groups + g] = mean;
            if (rstd_out) rstd_out[n * groups + g] = rstd;
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                float scale = gamma ? gamma[ch] : 1.0f, shift = beta ? beta[ch] : 0.0f;
                for (int64_t i0 = 0; i0 < HW; i0 += BLOCK) {
                    int64_t off = base + (int64_t)c * HW + i0, len = HW - i0 < BLOCK ? HW - i0 : BLOCK;
                    norm_apply_span(x + off, y + off, len, bias ? bias + c : NULL, mean, rstd, scale, shift, isa);
                    if (silu) silu_span(y + off, len, isa);
                }
            }
        }
    }
}

void groupnorm_silu_forward(const float *x, float *y, const float *gamma, const float *beta,
                            const float *channel_bias, int N, int C, int HW, int groups, float eps) {
    groupnorm_run(x, y, gamma, beta, channel_bias, 1, N, C, HW, groups, eps, NULL, NULL);
}
