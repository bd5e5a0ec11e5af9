// satdifuser geobench ...: GEO-Bench task folders (one HDF5 file per sample). Also the HDF5
// listing of `satdifuser info FILE.hdf5` (cmd_info.c dispatches to info_hdf5 by content).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/geobench.h"
#include "io/hdf5.h"

static void print_shape(int ndim, const uint64_t *shape) {
    printf("(");
    for (int d = 0; d < ndim; d++) printf(d ? ", %llu" : "%llu", (unsigned long long)shape[d]);
    printf(ndim == 1 ? ",)" : ")");
}

// A string with non-printable bytes escaped, cut after `max` bytes.
static void print_escaped(const char *s, size_t len, size_t max) {
    putchar('"');
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 32 || c == 127) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > max) printf("... (%zu bytes)", len);
}

static void print_attr(const H5Attr *a, const char *indent) {
    char t[64];
    h5_type_name(&a->type, t, sizeof(t));
    printf("%sattribute %s: %s ", indent, a->name, t);
    if (a->ndim < 0) {
        printf("(null)\n");
        return;
    }
    print_shape(a->ndim, a->shape);
    if (a->str && a->count > 0) {
        printf(" = ");
        print_escaped(a->str[0], a->str_len[0], 100);
        if (a->count > 1) printf(" ... (%llu strings)", (unsigned long long)a->count);
    } else if (a->data) {
        NpyArray arr;
        memset(&arr, 0, sizeof(arr));
        arr.dtype = a->type.npy;
        arr.itemsize = a->type.size;
        arr.count = (int64_t)a->count;
        arr.ndim = 1;
        arr.shape[0] = arr.count;
        arr.data = a->data;
        float *v = NULL;
        if (npy_to_float32(&arr, &v) == 0) {
            printf(" =");
            for (uint64_t i = 0; i < a->count && i < 8; i++) printf(" %.9g", v[i]);
            if (a->count > 8) printf(" ...");
            free(v);
        }
    }
    printf("\n");
}

int info_hdf5(const char *path) {
    H5File f;
    if (h5_open(&f, path)) {
        fprintf(stderr, "satdifuser info: %s\n", sd_last_error());
        return 1;
    }
    printf("%s: HDF5 (superblock version %d), %d datasets, %d groups\n", path, f.sb_version, f.num_datasets,
           f.num_groups);
    for (int i = 0; i < f.num_root_attrs; i++) print_attr(&f.root_attrs[i], "  ");
    static const char *layouts[] = {"compact", "contiguous", "chunked"};
    static const char *indexes[] = {"v1 B-tree", "single chunk", "implicit", "fixed array"};
    for (int i = 0; i < f.num_datasets; i++) {
        const H5Dataset *d = &f.datasets[i];
        char t[64];
        h5_type_name(&d->type, t, sizeof(t));
        printf("  %-32s %-14s ", d->name, t);
        print_shape(d->ndim, d->shape);
        if (d->layout >= 0 && d->layout <= 2) printf(" %s", layouts[d->layout]);
        if (d->layout == H5_CHUNKED) {
            printf(" ");
            print_shape(d->ndim, d->chunk);
            if (d->chunk_index >= 0 && d->chunk_index <= 3) printf(" %s", indexes[d->chunk_index]);
        }
        for (int k = 0; k < d->num_filters; k++) printf(k ? ",%u" : " filters %u", d->filters[k].id);
        if (d->unsupported[0]) printf(" [cannot be read: %s]", d->unsupported);
        printf("\n");
        for (int k = 0; k < d->num_attrs; k++) print_attr(&d->attrs[k], "    ");
    }
    h5_close(&f);
    return 0;
}

int is_hdf5_file(const char *path) {
    unsigned char sig[8];
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = fread(sig, 1, 8, fp);
    fclose(fp);
    return h5_is_hdf5(sig, n);
}

static void geobench_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser geobench export TASKDIR --out DIR [--partition NAME] [--bands NAMES] [--quiet]\n"
            "Reads a GEO-Bench task folder (one <sample>.hdf5 per sample, NAME_partition.json, label_map.json or\n"
            "label_stats.json, task_specs.pkl) and writes, for every sample of the partition:\n"
            "  DIR/images/<sample>.npy   the bands as float32 (C, H, W), values as stored in the file\n"
            "  DIR/masks/<sample>.npy    segmentation: the 'label' dataset (uint8 when the values fit)\n"
            "  DIR/labels.csv            docs/labels-format.md: split from the partition (valid -> val), the\n"
            "                            label, and '# classes:' when task_specs.pkl names the classes\n"
            "  --partition NAME  NAME_partition.json (default: default), e.g. 0.10x_train\n"
            "  --bands NAMES     comma-separated band names, in that order (default: the sample's bands_order\n"
            "                    without the label)\n"
            "DIR must be new or empty; it is written under another name and renamed when complete.\n");
}

// gb_export's progress, printed: every 1000th sample on stderr, the summary on stdout.
void cli_geobench_export_progress(void *user, int done, int total, int finished, const char *partition,
                                  const char *task) {
    const CliGeobenchExport *w = (const CliGeobenchExport *)user;
    if (!finished) {
        fprintf(stderr, "geobench export: %d / %d samples\n", done, total);
        return;
    }
    printf("geobench export: %d samples of %s (partition %s, task %s) -> %s%s\n", total, w->task, partition, task,
           w->out, w->images ? "" : " (labels only)");
}

int cmd_geobench(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        geobench_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "export") != 0) {
        fprintf(stderr, "satdifuser geobench: unknown subcommand '%s'\n", argv[0]);
        geobench_usage(stderr);
        return 2;
    }
    const char *task = NULL, *out = NULL, *partition = "default", *bands = NULL;
    int quiet = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            geobench_usage(stdout);
            return 0;
        } else if (!strcmp(argv[a], "--quiet")) {
            quiet = 1;
        } else if ((!strcmp(argv[a], "--out") || !strcmp(argv[a], "--partition") || !strcmp(argv[a], "--bands")) &&
                   a + 1 < argc) {
            const char **dst = argv[a][2] == 'o' ? &out : argv[a][2] == 'p' ? &partition : &bands;
            *dst = argv[++a];
        } else if (argv[a][0] == '-') {
            fprintf(stderr, "satdifuser geobench export: unknown option or missing value '%s'\n", argv[a]);
            geobench_usage(stderr);
            return 2;
        } else if (!task) {
            task = argv[a];
        } else {
            fprintf(stderr, "satdifuser geobench export: one TASKDIR only ('%s')\n", argv[a]);
            return 2;
        }
    }
    if (!task || !out) {
        fprintf(stderr, "satdifuser geobench export: TASKDIR and --out DIR are required\n");
        geobench_usage(stderr);
        return 2;
    }
    CliGeobenchExport where = {task, out, 1};
    if (gb_export(task, out, partition, bands, 1, quiet ? NULL : cli_geobench_export_progress, &where)) {
        fprintf(stderr, "satdifuser geobench export: %s\n", sd_last_error());
        return 1;
    }
    return 0;
}
