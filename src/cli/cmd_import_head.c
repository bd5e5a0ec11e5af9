// satdifuser import-head: a run folder from a head trained by the original SatDiFuser
// run.py (best_ckpt_step_N.pth), for `eval` and `predict` (src/train/head_import.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "train/head_import.h"

static void import_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser import-head --from CKPT.pth --features FILE|DIR --out RUN_DIR [options]\n\n"
            "Makes a run folder (head_config.json, best.safetensors, features_meta.json) from a head trained\n"
            "by SatDiFuser's run.py, so that `satdifuser eval --run RUN_DIR` scores the authors' head in C on\n"
            "the same features. The checkpoint is read without Python and nothing in it is executed.\n\n"
            "  --from CKPT.pth       run.py's checkpoint: {epoch, global_step, config, decoder_net, ...}\n"
            "  --features FILE|DIR   a feature file (or a feature folder) made by `satdifuser extract` with\n"
            "                        the model and --size the head was trained on: the layout of each\n"
            "                        stream is not in the checkpoint\n"
            "  --out RUN_DIR         the run folder to create\n"
            "  --key PATH            the head's state_dict entry (default decoder_net)\n"
            "  --num-norm-groups N   GroupNorm groups of the fuser blocks (default 32: run.py never sets it)\n"
            "  --force               replace the files of an existing run folder\n"
            "Exit status: 0 done, 1 the checkpoint or the features do not fit, 2 usage error.\n");
}

int cmd_import_head(int argc, char **argv) {
    HeadImportOptions o;
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { import_usage(stdout); return 0; }
        if (!strcmp(a, "--force")) { o.force = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "satdifuser import-head: %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        if (!strcmp(a, "--from")) o.checkpoint = v;
        else if (!strcmp(a, "--features")) o.features = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--key")) o.key = v;
        else if (!strcmp(a, "--num-norm-groups")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 4096) { fprintf(stderr, "satdifuser import-head: --num-norm-groups '%s': a whole number >= 1\n", v); return 2; }
            o.num_norm_groups = (int)n;
        } else {
            fprintf(stderr, "satdifuser import-head: unknown option '%s'\n\n", a);
            import_usage(stderr);
            return 2;
        }
    }
    if (!o.checkpoint || !o.features || !o.out_dir) {
        fprintf(stderr, "satdifuser import-head: --from, --features and --out are required\n\n");
        import_usage(stderr);
        return 2;
    }
    char summary[512];
    if (head_import(&o, summary, sizeof(summary))) {
        fprintf(stderr, "satdifuser import-head: %s\n", sd_last_error());
        return 1;
    }
    printf("wrote %s: %s\n", o.out_dir, summary);
    return 0;
}
