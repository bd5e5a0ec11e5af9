// Fusion modules: feature layout, Phi, the localized fuser's channel quirk, the
// global fuser's offsets and weights, the MoE call counter and top-k path,
// thread-count independence, and the full-size parameter counts of the
// original models (SatDiFuser @ 51148cb, counted with PyTorch).
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/runtime.h"
#include "fusion/fuser.h"
#include "heads/head.h"
#include "tests/test_env.h"
#include "tests/test_util.h"

static int parse(const char *text, JsonValue *v) { return json_parse(text, strlen(text), "test", v); }

// Random parameters: norm scales near 1, running variances positive, the rest small.
static void randomize(ParamSet *ps, unsigned long long seed) {
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind == PARAM_COUNTER) continue;
        test_fill(p->data, (long)p->numel, seed + (unsigned long long)i * 7919);
        const char *n = p->name;
        size_t len = strlen(n);
        int is_var = len > 11 && strcmp(n + len - 11, "running_var") == 0;
        int is_temp = len > 11 && strcmp(n + len - 11, "temperature") == 0;
        int is_norm_w = strstr(n, "norm.weight") != NULL;
        for (int64_t k = 0; k < p->numel; k++) {
            float r = p->data[k];
            if (is_var) p->data[k] = 1.0f + 0.5f * r * r;
            else if (is_temp) p->data[k] = 0.9f;
            else if (is_norm_w) p->data[k] = 1.0f + 0.1f * r;
            else p->data[k] = 0.3f * r;
        }
    }
}

typedef struct {
    HeadModel m;
    float *feat[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];
    FusionInput in;
} Setup;

static int setup(Setup *su, const char *config, int B, unsigned long long seed) {
    memset(su, 0, sizeof(*su));
    JsonValue j;
    HeadConfig cfg;
    if (parse(config, &j)) return -1;
    int rc = head_config_from_json(&cfg, &j);
    json_free(&j);
    if (rc || head_model_init(&su->m, &cfg)) return -1;
    randomize(&su->m.params, seed);
    const FeatureLayout *fl = &cfg.layout;
    su->in.B = B;
    for (int s = 0; s < fl->num_scales; s++) {
        su->in.H[s] = su->in.W[s] = fl->width[s];
        for (int i = 0; i < fl->num_timesteps; i++) {
            long n = (long)B * fl->scale_channels[s] * fl->width[s] * fl->width[s];
            su->feat[i][s] = (float *)malloc((size_t)n * sizeof(float));
            test_fill(su->feat[i][s], n, seed * 31 + (unsigned long long)(i * 8 + s));
            su->in.feat[i][s] = su->feat[i][s];
        }
    }
    return 0;
}

static void teardown(Setup *su) {
    for (int i = 0; i < FUSION_MAX_TIMESTEPS; i++)
        for (int s = 0; s < FUSION_MAX_SCALES; s++) free(su->feat[i][s]);
    head_model_free(&su->m);
}

static void test_layout(void) {
    JsonValue j;
    FeatureLayout fl;
    CHECK(parse("{\"fd\": {\"8\": [4, 4], \"16\": [2, 2, 2], \"4\": [8]}, \"ts\": [40, 47, 45]}", &j) == 0, "parse");
    CHECK(feature_layout_from_json(&fl, json_get(&j, "fd"), json_get(&j, "ts")) == 0, "layout: %s", sd_last_error());
    CHECK(fl.num_scales == 3 && fl.width[0] == 16 && fl.width[1] == 8 && fl.width[2] == 4, "widths sorted descending");
    CHECK(fl.num_streams[0] == 3 && fl.num_streams[1] == 2 && fl.num_streams[2] == 1, "streams");
    CHECK(fl.scale_channels[0] == 6 && fl.scale_channels[1] == 8 && fl.scale_channels[2] == 8, "scale channels");
    CHECK(fl.ts_input[0] == 1 && fl.ts_input[1] == 2 && fl.ts_input[2] == 0, "timesteps visited 47, 45, 40");
    CHECK(feature_layout_stream_index(&fl, 2, 0) == 5, "stream index");
    json_free(&j);
    FeatureLayout fl2;
    CHECK(feature_layout_from_strings(&fl2, "{\"16\": [2, 2, 2], \"8\": [4, 4], \"4\": [8]}", "[40, 47, 45]") == 0 &&
              memcmp(&fl, &fl2, sizeof(fl)) == 0,
          "layout from a feature file's metadata strings");
    CHECK(parse("{\"fd\": {\"8\": [4, 0]}, \"ts\": [1]}", &j) == 0, "parse");
    CHECK(feature_layout_from_json(&fl, json_get(&j, "fd"), json_get(&j, "ts")) != 0, "zero channels rejected");
    json_free(&j);
}

