// The golden runner itself: comparisons within/out of tolerance, shape
// mismatches, missing tensors, NaN, malformed cases, unknown modules.
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "golden/golden.h"
#include "tests/test_util.h"

static char g_dir[256];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_check(void) {
    float want[4] = {1.0f, -2.0f, 0.0f, NAN};
    StWriteEntry e;
    memset(&e, 0, sizeof(e));
    e.name = "output.x"; e.dtype = DT_F32; e.ndim = 2; e.shape[0] = 2; e.shape[1] = 2; e.data = want;
    char path[512];
    snprintf(path, sizeof(path), "%s/t.safetensors", g_dir);
    CHECK(st_write(path, &e, 1, NULL, NULL, 0) == 0, "write");
    GoldenCase gc;
    memset(&gc, 0, sizeof(gc));
    gc.dir = g_dir;
    gc.rtol = 1e-3;
    gc.atol = 1e-5;
    CHECK(st_open(&gc.tensors, path) == 0, "open");
    gc.checked = (unsigned char *)calloc(1, 1);
    int shape[2] = {2, 2};
    float close_[4] = {1.0005f, -2.001f, 5e-6f, NAN};
    CHECK(golden_check(&gc, "output.x", close_, 2, shape) == 0, "within atol + rtol|want|");
    float far[4] = {1.0f, -2.0f, 2e-5f, NAN};
    CHECK(golden_check(&gc, "output.x", far, 2, shape) != 0, "2e-5 against 0 with atol 1e-5 fails");
    float nan_got[4] = {NAN, -2.0f, 0.0f, NAN};
    CHECK(golden_check(&gc, "output.x", nan_got, 2, shape) != 0, "NaN where a number is expected fails");
    float nonnan[4] = {1.0f, -2.0f, 0.0f, 0.0f};
    CHECK(golden_check(&gc, "output.x", nonnan, 2, shape) != 0, "a number where NaN is expected fails");
    int shape2[2] = {4, 1};
    CHECK(golden_check(&gc, "output.x", close_, 2, shape2) != 0, "shape mismatch fails");
    CHECK(golden_check(&gc, "output.y", close_, 2, shape) != 0, "missing tensor fails");
    CHECK(gc.n_failed == 5 && gc.n_checked == 6, "counts %d failed of %d", gc.n_failed, gc.n_checked);
    free(gc.checked);
    st_close(&gc.tensors);
}

static void test_cases(void) {
    char d[512], p[600];
    // 1: unknown module -> not implemented
    snprintf(d, sizeof(d), "%s/cases/a_unknown", g_dir);
    mkdir(d, 0755);
    snprintf(p, sizeof(p), "%s/case.json", d);
    write_text(p, "{\"module\": \"no_such_module\", \"config\": {}, \"rtol\": 1e-4, \"atol\": 1e-4}");
    // 2: malformed case.json -> failure
    snprintf(d, sizeof(d), "%s/cases/b_badjson", g_dir);
    mkdir(d, 0755);
    snprintf(p, sizeof(p), "%s/case.json", d);
    write_text(p, "{\"module\": \"unet\", ");
    // 3: no module name -> failure
    snprintf(d, sizeof(d), "%s/cases/nested/c_nomodule", g_dir);
    mkdir(d, 0755);
    snprintf(p, sizeof(p), "%s/case.json", d);
    write_text(p, "{\"config\": {}}");
    snprintf(d, sizeof(d), "%s/cases", g_dir);
    const char *dirs[1] = {d};
    GoldenSummary sum;
    CHECK(golden_run_dirs(dirs, 1, 0, NULL, &sum) == 0, "runner ran");
    CHECK(sum.not_implemented == 1 && sum.failed == 2 && sum.passed == 0, "1 not implemented, 2 failed: got %d/%d/%d",
          sum.not_implemented, sum.failed, sum.passed);
    CHECK(golden_run_dirs(dirs, 1, 0, "a_unknown", &sum) == 0 && sum.not_implemented == 1 && sum.failed == 0, "--only filter");
    const char *missing[1] = {"/nonexistent/golden"};
    CHECK(golden_run_dirs(missing, 1, 0, NULL, &sum) != 0, "a missing folder is an error");
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/sd_test_golden_%d", (int)getpid());
    mkdir(g_dir, 0755);
    char d[512];
    snprintf(d, sizeof(d), "%s/cases", g_dir);
    mkdir(d, 0755);
    snprintf(d, sizeof(d), "%s/cases/nested", g_dir);
    mkdir(d, 0755);
    test_check();
    test_cases();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return test_report("test_golden_runner");
}
