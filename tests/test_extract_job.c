// The extraction job's library part (src/models/extract_job.c): which images an --input names and
// the feature file each becomes. A temporary folder of known files; the expected lists, orders and
// errors are written here by hand (not taken from a run).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/extract_job.h"
#include "models/pipeline.h"
#include "test_util.h"

static char g_root[256];

static void put(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_root, rel);
    for (char *p = path + strlen(g_root) + 1; *p; p++)  // the folders on the way
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0777);
            *p = '/';
        }
    FILE *f = fopen(path, "wb");
    if (f) fputs(text, f), fclose(f);
}

// A (1, 2, 2) float32 NPY: an image by its content whatever its name.
static void put_npy(const char *rel) {
    char header[128];
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }";
    int n = snprintf(header, sizeof(header), "%s", dict);
    while ((10 + n + 1) % 64) header[n++] = ' ';
    header[n++] = '\n';
    put(rel, "");  // its folders
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_root, rel);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned char len[2] = {(unsigned char)(n & 255), (unsigned char)(n >> 8)};
    fwrite(len, 1, 2, f);
    fwrite(header, 1, (size_t)n, f);
    float v[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    fwrite(v, sizeof(float), 4, f);
    fclose(f);
}

static char *path_of(const char *rel) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", g_root, rel);
    return buf[k];
}

// The names of l joined by spaces.
static const char *names(const ExtractInputs *l) {
    static char buf[2048];
    buf[0] = 0;
    for (int i = 0; i < l->n; i++) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", l->items[i].name);
    }
    return buf;
}

static void test_output_names(void) {
    char out[256];
    struct {
        const char *rel, *want;
    } cases[] = {
        {"a/b/c.png", "a/b/c"},   {"c.tif", "c"},         {"./x/y.npy", "x/y"},   {"../up/z.png", "z"},
        {"/abs/p/q.npy", "q"},    {"a/../b/c.png", "c"},  {"noext", "noext"},     {"d.v2/e", "d.v2/e"},
        {"two.dots.tif", "two.dots"}, {".hidden", ".hidden"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = extract_output_name(cases[i].rel, out, sizeof(out));
        CHECK(rc == 0 && !strcmp(out, cases[i].want), "name of '%s': '%s' (want '%s')", cases[i].rel, out, cases[i].want);
    }
    CHECK(extract_output_name("./", out, sizeof(out)) == -1 && strstr(sd_last_error(), "no file name"),
          "a path without a file name is refused: %s", sd_last_error());
    CHECK(extract_is_image_name("a.PNG") && extract_is_image_name("b.tiff") && extract_is_image_name("c.jpeg") &&
              !extract_is_image_name("d.txt") && !extract_is_image_name("png") && !extract_is_image_name("e.hdf5"),
          "image extensions");
    char t[64];
    CHECK(extract_target_path("OUT", "a/b", t, sizeof(t)) == 0 && !strcmp(t, "OUT/a/b.safetensors"), "target %s", t);
    CHECK(extract_target_path("OUT", "a-very-long-name-that-does-not-fit-in-sixty-four-bytes-at-all", t, sizeof(t)) == -1,
          "a target path too long is an error, not cut");
}

static void test_folder(void) {
    // a folder: every image below it by extension, sorted by name; hidden files and others skipped
    put("dir/b.png", "x");
    put("dir/A.TIF", "x");
    put("dir/sub/c.npy", "x");
    put("dir/sub/deeper/d.jpeg", "x");
    put("dir/notes.txt", "x");
    put("dir/.hidden.png", "x");
    put("dir/.cache/e.png", "x");
    ExtractInputs l = {0};
    int rc = extract_inputs_collect(path_of("dir"), NULL, &l);
    CHECK(rc == 0 && !strcmp(names(&l), "A b sub/c sub/deeper/d"), "folder: rc %d, names '%s' (%s)", rc, names(&l),
          rc ? sd_last_error() : "");
    CHECK(l.n == 4 && !strcmp(l.items[2].path, path_of("dir/sub/c.npy")), "folder: path of sub/c is %s",
          l.n == 4 ? l.items[2].path : "?");
    extract_inputs_free(&l);
    CHECK(l.n == 0 && l.items == NULL, "freed list is empty");

    // two images of one name (c.png and c.tif) are refused, naming both and the file
    put("dup/c.png", "x");
    put("dup/c.tif", "x");
    put("dup/a.npy", "x");
    rc = extract_inputs_collect(path_of("dup"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "dup/c.png and ") && strstr(sd_last_error(), "dup/c.tif would both be written as 'c.safetensors'"),
          "collision: %s", sd_last_error());
    extract_inputs_free(&l);

    // no images at all
    put("empty/readme.txt", "x");
    rc = extract_inputs_collect(path_of("empty"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "no images found"), "empty folder: %s", sd_last_error());
    extract_inputs_free(&l);

    rc = extract_inputs_collect(path_of("no_such"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "no_such") && strstr(sd_last_error(), "No such file"), "missing input: %s",
          sd_last_error());
    extract_inputs_free(&l);
    rc = extract_inputs_collect(path_of("dir"), "default", &l);  // a partition: the folder must be a task's
    CHECK(rc == -1 && strstr(sd_last_error(), "default_partition.json is missing"), "--partition on a plain folder: %s",
          sd_last_error());
    extract_inputs_free(&l);
    rc = extract_inputs_collect(path_of("dir/b.png"), "default", &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "is not a GEO-Bench task folder"), "--partition on a file: %s",
          sd_last_error());
    extract_inputs_free(&l);
}