static void test_phi_structure(void) {
    ParamSet ps = {0};
    Phi a, b;
    CHECK(phi_init(&a, &ps, "x", 6, 16, 1, 2) == 0, "phi init");
    CHECK(a.blocks[0].has_shortcut && ps.count == 12, "projection shortcut when C != P: %d tensors", ps.count);
    CHECK(params_find(&ps, "x.0.shortcut.norm.bias") && params_find(&ps, "x.0.conv2.weight"), "names");
    CHECK(phi_init(&b, &ps, "y", 16, 16, 2, 2) == 0, "phi init 2 blocks");
    CHECK(!b.blocks[0].has_shortcut && !b.blocks[1].has_shortcut && ps.count == 12 + 18, "identity shortcut when C == P");
    // (C*Cb + Cb*Cb*9 + Cb*P + C*P) + norms: C 6, Cb 4, P 16
    CHECK(phi_num_weights(&a) == 6 * 4 + 4 * 4 * 9 + 4 * 16 + 6 * 16 + 2 * (4 + 4 + 16 + 16), "phi weights %lld",
          (long long)phi_num_weights(&a));
    params_free(&ps);
}

// A stream's Phi output computed directly, for comparison with a fuser's.
static void phi_direct(const Phi *phi, const float *x, int B, int C, int c0, int c, int H, float *out) {
    float *xs = (float *)malloc((size_t)B * c * H * H * sizeof(float));
    PhiCache cache;
    memset(&cache, 0, sizeof(cache));
    copy_channels(xs, x, B, C, c0, c, H * H);
    CHECK(phi_forward(phi, &cache, xs, B, H, H, out, 0) == 0, "phi forward");
    phi_cache_free(&cache);
    free(xs);
}

static const char *LW_CFG =
    "{\"task\": \"classification\", \"fuser\": \"lw\", \"feature_dims\": {\"4\": [2, 2, 2]}, \"save_timesteps\": [10],"
    " \"projection_dim\": 8, \"fuser_projection_dim\": 8, \"num_classes\": 3, \"num_norm_groups\": 2%s}";

