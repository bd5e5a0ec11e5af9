// libFuzzer target: feeds the input to tiff_decode() (TIFF/BigTIFF/GeoTIFF in
// memory: IFD parsing, strips/tiles, LZW, Deflate, PackBits, predictors).
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_tiff.c src/io/tiff.c src/io/inflate.c src/io/npy.c src/io/file.c src/core/error.c
//     -lm -o build/fuzz/fuzz_tiff)
// Run:   build/fuzz/fuzz_tiff -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include "io/tiff.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    TiffImage img;
    if (tiff_decode(data, size, &img) == 0) tiff_free(&img);
    return 0;
}
