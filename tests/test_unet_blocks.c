// Unit tests of the UNet / VAE building blocks against the reference path (kernels/reference.c:
// plain loops, sums in double) composed by hand (ResnetBlock2D, Downsample2D, Upsample2D, time
// embedding, attention, Transformer2D), plus
// UNet-level properties: captures do not change the output, results do not depend on the thread
// count, the feature path list, and config/weight mismatches give errors naming the tensor.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "kernels/reference.h"
#include "models/unet.h"
#include "models/vae.h"
#include "tests/test_util.h"

// ---- a throw-away weight file ------------------------------------------------------

#define MAX_W 64
typedef struct {
    char names[MAX_W][128];
    Tensor t[MAX_W];
    int n;
    unsigned long long seed;
} WeightBuilder;

// Adds a random tensor; norm weights get 1 + noise so they are not trivially 1.
static float *wb_add(WeightBuilder *wb, const char *name, int ndim, const int *shape, float scale, float offset) {
    int i = wb->n++;
    snprintf(wb->names[i], sizeof(wb->names[i]), "%s", name);
    tensor_alloc(&wb->t[i], ndim, shape, name);
    int64_t n = tensor_numel(&wb->t[i]);
    test_fill(wb->t[i].data, (long)n, ++wb->seed);
    for (int64_t k = 0; k < n; k++) wb->t[i].data[k] = offset + scale * wb->t[i].data[k];
    return wb->t[i].data;
}

static const float *wb_get(const WeightBuilder *wb, const char *name) {
    for (int i = 0; i < wb->n; i++)
        if (strcmp(wb->names[i], name) == 0) return wb->t[i].data;
    printf("test bug: no weight %s\n", name);
    exit(1);
}

static int wb_write(WeightBuilder *wb, const char *path, SafeTensors *st) {
    StWriteEntry e[MAX_W];
    for (int i = 0; i < wb->n; i++) e[i] = st_entry_f32(wb->names[i], &wb->t[i]);
    if (st_write(path, e, wb->n, NULL, NULL, 0)) return -1;
    return st_open(st, path);
}

static void wb_free(WeightBuilder *wb) {
    for (int i = 0; i < wb->n; i++) tensor_free(&wb->t[i]);
    wb->n = 0;
}

// ---- the reference operators with this file's argument order ---------------------------

// A k x k convolution (reference_conv2d) with padding top, left, bottom, right; *Ho_, *Wo_ (may
// be NULL) get the output size.
static void ref_conv(const float *x, int N, int Cin, int H, int W, const float *w, const float *b, int Cout, int k,
                     int stride, int pt, int pl, int pb, int pr, float *y, int *Ho_, int *Wo_) {
    Conv2dGeometry g = {k, k, stride, pt, pl, pb, pr};
    reference_conv2d(x, N, Cin, H, W, w, NULL, b, Cout, g, y);
    if (Ho_) *Ho_ = conv_out_size(H, k, stride, pt, pb);
    if (Wo_) *Wo_ = conv_out_size(W, k, stride, pl, pr);
}

static double silu_d(double x) { return x / (1.0 + exp(-x)); }

static double rel_err(const float *got, const float *want, long n) {
    double m = 0, scale = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= m)) m = d;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return m / (scale > 0 ? scale : 1);
}

static char g_tmp[256];

// ---- tests ------------------------------------------------------------------------------

static void test_timestep_embedding(void) {
    float t[4] = {-1.0f, 0.0f, 21.0f, 981.0f};
    float emb[4 * 33];
    for (int flip = 0; flip < 2; flip++)
        for (int dim = 32; dim <= 33; dim++) {
            float shift = dim == 33 ? 1.0f : 0.0f;
            timestep_embedding_sinusoidal(t, 4, dim, flip, shift, emb);
            double maxd = 0;
            int half = dim / 2;
            for (int b = 0; b < 4; b++)
                for (int i = 0; i < half; i++) {
                    double f = exp(-log(10000.0) * i / (half - shift));
                    double s = sin(t[b] * f), c = cos(t[b] * f);
                    double es = emb[b * dim + (flip ? half + i : i)], ec = emb[b * dim + (flip ? i : half + i)];
                    maxd = fmax(maxd, fmax(fabs(es - s), fabs(ec - c)));
                }
            // float32 argument rounding at t = 981: |t f| error ~ 1e-4
            CHECK(maxd < 5e-4, "timestep embedding dim %d flip %d: max err %g", dim, flip, maxd);
            if (dim == 33) CHECK(emb[32] == 0.0f && emb[4 * 33 - 1] == 0.0f, "odd dim: zero pad");
        }
}

