// CLIPTextModel tests: a hand-checkable model (zero attention and MLP: the output is the final
// LayerNorm of token + position embeddings), a random model against an independent double-precision
// reference written here with the explicit causal mask, every activation, the "text_encoder." prefix,
// fp16 weights, and the errors (ids out of range, too long, missing tensor, bad config).
#include "tests/test_util.h"

#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/clip.h"

enum { V = 11, D = 8, HEADS = 2, I = 12, P = 6, LAYERS = 2 };

typedef struct {
    float tok[V * D], pos[P * D];
    float ln1_w[LAYERS][D], ln1_b[LAYERS][D], ln2_w[LAYERS][D], ln2_b[LAYERS][D];
    float q_w[LAYERS][D * D], q_b[LAYERS][D], k_w[LAYERS][D * D], k_b[LAYERS][D];
    float v_w[LAYERS][D * D], v_b[LAYERS][D], o_w[LAYERS][D * D], o_b[LAYERS][D];
    float fc1_w[LAYERS][I * D], fc1_b[LAYERS][I], fc2_w[LAYERS][D * I], fc2_b[LAYERS][D];
    float fln_w[D], fln_b[D];
} Weights;

static char g_path[256];

// Writes the weights as a CLIPTextModel state_dict (names behind `prefix`); fp16 when half.
static int write_weights(const Weights *w, const char *prefix, int half, int skip_final_bias) {
    StWriteEntry e[64];
    memset(e, 0, sizeof(e));  // fields not set below (raw) must be 0
    static char names[64][160];
    int n = 0;
#define ADD(name_fmt, layer, ptr, d0, d1)                                                       \
    do {                                                                                         \
        snprintf(names[n], sizeof(names[n]), "%stext_model." name_fmt, prefix, layer);          \
        e[n].name = names[n];                                                                    \
        e[n].dtype = half ? DT_F16 : DT_F32;                                                     \
        e[n].ndim = (d1) ? 2 : 1;                                                                \
        e[n].shape[0] = d0;                                                                      \
        e[n].shape[1] = d1;                                                                      \
        e[n].data = ptr;                                                                         \
        n++;                                                                                     \
    } while (0)
    ADD("embeddings.token_embedding.weight%.0d", 0, w->tok, V, D);
    ADD("embeddings.position_embedding.weight%.0d", 0, w->pos, P, D);
    for (int l = 0; l < LAYERS; l++) {
        ADD("encoder.layers.%d.layer_norm1.weight", l, w->ln1_w[l], D, 0);
        ADD("encoder.layers.%d.layer_norm1.bias", l, w->ln1_b[l], D, 0);
        ADD("encoder.layers.%d.self_attn.q_proj.weight", l, w->q_w[l], D, D);
        ADD("encoder.layers.%d.self_attn.q_proj.bias", l, w->q_b[l], D, 0);
        ADD("encoder.layers.%d.self_attn.k_proj.weight", l, w->k_w[l], D, D);
        ADD("encoder.layers.%d.self_attn.k_proj.bias", l, w->k_b[l], D, 0);
        ADD("encoder.layers.%d.self_attn.v_proj.weight", l, w->v_w[l], D, D);
        ADD("encoder.layers.%d.self_attn.v_proj.bias", l, w->v_b[l], D, 0);
        ADD("encoder.layers.%d.self_attn.out_proj.weight", l, w->o_w[l], D, D);
        ADD("encoder.layers.%d.self_attn.out_proj.bias", l, w->o_b[l], D, 0);
        ADD("encoder.layers.%d.layer_norm2.weight", l, w->ln2_w[l], D, 0);
        ADD("encoder.layers.%d.layer_norm2.bias", l, w->ln2_b[l], D, 0);
        ADD("encoder.layers.%d.mlp.fc1.weight", l, w->fc1_w[l], I, D);
        ADD("encoder.layers.%d.mlp.fc1.bias", l, w->fc1_b[l], I, 0);
        ADD("encoder.layers.%d.mlp.fc2.weight", l, w->fc2_w[l], D, I);
        ADD("encoder.layers.%d.mlp.fc2.bias", l, w->fc2_b[l], D, 0);
    }
    ADD("final_layer_norm.weight%.0d", 0, w->fln_w, D, 0);
    if (!skip_final_bias) ADD("final_layer_norm.bias%.0d", 0, w->fln_b, D, 0);
#undef ADD
    return st_write(g_path, e, n, NULL, NULL, 0);
}

