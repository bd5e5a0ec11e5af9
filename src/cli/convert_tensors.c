// satdifuser convert --from FILE --out FILE.safetensors [--key PATH]: the tensors of a
// checkpoint (a PyTorch .bin / .pt / .pth / .ckpt, or a safetensors file) written as one
// safetensors file, each with its stored dtype and bytes unchanged. --key keeps only the
// tensors under one entry of the checkpoint (run.py's "decoder_net", a Lightning
// "state_dict", a dotted path for nesting), named relative to it.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "io/torch_file.h"

int convert_tensors(const char *from, const char *key, const char *out, int force, int quiet) {
    struct stat sb;
    if (stat(out, &sb) == 0 && !force) {
        fprintf(stderr, "satdifuser convert: %s exists: choose another --out or pass --force to replace it\n", out);
        return 2;
    }
    SafeTensors st;
    int rc = key ? st_open_torch(&st, from, key) : st_open(&st, from);
    if (rc) {
        fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
        return 1;
    }
    const char *keys[2] = {"converted_from", "key"};
    const char *vals[2] = {from, key ? key : ""};
    if (st_write_copy(&st, out, keys, vals, key ? 2 : 1)) {
        fprintf(stderr, "satdifuser convert: %s\n", sd_last_error());
        st_close(&st);
        return 1;
    }
    if (!quiet) printf("wrote %s: %d tensors%s%s\n", out, st.count, key ? " under " : "", key ? key : "");
    st_close(&st);
    return 0;
}
