// CLIPTextModel forward (see clip.h for the equations and weight names).
#include "models/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"

int clip_text_config_from_json(const JsonValue *config, ClipTextConfig *out) {
    const JsonValue *text = json_get(config, "text_config");  // a full CLIPConfig
    const JsonValue *c = text && text->type == JSON_OBJECT ? text : config;
    if (!c || c->type != JSON_OBJECT) return sd_errorf("CLIP text config: expected a JSON object");
    memset(out, 0, sizeof(*out));
    double eps;
    const char *act;
    if (json_get_int(c, "vocab_size", 49408, &out->vocab_size) || json_get_int(c, "hidden_size", 512, &out->hidden_size) ||
        json_get_int(c, "intermediate_size", 2048, &out->intermediate_size) ||
        json_get_int(c, "num_hidden_layers", 12, &out->num_hidden_layers) ||
        json_get_int(c, "num_attention_heads", 8, &out->num_attention_heads) ||
        json_get_int(c, "max_position_embeddings", 77, &out->max_position_embeddings) ||
        json_get_double(c, "layer_norm_eps", 1e-5, &eps) || json_get_string(c, "hidden_act", "quick_gelu", &act))
        return sd_error_context("CLIP text config");
    out->layer_norm_eps = (float)eps;
    if (strcmp(act, "gelu") == 0) out->hidden_act = CLIP_ACT_GELU;
    else if (strcmp(act, "quick_gelu") == 0) out->hidden_act = CLIP_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0) out->hidden_act = CLIP_ACT_GELU_TANH;
    else if (strcmp(act, "relu") == 0) out->hidden_act = CLIP_ACT_RELU;
    else if (strcmp(act, "silu") == 0 || strcmp(act, "swish") == 0) out->hidden_act = CLIP_ACT_SILU;
    else
        return sd_errorf("CLIP text config: hidden_act '%s' is not supported (gelu, quick_gelu, gelu_new, "
                         "gelu_pytorch_tanh, relu, silu)", act);
    // Sizes far above any CLIP text encoder (SD: vocab 49408, hidden 1024, MLP 4096, 23-24 layers, 77
    // positions) are a broken config.json, refused before any buffer is sized from them.
    const ClipTextConfig *k = out;
    const struct { const char *key; int value, lo, hi; } sizes[] = {
        {"vocab_size", k->vocab_size, 1, 1 << 20},
        {"hidden_size", k->hidden_size, 1, 65536},
        {"intermediate_size", k->intermediate_size, 1, 4 * 65536},
        {"num_hidden_layers", k->num_hidden_layers, 0, 1024},
        {"num_attention_heads", k->num_attention_heads, 1, 65536},
        {"max_position_embeddings", k->max_position_embeddings, 1, 65536},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        if (sizes[i].value < sizes[i].lo || sizes[i].value > sizes[i].hi)
            return sd_errorf("CLIP text config '%s' is %d: expected %d..%d", sizes[i].key, sizes[i].value, sizes[i].lo,
                             sizes[i].hi);
    if (!(eps > 0.0) || !isfinite((float)eps))
        return sd_errorf("CLIP text config 'layer_norm_eps' is %g: expected a finite number > 0", eps);
    if (k->hidden_size % k->num_attention_heads != 0)
        return sd_errorf("CLIP text config: hidden_size %d is not divisible by num_attention_heads %d", k->hidden_size,
                         k->num_attention_heads);
    return 0;
}

static int load_layer(NnWeights *w, const ClipTextConfig *c, int i, ClipEncoderLayer *l) {
    char name[128];
    const int D = c->hidden_size, I = c->intermediate_size;
    const float eps = c->layer_norm_eps;
#define LAYER_NAME(suffix) (snprintf(name, sizeof(name), "text_model.encoder.layers.%d.%s", i, suffix), name)
    if (nn_layernorm_load(w, &l->layer_norm1, LAYER_NAME("layer_norm1"), D, eps)) return SD_FAIL;
    if (nn_linear_load(w, &l->q_proj, LAYER_NAME("self_attn.q_proj"), D, D, 1)) return SD_FAIL;
    if (nn_linear_load(w, &l->k_proj, LAYER_NAME("self_attn.k_proj"), D, D, 1)) return SD_FAIL;
    if (nn_linear_load(w, &l->v_proj, LAYER_NAME("self_attn.v_proj"), D, D, 1)) return SD_FAIL;
    if (nn_linear_load(w, &l->out_proj, LAYER_NAME("self_attn.out_proj"), D, D, 1)) return SD_FAIL;
    if (nn_layernorm_load(w, &l->layer_norm2, LAYER_NAME("layer_norm2"), D, eps)) return SD_FAIL;
    if (nn_linear_load(w, &l->fc1, LAYER_NAME("mlp.fc1"), D, I, 1)) return SD_FAIL;
    if (nn_linear_load(w, &l->fc2, LAYER_NAME("mlp.fc2"), I, D, 1)) return SD_FAIL;
#undef LAYER_NAME
    return 0;
}

