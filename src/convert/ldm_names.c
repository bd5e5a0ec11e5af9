// LDM/CompVis checkpoint names -> diffusers names (see ldm_plan.h), the shared part: the name
// parsing the parts' maps use, the list of rename units, and ldm_map_name, which sends a name to
// its part's map (ldm_unet.c, ldm_vae.c, ldm_text.c) or says why it is not converted.
// Reference: diffusers 0.17.0 src/diffusers/pipelines/stable_diffusion/convert_from_ckpt.py.
#include "convert/ldm_rename.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

const char *const ldm_part_folder[LDM_PARTS] = {"unet", "vae", "text_encoder"};
const char *const ldm_part_file[LDM_PARTS] = {"diffusion_pytorch_model.safetensors",
                                              "diffusion_pytorch_model.safetensors", "model.safetensors"};

// clang-format off
// Upsample (UNet) and the VAE's Downsample / Upsample: one conv, the same name.
static const Rename kConv[] = {
    {"conv.weight", "conv.weight", REQ, AS_IS},
    {"conv.bias",   "conv.bias",   REQ, AS_IS},
};
// Tensors of a training checkpoint that are not weights of the pipeline.
static const char *const kScheduleBuffers[] = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights"};
// clang-format on

const LdmUnit ldm_unit_conv = {"Downsample/Upsample", kConv, COUNT(kConv)};

const LdmUnit *const ldm_units[U_COUNT] = {
    [U_UNET_TOP] = &ldm_unit_unet_top,
    [U_UNET_RESBLOCK] = &ldm_unit_unet_resblock,
    [U_UNET_DOWNSAMPLE] = &ldm_unit_unet_downsample,
    [U_CONV] = &ldm_unit_conv,
    [U_UNET_ATTENTION] = &ldm_unit_unet_attention,
    [U_UNET_TRANSFORMER_BLOCK] = &ldm_unit_unet_transformer_block,
    [U_VAE_ENCODER_TOP] = &ldm_unit_vae_encoder_top,
    [U_VAE_DECODER_TOP] = &ldm_unit_vae_decoder_top,
    [U_VAE_RESBLOCK] = &ldm_unit_vae_resblock,
    [U_VAE_ATTENTION] = &ldm_unit_vae_attention,
    [U_OPENCLIP_TOP] = &ldm_unit_openclip_top,
    [U_OPENCLIP_LAYER] = &ldm_unit_openclip_layer,
    [U_CLIP_TOP] = &ldm_unit_clip_top,
    [U_CLIP_LAYER] = &ldm_unit_clip_layer,
};

// ---------------------------------------------------------------------------
// Name parsing.

// s without `prefix`, or NULL.
const char *ldm_after(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

// s = prefix + "<digits>." + rest: sets *idx and returns rest, else NULL.
const char *ldm_take_index(const char *s, const char *prefix, int *idx) {
    if (!s || !(s = ldm_after(s, prefix)) || *s < '0' || *s > '9') return NULL;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 100000) v = v * 10 + (*s++ - '0');
    if (*s != '.') return NULL;
    *idx = (int)v;
    return s + 1;
}

int ldm_unit_row(int unit, const char *rest) {
    for (int k = 0; k < ldm_units[unit]->count; k++)
        if (strcmp(ldm_units[unit]->rows[k].ldm, rest) == 0) return k;
    return -1;
}

int ldm_unknown(const char *name, const char *what) {
    return sd_errorf("tensor '%s': unknown name%s%s: not the SD 1.x/2.x LDM layout this converter knows", name,
                     what ? " for a " : "", what ? what : "");
}

// `rest` is the part of `name` inside a block of kind `unit`; dprefix is the block's diffusers prefix.
int ldm_rename_in_unit(LdmTarget *t, int unit, const char *name, const char *rest, const char *dprefix) {
    int k = ldm_unit_row(unit, rest);
    if (k < 0) return ldm_unknown(name, ldm_units[unit]->what);
    const Rename *r = &ldm_units[unit]->rows[k];
    t->unit = unit;
    t->member = k;
    snprintf(t->instance, sizeof(t->instance), "%.*s", (int)(rest - name), name);
    t->reshape = r->reshape;
    const char *mark = strstr(r->diffusers, "{q,k,v}");
    if (r->reshape == LDM_SPLIT_QKV && mark) {
        static const char *const qkv[3] = {"q", "k", "v"};
        t->n_names = 3;
        for (int i = 0; i < 3; i++)
            snprintf(t->name[i], LDM_NAME_MAX, "%s%.*s%s%s", dprefix, (int)(mark - r->diffusers), r->diffusers, qkv[i],
                     mark + 7);
    } else {
        t->n_names = 1;
        snprintf(t->name[0], LDM_NAME_MAX, "%s%s", dprefix, r->diffusers);
    }
    return 1;
}

int ldm_map_name(const LdmLayout *L, const char *name, LdmTarget *t, const char **why) {
    memset(t, 0, sizeof(*t));
    *why = NULL;
    const char *r;
    if ((r = ldm_after(name, "model.diffusion_model."))) {
        t->part = LDM_UNET;
        return ldm_map_unet(L, name, r, t);
    }
    if ((r = ldm_after(name, "first_stage_model."))) {
        t->part = LDM_VAE;
        return ldm_map_vae(L, name, r, t, why);
    }
    if ((r = ldm_after(name, "cond_stage_model.model."))) {
        t->part = LDM_TEXT;
        return ldm_map_openclip(L, name, r, t, why);
    }
    if ((r = ldm_after(name, "cond_stage_model.transformer."))) {
        t->part = LDM_TEXT;
        return ldm_map_clip(L, name, r, t, why);
    }
    if (!strcmp(name, "model_ema.decay") || !strcmp(name, "model_ema.num_updates")) {
        *why = "EMA bookkeeping";
        return 0;
    }
    if (ldm_after(name, "model_ema.")) {
        *why = L->use_ema ? "EMA weights, read through the UNet's names" : "EMA weights (--ema converts them)";
        return 0;
    }
    for (int k = 0; k < COUNT(kScheduleBuffers); k++)
        if (!strcmp(name, kScheduleBuffers[k])) {
            *why = "DDPM schedule buffer (the scheduler config has the schedule)";
            return 0;
        }
    *why = "not a part of the Stable Diffusion pipeline";
    return 0;
}
