// Labels CSV: the three tasks, masks from PNG and NPY, and bad files.
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/labels.h"
#include "io/npy.h"
#include "io/png.h"
#include "tests/test_util.h"

static char g_dir[256];

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_classification(void) {
    LabelSet ls;
    const char *p = write_file("cls.csv", "# classes: a, b ,c\nimage,split,label\nx1,train,2\nx2,val,0\n\nx3,test,1\n");
    CHECK(labels_load(p, LABELS_CLASSIFICATION, &ls) == 0, "load: %s", sd_last_error());
    CHECK(ls.count == 3 && ls.num_classes == 3 && ls.rows[0].label == 2 && ls.rows[2].split == SPLIT_TEST, "rows");
    CHECK(ls.class_names && !strcmp(ls.class_names[1], "b"), "names trimmed");
    int idx[3];
    CHECK(labels_split(&ls, SPLIT_VAL, idx) == 1 && idx[0] == 1, "val split");
    labels_free(&ls);
    p = write_file("nonames.csv", "x1,train,4\nx2,train,1\n");
    CHECK(labels_load(p, LABELS_CLASSIFICATION, &ls) == 0 && ls.num_classes == 5, "classes from the largest index");
    CHECK(labels_check_classes(&ls) == 0, "indices within the classes: %s", sd_last_error());
    ls.num_classes = 3;  // as train --num-classes 3 sets it
    CHECK(labels_check_classes(&ls) != 0 && strstr(sd_last_error(), "nonames.csv:1") &&
              strstr(sd_last_error(), "class index 4") && strstr(sd_last_error(), "num_classes 3"),
          "index >= num_classes names the line: %s", sd_last_error());
    labels_free(&ls);
}

static void test_multilabel(void) {
    LabelSet ls;
    const char *p = write_file("ml.csv", "image,split,label\nx1,train,0;3;7\nx2,train,\nx3,val,5\n");
    CHECK(labels_load(p, LABELS_MULTILABEL, &ls) == 0, "load: %s", sd_last_error());
    CHECK(ls.rows[0].num_labels == 3 && ls.rows[0].labels[2] == 7 && ls.rows[1].num_labels == 0 && ls.num_classes == 8,
          "multi-hot rows");
    ls.num_classes = 6;
    CHECK(labels_check_classes(&ls) != 0 && strstr(sd_last_error(), "ml.csv:2") && strstr(sd_last_error(), "class index 7"),
          "multi-label index >= num_classes: %s", sd_last_error());
    labels_free(&ls);
}

static void test_segmentation(void) {
    uint8_t mask[6] = {0, 1, 2, 255, 1, 0};
    char path[512];
    snprintf(path, sizeof(path), "%s/m1.png", g_dir);
    CHECK(png_write(path, mask, 3, 2, 1, NULL, 0) == 0, "write png mask");
    int64_t shape[2] = {2, 3};
    int64_t m2[6] = {2, 2, 1, 0, -1, 1};
    snprintf(path, sizeof(path), "%s/m2.npy", g_dir);
    CHECK(npy_write(path, NPY_INT64, 2, shape, m2) == 0, "write npy mask");
    LabelSet ls;
    const char *p = write_file("seg.csv", "# classes: water,tree,field\nimage,split,label\nx1,train,m1.png\nx2,val,m2.npy\n");
    CHECK(labels_load(p, LABELS_SEGMENTATION, &ls) == 0, "load: %s", sd_last_error());
    int64_t out[6];
    CHECK(labels_load_mask(&ls, 0, 2, 3, 255, -100, out) == 0 && out[3] == -100 && out[2] == 2, "png mask: %s", sd_last_error());
    CHECK(labels_load_mask(&ls, 1, 2, 3, -1, -100, out) == 0 && out[4] == -100 && out[0] == 2, "npy mask: %s", sd_last_error());
    CHECK(labels_load_mask(&ls, 0, 3, 2, 255, -100, out) != 0 && strstr(sd_last_error(), "m1.png"), "wrong size: %s", sd_last_error());
    CHECK(labels_load_mask(&ls, 0, 2, 3, 7, -100, out) != 0 && strstr(sd_last_error(), "outside") &&
              strstr(sd_last_error(), "row 1, column 0") && strstr(sd_last_error(), "class 255") &&
              strstr(sd_last_error(), "num_classes 3"),
          "255 not ignored is out of range, position named: %s", sd_last_error());
    labels_free(&ls);
}