static void config_json(JsonValue *root, const char *act, int layers) {
    char text[512];
    snprintf(text, sizeof(text),
             "{\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": %d, \"max_position_embeddings\": %d, \"hidden_act\": \"%s\", "
             "\"layer_norm_eps\": 1e-5}",
             V, D, I, layers, HEADS, P, act);
    json_parse(text, strlen(text), "test config", root);
}

// ---- independent reference (double precision, explicit mask matrix) --------------------------------
static void ref_layernorm(const double *x, double *y, const float *g, const float *b, int rows, int dim) {
    for (int r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (int d = 0; d < dim; d++) m += x[r * dim + d];
        m /= dim;
        for (int d = 0; d < dim; d++) v += (x[r * dim + d] - m) * (x[r * dim + d] - m);
        v /= dim;
        for (int d = 0; d < dim; d++) y[r * dim + d] = (x[r * dim + d] - m) / sqrt(v + 1e-5) * g[d] + b[d];
    }
}

static void ref_linear(const double *x, double *y, const float *W, const float *b, int rows, int in, int out) {
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += x[r * in + i] * W[o * in + i];
            y[r * out + o] = s;
        }
}

static double ref_act(const char *act, double x) {
    if (!strcmp(act, "gelu")) return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    if (!strcmp(act, "quick_gelu")) return x / (1.0 + exp(-1.702 * x));
    if (!strcmp(act, "gelu_new")) return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    if (!strcmp(act, "relu")) return x > 0 ? x : 0;
    return x / (1.0 + exp(-x));  // silu
}

// One sequence of length L.
static void ref_forward(const Weights *w, const char *act, const int64_t *ids, int L, double *out) {
    static double x[P * D], h[P * D], q[P * D], k[P * D], v[P * D], a[P * D], t[P * D], m[P * I];
    for (int r = 0; r < L; r++)
        for (int d = 0; d < D; d++) x[r * D + d] = (double)w->tok[ids[r] * D + d] + w->pos[r * D + d];
    const int hd = D / HEADS;
    for (int l = 0; l < LAYERS; l++) {
        ref_layernorm(x, h, w->ln1_w[l], w->ln1_b[l], L, D);
        ref_linear(h, q, w->q_w[l], w->q_b[l], L, D, D);
        ref_linear(h, k, w->k_w[l], w->k_b[l], L, D, D);
        ref_linear(h, v, w->v_w[l], w->v_b[l], L, D, D);
        for (int hh = 0; hh < HEADS; hh++)
            for (int i = 0; i < L; i++) {
                double s[P], mx = -1e300, sum = 0;
                for (int j = 0; j < L; j++) {
                    double dot = 0;
                    for (int d = 0; d < hd; d++) dot += q[i * D + hh * hd + d] * k[j * D + hh * hd + d];
                    s[j] = dot / sqrt((double)hd) + (j > i ? -1e300 : 0.0);  // causal mask
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < L; j++) sum += (s[j] = exp(s[j] - mx));
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < L; j++) o += s[j] / sum * v[j * D + hh * hd + d];
                    a[i * D + hh * hd + d] = o;
                }
            }
        ref_linear(a, t, w->o_w[l], w->o_b[l], L, D, D);
        for (int e = 0; e < L * D; e++) x[e] += t[e];
        ref_layernorm(x, h, w->ln2_w[l], w->ln2_b[l], L, D);
        ref_linear(h, m, w->fc1_w[l], w->fc1_b[l], L, D, I);
        for (int e = 0; e < L * I; e++) m[e] = ref_act(act, m[e]);
        ref_linear(m, t, w->fc2_w[l], w->fc2_b[l], L, I, D);
        for (int e = 0; e < L * D; e++) x[e] += t[e];
    }
    ref_layernorm(x, out, w->fln_w, w->fln_b, L, D);
}

static void random_weights(Weights *w, unsigned long long seed) {
    test_fill((float *)w, (long)(sizeof(Weights) / sizeof(float)), seed);
    for (int l = 0; l < LAYERS; l++)
        for (int d = 0; d < D; d++) {
            w->ln1_w[l][d] += 1.0f;
            w->ln2_w[l][d] += 1.0f;
        }
    for (int d = 0; d < D; d++) w->fln_w[d] += 1.0f;
}

