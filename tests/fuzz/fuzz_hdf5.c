// libFuzzer target: feeds the input to h5_open_mem() (superblock, object headers, the group
// walk through symbol tables, link messages and dense groups, attributes with their global
// heap strings) and, when it opens, h5_read() of every dataset (contiguous, compact, chunks
// through v1 B-trees / fixed arrays / single chunks, deflate, shuffle, fletcher32).
// Build: make fuzz (FUZZ_SRC_hdf5). Run: build/fuzz/fuzz_hdf5 -rss_limit_mb=2048 CORPUS_DIR
#include <stdlib.h>

#include "io/hdf5.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    H5File f;
    if (h5_open_mem(&f, "fuzz.h5", data, size) != 0) return 0;
    for (int i = 0; i < f.num_datasets; i++) {
        float *v = NULL;
        if (h5_read_f32(&f, &f.datasets[i], &v) == 0) free(v);
    }
    h5_close(&f);
    return 0;
}
