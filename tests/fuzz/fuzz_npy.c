// libFuzzer target: feeds the input to npy_parse() (NPY v1/v2/v3 in memory:
// magic, header dict, descr/shape/fortran_order, payload) and, when it parses,
// npy_to_float32().
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_npy.c src/io/npy.c src/io/file.c src/core/error.c -o build/fuzz/fuzz_npy)
// Run:   build/fuzz/fuzz_npy -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdlib.h>

#include "io/npy.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    NpyArray arr;
    if (npy_parse(data, size, &arr) != 0) return 0;
    float *f = NULL;
    if (npy_to_float32(&arr, &f) == 0) free(f);
    npy_free(&arr);
    return 0;
}
