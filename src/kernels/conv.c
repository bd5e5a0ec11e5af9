// Convolution as an implicit GEMM, per sample:
//   Y[Cout, Ho*Wo] = W[Cout, Cin*KH*KW] * X_col[Cin*KH*KW, Ho*Wo] + bias
// where X_col[(ci,kh,kw), (oh,ow)] = x[ci, oh*s - pad_top + kh, ow*s - pad_left + kw]
// (zero outside the map). X_col never exists: the GEMM asks for one kc x nc
// panel at a time (pack_conv_b below writes it straight into the packed
// layout), so the only workspace is the GEMM's own pack buffers and the
// arena is not needed. A 1x1 stride-1 unpadded conv is a plain GEMM on x.
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/kernels.h"

Conv2dGeometry conv_geometry(int kernel, int stride, int pad) {
    Conv2dGeometry g = {kernel, kernel, stride, pad, pad, pad, pad};
    return g;
}

int conv_out_size(int in, int kernel, int stride, int pad_before, int pad_after) {
    return (in + pad_before + pad_after - kernel) / stride + 1;
}

typedef struct {
    const float *x;  // one sample, Cin x H x W
    int H, W, KH, KW, stride, pad_top, pad_left, Wo;
} ConvPackCtx;

enum { MAX_SEGMENTS = 80 };

// Short copies and zero fills (a run is at most nr floats): fixed 8-float
// chunks that the compiler turns into vector moves instead of libc calls.
static inline void copy_floats(float *dst, const float *src, int n) {
    for (; n >= 8; n -= 8, dst += 8, src += 8) memcpy(dst, src, 8 * sizeof(float));
    for (int t = 0; t < n; t++) dst[t] = src[t];
}

static inline void zero_floats(float *dst, int n) {
    static const float zeros[8] = {0};
    for (; n >= 8; n -= 8, dst += 8) memcpy(dst, zeros, 8 * sizeof(float));
    for (int t = 0; t < n; t++) dst[t] = 0.0f;
}

int conv_split_runs(int first_pixel, int n, int Wo, PixelRun *runs, int max_runs) {
    int nruns = 0;
    for (int col = 0; col < n && nruns < max_runs;) {
        int pix = first_pixel + col, oh = pix / Wo, ow = pix % Wo;
        int cnt = Wo - ow < n - col ? Wo - ow : n - col;
        runs[nruns].oh = oh;
        runs[nruns].ow = ow;
        runs[nruns].count = cnt;
        runs[nruns].col = col;
        nruns++;
        col += cnt;
    }
    return nruns;
}

// Writes X_col rows [p0, p0+kc) x columns [j0, j0+nc) as micro-panels of nr columns.
static void pack_conv_b(const void *vctx, int p0, int kc, int j0, int nc, int nr, float *dst) {
    const ConvPackCtx *cx = vctx;
    const int H = cx->H, W = cx->W, KH = cx->KH, KW = cx->KW, s = cx->stride, Wo = cx->Wo;
    PixelRun runs[MAX_SEGMENTS];
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        int nruns = conv_split_runs(j0 + jr, n, Wo, runs, MAX_SEGMENTS);
        int ci = (p0 / KW) / KH, kh = (p0 / KW) % KH, kw = p0 % KW;
        for (int p = 0; p < kc; p++) {
            float *row = d + (size_t)p * nr;
            const float *plane = cx->x + (size_t)ci * H * W;
            for (int r = 0; r < nruns; r++) {
                float *out = row + runs[r].col;
                int cnt = runs[r].count;
                int ih = runs[r].oh * s - cx->pad_top + kh;
                if (ih < 0 || ih >= H) {
                    zero_floats(out, cnt);
                    continue;
                }
                const float *in = plane + (size_t)ih * W;
                int iw0 = runs[r].ow * s - cx->pad_left + kw;  // input column of the run's first pixel
                if (s == 1) {
                    // zeros left of the map, a contiguous copy, zeros right of it
                    int lo = iw0 < 0 ? -iw0 : 0;
                    if (lo > cnt) lo = cnt;
                    int hi = W - iw0 < cnt ? W - iw0 : cnt;
                    if (hi < lo) hi = lo;
                    zero_floats(out, lo);
                    copy_floats(out + lo, in + iw0 + lo, hi - lo);
                    zero_floats(out + hi, cnt - hi);
                } else {
                    for (int t = 0; t < cnt; t++) {
                        int iw = iw0 + t * s;
                        out[t] = iw >= 0 && iw < W ? in[iw] : 0.0f;
                    }
                }
            }
            zero_floats(row + n, nr - n);
            if (++kw == KW) {
                kw = 0;
                if (++kh == KH) {
                    kh = 0;
                    ci++;
                }
            }
        }
    }
}

#if defined(__x86_64__)
enum { MAX_KW_FAST = 8 };  // kernel widths the AVX-512 packer takes (the models' padded convs are 3x3)

