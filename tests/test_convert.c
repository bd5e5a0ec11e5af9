// The LDM -> diffusers name mapping (src/convert/ldm_plan.c):
// - single names against diffusers 0.17's convert_from_ckpt.py, for SD 2.1's layout (4 levels,
//   2 ResBlocks a level, VAE 4 x 2, OpenCLIP 24 resblocks) and SD 1.x's CLIP names;
// - the whole plan of tests/data/tiny_ldm.safetensors (made by weights_tools/make_ldm_checkpoint.py
//   from tests/data/tiny_pipeline) against tests/data/tiny_pipeline: every tensor, name, dtype,
//   shape and value, and the config values read from the shapes;
// - the SD 1.x text layout and --ema on variants of that file;
// - bad inputs: a diffusers file, no SD names, a missing tensor, a missing block, an unknown name,
//   an integer tensor: errors naming the file and the tensor.
// The command around it (files, configs, atomic folder, extract on the result) is tests/cli_convert.sh.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "io/json.h"
#include "convert/ldm_plan.h"
#include "io/safetensors.h"
#include "tests/test_util.h"

#define LDM  "tests/data/tiny_ldm.safetensors"
#define PIPE "tests/data/tiny_pipeline"

static char g_dir[256];

// ---------------------------------------------------------------------------
// Single names.

static LdmLayout sd21_layout(void) {
    LdmLayout L;
    memset(&L, 0, sizeof(L));
    L.unet_levels = 4, L.unet_layers_per_block = 2;
    L.vae_levels = 4, L.vae_layers_per_block = 2, L.vae_has_decoder = 1;
    L.text_kind = LDM_TEXT_OPENCLIP, L.text_layers = 24, L.text_layers_kept = 23;
    return L;
}

static void expect_name(const LdmLayout *L, const char *ldm, LdmPart part, const char *want, LdmReshape reshape) {
    LdmTarget t;
    const char *why;
    int rc = ldm_map_name(L, ldm, &t, &why);
    CHECK(rc == 1 && t.part == part && t.n_names == 1 && !strcmp(t.name[0], want) && t.reshape == reshape,
          "%s -> rc %d part %d '%s', expected %s/%s (%s)", ldm, rc, (int)t.part, rc == 1 ? t.name[0] : "",
          ldm_part_folder[part], want, rc < 0 ? sd_last_error() : "");
}

static void expect_skip(const LdmLayout *L, const char *ldm) {
    LdmTarget t;
    const char *why = NULL;
    int rc = ldm_map_name(L, ldm, &t, &why);
    CHECK(rc == 0 && why != NULL, "%s: rc %d, expected 0 (not converted)", ldm, rc);
}

static void expect_error(const LdmLayout *L, const char *ldm) {
    LdmTarget t;
    const char *why;
    sd_clear_error();
    int rc = ldm_map_name(L, ldm, &t, &why);
    CHECK(rc < 0 && strstr(sd_last_error(), ldm), "%s: rc %d, expected an error naming it ('%s')", ldm, rc,
          sd_last_error());
}

