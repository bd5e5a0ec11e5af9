// Golden handler for module "ddim_schedule": diffusers DDIMScheduler(**config.scheduler)
// .set_timesteps(config.num_inference_steps). Outputs compared when present:
// output.betas, output.alphas, output.alphas_cumprod (num_train_timesteps),
// output.final_alpha_cumprod (scalar), output.timesteps (descending).
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "golden/golden.h"
#include "models/ddim.h"

int golden_case_ddim_schedule(GoldenCase *gc) {
    const JsonValue *sched = json_get(gc->config, "scheduler");
    if (!sched) sched = gc->config;  // a bare scheduler config
    int steps = 0;
    if (json_get_int(gc->config, "num_inference_steps", 0, &steps)) return sd_error_context("%s/case.json", gc->dir);
    DdimConfig cfg;
    if (ddim_config_from_json(sched, "case.json config.scheduler", &cfg)) return -1;
    DdimScheduler s;
    int rc = ddim_init(&s, &cfg);
    ddim_config_free(&cfg);
    if (rc) return -1;
    if (steps > 0 && ddim_set_timesteps(&s, steps)) {
        ddim_free(&s);
        return -1;
    }
    int T = s.cfg.num_train_timesteps;
    if (golden_has(gc, "output.betas")) golden_check(gc, "output.betas", s.betas, 1, &T);
    if (golden_has(gc, "output.alphas_cumprod")) golden_check(gc, "output.alphas_cumprod", s.alphas_cumprod, 1, &T);
    if (golden_has(gc, "output.alphas")) {
        float *alphas = (float *)malloc((size_t)T * sizeof(float));
        if (!alphas) {
            ddim_free(&s);
            return sd_errorf("out of memory");
        }
        for (int i = 0; i < T; i++) alphas[i] = 1.0f - s.betas[i];
        golden_check(gc, "output.alphas", alphas, 1, &T);
        free(alphas);
    }
    if (golden_has(gc, "output.final_alpha_cumprod")) {
        const StEntry *e = st_find(&gc->tensors, "output.final_alpha_cumprod");
        int one = 1;
        golden_check(gc, "output.final_alpha_cumprod", &s.final_alpha_cumprod, e->ndim, e->ndim ? &one : NULL);
    }
    if (golden_has(gc, "output.timesteps")) {
        if (steps <= 0) {
            ddim_free(&s);
            return sd_errorf("%s: output.timesteps given but config.num_inference_steps is missing", gc->dir);
        }
        float *ts = (float *)malloc((size_t)s.n_timesteps * sizeof(float));
        if (!ts) {
            ddim_free(&s);
            return sd_errorf("out of memory");
        }
        for (int i = 0; i < s.n_timesteps; i++) ts[i] = (float)s.timesteps[i];
        golden_check(gc, "output.timesteps", ts, 1, &s.n_timesteps);
        free(ts);
    }
    ddim_free(&s);
    return 0;
}
