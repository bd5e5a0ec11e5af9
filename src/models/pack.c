// Packed model files (see pack.h).
#include "models/pack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"

enum { PACK_ALIGN = 64, PACK_MAX_META = 32 };

// The panels are written and mapped in the host's byte order: packed files are for little-endian
// machines (every x86-64 and arm64 Linux); a big-endian host uses the model folder.
static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

int model_pack_path_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// ---------------------------------------------------------------------------
// Writing.

typedef struct {
    StWriteEntry *e;
    int n, cap;
    char **owned_names;  // names made here (prefix + name, padding names)
    int n_names;
    size_t offset;       // bytes of data so far
} EntryList;

static int add_entry(EntryList *l, const char *prefix, const char *name, DType dt, int ndim, const int64_t *shape,
                     const void *data) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 512;
        StWriteEntry *e = (StWriteEntry *)realloc(l->e, (size_t)cap * sizeof(*e));
        char **names = (char **)realloc(l->owned_names, (size_t)cap * sizeof(*names));
        if (e) l->e = e;
        if (names) l->owned_names = names;
        if (!e || !names) return sd_errorf("out of memory");
        l->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = (char *)malloc(len);
    if (!full) return sd_errorf("out of memory");
    snprintf(full, len, "%s%s", prefix, name);
    l->owned_names[l->n_names++] = full;
    StWriteEntry *w = &l->e[l->n++];
    memset(w, 0, sizeof(*w));
    w->name = full;
    w->dtype = dt;
    w->ndim = ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (w->shape[d] = shape[d]);
    w->data = data;
    w->raw = 1;
    l->offset += (size_t)numel * (size_t)dtype_size(dt);
    return 0;
}

// Padding so that the next tensor starts at a multiple of PACK_ALIGN bytes of the data section.
static int align_next(EntryList *l) {
    static const unsigned char zeros[PACK_ALIGN] = {0};
    size_t rem = l->offset % PACK_ALIGN;
    if (!rem) return 0;
    char name[32];
    snprintf(name, sizeof(name), "pack.pad.%d", l->n);
    int64_t n = (int64_t)(PACK_ALIGN - rem);
    return add_entry(l, "", name, DT_U8, 1, &n, zeros);
}

