// DDIM scheduler and inversion walk (see ddim.h). References: diffusers 0.17
// schedulers/scheduling_ddim.py (betas, alphas_cumprod, set_timesteps), newer
// diffusers scheduling_ddim_inverse.py (the "diffusers" convention), and
// SatDiFuser archs/ldm_extractor.py generalized_steps + get_xt_next.
#include "models/ddim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void ddim_config_default(DdimConfig *c) {
    memset(c, 0, sizeof(*c));
    c->num_train_timesteps = 1000;
    c->beta_start = 0.00085;
    c->beta_end = 0.012;
    c->beta_schedule = BETAS_SCALED_LINEAR;
    c->set_alpha_to_one = 0;
    c->steps_offset = 1;
    c->timestep_spacing = SPACING_LEADING;
    c->prediction_type = PRED_EPSILON;
    c->clip_sample = 0;
    c->clip_sample_range = 1.0;
}

void ddim_config_free(DdimConfig *c) {
    free(c->trained_betas);
    c->trained_betas = NULL;
}

int ddim_config_from_json(const JsonValue *obj, const char *source, DdimConfig *c) {
    memset(c, 0, sizeof(*c));
    if (!obj || obj->type != JSON_OBJECT) return sd_errorf("%s: scheduler config is not a JSON object", source);
    const char *schedule = NULL, *prediction = NULL, *spacing = NULL;
    // DDIMScheduler.__init__ defaults for absent keys.
    if (json_get_int(obj, "num_train_timesteps", 1000, &c->num_train_timesteps) ||
        json_get_double(obj, "beta_start", 0.0001, &c->beta_start) ||
        json_get_double(obj, "beta_end", 0.02, &c->beta_end) ||
        json_get_string(obj, "beta_schedule", "linear", &schedule) ||
        json_get_bool(obj, "set_alpha_to_one", 1, &c->set_alpha_to_one) ||
        json_get_int(obj, "steps_offset", 0, &c->steps_offset) ||
        json_get_string(obj, "prediction_type", "epsilon", &prediction) ||
        json_get_string(obj, "timestep_spacing", "leading", &spacing) ||
        json_get_bool(obj, "clip_sample", 1, &c->clip_sample) ||
        json_get_double(obj, "clip_sample_range", 1.0, &c->clip_sample_range) ||
        json_get_bool(obj, "rescale_betas_zero_snr", 0, &c->rescale_betas_zero_snr))
        return sd_error_context("%s", source);
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > 100000)
        return sd_errorf("%s: num_train_timesteps %d out of range [2, 100000]", source, c->num_train_timesteps);
    if (!strcmp(schedule, "linear")) c->beta_schedule = BETAS_LINEAR;
    else if (!strcmp(schedule, "scaled_linear")) c->beta_schedule = BETAS_SCALED_LINEAR;
    else if (!strcmp(schedule, "squaredcos_cap_v2")) c->beta_schedule = BETAS_SQUAREDCOS_CAP_V2;
    else return sd_errorf("%s: beta_schedule '%s' is not supported (linear, scaled_linear, squaredcos_cap_v2)", source, schedule);
    if (!strcmp(prediction, "epsilon")) c->prediction_type = PRED_EPSILON;
    else if (!strcmp(prediction, "v_prediction")) c->prediction_type = PRED_V;
    else if (!strcmp(prediction, "sample")) c->prediction_type = PRED_SAMPLE;
    else return sd_errorf("%s: prediction_type '%s' is not supported (epsilon, v_prediction, sample)", source, prediction);
    if (!strcmp(spacing, "leading")) c->timestep_spacing = SPACING_LEADING;
    else if (!strcmp(spacing, "trailing")) c->timestep_spacing = SPACING_TRAILING;
    else if (!strcmp(spacing, "linspace")) c->timestep_spacing = SPACING_LINSPACE;
    else return sd_errorf("%s: timestep_spacing '%s' is not supported (leading, trailing, linspace)", source, spacing);
    const JsonValue *tb = json_get(obj, "trained_betas");
    if (tb && tb->type != JSON_NULL) {
        if (tb->type != JSON_ARRAY || tb->count != c->num_train_timesteps)
            return sd_errorf("%s: trained_betas must be an array of num_train_timesteps (%d) numbers", source,
                             c->num_train_timesteps);
        c->trained_betas = (float *)malloc((size_t)tb->count * sizeof(float));
        if (!c->trained_betas) return sd_errorf("out of memory");
        for (int i = 0; i < tb->count; i++) {
            if (tb->items[i].type != JSON_NUMBER) {
                ddim_config_free(c);
                return sd_errorf("%s: trained_betas[%d] is not a number", source, i);
            }
            c->trained_betas[i] = (float)tb->items[i].number;
        }
    }
    return 0;
}

