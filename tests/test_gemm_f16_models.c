// f16 resident weights in the models (nn_set_precision(NN_F16)): the bundled tiny pipeline's
// features with the linear and conv weights kept as f16 must be the bits of the f32 path run on
// a copy of the pipeline whose linear and conv weights were rounded to f16 (and nothing else:
// embeddings, norms and biases stay as they are). The tiny UNet is stored in F16 already, so
// the test first makes folder A: every weight in F32, the packed ones moved off the f16 grid
// (w * (1 + 2^-13 r), r in [-1, 1)); then folder B: A with those weights rounded to f16.
//   f16 on A == f32 on B, bit for bit, and != f32 on A (the rounding happened);
//   the packed model file of A written at f16 (model_pack_write) gives the same bits, mapped in
//   place; the f32 packed file of A loaded at f16 is converted at load (the same bits again);
//   the f16 file loaded at f32 is an error naming the precision.
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/half.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/features.h"
#include "models/nn.h"
#include "models/pack.h"
#include "tests/test_util.h"

static const char *const kSrc = "tests/data/tiny_pipeline";
static const char *const kWeights[3] = {"unet/diffusion_pytorch_model.safetensors",
                                        "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"};
static const char *const kText[8] = {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                                     "vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json",
                                     "tokenizer/merges.txt", "tokenizer/special_tokens_map.json"};

static int copy_file(const char *from, const char *to) {
    uint8_t *data;
    size_t len;
    if (read_whole_file(from, &data, &len, (size_t)64 << 20)) return -1;
    FILE *f = fopen(to, "wb");
    int rc = f && fwrite(data, 1, len, f) == len ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    free(data);
    return rc;
}

// Is `name` a weight the models pack (a linear or conv weight)? Asked of a model loaded in f32:
// its packed names are "<name>.packed" (".packed.0" / ".1" for a GEGLU's halves).
static int is_packed(const NnWeights *w, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < w->n_packed; i++)
        if (!strncmp(w->packed_names[i], name, n) && !strncmp(w->packed_names[i] + n, ".packed", 7)) return 1;
    return 0;
}

// The tiny pipeline into dir with every tensor F32; packed weights perturbed (A) and, when
// `round` is set, also rounded to f16 (B). Returns -1 on failure.
static int make_folder(const char *dir, const DiffusionModel *ref, int round) {
    char path[512], from[512];
    static const char *const subdirs[] = {"", "/scheduler", "/unet", "/vae", "/text_encoder", "/tokenizer"};
    for (size_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s%s", dir, subdirs[i]);
        if (mkdir(path, 0755) && errno != EEXIST) return sd_errorf("mkdir %s", path);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(from, sizeof from, "%s/%s", kSrc, kText[i]);
        snprintf(path, sizeof path, "%s/%s", dir, kText[i]);
        if (copy_file(from, path)) return -1;
    }
    const NnWeights *ws[3] = {&ref->unet.weights, &ref->vae.weights, &ref->text.weights};
    for (int f = 0; f < 3; f++) {
        SafeTensors st;
        snprintf(from, sizeof from, "%s/%s", kSrc, kWeights[f]);
        if (st_open(&st, from)) return -1;
        StWriteEntry *e = calloc((size_t)st.count, sizeof *e);
        Tensor *t = calloc((size_t)st.count, sizeof *t);
        int rc = 0, changed = 0;
        for (int i = 0; i < st.count && !rc; i++) {
            rc = st_load(&st, st.entries[i].name, 0, NULL, &t[i]);
            if (rc) break;
            if (!t[i].owns_data) {  // an owned copy: we change it
                Tensor c;
                rc = tensor_alloc(&c, t[i].ndim, t[i].shape, "copy");
                if (rc) break;
                memcpy(c.data, t[i].data, (size_t)tensor_numel(&c) * sizeof(float));
                t[i] = c;
            }
            if (is_packed(ws[f], st.entries[i].name)) {
                unsigned long long s = 1000 + (unsigned long long)i;
                for (int64_t k = 0; k < tensor_numel(&t[i]); k++) {
                    float v = t[i].data[k] * (1.0f + test_rand(&s) / 8192.0f);
                    t[i].data[k] = round ? f32_from_f16(f16_from_f32(v)) : v;
                }
                changed++;
            }
            e[i] = st_entry_f32(st.entries[i].name, &t[i]);
        }
        snprintf(path, sizeof path, "%s/%s", dir, kWeights[f]);
        if (!rc) rc = st_write(path, e, st.count, NULL, NULL, 0);
        if (!rc && changed == 0) rc = sd_errorf("%s: no packed weight found", kWeights[f]);
        for (int i = 0; i < st.count; i++) tensor_free(&t[i]);
        free(t);
        free(e);
        st_close(&st);
        if (rc) return -1;
    }
    return 0;
}

static int extract(const char *dir, int precision, const Tensor *image, FeaturePyramid *p, int *repacked) {
    if (nn_set_precision(precision)) return -1;
    DiffusionModel m;
    int rc = diffusion_model_load(&m, dir, NULL, 0, NULL);
    nn_set_precision(NN_F32);
    if (rc) return -1;
    if (repacked) *repacked = m.pack_repacked;
    ExtractOptions o;
    extract_options_default(&o);
    rc = features_extract(&m, &o, image, p);
    diffusion_model_free(&m);
    return rc;
}

