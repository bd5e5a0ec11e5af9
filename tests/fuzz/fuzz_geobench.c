// libFuzzer target: a GEO-Bench sample's `pickle` attribute (gb_meta_parse: the Python bytes
// repr b'...' decoded, the restricted unpickler, bands_order, the geobench band objects' alt_names,
// the label as an int, a list or a numpy scalar / array from its pickled state).
// The first byte picks what the rest is: 0 -> raw pickle bytes, which the harness writes as a
// b'\xNN...' repr (so mutations reach the unpickler and the dict walk); else -> the repr text
// itself (so they reach the escape decoder).
// Build: make fuzz (FUZZ_SRC_geobench). Run: build/fuzz/fuzz_geobench -rss_limit_mb=2048 CORPUS_DIR
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/geobench.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    char *repr = NULL;
    size_t len = n;
    if (data[0] == 0) {
        static const char hex[] = "0123456789abcdef";
        repr = (char *)malloc(4 * n + 3);
        if (!repr) return 0;
        len = 0;
        repr[len++] = 'b', repr[len++] = '\'';
        for (size_t i = 0; i < n; i++)
            repr[len++] = '\\', repr[len++] = 'x', repr[len++] = hex[p[i] >> 4], repr[len++] = hex[p[i] & 15];
        repr[len++] = '\'';
    } else {
        repr = (char *)malloc(n + 1);  // the attribute's text is NUL-terminated in the HDF5 reader too
        if (!repr) return 0;
        memcpy(repr, p, n);
        repr[n] = 0;
    }
    GbSampleMeta m;
    if (gb_meta_parse("fuzz.hdf5", repr, len, &m) == 0) {
        gb_resolve_band(&m, "red");
        gb_resolve_band(&m, "04 - Red");
        gb_sample_meta_free(&m);
    }
    free(repr);
    return 0;
}
