// libFuzzer target: feature cache files (src/io/feature_cache.c) and the
// training dataset that reads them (src/train/dataset.c). st_open only takes a
// path (it mmaps the file), so the input is written to
// /dev/shm/fuzz_fc_<pid>/a.safetensors. Then feature_file_open (metadata
// format / save_timesteps / scales, every feat.<i>.<s> checked),
// feature_file_load of every step and scale, feature_cache_validate; and
// dataset_open + dataset_load_batch with a one-row classification label set
// for image "a" (feature_dims / save_timesteps metadata, feat.0.<s> shapes).
// Build: make fuzz FUZZ_TARGETS=feature_cache
// Run:   build/fuzz/fuzz_feature_cache -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/feature_cache.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/dataset.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/fuzz_fc_%d", (int)getpid());
        mkdir(dir, 0700);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    if (fuzz_write_file(path, data, size)) return 0;

    FeatureFile f;
    if (feature_file_open(&f, path) == 0) {
        if (f.n_steps < 1 || f.n_steps > FEATURE_CACHE_MAX_STEPS || f.n_scales < 1 ||
            f.n_scales > FEATURE_CACHE_MAX_SCALES)
            __builtin_trap();
        for (int i = 0; i < f.n_steps; i++)
            for (int s = 0; s < f.n_scales; s++) {
                if (f.scale_c[s] < 1 || f.scale_h[s] < 1 || f.scale_w[s] < 1) __builtin_trap();
                Tensor t;
                memset(&t, 0, sizeof t);
                if (feature_file_load(&f, i, s, &t) == 0) {
                    volatile float sum = 0.0f;
                    for (int64_t k = 0; k < tensor_numel(&t); k++) sum += t.data[k];
                    (void)sum;
                    tensor_free(&t);
                }
            }
        feature_file_meta(&f, "model");
        feature_file_close(&f);
    }
    FeatureMeta m;
    feature_meta_init(&m);
    feature_meta_set(&m, "model", "x");
    feature_cache_validate(path, &m);
    feature_meta_free(&m);

    LabelRow row;
    memset(&row, 0, sizeof row);
    row.image = (char *)"a";
    row.split = SPLIT_TRAIN;
    LabelSet ls;
    memset(&ls, 0, sizeof ls);
    ls.path = (char *)"labels.csv";
    ls.task = LABELS_CLASSIFICATION;
    ls.count = 1;
    ls.rows = &row;
    ls.num_classes = 1;
    Dataset d;
    if (dataset_open(&d, dir, &ls, 1, 255) == 0) {
        for (int s = 0; s < d.num_scales; s++)
            if (d.C[s] < 1 || d.H[s] < 1 || d.W[s] < 1) __builtin_trap();
        FusionInput in;
        int r = 0;
        dataset_load_batch(&d, &r, 1, &in);
        dataset_close(&d);
    }
    unlink(path);
    return 0;
}
