// The plan of a conversion (see ldm_plan.h): the structure of an LDM/CompVis checkpoint read from its
// names, every tensor it converts (each name mapped by ldm_map_name, ldm_names.c) with the check that
// every block is whole, the reading of a planned tensor, and the config values its shapes give.
#include "convert/ldm_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/ldm_rename.h"
#include "core/error.h"
#include "core/half.h"

// ---------------------------------------------------------------------------
// The structure of a checkpoint.

static void first_names(const SafeTensors *st, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < st->count && i < 3 && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s'%s'", i ? ", " : "", st->entries[i].name);
}

int ldm_detect_layout(const SafeTensors *st, LdmLayout *L) {
    memset(L, 0, sizeof(*L));
    int n_unet = 0, n_vae = 0, n_openclip = 0, n_clip = 0, n_sdxl = 0, n_diffusers = 0;
    int max_in = -1, max_out = -1, n_down = 0, max_level = -1, max_block = -1, max_resblock = -1, max_layer = -1;
    for (int k = 0; k < st->count; k++) {
        const char *name = st->entries[k].name, *r, *s;
        int i, j;
        if ((r = ldm_after(name, "model.diffusion_model."))) {
            n_unet++;
            if ((s = ldm_take_index(r, "input_blocks.", &i))) {
                if (i > max_in) max_in = i;
                if (!strcmp(s, "0.op.weight")) n_down++;
            }
            if (ldm_take_index(r, "output_blocks.", &i) && i > max_out) max_out = i;
        } else if ((r = ldm_after(name, "first_stage_model."))) {
            n_vae++;
            if ((s = ldm_take_index(ldm_take_index(r, "encoder.down.", &i), "block.", &j))) {
                if (i > max_level) max_level = i;
                if (j > max_block) max_block = j;
            }
            if (ldm_after(r, "decoder.")) L->vae_has_decoder = 1;
        } else if ((r = ldm_after(name, "cond_stage_model.model."))) {
            n_openclip++;
            if (ldm_take_index(r, "transformer.resblocks.", &i) && i > max_resblock) max_resblock = i;
        } else if ((r = ldm_after(name, "cond_stage_model.transformer."))) {
            n_clip++;
            if (ldm_take_index(r, "text_model.encoder.layers.", &i) && i > max_layer) max_layer = i;
        } else if (ldm_after(name, "model_ema.diffusion_model")) {
            L->ema_tensors++;
        } else if (ldm_after(name, "conditioner.embedders.")) {
            n_sdxl++;
        } else if (ldm_after(name, "down_blocks.") || ldm_after(name, "encoder.down_blocks.") ||
                   ldm_after(name, "text_model.encoder.")) {
            n_diffusers++;
        }
    }
    char first[3 * LDM_NAME_MAX];
    first_names(st, first, sizeof(first));
    if (n_unet == 0) {
        if (n_sdxl) return sd_errorf("%s: an SDXL checkpoint (conditioner.embedders.*): not supported", st->path);
        if (n_diffusers)
            return sd_errorf(
                "%s: already diffusers / transformers names (down_blocks.*, text_model.*), not an LDM "
                "checkpoint: put it in a pipeline folder as it is",
                st->path);
        return sd_errorf(
            "%s: no tensor named model.diffusion_model.*: not a Stable Diffusion checkpoint in the LDM "
            "layout (%d tensors, the first: %s)",
            st->path, st->count, first);
    }
    // input_blocks: conv_in, then per level L ResBlocks and (but the last level) a Downsample.
    L->unet_levels = n_down + 1;
    int n_in = max_in + 1;
    if (n_in < 2 || L->unet_levels > LDM_MAX_LEVELS || n_in % L->unet_levels != 0 || n_in / L->unet_levels < 2 ||
        n_in / L->unet_levels - 1 > LDM_MAX_LAYERS)
        return sd_errorf(
            "%s: model.diffusion_model.input_blocks.0..%d with %d Downsample (input_blocks.*.0.op): not "
            "the block structure of an SD UNet",
            st->path, max_in, n_down);
    L->unet_layers_per_block = n_in / L->unet_levels - 1;
    if (max_out + 1 != n_in)
        return sd_errorf(
            "%s: model.diffusion_model.output_blocks.0..%d: expected output_blocks.0..%d (as many as "
            "input_blocks)",
            st->path, max_out, n_in - 1);
    if (n_vae == 0)
        return sd_errorf(
            "%s: no tensor named first_stage_model.* (the VAE): a checkpoint without its VAE is not "
            "supported",
            st->path);
    if (max_level < 0 || max_level + 1 > LDM_MAX_LEVELS || max_block + 1 > LDM_MAX_LAYERS)
        return sd_errorf("%s: first_stage_model.encoder.down.*.block.*: %s", st->path,
                         max_level < 0 ? "none (the VAE has no encoder)" : "too many levels or blocks");
    L->vae_levels = max_level + 1;
    L->vae_layers_per_block = max_block + 1;
    if (n_openclip && n_clip)
        return sd_errorf(
            "%s: both cond_stage_model.model.* (OpenCLIP) and cond_stage_model.transformer.* (CLIP) "
            "tensors: which text encoder?",
            st->path);
    if (n_openclip) {
        L->text_kind = LDM_TEXT_OPENCLIP;
        L->text_layers = max_resblock + 1;
    } else if (n_clip) {
        L->text_kind = LDM_TEXT_CLIP;
        L->text_layers = max_layer + 1;
    } else {
        return sd_errorf(
            "%s: no text encoder: expected cond_stage_model.model.* (SD 2.x OpenCLIP) or "
            "cond_stage_model.transformer.* (SD 1.x CLIP)",
            st->path);
    }
    if (L->text_layers < 1 || L->text_layers > LDM_MAX_TEXT_LAYERS)
        return sd_errorf("%s: the text encoder has %d layers (1..%d supported)", st->path, L->text_layers,
                         LDM_MAX_TEXT_LAYERS);
    L->text_layers_kept = L->text_kind == LDM_TEXT_OPENCLIP && L->text_layers > 1 ? L->text_layers - 1 : L->text_layers;
    return 0;
}

