// The text encoder's names -> transformers CLIPTextModel: SD 2.x OpenCLIP (cond_stage_model.model.*)
// and SD 1.x CLIP (cond_stage_model.transformer.*), their rename tables and name maps
// (ldm_rename.h). Reference: diffusers 0.17.0 convert_from_ckpt.py and open_clip/transformer.py
// (Transformer, ResidualAttentionBlock).
#include <stdio.h>
#include <string.h>

#include "convert/ldm_rename.h"
#include "core/error.h"

// clang-format off
// SD 2.x text encoder, cond_stage_model.model.* (open_clip) -> transformers CLIPTextModel.
static const Rename kOpenClipTop[] = {
    {"token_embedding.weight", "embeddings.token_embedding.weight",    REQ, AS_IS},
    {"positional_embedding",   "embeddings.position_embedding.weight", REQ, AS_IS},
    {"ln_final.weight",        "final_layer_norm.weight",              REQ, AS_IS},
    {"ln_final.bias",          "final_layer_norm.bias",                REQ, AS_IS},
};
// open_clip ResidualAttentionBlock (nn.MultiheadAttention: one packed in_proj) -> CLIPEncoderLayer.
static const Rename kOpenClipLayer[] = {
    {"ln_1.weight",          "layer_norm1.weight",            REQ, AS_IS},
    {"ln_1.bias",            "layer_norm1.bias",              REQ, AS_IS},
    {"attn.in_proj_weight",  "self_attn.{q,k,v}_proj.weight", REQ, SPLIT_QKV},
    {"attn.in_proj_bias",    "self_attn.{q,k,v}_proj.bias",   REQ, SPLIT_QKV},
    {"attn.out_proj.weight", "self_attn.out_proj.weight",     REQ, AS_IS},
    {"attn.out_proj.bias",   "self_attn.out_proj.bias",       REQ, AS_IS},
    {"ln_2.weight",          "layer_norm2.weight",            REQ, AS_IS},
    {"ln_2.bias",            "layer_norm2.bias",              REQ, AS_IS},
    {"mlp.c_fc.weight",      "mlp.fc1.weight",                REQ, AS_IS},
    {"mlp.c_fc.bias",        "mlp.fc1.bias",                  REQ, AS_IS},
    {"mlp.c_proj.weight",    "mlp.fc2.weight",                REQ, AS_IS},
    {"mlp.c_proj.bias",      "mlp.fc2.bias",                  REQ, AS_IS},
};
// SD 1.x text encoder, cond_stage_model.transformer.text_model.*: already transformers names.
static const Rename kClipTop[] = {
    {"embeddings.token_embedding.weight",    "embeddings.token_embedding.weight",    REQ, AS_IS},
    {"embeddings.position_embedding.weight", "embeddings.position_embedding.weight", REQ, AS_IS},
    {"final_layer_norm.weight",              "final_layer_norm.weight",              REQ, AS_IS},
    {"final_layer_norm.bias",                "final_layer_norm.bias",                REQ, AS_IS},
};
static const Rename kClipLayer[] = {
    {"layer_norm1.weight",        "layer_norm1.weight",        REQ, AS_IS},
    {"layer_norm1.bias",          "layer_norm1.bias",          REQ, AS_IS},
    {"self_attn.q_proj.weight",   "self_attn.q_proj.weight",   REQ, AS_IS},
    {"self_attn.q_proj.bias",     "self_attn.q_proj.bias",     REQ, AS_IS},
    {"self_attn.k_proj.weight",   "self_attn.k_proj.weight",   REQ, AS_IS},
    {"self_attn.k_proj.bias",     "self_attn.k_proj.bias",     REQ, AS_IS},
    {"self_attn.v_proj.weight",   "self_attn.v_proj.weight",   REQ, AS_IS},
    {"self_attn.v_proj.bias",     "self_attn.v_proj.bias",     REQ, AS_IS},
    {"self_attn.out_proj.weight", "self_attn.out_proj.weight", REQ, AS_IS},
    {"self_attn.out_proj.bias",   "self_attn.out_proj.bias",   REQ, AS_IS},
    {"layer_norm2.weight",        "layer_norm2.weight",        REQ, AS_IS},
    {"layer_norm2.bias",          "layer_norm2.bias",          REQ, AS_IS},
    {"mlp.fc1.weight",            "mlp.fc1.weight",            REQ, AS_IS},
    {"mlp.fc1.bias",              "mlp.fc1.bias",              REQ, AS_IS},
    {"mlp.fc2.weight",            "mlp.fc2.weight",            REQ, AS_IS},
    {"mlp.fc2.bias",              "mlp.fc2.bias",              REQ, AS_IS},
};
// clang-format on

const LdmUnit ldm_unit_openclip_top = {"OpenCLIP text tower", kOpenClipTop, COUNT(kOpenClipTop)};
const LdmUnit ldm_unit_openclip_layer = {"OpenCLIP resblock", kOpenClipLayer, COUNT(kOpenClipLayer)};
const LdmUnit ldm_unit_clip_top = {"CLIP text model", kClipTop, COUNT(kClipTop)};
const LdmUnit ldm_unit_clip_layer = {"CLIP encoder layer", kClipLayer, COUNT(kClipLayer)};

// Text layer i of either tower, `rest` inside it: text_model.encoder.layers.i.*, or skipped (*why =
// skipped) past the layers kept.
static int map_layer(const LdmLayout *L, int unit, const char *name, const char *rest, int i, const char *skipped,
                     LdmTarget *t, const char **why) {
    if (ldm_unit_row(unit, rest) < 0) return ldm_unknown(name, ldm_units[unit]->what);
    if (i >= L->text_layers_kept) {
        *why = skipped;
        return 0;
    }
    char d[LDM_NAME_MAX];
    snprintf(d, sizeof(d), "text_model.encoder.layers.%d.", i);
    return ldm_rename_in_unit(t, unit, name, rest, d);
}

int ldm_map_openclip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    int i;
    const char *s;
    if (ldm_unit_row(U_OPENCLIP_TOP, r) >= 0) return ldm_rename_in_unit(t, U_OPENCLIP_TOP, name, r, "text_model.");
    if (!strcmp(r, "text_projection") || !strcmp(r, "logit_scale") || !strcmp(r, "attn_mask")) {
        *why = "OpenCLIP's projection to the image space / logit scale / mask: not used by the pipeline";
        return 0;
    }
    if ((s = ldm_take_index(r, "transformer.resblocks.", &i)))
        return map_layer(L, U_OPENCLIP_LAYER, name, s, i,
                         "a text layer after the last one the pipeline uses (SD 2.x: the penultimate layer)", t, why);
    return ldm_unknown(name, NULL);
}

int ldm_map_clip(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    int i;
    const char *s, *m = ldm_after(r, "text_model.");
    if (!m) return ldm_unknown(name, NULL);
    if (!strcmp(m, "embeddings.position_ids")) {
        *why = "a buffer (0, 1, ..., 76), not a weight";
        return 0;
    }
    if (ldm_unit_row(U_CLIP_TOP, m) >= 0) return ldm_rename_in_unit(t, U_CLIP_TOP, name, m, "text_model.");
    if ((s = ldm_take_index(m, "encoder.layers.", &i)))
        return map_layer(L, U_CLIP_LAYER, name, s, i, "a text layer after the last one converted", t, why);
    return ldm_unknown(name, NULL);
}