static void test_nearest(void) {
    float x[3 * 2] = {0, 1, 2, 3, 4, 5};  // (1,1,3,2)
    float y[5 * 3];
    upsample_nearest_to(x, y, 1, 1, 3, 2, 5, 3);
    // rows: floor(i * 3/5) = 0,0,1,1,2; cols: floor(j * 2/3) = 0,0,1
    int rows[5] = {0, 0, 1, 1, 2}, cols[3] = {0, 0, 1};
    int ok = 1;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) ok &= y[i * 3 + j] == x[rows[i] * 2 + cols[j]];
    CHECK(ok, "nearest resize 3x2 -> 5x3 indices as ATen");
    float y2[6 * 4], y3[6 * 4];
    upsample_nearest_to(x, y2, 1, 1, 3, 2, 6, 4);
    upsample_nearest2x(x, y3, 1, 1, 3, 2);
    CHECK(memcmp(y2, y3, sizeof(y2)) == 0, "nearest to 2x size == upsample_nearest2x");
}

// ResnetBlock2D (with and without the shortcut, default and scale_shift, output_scale_factor 2).
static void test_resnet(int Cin, int C, int scale_shift, float osf) {
    const int B = 2, H = 5, W = 3, T = 6, G = 2, HW = H * W;
    WeightBuilder wb = {.seed = 100 + Cin + scale_shift};
    int s1[1] = {Cin}, s2[1] = {C};
    wb_add(&wb, "r.norm1.weight", 1, s1, 0.1f, 1.0f);
    wb_add(&wb, "r.norm1.bias", 1, s1, 0.1f, 0.0f);
    wb_add(&wb, "r.conv1.weight", 4, (int[4]){C, Cin, 3, 3}, 0.3f, 0.0f);
    wb_add(&wb, "r.conv1.bias", 1, s2, 0.1f, 0.0f);
    int P = scale_shift ? 2 * C : C;
    wb_add(&wb, "r.time_emb_proj.weight", 2, (int[2]){P, T}, 0.3f, 0.0f);
    wb_add(&wb, "r.time_emb_proj.bias", 1, &P, 0.1f, 0.0f);
    wb_add(&wb, "r.norm2.weight", 1, s2, 0.1f, 1.0f);
    wb_add(&wb, "r.norm2.bias", 1, s2, 0.1f, 0.0f);
    wb_add(&wb, "r.conv2.weight", 4, (int[4]){C, C, 3, 3}, 0.3f, 0.0f);
    wb_add(&wb, "r.conv2.bias", 1, s2, 0.1f, 0.0f);
    if (Cin != C) {
        wb_add(&wb, "r.conv_shortcut.weight", 4, (int[4]){C, Cin, 1, 1}, 0.3f, 0.0f);
        wb_add(&wb, "r.conv_shortcut.bias", 1, s2, 0.1f, 0.0f);
    }
    SafeTensors st;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_unet_blocks_%d.safetensors", (int)getpid());
    if (wb_write(&wb, g_tmp, &st)) {  // nothing below can run without the weights
        CHECK(0, "write weights: %s", sd_last_error());
        wb_free(&wb);
        return;
    }
    NnWeights w;
    nn_weights_init(&w, &st, "");
    ResnetBlock2D r;
    int rc = resnet_block_load(&w, &r, "r", Cin, C, T, G, 1e-5f, osf, scale_shift);
    CHECK(rc == 0, "resnet load: %s", sd_last_error());
    if (rc) {  // stop: the block's fields are not set
        nn_weights_free(&w);
        st_close(&st);
        unlink(g_tmp);
        wb_free(&wb);
        return;
    }

    float *x = malloc(sizeof(float) * B * Cin * HW), *temb = malloc(sizeof(float) * B * T);
    float *got = malloc(sizeof(float) * B * C * HW), *want = malloc(sizeof(float) * B * C * HW);
    test_fill(x, B * Cin * HW, 7);
    test_fill(temb, B * T, 8);
    float *temb_silu = malloc(sizeof(float) * B * T);
    for (int i = 0; i < B * T; i++) temb_silu[i] = (float)silu_d(temb[i]);
    Arena arena;
    arena_init(&arena, 1 << 20);
    ModuleCaptures cap;
    const char *paths[] = {"blk.conv2", "blk"};
    captures_init(&cap, paths, 2);
    rc = resnet_block_forward(&r, x, temb_silu, got, B, H, W, &arena, &cap, "blk");
    CHECK(rc == 0 && arena.used == 0, "resnet forward (arena back to 0: %zu)", arena.used);

    // reference
    float *t1 = malloc(sizeof(float) * B * Cin * HW), *h = malloc(sizeof(float) * B * C * HW);
    float *proj = malloc(sizeof(float) * B * P), *c2 = malloc(sizeof(float) * B * C * HW);
    reference_groupnorm(x, t1, wb_get(&wb, "r.norm1.weight"), wb_get(&wb, "r.norm1.bias"), NULL, B, Cin, HW, G, 1e-5f,
                        NULL, NULL);
    for (int i = 0; i < B * Cin * HW; i++) t1[i] = (float)silu_d(t1[i]);
    ref_conv(t1, B, Cin, H, W, wb_get(&wb, "r.conv1.weight"), wb_get(&wb, "r.conv1.bias"), C, 3, 1, 1, 1, 1, 1, h,
             NULL, NULL);
    reference_linear(temb_silu, wb_get(&wb, "r.time_emb_proj.weight"), wb_get(&wb, "r.time_emb_proj.bias"), proj, B, T,
                     P);
    if (!scale_shift)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < HW; i++) h[(b * C + c) * HW + i] += proj[b * P + c];
    reference_groupnorm(h, h, wb_get(&wb, "r.norm2.weight"), wb_get(&wb, "r.norm2.bias"), NULL, B, C, HW, G, 1e-5f, NULL,
                        NULL);
    if (scale_shift)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < HW; i++) {
                    float *p = &h[(b * C + c) * HW + i];
                    *p = *p * (1 + proj[b * P + c]) + proj[b * P + C + c];
                }
    for (int i = 0; i < B * C * HW; i++) h[i] = (float)silu_d(h[i]);
    ref_conv(h, B, C, H, W, wb_get(&wb, "r.conv2.weight"), wb_get(&wb, "r.conv2.bias"), C, 3, 1, 1, 1, 1, 1, c2, NULL,
             NULL);
    const float *sc = x;
    float *scb = NULL;
    if (Cin != C) {
        scb = malloc(sizeof(float) * B * C * HW);
        ref_conv(x, B, Cin, H, W, wb_get(&wb, "r.conv_shortcut.weight"), wb_get(&wb, "r.conv_shortcut.bias"), C, 1, 1,
                 0, 0, 0, 0, scb, NULL, NULL);
        sc = scb;
    }
    for (int i = 0; i < B * C * HW; i++) want[i] = (sc[i] + c2[i]) / osf;
    double e = rel_err(got, want, B * C * HW);
    CHECK(e < 1e-5, "resnet Cin %d C %d scale_shift %d osf %g: rel err %g", Cin, C, scale_shift, osf, e);
    const Tensor *cc = captures_get(&cap, "blk.conv2"), *co = captures_get(&cap, "blk");
    CHECK(cc && rel_err(cc->data, c2, B * C * HW) < 1e-5, "capture conv2 = conv2 output before the shortcut");
    CHECK(co && memcmp(co->data, got, sizeof(float) * B * C * HW) == 0, "capture of the block = its output");

    captures_free(&cap);
    arena_free(&arena);
    nn_weights_free(&w);
    st_close(&st);
    unlink(g_tmp);
    wb_free(&wb);
    free(x), free(temb), free(temb_silu), free(got), free(want), free(t1), free(h), free(proj), free(c2), free(scb);
}