static void test_lw_quirk(void) {
    for (int advance = 0; advance < 2; advance++) {
        char cfg[512];
        snprintf(cfg, sizeof(cfg), LW_CFG, advance ? ", \"lw_advance_channels\": true" : "");
        Setup su;
        CHECK(setup(&su, cfg, 2, 5) == 0, "setup: %s", sd_last_error());
        LocalFuser *lw = &su.m.fuser.lw;
        // give the three streams the same Phi weights (copy stream 0's)
        for (int i = 0; i < su.m.params.count; i++) {
            Param *p = su.m.params.items[i];
            if (strncmp(p->name, "bottleneck_layers.0.", 20) != 0) continue;
            for (int l = 1; l < 3; l++) {
                char other[160];
                snprintf(other, sizeof(other), "bottleneck_layers.%d.%s", l, p->name + 20);
                memcpy(params_find(&su.m.params, other)->data, p->data, (size_t)p->numel * sizeof(float));
            }
        }
        head_model_set_mode(&su.m, 0, 1);
        CHECK(head_model_forward(&su.m, &su.in) == 0, "forward: %s", sd_last_error());
        long n = 2 * 8 * 16;
        double d01 = max_abs_diff(lw->outputs[0].data, lw->outputs[1].data, n);
        double d02 = max_abs_diff(lw->outputs[0].data, lw->outputs[2].data, n);
        if (!advance) CHECK(d01 == 0.0 && d02 == 0.0, "released quirk: every stream reads channels [0, 2) (%g %g)", d01, d02);
        else CHECK(d01 > 1e-3 && d02 > 1e-3, "corrected: streams read their own channels (%g %g)", d01, d02);
        // stream 2's Phi input is channels [4, 6) when corrected, [0, 2) otherwise
        float ref[2 * 8 * 16];
        phi_direct(&lw->phis[2], su.in.feat[0][0], 2, 6, advance ? 4 : 0, 2, 4, ref);
        CHECK(max_abs_diff(ref, lw->outputs[2].data, n) == 0.0, "stream 2 input offset (advance %d)", advance);
        CHECK(lw_stream_offset(lw, &su.m.fuser.layout, 0, 2) == (advance ? 4 : 0), "offset");
        teardown(&su);
    }
}

static void test_gw(void) {
    const char *cfg =
        "{\"task\": \"classification\", \"fuser\": \"gw\", \"feature_dims\": {\"4\": [2, 3], \"2\": [4]},"
        " \"save_timesteps\": [5, 9], \"projection_dim\": 8, \"fuser_projection_dim\": 8, \"num_classes\": 3,"
        " \"num_norm_groups\": 2}";
    Setup su;
    CHECK(setup(&su, cfg, 2, 11) == 0, "setup: %s", sd_last_error());
    GlobalFuser *gw = &su.m.fuser.gw;
    CHECK(gw->num_streams == 3 && gw->mixing_weights->numel == 6, "gw sizes");
    head_model_set_mode(&su.m, 0, 1);
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward: %s", sd_last_error());
    // softmax over all 6 weights
    double sum = 0.0;
    for (int i = 0; i < 6; i++) sum += gw->weights.data[i];
    CHECK(fabs(sum - 1.0) < 1e-6, "softmax sums to 1");
    // scale 0 by hand: timesteps visited 9 (input 1) then 5 (input 0); stream 1 reads channels [2, 5)
    float ref[2 * 8 * 16], y[2 * 8 * 16];
    memset(ref, 0, sizeof(ref));
    for (int k = 0; k < 2; k++) {
        const float *x = su.in.feat[1 - k][0];
        for (int l = 0; l < 2; l++) {
            phi_direct(&gw->phis[l], x, 2, 5, l ? 2 : 0, l ? 3 : 2, 4, y);
            float w = gw->weights.data[k * 3 + l];
            for (int i = 0; i < 2 * 8 * 16; i++) ref[i] += w * y[i];
        }
    }
    CHECK(max_abs_diff(ref, su.m.fuser.fused[0].data, 2 * 8 * 16) < 1e-6, "gw scale 0 by hand");
    su.in.C[1] = 5;
    CHECK(head_model_forward(&su.m, &su.in) != 0 && strstr(sd_last_error(), "4"), "channel mismatch refused: %s",
          sd_last_error());
    su.in.C[1] = 0;
    su.in.W[1] = 3;
    CHECK(head_model_forward(&su.m, &su.in) != 0, "width mismatch refused");
    teardown(&su);
}

static const char *MOE_CFG =
    "{\"task\": \"classification\", \"fuser\": \"moe\", \"feature_dims\": {\"4\": [2, 2], \"2\": [3]},"
    " \"save_timesteps\": [47, 45, 40], \"projection_dim\": 8, \"fuser_projection_dim\": 8, \"num_classes\": 3,"
    " \"num_norm_groups\": 2, \"num_experts\": 4, \"top_k\": %d, \"warmup_steps\": 300, \"moe_global_step\": %d}";