// ---------------------------------------------------------------------------
// The plan: every converted tensor, and the check that every block is whole.

typedef struct {
    int unit;
    char prefix[LDM_NAME_MAX];
    uint64_t found;  // bit k: row k of the unit's table was seen
} Instance;

typedef struct {
    Instance *items;
    int n, cap;
} Instances;

static Instance *instance_get(Instances *in, int unit, const char *prefix) {
    for (int i = 0; i < in->n; i++)
        if (in->items[i].unit == unit && !strcmp(in->items[i].prefix, prefix)) return &in->items[i];
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 64;
        Instance *p = (Instance *)realloc(in->items, (size_t)cap * sizeof(Instance));
        if (!p) return NULL;
        in->items = p;
        in->cap = cap;
    }
    Instance *it = &in->items[in->n++];
    it->unit = unit;
    snprintf(it->prefix, sizeof(it->prefix), "%s", prefix);
    it->found = 0;
    return it;
}

static int instance_exists(const Instances *in, const char *prefix) {
    for (int i = 0; i < in->n; i++)
        if (!strcmp(in->items[i].prefix, prefix)) return 1;
    return 0;
}

static int plan_add(LdmPlan *p, int *cap, const LdmTensor *t) {
    if (p->count == *cap) {
        int c = *cap ? 2 * *cap : 256;
        LdmTensor *q = (LdmTensor *)realloc(p->tensors, (size_t)c * sizeof(LdmTensor));
        if (!q) return sd_errorf("out of memory");
        p->tensors = q;
        *cap = c;
    }
    p->tensors[p->count++] = *t;
    return 0;
}

