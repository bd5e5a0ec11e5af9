// The VAE's names, first_stage_model.* -> diffusers AutoencoderKL: its rename tables and name map
// (ldm_rename.h). Reference: diffusers 0.17.0 convert_from_ckpt.py and
// ldm/modules/diffusionmodules/model.py (Encoder, Decoder).
#include <stdio.h>

#include "convert/ldm_rename.h"
#include "core/error.h"

// clang-format off
// VAE, first_stage_model.*: the encoder's tensors outside the blocks (what feature extraction needs).
static const Rename kVaeEncoderTop[] = {
    {"encoder.conv_in.weight",  "encoder.conv_in.weight",       REQ, AS_IS},
    {"encoder.conv_in.bias",    "encoder.conv_in.bias",         REQ, AS_IS},
    {"encoder.norm_out.weight", "encoder.conv_norm_out.weight", REQ, AS_IS},
    {"encoder.norm_out.bias",   "encoder.conv_norm_out.bias",   REQ, AS_IS},
    {"encoder.conv_out.weight", "encoder.conv_out.weight",      REQ, AS_IS},
    {"encoder.conv_out.bias",   "encoder.conv_out.bias",        REQ, AS_IS},
    {"quant_conv.weight",       "quant_conv.weight",            REQ, AS_IS},
    {"quant_conv.bias",         "quant_conv.bias",              REQ, AS_IS},
};
// ... and the decoder's (converted when the checkpoint has a decoder).
static const Rename kVaeDecoderTop[] = {
    {"decoder.conv_in.weight",  "decoder.conv_in.weight",       REQ, AS_IS},
    {"decoder.conv_in.bias",    "decoder.conv_in.bias",         REQ, AS_IS},
    {"decoder.norm_out.weight", "decoder.conv_norm_out.weight", REQ, AS_IS},
    {"decoder.norm_out.bias",   "decoder.conv_norm_out.bias",   REQ, AS_IS},
    {"decoder.conv_out.weight", "decoder.conv_out.weight",      REQ, AS_IS},
    {"decoder.conv_out.bias",   "decoder.conv_out.bias",        REQ, AS_IS},
    {"post_quant_conv.weight",  "post_quant_conv.weight",       REQ, AS_IS},
    {"post_quant_conv.bias",    "post_quant_conv.bias",         REQ, AS_IS},
};
// model.py ResnetBlock -> ResnetBlock2D (no time embedding in the VAE).
static const Rename kVaeResBlock[] = {
    {"norm1.weight",        "norm1.weight",         REQ, AS_IS},
    {"norm1.bias",          "norm1.bias",           REQ, AS_IS},
    {"conv1.weight",        "conv1.weight",         REQ, AS_IS},
    {"conv1.bias",          "conv1.bias",           REQ, AS_IS},
    {"norm2.weight",        "norm2.weight",         REQ, AS_IS},
    {"norm2.bias",          "norm2.bias",           REQ, AS_IS},
    {"conv2.weight",        "conv2.weight",         REQ, AS_IS},
    {"conv2.bias",          "conv2.bias",           REQ, AS_IS},
    {"nin_shortcut.weight", "conv_shortcut.weight", OPT, AS_IS},
    {"nin_shortcut.bias",   "conv_shortcut.bias",   OPT, AS_IS},
};
// model.py AttnBlock (1x1 convs q, k, v, proj_out) -> Attention (linears).
static const Rename kVaeAttention[] = {
    {"norm.weight",     "group_norm.weight", REQ, AS_IS},
    {"norm.bias",       "group_norm.bias",   REQ, AS_IS},
    {"q.weight",        "to_q.weight",       REQ, TO_LINEAR},
    {"q.bias",          "to_q.bias",         REQ, AS_IS},
    {"k.weight",        "to_k.weight",       REQ, TO_LINEAR},
    {"k.bias",          "to_k.bias",         REQ, AS_IS},
    {"v.weight",        "to_v.weight",       REQ, TO_LINEAR},
    {"v.bias",          "to_v.bias",         REQ, AS_IS},
    {"proj_out.weight", "to_out.0.weight",   REQ, TO_LINEAR},
    {"proj_out.bias",   "to_out.0.bias",     REQ, AS_IS},
};
// clang-format on