static void test_moe(void) {
    char cfg[768];
    snprintf(cfg, sizeof(cfg), MOE_CFG, 2, 298);
    Setup su;
    CHECK(setup(&su, cfg, 3, 21) == 0, "setup: %s", sd_last_error());
    MoEFuser *moe = &su.m.fuser.moe;
    head_model_set_mode(&su.m, 0, 0);
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward: %s", sd_last_error());
    // counter 298: the calls see 299 (dense), 300 and 301 (top-k: not 300 < 300)
    for (int s = 0; s < 2; s++) {
        CHECK(moe->calls[s * 3 + 0].step == 299 && !moe->calls[s * 3 + 0].topk_active, "call 1 dense");
        CHECK(moe->calls[s * 3 + 1].step == 300 && moe->calls[s * 3 + 1].topk_active, "call 2 top-k");
        CHECK(moe->calls[s * 3 + 2].step == 301 && moe->calls[s * 3 + 2].topk_active, "call 3 top-k");
        CHECK(moe->scales[s].global_step == 301, "counter after the forward");
    }
    // evaluation advances the counter too; keep or not gives the same numbers
    float first[3 * 8 * 16];
    moe_set_global_step(moe, 298);
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward");
    memcpy(first, su.m.fuser.fused[0].data, sizeof(first));
    moe_set_global_step(moe, 298);
    head_model_set_mode(&su.m, 0, 1);
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward keep");
    CHECK(max_abs_diff(first, su.m.fuser.fused[0].data, 3 * 8 * 16) == 0.0, "keep and scratch paths agree");
    // top-k indices descending by gate score, weights sum to 1
    const MoECall *cl = &moe->calls[1];
    for (int b = 0; b < 3; b++) {
        const float *p = cl->probs.data + b * 4;
        int i0 = cl->topk_idx.data[b * 2], i1 = cl->topk_idx.data[b * 2 + 1];
        CHECK(i0 != i1 && p[i0] >= p[i1], "top-2 order");
        for (int e = 0; e < 4; e++)
            if (e != i0 && e != i1) CHECK(p[e] <= p[i1], "top-2 are the largest");
        CHECK(fabsf(cl->topk_w.data[b * 2] + cl->topk_w.data[b * 2 + 1] - 1.0f) < 1e-6f, "top-k weights sum to 1");
    }
    teardown(&su);

    // top_k = num_experts after warmup = the dense mixture (up to summation order)
    float dense[3 * 8 * 16];
    snprintf(cfg, sizeof(cfg), MOE_CFG, 4, 0);
    CHECK(setup(&su, cfg, 3, 33) == 0, "setup");
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward");
    CHECK(!su.m.fuser.moe.calls[0].topk_active, "dense");
    memcpy(dense, su.m.fuser.fused[0].data, sizeof(dense));
    moe_set_global_step(&su.m.fuser.moe, 1000);
    CHECK(head_model_forward(&su.m, &su.in) == 0, "forward");
    CHECK(su.m.fuser.moe.calls[0].topk_active, "top-k");
    CHECK(max_abs_diff(dense, su.m.fuser.fused[0].data, 3 * 8 * 16) < 1e-5, "top-k with k = E equals dense");
    teardown(&su);
}

// Each fuser with 1 and 2 threads gives bit-identical logits.
static void test_threads(void) {
    const char *fusers[5] = {"gw", "lw", "moe", "concat", "single"};
    for (int f = 0; f < 5; f++) {
        char cfg[768];
        snprintf(cfg, sizeof(cfg),
                 "{\"task\": \"segmentation\", \"fuser\": \"%s\", \"feature_dims\": {\"8\": [2, 2], \"4\": [4, 4],"
                 " \"2\": [4]}, \"save_timesteps\": [47, 45], \"projection_dim\": 16, \"num_classes\": 3,"
                 " \"num_norm_groups\": 2, \"num_experts\": 3, \"output_shape\": [20, 20], \"channels\": 8}",
                 fusers[f]);
        float out[2][2 * 3 * 400];
        for (int t = 0; t < 2; t++) {
            sd_threads_set(t + 1);
            Setup su;
            CHECK(setup(&su, cfg, 2, 77) == 0, "setup %s: %s", fusers[f], sd_last_error());
            CHECK(head_model_forward(&su.m, &su.in) == 0, "forward %s: %s", fusers[f], sd_last_error());
            CHECK(su.m.out_ndim == 4 && su.m.out_shape[2] == 20, "output shape");
            memcpy(out[t], head_model_logits(&su.m), sizeof(out[t]));
            teardown(&su);
        }
        CHECK(memcmp(out[0], out[1], sizeof(out[0])) == 0, "%s: 1 and 2 threads bit-identical", fusers[f]);
    }
    test_env_apply();
}