// torch 1.13 linspace_kernel (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp)
// on a contiguous float tensor: step = (end - start) / (n - 1) in float; the
// first half counts up from start, the second half down from end. The
// vectorised loop handles pairs of 8-float chunks: chunk base = fma(step, idx,
// start) (the compiler contracts it), then base + j * step per lane (not
// fused); the tail (< 16 values) uses the scalar formula, also fused.
void ddim_torch_linspace_f32(double start_d, double end_d, int n, float *out) {
    if (n <= 0) return;
    if (n == 1) {
        out[0] = (float)start_d;
        return;
    }
    const float start = (float)start_d, end = (float)end_d;
    const float step = (end - start) / (float)(n - 1);
    const int halfway = n / 2;
    const int lanes = 8;
    int i = 0;
    for (; i <= n - 2 * lanes; i += lanes) {
        float base = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - i - 1), end);
        for (int j = 0; j < lanes; j++) {
            float js = (float)j * step;
            out[i + j] = base + js;
        }
    }
    for (; i < n; i++) out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - i - 1), end);
}

// diffusers betas_for_alpha_bar (Glide cosine), computed in double, stored as float32.
static double alpha_bar_cos(double t) {
    double c = cos((t + 0.008) / 1.008 * M_PI / 2.0);
    return c * c;
}

// rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), in float32.
static void rescale_zero_snr(float *betas, int n) {
    float *s = (float *)malloc((size_t)n * sizeof(float));
    if (!s) return;
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        acc *= (double)(1.0f - betas[i]);
        s[i] = sqrtf((float)acc);
    }
    float s0 = s[0], sT = s[n - 1];
    for (int i = 0; i < n; i++) s[i] -= sT;
    float k = s0 / (s0 - sT);
    for (int i = 0; i < n; i++) s[i] *= k;
    float prev = 0.0f;
    for (int i = 0; i < n; i++) {
        float ab = s[i] * s[i];
        float a = i == 0 ? ab : ab / prev;
        betas[i] = 1.0f - a;
        prev = ab;
    }
    free(s);
}

int ddim_init(DdimScheduler *s, const DdimConfig *c) {
    memset(s, 0, sizeof(*s));
    s->cfg = *c;
    s->cfg.trained_betas = NULL;
    int n = c->num_train_timesteps;
    if (n < 2) return sd_errorf("scheduler: num_train_timesteps %d must be >= 2", n);
    s->betas = (float *)malloc((size_t)n * sizeof(float));
    s->alphas_cumprod = (float *)malloc((size_t)n * sizeof(float));
    if (!s->betas || !s->alphas_cumprod) {
        ddim_free(s);
        return sd_errorf("out of memory");
    }
    if (c->trained_betas) {
        s->cfg.trained_betas = (float *)malloc((size_t)n * sizeof(float));
        if (!s->cfg.trained_betas) {
            ddim_free(s);
            return sd_errorf("out of memory");
        }
        memcpy(s->cfg.trained_betas, c->trained_betas, (size_t)n * sizeof(float));
        memcpy(s->betas, c->trained_betas, (size_t)n * sizeof(float));
    } else if (c->beta_schedule == BETAS_LINEAR) {
        ddim_torch_linspace_f32(c->beta_start, c->beta_end, n, s->betas);
    } else if (c->beta_schedule == BETAS_SCALED_LINEAR) {
        // torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=float32) ** 2
        ddim_torch_linspace_f32(sqrt(c->beta_start), sqrt(c->beta_end), n, s->betas);
        for (int i = 0; i < n; i++) s->betas[i] = s->betas[i] * s->betas[i];
    } else {
        for (int i = 0; i < n; i++) {
            double b = 1.0 - alpha_bar_cos((double)(i + 1) / n) / alpha_bar_cos((double)i / n);
            s->betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
    }
    if (c->rescale_betas_zero_snr) rescale_zero_snr(s->betas, n);
    // alphas = 1 - betas (float32); torch.cumprod on CPU accumulates in double
    // and rounds each partial product to float32.
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        float alpha = 1.0f - s->betas[i];
        acc *= (double)alpha;
        s->alphas_cumprod[i] = (float)acc;
    }
    s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return 0;
}

