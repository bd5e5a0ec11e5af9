// transformers' CLIPTextModel (4.31 modeling_clip.py: CLIPTextTransformer), forward to last_hidden_state:
//
//   x = token_embedding[input_ids] + position_embedding[0..L)                  (B, L, D)
//   for each of num_hidden_layers encoder layers (pre-LayerNorm):
//       x = x + out_proj(causal_self_attention(layer_norm1(x)))               heads of D/heads, scale head_dim^-0.5
//       x = x + fc2(act(fc1(layer_norm2(x))))                                 act from hidden_act
//   last_hidden_state = final_layer_norm(x)
//
// The causal mask lets position i attend to positions j <= i; no padding mask (SD pipelines and
// SatDiFuser call the text encoder without an attention_mask, so padding tokens are attended to).
//
// Usage:
//   ClipTextConfig cfg;  clip_text_config_from_json(config_json, &cfg);
//   ClipTextModel m;     clip_text_load(&m, &cfg, &st, NULL);        // prefix found automatically
//   clip_text_forward_run(&m, ids, B, 77, out, NULL);                     // out (B, 77, hidden_size)
//   clip_text_free(&m);
//
// Weight names (CLIPTextModel.state_dict()), optionally behind a prefix such as "text_encoder.":
//   text_model.embeddings.token_embedding.weight (vocab, D), text_model.embeddings.position_embedding.weight
//   (max_positions, D), text_model.encoder.layers.<i>.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2,
//   mlp.fc1, mlp.fc2}.{weight,bias}, text_model.final_layer_norm.{weight,bias}.
// Captures (capture.h): "text_model.embeddings", "text_model.encoder.layers.<i>" (the hidden state after
// layer i), "text_model.final_layer_norm" (= last_hidden_state); all (B, L, D).
#ifndef SD_MODELS_CLIP_H
#define SD_MODELS_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "models/capture.h"
#include "models/nn.h"

typedef enum { CLIP_ACT_GELU, CLIP_ACT_QUICK_GELU, CLIP_ACT_GELU_TANH, CLIP_ACT_RELU, CLIP_ACT_SILU } ClipActivation;

typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings;
    ClipActivation hidden_act;
    float layer_norm_eps;
} ClipTextConfig;

typedef struct {
    NnLayerNorm layer_norm1, layer_norm2;
    NnLinear q_proj, k_proj, v_proj, out_proj;
    NnLinear fc1, fc2;
} ClipEncoderLayer;

typedef struct {
    ClipTextConfig config;
    Tensor token_embedding;     // (vocab_size, hidden_size)
    Tensor position_embedding;  // (max_position_embeddings, hidden_size)
    ClipEncoderLayer *layers;   // num_hidden_layers of them
    NnLayerNorm final_layer_norm;
    NnWeights weights;
} ClipTextModel;

// A CLIPTextConfig as config.json holds it (a CLIPConfig with a "text_config" object also works).
// Absent keys take CLIPTextConfig's defaults (vocab 49408, hidden 512, MLP 2048, 12 layers, 8 heads,
// 77 positions, quick_gelu, eps 1e-5). hidden_act: "gelu" (exact erf), "quick_gelu", "gelu_new" /
// "gelu_pytorch_tanh" (tanh approximation), "relu", "silu" / "swish".
int clip_text_config_from_json(const JsonValue *config, ClipTextConfig *out);

// prefix: prepended to every weight name ("text_encoder." in a pipeline file); NULL: "" or
// "text_encoder.", whichever holds text_model.embeddings.token_embedding.weight. st must stay open.
int clip_text_load(ClipTextModel *m, const ClipTextConfig *config, const SafeTensors *st, const char *prefix);
void clip_text_free(ClipTextModel *m);

// input_ids (batch, seq_len) int64, each in [0, vocab_size), seq_len <= max_position_embeddings
// -> last_hidden_state (batch, seq_len, hidden_size). captures may be NULL. The arena (grown as needed) is
// reset before returning.
int clip_text_forward(const ClipTextModel *m, const int64_t *input_ids, int batch, int seq_len,
                      float *last_hidden_state, ModuleCaptures *captures, Arena *arena);
// The same with an arena made inside.
int clip_text_forward_run(const ClipTextModel *m, const int64_t *input_ids, int batch, int seq_len,
                          float *last_hidden_state, ModuleCaptures *captures);

#endif