int clip_text_load(ClipTextModel *m, const ClipTextConfig *config, const SafeTensors *st, const char *prefix) {
    memset(m, 0, sizeof(*m));
    m->config = *config;
    const ClipTextConfig *c = &m->config;
    if (!prefix) {
        prefix = "";
        if (!st_find(st, "text_model.embeddings.token_embedding.weight") &&
            st_find(st, "text_encoder.text_model.embeddings.token_embedding.weight"))
            prefix = "text_encoder.";
    }
    nn_weights_init(&m->weights, st, prefix);
    NnWeights *w = &m->weights;
    const int D = c->hidden_size;
    int tok_shape[2] = {c->vocab_size, D}, pos_shape[2] = {c->max_position_embeddings, D};
    if (nn_weights_load(w, "text_model.embeddings.token_embedding.weight", 2, tok_shape, &m->token_embedding) ||
        nn_weights_load(w, "text_model.embeddings.position_embedding.weight", 2, pos_shape, &m->position_embedding))
        goto fail;
    m->layers = (ClipEncoderLayer *)calloc((size_t)(c->num_hidden_layers ? c->num_hidden_layers : 1),
                                           sizeof(ClipEncoderLayer));
    if (!m->layers) {
        sd_errorf("CLIP text model: out of memory");
        goto fail;
    }
    for (int i = 0; i < c->num_hidden_layers; i++)
        if (load_layer(w, c, i, &m->layers[i])) goto fail;
    if (nn_layernorm_load(w, &m->final_layer_norm, "text_model.final_layer_norm", D, c->layer_norm_eps)) goto fail;
    return 0;
fail:
    sd_error_context("CLIP text model");
    clip_text_free(m);
    return SD_FAIL;
}

void clip_text_free(ClipTextModel *m) {
    nn_weights_free(&m->weights);
    free(m->layers);
    memset(m, 0, sizeof(*m));
}

static void activation_inplace(ClipActivation act, float *x, int64_t n) {
    switch (act) {
    case CLIP_ACT_GELU: gelu_inplace(x, n); break;
    case CLIP_ACT_QUICK_GELU: quick_gelu_inplace(x, n); break;
    case CLIP_ACT_GELU_TANH: gelu_tanh_inplace(x, n); break;
    case CLIP_ACT_RELU: relu_inplace(x, n); break;
    case CLIP_ACT_SILU: silu_inplace(x, n); break;
    }
}

// x (B, L, D) += out_proj(causal_attention(layer_norm1(x))); then x += fc2(act(fc1(layer_norm2(x)))).
static int encoder_layer_forward(const ClipEncoderLayer *l, const ClipTextConfig *c, float *x, int B, int L,
                                 float *h, float *q, float *k, float *v, float *attn, float *mlp, Arena *arena) {
    const int rows = B * L, D = c->hidden_size, heads = c->num_attention_heads, head_dim = D / heads;
    const int64_t n = (int64_t)rows * D;
    nn_layernorm(&l->layer_norm1, x, h, rows);
    if (nn_linear(&l->q_proj, h, q, rows) || nn_linear(&l->k_proj, h, k, rows) || nn_linear(&l->v_proj, h, v, rows))
        return SD_FAIL;
    // softmax(q k^T * head_dim^-0.5 + causal mask) v, per head; transformers scales q after its bias,
    // the same product up to rounding.
    const float scale = 1.0f / sqrtf((float)head_dim);
    // a bf16 model (its projections packed for bf16) runs the two products in bf16 too
    if (l->q_proj.bf16.data ? attention_forward_bf16(q, k, v, attn, B, heads, L, L, head_dim, scale, 1, arena)
                            : attention_forward(q, k, v, attn, B, heads, L, L, head_dim, scale, 1, arena))
        return SD_FAIL;
    if (nn_linear(&l->out_proj, attn, h, rows)) return SD_FAIL;
    add_inplace(x, h, n);
    nn_layernorm(&l->layer_norm2, x, h, rows);
    if (nn_linear(&l->fc1, h, mlp, rows)) return SD_FAIL;
    activation_inplace(c->hidden_act, mlp, (int64_t)rows * c->intermediate_size);
    if (nn_linear(&l->fc2, mlp, h, rows)) return SD_FAIL;
    add_inplace(x, h, n);
    return 0;
}