// The tensors of one checkpoint entry (three for a q/k/v split).
static int plan_entry(LdmPlan *p, int *cap, const LdmTarget *t, const StEntry *src, const char *path) {
    LdmTensor o;
    memset(&o, 0, sizeof(o));
    o.part = t->part;
    o.src = src;
    o.ndim = src->ndim;
    for (int d = 0; d < src->ndim; d++) o.shape[d] = src->shape[d];
    o.numel = src->numel;
    if (t->reshape == LDM_CONV1X1_TO_LINEAR) {
        int ok = src->ndim == 2 || (src->ndim == 3 && src->shape[2] == 1) ||
                 (src->ndim == 4 && src->shape[2] == 1 && src->shape[3] == 1);
        if (!ok)
            return sd_errorf("%s: tensor '%s': expected a 1x1 conv (C, C, 1, 1) or a linear (C, C), got %d dims", path,
                             src->name, src->ndim);
        o.ndim = 2;
    }
    if (t->reshape == LDM_SPLIT_QKV) {
        if (src->ndim < 1 || src->ndim > 2 || src->shape[0] % 3 != 0)
            return sd_errorf("%s: tensor '%s': expected (3*d, d) or (3*d), the packed q, k, v projections", path,
                             src->name);
        o.shape[0] = src->shape[0] / 3;
        o.numel = src->numel / 3;
    }
    for (int k = 0; k < t->n_names; k++) {
        snprintf(o.name, sizeof(o.name), "%s", t->name[k]);
        o.offset = (int64_t)k * o.numel;
        if (plan_add(p, cap, &o)) return SD_FAIL;
    }
    return 0;
}

// "model.diffusion_model.input_blocks.0.0.weight" -> "model_ema.diffusion_modelinput_blocks00weight":
// LDM's LitEma stores its copies under the name without dots.
static void ema_name(const char *name, char *out, size_t size) {
    size_t n = (size_t)snprintf(out, size, "model_ema.");
    for (const char *s = name + strlen("model."); *s && n + 1 < size; s++)
        if (*s != '.') out[n++] = *s;
    out[n] = 0;
}

static int cmp_tensor(const void *a, const void *b) {
    const LdmTensor *x = (const LdmTensor *)a, *y = (const LdmTensor *)b;
    if (x->part != y->part) return x->part < y->part ? -1 : 1;
    return strcmp(x->name, y->name);
}

// Every block the layout has must be in the file (a block with some tensors is checked row by row).
static int check_blocks(const LdmLayout *L, const Instances *in, const char *path) {
    char p[LDM_NAME_MAX], q[LDM_NAME_MAX];
    const int per = L->unet_layers_per_block + 1;
#define NEED(what, ...)                                                                                  \
    do {                                                                                                 \
        snprintf(p, sizeof(p), __VA_ARGS__);                                                             \
        if (!instance_exists(in, p)) return sd_errorf("%s: no tensors named '%s*' (%s)", path, p, what); \
    } while (0)
    for (int i = 1; i < L->unet_levels * per; i++)
        NEED("a ResBlock or Downsample", "model.diffusion_model.input_blocks.%d.0.", i);
    NEED("the middle ResBlock", "model.diffusion_model.middle_block.0.");
    NEED("the middle attention", "model.diffusion_model.middle_block.1.transformer_blocks.0.");
    NEED("the middle ResBlock", "model.diffusion_model.middle_block.2.");
    for (int i = 0; i < L->unet_levels * per; i++) {
        NEED("a ResBlock", "model.diffusion_model.output_blocks.%d.0.", i);
        if (i % per == L->unet_layers_per_block && i / per < L->unet_levels - 1) {
            snprintf(q, sizeof(q), "model.diffusion_model.output_blocks.%d.2.", i);
            if (!instance_exists(in, q)) NEED("an Upsample", "model.diffusion_model.output_blocks.%d.1.", i);
        }
    }
    for (int i = 0; i < L->vae_levels; i++) {
        for (int j = 0; j < L->vae_layers_per_block; j++)
            NEED("a VAE encoder ResnetBlock", "first_stage_model.encoder.down.%d.block.%d.", i, j);
        if (i < L->vae_levels - 1) NEED("a VAE Downsample", "first_stage_model.encoder.down.%d.downsample.", i);
        if (!L->vae_has_decoder) continue;
        for (int j = 0; j <= L->vae_layers_per_block; j++)
            NEED("a VAE decoder ResnetBlock", "first_stage_model.decoder.up.%d.block.%d.", i, j);
        if (i > 0) NEED("a VAE Upsample", "first_stage_model.decoder.up.%d.upsample.", i);
    }
    static const char *const mids[3] = {"block_1", "attn_1", "block_2"};
    for (int m = 0; m < 3; m++) {
        NEED("the VAE encoder's middle block", "first_stage_model.encoder.mid.%s.", mids[m]);
        if (L->vae_has_decoder) NEED("the VAE decoder's middle block", "first_stage_model.decoder.mid.%s.", mids[m]);
    }
    for (int i = 0; i < L->text_layers_kept; i++) {
        if (L->text_kind == LDM_TEXT_OPENCLIP)
            NEED("a text layer", "cond_stage_model.model.transformer.resblocks.%d.", i);
        else
            NEED("a text layer", "cond_stage_model.transformer.text_model.encoder.layers.%d.", i);
    }
#undef NEED
    for (int i = 0; i < in->n; i++) {
        const Instance *it = &in->items[i];
        for (int k = 0; k < ldm_units[it->unit]->count; k++) {
            const Rename *r = &ldm_units[it->unit]->rows[k];
            if (r->need == REQ && !(it->found & ((uint64_t)1 << k)))
                return sd_errorf("%s: tensor '%s%s' is missing (a %s needs it: %s)", path, it->prefix, r->ldm,
                                 ldm_units[it->unit]->what, r->diffusers);
        }
    }
    return 0;
}