const LdmUnit ldm_unit_vae_encoder_top = {"VAE encoder", kVaeEncoderTop, COUNT(kVaeEncoderTop)};
const LdmUnit ldm_unit_vae_decoder_top = {"VAE decoder", kVaeDecoderTop, COUNT(kVaeDecoderTop)};
const LdmUnit ldm_unit_vae_resblock = {"VAE ResnetBlock", kVaeResBlock, COUNT(kVaeResBlock)};
const LdmUnit ldm_unit_vae_attention = {"VAE AttnBlock", kVaeAttention, COUNT(kVaeAttention)};

int ldm_map_vae(const LdmLayout *L, const char *name, const char *r, LdmTarget *t, const char **why) {
    char d[LDM_NAME_MAX];
    int i, j;
    const char *s, *b;
    if (ldm_unit_row(U_VAE_ENCODER_TOP, r) >= 0) return ldm_rename_in_unit(t, U_VAE_ENCODER_TOP, name, r, "");
    if (ldm_unit_row(U_VAE_DECODER_TOP, r) >= 0) return ldm_rename_in_unit(t, U_VAE_DECODER_TOP, name, r, "");
    if ((s = ldm_take_index(r, "encoder.down.", &i))) {
        if (i >= L->vae_levels) return sd_errorf("tensor '%s': encoder level %d of %d", name, i, L->vae_levels);
        if ((b = ldm_take_index(s, "block.", &j))) {
            snprintf(d, sizeof(d), "encoder.down_blocks.%d.resnets.%d.", i, j);
            return ldm_rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
        }
        if ((b = ldm_after(s, "downsample.")) && i < L->vae_levels - 1) {
            snprintf(d, sizeof(d), "encoder.down_blocks.%d.downsamplers.0.", i);
            return ldm_rename_in_unit(t, U_CONV, name, b, d);
        }
        return ldm_unknown(name, NULL);  // e.g. encoder.down.i.attn: attention at a resolution, not in SD's VAE
    }
    if ((s = ldm_take_index(r, "decoder.up.", &i))) {
        // The decoder's up list is numbered from the lowest resolution: up.i is up_blocks[n-1-i].
        if (i >= L->vae_levels) return sd_errorf("tensor '%s': decoder level %d of %d", name, i, L->vae_levels);
        int u = L->vae_levels - 1 - i;
        if ((b = ldm_take_index(s, "block.", &j))) {
            snprintf(d, sizeof(d), "decoder.up_blocks.%d.resnets.%d.", u, j);
            return ldm_rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
        }
        if ((b = ldm_after(s, "upsample.")) && i > 0) {
            snprintf(d, sizeof(d), "decoder.up_blocks.%d.upsamplers.0.", u);
            return ldm_rename_in_unit(t, U_CONV, name, b, d);
        }
        return ldm_unknown(name, NULL);
    }
    static const char *const parts[2] = {"encoder", "decoder"};
    for (int p = 0; p < 2; p++) {
        const char *m = ldm_after(r, parts[p]);
        if (!m || !(m = ldm_after(m, ".mid."))) continue;
        if ((b = ldm_after(m, "block_1.")))
            snprintf(d, sizeof(d), "%s.mid_block.resnets.0.", parts[p]);
        else if ((b = ldm_after(m, "block_2.")))
            snprintf(d, sizeof(d), "%s.mid_block.resnets.1.", parts[p]);
        else if ((b = ldm_after(m, "attn_1."))) {
            snprintf(d, sizeof(d), "%s.mid_block.attentions.0.", parts[p]);
            return ldm_rename_in_unit(t, U_VAE_ATTENTION, name, b, d);
        } else
            return ldm_unknown(name, NULL);
        return ldm_rename_in_unit(t, U_VAE_RESBLOCK, name, b, d);
    }
    if (ldm_after(r, "loss.")) {
        *why = "VAE training loss (LPIPS, discriminator)";
        return 0;
    }
    return ldm_unknown(name, NULL);
}