static void test_names(void) {
    LdmLayout L = sd21_layout();
    const LdmReshape A = LDM_AS_IS;
    // UNet (convert_ldm_unet_checkpoint: block_id = (i-1)//3, layer = (i-1)%3 in; i//3, i%3 out)
    expect_name(&L, "model.diffusion_model.time_embed.0.weight", LDM_UNET, "time_embedding.linear_1.weight", A);
    expect_name(&L, "model.diffusion_model.time_embed.2.bias", LDM_UNET, "time_embedding.linear_2.bias", A);
    expect_name(&L, "model.diffusion_model.input_blocks.0.0.weight", LDM_UNET, "conv_in.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.1.0.in_layers.0.weight", LDM_UNET,
                "down_blocks.0.resnets.0.norm1.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.1.0.in_layers.2.bias", LDM_UNET,
                "down_blocks.0.resnets.0.conv1.bias", A);
    expect_name(&L, "model.diffusion_model.input_blocks.2.1.proj_in.weight", LDM_UNET,
                "down_blocks.0.attentions.1.proj_in.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.3.0.op.weight", LDM_UNET,
                "down_blocks.0.downsamplers.0.conv.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.4.0.skip_connection.weight", LDM_UNET,
                "down_blocks.1.resnets.0.conv_shortcut.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight", LDM_UNET,
                "down_blocks.2.attentions.0.transformer_blocks.0.attn2.to_k.weight", A);
    expect_name(&L, "model.diffusion_model.input_blocks.9.0.op.bias", LDM_UNET,
                "down_blocks.2.downsamplers.0.conv.bias", A);
    expect_name(&L, "model.diffusion_model.input_blocks.11.0.emb_layers.1.weight", LDM_UNET,
                "down_blocks.3.resnets.1.time_emb_proj.weight", A);
    expect_name(&L, "model.diffusion_model.middle_block.0.out_layers.0.bias", LDM_UNET,
                "mid_block.resnets.0.norm2.bias", A);
    expect_name(&L, "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight", LDM_UNET,
                "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", A);
    expect_name(&L, "model.diffusion_model.middle_block.2.out_layers.3.weight", LDM_UNET,
                "mid_block.resnets.1.conv2.weight", A);
    expect_name(&L, "model.diffusion_model.output_blocks.0.0.skip_connection.bias", LDM_UNET,
                "up_blocks.0.resnets.0.conv_shortcut.bias", A);
    expect_name(&L, "model.diffusion_model.output_blocks.2.1.conv.weight", LDM_UNET,
                "up_blocks.0.upsamplers.0.conv.weight", A);
    expect_name(&L, "model.diffusion_model.output_blocks.5.1.norm.weight", LDM_UNET,
                "up_blocks.1.attentions.2.norm.weight", A);
    expect_name(&L, "model.diffusion_model.output_blocks.5.2.conv.bias", LDM_UNET, "up_blocks.1.upsamplers.0.conv.bias",
                A);
    expect_name(&L, "model.diffusion_model.output_blocks.9.1.transformer_blocks.0.norm3.weight", LDM_UNET,
                "up_blocks.3.attentions.0.transformer_blocks.0.norm3.weight", A);
    expect_name(&L, "model.diffusion_model.output_blocks.11.0.emb_layers.1.bias", LDM_UNET,
                "up_blocks.3.resnets.2.time_emb_proj.bias", A);
    expect_name(&L, "model.diffusion_model.out.0.weight", LDM_UNET, "conv_norm_out.weight", A);
    expect_name(&L, "model.diffusion_model.out.2.bias", LDM_UNET, "conv_out.bias", A);
    // VAE (convert_ldm_vae_checkpoint: decoder.up.i -> up_blocks.(3-i); attention 1x1 convs -> linears)
    expect_name(&L, "first_stage_model.encoder.conv_in.weight", LDM_VAE, "encoder.conv_in.weight", A);
    expect_name(&L, "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", LDM_VAE,
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", A);
    expect_name(&L, "first_stage_model.encoder.down.0.block.1.norm2.bias", LDM_VAE,
                "encoder.down_blocks.0.resnets.1.norm2.bias", A);
    expect_name(&L, "first_stage_model.encoder.down.2.downsample.conv.weight", LDM_VAE,
                "encoder.down_blocks.2.downsamplers.0.conv.weight", A);
    expect_name(&L, "first_stage_model.encoder.mid.block_1.conv1.weight", LDM_VAE,
                "encoder.mid_block.resnets.0.conv1.weight", A);
    expect_name(&L, "first_stage_model.encoder.mid.attn_1.norm.weight", LDM_VAE,
                "encoder.mid_block.attentions.0.group_norm.weight", A);
    expect_name(&L, "first_stage_model.encoder.mid.attn_1.q.weight", LDM_VAE,
                "encoder.mid_block.attentions.0.to_q.weight", LDM_CONV1X1_TO_LINEAR);
    expect_name(&L, "first_stage_model.encoder.mid.attn_1.v.bias", LDM_VAE, "encoder.mid_block.attentions.0.to_v.bias",
                A);
    expect_name(&L, "first_stage_model.encoder.mid.attn_1.proj_out.weight", LDM_VAE,
                "encoder.mid_block.attentions.0.to_out.0.weight", LDM_CONV1X1_TO_LINEAR);
    expect_name(&L, "first_stage_model.encoder.mid.block_2.norm1.bias", LDM_VAE,
                "encoder.mid_block.resnets.1.norm1.bias", A);
    expect_name(&L, "first_stage_model.encoder.norm_out.weight", LDM_VAE, "encoder.conv_norm_out.weight", A);
    expect_name(&L, "first_stage_model.quant_conv.bias", LDM_VAE, "quant_conv.bias", A);
    expect_name(&L, "first_stage_model.post_quant_conv.weight", LDM_VAE, "post_quant_conv.weight", A);
    expect_name(&L, "first_stage_model.decoder.up.3.block.2.conv1.weight", LDM_VAE,
                "decoder.up_blocks.0.resnets.2.conv1.weight", A);
    expect_name(&L, "first_stage_model.decoder.up.0.block.0.nin_shortcut.bias", LDM_VAE,
                "decoder.up_blocks.3.resnets.0.conv_shortcut.bias", A);
    expect_name(&L, "first_stage_model.decoder.up.1.upsample.conv.weight", LDM_VAE,
                "decoder.up_blocks.2.upsamplers.0.conv.weight", A);
    expect_name(&L, "first_stage_model.decoder.mid.attn_1.k.weight", LDM_VAE,
                "decoder.mid_block.attentions.0.to_k.weight", LDM_CONV1X1_TO_LINEAR);
    expect_name(&L, "first_stage_model.decoder.norm_out.bias", LDM_VAE, "decoder.conv_norm_out.bias", A);
    // OpenCLIP (convert_open_clip_checkpoint: textenc_conversion_map, textenc_transformer_conversion_lst)
    expect_name(&L, "cond_stage_model.model.positional_embedding", LDM_TEXT,
                "text_model.embeddings.position_embedding.weight", A);
    expect_name(&L, "cond_stage_model.model.token_embedding.weight", LDM_TEXT,
                "text_model.embeddings.token_embedding.weight", A);
    expect_name(&L, "cond_stage_model.model.ln_final.bias", LDM_TEXT, "text_model.final_layer_norm.bias", A);
    expect_name(&L, "cond_stage_model.model.transformer.resblocks.0.ln_1.weight", LDM_TEXT,
                "text_model.encoder.layers.0.layer_norm1.weight", A);
    expect_name(&L, "cond_stage_model.model.transformer.resblocks.5.mlp.c_proj.bias", LDM_TEXT,
                "text_model.encoder.layers.5.mlp.fc2.bias", A);
    expect_name(&L, "cond_stage_model.model.transformer.resblocks.22.attn.out_proj.weight", LDM_TEXT,
                "text_model.encoder.layers.22.self_attn.out_proj.weight", A);
    LdmTarget t;
    const char *why;
    int rc = ldm_map_name(&L, "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight", &t, &why);
    CHECK(rc == 1 && t.n_names == 3 && t.reshape == LDM_SPLIT_QKV &&
              !strcmp(t.name[0], "text_model.encoder.layers.22.self_attn.q_proj.weight") &&
              !strcmp(t.name[1], "text_model.encoder.layers.22.self_attn.k_proj.weight") &&
              !strcmp(t.name[2], "text_model.encoder.layers.22.self_attn.v_proj.weight"),
          "in_proj_weight split: rc %d, %d names", rc, t.n_names);
    rc = ldm_map_name(&L, "cond_stage_model.model.transformer.resblocks.3.attn.in_proj_bias", &t, &why);
    CHECK(rc == 1 && t.n_names == 3 && !strcmp(t.name[2], "text_model.encoder.layers.3.self_attn.v_proj.bias"),
          "in_proj_bias split");
    // Not converted: the 24th resblock (penultimate-layer rule), projection, schedule, EMA, others
    expect_skip(&L, "cond_stage_model.model.transformer.resblocks.23.ln_1.weight");
    expect_skip(&L, "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight");
    expect_skip(&L, "cond_stage_model.model.text_projection");
    expect_skip(&L, "cond_stage_model.model.logit_scale");
    expect_skip(&L, "betas");
    expect_skip(&L, "alphas_cumprod");
    expect_skip(&L, "model_ema.diffusion_modelinput_blocks00weight");
    expect_skip(&L, "model_ema.num_updates");
    expect_skip(&L, "first_stage_model.loss.logvar");
    expect_skip(&L, "something.else");
    // Names of known parts that this layout does not have
    expect_error(&L, "model.diffusion_model.input_blocks.1.0.in_layers.1.weight");
    expect_error(&L, "model.diffusion_model.input_blocks.12.0.in_layers.0.weight");
    expect_error(&L, "model.diffusion_model.input_blocks.3.1.norm.weight");
    expect_error(&L, "model.diffusion_model.output_blocks.1.1.conv.weight");
    expect_error(&L, "model.diffusion_model.output_blocks.11.1.conv.weight");
    expect_error(&L, "model.diffusion_model.label_emb.0.0.weight");
    expect_error(&L, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.bias");
    expect_error(&L, "first_stage_model.encoder.down.0.attn.0.q.weight");
    expect_error(&L, "first_stage_model.encoder.down.3.downsample.conv.weight");
    expect_error(&L, "first_stage_model.decoder.up.0.upsample.conv.weight");
    expect_error(&L, "cond_stage_model.model.transformer.resblocks.0.ls_1.gamma");
    expect_error(&L, "cond_stage_model.model.visual.proj");
    // SD 1.x: cond_stage_model.transformer.* holds transformers names already
    L.text_kind = LDM_TEXT_CLIP, L.text_layers = 12, L.text_layers_kept = 12;
    expect_name(&L, "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight", LDM_TEXT,
                "text_model.encoder.layers.11.self_attn.q_proj.weight", A);
    expect_name(&L, "cond_stage_model.transformer.text_model.final_layer_norm.weight", LDM_TEXT,
                "text_model.final_layer_norm.weight", A);
    expect_skip(&L, "cond_stage_model.transformer.text_model.embeddings.position_ids");
    expect_error(&L, "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc3.weight");
    // The attention heads of a UNet level when the checkpoint does not say
    CHECK(
        ldm_default_heads(1024, 320) == 5 && ldm_default_heads(1024, 640) == 10 && ldm_default_heads(1024, 1280) == 20,
        "SD 2.x heads (5, 10, 20, 20)");
    CHECK(ldm_default_heads(768, 320) == 8 && ldm_default_heads(768, 1280) == 8, "SD 1.x: 8 heads");
}

// ---------------------------------------------------------------------------
// The tiny checkpoint against the tiny pipeline.

// ldm_tensor_read gives the file's little-endian bytes: to host order (a no-op on little-endian hosts).
static void le_to_host(void *p, int64_t n, int size) {
    const uint16_t one = 1;
    if (*(const unsigned char *)&one == 1) return;
    unsigned char *b = (unsigned char *)p;
    for (int64_t k = 0; k < n; k++)
        for (int i = 0; i < size / 2; i++) {
            unsigned char t = b[k * size + i];
            b[k * size + i] = b[k * size + size - 1 - i];
            b[k * size + size - 1 - i] = t;
        }
}

static float *entry_f32(const StEntry *e) {
    float *x = (float *)malloc((size_t)(e->numel > 0 ? e->numel : 1) * sizeof(float));
    if (x && st_entry_to_f32(e, x)) {
        free(x);
        return NULL;
    }
    return x;
}

// Every tensor of one part of the plan equals the pipeline's tensor of that name, and the other way round.
static void compare_part(const LdmPlan *plan, LdmPart part, const char *weights, int *compared) {
    SafeTensors ref;
    if (st_open(&ref, weights)) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    int n = 0, bad = 0;
    for (int i = 0; i < plan->count; i++) {
        const LdmTensor *t = &plan->tensors[i];
        if (t->part != part) continue;
        n++;
        const StEntry *e = st_find(&ref, t->name);
        if (!e) {
            if (bad++ < 5) CHECK(0, "%s/%s: not in the pipeline", ldm_part_folder[part], t->name);
            continue;
        }
        int same_shape = e->ndim == t->ndim && e->dtype == t->src->dtype;
        for (int d = 0; same_shape && d < e->ndim; d++) same_shape = e->shape[d] == t->shape[d];
        float *want = entry_f32(e), *got = (float *)malloc((size_t)t->numel * sizeof(float));
        int same = same_shape && want && got && !ldm_tensor_read(t, 0, t->numel, DT_F32, got);
        if (same) le_to_host(got, t->numel, 4);
        same = same && memcmp(want, got, (size_t)t->numel * sizeof(float)) == 0;
        // F16 output of an F16 source: the stored bits themselves
        if (same && t->src->dtype == DT_F16) {
            uint16_t *h = (uint16_t *)malloc((size_t)t->numel * 2);
            same = h && !ldm_tensor_read(t, 0, t->numel, DT_F16, h) && memcmp(h, e->data, (size_t)t->numel * 2) == 0;
            free(h);
        }
        if (!same && bad++ < 5) CHECK(0, "%s/%s: shape, dtype or values differ", ldm_part_folder[part], t->name);
        free(want);
        free(got);
    }
    CHECK(n == ref.count, "%s: %d converted tensors, the pipeline has %d", ldm_part_folder[part], n, ref.count);
    CHECK(bad == 0, "%s: %d tensors differ", ldm_part_folder[part], bad);
    *compared += n - bad;
    st_close(&ref);
}

static int cfg_int(const JsonValue *c, const char *key) {
    int v = -1;
    json_get_int(c, key, -1, &v);
    return v;
}

static void test_tiny_roundtrip(void) {
    SafeTensors st;
    LdmPlan plan;
    if (st_open(&st, LDM)) {
        CHECK(0, "%s", sd_last_error());
        return;
    }
    if (ldm_plan_build(&st, -1, 0, &plan)) {
        CHECK(0, "plan: %s", sd_last_error());
        st_close(&st);
        return;
    }
    const LdmLayout *L = &plan.layout;
    CHECK(L->unet_levels == 4 && L->unet_layers_per_block == 2 && L->vae_levels == 4 && L->vae_layers_per_block == 1 &&
              L->vae_has_decoder && L->text_kind == LDM_TEXT_OPENCLIP && L->text_layers == 3 &&
              L->text_layers_kept == 2,
          "layout: unet %dx%d vae %dx%d text %d/%d", L->unet_levels, L->unet_layers_per_block, L->vae_levels,
          L->vae_layers_per_block, L->text_layers_kept, L->text_layers);
    // 12 tensors of the extra resblock, text_projection, logit_scale, betas, alphas_cumprod, model_ema x2
    CHECK(plan.ignored == 18, "%d tensors not converted, expected 18", plan.ignored);
    int compared = 0;
    compare_part(&plan, LDM_UNET, PIPE "/unet/diffusion_pytorch_model.safetensors", &compared);
    compare_part(&plan, LDM_VAE, PIPE "/vae/diffusion_pytorch_model.safetensors", &compared);
    compare_part(&plan, LDM_TEXT, PIPE "/text_encoder/model.safetensors", &compared);
    CHECK(compared == 688 + 180 + 36, "%d tensors equal, expected 904", compared);

    // f32 -> f16 -> f32 of an f32 tensor is the f16 rounding; of an f16 tensor it is exact
    const LdmTensor *q = ldm_plan_find(&plan, LDM_VAE, "encoder.mid_block.attentions.0.to_q.weight");
    CHECK(q && q->ndim == 2 && q->shape[0] == 16 && q->shape[1] == 16 && q->src->ndim == 4,
          "VAE to_q: (16, 16) from a 1x1 conv");
    if (q) {
        float a[4];
        uint16_t h[4];
        CHECK(!ldm_tensor_read(q, 3, 4, DT_F32, a) && !ldm_tensor_read(q, 3, 4, DT_F16, h), "read a slice");
        le_to_host(a, 4, 4);
        le_to_host(h, 4, 2);
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= f32_from_f16(h[i]) == f32_from_f16(f16_from_f32(a[i]));
        CHECK(ok, "F32 -> F16 conversion of a slice");
        CHECK(ldm_tensor_read(q, 250, 10, DT_F32, a) < 0, "reading past the end is an error");
    }

    // The config values the shapes give, against the pipeline's configs
    LdmShapes s;
    JsonValue uc, vc, tc;
    CHECK(!ldm_infer_shapes(&plan, &s), "infer: %s", sd_last_error());
    if (!json_parse_file(PIPE "/unet/config.json", &uc)) {
        int boc[4];
        json_get_int_list(&uc, "block_out_channels", 4, boc);
        CHECK(s.unet_levels == 4 && !memcmp(boc, s.block_out_channels, sizeof(boc)), "unet block_out_channels");
        CHECK(s.layers_per_block == cfg_int(&uc, "layers_per_block") && s.in_channels == cfg_int(&uc, "in_channels") &&
                  s.out_channels == cfg_int(&uc, "out_channels") &&
                  s.cross_attention_dim == cfg_int(&uc, "cross_attention_dim"),
              "unet layers_per_block, in/out channels, cross_attention_dim");
        CHECK(s.use_linear_projection == 1 && s.time_embed_dim == 4 * boc[0] && s.transformer_depth == 1,
              "linear projection, time embedding, depth");
        const int down[4] = {1, 1, 1, 0}, up[4] = {0, 1, 1, 1};
        CHECK(!memcmp(down, s.down_attention, sizeof(down)) && !memcmp(up, s.up_attention, sizeof(up)),
              "CrossAttn / plain blocks");
        json_free(&uc);
    }
    if (!json_parse_file(PIPE "/vae/config.json", &vc)) {
        int boc[4];
        json_get_int_list(&vc, "block_out_channels", 4, boc);
        CHECK(s.vae_levels == 4 && !memcmp(boc, s.vae_block_out_channels, sizeof(boc)) &&
                  s.vae_layers_per_block == cfg_int(&vc, "layers_per_block") &&
                  s.latent_channels == cfg_int(&vc, "latent_channels") &&
                  s.vae_in_channels == cfg_int(&vc, "in_channels") &&
                  s.vae_out_channels == cfg_int(&vc, "out_channels"),
              "vae config values");
        json_free(&vc);
    }
    if (!json_parse_file(PIPE "/text_encoder/config.json", &tc)) {
        CHECK(s.hidden_size == cfg_int(&tc, "hidden_size") &&
                  s.intermediate_size == cfg_int(&tc, "intermediate_size") &&
                  s.vocab_size == cfg_int(&tc, "vocab_size") &&
                  s.max_position_embeddings == cfg_int(&tc, "max_position_embeddings") &&
                  s.num_hidden_layers == cfg_int(&tc, "num_hidden_layers"),
              "text config values");
        json_free(&tc);
    }
    ldm_plan_free(&plan);

    // Keeping one text layer (a config's num_hidden_layers) drops the others; more than the file has is an error
    CHECK(!ldm_plan_build(&st, 1, 0, &plan) && plan.layout.text_layers_kept == 1 &&
              !ldm_plan_find(&plan, LDM_TEXT, "text_model.encoder.layers.1.mlp.fc1.weight") &&
              ldm_plan_find(&plan, LDM_TEXT, "text_model.encoder.layers.0.mlp.fc1.weight"),
          "text_layers 1");
    ldm_plan_free(&plan);
    CHECK(ldm_plan_build(&st, 4, 0, &plan) < 0 && strstr(sd_last_error(), "4 text layers"), "text_layers 4 of 3: %s",
          sd_last_error());
    CHECK(ldm_plan_build(&st, -1, 1, &plan) < 0 && strstr(sd_last_error(), "no EMA"), "--ema without EMA: %s",
          sd_last_error());
    st_close(&st);
}

// ---------------------------------------------------------------------------
// Variants of the tiny checkpoint, written with st_write (float tensors only).

typedef struct {
    const char *drop_prefix;   // entries starting with this are left out (NULL: none)
    const char *text_as_clip;  // when set: the OpenCLIP tower is replaced by this CLIPTextModel file
    int add_ema;               // add model_ema.* copies of the UNet, scaled by 2
    const char *extra_name;    // one more F32 tensor of 4 values
    DType extra_dtype;         // DT_F32 or DT_I32
} Variant;

static int write_variant(const char *path, const Variant *v) {
    SafeTensors st, clip;
    if (st_open(&st, LDM)) return -1;
    int have_clip = v->text_as_clip && !st_open(&clip, v->text_as_clip);
    int cap = st.count * 2 + (have_clip ? clip.count : 0) + 1, n = 0;
    StWriteEntry *w = (StWriteEntry *)calloc((size_t)cap, sizeof(StWriteEntry));
    void **bufs = (void **)calloc((size_t)cap, sizeof(void *));
    char **names = (char **)calloc((size_t)cap, sizeof(char *));
    static float extra_f[4] = {1, 2, 3, 4};
    static int32_t extra_i[4] = {1, 2, 3, 4};
    for (int pass = 0; pass < 2; pass++) {
        const SafeTensors *src = pass == 0 ? &st : &clip;
        if (pass == 1 && !have_clip) break;
        for (int i = 0; i < src->count; i++) {
            const StEntry *e = &src->entries[i];
            if (e->dtype != DT_F32 && e->dtype != DT_F16) continue;
            if (pass == 0 && v->drop_prefix && !strncmp(e->name, v->drop_prefix, strlen(v->drop_prefix))) continue;
            if (pass == 0 && have_clip && !strncmp(e->name, "cond_stage_model.", 17)) continue;
            for (int copy = 0; copy < 1 + (pass == 0 && v->add_ema && !strncmp(e->name, "model.diffusion_model.", 22));
                 copy++) {
                float *x = entry_f32(e);
                char *name = (char *)malloc(LDM_NAME_MAX);
                if (!x || !name) return -1;
                if (pass == 1) {
                    snprintf(name, LDM_NAME_MAX, "cond_stage_model.transformer.%s", e->name);
                } else if (copy == 1) {  // LitEma's names: "model_ema." + the name after "model." without dots
                    size_t k = (size_t)snprintf(name, LDM_NAME_MAX, "model_ema.");
                    for (const char *c = e->name + 6; *c; c++)
                        if (*c != '.') name[k++] = *c;
                    name[k] = 0;
                    for (int64_t j = 0; j < e->numel; j++) x[j] *= 2;
                } else {
                    snprintf(name, LDM_NAME_MAX, "%s", e->name);
                }
                w[n].name = name;
                w[n].dtype = e->dtype;
                w[n].ndim = e->ndim;
                for (int d = 0; d < e->ndim; d++) w[n].shape[d] = e->shape[d];
                w[n].data = x;
                bufs[n] = x;
                names[n++] = name;
            }
        }
    }
    if (v->extra_name) {
        w[n].name = v->extra_name;
        w[n].dtype = v->extra_dtype;
        w[n].ndim = 1;
        w[n].shape[0] = 4;
        w[n].data = v->extra_dtype == DT_I32 ? (const void *)extra_i : (const void *)extra_f;
        n++;
    }
    int rc = st_write(path, w, n, NULL, NULL, 0);
    for (int i = 0; i < cap; i++) {
        free(bufs[i]);
        free(names[i]);
    }
    free(w);
    free(bufs);
    free(names);
    if (have_clip) st_close(&clip);
    st_close(&st);
    return rc;
}

// Builds the plan of a variant; returns its result (the message is in sd_last_error()).
static int plan_variant(const Variant *v, const char *tag, int use_ema, LdmPlan *plan, SafeTensors *st) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.safetensors", g_dir, tag);
    if (write_variant(path, v)) {
        CHECK(0, "%s: writing the variant: %s", tag, sd_last_error());
        return -2;
    }
    if (st_open(st, path)) {
        CHECK(0, "%s: %s", tag, sd_last_error());
        return -2;
    }
    sd_clear_error();
    int rc = ldm_plan_build(st, -1, use_ema, plan);
    return rc;
}

static void expect_plan_error(const Variant *v, const char *tag, const char *what1, const char *what2) {
    LdmPlan plan;
    SafeTensors st;
    int rc = plan_variant(v, tag, 0, &plan, &st);
    if (rc == -2) return;
    const char *msg = sd_last_error();
    CHECK(rc < 0 && strstr(msg, tag) && strstr(msg, what1) && (!what2 || strstr(msg, what2)),
          "%s: rc %d, expected an error naming the file and '%s': '%s'", tag, rc, what1, msg);
    if (rc == 0) ldm_plan_free(&plan);
    st_close(&st);
}

static void test_variants(void) {
    // SD 1.x text layout: the CLIPTextModel tensors under cond_stage_model.transformer.
    Variant sd1 = {NULL, PIPE "/text_encoder/model.safetensors", 0, NULL, DT_F32};
    LdmPlan plan;
    SafeTensors st;
    int rc = plan_variant(&sd1, "sd1_text", 0, &plan, &st);
    if (rc != -2) {
        CHECK(rc == 0, "SD 1.x text layout: %s", sd_last_error());
        if (rc == 0) {
            CHECK(plan.layout.text_kind == LDM_TEXT_CLIP && plan.layout.text_layers == 2 &&
                      plan.layout.text_layers_kept == 2,
                  "SD 1.x: CLIP, 2 layers kept");
            int compared = 0;
            compare_part(&plan, LDM_TEXT, PIPE "/text_encoder/model.safetensors", &compared);
            CHECK(compared == 36, "SD 1.x text: %d tensors equal", compared);
            ldm_plan_free(&plan);
        }
        st_close(&st);
    }
    // --ema: the UNet comes from the model_ema.* copies (here 2x the weights)
    Variant ema = {NULL, NULL, 1, NULL, DT_F32};
    rc = plan_variant(&ema, "ema", 1, &plan, &st);
    if (rc != -2) {
        CHECK(rc == 0 && plan.layout.ema_tensors == 688, "--ema: %s", sd_last_error());
        if (rc == 0) {
            int from_ema = 0, n = 0;
            for (int i = 0; i < plan.count; i++) {
                if (plan.tensors[i].part != LDM_UNET) continue;
                n++;
                from_ema += !strncmp(plan.tensors[i].src->name, "model_ema.", 10);
            }
            CHECK(n == 688 && from_ema == n, "--ema: %d of %d UNet tensors from model_ema.*", from_ema, n);
            const LdmTensor *t = ldm_plan_find(&plan, LDM_UNET, "conv_in.bias");
            SafeTensors ref;
            if (t && !st_open(&ref, PIPE "/unet/diffusion_pytorch_model.safetensors")) {
                float got[8], *want = entry_f32(st_find(&ref, "conv_in.bias"));
                int read = want && !ldm_tensor_read(t, 0, 8, DT_F32, got);
                if (read) le_to_host(got, 8, 4);
                CHECK(read && got[3] == 2 * want[3], "--ema values");
                free(want);
                st_close(&ref);
            }
            ldm_plan_free(&plan);
        }
        st_close(&st);
    }
    // Bad inputs: the message names the file and the tensor
    Variant missing = {"model.diffusion_model.input_blocks.4.0.in_layers.2.weight", NULL, 0, NULL, DT_F32};
    expect_plan_error(&missing, "missing_tensor", "model.diffusion_model.input_blocks.4.0.in_layers.2.weight",
                      "missing");
    Variant no_block = {"first_stage_model.encoder.down.2.block.0.", NULL, 0, NULL, DT_F32};
    expect_plan_error(&no_block, "missing_block", "first_stage_model.encoder.down.2.block.0.", NULL);
    Variant no_mid = {"model.diffusion_model.middle_block.1.", NULL, 0, NULL, DT_F32};
    expect_plan_error(&no_mid, "missing_mid_attention", "middle_block.1.", NULL);
    Variant no_text = {"cond_stage_model.", NULL, 0, NULL, DT_F32};
    expect_plan_error(&no_text, "no_text", "no text encoder", NULL);
    Variant no_vae = {"first_stage_model.", NULL, 0, NULL, DT_F32};
    expect_plan_error(&no_vae, "no_vae", "first_stage_model", NULL);
    Variant extra = {NULL, NULL, 0, "model.diffusion_model.output_blocks.3.0.extra.weight", DT_F32};
    expect_plan_error(&extra, "unknown_name", "model.diffusion_model.output_blocks.3.0.extra.weight", "unknown");
    Variant ints = {"model.diffusion_model.out.2.bias", NULL, 0, "model.diffusion_model.out.2.bias", DT_I32};
    expect_plan_error(&ints, "int_tensor", "model.diffusion_model.out.2.bias", "I32");
    Variant no_unet = {"model.diffusion_model.", NULL, 0, NULL, DT_F32};
    expect_plan_error(&no_unet, "no_unet", "model.diffusion_model", "not a Stable Diffusion checkpoint");

    // A diffusers file is not a checkpoint
    if (!st_open(&st, PIPE "/unet/diffusion_pytorch_model.safetensors")) {
        sd_clear_error();
        CHECK(ldm_plan_build(&st, -1, 0, &plan) < 0 && strstr(sd_last_error(), "already diffusers") &&
                  strstr(sd_last_error(), "tiny_pipeline/unet"),
              "diffusers file: '%s'", sd_last_error());
        st_close(&st);
    }
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/sd_test_convert_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", g_dir);
    if (system(cmd) != 0) printf("cannot create %s\n", g_dir);
    test_names();
    test_tiny_roundtrip();
    test_variants();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("cannot remove %s\n", g_dir);
    return test_report("test_convert");
}