int ldm_plan_build(const SafeTensors *st, int text_layers, int use_ema, LdmPlan *p) {
    memset(p, 0, sizeof(*p));
    LdmLayout *L = &p->layout;
    if (ldm_detect_layout(st, L)) return SD_FAIL;
    L->use_ema = use_ema;
    if (text_layers >= 0) {
        if (text_layers < 1 || text_layers > L->text_layers)
            return sd_errorf("%s: %d text layers asked for, the checkpoint has %d", st->path, text_layers,
                             L->text_layers);
        L->text_layers_kept = text_layers;
    }
    if (use_ema && L->ema_tensors == 0)
        return sd_errorf("%s: --ema: the checkpoint has no EMA weights (model_ema.*)", st->path);
    Instances in = {0};
    int cap = 0, rc = SD_FAIL;
    // The blocks outside the repeated ones must be there even when none of their tensors are.
    int openclip = L->text_kind == LDM_TEXT_OPENCLIP;
    const char *text_top = openclip ? "cond_stage_model.model." : "cond_stage_model.transformer.text_model.";
    if (!instance_get(&in, U_UNET_TOP, "model.diffusion_model.") ||
        !instance_get(&in, U_VAE_ENCODER_TOP, "first_stage_model.") ||
        (L->vae_has_decoder && !instance_get(&in, U_VAE_DECODER_TOP, "first_stage_model.")) ||
        !instance_get(&in, openclip ? U_OPENCLIP_TOP : U_CLIP_TOP, text_top)) {
        sd_errorf("out of memory");
        goto done;
    }
    for (int k = 0; k < st->count; k++) {
        const StEntry *e = &st->entries[k];
        LdmTarget t;
        const char *why = NULL;
        int m = ldm_map_name(L, e->name, &t, &why);
        if (m < 0) {
            sd_error_context("%s", st->path);
            goto done;
        }
        if (m == 0) {
            int r = 0;
            while (r < p->n_skipped && strcmp(p->skipped[r].why, why) != 0) r++;
            if (r == p->n_skipped && r < (int)(sizeof(p->skipped) / sizeof(p->skipped[0]))) {
                p->skipped[r].why = why;
                snprintf(p->skipped[r].example, sizeof(p->skipped[r].example), "%s", e->name);
                p->n_skipped++;
            }
            if (r < p->n_skipped) p->skipped[r].count++;
            p->ignored++;
            continue;
        }
        const StEntry *src = e;
        if (use_ema && t.part == LDM_UNET) {
            char flat[LDM_NAME_MAX];
            ema_name(e->name, flat, sizeof(flat));
            src = st_find(st, flat);
            if (!src) {
                sd_errorf("%s: tensor '%s' is missing (the EMA copy of '%s')", st->path, flat, e->name);
                goto done;
            }
            int same = src->ndim == e->ndim;
            for (int d = 0; same && d < e->ndim; d++) same = src->shape[d] == e->shape[d];
            if (!same) {
                sd_errorf("%s: tensor '%s': its shape differs from '%s'", st->path, flat, e->name);
                goto done;
            }
        }
        if (src->dtype != DT_F32 && src->dtype != DT_F16 && src->dtype != DT_BF16 && src->dtype != DT_F64) {
            sd_errorf("%s: tensor '%s': dtype %s, expected a float type (F32, F16, BF16, F64)", st->path, src->name,
                      dtype_name(src->dtype));
            goto done;
        }
        Instance *it = instance_get(&in, t.unit, t.instance);
        if (!it) {
            sd_errorf("out of memory");
            goto done;
        }
        it->found |= (uint64_t)1 << t.member;
        if (plan_entry(p, &cap, &t, src, st->path)) goto done;
    }
    if (check_blocks(L, &in, st->path)) goto done;
    qsort(p->tensors, (size_t)p->count, sizeof(LdmTensor), cmp_tensor);
    for (int i = 1; i < p->count; i++)
        if (p->tensors[i].part == p->tensors[i - 1].part && !strcmp(p->tensors[i].name, p->tensors[i - 1].name)) {
            sd_errorf("%s: tensors '%s' and '%s' both map to %s/%s", st->path, p->tensors[i - 1].src->name,
                      p->tensors[i].src->name, ldm_part_folder[p->tensors[i].part], p->tensors[i].name);
            goto done;
        }
    rc = 0;
done:
    free(in.items);
    if (rc) ldm_plan_free(p);
    return rc;
}