void ddim_free(DdimScheduler *s) {
    free(s->betas);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->cfg.trained_betas);
    memset(s, 0, sizeof(*s));
}

double ddim_alpha(const DdimScheduler *s, int t) {
    if (t < 0 || t >= s->cfg.num_train_timesteps) return -1.0;
    return s->alphas_cumprod[t];
}

int ddim_set_timesteps(DdimScheduler *s, int n) {
    int T = s->cfg.num_train_timesteps;
    if (n < 1 || n > T)
        return sd_errorf("scheduler: num_inference_steps %d must be in [1, num_train_timesteps = %d]", n, T);
    int count = n;
    double ratio = (double)T / n, delta = ((double)T - ratio) - (double)T;
    // numpy.arange(T, 0, -ratio) has ceil(T / ratio) values, which is n + 1 for some n.
    if (s->cfg.timestep_spacing == SPACING_TRAILING) count = (int)ceil((0.0 - (double)T) / -ratio);
    int *ts = (int *)malloc((size_t)count * sizeof(int));
    if (!ts) return sd_errorf("out of memory");
    if (s->cfg.timestep_spacing == SPACING_LEADING) {
        // (arange(0, n) * (T // n)).round()[::-1] + steps_offset
        int step_ratio = T / n;
        for (int i = 0; i < n; i++) ts[i] = (n - 1 - i) * step_ratio + s->cfg.steps_offset;
    } else if (s->cfg.timestep_spacing == SPACING_TRAILING) {
        // round(arange(T, 0, -T / n)) - 1, descending; numpy's arange fills
        // start + i * delta with delta = (start + step) - start; round is half to even.
        for (int i = 0; i < count; i++) ts[i] = (int)rint((double)T + i * delta) - 1;
    } else {
        // linspace(0, T - 1, n).round()[::-1]
        for (int i = 0; i < n; i++) {
            double v = n == 1 ? 0.0 : (double)(T - 1) * (double)i / (double)(n - 1);
            ts[n - 1 - i] = (int)rint(v);
        }
    }
    free(s->timesteps);
    s->timesteps = ts;
    s->num_inference_steps = n;
    s->n_timesteps = count;
    return 0;
}

// ---------------------------------------------------------------------------

void ddim_walk_options_default(DdimWalkOptions *o) {
    memset(o, 0, sizeof(*o));
    o->num_inference_steps = 50;
    o->n_save = 3;
    o->save_index[0] = 47;
    o->save_index[1] = 45;
    o->save_index[2] = 40;
    o->max_calls = 0;
    o->convention = DDIM_CONVENTION_SATDIFUSER;
    o->output_handling = DDIM_OUTPUT_AS_EPSILON;
}

void ddim_walk_free(DdimWalk *w) {
    free(w->calls);
    memset(w, 0, sizeof(*w));
}

static int ensure_timesteps(DdimScheduler *s, int n) {
    if (s->num_inference_steps == n && s->timesteps) return 0;
    return ddim_set_timesteps(s, n);
}

int ddim_index_for_timestep(const DdimScheduler *s, int n, int T) {
    // Call i runs at seq_next[i] = (i == 0 ? -1 : ascending[i - 1]); its index is n - 1 - i.
    if (s->num_inference_steps != n || !s->timesteps) {
        sd_errorf("scheduler: timesteps for %d steps are not set", n);
        return -1;
    }
    n = s->n_timesteps;
    if (T == -1) return n - 1;
    for (int i = 1; i < n; i++)
        if (s->timesteps[n - i] == T) return n - 1 - i;  // ascending[i - 1] = timesteps[n - i]
    sd_errorf("no UNet call of the %d-step inversion walk is at timestep %d (the calls are at -1, %d, %d, ...)", n, T,
              s->timesteps[n - 1], n > 1 ? s->timesteps[n - 2] : 0);
    return -1;
}

// alpha at noise level t for the satdifuser walk: 1 at t = -1 (the clean latent).
static int walk_alpha(const DdimScheduler *s, int t, float *a) {
    if (t == -1) {
        *a = 1.0f;
        return 0;
    }
    if (t < 0 || t >= s->cfg.num_train_timesteps)
        return sd_errorf("inversion walk: timestep %d is outside the scheduler's alphas [0, %d)", t,
                         s->cfg.num_train_timesteps);
    *a = s->alphas_cumprod[t];
    return 0;
}

