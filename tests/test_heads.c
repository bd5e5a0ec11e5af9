// Heads and the whole model: config parsing and its JSON round trip, the
// classifier projection_dim quirk, BatchNorm training / evaluation semantics,
// the linear head by hand, UPerNet in training mode (running statistics,
// Dropout2d), a one-scale UPerNet, and weights saved and loaded back by name.
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "heads/head.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

static int parse(const char *text, JsonValue *v) { return json_parse(text, strlen(text), "test", v); }

static int config(const char *text, HeadConfig *cfg) {
    JsonValue j;
    if (parse(text, &j)) return -1;
    int rc = head_config_from_json(cfg, &j);
    json_free(&j);
    return rc;
}

static void randomize(ParamSet *ps, unsigned long long seed) {
    for (int i = 0; i < ps->count; i++) {
        Param *p = ps->items[i];
        if (p->kind == PARAM_COUNTER) { p->counter = 3 + i; continue; }
        test_fill(p->data, (long)p->numel, seed + (unsigned long long)i * 104729);
        int is_var = strstr(p->name, "running_var") != NULL;
        int is_scale = strstr(p->name, "norm.weight") != NULL || strstr(p->name, ".1.weight") != NULL ||
                       strstr(p->name, ".2.weight") != NULL;
        for (int64_t k = 0; k < p->numel; k++) {
            float r = p->data[k];
            p->data[k] = is_var ? 1.0f + 0.5f * r * r : is_scale ? 1.0f + 0.1f * r : 0.3f * r;
        }
    }
}

static const char *SEG_CFG =
    "{\"task\": \"segmentation\", \"fuser\": \"%s\", \"feature_dims\": {\"8\": [2, 2], \"4\": [4, 4], \"2\": [4]},"
    " \"save_timesteps\": [47, 45], \"projection_dim\": 16, \"num_classes\": 3, \"num_norm_groups\": 2,"
    " \"output_shape\": [20, 18], \"channels\": 8, \"num_experts\": 3, \"dropout\": %g}";

typedef struct {
    float *buf[FUSION_MAX_TIMESTEPS][FUSION_MAX_SCALES];
    FusionInput in;
} Inputs;

static void make_inputs(Inputs *x, const FeatureLayout *fl, int B, unsigned long long seed) {
    memset(x, 0, sizeof(*x));
    x->in.B = B;
    for (int s = 0; s < fl->num_scales; s++) {
        x->in.H[s] = x->in.W[s] = fl->width[s];
        for (int i = 0; i < fl->num_timesteps; i++) {
            long n = (long)B * fl->scale_channels[s] * fl->width[s] * fl->width[s];
            x->buf[i][s] = (float *)malloc((size_t)n * sizeof(float));
            test_fill(x->buf[i][s], n, seed + (unsigned long long)(i * 16 + s));
            x->in.feat[i][s] = x->buf[i][s];
        }
    }
}

static void free_inputs(Inputs *x) {
    for (int i = 0; i < FUSION_MAX_TIMESTEPS; i++)
        for (int s = 0; s < FUSION_MAX_SCALES; s++) free(x->buf[i][s]);
}

static void test_config(void) {
    HeadConfig a, b;
    char text[1024];
    snprintf(text, sizeof(text), SEG_CFG, "moe", 0.25);
    CHECK(config(text, &a) == 0, "seg config: %s", sd_last_error());
    CHECK(a.fuser.warmup_steps == 500 && a.fuser.num_experts == 3 && a.fuser.top_k == 2, "moe defaults (segmenter)");
    CHECK(a.channels == 8 && a.num_pool_scales == 4 && a.output_h == 20 && a.output_w == 18, "upernet options");
    CHECK(fabsf(a.dropout_p - 0.25f) < 1e-7f && a.fuser.projection_dim == 16, "dropout, fuser dim");
    char *json = head_config_to_json(&a);
    CHECK(json && config(json, &b) == 0, "round trip: %s", sd_last_error());
    CHECK(memcmp(&a.layout, &b.layout, sizeof(a.layout)) == 0 && a.task == b.task && a.channels == b.channels &&
              a.num_classes == b.num_classes && a.fuser.kind == b.fuser.kind &&
              a.fuser.warmup_steps == b.fuser.warmup_steps && a.dropout_p == b.dropout_p,
          "config survives to_json / from_json");
    free(json);
    // the classifier quirk: projection_dim != 384 without fuser_projection_dim is the released code's failure
    const char *cls = "{\"task\": \"classification\", \"fuser\": \"moe\", \"feature_dims\": {\"4\": [2]},"
                      " \"save_timesteps\": [1], \"projection_dim\": 64, \"num_classes\": 2%s}";
    snprintf(text, sizeof(text), cls, "");
    CHECK(config(text, &a) != 0 && strstr(sd_last_error(), "fuser_projection_dim"), "classifier quirk refused: %s",
          sd_last_error());
    snprintf(text, sizeof(text), cls, ", \"fuser_projection_dim\": 64, \"num_norm_groups\": 4");
    CHECK(config(text, &a) == 0 && a.fuser.projection_dim == 64 && a.fuser.warmup_steps == 300,
          "corrected classifier: %s", sd_last_error());
    JsonValue j;
    snprintf(text, sizeof(text), cls, ", \"num_norm_groups\": 4");
    CHECK(parse(text, &j) == 0 && head_config_from_json_golden(&a, &j) == 0 && a.fuser.projection_dim == 64,
          "golden construction: fuser follows projection_dim");
    json_free(&j);
    snprintf(text, sizeof(text),
             "{\"task\": \"segmentation\", \"feature_dims\": {\"4\": [2]}, \"save_timesteps\": [1],"
             " \"num_classes\": 2, \"output_shape\": [8, 8], \"rescales\": [2]}");
    CHECK(config(text, &a) != 0, "rescales other than 1 refused");
}

