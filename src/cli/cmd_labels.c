// satdifuser labels: make a labels CSV (docs/labels-format.md).
//   labels from-folders DIR --out FILE [--split 0.7,0.15,0.15] [--seed N] [--force]
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/outdir.h"
#include "train/class_folders.h"

static void labels_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser labels from-folders DIR --out FILE [--split TRAIN,VAL,TEST] [--seed N] [--force]\n\n"
            "Writes the labels CSV of a class-per-folder dataset (EuroSAT-style DIR/Forest/Forest_1.tif):\n"
            "one class per folder under DIR, numbered in sorted order (as torchvision's ImageFolder), the\n"
            "image id = the file's path under DIR without its extension (Forest/Forest_1), which is the\n"
            "name `satdifuser extract --input DIR` gives its feature file. DIR may also be that feature\n"
            "folder. The split is stratified (each class is cut by the fractions) and seeded.\n\n"
            "  --split A,B,C   train, val, test fractions (default 0.7,0.15,0.15; they sum to 1)\n"
            "  --seed N        shuffle seed (default 0); the same seed gives the same file\n"
            "  --force         replace an existing FILE\n");
}

static int from_folders(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *split = "0.7,0.15,0.15";
    long long seed = 0;
    int force = 0;
    char command[2048];
    size_t n = (size_t)snprintf(command, sizeof(command), "satdifuser labels from-folders");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (n < sizeof(command)) n += (size_t)snprintf(command + n, sizeof(command) - n, " %s", a);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { labels_usage(stdout); return 0; }
        if (!strcmp(a, "--force")) { force = 1; continue; }
        if (a[0] != '-') {
            if (dir) { fprintf(stderr, "satdifuser labels: one DIR, got '%s' and '%s'\n", dir, a); return 2; }
            dir = a;
            continue;
        }
        if (!v) { fprintf(stderr, "satdifuser labels: %s needs a value\n", a); return 2; }
        if (n < sizeof(command)) n += (size_t)snprintf(command + n, sizeof(command) - n, " %s", v);
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--split")) split = v;
        else if (!strcmp(a, "--seed")) {
            char *end = NULL;
            errno = 0;
            seed = strtoll(v, &end, 10);
            if (errno || end == v || *end || seed < 0) {
                fprintf(stderr, "satdifuser labels: --seed '%s': expected a whole number >= 0\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "satdifuser labels: unknown option '%s'\n", a);
            labels_usage(stderr);
            return 2;
        }
    }
    if (!dir || !out) { labels_usage(stderr); return 2; }
    double frac[3];
    int used = 0;
    if (sscanf(split, "%lf,%lf,%lf%n", &frac[0], &frac[1], &frac[2], &used) != 3 || split[used]) {
        fprintf(stderr, "satdifuser labels: --split '%s': expected three fractions TRAIN,VAL,TEST (e.g. 0.7,0.15,0.15)\n", split);
        return 2;
    }
    struct stat sb;
    if (!force && stat(out, &sb) == 0) {
        fprintf(stderr, "satdifuser labels: %s exists: give --force to replace it, or another --out\n", out);
        return 2;
    }
    if (outfile_check(out, "--out")) { fprintf(stderr, "satdifuser labels: %s\n", sd_last_error()); return 2; }
    ClassFolderSummary s;
    if (labels_from_folders(dir, frac, (uint64_t)seed, out, command, &s)) {
        fprintf(stderr, "satdifuser labels: %s\n", sd_last_error());
        return 1;
    }
    printf("%s: %d classes, %d images: train %d, val %d, test %d\n", out, s.num_classes, s.count, s.split_count[0],
           s.split_count[1], s.split_count[2]);
    if (s.skipped_root)
        printf("  %d file%s directly in %s skipped (not in a class folder)\n", s.skipped_root, s.skipped_root == 1 ? "" : "s", dir);
    return 0;
}

int cmd_labels(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "from-folders")) return from_folders(argc - 1, argv + 1);
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) { labels_usage(stdout); return 0; }
    fprintf(stderr, "satdifuser labels: expected 'from-folders'\n\n");
    labels_usage(stderr);
    return 2;
}
