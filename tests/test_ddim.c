// DDIM scheduler and inversion walk: values against torch 1.13 / diffusers
// (bit-exact float32), the walk's quirks of SPEC.md section 5, the step formula.
#include "tests/test_util.h"

#include "core/error.h"
#include "models/ddim.h"

// Reference values printed by torch 1.13.1 (Debian python3-torch, AVX2 kernels):
// torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=float32)**2 and torch.cumprod(1 - betas, 0).
static const struct {
    int t;
    double beta, alpha_cumprod;
} k_scaled_linear[] = {
    {0, 0x1.bda51p-11, 0x1.ff9096p-1},   {1, 0x1.c01bb4p-11, 0x1.ff20a8p-1},  {21, 0x1.f2cd9ap-11, 0x1.f5f474p-1},
    {61, 0x1.302b9ep-10, 0x1.e12b34p-1}, {161, 0x1.d0db9p-10, 0x1.9fcc8cp-1}, {192, 0x1.04c83ap-9, 0x1.883096p-1},
    {199, 0x1.0b6906p-9, 0x1.82ae9p-1},  {500, 0x1.3b8d88p-8, 0x1.1af6e8p-2}, {981, 0x1.7ee2d6p-7, 0x1.7a80c2p-8},
    {999, 0x1.89374ap-7, 0x1.31677p-8},
};
// torch.linspace(0.0001, 0.02, 1000, dtype=float32) at 72, 113, 500, 999.
static const struct {
    int i;
    double v;
} k_linear[] = {{72, 0x1.9230b8p-10}, {113, 0x1.3424d2p-9}, {500, 0x1.49a51p-7}, {999, 0x1.47ae14p-6}};

static void test_schedule(void) {
    DdimConfig cfg;
    ddim_config_default(&cfg);
    DdimScheduler s;
    CHECK(ddim_init(&s, &cfg) == 0, "ddim_init: %s", sd_last_error());
    int exact = 1;
    for (size_t k = 0; k < sizeof(k_scaled_linear) / sizeof(k_scaled_linear[0]); k++) {
        int t = k_scaled_linear[k].t;
        if ((double)s.betas[t] != k_scaled_linear[k].beta || (double)s.alphas_cumprod[t] != k_scaled_linear[k].alpha_cumprod) {
            exact = 0;
            printf("  t=%d beta %a (want %a) alpha_cumprod %a (want %a)\n", t, s.betas[t], k_scaled_linear[k].beta,
                   s.alphas_cumprod[t], k_scaled_linear[k].alpha_cumprod);
        }
    }
    CHECK(exact, "scaled_linear betas / alphas_cumprod differ from torch");
    CHECK(s.final_alpha_cumprod == s.alphas_cumprod[0], "set_alpha_to_one false: final alpha = alphas_cumprod[0]");
    CHECK(ddim_set_timesteps(&s, 50) == 0, "set_timesteps 50");
    CHECK(s.timesteps[0] == 981 && s.timesteps[1] == 961 && s.timesteps[49] == 1, "leading spacing: %d %d .. %d",
          s.timesteps[0], s.timesteps[1], s.timesteps[49]);
    CHECK(ddim_set_timesteps(&s, 20) == 0 && s.timesteps[0] == 951 && s.timesteps[19] == 1, "20 steps: %d .. %d",
          s.timesteps[0], s.timesteps[19]);
    CHECK(ddim_set_timesteps(&s, 0) == -1 && ddim_set_timesteps(&s, 1001) == -1, "bad step counts rejected");
    ddim_free(&s);

    float lin[1000];
    ddim_torch_linspace_f32(0.0001, 0.02, 1000, lin);
    for (size_t k = 0; k < sizeof(k_linear) / sizeof(k_linear[0]); k++)
        CHECK((double)lin[k_linear[k].i] == k_linear[k].v, "linspace[%d] = %a, torch %a", k_linear[k].i, lin[k_linear[k].i],
              k_linear[k].v);

    // Trailing and linspace spacings (diffusers formulas).
    cfg.timestep_spacing = SPACING_TRAILING;
    CHECK(ddim_init(&s, &cfg) == 0 && ddim_set_timesteps(&s, 50) == 0, "trailing init");
    CHECK(s.timesteps[0] == 999 && s.timesteps[49] == 19, "trailing: %d .. %d", s.timesteps[0], s.timesteps[49]);
    ddim_free(&s);
    cfg.timestep_spacing = SPACING_LINSPACE;
    CHECK(ddim_init(&s, &cfg) == 0 && ddim_set_timesteps(&s, 3) == 0, "linspace init");
    CHECK(s.timesteps[0] == 999 && s.timesteps[1] == 500 && s.timesteps[2] == 0, "linspace: %d %d %d", s.timesteps[0],
          s.timesteps[1], s.timesteps[2]);  // 499.5 rounds half to even
    ddim_free(&s);
}