static void test_batchnorm(void) {
    ParamSet ps = {0};
    NormLayer bn;
    CHECK(norm_layer_init(&bn, &ps, "bn", NORM_BATCH, 2, 0) == 0, "bn init");
    CHECK(ps.count == 5 && params_find(&ps, "bn.num_batches_tracked")->kind == PARAM_COUNTER, "bn state_dict entries");
    int B = 3, C = 2, HW = 5;
    float x[30], y[30], mean[2], rstd[2];
    test_fill(x, 30, 9);
    bn.weight->data[0] = 1.5f; bn.bias->data[1] = 0.25f;
    bn.running_mean->data[0] = 0.2f; bn.running_var->data[1] = 2.0f;
    CHECK(norm_layer_forward(&bn, x, y, B, HW, 1, mean, rstd) == 0, "bn train");
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0, ym = 0, yv = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) m += x[(b * C + c) * HW + i];
        m /= B * HW;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double d = x[(b * C + c) * HW + i] - m;
                v += d * d;
                ym += y[(b * C + c) * HW + i];
            }
        ym /= B * HW;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) { double d = y[(b * C + c) * HW + i] - ym; yv += d * d; }
        double g = bn.weight->data[c], beta = bn.bias->data[c];
        CHECK(fabs(ym - beta) < 1e-5 && fabs(yv / (B * HW) - g * g * (v / (B * HW)) / (v / (B * HW) + 1e-5)) < 1e-4,
              "batch statistics normalise channel %d", c);
        double rm0 = c == 0 ? 0.2 : 0.0, rv0 = c == 1 ? 2.0 : 1.0;
        CHECK(fabs(bn.running_mean->data[c] - (0.9 * rm0 + 0.1 * m)) < 1e-6, "running mean %d", c);
        CHECK(fabs(bn.running_var->data[c] - (0.9 * rv0 + 0.1 * v / (B * HW - 1))) < 1e-6, "running var unbiased %d", c);
        CHECK(fabs(mean[c] - m) < 1e-6 && fabs(rstd[c] - 1.0 / sqrt(v / (B * HW) + 1e-5)) < 1e-5, "saved stats %d", c);
    }
    CHECK(bn.num_batches_tracked->counter == 1, "num_batches_tracked");
    // evaluation: running statistics, nothing updated
    float rm = bn.running_mean->data[0], rv = bn.running_var->data[0];
    CHECK(norm_layer_forward(&bn, x, y, B, HW, 0, NULL, NULL) == 0, "bn eval");
    CHECK(fabsf(y[0] - ((x[0] - rm) / sqrtf(rv + 1e-5f) * 1.5f)) < 1e-6f, "eval uses running stats");
    CHECK(bn.num_batches_tracked->counter == 1 && bn.running_mean->data[0] == rm, "eval leaves the buffers");
    CHECK(norm_layer_forward(&bn, x, y, 1, 1, 1, NULL, NULL) != 0, "train mode refuses 1 value per channel");
    params_free(&ps);
}