// 1 if every feature map has the same bits; *rel: the largest relative rms difference.
static int same_features(const FeaturePyramid *a, const FeaturePyramid *b, double *rel) {
    int same = a->n_steps == b->n_steps && a->n_scales == b->n_scales;
    *rel = 0;
    for (int i = 0; same && i < a->n_steps * a->n_scales; i++) {
        int64_t n = tensor_numel(&a->feats[i]);
        if (n != tensor_numel(&b->feats[i])) return 0;
        same &= memcmp(a->feats[i].data, b->feats[i].data, (size_t)n * sizeof(float)) == 0;
        double d2 = 0, r2 = 0;
        for (int64_t k = 0; k < n; k++) {
            double d = (double)a->feats[i].data[k] - b->feats[i].data[k];
            d2 += d * d;
            r2 += (double)b->feats[i].data[k] * b->feats[i].data[k];
        }
        if (r2 > 0 && sqrt(d2 / r2) > *rel) *rel = sqrt(d2 / r2);
    }
    return same;
}

int main(void) {
    char tmp[] = "/tmp/test_gemm_f16_models.XXXXXX", dir_a[600], dir_b[600], pack16[600], pack32[600];
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return test_report("test_gemm_f16_models");
    }
    snprintf(dir_a, sizeof dir_a, "%s/a", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/b", tmp);
    snprintf(pack16, sizeof pack16, "%s/a_f16.sdpack", tmp);
    snprintf(pack32, sizeof pack32, "%s/a_f32.sdpack", tmp);
    // which weights are packed: the names a model loaded in f32 packs
    DiffusionModel ref;
    CHECK(nn_set_precision(NN_F32) == 0 && diffusion_model_load(&ref, kSrc, NULL, 0, NULL) == 0, "load: %s",
          sd_last_error());
    CHECK(make_folder(dir_a, &ref, 0) == 0, "folder A: %s", sd_last_error());
    CHECK(make_folder(dir_b, &ref, 1) == 0, "folder B: %s", sd_last_error());
    diffusion_model_free(&ref);

    const int H = 64, W = 64;
    Tensor image;
    CHECK(tensor_alloc(&image, 4, (int[4]){1, 3, H, W}, "image") == 0, "alloc");
    test_fill(image.data, 3 * H * W, 5);
    FeaturePyramid f16_a, f32_b, f32_a, p16, p32;
    int rc = extract(dir_a, NN_F16, &image, &f16_a, NULL);
    CHECK(rc == 0, "f16 on A: %s", sd_last_error());
    CHECK(extract(dir_b, NN_F32, &image, &f32_b, NULL) == 0, "f32 on B: %s", sd_last_error());
    CHECK(extract(dir_a, NN_F32, &image, &f32_a, NULL) == 0, "f32 on A: %s", sd_last_error());
    double rel;
    CHECK(same_features(&f16_a, &f32_b, &rel), "f16 weights are not the bits of f32 on the rounded weights (rel %.2e)",
          rel);
    int same = same_features(&f16_a, &f32_a, &rel);
    printf("f16 weights vs f32 (tiny pipeline, 12 maps): largest relative rms difference %.2e\n", rel);
    CHECK(!same && rel < 5e-3, "f16 vs f32 on A: the rounding must show, and stay small (%.2e)", rel);

    // the packed model file at f16: panels F16, mapped in place, the same bits (packed files are for
    // little-endian hosts: refused on big-endian ones, models/pack.c)
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        printf("SKIP packed model files: this host is big-endian\n");
        goto done;
    }
    CHECK(nn_set_precision(NN_F16) == 0 && model_pack_write(dir_a, NULL, pack16, NULL, 0) == 0, "pack f16: %s",
          sd_last_error());
    CHECK(nn_set_precision(NN_F32) == 0 && model_pack_write(dir_a, NULL, pack32, NULL, 0) == 0, "pack f32: %s",
          sd_last_error());
    struct stat s16, s32;
    CHECK(stat(pack16, &s16) == 0 && stat(pack32, &s32) == 0 && s16.st_size < s32.st_size * 0.75,
          "the f16 file is smaller (%lld vs %lld bytes)", (long long)s16.st_size, (long long)s32.st_size);
    SafeTensors st;
    if (st_open(&st, pack16) == 0) {
        const char *pr = st_metadata(&st, "pack.precision");
        CHECK(pr && !strcmp(pr, "f16"), "pack.precision f16 (%s)", pr ? pr : "absent");
        int n16 = 0;
        for (int i = 0; i < st.count; i++) n16 += st.entries[i].dtype == DT_F16;
        CHECK(n16 > 20, "F16 panels in the file (%d)", n16);
        st_close(&st);
    }
    int repacked = -1;
    CHECK(extract(pack16, NN_F16, &image, &p16, &repacked) == 0, "f16 pack at f16: %s", sd_last_error());
    CHECK(repacked == 0, "the f16 panels are used in place (%d repacked)", repacked);
    CHECK(same_features(&p16, &f16_a, &rel), "f16 pack: not the folder's f16 bits (rel %.2e)", rel);
    CHECK(extract(pack32, NN_F16, &image, &p32, &repacked) == 0, "f32 pack at f16: %s", sd_last_error());
    CHECK(repacked > 0, "the f32 panels are converted at load (%d)", repacked);
    CHECK(same_features(&p32, &f16_a, &rel), "f32 pack at f16: not the folder's f16 bits (rel %.2e)", rel);
    FeaturePyramid bad;
    CHECK(extract(pack16, NN_F32, &image, &bad, NULL) != 0 && strstr(sd_last_error(), "--precision f16"),
          "an f16 pack at f32 must be refused naming --precision f16 (%s)", sd_last_error());
    feature_pyramid_free(&p16);
    feature_pyramid_free(&p32);
done:
    feature_pyramid_free(&f16_a);
    feature_pyramid_free(&f32_b);
    feature_pyramid_free(&f32_a);
    tensor_free(&image);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return test_report("test_gemm_f16_models");
}