static void test_config_json(void) {
    const char *text = "{\"_class_name\": \"DDIMScheduler\", \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\","
                       " \"beta_start\": 0.00085, \"clip_sample\": false, \"num_train_timesteps\": 1000,"
                       " \"prediction_type\": \"v_prediction\", \"set_alpha_to_one\": false, \"skip_prk_steps\": true,"
                       " \"steps_offset\": 1, \"trained_betas\": null}";
    JsonValue j;
    CHECK(json_parse(text, strlen(text), "scheduler_config.json", &j) == 0, "parse");
    DdimConfig c;
    CHECK(ddim_config_from_json(&j, "scheduler_config.json", &c) == 0, "config: %s", sd_last_error());
    CHECK(c.prediction_type == PRED_V && c.steps_offset == 1 && !c.set_alpha_to_one && !c.clip_sample &&
              c.beta_schedule == BETAS_SCALED_LINEAR,
          "fields read");
    ddim_config_free(&c);
    json_free(&j);
    const char *bad = "{\"beta_schedule\": \"cosine\"}";
    CHECK(json_parse(bad, strlen(bad), "x.json", &j) == 0, "parse bad");
    CHECK(ddim_config_from_json(&j, "x.json", &c) == -1 && strstr(sd_last_error(), "cosine"), "unknown schedule named: %s",
          sd_last_error());
    json_free(&j);
}

static void test_walk_plan(void) {
    DdimConfig cfg;
    ddim_config_default(&cfg);
    DdimScheduler s;
    ddim_init(&s, &cfg);
    DdimWalkOptions o;
    ddim_walk_options_default(&o);
    DdimWalk w;
    CHECK(ddim_walk_plan(&s, &o, &w) == 0, "plan: %s", sd_last_error());
    // 50 - min(47, 45, 40) = 10 calls at t = -1, 1, 21, ..., 161; indices 49 .. 40.
    CHECK(w.n_calls == 10, "calls %d", w.n_calls);
    for (int i = 0; i < w.n_calls; i++) {
        const DdimCall *c = &w.calls[i];
        float want_t = i == 0 ? -1.0f : (float)(1 + 20 * (i - 1));
        CHECK(c->t_unet == want_t && c->index == 49 - i && c->advance && c->t_to == 1 + 20 * i, "call %d: t %g index %d", i,
              (double)c->t_unet, c->index);
    }
    CHECK(w.calls[0].alpha == 1.0f && w.calls[0].alpha_next == s.alphas_cumprod[1], "first call: alpha 1 -> alpha(1)");
    CHECK(w.calls[3].alpha == s.alphas_cumprod[41] && w.calls[3].alpha_next == s.alphas_cumprod[61], "call 3 alphas");
    CHECK(w.calls[2].save_slot == 0 && w.calls[4].save_slot == 1 && w.calls[9].save_slot == 2 && w.calls[1].save_slot == -1,
          "saves at calls 2, 4, 9");
    CHECK(w.save_t[0] == 21 && w.save_t[1] == 61 && w.save_t[2] == 161, "save t %d %d %d", w.save_t[0], w.save_t[1],
          w.save_t[2]);
    ddim_walk_free(&w);

    CHECK(ddim_index_for_timestep(&s, 50, 21) == 47 && ddim_index_for_timestep(&s, 50, 161) == 40 &&
              ddim_index_for_timestep(&s, 50, -1) == 49,
          "index for timestep");
    CHECK(ddim_index_for_timestep(&s, 50, 100) == -1, "t = 100 is not a call of the 50-step walk");

    // The paper's {1, 100, 200}: 1000 steps, indices 998, 899, 799 -> calls at t = 1, 100, 200.
    o.num_inference_steps = 1000;
    o.save_index[0] = 998;
    o.save_index[1] = 899;
    o.save_index[2] = 799;
    CHECK(ddim_walk_plan(&s, &o, &w) == 0, "1000-step plan: %s", sd_last_error());
    CHECK(w.n_calls == 201 && w.save_t[0] == 1 && w.save_t[1] == 100 && w.save_t[2] == 200, "paper timesteps: %d calls, %d %d %d",
          w.n_calls, w.save_t[0], w.save_t[1], w.save_t[2]);
    ddim_walk_free(&w);

    ddim_walk_options_default(&o);
    o.save_index[0] = 50;
    CHECK(ddim_walk_plan(&s, &o, &w) == -1, "save index 50 rejected");
    o.save_index[0] = 45;
    CHECK(ddim_walk_plan(&s, &o, &w) == -1 && strstr(sd_last_error(), "twice"), "duplicate rejected");
    ddim_walk_options_default(&o);
    o.max_calls = 5;
    CHECK(ddim_walk_plan(&s, &o, &w) == -1 && strstr(sd_last_error(), "never reached"), "stop before a save rejected");

    // diffusers convention: UNet at t on x at level t - 20 (alpha_cumprod[0] below 0: set_alpha_to_one false).
    ddim_walk_options_default(&o);
    o.convention = DDIM_CONVENTION_DIFFUSERS;
    o.n_save = 2;
    o.save_timestep[0] = 21;
    o.save_timestep[1] = 61;
    CHECK(ddim_walk_plan(&s, &o, &w) == 0, "diffusers plan: %s", sd_last_error());
    // steps at 1, 21 (+capture), 41, 61 (+capture)
    CHECK(w.n_calls == 6, "diffusers calls %d", w.n_calls);
    CHECK(w.calls[0].t_unet == 1.0f && w.calls[0].alpha == s.alphas_cumprod[0] && w.calls[0].alpha_next == s.alphas_cumprod[1],
          "first diffusers step");
    CHECK(w.calls[1].t_unet == 21.0f && w.calls[1].alpha == s.alphas_cumprod[1] && w.calls[1].advance, "second step");
    CHECK(w.calls[2].t_unet == 21.0f && !w.calls[2].advance && w.calls[2].save_slot == 0, "capture pass at 21");
    CHECK(w.calls[5].t_unet == 61.0f && !w.calls[5].advance && w.calls[5].save_slot == 1, "capture pass at 61");
    ddim_walk_free(&w);
    ddim_free(&s);
}