static void test_linear_by_hand(void) {
    HeadConfig cfg;
    CHECK(config("{\"task\": \"multi_label_classification\", \"fuser\": \"concat\", \"feature_dims\": {\"4\": [3],"
                 " \"2\": [2]}, \"save_timesteps\": [1, 2], \"projection_dim\": 8, \"fuser_projection_dim\": 8,"
                 " \"num_classes\": 3, \"num_norm_groups\": 2}",
                 &cfg) == 0,
          "config: %s", sd_last_error());
    HeadModel m;
    CHECK(head_model_init(&m, &cfg) == 0, "init: %s", sd_last_error());
    CHECK(params_find(&m.params, "proj_convs.1.weight")->shape[1] == 4, "concat conv: T * C_s inputs");
    randomize(&m.params, 3);
    Inputs x;
    make_inputs(&x, &cfg.layout, 2, 40);
    CHECK(head_model_forward(&m, &x.in) == 0, "forward: %s", sd_last_error());
    // by hand: fused0 + resize(fused1), mean over pixels, linear
    const float *f0 = m.fuser.fused[0].data, *f1 = m.fuser.fused[1].data;
    float up[2 * 8 * 16];
    resize_bilinear(f1, up, 2, 8, 2, 2, 4, 4, 0);
    const float *W = m.linear.weight->data, *bias = m.linear.bias->data, *got = head_model_logits(&m);
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 3; k++) {
            double z = bias[k];
            for (int c = 0; c < 8; c++) {
                double s = 0;
                for (int p = 0; p < 16; p++) s += f0[(b * 8 + c) * 16 + p] + up[(b * 8 + c) * 16 + p];
                z += W[k * 8 + c] * s / 16;
            }
            CHECK(fabs(z - got[b * 3 + k]) < 1e-5, "logit %d %d: %g vs %g", b, k, z, got[b * 3 + k]);
        }
    // concat by hand at one pixel: proj(cat[t2, t1]) with timesteps descending
    const float *w0 = params_find(&m.params, "proj_convs.0.weight")->data;
    const float *b0 = params_find(&m.params, "proj_convs.0.bias")->data;
    double v = b0[5];
    for (int c = 0; c < 3; c++) v += w0[5 * 6 + c] * x.buf[1][0][c * 16 + 7] + w0[5 * 6 + 3 + c] * x.buf[0][0][c * 16 + 7];
    CHECK(fabs(v - f0[5 * 16 + 7]) < 1e-5, "concat order: descending timesteps");
    free_inputs(&x);
    head_model_free(&m);
}

