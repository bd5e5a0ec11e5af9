// Feature cache files: write (f32 and f16), read back, validation of
// settings, truncated files and missing tensors.
#include "tests/test_util.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/feature_cache.h"
#include "io/npy.h"
#include "train/dataset.h"

static void make_meta(FeatureMeta *m, const char *prompt) {
    feature_meta_init(m);
    feature_meta_set(m, "prompt", prompt);
    feature_meta_set(m, "save_timesteps", "[47, 45]");
    feature_meta_set(m, "scales", "[[4, 4], [2, 3]]");
    feature_meta_set(m, "feature_dims", "{\"4\": [3], \"3\": [2]}");
}

// dataset_open (src/train/dataset.c) on files found while writing fuzz_feature_cache.
static void test_dataset_regressions(void) {
    char dir[256], path[512];
    snprintf(dir, sizeof(dir), "/tmp/satdifuser_test_ds_%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/a.safetensors", dir);
    float dummy[12] = {0};
    const char *keys[2] = {"feature_dims", "save_timesteps"}, *values[2] = {"{\"4\": [3]}", "[47]"};
    LabelRow row;
    memset(&row, 0, sizeof(row));
    row.image = (char *)"a";
    LabelSet ls;
    memset(&ls, 0, sizeof(ls));
    ls.path = (char *)"labels.csv";
    ls.count = 1;
    ls.rows = &row;
    ls.num_classes = 1;
    Dataset d;
    // feat.0.0 of shape (3, 0, 4): no data, so any channel count passes the file's checks
    // ((int)4294967299 == 3 matched feature_dims); the 0 height gave empty feature batches.
    StWriteEntry e = {.name = "feat.0.0", .dtype = DT_F32, .ndim = 3, .shape = {3, 0, 4}, .data = dummy};
    CHECK(st_write(path, &e, 1, keys, values, 2) == 0, "write (3, 0, 4): %s", sd_last_error());
    int rc = dataset_open(&d, dir, &ls, 1, 255);
    CHECK(rc != 0 && strstr(sd_last_error(), "'feat.0.0' has dimension 1 of size 0") && strstr(sd_last_error(), path),
          "0-height features: %s", rc ? sd_last_error() : "accepted");
    if (rc == 0) dataset_close(&d);
    // A 0x5 NPY segmentation mask: every target of the run would have been empty.
    e = (StWriteEntry){.name = "feat.0.0", .dtype = DT_F32, .ndim = 3, .shape = {3, 1, 4}, .data = dummy};
    CHECK(st_write(path, &e, 1, keys, values, 2) == 0, "write (3, 1, 4): %s", sd_last_error());
    char mask[512];
    snprintf(mask, sizeof(mask), "%s/m.npy", dir);
    int64_t shape[2] = {0, 5};
    CHECK(npy_write(mask, NPY_UINT8, 2, shape, dummy) == 0, "write 0x5 mask: %s", sd_last_error());
    row.mask_path = mask;
    ls.task = LABELS_SEGMENTATION;
    rc = dataset_open(&d, dir, &ls, 1, 255);
    CHECK(rc != 0 && strstr(sd_last_error(), "m.npy: a mask must be a 2-D (H, W) array of sizes 1..2^31-1"),
          "empty mask: %s", rc ? sd_last_error() : "accepted");
    if (rc == 0) dataset_close(&d);
    remove(mask);
    remove(path);
    rmdir(dir);
}