// pack_conv_b for stride 1 with AVX-512, for micro-panels of 32 columns (the AVX-512 GEMM's
// nr): the same values in the same places. A run of output pixels on one output row reads one
// stretch of the input row; a masked load fetches it with the lanes left or right of the map
// (padding) as zeros, and no lane outside the map is read.
__attribute__((target("avx512f"))) static void pack_conv_b_s1_avx512(const void *vctx, int p0, int kc, int j0, int nc,
                                                                     int nr, float *dst) {
    if (nr != 32) {  // the GEMM's no-workspace fallback asks for 64-column rows
        pack_conv_b(vctx, p0, kc, j0, nc, nr, dst);
        return;
    }
    const ConvPackCtx *cx = vctx;
    const int H = cx->H, W = cx->W, KH = cx->KH, KW = cx->KW, Wo = cx->Wo;
    PixelRun runs[MAX_SEGMENTS];
    for (int jr = 0; jr < nc; jr += nr) {
        int n = nc - jr < nr ? nc - jr : nr;
        float *d = dst + (size_t)jr * kc;
        int nruns = conv_split_runs(j0 + jr, n, Wo, runs, MAX_SEGMENTS);
        // per run and kernel column: the lanes that fall inside the map (the mask of the 32)
        // and the input column that lane 0 would read
        uint32_t mask[32][MAX_KW_FAST];
        int shift[32][MAX_KW_FAST];
        for (int r = 0; r < nruns; r++) {
            for (int kw = 0; kw < KW; kw++) {
                int iw0 = runs[r].ow - cx->pad_left + kw, cnt = runs[r].count, col = runs[r].col;
                int first = iw0 < 0 ? -iw0 : 0, last = W - iw0 < cnt ? W - iw0 : cnt;
                mask[r][kw] = last > first ? (uint32_t)((((1ull << last) - 1) ^ ((1ull << first) - 1)) << col) : 0u;
                shift[r][kw] = iw0 - col;
            }
        }
        int ci = (p0 / KW) / KH, kh = (p0 / KW) % KH, kw = p0 % KW;
        for (int p = 0; p < kc; p++) {
            // the row of 32 values in two vectors, built run by run (runs do not overlap)
            __m512 lo16 = _mm512_setzero_ps(), hi16 = _mm512_setzero_ps();
            const float *plane = cx->x + (size_t)ci * H * W;
            for (int r = 0; r < nruns; r++) {
                int ih = runs[r].oh - cx->pad_top + kh;
                uint32_t m = mask[r][kw];
                if (ih < 0 || ih >= H || !m) continue;  // a padding row or column: zeros
                // lane L reads input column L + shift; the address of lane 0 may lie before the
                // row (masked-off lanes are never read), so it is computed as an integer, not by
                // pointer arithmetic outside the array
                uintptr_t lane0 = (uintptr_t)(plane + (size_t)ih * W) + (uintptr_t)((intptr_t)shift[r][kw] * 4);
                if (m & 0xFFFFu) lo16 = _mm512_mask_loadu_ps(lo16, (__mmask16)(m & 0xFFFFu), (const void *)lane0);
                if (m >> 16) hi16 = _mm512_mask_loadu_ps(hi16, (__mmask16)(m >> 16), (const void *)(lane0 + 64));
            }
            _mm512_storeu_ps(d + (size_t)p * nr, lo16);
            _mm512_storeu_ps(d + (size_t)p * nr + 16, hi16);
            if (++kw == KW) {
                kw = 0;
                if (++kh == KH) {
                    kh = 0;
                    ci++;
                }
            }
        }
    }
}
#endif

// The weight is either a plain (Cout, Cin*kh*kw) matrix or packed at load.
static void conv_run(const float *x, int N, int Cin, int H, int W, const float *weight,
                     const GemmPackedWeights *packed, const float *bias, int Cout, Conv2dGeometry g, float *y) {
    int Ho = conv_out_size(H, g.kernel_h, g.stride, g.pad_top, g.pad_bottom);
    int Wo = conv_out_size(W, g.kernel_w, g.stride, g.pad_left, g.pad_right);
    if (Ho <= 0 || Wo <= 0) return;
    int K = Cin * g.kernel_h * g.kernel_w;
    int is_1x1 = g.kernel_h == 1 && g.kernel_w == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_left == 0 &&
                 g.pad_bottom == 0 && g.pad_right == 0;
    for (int n = 0; n < N; n++) {
        const float *xn = x + (int64_t)n * Cin * H * W;
        float *yn = y + (int64_t)n * Cout * Ho * Wo;
        ConvPackCtx cx = {xn, H, W, g.kernel_h, g.kernel_w, g.stride, g.pad_top, g.pad_left, Wo};
        GemmProblem p = {Cout, Ho * Wo, K, weight, K, 0, 1.0f, NULL, 0, 0, NULL, NULL, bias, NULL, 0.0f, yn, Ho * Wo,
                         packed, NULL};
        if (is_1x1) {
            p.b = xn;  // x is already the Cin x HW matrix
            p.ldb = H * W;
        } else {
            p.pack_b = pack_conv_b;
            p.pack_b_ctx = &cx;
#if defined(__x86_64__)
            // Only for maps narrower than a micro-panel (16x16, 8x8, 4x4: several runs per panel,
            // where it is 5-6% faster for the whole conv); on 32- and 64-wide maps (one run of 32)
            // the plain copies were measured 4-7% faster.
            if (g.stride == 1 && Wo < 32 && g.kernel_w <= MAX_KW_FAST && gemm_kernel_info() == gemm_kernel_avx512())
                p.pack_b = pack_conv_b_s1_avx512;
#endif
        }
        gemm_run(&p);
    }
}

int conv2d_forward(const float *x, int N, int Cin, int H, int W, const float *weight, const float *bias, int Cout,
                   Conv2dGeometry g, float *y, Arena *scratch) {
    (void)scratch;  // the implicit GEMM needs no scratch beyond the GEMM's pack buffers
    conv_run(x, N, Cin, H, W, weight, NULL, bias, Cout, g, y);
    return 0;
}

void conv2d_forward_packed(const float *x, int N, int Cin, int H, int W, const GemmPackedWeights *weight,
                           const float *bias, int Cout, Conv2dGeometry g, float *y) {
    conv_run(x, N, Cin, H, W, NULL, weight, bias, Cout, g, y);
}