static int plan_satdifuser(DdimScheduler *s, const DdimWalkOptions *o, DdimWalk *w) {
    int n = s->n_timesteps;
    if (o->n_save < 1 && o->max_calls <= 0)
        return sd_errorf("inversion walk: no save step and no stop point given");
    int min_save = n;
    for (int k = 0; k < o->n_save; k++) {
        int idx = o->save_index[k];
        if (idx < 0 || idx >= n)
            return sd_errorf("inversion walk: save step %d is outside [0, %d] for %d steps", idx, n - 1, n);
        for (int j = 0; j < k; j++)
            if (o->save_index[j] == idx) return sd_errorf("inversion walk: save step %d is listed twice", idx);
        if (idx < min_save) min_save = idx;
    }
    // The original: max_i = num_timesteps - min(save_timesteps).
    int calls = o->max_calls > 0 ? o->max_calls : n - min_save;
    if (calls > n) calls = n;
    for (int k = 0; k < o->n_save; k++)
        if (n - 1 - o->save_index[k] >= calls)
            return sd_errorf("inversion walk: save step %d is never reached when the walk stops after %d calls",
                             o->save_index[k], calls);
    w->calls = (DdimCall *)calloc((size_t)calls, sizeof(DdimCall));
    if (!w->calls) return sd_errorf("out of memory");
    for (int i = 0; i < calls; i++) {
        // seq = ascending timesteps; seq_next = [-1] + seq[:-1]; inversion walks (seq_next[i], seq[i]).
        int t = i == 0 ? -1 : s->timesteps[n - i];
        int t_next = s->timesteps[n - 1 - i];
        DdimCall *c = &w->calls[i];
        c->t_unet = (float)t;
        c->index = n - 1 - i;
        c->advance = 1;
        c->t_from = t;
        c->t_to = t_next;
        c->save_slot = -1;
        if (walk_alpha(s, t, &c->alpha) || walk_alpha(s, t_next, &c->alpha_next)) return -1;
        for (int k = 0; k < o->n_save; k++)
            if (o->save_index[k] == c->index) {
                c->save_slot = k;
                w->save_t[k] = t;
            }
    }
    w->n_calls = calls;
    return 0;
}

static int plan_diffusers(DdimScheduler *s, const DdimWalkOptions *o, DdimWalk *w) {
    int n = s->n_timesteps, T = s->cfg.num_train_timesteps;
    int ratio = T / s->num_inference_steps;
    float initial = s->cfg.set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    // Steps up to the one that reaches the largest capture timestep.
    int steps = n;
    if (o->max_calls > 0) steps = o->max_calls < n ? o->max_calls : n;
    else if (o->n_save > 0) {
        int last = -1;
        for (int k = 0; k < o->n_save; k++) {
            int found = -1;
            for (int i = 0; i < n; i++)
                if (s->timesteps[n - 1 - i] == o->save_timestep[k]) found = i;
            if (found < 0)
                return sd_errorf("inversion walk: capture timestep %d is not one of the %d-step schedule's timesteps",
                                 o->save_timestep[k], n);
            if (found > last) last = found;
        }
        steps = last + 1;
    }
    w->calls = (DdimCall *)calloc((size_t)(steps + o->n_save), sizeof(DdimCall));
    if (!w->calls) return sd_errorf("out of memory");
    int nc = 0;
    for (int i = 0; i < steps; i++) {
        int t = s->timesteps[n - 1 - i];  // ascending
        int t_cur = t - ratio < T - 1 ? t - ratio : T - 1;
        if (t < 0 || t >= T) return sd_errorf("inversion walk: timestep %d is outside [0, %d)", t, T);
        DdimCall *c = &w->calls[nc++];
        c->t_unet = (float)t;
        c->index = n - 1 - i;
        c->advance = 1;
        c->t_from = t_cur;
        c->t_to = t;
        c->alpha = t_cur >= 0 ? s->alphas_cumprod[t_cur] : initial;
        c->alpha_next = s->alphas_cumprod[t];
        c->save_slot = -1;
        for (int k = 0; k < o->n_save; k++)
            if (o->save_timestep[k] == t) {
                DdimCall *p = &w->calls[nc++];
                p->t_unet = (float)t;
                p->index = -1;
                p->advance = 0;
                p->t_from = p->t_to = t;
                p->alpha = p->alpha_next = c->alpha_next;
                p->save_slot = k;
                w->save_t[k] = t;
            }
    }
    for (int k = 0; k < o->n_save; k++) {
        int reached = 0;
        for (int i = 0; i < nc; i++) reached |= w->calls[i].save_slot == k;
        if (!reached)
            return sd_errorf("inversion walk: capture timestep %d is never reached in %d steps", o->save_timestep[k], steps);
    }
    w->n_calls = nc;
    return 0;
}

