// The extraction job's library part (src/models/extract_job.c): which images an --input names and
// the feature file each becomes. A temporary folder of known files; the expected lists, orders and
// errors are written here by hand (not taken from a run).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "models/extract_job.h"
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

int main(void) {
    snprintf(g_root, sizeof(g_root), "/tmp/satdifuser_test_extract_job.%d", (int)getpid());
    mkdir(g_root, 0777);
    test_output_names();
    test_folder();
    test_list_and_file();
    test_geobench();
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_root);
    return test_report("test_extract_job");
}