// The released models with the real stream layout of a 256 input: parameter
// counts from PyTorch (sum of p.numel() over parameters(), len(state_dict()),
// and the state_dict's total element count), and one forward of one sample
// (weights at their construction values) with the original's output shape.
static void test_full_size_counts(void) {
    static const struct {
        const char *task, *fuser;
        long long weights;
        int entries;
        long long elements;
    } want[6] = {
        {"classification", "gw", 10854601, 255, 10854601},   {"classification", "lw", 10878793, 262, 10878793},
        {"classification", "moe", 71498542, 398, 71498542},  {"segmentation", "gw", 39972297, 339, 39984597},
        {"segmentation", "lw", 39996489, 346, 40008789},     {"segmentation", "moe", 100616238, 482, 100628538},
    };
    for (int i = 0; i < 6; i++) {
        char text[768];
        snprintf(text, sizeof(text),
                 "{\"task\": \"%s\", \"fuser\": \"%s\", \"feature_dims\": {\"32\": [320, 320, 320, 320, 320, 320],"
                 " \"16\": [640, 640, 640, 640, 640, 640], \"8\": [1280, 1280, 1280, 1280, 1280, 1280],"
                 " \"4\": [1280, 1280, 1280]}, \"save_timesteps\": [47, 45, 40], \"num_classes\": 10,"
                 " \"output_shape\": [256, 256]}",
                 want[i].task, want[i].fuser);
        JsonValue j;
        HeadConfig cfg;
        HeadModel m;
        CHECK(parse(text, &j) == 0 && head_config_from_json(&cfg, &j) == 0, "config: %s", sd_last_error());
        json_free(&j);
        CHECK(head_model_init(&m, &cfg) == 0, "init: %s", sd_last_error());
        long long elements = 0;
        for (int k = 0; k < m.params.count; k++) elements += m.params.items[k]->numel;
        CHECK(params_count_weights(&m.params) == want[i].weights && m.params.count == want[i].entries &&
                  elements == want[i].elements,
              "%s %s: %lld weights, %d tensors, %lld elements (want %lld, %d, %lld)", want[i].task, want[i].fuser,
              (long long)params_count_weights(&m.params), m.params.count, elements, want[i].weights, want[i].entries,
              want[i].elements);
        // the forwards take seconds each: two by default, all six with SATDIFUSER_FULL_TESTS=1
        const char *full = getenv("SATDIFUSER_FULL_TESTS");
        if (!(full && strcmp(full, "1") == 0) && i != 0 && i != 4) {
            head_model_free(&m);
            continue;
        }
        FusionInput in;
        memset(&in, 0, sizeof(in));
        in.B = 1;
        float *bufs[3][4];
        for (int s = 0; s < 4; s++) {
            in.H[s] = in.W[s] = cfg.layout.width[s];
            for (int t = 0; t < 3; t++) {
                long n = (long)cfg.layout.scale_channels[s] * in.H[s] * in.W[s];
                bufs[t][s] = (float *)malloc((size_t)n * sizeof(float));
                test_fill(bufs[t][s], n, (unsigned long long)(t * 4 + s));
                in.feat[t][s] = bufs[t][s];
            }
        }
        double t0 = sd_now();
        CHECK(head_model_forward(&m, &in) == 0, "full-size forward: %s", sd_last_error());
        int seg = cfg.task == TASK_SEGMENTATION;
        CHECK(m.out_ndim == (seg ? 4 : 2) && m.out_shape[0] == 1 && m.out_shape[1] == 10 &&
                  (!seg || (m.out_shape[2] == 256 && m.out_shape[3] == 256)),
              "%s %s: output shape", want[i].task, want[i].fuser);
        printf("full size %s %s: forward of 1 sample %.2f s\n", want[i].task, want[i].fuser, sd_now() - t0);
        for (int s = 0; s < 4; s++)
            for (int t = 0; t < 3; t++) free(bufs[t][s]);
        head_model_free(&m);
    }
}