static void test_uper_train_and_roundtrip(void) {
    char text[1024];
    snprintf(text, sizeof(text), SEG_CFG, "gw", 0.5);
    HeadConfig cfg;
    CHECK(config(text, &cfg) == 0, "config: %s", sd_last_error());
    HeadModel m, m2;
    CHECK(head_model_init(&m, &cfg) == 0, "init: %s", sd_last_error());
    randomize(&m.params, 17);
    Inputs x;
    make_inputs(&x, &cfg.layout, 2, 90);
    CHECK(head_model_forward(&m, &x.in) == 0, "eval forward: %s", sd_last_error());
    float eval_out[2 * 3 * 20 * 18];
    memcpy(eval_out, head_model_logits(&m), sizeof(eval_out));

    // save, load into a fresh model: bit-identical tensors and logits
    char path[128];
    snprintf(path, sizeof(path), "/tmp/test_heads_%d.safetensors", (int)getpid());
    CHECK(head_model_save(&m, path) == 0, "save: %s", sd_last_error());
    CHECK(head_model_init(&m2, &cfg) == 0 && head_model_load(&m2, path) == 0, "load: %s", sd_last_error());
    int same = 1;
    for (int i = 0; i < m.params.count; i++) {
        const Param *a = m.params.items[i], *b = m2.params.items[i];
        same &= strcmp(a->name, b->name) == 0 && a->counter == b->counter &&
                (a->kind == PARAM_COUNTER || memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0);
    }
    CHECK(same, "every tensor round-trips (counters as int64)");
    SafeTensors st;
    CHECK(st_open(&st, path) == 0, "open");
    const StEntry *e = st_find(&st, "fpn_convs.0.1.num_batches_tracked");
    CHECK(e && e->dtype == DT_I64 && e->ndim == 0, "num_batches_tracked saved as an int64 scalar");
    CHECK(st_metadata(&st, "head_config") != NULL, "config in the metadata");
    st_close(&st);
    CHECK(head_model_forward(&m2, &x.in) == 0, "forward");
    CHECK(memcmp(eval_out, head_model_logits(&m2), sizeof(eval_out)) == 0, "loaded model, same logits");

    // strict loading: a foreign tensor or a wrong shape is refused by name
    int n = m.params.count;
    StWriteEntry *entries = (StWriteEntry *)calloc((size_t)n + 1, sizeof(StWriteEntry));
    for (int i = 0; i < n; i++) {
        const Param *p = m.params.items[i];
        entries[i].name = p->name;
        entries[i].dtype = p->kind == PARAM_COUNTER ? DT_I64 : DT_F32;
        entries[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) entries[i].shape[d] = p->shape[d];
        entries[i].data = p->kind == PARAM_COUNTER ? (const void *)&p->counter : (const void *)p->data;
    }
    float junk[4] = {0};
    StWriteEntry extra = {.name = "decoder_head.2.weight", .dtype = DT_F32, .ndim = 2, .shape = {2, 2}, .data = junk};
    entries[n] = extra;
    CHECK(st_write(path, entries, n + 1, NULL, NULL, 0) == 0, "write");
    CHECK(head_model_load(&m2, path) != 0 && strstr(sd_last_error(), "decoder_head.2.weight"),
          "a tensor the model does not have is refused: %s", sd_last_error());
    entries[3].shape[0] += 1;
    entries[3].data = calloc((size_t)m.params.items[3]->numel * 2, sizeof(float));
    CHECK(st_write(path, entries, n, NULL, NULL, 0) == 0, "write");
    CHECK(head_model_load(&m2, path) != 0 && strstr(sd_last_error(), m.params.items[3]->name),
          "a wrong shape is refused: %s", sd_last_error());
    free((void *)entries[3].data);
    free(entries);
    unlink(path);

    // training mode: batch statistics, running statistics move, counters advance, Dropout2d masks channels
    float rm = params_find(&m.params, "bottleneck.1.running_mean")->data[0];
    int64_t nbt = params_find(&m.params, "fpn_bottleneck.1.num_batches_tracked")->counter;
    head_model_set_mode(&m, 1, 0);
    CHECK(head_model_forward(&m, &x.in) == 0, "train forward: %s", sd_last_error());
    CHECK(params_find(&m.params, "bottleneck.1.running_mean")->data[0] != rm, "running mean moved");
    CHECK(params_find(&m.params, "fpn_bottleneck.1.num_batches_tracked")->counter == nbt + 1, "num_batches_tracked + 1");
    int zeros = 0, scaled = 0, other = 0;
    for (int k = 0; k < 2 * 8; k++) {
        float v = m.uper.drop_mask.data[k];
        if (v == 0.0f) zeros++;
        else if (v == 2.0f) scaled++;
        else other++;
    }
    CHECK(other == 0 && zeros > 0 && scaled > 0, "Dropout2d(0.5) masks: %d zero, %d x2", zeros, scaled);
    CHECK(max_abs_diff(eval_out, head_model_logits(&m), 2 * 3 * 20 * 18) > 1e-3, "training output differs");
    head_model_set_mode(&m, 0, 0);
    CHECK(head_model_forward(&m, &x.in) == 0, "eval forward");
    free_inputs(&x);
    head_model_free(&m);
    head_model_free(&m2);
}

static void test_one_scale(void) {
    HeadConfig cfg;
    CHECK(config("{\"task\": \"segmentation\", \"fuser\": \"lw\", \"feature_dims\": {\"4\": [2, 2]},"
                 " \"save_timesteps\": [3], \"projection_dim\": 8, \"num_classes\": 2, \"num_norm_groups\": 2,"
                 " \"output_shape\": [7, 9], \"channels\": 4}",
                 &cfg) == 0,
          "config: %s", sd_last_error());
    HeadModel m;
    CHECK(head_model_init(&m, &cfg) == 0, "init: %s", sd_last_error());
    CHECK(m.uper.num_pool == 1 && params_find(&m.params, "psp_modules.1.1.weight") == NULL, "pool scales cut to 1");
    randomize(&m.params, 5);
    Inputs x;
    make_inputs(&x, &cfg.layout, 1, 8);
    CHECK(head_model_forward(&m, &x.in) == 0, "forward: %s", sd_last_error());
    CHECK(m.out_shape[0] == 1 && m.out_shape[1] == 2 && m.out_shape[2] == 7 && m.out_shape[3] == 9, "shape");
    free_inputs(&x);
    head_model_free(&m);
}

int main(void) {
    test_config();
    test_batchnorm();
    test_linear_by_hand();
    test_uper_train_and_roundtrip();
    test_one_scale();
    return test_report("test_heads");
}
