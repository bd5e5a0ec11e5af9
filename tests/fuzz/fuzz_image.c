// libFuzzer target: the image front end (src/io/image.c). image_load() only
// takes a path, so the input (minus its first byte) is written to a file in
// /dev/shm; byte 0 picks the NPY layout (auto, CHW, HWC). The file format is
// sniffed from the bytes (PNG, TIFF, NPY, else an error), so one corpus mixes
// all three. Every returned sample is read, so a short buffer shows under ASan.
// Build: make fuzz FUZZ_TARGETS=image
// Run:   build/fuzz/fuzz_image -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/image.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fuzz_image_%d.img", (int)getpid());
    if (fuzz_write_file(path, data + 1, size - 1)) return 0;
    Image img;
    if (image_load_npy_layout(path, (ImageNpyLayout)(data[0] % 3), &img) == 0) {
        if (img.channels < 1 || img.height < 1 || img.width < 1) __builtin_trap();  // an empty image is not valid
        size_t n = (size_t)img.channels * (size_t)img.height * (size_t)img.width;
        volatile float sum = 0.0f;
        for (size_t i = 0; i < n; i++) sum += img.data[i];
        (void)sum;
        image_free(&img);
    }
    unlink(path);
    return 0;
}