static void test_bad(void) {
    const char *bad[][2] = {
        {"b1.csv", "x1,train\n"},
        {"b2.csv", "x1,training,1\n"},
        {"b3.csv", "x1,train,one\n"},
        {"b4.csv", "x1,train,1\nx1,val,2\n"},
        {"b5.csv", "# classes: a,b\nx1,train,2\n"},
        {"b6.csv", "x1,train,-1\n"},
        {"b7.csv", "image,split,label\n"},
        {"b8.csv", "x1,train,1,extra\n"},
        {"b9.csv", "/abs/b,train,1\n"},
        {"b10.csv", "a/../../b,train,1\n"},
        {"b11.csv", "a//b,train,1\n"},
        {"b12.csv", "./b,train,1\n"},
        {"b13.csv", "a/,train,1\n"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        LabelSet ls;
        const char *p = write_file(bad[i][0], bad[i][1]);
        sd_clear_error();
        int rc = labels_load(p, LABELS_CLASSIFICATION, &ls);
        CHECK(rc != 0, "%s accepted", bad[i][0]);
        CHECK(strstr(sd_last_error(), bad[i][0]) != NULL, "%s: error names the file: %s", bad[i][0], sd_last_error());
        if (rc == 0) labels_free(&ls);
    }
    // class folders (issue 18, finding 3): ids are paths relative to the feature cache
    LabelSet ls;
    const char *p = write_file("folders.csv", "Forest/Forest_1,train,0\nRiver/sub/River_7,val,1\n");
    CHECK(labels_load(p, LABELS_CLASSIFICATION, &ls) == 0 && ls.count == 2 && !strcmp(ls.rows[1].image, "River/sub/River_7"),
          "ids with '/': %s", sd_last_error());
    labels_free(&ls);
    CHECK(labels_load("/nonexistent/labels.csv", LABELS_CLASSIFICATION, &ls) != 0, "missing file");
    LabelTask t;
    CHECK(label_task_from_name("seg", &t) == 0 && t == LABELS_SEGMENTATION && label_task_from_name("detection", &t) != 0, "task names");
}

// Found while writing fuzz_labels (tests/fuzz): each was accepted with wrong data or a wrong message.
static void test_fuzz_regressions(void) {
    static const struct {
        const char *name, *text, *msg;
    } cases[] = {
        // strtok merged the empty name: names a,b,"" (class 1 called "b", not "")
        {"f1.csv", "# classes: a,,b\nx1,train,1\n", "f1.csv:1: class name 1 of 3 is empty"},
        {"f2.csv", "# classes: a,b,\nx1,train,1\n", "class name 2 of 3 is empty"},
        // strtok merged the empty field: read as image x1, split train, label 1
        {"f3.csv", "x1,,train,1\n", "f3.csv:1: more than 3 fields"},
        {"f4.csv", ",train,1\n", "f4.csv:1: empty image id"},
        {"f5.csv", "x1,train,\n", "f5.csv:1: label '' is not a class index"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        LabelSet ls;
        const char *p = write_file(cases[i].name, cases[i].text);
        int rc = labels_load(p, LABELS_CLASSIFICATION, &ls);
        CHECK(rc != 0 && strstr(sd_last_error(), cases[i].msg), "%s must fail with '%s': %s", cases[i].name,
              cases[i].msg, rc ? sd_last_error() : "accepted");
        if (rc == 0) labels_free(&ls);
    }
    // A NUL byte: the rest of the line was ignored ("x2,train,0" accepted) or, mid-file,
    // reported as "line too long".
    static const char nul[] = "x1,train,1\nx2,train,0\0garbage";
    char path[512];
    snprintf(path, sizeof(path), "%s/f6.csv", g_dir);
    FILE *f = fopen(path, "wb");
    fwrite(nul, 1, sizeof(nul) - 1, f);
    fclose(f);
    LabelSet ls;
    int rc = labels_load(path, LABELS_CLASSIFICATION, &ls);
    CHECK(rc != 0 && strstr(sd_last_error(), "f6.csv:2: NUL byte"), "NUL byte: %s", rc ? sd_last_error() : "accepted");
    if (rc == 0) labels_free(&ls);
    // The duplicate check compared every pair of rows: 50k rows (0.9 MB) took 4 s, 200k (3.6 MB) over a minute.
    snprintf(path, sizeof(path), "%s/f7.csv", g_dir);
    for (int dup = 0; dup < 2; dup++) {
        f = fopen(path, "w");
        for (int i = 0; i < 200000; i++) fprintf(f, "img%06d,train,%d\n", i, i % 7);
        if (dup) fprintf(f, "img123456,val,1\n");
        fclose(f);
        rc = labels_load(path, LABELS_CLASSIFICATION, &ls);
        if (!dup) CHECK(rc == 0 && ls.count == 200000 && ls.num_classes == 7, "200k rows: %s", sd_last_error());
        else
            CHECK(rc != 0 && strstr(sd_last_error(), "f7.csv:200001: image 'img123456' is listed twice (also on line 123457)"),
                  "duplicate among 200k rows: %s", rc ? sd_last_error() : "accepted");
        if (rc == 0) labels_free(&ls);
    }
}

// issue 18, finding 1: eval set num_classes from the head config over the names' count; a head of
// 4 classes with 2 names read class_names[2] (json_escape(NULL): exit 139) and labels_free freed
// class_names[2..3] (free(0x21)); 6 names for 4 classes were ignored silently.
static void test_class_count(void) {
    LabelSet ls;
    char buf[16];
    const char *p = write_file("n2.csv", "# classes: water,forest\nx1,train,1\nx2,val,0\n");
    CHECK(labels_load(p, LABELS_CLASSIFICATION, &ls) == 0 && ls.num_names == 2, "load: %s", sd_last_error());
    int rc = labels_set_num_classes(&ls, 4, "run/head_config.json");
    CHECK(rc != 0 && strstr(sd_last_error(), "n2.csv names 2 classes") && strstr(sd_last_error(), "run/head_config.json has 4"),
          "fewer names than classes: %s", rc ? sd_last_error() : "accepted");
    CHECK(ls.num_classes == 2, "a refused count leaves the set as it was (%d)", ls.num_classes);
    rc = labels_set_num_classes(&ls, 1, "--num-classes");
    CHECK(rc != 0 && strstr(sd_last_error(), "names 2 classes") && strstr(sd_last_error(), "--num-classes has 1"),
          "more names than classes: %s", rc ? sd_last_error() : "accepted");
    CHECK(labels_set_num_classes(&ls, 2, "x") == 0 && !strcmp(labels_class_name(&ls, 1, buf, sizeof(buf)), "forest"),
          "as many names as classes");
    CHECK(!strcmp(labels_class_name(&ls, 2, buf, sizeof(buf)), "2"), "a class past the names is its number");
    labels_free(&ls);  // frees exactly the 2 names (ASan: no invalid free)
    // without names any count is taken, and classes are their numbers
    p = write_file("n0.csv", "x1,train,1\nx2,val,0\n");
    CHECK(labels_load(p, LABELS_CLASSIFICATION, &ls) == 0 && ls.num_classes == 2 && ls.num_names == 0, "no names");
    CHECK(labels_set_num_classes(&ls, 7, "head") == 0 && ls.num_classes == 7, "no names: 7 classes taken");
    CHECK(!strcmp(labels_class_name(&ls, 6, buf, sizeof(buf)), "6"), "no names: class 6 is '6'");
    CHECK(labels_set_num_classes(&ls, 0, "head") != 0, "0 classes refused");
    labels_free(&ls);
    // a segmentation set (the crash's other path) the same
    p = write_file("n3.csv", "# classes: a,b,c\nx1,train,m.png\n");
    CHECK(labels_load(p, LABELS_SEGMENTATION, &ls) == 0, "seg load: %s", sd_last_error());
    CHECK(labels_set_num_classes(&ls, 5, "head") != 0 && strstr(sd_last_error(), "names 3 classes"), "seg: fewer names");
    labels_free(&ls);
}

int main(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/sd_test_labels_%d", (int)getpid());
    mkdir(g_dir, 0755);
    test_classification();
    test_multilabel();
    test_segmentation();
    test_bad();
    test_fuzz_regressions();
    test_class_count();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return test_report("test_labels");
}
