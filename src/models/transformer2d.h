// The attention pieces of the diffusers UNet and VAE (diffusers 0.17.0):
//   AttentionLayer        <- attention_processor.py Attention + AttnProcessor (to_q, to_k, to_v, to_out.0)
//   BasicTransformerBlock <- attention.py BasicTransformerBlock (norm1 + attn1, norm2 + attn2, norm3 + GEGLU ff)
//   Transformer2D         <- transformer_2d.py Transformer2DModel, continuous input
//                            (GroupNorm eps 1e-6, proj_in, blocks, proj_out, + residual)
// Attention runs through attention_forward (online softmax, no Nq x Nk matrix).
#ifndef SD_MODELS_TRANSFORMER2D_H
#define SD_MODELS_TRANSFORMER2D_H

#include "models/capture.h"
#include "models/nn.h"

typedef struct {
    int query_dim, context_dim;  // context_dim: channels of the keys/values' input (== query_dim for self-attention)
    int heads, head_dim;         // inner = heads * head_dim
    float scale;                 // head_dim^-0.5
    NnLinear to_q, to_k, to_v, to_out;
} AttentionLayer;

// qkv_bias: to_q/to_k/to_v have biases (VAE); to_out always has one.
// legacy_names: also accept query/key/value/proj_attn (pre-0.14 VAE checkpoints), 1x1-conv-shaped weights too.
int attention_layer_load(NnWeights *w, AttentionLayer *a, const char *name, int query_dim, int context_dim, int heads,
                         int head_dim, int qkv_bias, int legacy_names);
// out (B, N, query_dim) = to_out(softmax(q k^T * scale) v) for x (B, N, query_dim) and
// context (B, L, context_dim) (NULL: self-attention, L = N).
int attention_layer_forward(const AttentionLayer *a, const float *x, int B, int N, const float *context, int L,
                            float *out, Arena *arena);

typedef struct {
    int dim;
    int only_cross_attention;  // attn1 attends to the context too
    NnLayerNorm norm1, norm2, norm3;
    AttentionLayer attn1, attn2;
    int ff_inner;              // 4 * dim
    NnLinear ff_value, ff_gate; // ff.net.0.proj (dim -> 2 * ff_inner) split: rows [0, inner) and [inner, 2 inner)
    NnLinear ff_out;           // ff.net.2: ff_inner -> dim
} BasicTransformerBlock;

typedef struct {
    int in_channels, inner_dim, heads, head_dim;
    int use_linear_projection;  // proj_in/out are nn.Linear; else 1x1 convs (same math on (B,HW,C))
    NnGroupNorm norm;
    NnLinear proj_in, proj_out;
    int num_layers;
    BasicTransformerBlock *blocks;
} Transformer2D;

int transformer2d_load(NnWeights *w, Transformer2D *t, const char *name, int in_channels, int heads, int head_dim,
                       int context_dim, int norm_groups, int use_linear_projection, int only_cross_attention);
// Frees the blocks array (free the NnWeights that loaded them first: it points into it).
void transformer2d_free(Transformer2D *t);

// x (B, C, H, W) is replaced by the block's output (x + proj_out(blocks(proj_in(norm(x))))).
// context (B, L, context_dim). Captures "<path>" (B,C,H,W), "<path>.transformer_blocks.<i>" (B,HW,inner),
// and ".attn1", ".attn2", ".ff" under it (B,HW,inner): attention outputs after to_out, before the residual add.
int transformer2d_forward(const Transformer2D *t, float *x, int B, int H, int W, const float *context, int L,
                          Arena *arena, ModuleCaptures *cap, const char *path);

#endif