static void test_list_and_file(void) {
    // a list: '#' comments, blank lines, relative paths from the list's folder, absolute ones
    put_npy("lst/imgs/one.npy");
    put_npy("lst/two.npy");
    char text[1024];
    snprintf(text, sizeof(text), "# images\n\n  imgs/one.npy  \n%s\n\t# indented comment\n", path_of("lst/two.npy"));
    put("lst/list.txt", text);
    ExtractInputs l = {0};
    int rc = extract_inputs_collect(path_of("lst/list.txt"), NULL, &l);
    CHECK(rc == 0 && !strcmp(names(&l), "imgs/one two"), "list: rc %d, names '%s' (%s)", rc, names(&l),
          rc ? sd_last_error() : "");
    CHECK(l.n == 2 && !strcmp(l.items[0].path, path_of("lst/imgs/one.npy")) && !strcmp(l.items[1].path, path_of("lst/two.npy")),
          "list: paths %s, %s", l.n > 0 ? l.items[0].path : "?", l.n > 1 ? l.items[1].path : "?");
    extract_inputs_free(&l);

    // one image, by its content: an NPY named .data keeps its stem as the name
    put_npy("chip.data");
    rc = extract_inputs_collect(path_of("chip.data"), NULL, &l);
    CHECK(rc == 0 && l.n == 1 && !strcmp(l.items[0].name, "chip") && !strcmp(l.items[0].path, path_of("chip.data")),
          "an NPY named .data: rc %d names '%s'", rc, names(&l));
    extract_inputs_free(&l);

    // the prompt embedding's name is reserved
    put_npy(".prompt_embedding.npy");
    rc = extract_inputs_collect(path_of(".prompt_embedding.npy"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "prompt embedding: rename the image"), "reserved name: %s", sd_last_error());
    extract_inputs_free(&l);

    // binary data that is no image
    put("blob.bin", "\x01\x02\x03\x00\xff\xfe binary");
    rc = extract_inputs_collect(path_of("blob.bin"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "neither an image") && strstr(sd_last_error(), "blob.bin"), "binary: %s",
          sd_last_error());
    extract_inputs_free(&l);

    // a text file that is not a list of images: its first line that is no image path, by file and line
    put("lst/README.md", "# Data\n\nSome words about the images.\n```\nimgs/one.npy\n```\n");
    rc = extract_inputs_collect(path_of("lst/README.md"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "lst/README.md:3: 'Some words about the images.' is not an image path") &&
              strstr(sd_last_error(), "no such file"),
          "a README as a list: %s", sd_last_error());
    extract_inputs_free(&l);
    put("lst/folder.txt", "imgs/one.npy\nimgs\n");
    rc = extract_inputs_collect(path_of("lst/folder.txt"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "folder.txt:2: 'imgs' is not an image path") && strstr(sd_last_error(), "a folder"),
          "a folder in a list: %s", sd_last_error());
    extract_inputs_free(&l);
    // an image path that does not exist (yet) is kept: it fails when read, as a folder's broken image;
    // an existing file of another extension is kept: its content decides
    put_npy("lst/chip.dat");
    put("lst/later.txt", "gone/missing.tif\nchip.dat\n");
    rc = extract_inputs_collect(path_of("lst/later.txt"), NULL, &l);
    CHECK(rc == 0 && !strcmp(names(&l), "chip gone/missing"), "a missing image and a .dat image in a list: rc %d '%s' (%s)", rc,
          names(&l), rc ? sd_last_error() : "");
    extract_inputs_free(&l);

    // a list with the same stem twice in one folder (one.npy, one.png): a collision
    put("lst/pair.txt", "imgs/one.npy\nimgs/one.png\n");
    put_npy("lst/imgs/one.png");
    rc = extract_inputs_collect(path_of("lst/pair.txt"), NULL, &l);
    CHECK(rc == -1 && strstr(sd_last_error(), "would both be written as 'imgs/one.safetensors'"), "list collision: %s",
          sd_last_error());
    extract_inputs_free(&l);
}