// Every tensor one model's loader kept (names as loaded, the folder's prefix is ""), then its
// packed weights, each aligned.
static int add_model(EntryList *l, const NnWeights *w, const char *prefix) {
    for (int i = 0; i < w->n_loaded; i++) {
        const Tensor *t = w->loaded[i];
        if (!t->data) continue;  // a weight that was packed: its panels follow
        int64_t shape[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (add_entry(l, prefix, w->loaded_names[i], DT_F32, t->ndim, shape, t->data)) return SD_FAIL;
    }
    if (w->n_packed_bf16) return sd_errorf("packing needs the f32 or f16 precision (the model was loaded for bf16)");
    for (int i = 0; i < w->n_packed; i++) {
        const GemmPackedWeights *pw = w->packed[i];
        int64_t n = (int64_t)pw->padded_rows * pw->K;
        // f16 weights (NN_F16): the same panels with 2-byte elements, in host order = little-endian
        // (packed files are made and read on little-endian hosts only, above)
        if (align_next(l) || add_entry(l, prefix, w->packed_names[i], pw->half ? DT_F16 : DT_F32, 1, &n,
                                       pw->half ? (const void *)pw->half : (const void *)pw->data))
            return SD_FAIL;
    }
    return 0;
}

// The text of a small file (a config), or NULL with a message.
static char *read_text(const char *path) {
    uint8_t *data;
    size_t len;
    if (read_whole_file(path, &data, &len, (size_t)64 << 20)) return NULL;
    char *s = (char *)realloc(data, len + 1);
    if (!s) { free(data); sd_errorf("out of memory"); return NULL; }
    s[len] = '\0';
    if (strlen(s) != len) { free(s); sd_errorf("%s: a NUL byte in a text file", path); return NULL; }
    return s;
}

int model_pack_write(const char *dir, const char *unet_dir, const char *out_path, char *summary, int summary_size) {
    if (model_pack_path_is_file(dir))
        return sd_errorf("%s: already a file; pack takes a diffusers model folder (convert a single-file "
                         "checkpoint with `satdifuser convert` first)",
                         dir);
    if (nn_precision() == NN_BF16)
        return sd_errorf("pack writes f32 or f16 panels, not bf16 (bf16 compute packs its own at load from f32 panels)");
    const char *precision = nn_precision() == NN_F16 ? "f16" : "f32";
    if (!host_is_little_endian())
        return sd_errorf("packed model files are for little-endian machines (this one is big-endian): use the model folder");
    DiffusionModel m;
    // -1: the SatUNet's metadata embeddings are kept when its config has them (extract skips them)
    if (diffusion_model_load(&m, dir, unet_dir, -1, NULL)) return SD_FAIL;
    EntryList l;
    memset(&l, 0, sizeof(l));
    const char *keys[PACK_MAX_META], *vals[PACK_MAX_META];
    char *texts[PACK_MAX_META];
    int n_meta = 0, n_texts = 0, rc = SD_FAIL;
    char unet[4096], path[8192], mr[16], nr[16], kc[16], fp[32];
    snprintf(unet, sizeof(unet), "%s", unet_dir ? unet_dir : "");
    if (!unet_dir) snprintf(unet, sizeof(unet), "%s/unet", dir);
    // the configs and the tokenizer files, as text
    const struct { const char *key, *folder, *file; int required; } files[] = {
        {"config.unet", unet, "config.json", 1},
        {"config.vae", "vae", "config.json", 1},
        {"config.text_encoder", "text_encoder", "config.json", 1},
        {"config.scheduler", "scheduler", "scheduler_config.json", 1},
        {"model_index", "", "model_index.json", 1},
        {"tokenizer/vocab.json", "tokenizer", "vocab.json", 1},
        {"tokenizer/merges.txt", "tokenizer", "merges.txt", 1},
        {"tokenizer/special_tokens_map.json", "tokenizer", "special_tokens_map.json", 0},
        {"tokenizer/tokenizer_config.json", "tokenizer", "tokenizer_config.json", 0},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i].folder == unet) snprintf(path, sizeof(path), "%s/%s", unet, files[i].file);
        else if (*files[i].folder) snprintf(path, sizeof(path), "%s/%s/%s", dir, files[i].folder, files[i].file);
        else snprintf(path, sizeof(path), "%s/%s", dir, files[i].file);
        if (!files[i].required && access(path, R_OK) != 0) continue;
        char *t = read_text(path);
        if (!t) goto done;
        texts[n_texts++] = t;
        keys[n_meta] = files[i].key;
        vals[n_meta++] = t;
    }
    const GemmKernelInfo *ki = gemm_kernel_info();
    snprintf(mr, sizeof(mr), "%d", ki->mr);
    snprintf(nr, sizeof(nr), "%d", ki->nr);
    snprintf(kc, sizeof(kc), "%d", ki->kc);
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)diffusion_model_fingerprint(dir, unet_dir));
    const char *fixed[][2] = {{"pack.format", PACK_FORMAT}, {"pack.isa", ki->name}, {"pack.mr", mr}, {"pack.nr", nr},
                              {"pack.kc", kc}, {"pack.precision", precision}, {"pack.source", dir},
                              {"pack.source_fingerprint", fp}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        keys[n_meta] = fixed[i][0];
        vals[n_meta++] = fixed[i][1];
    }
    // the weights: the text encoder is still loaded (no prompt was given)
    if (add_model(&l, &m.unet.weights, "unet.") || add_model(&l, &m.vae.weights, "vae.") ||
        add_model(&l, &m.text.weights, "text_encoder."))
        goto done;
    if (st_write_aligned(out_path, l.e, l.n, keys, vals, n_meta, PACK_ALIGN)) goto done;
    if (summary)
        snprintf(summary, (size_t)summary_size, "%d tensors (%d packed for %s: mr %d, nr %d, kc %d, %s), %.1f MB", l.n,
                 m.unet.weights.n_packed + m.vae.weights.n_packed + m.text.weights.n_packed, ki->name, ki->mr, ki->nr,
                 ki->kc, precision, (double)l.offset / 1e6);
    rc = 0;
done:
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    for (int i = 0; i < l.n_names; i++) free(l.owned_names[i]);
    free(l.owned_names);
    free(l.e);
    diffusion_model_free(&m);
    return rc;
}

// ---------------------------------------------------------------------------
// Loading.

// A JSON metadata value of the pack (a config file's text).
static int meta_json(const SafeTensors *st, const char *key, JsonValue *out) {
    const char *text = st_metadata(st, key);
    if (!text) return sd_errorf("%s: no '%s' in the packed model file", st->path, key);
    char source[256];
    snprintf(source, sizeof(source), "%s[%s]", st->path, key);
    return json_parse(text, strlen(text), source, out);
}

int model_pack_load_text_encoder(DiffusionModel *m) {
    JsonValue cfg;
    if (meta_json(&m->pack_st, "config.text_encoder", &cfg)) return SD_FAIL;
    int rc = clip_text_config_from_json(&cfg, &m->text_config);
    json_free(&cfg);
    if (rc) return sd_error_context("%s: config.text_encoder", m->dir);
    if (clip_text_load(&m->text, &m->text_config, &m->pack_st, "text_encoder.")) return sd_error_context("%s", m->dir);
    m->loaded_text = 1;
    m->pack_repacked += m->text.weights.pack_repacked;
    return 0;
}

