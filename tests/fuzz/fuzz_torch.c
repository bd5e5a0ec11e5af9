// libFuzzer target: a whole PyTorch checkpoint (zip or legacy container, pickle, storages,
// tensor views) written to /dev/shm and opened with st_open (flattened tensors, every view
// converted to float) and with torch_file_open + a dotted key lookup.
// Build: make fuzz; run: build/fuzz/fuzz_torch -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
// (seed corpus: tests/data/torch/*.pt *.ckpt *.pth and tests/data/torch/hostile/)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/torch_file.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fuzz_torch_%d.pt", (int)getpid());
    if (fuzz_write_file(path, data, size)) return 0;
    SafeTensors st;
    if (st_open(&st, path) == 0) {
        for (int i = 0; i < st.count; i++) {
            const StEntry *e = &st.entries[i];
            if (e->numel > (1 << 22)) continue;
            float *buf = (float *)malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
            if (!buf) continue;
            st_entry_to_f32(e, buf);
            free(buf);
        }
        st_close(&st);
    }
    TorchFile tf;
    if (torch_file_open(&tf, path) == 0) {
        torch_file_find(&tf, "state_dict.model.0");
        torch_file_close(&tf);
    }
    unlink(path);
    return 0;
}