static int load_model(const char *act, int layers, const char *prefix, ClipTextModel *m, SafeTensors *st) {
    JsonValue cfg_json;
    ClipTextConfig cfg;
    config_json(&cfg_json, act, layers);
    int rc = clip_text_config_from_json(&cfg_json, &cfg);
    json_free(&cfg_json);
    if (rc || st_open(st, g_path)) return SD_FAIL;
    if (clip_text_load(m, &cfg, st, prefix)) {
        st_close(st);
        return SD_FAIL;
    }
    return 0;
}

// The larger of two errors, NaN counting as the worst. Written out instead of an fmax
// reduction: Debian 12's aarch64 gcc 12.2 crashes vectorizing that loop at -O2 (internal
// compiler error in vect_transform_reduction), and fmax would drop a NaN error anyway.
static double worse(double err, double d) { return (d > err || d != d) ? d : err; }

static void test_hand_checkable(void) {
    // Zero attention and MLP weights: every residual branch adds 0, so last_hidden_state is the final
    // LayerNorm of token + position embedding. With D = 8 and an embedding sum of +1 on the first four
    // dims and -1 on the last four, the mean is 0 and the variance 1, so the output is
    // (+-1) / sqrt(1 + 1e-5) * gamma + beta with gamma = 2, beta = 0.5: 2.49999 and -1.49999.
    static Weights w;
    memset(&w, 0, sizeof(w));
    for (int t = 0; t < V; t++)
        for (int d = 0; d < D; d++) w.tok[t * D + d] = d < 4 ? 0.25f * (float)t : -0.25f * (float)t;
    for (int p = 0; p < P; p++)
        for (int d = 0; d < D; d++) w.pos[p * D + d] = 0.0f;
    for (int l = 0; l < LAYERS; l++)
        for (int d = 0; d < D; d++) w.ln1_w[l][d] = w.ln2_w[l][d] = 1.0f;
    for (int d = 0; d < D; d++) {
        w.fln_w[d] = 2.0f;
        w.fln_b[d] = 0.5f;
    }
    CHECK(write_weights(&w, "", 0, 0) == 0, "write weights: %s", sd_last_error());
    ClipTextModel m;
    SafeTensors st;
    if (load_model("quick_gelu", LAYERS, NULL, &m, &st)) {
        CHECK(0, "load: %s", sd_last_error());
        return;
    }
    const int64_t ids[2] = {4, 4};  // token 4: embedding +1 / -1
    float out[2 * D];
    CHECK(clip_text_forward_run(&m, ids, 1, 2, out, NULL) == 0, "forward: %s", sd_last_error());
    const double hi = 1.0 / sqrt(1.0 + 1e-5) * 2.0 + 0.5, lo = -1.0 / sqrt(1.0 + 1e-5) * 2.0 + 0.5;
    double err = 0;
    for (int r = 0; r < 2; r++)
        for (int d = 0; d < D; d++) err = worse(err, fabs(out[r * D + d] - (d < 4 ? hi : lo)));
    CHECK(err < 1e-5, "hand-checkable model: max error %g", err);
    clip_text_free(&m);
    st_close(&st);
}

static void test_against_reference(const char *act, int half, const char *prefix) {
    static Weights w;
    random_weights(&w, 7 + (unsigned long long)strlen(act) + (unsigned long long)half);
    if (half) {  // the reference sees the fp16-rounded values the model loads
        float *f = (float *)&w;
        for (size_t i = 0; i < sizeof(Weights) / sizeof(float); i++) f[i] = f32_from_f16(f16_from_f32(f[i]));
    }
    CHECK(write_weights(&w, prefix, half, 0) == 0, "write weights: %s", sd_last_error());
    ClipTextModel m;
    SafeTensors st;
    if (load_model(act, LAYERS, NULL, &m, &st)) {
        CHECK(0, "%s: load: %s", act, sd_last_error());
        return;
    }
    const int B = 3, L = P;
    int64_t ids[B * L];
    for (int i = 0; i < B * L; i++) ids[i] = (i * 7 + 3) % V;
    float out[B * L * D];
    CHECK(clip_text_forward_run(&m, ids, B, L, out, NULL) == 0, "forward: %s", sd_last_error());
    double err = 0;
    for (int b = 0; b < B; b++) {
        double want[P * D];
        ref_forward(&w, act, ids + b * L, L, want);
        for (int e = 0; e < L * D; e++) err = worse(err, fabs(out[b * L * D + e] - want[e]));
    }
    CHECK(err < 2e-5, "%s (fp16 %d, prefix '%s'): max error vs reference %g", act, half, prefix, err);

    // A shorter sequence: the causal mask means its outputs equal the first positions of the long one.
    float short_out[3 * D];
    CHECK(clip_text_forward_run(&m, ids, 1, 3, short_out, NULL) == 0, "forward L=3");
    CHECK(max_abs_diff(short_out, out, 3 * D) < 1e-5, "%s: causal prefix property", act);
    clip_text_free(&m);
    st_close(&st);
}

