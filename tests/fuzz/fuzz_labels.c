// libFuzzer target: label files (src/io/labels.c). The input is split at its
// first "\n=\n" line: the part before is the CSV, written to
// /dev/shm/fuzz_labels_<pid>/labels.csv; the part after (if any) is a mask,
// written beside it as m.png and m.npy. Byte 0 of the CSV part picks the task
// (cls, multilabel, seg); it is replaced by '#' (a comment line) so the text
// is still a CSV. Then labels_split, labels_check_classes and, for
// segmentation, labels_load_mask of the first rows whose mask is m.png or m.npy,
// expecting an N x N mask, N = 1..16 from byte 0 of the mask part.
// Build: make fuzz FUZZ_TARGETS=labels
// Run:   build/fuzz/fuzz_labels -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/labels.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/fuzz_labels_%d", (int)getpid());
        mkdir(dir, 0700);
    }
    size_t csv_len = size;
    const unsigned char *mask = NULL;
    size_t mask_len = 0;
    for (size_t i = 0; i + 3 <= size; i++)
        if (memcmp(data + i, "\n=\n", 3) == 0) {
            csv_len = i + 1;
            mask = data + i + 3;
            mask_len = size - i - 3;
            break;
        }
    char path[128], mpng[128], mnpy[128];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    snprintf(mpng, sizeof mpng, "%s/m.png", dir);
    snprintf(mnpy, sizeof mnpy, "%s/m.npy", dir);
    LabelTask task = (LabelTask)(data[0] % 3);
    unsigned char *csv = (unsigned char *)malloc(csv_len);
    if (!csv) return 0;
    memcpy(csv, data, csv_len);
    csv[0] = '#';
    if (fuzz_write_file(path, csv, csv_len)) return 0;
    free(csv);
    int hw = 1 + (mask_len > 0 ? mask[0] % 16 : 0);
    if (mask) {  // byte 0 of the mask part is the size, the rest the file
        const unsigned char *body = mask_len ? mask + 1 : mask;
        size_t body_len = mask_len ? mask_len - 1 : 0;
        fuzz_write_file(mpng, body, body_len);
        fuzz_write_file(mnpy, body, body_len);
    }
    LabelSet ls;
    if (labels_load(path, task, &ls) == 0) {
        if (ls.count < 1 || !ls.rows) __builtin_trap();
        int *rows = (int *)malloc((size_t)ls.count * sizeof(int));
        int total = 0;
        for (int s = 0; s < 3; s++) total += labels_split(&ls, (SplitKind)s, rows);
        if (total != ls.count) __builtin_trap();
        free(rows);
        for (int r = 0; r < ls.count; r++) {
            if (!ls.rows[r].image || !ls.rows[r].image[0]) __builtin_trap();
            if (task == LABELS_MULTILABEL && ls.rows[r].num_labels && !ls.rows[r].labels) __builtin_trap();
        }
        if (ls.class_names)
            for (int c = 0; c < ls.num_classes; c++)
                if (!ls.class_names[c]) __builtin_trap();
        labels_check_classes(&ls);
        if (task == LABELS_SEGMENTATION && mask) {
            int64_t *out = (int64_t *)malloc((size_t)hw * (size_t)hw * sizeof(int64_t));
            for (int r = 0; r < ls.count && r < 4; r++) {
                const char *mp = ls.rows[r].mask_path;
                // only the two mask files of this input, never other files of the machine
                if (strcmp(mp, mpng) && strcmp(mp, mnpy)) continue;
                labels_load_mask(&ls, r, hw, hw, 255, -100, out);
            }
            free(out);
        }
        labels_free(&ls);
    }
    return 0;
}
