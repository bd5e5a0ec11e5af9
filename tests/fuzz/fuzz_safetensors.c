// libFuzzer target: writes the input to a file in /dev/shm (st_open only takes
// a path: it mmaps the file) and opens it with st_open(), which parses the
// JSON header and validates every entry; then converts every tensor with
// st_entry_to_f32() / st_entry_to_i64() and reads the metadata.
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_safetensors.c src/io/safetensors.c src/io/json.c src/io/file.c src/core/error.c
//     -lm -o build/fuzz/fuzz_safetensors)
// Run:   build/fuzz/fuzz_safetensors -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fuzz_st_%d.safetensors", (int)getpid());
    if (fuzz_write_file(path, data, size)) return 0;
    SafeTensors st;
    if (st_open(&st, path) == 0) {
        for (int i = 0; i < st.count; i++) {
            const StEntry *e = &st.entries[i];
            if (e->numel > (1 << 22)) continue;  // the data is in the file, so numel is bounded by its size
            void *buf = malloc((size_t)(e->numel ? e->numel : 1) * 8);
            if (!buf) continue;
            st_entry_to_f32(e, buf);
            st_entry_to_i64(&st, e, buf);
            free(buf);
            st_find(&st, e->name);
        }
        st_metadata(&st, "format");
        const StEntry *e;
        st_require(&st, "missing.weight", &e);
        st_close(&st);
    }
    unlink(path);
    return 0;
}
