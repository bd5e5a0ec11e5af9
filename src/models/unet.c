// UNet2DConditionModel forward (diffusers 0.17.0 unet_2d_condition.py + unet_2d_blocks.py) and SatUNet's
// metadata embeddings (DiffusionSat sat_unet.py), and the module paths of its captures. See unet.h;
// building one from config.json is unet_config.c.
#include "models/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// ---- forward -------------------------------------------------------------------

// A skip connection (down_block_res_samples) living in the arena. `mark` is the arena position before it
// was allocated: popping it frees everything from there up.
typedef struct {
    float *data;
    int C, H, W;
    size_t mark;
} Skip;

typedef struct {
    const UNet *u;
    int B, L;
    const float *context;
    const float *temb_silu;  // silu(emb) (B, time_embed_dim), shared by every ResNet block
    Arena *arena;
    ModuleCaptures *cap;
    Skip skips[2 + UNET_MAX_BLOCKS * (UNET_MAX_LAYERS + 1)];
    int n_skips;
} Forward;

// Moves n floats at src down to the arena position `mark` and makes them the arena's top:
// everything that was between mark and src is freed (no longer needed by any skip connection).
static float *move_down(Arena *a, size_t mark, const float *src, int64_t n) {
    arena_reset(a, mark);
    float *dst = nn_alloc(a, n);  // lands at or below src: src was allocated later
    if (dst && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
    return dst;
}

static int push_skip(Forward *f, float *data, int C, int H, int W, size_t mark) {
    Skip *s = &f->skips[f->n_skips++];
    s->data = data;
    s->C = C;
    s->H = H;
    s->W = W;
    s->mark = mark;
    return 0;
}

// A down block: every ResNet (+ transformer) output and the downsampler's output become skips.
static int down_block_forward(Forward *f, const UNetBlock *blk, int i, float **cur, int *H, int *W) {
    char path[96] = "";
    const int B = f->B, C = blk->out_channels;
    for (int j = 0; j < blk->num_layers; j++) {
        size_t mark = arena_mark(f->arena);
        float *o = nn_alloc(f->arena, (int64_t)B * C * *H * *W);
        if (!o) return SD_FAIL;
        if (f->cap) snprintf(path, sizeof(path), "down_blocks.%d.resnets.%d", i, j);
        if (resnet_block_forward(&blk->resnets[j], *cur, f->temb_silu, o, B, *H, *W, f->arena, f->cap, path))
            return SD_FAIL;
        if (blk->has_attention) {
            if (f->cap) snprintf(path, sizeof(path), "down_blocks.%d.attentions.%d", i, j);
            if (transformer2d_forward(&blk->attentions[j], o, B, *H, *W, f->context, f->L, f->arena, f->cap, path))
                return SD_FAIL;
        }
        push_skip(f, o, C, *H, *W, mark);
        *cur = o;
    }
    if (blk->has_sampler) {
        int Ho, Wo;
        downsample_out_size(&blk->downsampler, *H, *W, &Ho, &Wo);
        size_t mark = arena_mark(f->arena);
        float *o = nn_alloc(f->arena, (int64_t)B * C * Ho * Wo);
        if (!o || downsample_forward(&blk->downsampler, *cur, o, B, *H, *W)) return SD_FAIL;
        if (f->cap) {
            snprintf(path, sizeof(path), "down_blocks.%d.downsamplers.0", i);
            if (captures_offer(f->cap, path, NULL, o, 4, (int[4]){B, C, Ho, Wo})) return SD_FAIL;
        }
        push_skip(f, o, C, Ho, Wo, mark);
        *cur = o;
        *H = Ho;
        *W = Wo;
    }
    return 0;
}

// The mid block: resnets.0, attentions.0, resnets.1. Its output is put at the arena top (above the skips).
static int mid_block_forward(Forward *f, float **cur, size_t *cur_mark, int H, int W) {
    const UNetBlock *mid = &f->u->mid_block;
    const int B = f->B, C = mid->out_channels;
    const int64_t n = (int64_t)B * C * H * W;
    ModuleCaptures *cap = f->cap;
    size_t mark = arena_mark(f->arena);
    float *o1 = nn_alloc(f->arena, n);
    if (!o1) return SD_FAIL;
    if (resnet_block_forward(&mid->resnets[0], *cur, f->temb_silu, o1, B, H, W, f->arena, cap, "mid_block.resnets.0"))
        return SD_FAIL;
    if (transformer2d_forward(&mid->attentions[0], o1, B, H, W, f->context, f->L, f->arena, cap,
                              "mid_block.attentions.0"))
        return SD_FAIL;
    float *o2 = nn_alloc(f->arena, n);
    if (!o2) return SD_FAIL;
    if (resnet_block_forward(&mid->resnets[1], o1, f->temb_silu, o2, B, H, W, f->arena, cap, "mid_block.resnets.1"))
        return SD_FAIL;
    *cur = move_down(f->arena, mark, o2, n);
    *cur_mark = mark;
    return captures_offer(cap, "mid_block", NULL, *cur, 4, (int[4]){B, C, H, W});
}

// An up block: each ResNet takes cat(cur, skip) on channels; the popped skip and the old cur are freed
// by moving the new output down over them.
static int up_block_forward(Forward *f, const UNetBlock *blk, int i, float **cur, size_t *cur_mark, int *Ccur,
                            int *H, int *W) {
    char path[96] = "";
    const int B = f->B, C = blk->out_channels;
    for (int j = 0; j < blk->num_layers; j++) {
        if (f->n_skips == 0) return sd_errorf("up_blocks.%d: no skip connection left (config mismatch)", i);
        Skip s = f->skips[--f->n_skips];
        const ResnetBlock2D *r = &blk->resnets[j];
        if (s.H != *H || s.W != *W || *Ccur + s.C != r->in_channels)
            return sd_errorf("up_blocks.%d.resnets.%d: expects %d channels, got %d + skip %d at %dx%d vs %dx%d", i, j,
                             r->in_channels, *Ccur, s.C, *H, *W, s.H, s.W);
        const int HW = *H * *W;
        float *cat = nn_alloc(f->arena, (int64_t)B * (*Ccur + s.C) * HW);
        if (!cat) return SD_FAIL;
        for (int b = 0; b < B; b++) {  // torch.cat([hidden_states, res_hidden_states], dim=1)
            float *dst = cat + (int64_t)b * (*Ccur + s.C) * HW;
            memcpy(dst, *cur + (int64_t)b * *Ccur * HW, (size_t)*Ccur * HW * sizeof(float));
            memcpy(dst + (int64_t)*Ccur * HW, s.data + (int64_t)b * s.C * HW, (size_t)s.C * HW * sizeof(float));
        }
        const int64_t n = (int64_t)B * C * HW;
        float *o = nn_alloc(f->arena, n);
        if (!o) return SD_FAIL;
        if (f->cap) snprintf(path, sizeof(path), "up_blocks.%d.resnets.%d", i, j);
        if (resnet_block_forward(r, cat, f->temb_silu, o, B, *H, *W, f->arena, f->cap, path)) return SD_FAIL;
        if (blk->has_attention) {
            if (f->cap) snprintf(path, sizeof(path), "up_blocks.%d.attentions.%d", i, j);
            if (transformer2d_forward(&blk->attentions[j], o, B, *H, *W, f->context, f->L, f->arena, f->cap, path))
                return SD_FAIL;
        }
        // The skip lies below cur (cur was made after it), so from s.mark up everything is dead but o.
        *cur = move_down(f->arena, s.mark, o, n);
        *cur_mark = s.mark;
        *Ccur = C;
    }
    if (blk->has_sampler) {
        // Upsample to the next skip's size: 2x unless the input size was not a multiple of 2^upsamplers
        // (diffusers' forward_upsample_size), where the sizes differ and nearest-to-size is used.
        if (f->n_skips == 0) return sd_errorf("up_blocks.%d: no skip connection left (config mismatch)", i);
        const Skip *next = &f->skips[f->n_skips - 1];
        int Ho = next->H, Wo = next->W;
        const int64_t n = (int64_t)B * C * Ho * Wo;
        float *o = nn_alloc(f->arena, n);
        if (!o || upsample_forward(&blk->upsampler, *cur, o, B, *H, *W, Ho, Wo, f->arena)) return SD_FAIL;
        *cur = move_down(f->arena, *cur_mark, o, n);
        *H = Ho;
        *W = Wo;
        if (f->cap) {
            snprintf(path, sizeof(path), "up_blocks.%d.upsamplers.0", i);
            if (captures_offer(f->cap, path, NULL, *cur, 4, (int[4]){B, C, Ho, Wo})) return SD_FAIL;
        }
    }
    if (f->cap) {
        snprintf(path, sizeof(path), "up_blocks.%d", i);
        if (captures_offer(f->cap, path, NULL, *cur, 4, (int[4]){B, C, *H, *W})) return SD_FAIL;
    }
    return 0;
}

// emb = time_embedding(time_proj(t)) (+ sum_m metadata_embedding[m](time_proj(metadata[:, m]))).
static int time_embedding_forward(const UNet *u, const float *timesteps, const float *metadata, int B, float *emb,
                                  Arena *arena, ModuleCaptures *cap) {
    const int C0 = u->timestep_input_dim, D = u->time_embed_dim;
    size_t mark = arena_mark(arena);
    float *proj = nn_alloc(arena, (int64_t)B * C0);
    if (!proj) return SD_FAIL;
    timestep_embedding_sinusoidal(timesteps, B, C0, u->flip_sin_to_cos, u->freq_shift, proj);
    if (timestep_embedding_forward(&u->time_embedding, proj, emb, B, arena)) return SD_FAIL;
    if (captures_offer(cap, "time_embedding", NULL, emb, 2, (int[2]){B, D})) return SD_FAIL;
    if (u->num_metadata > 0) {
        if (!metadata) return sd_errorf("this UNet has %d metadata embeddings: metadata (B, %d) is needed",
                                        u->num_metadata, u->num_metadata);
        float *md = nn_alloc(arena, B);
        float *md_emb = md ? nn_alloc(arena, (int64_t)B * D) : NULL;
        if (!md_emb) return SD_FAIL;
        for (int m = 0; m < u->num_metadata; m++) {
            for (int b = 0; b < B; b++) md[b] = metadata[(int64_t)b * u->num_metadata + m];
            timestep_embedding_sinusoidal(md, B, C0, u->flip_sin_to_cos, u->freq_shift, proj);
            if (timestep_embedding_forward(&u->metadata_embedding[m], proj, md_emb, B, arena)) return SD_FAIL;
            add_inplace(emb, md_emb, (int64_t)B * D);  // emb = emb + md_emb
        }
    }
    arena_reset(arena, mark);
    return 0;
}

int64_t unet_output_floats(const UNet *u, int B, int h, int w) { return (int64_t)B * u->out_channels * h * w; }

int unet_forward(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps,
                 const float *context, int L, const float *metadata, ModuleCaptures *captures, Arena *arena,
                 float *out) {
    if (B < 1 || h < 1 || w < 1 || L < 1) return sd_errorf("unet_forward: bad sizes B=%d h=%d w=%d L=%d", B, h, w, L);
    const size_t mark0 = arena_mark(arena);
    const int C0 = u->block_out_channels[0], D = u->time_embed_dim;
    Forward f;
    memset(&f, 0, sizeof(f));
    f.u = u;
    f.B = B;
    f.L = L;
    f.context = context;
    f.arena = arena;
    f.cap = captures;
    int rc = SD_FAIL;

    // 1. time: the SiLU every ResNet applies to emb is done once here.
    float *temb = nn_alloc(arena, (int64_t)B * D);
    if (!temb || time_embedding_forward(u, timesteps, metadata, B, temb, arena, captures)) goto done;
    silu_inplace(temb, (int64_t)B * D);
    f.temb_silu = temb;

    // 2. conv_in (on 2x-1 with center_input_sample)
    const float *x = sample;
    if (u->center_input_sample) {
        int64_t n = (int64_t)B * u->in_channels * h * w;
        float *c = nn_alloc(arena, n);
        if (!c) goto done;
        for (int64_t i = 0; i < n; i++) c[i] = 2.0f * sample[i] - 1.0f;
        x = c;
    }
    size_t mark = arena_mark(arena);
    float *cur = nn_alloc(arena, (int64_t)B * C0 * h * w);
    if (!cur || nn_conv2d(&u->conv_in, x, B, h, w, cur)) goto done;
    if (captures_offer(captures, "conv_in", NULL, cur, 4, (int[4]){B, C0, h, w})) goto done;
    push_skip(&f, cur, C0, h, w, mark);

    // 3. down
    int H = h, W = w;
    for (int i = 0; i < u->n_blocks; i++)
        if (down_block_forward(&f, &u->down_blocks[i], i, &cur, &H, &W)) goto done;

    // 4. mid (without a mid block, the last skip is also the current sample)
    size_t cur_mark = f.skips[f.n_skips - 1].mark;
    int Ccur = u->block_out_channels[u->n_blocks - 1];
    if (u->has_mid_block && mid_block_forward(&f, &cur, &cur_mark, H, W)) goto done;

    // 5. up
    for (int i = 0; i < u->n_blocks; i++)
        if (up_block_forward(&f, &u->up_blocks[i], i, &cur, &cur_mark, &Ccur, &H, &W)) goto done;
    if (f.n_skips != 0) {
        sd_errorf("UNet: %d skip connections left unused (config mismatch)", f.n_skips);
        goto done;
    }

    // 6. out: conv_out(silu(conv_norm_out(x)))
    {
        float *t = nn_alloc(arena, (int64_t)B * C0 * h * w);
        if (!t) goto done;
        nn_groupnorm_silu(&u->conv_norm_out, cur, t, NULL, B, h * w);
        if (nn_conv2d(&u->conv_out, t, B, h, w, out)) goto done;
        if (captures_offer(captures, "conv_out", NULL, out, 4, (int[4]){B, u->out_channels, h, w})) goto done;
    }
    rc = captures_check_filled(captures, "UNet");
done:
    arena_end(arena, mark0);
    return rc;
}

int unet_run(const UNet *u, const float *sample, int B, int h, int w, const float *timesteps, const float *context,
             int L, const float *metadata, ModuleCaptures *captures, float *out) {
    Arena arena = {0};
    int rc = unet_forward(u, sample, B, h, w, timesteps, context, L, metadata, captures, &arena, out);
    arena_free(&arena);
    return rc;
}

// ---- module paths --------------------------------------------------------------------

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int add_path(char ***paths, int *count, int *cap, const char *p) {
    if (*count == *cap) {
        int nc = *cap ? 2 * *cap : 32;
        char **l = (char **)realloc(*paths, (size_t)nc * sizeof(char *));
        if (!l) return sd_errorf("out of memory");
        *paths = l;
        *cap = nc;
    }
    (*paths)[*count] = strdup(p);
    if (!(*paths)[*count]) return sd_errorf("out of memory");
    (*count)++;
    return 0;
}

int unet_up_block_paths(const UNet *u, const char *const *suffixes, int n_suffixes, char ***paths, int *count) {
    *paths = NULL;
    *count = 0;
    int cap = 0;
    char rel[128], full[160];
    static const char *const block_leaves[] = {"", ".attn1", ".attn2", ".ff"};
    static const char *const resnet_leaves[] = {"", ".conv1", ".conv2"};
    for (int i = 0; i < u->n_blocks; i++) {
        const UNetBlock *blk = &u->up_blocks[i];
        for (int s = 0; s < n_suffixes; s++) {
            // named_modules() order: attentions.* (registered first), resnets.*, upsamplers.0
            for (int j = 0; blk->has_attention && j < blk->num_layers; j++) {
                snprintf(rel, sizeof(rel), "attentions.%d", j);
                if (ends_with(rel, suffixes[s])) {
                    snprintf(full, sizeof(full), "up_blocks.%d.%s", i, rel);
                    if (add_path(paths, count, &cap, full)) goto fail;
                }
                for (int k = 0; k < 4; k++) {
                    snprintf(rel, sizeof(rel), "attentions.%d.transformer_blocks.0%s", j, block_leaves[k]);
                    if (!ends_with(rel, suffixes[s])) continue;
                    snprintf(full, sizeof(full), "up_blocks.%d.%s", i, rel);
                    if (add_path(paths, count, &cap, full)) goto fail;
                }
            }
            for (int j = 0; j < blk->num_layers; j++) {
                for (int k = 0; k < 3; k++) {
                    snprintf(rel, sizeof(rel), "resnets.%d%s", j, resnet_leaves[k]);
                    if (!ends_with(rel, suffixes[s])) continue;
                    snprintf(full, sizeof(full), "up_blocks.%d.%s", i, rel);
                    if (add_path(paths, count, &cap, full)) goto fail;
                }
            }
            if (blk->has_sampler && ends_with("upsamplers.0", suffixes[s])) {
                snprintf(full, sizeof(full), "up_blocks.%d.upsamplers.0", i);
                if (add_path(paths, count, &cap, full)) goto fail;
            }
        }
    }
    return 0;
fail:
    unet_paths_free(*paths, *count);
    *paths = NULL;
    *count = 0;
    return SD_FAIL;
}

void unet_paths_free(char **paths, int count) {
    for (int i = 0; i < count; i++) free(paths[i]);
    free(paths);
}
