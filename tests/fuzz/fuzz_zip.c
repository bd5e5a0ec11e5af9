// libFuzzer target: the zip directory reader on raw bytes (end records, ZIP64 records, central
// directory, local headers, overlap check), then every entry's data.
// Build: make fuzz; run: build/fuzz/fuzz_zip -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>

#include "io/zip.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    ZipArchive z;
    if (zip_open(&z, "fuzz.zip", data, size) == 0) {
        unsigned sum = 0;
        for (int i = 0; i < z.count; i++) {
            const unsigned char *p;
            uint64_t n;
            if (zip_entry_data(&z, &z.entries[i], &p, &n) == 0 && n) sum += p[0] + p[n - 1];
            zip_find(&z, z.entries[i].name);
        }
        (void)sum;
        zip_close(&z);
    }
    return 0;
}