static void test_downsample(int padding) {
    const int B = 2, C = 3, H = 7, W = 6;
    WeightBuilder wb = {.seed = 300};
    wb_add(&wb, "d.conv.weight", 4, (int[4]){C, C, 3, 3}, 0.3f, 0.0f);
    wb_add(&wb, "d.conv.bias", 1, (int[1]){C}, 0.1f, 0.0f);
    SafeTensors st;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_unet_blocks_%d.safetensors", (int)getpid());
    if (wb_write(&wb, g_tmp, &st)) {
        CHECK(0, "write weights: %s", sd_last_error());
        wb_free(&wb);
        return;
    }
    NnWeights w;
    nn_weights_init(&w, &st, "");
    Downsample2D d;
    int rc = downsample_load(&w, &d, "d", C, padding);
    CHECK(rc == 0, "downsample load: %s", sd_last_error());
    if (rc) {
        nn_weights_free(&w);
        st_close(&st);
        unlink(g_tmp);
        wb_free(&wb);
        return;
    }
    int Ho, Wo, rh, rw;
    downsample_out_size(&d, H, W, &Ho, &Wo);
    float x[2 * 3 * 7 * 6], got[2 * 3 * 4 * 4], want[2 * 3 * 4 * 4];
    test_fill(x, B * C * H * W, 9);
    CHECK(downsample_forward(&d, x, got, B, H, W) == 0, "downsample forward");
    // padding 0: F.pad(x, (0, 1, 0, 1)) then a stride-2 conv without padding
    int p = padding;
    ref_conv(x, B, C, H, W, wb_get(&wb, "d.conv.weight"), wb_get(&wb, "d.conv.bias"), C, 3, 2, p, p, p ? p : 1,
             p ? p : 1, want, &rh, &rw);
    CHECK(rh == Ho && rw == Wo, "downsample size %dx%d vs %dx%d", Ho, Wo, rh, rw);
    CHECK(rel_err(got, want, B * C * Ho * Wo) < 1e-5, "downsample padding %d", padding);
    nn_weights_free(&w);
    st_close(&st);
    unlink(g_tmp);
    wb_free(&wb);
}