void ldm_plan_free(LdmPlan *p) {
    free(p->tensors);
    p->tensors = NULL;
    p->count = 0;
}

const LdmTensor *ldm_plan_find(const LdmPlan *p, LdmPart part, const char *name) {
    int lo = 0, hi = p->count - 1;  // sorted by (part, name)
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const LdmTensor *t = &p->tensors[mid];
        int c = t->part != part ? (t->part < part ? -1 : 1) : strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

int ldm_tensor_read(const LdmTensor *t, int64_t first, int64_t count, DType dtype, void *dst) {
    const StEntry *e = t->src;
    if (first < 0 || count < 0 || first + count > t->numel)
        return sd_errorf("tensor '%s': elements [%lld, %lld) of %lld", t->name, (long long)first,
                         (long long)(first + count), (long long)t->numel);
    if (dtype != DT_F32 && dtype != DT_F16) return sd_errorf("tensor '%s': can write F32 or F16 only", t->name);
    const int size = dtype_size(e->dtype);
    const unsigned char *p = e->data + (size_t)(t->offset + first) * (size_t)size;
    if (e->dtype == dtype) {  // the same bytes (little-endian in the file and in memory)
        memcpy(dst, p, (size_t)count * (size_t)size);
        return 0;
    }
    for (int64_t k = 0; k < count; k++) {
        const unsigned char *b = p + k * size;
        float v;
        if (e->dtype == DT_F32) {  // little-endian whatever the host (big-endian: s390x)
            uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
            memcpy(&v, &u, 4);
        } else if (e->dtype == DT_F16) {
            v = f32_from_f16((uint16_t)(b[0] | (b[1] << 8)));
        } else if (e->dtype == DT_BF16) {
            v = f32_from_bf16((uint16_t)(b[0] | (b[1] << 8)));
        } else if (e->dtype == DT_F64) {
            uint64_t u = 0;
            for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
            double x;
            memcpy(&x, &u, 8);
            v = (float)x;
        } else {
            return sd_errorf("tensor '%s': dtype %s is not a float type", e->name, dtype_name(e->dtype));
        }
        // out as the file's little-endian bytes (the caller writes dst as it is)
        unsigned char *o = (unsigned char *)dst + k * dtype_size(dtype);
        uint32_t u;
        if (dtype == DT_F32) memcpy(&u, &v, 4);
        else u = f16_from_f32(v);
        for (int i = 0; i < dtype_size(dtype); i++) o[i] = (unsigned char)(u >> (8 * i));
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Config values from the shapes.

static const LdmTensor *shape_of(const LdmPlan *p, LdmPart part, int min_ndim, const char *fmt, int a) {
    char name[LDM_NAME_MAX];
    snprintf(name, sizeof(name), fmt, a);
    const LdmTensor *t = ldm_plan_find(p, part, name);
    if (!t)
        sd_errorf("%s/%s: missing: cannot tell the config", ldm_part_folder[part], name);
    else if (t->ndim < min_ndim) {
        sd_errorf("%s/%s: %d dims, expected at least %d", ldm_part_folder[part], name, t->ndim, min_ndim);
        t = NULL;
    }
    return t;
}

int ldm_infer_shapes(const LdmPlan *p, LdmShapes *s) {
    const LdmLayout *L = &p->layout;
    const LdmTensor *t;
    memset(s, 0, sizeof(*s));
    s->unet_levels = L->unet_levels;
    s->layers_per_block = L->unet_layers_per_block;
    for (int l = 0; l < L->unet_levels; l++) {
        if (!(t = shape_of(p, LDM_UNET, 1, "down_blocks.%d.resnets.0.conv1.weight", l))) return SD_FAIL;
        s->block_out_channels[l] = (int)t->shape[0];
        char name[LDM_NAME_MAX];
        snprintf(name, sizeof(name), "down_blocks.%d.attentions.0.proj_in.weight", l);
        s->down_attention[l] = ldm_plan_find(p, LDM_UNET, name) != NULL;
        snprintf(name, sizeof(name), "up_blocks.%d.attentions.0.proj_in.weight", l);
        s->up_attention[l] = ldm_plan_find(p, LDM_UNET, name) != NULL;
    }
    if (!(t = shape_of(p, LDM_UNET, 2, "conv_in.weight", 0))) return SD_FAIL;
    s->in_channels = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_UNET, 1, "conv_out.weight", 0))) return SD_FAIL;
    s->out_channels = (int)t->shape[0];
    if (!(t = shape_of(p, LDM_UNET, 2, "mid_block.attentions.0.transformer_blocks.%d.attn2.to_k.weight", 0)))
        return SD_FAIL;
    s->cross_attention_dim = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_UNET, 2, "mid_block.attentions.0.proj_in.weight", 0))) return SD_FAIL;
    s->use_linear_projection = t->ndim == 2;  // SD 2.x: Linear; SD 1.x: 1x1 conv
    if (!(t = shape_of(p, LDM_UNET, 1, "time_embedding.linear_1.weight", 0))) return SD_FAIL;
    s->time_embed_dim = (int)t->shape[0];
    for (int k = 0; k < 64; k++) {
        char name[LDM_NAME_MAX];
        snprintf(name, sizeof(name), "mid_block.attentions.0.transformer_blocks.%d.norm1.weight", k);
        if (!ldm_plan_find(p, LDM_UNET, name)) break;
        s->transformer_depth = k + 1;
    }

    s->vae_levels = L->vae_levels;
    s->vae_layers_per_block = L->vae_layers_per_block;
    s->vae_has_decoder = L->vae_has_decoder;
    for (int l = 0; l < L->vae_levels; l++) {
        if (!(t = shape_of(p, LDM_VAE, 1, "encoder.down_blocks.%d.resnets.0.conv1.weight", l))) return SD_FAIL;
        s->vae_block_out_channels[l] = (int)t->shape[0];
    }
    if (!(t = shape_of(p, LDM_VAE, 2, "encoder.conv_in.weight", 0))) return SD_FAIL;
    s->vae_in_channels = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_VAE, 1, "quant_conv.weight", 0))) return SD_FAIL;
    s->latent_channels = (int)t->shape[0] / 2;  // quant_conv gives the posterior's mean and log-variance
    s->vae_out_channels = s->vae_in_channels;
    if (L->vae_has_decoder) {
        if (!(t = shape_of(p, LDM_VAE, 1, "decoder.conv_out.weight", 0))) return SD_FAIL;
        s->vae_out_channels = (int)t->shape[0];
    }

    s->text_kind = L->text_kind;
    if (!(t = shape_of(p, LDM_TEXT, 2, "text_model.embeddings.token_embedding.weight", 0))) return SD_FAIL;
    s->vocab_size = (int)t->shape[0];
    s->hidden_size = (int)t->shape[1];
    if (!(t = shape_of(p, LDM_TEXT, 1, "text_model.embeddings.position_embedding.weight", 0))) return SD_FAIL;
    s->max_position_embeddings = (int)t->shape[0];
    if (!(t = shape_of(p, LDM_TEXT, 1, "text_model.encoder.layers.%d.mlp.fc1.weight", 0))) return SD_FAIL;
    s->intermediate_size = (int)t->shape[0];
    s->num_hidden_layers = L->text_layers_kept;
    s->projection_dim = s->hidden_size;
    return 0;
}

int ldm_default_heads(int cross_attention_dim, int channels) {
    if (cross_attention_dim == 1024 && channels % 64 == 0) return channels / 64;
    return 8;
}
