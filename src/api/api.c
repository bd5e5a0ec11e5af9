// The library face (satdifuser.h): contexts, models, feature extraction. Heads and prediction are in
// api_head.c. Every entry point sets the calling thread's settings from its context (api_enter) and
// puts the thread's own back on return (api_leave): the threads count and precision are per thread
// (core/runtime.c, models/nn.c), so two host threads with their own contexts do not meet.
#include "api/api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/runtime.h"
#include "io/feature_cache.h"
#include "kernels/kernels.h"
#include "models/pack.h"
#include "models/preprocess.h"

// satdifuser.h's numbers are the library's own (SdIsa, NN_*): a compile-time check (as ints: they
// are members of different enums).
typedef char sdf_numbers_match[(int)SDF_ISA_SCALAR == (int)ISA_SCALAR && (int)SDF_ISA_AVX2 == (int)ISA_AVX2 &&
                                       (int)SDF_ISA_AVX512 == (int)ISA_AVX512 && (int)SDF_ISA_NEON == (int)ISA_NEON &&
                                       (int)SDF_F32 == (int)NN_F32 && (int)SDF_BF16 == (int)NN_BF16 &&
                                       (int)SDF_F16 == (int)NN_F16
                                   ? 1
                                   : -1];

const char *sdf_last_error(void) { return sd_last_error(); }

SdfStatus api_arg(const char *fmt, const char *what) {
    sd_errorf(fmt, what);
    return SDF_ERR_ARGUMENT;
}

// The ISA path the calling thread runs now, as gemm_force_isa takes it: -1 when it is the automatic
// one (the kernel set of sd_cpu_isa()), else the forced path's number.
static int current_isa(void) {
    const char *name = gemm_kernel_info()->name;
    int automatic = (int)sd_cpu_isa();
    for (int isa = ISA_SCALAR; isa <= ISA_NEON; isa++)
        if (!strcmp(name, sd_isa_name((SdIsa)isa))) return isa == automatic ? -1 : isa;
    return -1;
}

void api_enter(const SdfContext *ctx, ApiSaved *saved) {
    saved->threads = sd_threads();
    saved->precision = nn_precision();
    saved->isa = current_isa();
    sd_threads_set(ctx->opts.threads);
    nn_set_precision(ctx->opts.precision);  // checked by sdf_context_new (SDF_* are NN_*)
    gemm_force_isa(ctx->opts.isa == SDF_ISA_AUTO ? -1 : ctx->opts.isa);  // checked by sdf_context_new
    sd_clear_error();
}

void api_leave(const ApiSaved *saved) {
    sd_threads_set(saved->threads);
    nn_set_precision(saved->precision);
    gemm_force_isa(saved->isa);
}

void api_notice(const SdfContext *ctx, const char *message) {
    if (ctx->opts.notice) ctx->opts.notice(message, ctx->opts.notice_user);
}

char *api_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = (char *)malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

// ---- context -------------------------------------------------------------------------------------

void sdf_options_default(SdfOptions *o) {
    memset(o, 0, sizeof(*o));
    o->threads = 0;
    o->precision = SDF_F32;
    o->isa = SDF_ISA_AUTO;
}

SdfStatus sdf_context_new(const SdfOptions *opts, SdfContext **out) {
    if (!out) return api_arg("sdf_context_new: %s is NULL", "out");
    *out = NULL;
    SdfOptions o;
    if (opts) o = *opts;
    else sdf_options_default(&o);
    if (o.threads < 0 || o.threads > 4096)
        return api_arg("sdf_context_new: threads %s: expected 0 (every core) to 4096", "out of range");
    if (o.precision != SDF_F32 && o.precision != SDF_BF16 && o.precision != SDF_F16)
        return api_arg("sdf_context_new: precision: expected %s", "SDF_F32, SDF_BF16 or SDF_F16");
    if (o.isa < SDF_ISA_AUTO || o.isa > SDF_ISA_NEON)
        return api_arg("sdf_context_new: isa: expected %s", "SDF_ISA_AUTO or an SDF_ISA_* path");
    // Can this CPU run it? Tried on this thread, then the thread's own setting is put back.
    if (o.isa != SDF_ISA_AUTO) {
        int before = current_isa();
        if (gemm_force_isa(o.isa)) {
            sd_errorf("sdf_context_new: this CPU or build has no %s path", sd_isa_name((SdIsa)o.isa));
            return SDF_ERR_UNSUPPORTED;
        }
        int bf16_ok = gemm_bf16_supported();
        gemm_force_isa(before);
        if (o.precision == SDF_BF16 && !bf16_ok) {
            sd_errorf("sdf_context_new: bf16 compute needs the AVX-512 path and AVX512_BF16, or the NEON path and "
                      "FEAT_BF16 (isa %s)",
                      sd_isa_name((SdIsa)o.isa));
            return SDF_ERR_UNSUPPORTED;
        }
    } else if (o.precision == SDF_BF16 && !gemm_bf16_supported()) {
        sd_errorf("sdf_context_new: bf16 compute needs a CPU with AVX512_BF16 (x86-64) or FEAT_BF16 (arm64); this "
                  "one has neither");
        return SDF_ERR_UNSUPPORTED;
    }
    SdfContext *ctx = (SdfContext *)calloc(1, sizeof(*ctx));
    if (!ctx) {
        sd_errorf("sdf_context_new: out of memory");
        return SDF_ERR_FAILED;
    }
    ctx->opts = o;
    *out = ctx;
    return SDF_OK;
}

