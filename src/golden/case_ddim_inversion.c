// Golden handler for module "ddim_inversion": the DDIM inversion walk of
// ddim.h driving the UNet of unet.h on input.latent with
// input.encoder_hidden_states. config: {"unet", "scheduler",
// "num_inference_steps", "capture_timesteps", "convention"}.
// output.noisy_latent_t<T>: the latent the UNet sees at the call with
// timestep T; capture.<path>@t<T>: module outputs during that call.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/ddim.h"
#include "models/unet.h"

// The module paths of capture.<path>@t<T> entries (unique, in file order).
static int capture_paths(const GoldenCase *gc, char ***paths, int *n) {
    *paths = (char **)calloc((size_t)gc->tensors.count + 1, sizeof(char *));
    *n = 0;
    if (!*paths) return sd_errorf("out of memory");
    for (int i = 0; i < gc->tensors.count; i++) {
        const char *name = gc->tensors.entries[i].name;
        const char *at = strchr(name, '@');
        if (strncmp(name, "capture.", 8) != 0 || !at) continue;
        size_t len = (size_t)(at - (name + 8));
        int dup = 0;
        for (int k = 0; k < *n && !dup; k++) dup = strlen((*paths)[k]) == len && !strncmp((*paths)[k], name + 8, len);
        if (dup) continue;
        char *p = (char *)malloc(len + 1);
        if (!p) return sd_errorf("out of memory");
        memcpy(p, name + 8, len);
        p[len] = 0;
        (*paths)[(*n)++] = p;
    }
    return 0;
}

int golden_case_ddim_inversion(GoldenCase *gc) {
    int rc = -1, unet_loaded = 0;
    UNet unet;
    DdimConfig scfg = {0};
    DdimScheduler sched = {0};
    DdimWalk walk = {0};
    Tensor latent = {0}, context = {0};
    ModuleCaptures cap = {0};
    char **paths = NULL;
    int n_paths = 0;
    float *x = NULL, *out = NULL, *t = NULL;

    const JsonValue *ucfg = json_get(gc->config, "unet");
    const JsonValue *capt = json_get(gc->config, "capture_timesteps");
    const char *convention = NULL;
    DdimWalkOptions o;
    ddim_walk_options_default(&o);
    if (!ucfg) {
        sd_errorf("%s: config.unet is missing", gc->dir);
        goto done;
    }
    if (json_get_int(gc->config, "num_inference_steps", 50, &o.num_inference_steps) ||
        json_get_string(gc->config, "convention", "satdifuser", &convention))
        goto done;
    if (ddim_config_from_json(json_get(gc->config, "scheduler"), "config.scheduler", &scfg) || ddim_init(&sched, &scfg) ||
        ddim_set_timesteps(&sched, o.num_inference_steps))
        goto done;
    if (!strcmp(convention, "diffusers")) o.convention = DDIM_CONVENTION_DIFFUSERS;
    else if (strcmp(convention, "satdifuser") != 0) {
        sd_errorf("%s: convention '%s' (expected satdifuser or diffusers)", gc->dir, convention);
        goto done;
    }
    // Captures at timesteps T; the satdifuser walk saves by step index.
    o.n_save = capt && capt->type == JSON_ARRAY ? capt->count : 0;
    if (o.n_save > DDIM_MAX_SAVE) {
        sd_errorf("%s: too many capture_timesteps", gc->dir);
        goto done;
    }
    for (int k = 0; k < o.n_save; k++) {
        o.save_timestep[k] = (int)capt->items[k].number;
        if (o.convention == DDIM_CONVENTION_SATDIFUSER) {
            o.save_index[k] = ddim_index_for_timestep(&sched, o.num_inference_steps, o.save_timestep[k]);
            if (o.save_index[k] < 0) goto done;
        }
    }
    if (ddim_walk_plan(&sched, &o, &walk)) goto done;

    const char *prefix = st_find(&gc->weights, "unet.conv_in.weight") ? "unet." : "";
    if (unet_load(&unet, ucfg, &gc->weights, prefix, -1)) goto done;
    unet_loaded = 1;
    if (golden_load(gc, "input.latent", &latent) || golden_load(gc, "input.encoder_hidden_states", &context)) goto done;
    if (latent.ndim != 4 || context.ndim != 3 || context.shape[0] != latent.shape[0]) {
        sd_errorf("%s: input.latent must be (B,C,h,w) and input.encoder_hidden_states (B,L,D)", gc->dir);
        goto done;
    }
    const int B = latent.shape[0], C = latent.shape[1], h = latent.shape[2], w = latent.shape[3], L = context.shape[1];
    const int64_t n = tensor_numel(&latent);
    if (capture_paths(gc, &paths, &n_paths) || captures_init(&cap, (const char *const *)paths, n_paths)) goto done;
    x = (float *)malloc((size_t)n * sizeof(float));
    out = (float *)malloc((size_t)unet_output_floats(&unet, B, h, w) * sizeof(float));
    t = (float *)malloc((size_t)B * sizeof(float));
    if (!x || !out || !t) {
        sd_errorf("out of memory");
        goto done;
    }
    memcpy(x, latent.data, (size_t)n * sizeof(float));
    for (int i = 0; i < walk.n_calls; i++) {
        const DdimCall *c = &walk.calls[i];
        int save = c->save_slot >= 0;
        for (int b = 0; b < B; b++) t[b] = c->t_unet;
        if (save) captures_clear(&cap);
        if (unet_run(&unet, x, B, h, w, t, context.data, L, NULL, save && n_paths ? &cap : NULL, out)) goto done;
        if (save) {
            char name[320];
            int T = walk.save_t[c->save_slot];
            snprintf(name, sizeof(name), "output.noisy_latent_t%d", T);
            if (golden_has(gc, name)) golden_check(gc, name, x, 4, (int[4]){B, C, h, w});
            for (int k = 0; k < cap.count; k++) {
                snprintf(name, sizeof(name), "capture.%s@t%d", cap.items[k].path, T);
                if (golden_has(gc, name)) golden_check_tensor(gc, name, &cap.items[k].value);
            }
        }
        if (c->advance) ddim_step(&walk, c, x, out, x, NULL, n);
    }
    rc = 0;
done:
    for (int k = 0; k < n_paths; k++) free(paths[k]);
    free(paths);
    captures_free(&cap);
    free(x);
    free(out);
    free(t);
    tensor_free(&latent);
    tensor_free(&context);
    if (unet_loaded) unet_free(&unet);
    ddim_walk_free(&walk);
    ddim_free(&sched);
    ddim_config_free(&scfg);
    return rc;
}
