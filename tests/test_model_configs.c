// Absurd sizes in a model's config.json (UNet, VAE encoder, CLIP text encoder): each is refused
// by the loader with an error naming config.json, the key and the value, before any weight is
// read or any buffer sized from it allocated (a huge num_metadata used to be a generic out of
// memory, 4 * a huge block_out_channels an int overflow). The configs are the golden cases'
// tiny ones, one value changed at a time; the unchanged config still loads.
#include "core/error.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"
#include "tests/test_util.h"

typedef struct {
    JsonValue root;
    JsonValue *config;
    SafeTensors weights;
    int ok;
} Case;

static int case_open(Case *c, const char *name) {
    char path[512];
    memset(c, 0, sizeof(*c));
    snprintf(path, sizeof(path), "golden/%s/case.json", name);
    if (json_parse_file(path, &c->root)) {
        printf("SKIP %s: %s\n", name, sd_last_error());
        return 0;
    }
    c->config = (JsonValue *)json_get(&c->root, "config");
    snprintf(path, sizeof(path), "golden/%s/weights.safetensors", name);
    if (!c->config || st_open(&c->weights, path)) {
        printf("SKIP %s: %s\n", name, sd_last_error());
        json_free(&c->root);
        return 0;
    }
    c->ok = 1;
    return 1;
}

static void case_close(Case *c) {
    if (!c->ok) return;
    st_close(&c->weights);
    json_free(&c->root);
}

// The number to change: config[key], or config[key][index] when index >= 0.
static JsonValue *number_at(JsonValue *cfg, const char *key, int index) {
    JsonValue *v = (JsonValue *)json_get(cfg, key);
    if (v && index >= 0) v = v->type == JSON_ARRAY && index < v->count ? &v->items[index] : NULL;
    return v && v->type == JSON_NUMBER ? v : NULL;
}

static int try_unet(Case *c) {
    UNet u;
    int rc = unet_load(&u, c->config, &c->weights, "", -1);
    if (!rc) unet_free(&u);
    return rc;
}

static int try_vae(Case *c) {
    VaeEncoder v;
    int rc = vae_encoder_load(&v, c->config, &c->weights, "");
    if (!rc) vae_encoder_free(&v);
    return rc;
}

static int try_clip(Case *c) {
    ClipTextConfig tc;
    ClipTextModel m;
    if (clip_text_config_from_json(c->config, &tc)) return SD_FAIL;
    if (clip_text_load(&m, &tc, &c->weights, NULL)) return SD_FAIL;
    clip_text_free(&m);
    return 0;
}

// config[key](/[index]) = value must fail naming config.json, the key and the value; then restored.
// (The CLIP text config is parsed apart from its file, and the caller adds the file's path: there
// the message names the key and the value.)
static void expect_refused(Case *c, int (*load)(Case *), const char *what, const char *key, int index, double value) {
    const int names_file = load != try_clip;
    JsonValue *v = number_at(c->config, key, index);
    CHECK(v != NULL, "%s: no number at '%s'[%d] in the case's config", what, key, index);
    if (!v) return;
    double old = v->number;
    v->number = value;
    sd_clear_error();
    int rc = load(c);
    char val[64];
    snprintf(val, sizeof(val), "%.0f", value);
    const char *e = sd_last_error();
    CHECK(rc != 0 && (!names_file || strstr(e, "config.json")) && strstr(e, key) && strstr(e, val),
          "%s %s[%d] = %s: rc %d, error should name config.json, the key and the value: %s", what, key, index, val, rc,
          e);
    v->number = old;
}

static void test_unet(void) {
    Case c;
    if (!case_open(&c, "unet_metadata")) return;  // SatUNet: use_metadata true, num_metadata 7
    CHECK(try_unet(&c) == 0, "unet_metadata loads: %s", sd_last_error());
    expect_refused(&c, try_unet, "unet", "num_metadata", -1, 2000000000);
    expect_refused(&c, try_unet, "unet", "num_metadata", -1, 100000);
    expect_refused(&c, try_unet, "unet", "num_metadata", -1, -3);
    expect_refused(&c, try_unet, "unet", "block_out_channels", 0, 1073741824);  // 4 * C0 overflowed int
    expect_refused(&c, try_unet, "unet", "block_out_channels", 1, 100000);
    expect_refused(&c, try_unet, "unet", "block_out_channels", 1, 0);
    expect_refused(&c, try_unet, "unet", "block_out_channels", 0, -8);
    expect_refused(&c, try_unet, "unet", "attention_head_dim", 0, 0);
    expect_refused(&c, try_unet, "unet", "attention_head_dim", 1, -4);
    expect_refused(&c, try_unet, "unet", "attention_head_dim", 1, 1000000);
    expect_refused(&c, try_unet, "unet", "cross_attention_dim", -1, 0);
    expect_refused(&c, try_unet, "unet", "cross_attention_dim", -1, 1000000000);
    expect_refused(&c, try_unet, "unet", "in_channels", -1, 0);
    expect_refused(&c, try_unet, "unet", "out_channels", -1, 70000);
    expect_refused(&c, try_unet, "unet", "norm_num_groups", -1, 0);
    expect_refused(&c, try_unet, "unet", "layers_per_block", -1, 1000);
    expect_refused(&c, try_unet, "unet", "conv_in_kernel", -1, 1000001);
    CHECK(try_unet(&c) == 0, "unet_metadata loads again after the refusals: %s", sd_last_error());
    case_close(&c);
}

static void test_vae(void) {
    Case c;
    if (!case_open(&c, "vae_encoder_a")) return;
    CHECK(try_vae(&c) == 0, "vae_encoder_a loads: %s", sd_last_error());
    expect_refused(&c, try_vae, "vae", "block_out_channels", 0, 1000000000);
    expect_refused(&c, try_vae, "vae", "block_out_channels", 3, 0);
    expect_refused(&c, try_vae, "vae", "in_channels", -1, -3);
    expect_refused(&c, try_vae, "vae", "latent_channels", -1, 1073741824);  // 2 * latent_channels overflowed int
    expect_refused(&c, try_vae, "vae", "norm_num_groups", -1, 0);
    CHECK(try_vae(&c) == 0, "vae_encoder_a loads again: %s", sd_last_error());
    case_close(&c);
}

static void test_clip(void) {
    Case c;
    if (!case_open(&c, "clip_text_gelu")) return;
    CHECK(try_clip(&c) == 0, "clip_text_gelu loads: %s", sd_last_error());
    expect_refused(&c, try_clip, "clip", "hidden_size", -1, 1000000000);
    expect_refused(&c, try_clip, "clip", "intermediate_size", -1, 0);
    expect_refused(&c, try_clip, "clip", "vocab_size", -1, 2000000000);
    expect_refused(&c, try_clip, "clip", "num_hidden_layers", -1, 100000);
    expect_refused(&c, try_clip, "clip", "num_attention_heads", -1, 0);
    expect_refused(&c, try_clip, "clip", "max_position_embeddings", -1, 2000000000);
    CHECK(try_clip(&c) == 0, "clip_text_gelu loads again: %s", sd_last_error());
    case_close(&c);
}

int main(void) {
    test_unet();
    test_vae();
    test_clip();
    return test_report("test_model_configs");
}