// The corrected MoE counter: training forwards only, one per step, saved with the weights.
static void test_moe_counter_corrected(void) {
    const char *cfg =
        "{\"task\": \"classification\", \"fuser\": \"moe\", \"feature_dims\": {\"4\": [2, 2], \"2\": [3]},"
        " \"save_timesteps\": [47, 45, 40], \"projection_dim\": 8, \"fuser_projection_dim\": 8, \"num_classes\": 3,"
        " \"num_norm_groups\": 2, \"num_experts\": 4, \"warmup_steps\": 2, \"moe_counter\": \"train_steps\"}";
    Setup su;
    if (setup(&su, cfg, 2, 5) != 0) {
        CHECK(0, "setup: %s", sd_last_error());
        return;
    }
    MoEFuser *moe = &su.m.fuser.moe;
    CHECK(head_model_forward(&su.m, &su.in) == 0 && moe->scales[0].global_step == 0, "evaluation does not count");
    head_model_set_mode(&su.m, 1, 0);
    for (int step = 0; step < 3; step++) {
        CHECK(head_model_forward(&su.m, &su.in) == 0, "train forward");
        CHECK(moe->calls[0].topk_active == (step >= 2) && moe->calls[2].topk_active == (step >= 2),
              "step %d: dense for the first warmup_steps training steps, the same for every timestep", step);
        CHECK(moe->scales[0].global_step == step + 1 && moe->scales[1].global_step == step + 1, "one per step");
    }
    char path[128];
    snprintf(path, sizeof(path), "/tmp/test_fusion_moe_%d.safetensors", (int)getpid());
    CHECK(head_model_save(&su.m, path) == 0, "save");
    moe_set_global_step(moe, 0);
    CHECK(head_model_load(&su.m, path) == 0 && moe->scales[1].global_step == 3, "counter restored from the file");
    unlink(path);
    teardown(&su);
}

// ---------------------------------------------------------------------------
// The audit findings' effect, measured on golden cases (printed; docs/fusion-and-heads.md quotes them).

typedef struct {
    HeadConfig cfg;
    Tensor feats[FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES];
    FusionInput in;
    Tensor want;
    SafeTensors weights, tensors;
    JsonValue root;
} Case;

static int case_open(Case *c, const char *dir) {
    memset(c, 0, sizeof(*c));
    char path[512];
    snprintf(path, sizeof(path), "%s/case.json", dir);
    if (json_parse_file(path, &c->root)) return -1;
    if (head_config_from_json_golden(&c->cfg, json_get(&c->root, "config"))) return -1;
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    if (st_open(&c->weights, path)) return -1;
    snprintf(path, sizeof(path), "%s/tensors.safetensors", dir);
    if (st_open(&c->tensors, path)) return -1;
    const FeatureLayout *fl = &c->cfg.layout;
    for (int i = 0; i < fl->num_timesteps; i++)
        for (int s = 0; s < fl->num_scales; s++) {
            snprintf(path, sizeof(path), "input.feat.%d.%d", i, s);
            Tensor *t = &c->feats[i * fl->num_scales + s];
            if (st_load(&c->tensors, path, 0, NULL, t)) return -1;
            c->in.B = t->shape[0];
            c->in.H[s] = t->shape[2];
            c->in.W[s] = t->shape[3];
            c->in.feat[i][s] = t->data;
        }
    return st_load(&c->tensors, "output.logits", 0, NULL, &c->want);
}

