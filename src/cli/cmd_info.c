// satdifuser info FILE.safetensors: what a weights, cache or checkpoint file holds.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/safetensors.h"

int cmd_info(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        fprintf(argc < 1 ? stderr : stdout, "usage: satdifuser info FILE.safetensors...\n"
                "Validates the file and lists its tensors (dtype, shape) and metadata.\n");
        return argc < 1 ? 2 : 0;
    }
    int rc = 0;
    for (int a = 0; a < argc; a++) {
        SafeTensors st;
        if (st_open(&st, argv[a])) { fprintf(stderr, "satdifuser info: %s\n", sd_last_error()); rc = 1; continue; }
        printf("%s: %d tensors\n", argv[a], st.count);
        for (int k = 0; k < st.metadata.count; k++) printf("  metadata %s = %s\n", st.metadata.keys[k], st.metadata.items[k].string);
        for (int i = 0; i < st.count; i++) {
            const StEntry *e = &st.entries[i];
            printf("  %-64s %-4s (", e->name, dtype_name(e->dtype));
            for (int d = 0; d < e->ndim; d++) printf(d ? ", %lld" : "%lld", (long long)e->shape[d]);
            printf(")\n");
        }
        st_close(&st);
    }
    return rc;
}