// A GEO-Bench task folder: every sample of the partition (all splits), <task>/<sample>.hdf5 by name.
static void test_geobench(void) {
    const char *task = "tests/data/geobench/m-tiny-cls";
    ExtractInputs l = {0};
    int rc = extract_inputs_collect(task, NULL, &l);
    CHECK(rc == 0 && !strcmp(names(&l), "s000_m-tiny-cls s001_m-tiny-cls s002_m-tiny-cls s003_m-tiny-cls s004_m-tiny-cls "
                                         "s005_m-tiny-cls s006_m-tiny-cls s007_m-tiny-cls"),
          "task folder, default partition: rc %d, '%s' (%s)", rc, names(&l), rc ? sd_last_error() : "");
    CHECK(l.n == 8 && !strcmp(l.items[7].path, "tests/data/geobench/m-tiny-cls/s007_m-tiny-cls.hdf5"), "sample path %s",
          l.n == 8 ? l.items[7].path : "?");
    extract_inputs_free(&l);
    rc = extract_inputs_collect(task, "0.50x_train", &l);
    CHECK(rc == 0 && !strcmp(names(&l), "s000_m-tiny-cls s001_m-tiny-cls s002_m-tiny-cls s006_m-tiny-cls s007_m-tiny-cls"),
          "task folder, 0.50x_train partition: rc %d, '%s' (%s)", rc, names(&l), rc ? sd_last_error() : "");
    extract_inputs_free(&l);
}

// A two-scale pyramid made by hand: scale 0 is 4 x 4 with layers of 3 and 2 channels, scale 1 is
// 2 x 2 with one of 4; two save steps.
static void make_pyramid(FeaturePyramid *p) {
    memset(p, 0, sizeof(*p));
    p->n_steps = 2;
    p->n_scales = 2;
    p->scale_h[0] = p->scale_w[0] = 4, p->scale_c[0] = 5;
    p->scale_h[1] = p->scale_w[1] = 2, p->scale_c[1] = 4;
    p->n_layers = 3;
    const char *paths[3] = {"up_blocks.1.a", "up_blocks.1.b", "up_blocks.2.c"};
    const int scale[3] = {0, 0, 1}, ch[3] = {3, 2, 4};
    for (int k = 0; k < 3; k++) p->layer_path[k] = strdup(paths[k]), p->layer_scale[k] = scale[k], p->layer_channels[k] = ch[k];
    p->feats = (Tensor *)calloc(4, sizeof(Tensor));
    for (int i = 0; i < 2; i++)
        for (int s = 0; s < 2; s++) {
            Tensor *t = &p->feats[i * 2 + s];
            tensor_alloc(t, 4, (int[4]){1, p->scale_c[s], p->scale_h[s], p->scale_w[s]}, "feat");
            for (int64_t e = 0; e < tensor_numel(t); e++) t->data[e] = (float)(e + 10 * i + 100 * s);
        }
    tensor_alloc(&p->latent, 4, (int[4]){1, 4, 2, 2}, "latent");
    memset(p->latent.data, 0, 16 * sizeof(float));
}