void sdf_context_free(SdfContext *ctx) { free(ctx); }

void sdf_thread_release(void) { gemm_free_thread_buffers(); }

// ---- model ---------------------------------------------------------------------------------------

SdfStatus sdf_model_load(SdfContext *ctx, const char *path, const char *unet_dir, SdfModel **out) {
    if (!out) return api_arg("sdf_model_load: %s is NULL", "out");
    *out = NULL;
    if (!ctx || !path) return api_arg("sdf_model_load: %s is NULL", !ctx ? "ctx" : "path");
    SdfModel *m = (SdfModel *)calloc(1, sizeof(*m));
    if (!m) return api_arg("sdf_model_load: %s", "out of memory");
    ApiSaved saved;
    api_enter(ctx, &saved);
    SdfStatus st = SDF_ERR_FAILED;
    m->path = api_strdup(path);
    m->unet_dir = api_strdup(unet_dir);
    if (!m->path || (unet_dir && !m->unet_dir)) { sd_errorf("sdf_model_load: out of memory"); goto done; }
    // The default prompt is embedded at load and the text encoder freed, as `satdifuser extract` does
    // (another prompt loads it again for the time it is needed).
    if (diffusion_model_load(&m->m, path, unet_dir, 0, "A satellite image")) goto done;
    m->loaded = 1;
    m->fingerprint = diffusion_model_fingerprint(path, unet_dir);
    m->precision = ctx->opts.precision;
    if (m->m.pack_repacked) {
        char note[4400];
        model_pack_note(&m->m, note, sizeof(note));
        api_notice(ctx, note);
    }
    st = SDF_OK;
done:
    api_leave(&saved);
    if (st != SDF_OK) {
        sdf_model_free(m);
        return st;
    }
    *out = m;
    return SDF_OK;
}

void sdf_model_free(SdfModel *m) {
    if (!m) return;
    if (m->loaded) diffusion_model_free(&m->m);
    free(m->path);
    free(m->unet_dir);
    free(m);
}

// ---- features ------------------------------------------------------------------------------------

void sdf_extract_options_default(SdfExtractOptions *o) {
    memset(o, 0, sizeof(*o));
    o->size = 256;
    o->prompt = "A satellite image";
    o->steps = 50;
    o->n_save = 3;
    o->save_steps[0] = 47;
    o->save_steps[1] = 45;
    o->save_steps[2] = 40;
    o->layers = "attn1,conv2";
}

// The options' checks, with the limits of `satdifuser extract`'s parser.
static SdfStatus check_extract_options(const SdfExtractOptions *o) {
    if (o->size < 8 || o->size > 8192 || o->size % 8)
        return api_arg("sdf_extract: size %s: expected a multiple of 8 from 8 to 8192 (the VAE downsamples by 8)",
                       "out of range");
    if (o->steps < 1 || o->steps > 1000) return api_arg("sdf_extract: steps %s: expected 1 to 1000", "out of range");
    if (o->n_save < 1 || o->n_save > SDF_MAX_SAVE || o->n_save > DDIM_MAX_SAVE)
        return api_arg("sdf_extract: n_save %s: expected 1 to 8 save steps", "out of range");
    if (!o->prompt || !o->layers || !*o->layers) return api_arg("sdf_extract: %s is empty", !o->prompt ? "prompt" : "layers");
    if (strlen(o->layers) >= sizeof(((SdfFeatures *)0)->layers))
        return api_arg("sdf_extract: layers: %s", "list too long");
    if (o->latent_sample != 0 && o->latent_sample != 1) return api_arg("sdf_extract: latent_sample: expected %s", "0 or 1");
    if (o->prediction_by_config != 0 && o->prediction_by_config != 1)
        return api_arg("sdf_extract: prediction_by_config: expected %s", "0 or 1");
    return SDF_OK;
}

