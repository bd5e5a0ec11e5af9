// libFuzzer target: feeds the input to png_decode() (PNG in memory, which runs
// the zlib/DEFLATE decoder on IDAT) and, when it decodes, png_to_rgba().
// Every chunk CRC is checked by the decoder, so nearly every mutation would stop
// there: the target first rewrites the CRCs of the chunks it can walk in a copy
// of the input (the CRC-mismatch path is covered by tests/test_png.c).
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_png.c src/io/png.c src/io/inflate.c src/io/file.c src/core/error.c -o build/fuzz/fuzz_png)
// Run:   build/fuzz/fuzz_png -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/png.h"

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    uint8_t *buf = (uint8_t *)malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    for (size_t pos = 8; size >= 8 && size - pos >= 12;) {
        uint32_t clen = be32(buf + pos);
        if (clen > size - pos - 12) break;
        uint32_t crc = png_crc32(0, buf + pos + 4, 4 + (size_t)clen);
        uint8_t *c = buf + pos + 8 + clen;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        pos += 12 + (size_t)clen;
    }
    PngImage img;
    int rc = png_decode(buf, size, &img);
    free(buf);
    if (rc != 0) return 0;
    void *rgba = NULL;
    int bps = 0;
    if (png_to_rgba(&img, &rgba, &bps) == 0) free(rgba);
    png_free(&img);
    return 0;
}