int ddim_walk_plan(DdimScheduler *s, const DdimWalkOptions *o, DdimWalk *w) {
    memset(w, 0, sizeof(*w));
    if (o->n_save < 0 || o->n_save > DDIM_MAX_SAVE)
        return sd_errorf("inversion walk: %d save steps (at most %d)", o->n_save, DDIM_MAX_SAVE);
    if (ensure_timesteps(s, o->num_inference_steps)) return -1;
    w->n_save = o->n_save;
    memcpy(w->save_index, o->save_index, sizeof(w->save_index));
    w->prediction_type = s->cfg.prediction_type;
    int rc;
    if (o->convention == DDIM_CONVENTION_DIFFUSERS) {
        // The scheduler converts by its prediction_type and clips x0 if configured.
        w->output_handling = DDIM_OUTPUT_BY_CONFIG;
        w->clip_sample = s->cfg.clip_sample;
        w->clip_sample_range = (float)s->cfg.clip_sample_range;
        for (int k = 0; k < o->n_save; k++) w->save_index[k] = -1;
        rc = plan_diffusers(s, o, w);
    } else {
        w->output_handling = o->output_handling;
        rc = plan_satdifuser(s, o, w);
    }
    if (rc) ddim_walk_free(w);
    return rc;
}

// ---------------------------------------------------------------------------

void ddim_step(const DdimWalk *w, const DdimCall *c, const float *x, const float *out, float *x_next, float *x0_out,
               int64_t n) {
    const float a = c->alpha, an = c->alpha_next;
    const float sqrt_a = sqrtf(a), sqrt_1ma = sqrtf(1.0f - a);
    const float sqrt_an = sqrtf(an), sqrt_1man = sqrtf(1.0f - an);
    PredictionType pt = w->output_handling == DDIM_OUTPUT_BY_CONFIG ? w->prediction_type : PRED_EPSILON;
    const float lo = -w->clip_sample_range, hi = w->clip_sample_range;
    for (int64_t i = 0; i < n; i++) {
        float xt = x[i], e = out[i], x0;
        if (pt == PRED_EPSILON) {
            x0 = (xt - e * sqrt_1ma) / sqrt_a;  // get_xt_next: (xt - et * (1 - at).sqrt()) / at.sqrt()
        } else if (pt == PRED_V) {
            float v = e;
            x0 = sqrt_a * xt - sqrt_1ma * v;
            e = sqrt_a * v + sqrt_1ma * xt;
        } else {
            x0 = e;
            // At alpha 1 (the clean latent) epsilon is undefined; use 0.
            e = sqrt_1ma > 0.0f ? (xt - sqrt_a * x0) / sqrt_1ma : 0.0f;
        }
        if (w->clip_sample) x0 = x0 < lo ? lo : (x0 > hi ? hi : x0);
        if (x0_out) x0_out[i] = x0;
        x_next[i] = sqrt_an * x0 + sqrt_1man * e;  // eta = 0: c1 = 0, c2 = sqrt(1 - a_next)
    }
}

int ddim_invert(const DdimWalk *w, float *x, int64_t n, DdimModelFn model, DdimStepFn after_step, void *ctx) {
    float *out = (float *)malloc((size_t)n * sizeof(float));
    if (!out) return sd_errorf("out of memory");
    for (int i = 0; i < w->n_calls; i++) {
        const DdimCall *c = &w->calls[i];
        if (model(ctx, c, x, out)) {
            free(out);
            return sd_error_context("inversion call %d (UNet at t = %g)", i, (double)c->t_unet);
        }
        if (!c->advance) continue;
        ddim_step(w, c, x, out, x, NULL, n);
        if (after_step && after_step(ctx, c, x)) {
            free(out);
            return -1;
        }
    }
    free(out);
    return 0;
}
