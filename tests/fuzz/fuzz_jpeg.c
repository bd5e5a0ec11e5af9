// libFuzzer target: feeds the input to jpeg_decode() (markers, Huffman/progressive
// entropy decoding, IDCT, upsampling, colour conversion).
// Inputs declaring more than 2^22 pixels in any SOF0/1/2-like byte pattern are skipped,
// so that the 2^28-pixel limit of jpeg.h does not run into libFuzzer's memory limit
// (that limit is tested by tests/test_jpeg.c).
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc tests/fuzz/fuzz_jpeg.c
//     src/io/jpeg.c src/io/jpeg_huff.c src/io/jpeg_idct.c src/io/file.c src/core/error.c -lm -o build/fuzz/fuzz_jpeg)
// Run:   build/fuzz/fuzz_jpeg -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdlib.h>

#include "io/jpeg.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    for (size_t i = 0; i + 9 <= size; i++)
        if (data[i] == 0xFF && data[i + 1] >= 0xC0 && data[i + 1] <= 0xC2) {
            uint64_t h = (uint64_t)data[i + 5] << 8 | data[i + 6], w = (uint64_t)data[i + 7] << 8 | data[i + 8];
            if (w * h > ((uint64_t)1 << 22)) return 0;
        }
    JpegImage img;
    if (jpeg_decode(data, size, "fuzz", &img) == 0) {
        // touch every pixel (uninitialised output would show under MSan / as a nondeterministic sum)
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * img.channels; i++) sum += img.pixels[i];
        if (sum == 0xFFFFFFFFu) abort();
        jpeg_free(&img);
    }
    return 0;
}