static void test_errors(void) {
    static Weights w;
    random_weights(&w, 99);
    CHECK(write_weights(&w, "", 0, 0) == 0, "write");
    ClipTextModel m;
    SafeTensors st;
    if (load_model("gelu", LAYERS, NULL, &m, &st)) {
        CHECK(0, "load: %s", sd_last_error());
        return;
    }
    float out[2 * P * D];
    int64_t ids[2 * P] = {0};
    ids[3] = V;  // out of range
    CHECK(clip_text_forward_run(&m, ids, 1, P, out, NULL) != 0 && strstr(sd_last_error(), "outside the vocabulary"),
          "id out of range: '%s'", sd_last_error());
    ids[3] = -1;
    CHECK(clip_text_forward_run(&m, ids, 1, P, out, NULL) != 0, "negative id rejected");
    ids[3] = 0;
    CHECK(clip_text_forward_run(&m, ids, 1, P + 1, out, NULL) != 0 && strstr(sd_last_error(), "max_position_embeddings"),
          "too long: '%s'", sd_last_error());
    clip_text_free(&m);
    st_close(&st);

    // One layer more than the file holds: the missing tensor is named.
    CHECK(load_model("gelu", LAYERS + 1, NULL, &m, &st) != 0 && strstr(sd_last_error(), "layers.2"),
          "missing layer: '%s'", sd_last_error());
    // A missing final LayerNorm bias.
    CHECK(write_weights(&w, "", 0, 1) == 0, "write");
    CHECK(load_model("gelu", LAYERS, NULL, &m, &st) != 0 && strstr(sd_last_error(), "final_layer_norm.bias"),
          "missing bias: '%s'", sd_last_error());

    JsonValue cfg_json;
    ClipTextConfig cfg;
    config_json(&cfg_json, "tanh_gelu_unknown", LAYERS);
    CHECK(clip_text_config_from_json(&cfg_json, &cfg) != 0 && strstr(sd_last_error(), "hidden_act"), "bad act: '%s'",
          sd_last_error());
    json_free(&cfg_json);
    const char *bad = "{\"hidden_size\": 10, \"num_attention_heads\": 3}";
    json_parse(bad, strlen(bad), "bad", &cfg_json);
    CHECK(clip_text_config_from_json(&cfg_json, &cfg) != 0 && strstr(sd_last_error(), "divisible"), "heads: '%s'",
          sd_last_error());
    json_free(&cfg_json);
    // Defaults and a CLIPConfig with text_config.
    const char *full = "{\"text_config\": {\"hidden_size\": 1024, \"num_attention_heads\": 16, \"num_hidden_layers\": 23,"
                       " \"intermediate_size\": 4096, \"hidden_act\": \"gelu\"}, \"vision_config\": {}}";
    json_parse(full, strlen(full), "full", &cfg_json);
    CHECK(clip_text_config_from_json(&cfg_json, &cfg) == 0 && cfg.hidden_size == 1024 && cfg.num_hidden_layers == 23 &&
              cfg.hidden_act == CLIP_ACT_GELU && cfg.vocab_size == 49408 && cfg.max_position_embeddings == 77,
          "text_config: %s", sd_last_error());
    json_free(&cfg_json);
}

int main(void) {
    snprintf(g_path, sizeof(g_path), "/tmp/satdifuser_test_clip_%d.safetensors", (int)getpid());
    test_hand_checkable();
    test_against_reference("gelu", 0, "");
    test_against_reference("quick_gelu", 0, "text_encoder.");
    test_against_reference("gelu_new", 1, "");
    test_against_reference("relu", 0, "");
    test_against_reference("silu", 0, "");
    test_errors();
    unlink(g_path);
    return test_report("test_clip");
}