int main(void) {
    char path[256];
    snprintf(path, sizeof(path), "/tmp/satdifuser_test_fc_%d.safetensors", (int)getpid());
    // 2 steps x 2 scales: (1,3,4,4) and (1,2,2,3)
    Tensor feats[4], latent;
    int s0[4] = {1, 3, 4, 4}, s1[4] = {1, 2, 2, 3}, sl[4] = {1, 4, 1, 1};
    for (int i = 0; i < 4; i++) {
        tensor_alloc(&feats[i], 4, i % 2 ? s1 : s0, "feat");
        test_fill(feats[i].data, tensor_numel(&feats[i]), 10 + i);
    }
    tensor_alloc(&latent, 4, sl, "latent");
    test_fill(latent.data, 4, 99);
    FeatureMeta meta;
    make_meta(&meta, "A satellite image");
    CHECK(feature_meta_get(&meta, "prompt") && !strcmp(feature_meta_get(&meta, "prompt"), "A satellite image"), "meta get");
    feature_meta_setf(&meta, "prompt", "%s", "A satellite image");  // replace keeps one entry
    CHECK(meta.count == 4, "meta replace: %d entries", meta.count);

    CHECK(feature_cache_write(path, feats, 2, 2, &latent, 0, &meta) == 0, "write: %s", sd_last_error());
    CHECK(feature_cache_validate(path, &meta) == 0, "validate: %s", sd_last_error());
    FeatureFile f;
    CHECK(feature_file_open(&f, path) == 0, "open: %s", sd_last_error());
    CHECK(f.n_steps == 2 && f.n_scales == 2 && f.save_steps[1] == 45 && f.scale_c[0] == 3 && f.scale_c[1] == 2 &&
              f.scale_h[1] == 2 && f.scale_w[1] == 3,
          "layout");
    Tensor t;
    CHECK(feature_file_load(&f, 1, 1, &t) == 0 && max_abs_diff(t.data, feats[3].data, 12) == 0.0, "f32 round trip");
    tensor_free(&t);
    CHECK(feature_file_load(&f, 2, 0, &t) == -1, "step out of range");
    CHECK(!strcmp(feature_file_meta(&f, "format"), FEATURE_CACHE_FORMAT), "format key");
    feature_file_close(&f);

    // Other settings: named in the message.
    FeatureMeta other;
    make_meta(&other, "another prompt");
    CHECK(feature_cache_validate(path, &other) == -1 && strstr(sd_last_error(), "prompt") && strstr(sd_last_error(), path),
          "settings mismatch: %s", sd_last_error());
    feature_meta_free(&other);

    // f16 storage reads back within f16 precision.
    CHECK(feature_cache_write(path, feats, 2, 2, &latent, 1, &meta) == 0, "write f16");
    CHECK(feature_file_open(&f, path) == 0 && feature_file_load(&f, 0, 0, &t) == 0, "open f16");
    CHECK(max_abs_diff(t.data, feats[0].data, 48) < 1e-3, "f16 round trip %g", max_abs_diff(t.data, feats[0].data, 48));
    tensor_free(&t);
    feature_file_close(&f);

    // A truncated file is rejected with its name.
    FILE *fp = fopen(path, "r+b");
    if (fp) {
        CHECK(ftruncate(fileno(fp), 200) == 0, "truncate");
        fclose(fp);
    }
    CHECK(feature_cache_validate(path, &meta) == -1 && strstr(sd_last_error(), path), "truncated: %s", sd_last_error());

    // A file missing a tensor of its own layout.
    CHECK(feature_cache_write(path, feats, 1, 2, NULL, 0, &meta) == 0, "write 1 step");
    CHECK(feature_cache_validate(path, &meta) == -1 && strstr(sd_last_error(), "feat.1.0"), "missing tensor: %s",
          sd_last_error());
    // Metadata sizes outside int: (int)4294967300 == 4 used to match the 4-row tensors.
    FeatureMeta wrap;
    make_meta(&wrap, "A satellite image");
    feature_meta_set(&wrap, "scales", "[[4294967300, 4], [2, 3]]");
    CHECK(feature_cache_write(path, feats, 2, 2, NULL, 0, &wrap) == 0, "write wrapped scales");
    CHECK(feature_file_open(&f, path) == -1 && strstr(sd_last_error(), "scales[0]") && strstr(sd_last_error(), path),
          "scales outside int: %s", sd_last_error());
    feature_meta_set(&wrap, "scales", "[[4, 4], [2, 3]]");
    feature_meta_set(&wrap, "save_timesteps", "[47, 4294967341]");
    CHECK(feature_cache_write(path, feats, 2, 2, NULL, 0, &wrap) == 0, "write wrapped steps");
    CHECK(feature_file_open(&f, path) == -1 && strstr(sd_last_error(), "save_timesteps[1]"), "step outside int: %s",
          sd_last_error());
    feature_meta_free(&wrap);
    // Not a feature file at all.
    StWriteEntry e = st_entry_f32("x", &latent);
    st_write(path, &e, 1, NULL, NULL, 0);
    CHECK(feature_file_open(&f, path) == -1 && strstr(sd_last_error(), "not a satdifuser feature file"), "foreign: %s",
          sd_last_error());
    remove(path);
    feature_meta_free(&meta);
    for (int i = 0; i < 4; i++) tensor_free(&feats[i]);
    tensor_free(&latent);
    test_dataset_regressions();
    return test_report("test_feature_cache");
}