int clip_text_forward(const ClipTextModel *m, const int64_t *input_ids, int batch, int seq_len,
                      float *last_hidden_state, ModuleCaptures *captures, Arena *arena) {
    const ClipTextConfig *c = &m->config;
    if (batch < 1 || seq_len < 1)
        return sd_errorf("CLIP text model: input_ids shape (%d, %d) must be at least (1, 1)", batch, seq_len);
    if (seq_len > c->max_position_embeddings)
        return sd_errorf("CLIP text model: sequence length %d exceeds max_position_embeddings %d", seq_len,
                         c->max_position_embeddings);
    for (int64_t i = 0; i < (int64_t)batch * seq_len; i++)
        if (input_ids[i] < 0 || input_ids[i] >= c->vocab_size)
            return sd_errorf("CLIP text model: input_ids[%lld][%lld] = %lld is outside the vocabulary [0, %d)",
                             (long long)(i / seq_len), (long long)(i % seq_len), (long long)input_ids[i],
                             c->vocab_size);
    const int rows = batch * seq_len, D = c->hidden_size;
    const size_t mark = arena_mark(arena);
    float *x = nn_alloc(arena, (int64_t)rows * D), *h = nn_alloc(arena, (int64_t)rows * D);
    float *q = nn_alloc(arena, (int64_t)rows * D), *k = nn_alloc(arena, (int64_t)rows * D);
    float *v = nn_alloc(arena, (int64_t)rows * D), *attn = nn_alloc(arena, (int64_t)rows * D);
    float *mlp = nn_alloc(arena, (int64_t)rows * c->intermediate_size);
    int rc = SD_FAIL;
    if (!x || !h || !q || !k || !v || !attn || !mlp) goto done;
    const int shape[3] = {batch, seq_len, D};

    // Embeddings: token_embedding[id] + position_embedding[position].
    for (int r = 0; r < rows; r++) {
        const float *te = m->token_embedding.data + input_ids[r] * (int64_t)D;
        const float *pe = m->position_embedding.data + (int64_t)(r % seq_len) * D;
        float *xr = x + (int64_t)r * D;
        for (int d = 0; d < D; d++) xr[d] = te[d] + pe[d];
    }
    if (captures && captures_offer(captures, "text_model.embeddings", NULL, x, 3, shape)) goto done;

    for (int i = 0; i < c->num_hidden_layers; i++) {
        if (encoder_layer_forward(&m->layers[i], c, x, batch, seq_len, h, q, k, v, attn, mlp, arena)) goto done;
        if (captures) {
            char path[64];
            snprintf(path, sizeof(path), "text_model.encoder.layers.%d", i);
            if (captures_offer(captures, path, NULL, x, 3, shape)) goto done;
        }
    }
    nn_layernorm(&m->final_layer_norm, x, last_hidden_state, rows);
    if (captures && captures_offer(captures, "text_model.final_layer_norm", NULL, last_hidden_state, 3, shape))
        goto done;
    rc = 0;
done:
    arena_end(arena, mark);
    return rc;
}

int clip_text_forward_run(const ClipTextModel *m, const int64_t *input_ids, int batch, int seq_len,
                          float *last_hidden_state, ModuleCaptures *captures) {
    Arena arena = {0};
    int rc = clip_text_forward(m, input_ids, batch, seq_len, last_hidden_state, captures, &arena);
    arena_free(&arena);
    return rc;
}