// The tokenizer files are written to a private temporary folder and read from there.
static int load_tokenizer(DiffusionModel *m) {
    static const char *const files[] = {"vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"};
    char tmp[] = "/tmp/satdifuser_tokenizer.XXXXXX", path[128], key[64];
    if (!mkdtemp(tmp)) return sd_errorf("cannot make a temporary folder for the tokenizer: %s", strerror(errno));
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && !rc; i++) {
        snprintf(key, sizeof(key), "tokenizer/%s", files[i]);
        const char *text = st_metadata(&m->pack_st, key);
        if (!text) {
            if (i < 2) rc = sd_errorf("%s: no '%s' in the packed model file", m->dir, key);
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", tmp, files[i]);
        FILE *f = fopen(path, "wb");
        if (!f || fputs(text, f) < 0) rc = sd_errorf("%s: cannot write: %s", path, strerror(errno));
        if (f && fclose(f) != 0 && !rc) rc = sd_errorf("%s: cannot write", path);
    }
    if (!rc && clip_tokenizer_load_dir(&m->tokenizer, tmp, NULL, &m->max_length) == 0) m->loaded_tok = 1;
    else if (!rc) rc = SD_FAIL;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
    return rc;
}

int model_pack_load(DiffusionModel *m, const char *path, int use_metadata, const char *prompt) {
    memset(m, 0, sizeof(*m));
    if (!host_is_little_endian())
        return sd_errorf("%s: packed model files are for little-endian machines (this one is big-endian): use the model "
                         "folder",
                         path);
    if (!(m->dir = strdup(path))) return sd_errorf("out of memory");
    m->is_pack = 1;
    if (st_open(&m->pack_st, path)) { free(m->dir); m->dir = NULL; m->is_pack = 0; return SD_FAIL; }
    const char *format = st_metadata(&m->pack_st, "pack.format");
    if (!format || strcmp(format, PACK_FORMAT)) {
        sd_errorf("%s: not a packed model file of satdifuser (pack.format is %s%s%s; --model takes a folder or a "
                  "file made by `satdifuser pack`)",
                  path, format ? "'" : "absent", format ? format : "", format ? "'" : "");
        goto fail;
    }
    JsonValue cfg;
    if (model_pack_load_text_encoder(m) || load_tokenizer(m)) goto fail;
    if (m->max_length > m->text_config.max_position_embeddings) m->max_length = m->text_config.max_position_embeddings;
    if (prompt) {
        const float *emb;
        m->release_text = 1;
        if (diffusion_model_prompt(m, prompt, &emb)) goto fail;
    }
    if (meta_json(&m->pack_st, "config.unet", &cfg)) goto fail;
    int rc = unet_load(&m->unet, &cfg, &m->pack_st, "unet.", use_metadata);
    json_free(&cfg);
    if (rc) { sd_error_context("%s: unet", path); goto fail; }
    m->loaded_unet = 1;
    if (meta_json(&m->pack_st, "config.vae", &cfg)) goto fail;
    rc = vae_encoder_load(&m->vae, &cfg, &m->pack_st, "vae.");
    json_free(&cfg);
    if (rc) { sd_error_context("%s: vae", path); goto fail; }
    m->loaded_vae = 1;
    m->pack_repacked += m->unet.weights.pack_repacked + m->vae.weights.pack_repacked;
    if (m->text_config.hidden_size != m->unet.cross_attention_dim[0]) {
        sd_errorf("%s: the text encoder's hidden_size %d differs from the UNet's cross_attention_dim %d", path,
                  m->text_config.hidden_size, m->unet.cross_attention_dim[0]);
        goto fail;
    }
    if (meta_json(&m->pack_st, "config.scheduler", &m->scheduler_config)) goto fail;
    char source[4200];
    snprintf(source, sizeof(source), "%s[config.scheduler]", path);
    if (diffusion_model_init_scheduler(m, source)) goto fail;
    return 0;
fail:
    diffusion_model_free(m);
    return SD_FAIL;
}

void model_pack_note(const DiffusionModel *m, char *buf, int size) {
    buf[0] = '\0';
    if (!m->is_pack || !m->pack_repacked) return;
    const char *isa = st_metadata(&m->pack_st, "pack.isa"), *file_precision = st_metadata(&m->pack_st, "pack.precision");
    const int precision = m->unet.weights.f16 ? NN_F16 : m->unet.weights.bf16 ? NN_BF16 : NN_F32;  // the load's
    const char *here = nn_precision_name(precision);
    if (file_precision && strcmp(file_precision, here) && precision != NN_F32)
        snprintf(buf, (size_t)size, "note: %s holds %s panels: %d weights rounded to %s at load%s", m->dir,
                 file_precision, m->pack_repacked, here,
                 precision == NN_F16 ? "; `satdifuser pack --precision f16` makes a file that loads without it" : "");
    else
        snprintf(buf, (size_t)size, "note: %s was packed for the %s kernels (%s here): %d weights packed again at load; "
                 "`satdifuser pack` on this machine makes a file that loads without it",
                 m->dir, isa ? isa : "?", gemm_kernel_info()->name, m->pack_repacked);
}

uint64_t model_pack_fingerprint(const char *path) {
    SafeTensors st;
    if (st_open(&st, path)) return 0;
    const char *fp = st_metadata(&st, "pack.source_fingerprint");
    uint64_t h = fp ? strtoull(fp, NULL, 16) : 0;
    st_close(&st);
    return h;
}