static const char *meta_of(const FeatureMeta *m, const char *key) {
    const char *v = feature_meta_get(m, key);
    return v ? v : "(absent)";
}

// The settings both tests use: prompt "fields", 20 steps saving indices 17 and 15 (t 101, 201),
// output by config, a sampled latent (seed 7), layers attn1 and conv2.
static void job_settings(ExtractOptions *o, DdimWalk *walk) {
    extract_options_default(o);
    o->prompt = "fields";
    o->walk.num_inference_steps = 20;
    o->walk.n_save = 2, o->walk.save_index[0] = 17, o->walk.save_index[1] = 15;
    o->walk.output_handling = DDIM_OUTPUT_BY_CONFIG;
    o->latent_sample = 1, o->seed = 7;
    o->n_suffixes = 2, o->suffixes[0] = "attn1", o->suffixes[1] = "conv2";
    memset(walk, 0, sizeof(*walk));
    walk->save_t[0] = 101, walk->save_t[1] = 201;
}

// The job's settings as metadata, a file written with them, and a rerun's check of it.
static void test_job_meta_and_write(void) {
    ExtractOptions o;
    DdimWalk walk;
    job_settings(&o, &walk);
    const char *model = "tests/data/tiny_pipeline";
    ExtractJob job = {.model = model, .o = &o, .walk = &walk, .f16 = 1, .precision = NN_F32,
                      .preprocessing = "{\"size\": 32}", .tool_version = "9.9.9"};
    FeatureMeta expect;
    feature_meta_init(&expect);
    int rc = extract_job_meta(&job, &expect);
    char fp[32];
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)diffusion_model_fingerprint(model, NULL));
    CHECK(rc == 0 && expect.count == 11, "job meta: rc %d, %d keys (want 11: no compute_precision for f32)", rc, expect.count);
    struct {
        const char *key, *want;
    } want[] = {{"model_fingerprint", fp},        {"prompt", "fields"},          {"num_inference_steps", "20"},
                {"save_timesteps", "[17, 15]"},   {"save_t", "[101, 201]"},      {"layer_suffixes", "[\"attn1\", \"conv2\"]"},
                {"latent", "sample:7"},           {"dtype", "f16"},              {"convention", "satdifuser"},
                {"output_handling", "config"},    {"preprocessing", "{\"size\": 32}"}, {"compute_precision", "(absent)"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        CHECK(!strcmp(meta_of(&expect, want[i].key), want[i].want), "job meta %s = '%s' (want '%s')", want[i].key,
              meta_of(&expect, want[i].key), want[i].want);
    FeatureMeta bf;
    feature_meta_init(&bf);
    job.precision = NN_BF16, job.f16 = 0, o.latent_sample = 0;
    rc = extract_job_meta(&job, &bf);
    CHECK(rc == 0 && !strcmp(meta_of(&bf, "compute_precision"), "bf16") && !strcmp(meta_of(&bf, "dtype"), "f32") &&
              !strcmp(meta_of(&bf, "latent"), "mean"),
          "bf16 job: compute_precision %s dtype %s latent %s", meta_of(&bf, "compute_precision"), meta_of(&bf, "dtype"),
          meta_of(&bf, "latent"));
    feature_meta_free(&bf);
    job.precision = NN_F16;  // f16 resident weights
    feature_meta_init(&bf);
    rc = extract_job_meta(&job, &bf);
    CHECK(rc == 0 && !strcmp(meta_of(&bf, "compute_precision"), "f16"), "f16 job: compute_precision %s",
          meta_of(&bf, "compute_precision"));
    feature_meta_free(&bf);
    job.precision = NN_F32, job.f16 = 1, o.latent_sample = 1;

    // the per-file keys of a hand-made pyramid
    FeaturePyramid p;
    make_pyramid(&p);
    ExtractSource src = {.path = "imgs/a.npy", .channels = 13, .height = 30, .width = 40, .bands = {4, 3, 2},
                         .scaling = "{\"mode\": \"clip\"}"};
    FeatureMeta fm;
    feature_meta_init(&fm);
    rc = extract_file_meta(&p, &src, "9.9.9", &fm);
    CHECK(rc == 0 && !strcmp(meta_of(&fm, "feature_dims"), "{\"4\": [3, 2], \"2\": [4]}") &&
              !strcmp(meta_of(&fm, "scales"), "[[4, 4], [2, 2]]") &&
              !strcmp(meta_of(&fm, "layers"), "[\"up_blocks.1.a\", \"up_blocks.1.b\", \"up_blocks.2.c\"]") &&
              !strcmp(meta_of(&fm, "source_shape"), "[13, 30, 40]") && !strcmp(meta_of(&fm, "bands_used"), "[4, 3, 2]") &&
              !strcmp(meta_of(&fm, "source"), "imgs/a.npy") && !strcmp(meta_of(&fm, "tool_version"), "9.9.9"),
          "file meta: dims %s scales %s layers %s shape %s bands %s", meta_of(&fm, "feature_dims"), meta_of(&fm, "scales"),
          meta_of(&fm, "layers"), meta_of(&fm, "source_shape"), meta_of(&fm, "bands_used"));
    feature_meta_free(&fm);

    // written, it validates against the job's settings and not against another prompt's
    char target[512];
    snprintf(target, sizeof(target), "%s", path_of("feats/sub/a.safetensors"));
    mkdir(path_of("feats"), 0777), mkdir(path_of("feats/sub"), 0777);
    rc = extract_write_features(target, &p, &job, &expect, &src);
    CHECK(rc == 0, "write: %s", rc ? sd_last_error() : "");
    CHECK(feature_cache_validate(target, &expect) == 0, "the file validates with the job's settings: %s", sd_last_error());
    SafeTensors st;
    if (st_open(&st, target) == 0) {
        const char *m = st_metadata(&st, "model"), *sc = st_metadata(&st, "scaling"), *pr = st_metadata(&st, "prompt");
        CHECK(m && !strcmp(m, model) && sc && !strcmp(sc, "{\"mode\": \"clip\"}") && pr && !strcmp(pr, "fields") &&
                  st_find(&st, "feat.1.1") && st_find(&st, "latent"),
              "written metadata: model %s scaling %s prompt %s", m ? m : "-", sc ? sc : "-", pr ? pr : "-");
        st_close(&st);
    } else {
        CHECK(0, "written file opens: %s", sd_last_error());
    }
    FeatureMeta other;
    feature_meta_init(&other);
    o.prompt = "roads";
    extract_job_meta(&job, &other);
    CHECK(feature_cache_validate(target, &other) == -1 && strstr(sd_last_error(), "prompt"),
          "another prompt's job refuses the file: %s", sd_last_error());
    o.prompt = "fields";
    feature_meta_free(&other);
    feature_meta_free(&expect);
    feature_pyramid_free(&p);
}

static int exists(const char *rel) {
    struct stat sb;
    return stat(path_of(rel), &sb) == 0;
}

// Resume: the state of each target of a folder holding one whole file of the job (feats/sub/a, written
// by test_job_meta_and_write), a broken one, a killed writer's temporary file and a live writer's.
static void test_resume(void) {
    ExtractOptions o;
    DdimWalk walk;
    job_settings(&o, &walk);
    ExtractJob job = {.model = "tests/data/tiny_pipeline", .o = &o, .walk = &walk, .f16 = 1,
                      .preprocessing = "{\"size\": 32}", .tool_version = "9.9.9"};
    FeatureMeta expect;
    feature_meta_init(&expect);
    extract_job_meta(&job, &expect);

    pid_t child = fork();  // a pid that has ended: a killed writer's
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char rel[128], temp[512];
    snprintf(rel, sizeof(rel), "feats/dead.safetensors.tmp.%d", (int)child);
    put(rel, "half");
    snprintf(rel, sizeof(rel), "feats/live.safetensors.tmp.%d", (int)getppid());  // our parent runs
    put(rel, "half");
    put("feats/broken.safetensors", "not a safetensors file");

    int alive = -1;
    ExtractFileState st = extract_file_state(path_of("feats/sub/a.safetensors"), &expect, temp, sizeof(temp), &alive);
    CHECK(st == EXTRACT_FILE_DONE, "a whole file of the job: state %d (%s)", (int)st, sd_last_error());
    st = extract_file_state(path_of("feats/missing.safetensors"), &expect, temp, sizeof(temp), &alive);
    CHECK(st == EXTRACT_FILE_MISSING, "nothing there: state %d", (int)st);
    st = extract_file_state(path_of("feats/broken.safetensors"), &expect, temp, sizeof(temp), &alive);
    CHECK(st == EXTRACT_FILE_OTHER && strstr(sd_last_error(), "broken.safetensors"), "a broken file: state %d, %s", (int)st,
          sd_last_error());
    st = extract_file_state(path_of("feats/dead.safetensors"), &expect, temp, sizeof(temp), &alive);
    snprintf(rel, sizeof(rel), "dead.safetensors.tmp.%d", (int)child);
    CHECK(st == EXTRACT_FILE_PARTIAL && alive == 0 && strstr(temp, rel), "a killed writer's: state %d alive %d temp %s",
          (int)st, alive, temp);
    st = extract_file_state(path_of("feats/live.safetensors"), &expect, temp, sizeof(temp), &alive);
    CHECK(st == EXTRACT_FILE_PARTIAL && alive == 1, "a live writer's: state %d alive %d", (int)st, alive);
    st = extract_file_state(path_of("feats/dead.safetensors"), &expect, NULL, 0, NULL);
    CHECK(st == EXTRACT_FILE_MISSING, "temporary files not looked for: state %d", (int)st);
    o.walk.num_inference_steps = 50;  // another job: the whole file is made otherwise
    FeatureMeta other;
    feature_meta_init(&other);
    extract_job_meta(&job, &other);
    st = extract_file_state(path_of("feats/sub/a.safetensors"), &other, NULL, 0, NULL);
    CHECK(st == EXTRACT_FILE_OTHER && strstr(sd_last_error(), "num_inference_steps"), "another job's settings: state %d, %s",
          (int)st, sd_last_error());
    feature_meta_free(&other);
    feature_meta_free(&expect);

    // before writing: the killed writer's temporary file goes, the live writer's stays
    CHECK(extract_prepare_target(path_of("feats/dead.safetensors")) == 0, "prepare: %s", sd_last_error());
    snprintf(rel, sizeof(rel), "feats/dead.safetensors.tmp.%d", (int)child);
    CHECK(!exists(rel), "a killed writer's temporary file is removed");
    CHECK(extract_prepare_target(path_of("feats/live.safetensors")) == 0, "prepare live: %s", sd_last_error());
    snprintf(rel, sizeof(rel), "feats/live.safetensors.tmp.%d", (int)getppid());
    CHECK(exists(rel), "a live writer's temporary file is kept");
    CHECK(extract_prepare_target(path_of("feats/new/deep/x.safetensors")) == 0 && exists("feats/new/deep"),
          "prepare creates the target's folders: %s", sd_last_error());
    CHECK(extract_mkdirs(path_of("feats/broken.safetensors/sub")) == -1 && strstr(sd_last_error(), "cannot create folder"),
          "a file in the way of a folder: %s", sd_last_error());
}

int main(void) {
    snprintf(g_root, sizeof(g_root), "/tmp/satdifuser_test_extract_job.%d", (int)getpid());
    mkdir(g_root, 0777);
    test_output_names();
    test_folder();
    test_list_and_file();
    test_geobench();
    test_job_meta_and_write();
    test_resume();
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_root);
    return test_report("test_extract_job");
}