// Transformer2D (linear or conv projection): GroupNorm, proj_in, self-attn, cross-attn, GEGLU, proj_out, residual.
static void test_transformer(int linear, int only_cross) {
    const int B = 2, C = 8, H = 3, W = 4, HW = H * W, heads = 2, hd = 4, Dc = 6, L = 5, F = 4 * C;
    WeightBuilder wb = {.seed = 500 + linear};
    int sc[1] = {C};
    wb_add(&wb, "t.norm.weight", 1, sc, 0.1f, 1.0f);
    wb_add(&wb, "t.norm.bias", 1, sc, 0.1f, 0.0f);
    if (linear) wb_add(&wb, "t.proj_in.weight", 2, (int[2]){C, C}, 0.3f, 0.0f);
    else wb_add(&wb, "t.proj_in.weight", 4, (int[4]){C, C, 1, 1}, 0.3f, 0.0f);
    wb_add(&wb, "t.proj_in.bias", 1, sc, 0.1f, 0.0f);
    const char *b = "t.transformer_blocks.0";
    char n[128];
    const char *norms[3] = {"norm1", "norm2", "norm3"};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof(n), "%s.%s.weight", b, norms[i]);
        wb_add(&wb, n, 1, sc, 0.1f, 1.0f);
        snprintf(n, sizeof(n), "%s.%s.bias", b, norms[i]);
        wb_add(&wb, n, 1, sc, 0.1f, 0.0f);
    }
    for (int a = 1; a <= 2; a++) {
        int kv_in = (a == 2 || only_cross) ? Dc : C;
        snprintf(n, sizeof(n), "%s.attn%d.to_q.weight", b, a);
        wb_add(&wb, n, 2, (int[2]){C, C}, 0.4f, 0.0f);
        snprintf(n, sizeof(n), "%s.attn%d.to_k.weight", b, a);
        wb_add(&wb, n, 2, (int[2]){C, kv_in}, 0.4f, 0.0f);
        snprintf(n, sizeof(n), "%s.attn%d.to_v.weight", b, a);
        wb_add(&wb, n, 2, (int[2]){C, kv_in}, 0.4f, 0.0f);
        snprintf(n, sizeof(n), "%s.attn%d.to_out.0.weight", b, a);
        wb_add(&wb, n, 2, (int[2]){C, C}, 0.3f, 0.0f);
        snprintf(n, sizeof(n), "%s.attn%d.to_out.0.bias", b, a);
        wb_add(&wb, n, 1, sc, 0.1f, 0.0f);
    }
    snprintf(n, sizeof(n), "%s.ff.net.0.proj.weight", b);
    wb_add(&wb, n, 2, (int[2]){2 * F, C}, 0.3f, 0.0f);
    snprintf(n, sizeof(n), "%s.ff.net.0.proj.bias", b);
    wb_add(&wb, n, 1, (int[1]){2 * F}, 0.1f, 0.0f);
    snprintf(n, sizeof(n), "%s.ff.net.2.weight", b);
    wb_add(&wb, n, 2, (int[2]){C, F}, 0.2f, 0.0f);
    snprintf(n, sizeof(n), "%s.ff.net.2.bias", b);
    wb_add(&wb, n, 1, sc, 0.1f, 0.0f);
    if (linear) wb_add(&wb, "t.proj_out.weight", 2, (int[2]){C, C}, 0.3f, 0.0f);
    else wb_add(&wb, "t.proj_out.weight", 4, (int[4]){C, C, 1, 1}, 0.3f, 0.0f);
    wb_add(&wb, "t.proj_out.bias", 1, sc, 0.1f, 0.0f);
    SafeTensors st;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_unet_blocks_%d.safetensors", (int)getpid());
    if (wb_write(&wb, g_tmp, &st)) {
        CHECK(0, "write weights: %s", sd_last_error());
        wb_free(&wb);
        return;
    }
    NnWeights w;
    nn_weights_init(&w, &st, "");
    Transformer2D t;
    int rc = transformer2d_load(&w, &t, "t", C, heads, hd, Dc, 2, linear, only_cross);
    CHECK(rc == 0, "transformer load: %s", sd_last_error());
    if (rc) {
        nn_weights_free(&w);
        st_close(&st);
        unlink(g_tmp);
        wb_free(&wb);
        return;
    }

    float x[2 * 8 * 12], x0[2 * 8 * 12], ctx[2 * 5 * 6], want[2 * 8 * 12];
    test_fill(x, B * C * HW, 11);
    test_fill(ctx, B * L * Dc, 12);
    memcpy(x0, x, sizeof(x));
    Arena arena;
    arena_init(&arena, 1 << 20);
    ModuleCaptures cap;
    const char *paths[] = {"T.transformer_blocks.0.attn1"};
    captures_init(&cap, paths, 1);
    rc = transformer2d_forward(&t, x, B, H, W, ctx, L, &arena, &cap, "T");
    CHECK(rc == 0 && arena.used == 0, "transformer forward");

    // reference
    float nrm[2 * 8 * 12], rows[2 * 12 * 8], hs[2 * 12 * 8], nn[2 * 12 * 8], q[2 * 12 * 8], k[2 * 12 * 8],
        v[2 * 12 * 8], o[2 * 12 * 8], a[2 * 12 * 8], attn1[2 * 12 * 8];
    float pr[2 * 12 * 64], g[2 * 12 * 32];
    reference_groupnorm(x0, nrm, wb_get(&wb, "t.norm.weight"), wb_get(&wb, "t.norm.bias"), NULL, B, C, HW, 2, 1e-6f,
                        NULL, NULL);
    for (int bb = 0; bb < B; bb++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) rows[(bb * HW + i) * C + c] = nrm[(bb * C + c) * HW + i];
    reference_linear(rows, wb_get(&wb, "t.proj_in.weight"), wb_get(&wb, "t.proj_in.bias"), hs, B * HW, C, C);
    for (int at = 1; at <= 2; at++) {
        snprintf(n, sizeof(n), "%s.norm%d.weight", b, at);
        char nb[128];
        snprintf(nb, sizeof(nb), "%s.norm%d.bias", b, at);
        reference_layernorm(hs, nn, wb_get(&wb, n), wb_get(&wb, nb), B * HW, C, 1e-5f);
        int cross = at == 2 || only_cross;
        const float *kv = cross ? ctx : nn;
        int Lk = cross ? L : HW, din = cross ? Dc : C;
        char wq[128], wk[128], wv[128], wo[128], bo[128];
        snprintf(wq, sizeof(wq), "%s.attn%d.to_q.weight", b, at);
        snprintf(wk, sizeof(wk), "%s.attn%d.to_k.weight", b, at);
        snprintf(wv, sizeof(wv), "%s.attn%d.to_v.weight", b, at);
        snprintf(wo, sizeof(wo), "%s.attn%d.to_out.0.weight", b, at);
        snprintf(bo, sizeof(bo), "%s.attn%d.to_out.0.bias", b, at);
        reference_linear(nn, wb_get(&wb, wq), NULL, q, B * HW, C, C);
        reference_linear(kv, wb_get(&wb, wk), NULL, k, B * Lk, din, C);
        reference_linear(kv, wb_get(&wb, wv), NULL, v, B * Lk, din, C);
        reference_attention(q, k, v, o, B, heads, HW, Lk, hd, (float)(1.0 / sqrt((double)hd)), 0, NULL);
        reference_linear(o, wb_get(&wb, wo), wb_get(&wb, bo), a, B * HW, C, C);
        if (at == 1) memcpy(attn1, a, sizeof(a));
        for (int i = 0; i < B * HW * C; i++) hs[i] += a[i];
    }
    snprintf(n, sizeof(n), "%s.norm3.weight", b);
    char nb3[128];
    snprintf(nb3, sizeof(nb3), "%s.norm3.bias", b);
    reference_layernorm(hs, nn, wb_get(&wb, n), wb_get(&wb, nb3), B * HW, C, 1e-5f);
    snprintf(n, sizeof(n), "%s.ff.net.0.proj.weight", b);
    char nb0[128];
    snprintf(nb0, sizeof(nb0), "%s.ff.net.0.proj.bias", b);
    reference_linear(nn, wb_get(&wb, n), wb_get(&wb, nb0), pr, B * HW, C, 2 * F);
    for (int r = 0; r < B * HW; r++)
        for (int j = 0; j < F; j++) {
            double gate = pr[r * 2 * F + F + j];
            g[r * F + j] = (float)(pr[r * 2 * F + j] * 0.5 * gate * (1.0 + erf(gate / sqrt(2.0))));
        }
    snprintf(n, sizeof(n), "%s.ff.net.2.weight", b);
    char nb2[128];
    snprintf(nb2, sizeof(nb2), "%s.ff.net.2.bias", b);
    reference_linear(g, wb_get(&wb, n), wb_get(&wb, nb2), a, B * HW, F, C);
    for (int i = 0; i < B * HW * C; i++) hs[i] += a[i];
    reference_linear(hs, wb_get(&wb, "t.proj_out.weight"), wb_get(&wb, "t.proj_out.bias"), o, B * HW, C, C);
    for (int bb = 0; bb < B; bb++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++)
                want[(bb * C + c) * HW + i] = o[(bb * HW + i) * C + c] + x0[(bb * C + c) * HW + i];
    double e = rel_err(x, want, B * C * HW);
    CHECK(e < 2e-5, "transformer linear %d only_cross %d: rel err %g", linear, only_cross, e);
    const Tensor *c1 = captures_get(&cap, "T.transformer_blocks.0.attn1");
    CHECK(c1 && c1->ndim == 3 && c1->shape[1] == HW && rel_err(c1->data, attn1, B * HW * C) < 2e-5,
          "attn1 capture (B, HW, C) before the residual add");
    captures_free(&cap);
    nn_weights_free(&w);  // before transformer2d_free: the list points into t.blocks
    transformer2d_free(&t);
    arena_free(&arena);
    st_close(&st);
    unlink(g_tmp);
    wb_free(&wb);
}

