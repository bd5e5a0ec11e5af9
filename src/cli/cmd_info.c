// satdifuser info FILE...: what a weights, cache or checkpoint file holds. Safetensors files,
// PyTorch checkpoints (.bin .pt .pth .ckpt, read without running anything) and sharded
// *.index.json: the tensors (name, dtype, shape) and the metadata, or for a PyTorch dict
// checkpoint its other top-level entries (epoch, config, ...). HDF5 files (by content): the
// datasets (name, dtype, shape, storage) and attributes (cmd_geobench.c).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/predict_scene.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "io/torch_file.h"

static void info_usage(FILE *f) {
    fprintf(f, "usage: satdifuser info [--digest] [--key PATH] FILE...\n"
               "Validates each file and lists its tensors (dtype, shape) and metadata. FILE may be safetensors,\n"
               "a PyTorch checkpoint (.bin .pt .pth .ckpt: zip or legacy format, read without running anything;\n"
               "tensors named by their dotted path, other top-level entries listed) or a sharded *.index.json.\n"
               "  --digest    also print a 64-bit FNV-1a hash of each tensor's bytes (compare tensors of two\n"
               "              files whatever their metadata or container)\n"
               "  --key PATH  PyTorch files: only the tensors under this entry (e.g. decoder_net, state_dict)\n"
               "An HDF5 file (GEO-Bench sample .hdf5) lists its datasets (dtype, shape, storage) and attributes;\n"
               "a TIFF / GeoTIFF its size, bands, layout and georeferencing tags.\n");
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int cmd_info(int argc, char **argv) {
    int digest = 0, files = 0;
    const char *key = NULL;
    for (int a = 0; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) { info_usage(stdout); return 0; }
        if (!strcmp(argv[a], "--digest")) digest = 1;
        else if (!strcmp(argv[a], "--key") && a + 1 < argc) key = argv[++a];
        else if (argv[a][0] == '-' && argv[a][1] == '-') { fprintf(stderr, "satdifuser info: unknown option '%s'\n", argv[a]); info_usage(stderr); return 2; }
        else files++;
    }
    if (!files) { info_usage(stderr); return 2; }
    int rc = 0;
    for (int a = 0; a < argc; a++) {
        if (!strcmp(argv[a], "--digest")) continue;
        if (!strcmp(argv[a], "--key")) { a++; continue; }
        if (is_hdf5_file(argv[a])) {  // HDF5 (GEO-Bench samples): datasets and attributes
            rc |= info_hdf5(argv[a]);
            continue;
        }
        if (is_tiff_path(argv[a])) {  // TIFF / GeoTIFF: size, layout, georeferencing (info_tiff.c)
            rc |= info_tiff(argv[a]);
            continue;
        }
        SafeTensors st;
        if (key ? st_open_torch(&st, argv[a], key) : st_open(&st, argv[a])) {
            fprintf(stderr, "satdifuser info: %s\n", sd_last_error());
            rc = 1;
            continue;
        }
        printf("%s: %d tensors\n", argv[a], st.count);
        for (int k = 0; k < st.metadata.count; k++) printf("  metadata %s = %s\n", st.metadata.keys[k], st.metadata.items[k].string);
        for (int i = 0; i < st.count; i++) {
            const StEntry *e = &st.entries[i];
            printf("  %-64s %-4s (", e->name, dtype_name(e->dtype));
            for (int d = 0; d < e->ndim; d++) printf(d ? ", %lld" : "%lld", (long long)e->shape[d]);
            printf(")");
            if (digest) printf(" %016llx", (unsigned long long)fnv1a(e->data, (size_t)e->numel * (size_t)dtype_size(e->dtype)));
            printf("\n");
        }
        st_close(&st);
    }
    return rc;
}
