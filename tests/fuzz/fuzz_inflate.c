// libFuzzer target for the DEFLATE/zlib decoder on its own. The first input
// byte picks the entry point (zlib_inflate with a 1 MiB cap, zlib_inflate_into,
// zlib_inflate_prefix, deflate_inflate, deflate_inflate_into), the rest is the stream.
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_inflate.c src/io/inflate.c src/core/error.c -o build/fuzz/fuzz_inflate)
// Run:   build/fuzz/fuzz_inflate -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdlib.h>

#include "io/inflate.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 5;
    const uint8_t *in = data + 1;
    size_t n = size - 1, out_len = 0, used = 0;
    uint8_t *out = NULL;
    static uint8_t buf[1 << 16];
    size_t cap = (size_t)(data[0] >> 3) * 2048;  // 0 .. 62 KiB: small caps hit the limit paths
    switch (mode) {
    case 0: if (zlib_inflate(in, n, &out, &out_len, 1 << 20) == 0) free(out); break;
    case 1: zlib_inflate_into(in, n, buf, cap, &out_len); break;
    case 2: zlib_inflate_prefix(in, n, buf, cap, &out_len); break;
    case 3: if (deflate_inflate(in, n, &out, &out_len, 1 << 20, &used) == 0) free(out); break;
    default: deflate_inflate_into(in, n, buf, cap, &out_len, &used); break;
    }
    return 0;
}