static void test_vae_normal(void) {
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double z = vae_normal(42, (uint64_t)i);
        s += z;
        s2 += z * z;
    }
    double m = s / n, v = s2 / n - m * m;
    CHECK(fabs(m) < 0.01 && fabs(v - 1.0) < 0.02, "vae_normal mean %g var %g", m, v);
    CHECK(vae_normal(42, 7) == vae_normal(42, 7) && vae_normal(42, 7) != vae_normal(43, 7), "vae_normal determinism");
    float mean[3] = {1, 2, 3}, logvar[3] = {-60, 0, 0}, z[3];
    vae_latent(mean, logvar, 3, 0.5f, 0, 0, z);
    CHECK(z[0] == 0.5f && z[1] == 1.0f && z[2] == 1.5f, "latent = mean * scaling_factor");
    vae_latent(mean, logvar, 3, 0.5f, 1, 5, z);
    CHECK(fabsf(z[0] - 0.5f) < 1e-6f && fabsf(z[1] - 0.5f * (2 + vae_normal(5, 1))) < 1e-6f, "sampled latent");
}

// ---- UNet-level checks on a golden case's config and weights ------------------------------

static JsonValue *cfg_key(JsonValue *cfg, const char *key) { return (JsonValue *)json_get(cfg, key); }