static void case_close(Case *c) {
    for (int i = 0; i < FUSION_MAX_TIMESTEPS * FUSION_MAX_SCALES; i++) tensor_free(&c->feats[i]);
    tensor_free(&c->want);
    st_close(&c->weights);
    st_close(&c->tensors);
    json_free(&c->root);
}

// Runs the case's model with a modified config; compares with the released logits.
static void measure(Case *c, const HeadConfig *cfg, const char *what) {
    HeadModel m;
    CHECK(head_model_init(&m, cfg) == 0 && head_model_load_st(&m, &c->weights) == 0, "%s: %s", what, sd_last_error());
    CHECK(head_model_forward(&m, &c->in) == 0, "%s: forward", what);
    const float *got = head_model_logits(&m);
    const float *want = c->want.data;
    long n = (long)tensor_numel(&c->want);
    double dmax = 0, dsum = 0, wsum = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        dmax = d > dmax ? d : dmax;
        dsum += d;
        wsum += fabs(want[i]);
    }
    // predicted class (per sample, or per pixel) that changes
    int B = c->want.shape[0], K = c->want.shape[1];
    long per = n / ((long)B * K), changed = 0;
    for (int b = 0; b < B; b++)
        for (long p = 0; p < per; p++) {
            int ag = 0, aw = 0;
            for (int k = 1; k < K; k++) {
                long i = ((long)b * K + k) * per + p;
                if (got[i] > got[((long)b * K + ag) * per + p]) ag = k;
                if (want[i] > want[((long)b * K + aw) * per + p]) aw = k;
            }
            changed += ag != aw;
        }
    printf("QUIRK %s: max|dlogits| %.3g, mean|dlogits| / mean|logits| %.3g, argmax changed %ld / %ld\n", what, dmax,
           dsum / (wsum > 0 ? wsum : 1), changed, (long)B * per);
    CHECK(dmax > 1e-3, "%s changes the output", what);
    head_model_free(&m);
}

static void test_quirk_effects(void) {
    const char *lw_cases[2] = {"golden/head_lw_cls", "../shared/golden/head_lw_seg"};
    for (int i = 0; i < 2; i++) {
        Case c;
        if (access(lw_cases[i], F_OK) != 0) { printf("SKIP %s (absent)\n", lw_cases[i]); continue; }
        CHECK(case_open(&c, lw_cases[i]) == 0, "%s: %s", lw_cases[i], sd_last_error());
        HeadConfig fixed = c.cfg;
        fixed.fuser.lw_advance_channels = 1;
        char what[256];
        snprintf(what, sizeof(what), "lw start_channel advanced (%s)", lw_cases[i]);
        measure(&c, &fixed, what);
        case_close(&c);
    }
    const char *moe_cases[2] = {"../shared/golden/head_moe_cls_topk", "golden/head_moe_seg_topk"};
    for (int i = 0; i < 2; i++) {
        Case c;
        if (access(moe_cases[i], F_OK) != 0) { printf("SKIP %s (absent)\n", moe_cases[i]); continue; }
        CHECK(case_open(&c, moe_cases[i]) == 0, "%s: %s", moe_cases[i], sd_last_error());
        HeadConfig restart = c.cfg;
        restart.fuser.moe_global_step = 0;
        char what[256];
        snprintf(what, sizeof(what), "moe counter restarted at 0 instead of %lld (%s)",
                 (long long)c.cfg.fuser.moe_global_step, moe_cases[i]);
        measure(&c, &restart, what);
        case_close(&c);
    }
}

int main(void) {
    test_env_apply();
    test_layout();
    test_phi_structure();
    test_lw_quirk();
    test_gw();
    test_moe();
    test_threads();
    test_full_size_counts();
    test_moe_counter_corrected();
    test_quirk_effects();
    return test_report("test_fusion");
}
