// FLOP counts of the SD 2.1 UNet, the SD VAE encoder and the OpenCLIP-H text encoder at the shapes
// of tests/bench_models_weights.h (shared by bench_models and bench_jobs).
#ifndef SD_TESTS_BENCH_FLOPS_H
#define SD_TESTS_BENCH_FLOPS_H

#include "tests/bench_models_weights.h"

// Multiply-adds count 2: conv 2*Cout*Cin*k*k*Ho*Wo, linear 2*rows*in*out, attention 4*Nq*Nk*inner
// (Q K^T and P V, every key counted even where CLIP's causal mask hides it). Norms, activations,
// softmax, adds and copies are not counted (O(size of the activations), under 1% here).

static double conv_fl(int cin, int cout, int k, int ho, int wo) { return 2.0 * cout * cin * k * k * (double)ho * wo; }
static double linear_fl(double rows, int in, int out) { return 2.0 * rows * in * out; }

static double resnet_fl(int cin, int cout, int h, int w, int temb) {
    return conv_fl(cin, cout, 3, h, w) + conv_fl(cout, cout, 3, h, w) + (cin != cout ? conv_fl(cin, cout, 1, h, w) : 0) +
           (temb ? linear_fl(1, temb, cout) : 0);
}

static double transformer_fl(int C, int N, int L, int ctx) {
    double self = 4 * linear_fl(N, C, C) + 4.0 * N * (double)N * C;
    double cross = 2 * linear_fl(N, C, C) + 2 * linear_fl(L, ctx, C) + 4.0 * N * (double)L * C;
    double ff = linear_fl(N, C, 8 * C) + linear_fl(N, 4 * C, C);
    return 2 * linear_fl(N, C, C) + self + cross + ff;  // + proj_in, proj_out
}

static double unet_flops(int h, int w) {
    double f = conv_fl(4, UNET_C[0], 3, h, w) + linear_fl(1, UNET_C[0], UNET_TEMB) + linear_fl(1, UNET_TEMB, UNET_TEMB);
    int H[UNET_BLOCKS], W[UNET_BLOCKS], out = UNET_C[0];
    for (int i = 0; i < UNET_BLOCKS; i++) {
        H[i] = h, W[i] = w;
        int in = out;
        out = UNET_C[i];
        for (int j = 0; j < UNET_LAYERS; j++) {
            f += resnet_fl(j == 0 ? in : out, out, h, w, UNET_TEMB);
            if (i < UNET_BLOCKS - 1) f += transformer_fl(out, h * w, UNET_L, UNET_CTX);
        }
        if (i < UNET_BLOCKS - 1) {  // 3x3 stride 2, padding 1
            h = (h - 1) / 2 + 1, w = (w - 1) / 2 + 1;
            f += conv_fl(out, out, 3, h, w);
        }
    }
    f += 2 * resnet_fl(out, out, h, w, UNET_TEMB) + transformer_fl(out, h * w, UNET_L, UNET_CTX);
    for (int i = 0; i < UNET_BLOCKS; i++) {
        int r = UNET_BLOCKS - 1 - i, prev = out;
        out = UNET_C[r];
        int in = UNET_C[r > 0 ? r - 1 : 0];
        for (int j = 0; j < UNET_LAYERS + 1; j++) {
            f += resnet_fl((j == 0 ? prev : out) + (j == UNET_LAYERS ? in : out), out, h, w, UNET_TEMB);
            if (i > 0) f += transformer_fl(out, h * w, UNET_L, UNET_CTX);
        }
        if (i < UNET_BLOCKS - 1) {  // nearest upsampling to the skip's size, then 3x3
            h = H[r - 1], w = W[r - 1];
            f += conv_fl(out, out, 3, h, w);
        }
    }
    return f + conv_fl(UNET_C[0], 4, 3, h, w);
}

static double vae_flops(int h, int w) {
    double f = conv_fl(3, VAE_C[0], 3, h, w);
    int out = VAE_C[0];
    for (int i = 0; i < 4; i++) {
        int in = out;
        out = VAE_C[i];
        for (int j = 0; j < 2; j++) f += resnet_fl(j == 0 ? in : out, out, h, w, 0);
        if (i < 3) {  // F.pad (0,1,0,1) then 3x3 stride 2
            h = (h - 2) / 2 + 1, w = (w - 2) / 2 + 1;
            f += conv_fl(out, out, 3, h, w);
        }
    }
    const int N = h * w;
    f += 2 * resnet_fl(out, out, h, w, 0) + 4 * linear_fl(N, out, out) + 4.0 * N * (double)N * out;
    return f + conv_fl(out, 8, 3, h, w) + conv_fl(8, 8, 1, h, w);
}

static double text_flops(void) {
    const double L = CLIP_L;
    return CLIP_LAYERS * (4 * linear_fl(L, CLIP_D, CLIP_D) + 4.0 * L * L * CLIP_D + linear_fl(L, CLIP_D, CLIP_MLP) +
                          linear_fl(L, CLIP_MLP, CLIP_D));
}

// One image's extraction as `satdifuser extract` runs it at side x side: VAE encoder, the prompt
// through the text encoder (once per prompt: counted per image here, as bench_models' extract case),
// and `calls` UNet calls at the latent size (10 for the default 50 steps saving 47, 45, 40).
static inline double extract_flops(int side, int calls) {
    int h = side / 8, w = side / 8;
    return vae_flops(side, side) + text_flops() + calls * unet_flops(h, w);
}

#endif
