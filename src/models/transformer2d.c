// Attention, BasicTransformerBlock, Transformer2DModel (see transformer2d.h).
#include "models/transformer2d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// ---- Attention -------------------------------------------------------------

int attention_layer_load(NnWeights *w, AttentionLayer *a, const char *name, int query_dim, int context_dim, int heads,
                         int head_dim, int qkv_bias, int legacy_names) {
    char buf[NN_NAME_MAX];
    memset(a, 0, sizeof(*a));
    a->query_dim = query_dim;
    a->context_dim = context_dim;
    a->heads = heads;
    a->head_dim = head_dim;
    a->scale = (float)(1.0 / sqrt((double)head_dim));  // dim_head ** -0.5
    const int inner = heads * head_dim;
    // diffusers 0.17 names first; checkpoints saved before the Attention refactor use the old ones.
    const char *new_names[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    const char *old_names[4] = {"query", "key", "value", "proj_attn"};
    NnLinear *layers[4] = {&a->to_q, &a->to_k, &a->to_v, &a->to_out};
    for (int i = 0; i < 4; i++) {
        int in = i == 0 ? query_dim : i == 3 ? inner : context_dim;
        int out = i == 3 ? query_dim : inner;
        int bias = i == 3 ? 1 : qkv_bias;
        const char *leaf = new_names[i];
        if (legacy_names) {
            snprintf(buf, sizeof(buf), "%s.%s.weight", name, new_names[i]);
            if (!nn_weights_has(w, buf)) leaf = old_names[i];
        }
        snprintf(buf, sizeof(buf), "%s.%s", name, leaf);
        int rc = legacy_names ? nn_linear_load_any(w, layers[i], buf, in, out, bias)
                              : nn_linear_load(w, layers[i], buf, in, out, bias);
        if (rc) return SD_FAIL;
    }
    return 0;
}

int attention_layer_forward(const AttentionLayer *a, const float *x, int B, int N, const float *context, int L,
                            float *out, Arena *arena) {
    const int inner = a->heads * a->head_dim;
    if (!context) {
        context = x;
        L = N;
    }
    size_t mark = arena_mark(arena);
    int rc = SD_FAIL;
    float *q = nn_alloc(arena, (int64_t)B * N * inner);
    float *k = q ? nn_alloc(arena, (int64_t)B * L * inner) : NULL;
    float *v = k ? nn_alloc(arena, (int64_t)B * L * inner) : NULL;
    float *o = v ? nn_alloc(arena, (int64_t)B * N * inner) : NULL;
    if (!o) goto done;
    if (nn_linear(&a->to_q, x, q, B * N) || nn_linear(&a->to_k, context, k, B * L) ||
        nn_linear(&a->to_v, context, v, B * L))
        goto done;
    // Heads are contiguous slices of the inner dim, as diffusers' head_to_batch_dim splits them.
    // A bf16 model (its projections packed for bf16) runs the two products in bf16 too.
    if (a->to_q.bf16.data ? attention_forward_bf16(q, k, v, o, B, a->heads, N, L, a->head_dim, a->scale, 0, arena)
                          : attention_forward(q, k, v, o, B, a->heads, N, L, a->head_dim, a->scale, 0, arena))
        goto done;
    if (nn_linear(&a->to_out, o, out, B * N)) goto done;
    rc = 0;
done:
    arena_reset(arena, mark);
    return rc;
}

// ---- BasicTransformerBlock ---------------------------------------------------

static int block_load(NnWeights *w, BasicTransformerBlock *b, const char *name, int dim, int heads, int head_dim,
                      int context_dim, int only_cross_attention) {
    char buf[NN_NAME_MAX];
    b->dim = dim;
    b->only_cross_attention = only_cross_attention;
    b->ff_inner = 4 * dim;
    snprintf(buf, sizeof(buf), "%s.norm1", name);
    if (nn_layernorm_load(w, &b->norm1, buf, dim, 1e-5f)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.attn1", name);
    if (attention_layer_load(w, &b->attn1, buf, dim, only_cross_attention ? context_dim : dim, heads, head_dim, 0, 0))
        return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.norm2", name);
    if (nn_layernorm_load(w, &b->norm2, buf, dim, 1e-5f)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.attn2", name);
    if (attention_layer_load(w, &b->attn2, buf, dim, context_dim, heads, head_dim, 0, 0)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.norm3", name);
    if (nn_layernorm_load(w, &b->norm3, buf, dim, 1e-5f)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.ff.net.0.proj", name);
    if (nn_linear_load_halves(w, &b->ff_value, &b->ff_gate, buf, dim, b->ff_inner)) return SD_FAIL;
    snprintf(buf, sizeof(buf), "%s.ff.net.2", name);
    return nn_linear_load(w, &b->ff_out, buf, b->ff_inner, dim, 1);
}

// FeedForward with GEGLU: out = ff.net.2(value * gelu(gate)), (value, gate) = chunk(ff.net.0.proj(x), 2).
// The two halves of the projection are two linears (loaded as such: the value rows of the weight
// come first); rows go in chunks so the 8*dim-wide hidden state of a 64x64 map is never whole.
static int feed_forward(const BasicTransformerBlock *b, const float *x, float *out, int rows, Arena *arena) {
    const int dim = b->dim, inner = b->ff_inner;
    int chunk = (int)((4 << 20) / (2 * (int64_t)inner));  // about 32 MB of hidden state per chunk
    if (chunk < 64) chunk = 64;
    if (chunk > rows) chunk = rows;
    size_t mark = arena_mark(arena);
    float *val = nn_alloc(arena, (int64_t)chunk * inner);
    float *gate = val ? nn_alloc(arena, (int64_t)chunk * inner) : NULL;
    if (!gate) {
        arena_reset(arena, mark);
        return SD_FAIL;
    }
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int n = rows - r0 < chunk ? rows - r0 : chunk;
        const float *xr = x + (int64_t)r0 * dim;
        if (nn_linear(&b->ff_value, xr, val, n) || nn_linear(&b->ff_gate, xr, gate, n)) {
            arena_reset(arena, mark);
            return SD_FAIL;
        }
        gelu_inplace(gate, (int64_t)n * inner);
        int64_t count = (int64_t)n * inner;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) val[i] *= gate[i];
        if (nn_linear(&b->ff_out, val, out + (int64_t)r0 * dim, n)) {
            arena_reset(arena, mark);
            return SD_FAIL;
        }
    }
    arena_reset(arena, mark);
    return 0;
}

// h (B*N, dim) in place: h += attn1(norm1(h)); h += attn2(norm2(h), context); h += ff(norm3(h)).
static int block_forward(const BasicTransformerBlock *b, float *h, int B, int N, const float *context, int L,
                         Arena *arena, ModuleCaptures *cap, const char *path) {
    const int dim = b->dim, rows = B * N;
    const int64_t count = (int64_t)rows * dim;
    int shape[3] = {B, N, dim};
    size_t mark = arena_mark(arena);
    int rc = SD_FAIL;
    float *n = nn_alloc(arena, count);
    float *a = n ? nn_alloc(arena, count) : NULL;
    if (!a) goto done;

    nn_layernorm(&b->norm1, h, n, rows);
    if (attention_layer_forward(&b->attn1, n, B, N, b->only_cross_attention ? context : NULL, L, a, arena)) goto done;
    if (captures_offer(cap, path, "attn1", a, 3, shape)) goto done;
    add_inplace(h, a, count);

    nn_layernorm(&b->norm2, h, n, rows);
    if (attention_layer_forward(&b->attn2, n, B, N, context, L, a, arena)) goto done;
    if (captures_offer(cap, path, "attn2", a, 3, shape)) goto done;
    add_inplace(h, a, count);

    nn_layernorm(&b->norm3, h, n, rows);
    if (feed_forward(b, n, a, rows, arena)) goto done;
    if (captures_offer(cap, path, "ff", a, 3, shape)) goto done;
    add_inplace(h, a, count);
    if (captures_offer(cap, path, NULL, h, 3, shape)) goto done;
    rc = 0;
done:
    arena_reset(arena, mark);
    return rc;
}

// ---- Transformer2DModel ------------------------------------------------------

int transformer2d_load(NnWeights *w, Transformer2D *t, const char *name, int in_channels, int heads, int head_dim,
                       int context_dim, int norm_groups, int use_linear_projection, int only_cross_attention) {
    char buf[NN_NAME_MAX];
    memset(t, 0, sizeof(*t));
    t->in_channels = in_channels;
    t->heads = heads;
    t->head_dim = head_dim;
    t->inner_dim = heads * head_dim;
    t->use_linear_projection = use_linear_projection;
    if (heads <= 0 || head_dim <= 0)
        return sd_errorf("%s: %d channels cannot be split into %d attention heads", name, in_channels, heads);
    snprintf(buf, sizeof(buf), "%s.norm", name);
    if (nn_groupnorm_load(w, &t->norm, buf, in_channels, norm_groups, 1e-6f)) return SD_FAIL;
    // A 1x1 conv on (B,C,H,W) is the same map as a linear on (B,HW,C): both load as linears; the conv
    // weight (out, in, 1, 1) must have exactly that shape.
    snprintf(buf, sizeof(buf), "%s.proj_in", name);
    int rc = use_linear_projection ? nn_linear_load(w, &t->proj_in, buf, in_channels, t->inner_dim, 1)
                                   : nn_linear_load_conv1x1(w, &t->proj_in, buf, in_channels, t->inner_dim, 1);
    if (rc) return SD_FAIL;
    t->num_layers = 1;  // transformer_layers_per_block is 1 throughout diffusers 0.17
    t->blocks = (BasicTransformerBlock *)calloc((size_t)t->num_layers, sizeof(BasicTransformerBlock));
    if (!t->blocks) return sd_errorf("out of memory");
    for (int i = 0; i < t->num_layers; i++) {
        char bname[NN_NAME_MAX - 32];  // room for the leaf names block_load appends
        snprintf(bname, sizeof(bname), "%s.transformer_blocks.%d", name, i);
        if (block_load(w, &t->blocks[i], bname, t->inner_dim, heads, head_dim, context_dim, only_cross_attention))
            return SD_FAIL;
    }
    snprintf(buf, sizeof(buf), "%s.proj_out", name);
    return use_linear_projection ? nn_linear_load(w, &t->proj_out, buf, t->inner_dim, in_channels, 1)
                                 : nn_linear_load_conv1x1(w, &t->proj_out, buf, t->inner_dim, in_channels, 1);
}

void transformer2d_free(Transformer2D *t) {
    free(t->blocks);
    t->blocks = NULL;
}

int transformer2d_forward(const Transformer2D *t, float *x, int B, int H, int W, const float *context, int L,
                          Arena *arena, ModuleCaptures *cap, const char *path) {
    const int C = t->in_channels, inner = t->inner_dim, HW = H * W;
    size_t mark = arena_mark(arena);
    int rc = SD_FAIL;
    char bpath[160];
    float *h = nn_alloc(arena, (int64_t)B * HW * inner);
    if (!h) goto done;
    {
        // h = proj_in(norm(x) as (B, HW, C)): the linear reads the (C, HW) map of each sample
        // as its transposed input, no (HW, C) copy
        size_t mark1 = arena_mark(arena);
        float *normed = nn_alloc(arena, (int64_t)B * C * HW);
        if (!normed) goto done;
        nn_groupnorm(&t->norm, x, normed, B, HW);
        for (int b = 0; b < B; b++)
            if (nn_linear_channels_first(&t->proj_in, normed + (int64_t)b * C * HW, h + (int64_t)b * HW * inner, HW))
                goto done;
        arena_reset(arena, mark1);
    }
    for (int i = 0; i < t->num_layers; i++) {
        if (cap) snprintf(bpath, sizeof(bpath), "%s.transformer_blocks.%d", path, i);
        if (block_forward(&t->blocks[i], h, B, HW, context, L, arena, cap, bpath)) goto done;
    }
    {
        // x += proj_out(h) back in (B, C, H, W)
        float *o = nn_alloc(arena, (int64_t)B * HW * C);
        if (!o) goto done;
        if (nn_linear(&t->proj_out, h, o, B * HW)) goto done;
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                float *xc = x + ((int64_t)b * C + c) * HW;
                const float *oc = o + (int64_t)b * HW * C + c;
                for (int i = 0; i < HW; i++) xc[i] += oc[(int64_t)i * C];
            }
    }
    if (captures_offer(cap, path, NULL, x, 4, (int[4]){B, C, H, W})) goto done;
    rc = 0;
done:
    arena_reset(arena, mark);
    return rc;
}