SdfStatus sdf_extract(SdfContext *ctx, SdfModel *model, const SdfExtractOptions *opts, const float *image, int channels,
                      int height, int width, SdfFeatures **out) {
    if (!out) return api_arg("sdf_extract: %s is NULL", "out");
    *out = NULL;
    if (!ctx || !model || !image)
        return api_arg("sdf_extract: %s is NULL", !ctx ? "ctx" : !model ? "model" : "image");
    if (channels != 3) return api_arg("sdf_extract: channels %s: expected 3 planes (R, G, B)", "not 3");
    if (height < 1 || width < 1 || (int64_t)height * width > ((int64_t)1 << 28))
        return api_arg("sdf_extract: image size %s: expected 1 to 2^28 pixels", "out of range");
    SdfExtractOptions o;
    if (opts) o = *opts;
    else sdf_extract_options_default(&o);
    SdfStatus st = check_extract_options(&o);
    if (st != SDF_OK) return st;
    if (ctx->opts.precision != model->precision)
        return api_arg("sdf_extract: the model was loaded in another precision than the context's %s", "(use one context)");

    SdfFeatures *f = (SdfFeatures *)calloc(1, sizeof(*f));
    if (!f) return api_arg("sdf_extract: %s", "out of memory");
    ApiSaved saved;
    api_enter(ctx, &saved);
    st = SDF_ERR_FAILED;
    Tensor x = {0};
    DdimWalk walk = {0};
    f->opts = o;
    snprintf(f->layers, sizeof(f->layers), "%s", o.layers);
    f->prompt = api_strdup(o.prompt);
    f->model_path = api_strdup(model->path);
    if (!f->prompt || !f->model_path) { sd_errorf("sdf_extract: out of memory"); goto done; }
    f->opts.prompt = f->prompt;
    f->opts.layers = f->layers;
    f->fingerprint = model->fingerprint;
    f->precision = model->precision;
    f->src_h = height;
    f->src_w = width;

    // The image: already in [0, 1] (clipped here), resized, mapped to [-1, 1] (preprocess.h), as
    // `extract --bands 1,2,3 --scale clip` does to a 3-band file.
    PreprocessOptions pre;
    preprocess_options_default(&pre);
    pre.size = o.size;
    pre.n_bands = 3;
    pre.bands[0] = 1, pre.bands[1] = 2, pre.bands[2] = 3;
    pre.scale = SCALE_CLIP;
    if (preprocess_image(image, 3, height, width, &pre, "sdf_extract image", &x)) goto done;

    ExtractOptions eo;
    extract_options_default(&eo);
    eo.prompt = f->prompt;
    eo.walk.num_inference_steps = o.steps;
    eo.walk.output_handling = o.prediction_by_config ? DDIM_OUTPUT_BY_CONFIG : DDIM_OUTPUT_AS_EPSILON;
    eo.latent_sample = o.latent_sample;
    eo.seed = o.seed;
    eo.walk.n_save = o.n_save;
    for (int k = 0; k < o.n_save; k++) eo.walk.save_index[k] = o.save_steps[k];
    char layer_buf[sizeof(f->layers)];  // the suffixes point into it (only needed during the call)
    snprintf(layer_buf, sizeof(layer_buf), "%s", o.layers);
    eo.n_suffixes = 0;
    char *save = NULL;
    for (char *tok = strtok_r(layer_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (eo.n_suffixes == EXTRACT_MAX_SUFFIXES) {
            sd_errorf("sdf_extract: layers '%s': at most %d suffixes", o.layers, EXTRACT_MAX_SUFFIXES);
            goto done;
        }
        eo.suffixes[eo.n_suffixes++] = tok;
    }
    if (ddim_walk_plan(&model->m.scheduler, &eo.walk, &walk)) goto done;  // checks the save steps up front
    // one image as a batch of one: what `satdifuser extract` runs (the same bits as features_extract)
    if (features_extract_batch(&model->m, &eo, &x, &f->p)) goto done;
    f->have_p = 1;
    st = SDF_OK;
done:
    ddim_walk_free(&walk);
    tensor_free(&x);
    api_leave(&saved);
    if (st != SDF_OK) {
        sdf_features_free(f);
        return st;
    }
    *out = f;
    return SDF_OK;
}

void sdf_features_free(SdfFeatures *f) {
    if (!f) return;
    if (f->have_p) feature_pyramid_free(&f->p);
    free(f->prompt);
    free(f->model_path);
    free(f);
}

int sdf_features_steps(const SdfFeatures *f) { return f ? f->p.n_steps : 0; }
int sdf_features_scales(const SdfFeatures *f) { return f ? f->p.n_scales : 0; }

const float *sdf_features_map(const SdfFeatures *f, int step, int scale, int *channels, int *height, int *width) {
    if (!f || step < 0 || scale < 0 || step >= f->p.n_steps || scale >= f->p.n_scales) return NULL;
    const Tensor *t = &f->p.feats[step * f->p.n_scales + scale];
    if (channels) *channels = (int)t->shape[1];
    if (height) *height = (int)t->shape[2];
    if (width) *width = (int)t->shape[3];
    return t->data;
}