typedef struct {
    int calls, captures;
    float e;  // the constant model output
} FakeUnet;

static int fake_model(void *ctx, const DdimCall *call, const float *x, float *out) {
    FakeUnet *f = (FakeUnet *)ctx;
    (void)x;
    f->calls++;
    if (call->save_slot >= 0) f->captures++;
    for (int i = 0; i < 4; i++) out[i] = f->e;
    return 0;
}

static void test_step(void) {
    DdimConfig cfg;
    ddim_config_default(&cfg);
    DdimScheduler s;
    ddim_init(&s, &cfg);
    DdimWalkOptions o;
    ddim_walk_options_default(&o);
    DdimWalk w;
    ddim_walk_plan(&s, &o, &w);
    float x[4] = {0.5f, -1.0f, 2.0f, 0.0f}, e[4] = {0.1f, 0.2f, -0.3f, 1.0f}, xn[4], x0[4];
    // First call: alpha 1, so x0 = x and x_next = sqrt(a1) x + sqrt(1 - a1) e.
    ddim_step(&w, &w.calls[0], x, e, xn, x0, 4);
    float a1 = s.alphas_cumprod[1];
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        // exact: ddim_step evaluates this expression; the volatile store rounds it to float as its store
        // does (under FLT_EVAL_METHOD 1, s390x gcc -std=c99, the unstored sum would stay in double)
        volatile float want = sqrtf(a1) * x[i] + sqrtf(1.0f - a1) * e[i];
        ok &= x0[i] == x[i] && xn[i] == want;
    }
    CHECK(ok, "first step from the clean latent");
    // A later step, against the formula in double.
    const DdimCall *c = &w.calls[5];
    ddim_step(&w, c, x, e, xn, NULL, 4);
    double md = 0;
    for (int i = 0; i < 4; i++) {
        double a = c->alpha, an = c->alpha_next;
        double x0d = (x[i] - sqrt(1 - a) * e[i]) / sqrt(a);
        double want = sqrt(an) * x0d + sqrt(1 - an) * e[i];
        if (fabs(want - xn[i]) > md) md = fabs(want - xn[i]);
    }
    CHECK(md < 1e-6, "step formula: max diff %g", md);
    // Default handling ignores a v-prediction config; by-config converts v.
    w.prediction_type = PRED_V;
    float xn_v[4];
    ddim_step(&w, c, x, e, xn_v, NULL, 4);
    CHECK(max_abs_diff(xn, xn_v, 4) == 0.0, "v-prediction checkpoint: output still treated as epsilon by default");
    w.output_handling = DDIM_OUTPUT_BY_CONFIG;
    ddim_step(&w, c, x, e, xn_v, NULL, 4);
    md = 0;
    for (int i = 0; i < 4; i++) {
        double a = c->alpha, an = c->alpha_next;
        double x0d = sqrt(a) * x[i] - sqrt(1 - a) * e[i];
        double ed = sqrt(a) * e[i] + sqrt(1 - a) * x[i];
        double want = sqrt(an) * x0d + sqrt(1 - an) * ed;
        if (fabs(want - xn_v[i]) > md) md = fabs(want - xn_v[i]);
    }
    CHECK(md < 1e-6, "v-prediction conversion: max diff %g", md);
    w.output_handling = DDIM_OUTPUT_AS_EPSILON;
    w.prediction_type = PRED_EPSILON;

    // The driver: 10 calls, 3 captures; a zero model keeps x on the sqrt(alpha) ray.
    FakeUnet f = {0, 0, 0.0f};
    float z[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    CHECK(ddim_invert(&w, z, 4, fake_model, NULL, &f) == 0, "invert");
    CHECK(f.calls == 10 && f.captures == 3, "calls %d captures %d", f.calls, f.captures);
    float a_last = s.alphas_cumprod[181];
    CHECK(fabsf(z[3] - 4.0f * sqrtf(a_last)) < 1e-5f, "zero epsilon: x = sqrt(alpha(181)) x0: %g vs %g", (double)z[3],
          4.0 * sqrt(a_last));
    ddim_walk_free(&w);
    ddim_free(&s);
}

int main(void) {
    test_schedule();
    test_config_json();
    test_walk_plan();
    test_step();
    return test_report("test_ddim");
}