static void test_unet_properties(void) {
    const char *dir = "golden/unet_sd21_linear";
    char path[512];
    JsonValue root;
    snprintf(path, sizeof(path), "%s/case.json", dir);
    if (json_parse_file(path, &root)) {
        printf("SKIP unet properties: %s not found\n", path);
        return;
    }
    JsonValue *cfg = (JsonValue *)json_get(&root, "config");
    // Each step needs the one before: a failure stops the test (the sizes below would be 0).
    SafeTensors st, tens;
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    if (st_open(&st, path)) {
        CHECK(0, "open weights: %s", sd_last_error());
        json_free(&root);
        return;
    }
    snprintf(path, sizeof(path), "%s/tensors.safetensors", dir);
    if (st_open(&tens, path)) {
        CHECK(0, "open tensors: %s", sd_last_error());
        st_close(&st);
        json_free(&root);
        return;
    }
    UNet u;
    Tensor sample, ts, ctx;
    memset(&sample, 0, sizeof(sample)), memset(&ts, 0, sizeof(ts)), memset(&ctx, 0, sizeof(ctx));
    int loaded = unet_load(&u, cfg, &st, "", -1) == 0;
    if (!loaded || st_load(&tens, "input.sample", 0, NULL, &sample) || st_load(&tens, "input.timestep", 0, NULL, &ts) ||
        st_load(&tens, "input.encoder_hidden_states", 0, NULL, &ctx) || sample.ndim != 4 || ctx.ndim != 3) {
        CHECK(0, "unet load and inputs: %s", sd_last_error());
        if (loaded) unet_free(&u);
        tensor_free(&sample), tensor_free(&ts), tensor_free(&ctx);
        st_close(&st);
        st_close(&tens);
        json_free(&root);
        return;
    }
    CHECK(1, "unet load");
    int B = sample.shape[0], h = sample.shape[2], w = sample.shape[3], L = ctx.shape[1];
    int64_t n = unet_output_floats(&u, B, h, w);
    float *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float)), *o3 = malloc(n * sizeof(float));

    // feature paths: SPEC.md section 6 order
    const char *sfx[2] = {"attn1", "conv2"};
    char **paths;
    int np;
    CHECK(unet_up_block_paths(&u, sfx, 2, &paths, &np) == 0, "up block paths");
    int expect = 0;
    for (int i = 0; i < u.n_blocks; i++) expect += u.up_blocks[i].num_layers * (1 + u.up_blocks[i].has_attention);
    CHECK(np == expect, "%d feature paths, expected %d", np, expect);
    int order_ok = 1, last_block = 0, seen_conv2 = 0;
    for (int i = 0; i < np; i++) {
        int blk = atoi(paths[i] + strlen("up_blocks."));
        if (blk != last_block) seen_conv2 = 0, order_ok &= blk == last_block + 1, last_block = blk;
        if (strstr(paths[i], "conv2")) seen_conv2 = 1;
        else order_ok &= !seen_conv2 && strstr(paths[i], ".attn1") != NULL;
    }
    CHECK(order_ok && np > 0 && strcmp(paths[0], "up_blocks.0.resnets.0.conv2") == 0,
          "paths ordered by block, attn1 before conv2 (first %s)", np ? paths[0] : "-");

    // no captures vs. every feature captured: the same bits; 1 vs 2 threads: the same bits
    // the arena starts empty and takes its size in the first call; the second runs in one block of the peak
    Arena arena = {0};
    int rc = unet_forward(&u, sample.data, B, h, w, ts.data, ctx.data, L, NULL, NULL, &arena, o1);
    CHECK(rc == 0 && arena.used == 0 && arena.peak > 0 && arena.capacity >= arena.peak,
          "forward in a growing arena: %s (peak %zu, %zu bytes kept)", rc ? sd_last_error() : "ok", arena.peak,
          arena.capacity);
    size_t peak1 = arena.peak, cap1 = arena.capacity;
    ModuleCaptures cap;
    captures_init(&cap, (const char *const *)paths, np);
    rc = unet_forward(&u, sample.data, B, h, w, ts.data, ctx.data, L, NULL, &cap, &arena, o2);
    CHECK(rc == 0 && memcmp(o1, o2, n * sizeof(float)) == 0, "captures do not change the output");
    CHECK(arena.peak == peak1 && arena.capacity == cap1, "the second call fits the first one's arena (peak %zu, was %zu)",
          arena.peak, peak1);
    const Tensor *t0 = captures_get(&cap, paths[np - 1]);
    CHECK(t0 && t0->ndim == 4 && t0->shape[0] == B, "last feature captured (B, C, h, w)");
    int nthreads = omp_get_max_threads();
    omp_set_num_threads(nthreads > 1 ? 1 : 2);
    rc = unet_forward(&u, sample.data, B, h, w, ts.data, ctx.data, L, NULL, NULL, &arena, o3);
    omp_set_num_threads(nthreads);
    CHECK(rc == 0 && memcmp(o1, o3, n * sizeof(float)) == 0, "same bits with another thread count");

    // a misspelt capture is an error after the forward
    ModuleCaptures bad;
    const char *badp[1] = {"up_blocks.1.attentions.0.transformer_blocks.0.attn3"};
    captures_init(&bad, badp, 1);
    rc = unet_forward(&u, sample.data, B, h, w, ts.data, ctx.data, L, NULL, &bad, &arena, o3);
    CHECK(rc != 0 && strstr(sd_last_error(), "attn3"), "unknown capture path: %s", sd_last_error());
    captures_free(&bad);
    captures_free(&cap);
    unet_paths_free(paths, np);
    arena_free(&arena);
    unet_free(&u);

    // config / weights mismatch: errors name the tensor and both shapes
    JsonValue *cad = cfg_key(cfg, "cross_attention_dim");
    double old = cad->number;
    cad->number = old + 8;
    rc = unet_load(&u, cfg, &st, "", -1);
    CHECK(rc != 0 && strstr(sd_last_error(), "attn2.to_k.weight") && strstr(sd_last_error(), "expected ("),
          "cross_attention_dim mismatch: %s", sd_last_error());
    cad->number = old;
    JsonValue *lpb = cfg_key(cfg, "layers_per_block");
    old = lpb->number;
    lpb->number = old + 1;
    rc = unet_load(&u, cfg, &st, "", -1);
    CHECK(rc != 0 && strstr(sd_last_error(), "down_blocks.0.resnets.2"), "missing tensor: %s", sd_last_error());
    lpb->number = old;
    JsonValue *ahd = cfg_key(cfg, "attention_head_dim");
    old = ahd->items[0].number;
    ahd->items[0].number = 3;  // 16 channels / 3 heads: inner 15
    rc = unet_load(&u, cfg, &st, "", -1);
    CHECK(rc != 0 && strstr(sd_last_error(), "down_blocks.0.attentions.0.") && strstr(sd_last_error(), "(15, 16)"),
          "wrong head count: %s", sd_last_error());
    ahd->items[0].number = old;
    rc = unet_load(&u, cfg, &st, "unet.", -1);
    CHECK(rc != 0 && strstr(sd_last_error(), "unet.conv_in.weight"), "prefix: %s", sd_last_error());
    CHECK(unet_load(&u, cfg, &st, "", -1) == 0, "reload after the failures");
    unet_free(&u);

    free(o1), free(o2), free(o3);
    tensor_free(&sample), tensor_free(&ts), tensor_free(&ctx);
    st_close(&st);
    st_close(&tens);
    json_free(&root);
}

int main(void) {
    test_timestep_embedding();
    test_nearest();
    test_resnet(8, 12, 0, 1.0f);
    test_resnet(6, 6, 1, 2.0f);
    test_downsample(0);
    test_downsample(1);
    test_transformer(1, 0);
    test_transformer(0, 0);
    test_transformer(1, 1);
    test_vae_normal();
    test_unet_properties();
    return test_report("test_unet_blocks");
}
