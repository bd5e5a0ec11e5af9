// libFuzzer target: feeds the input to json_parse() (the JSON parser used for
// config.json, case.json and safetensors headers), then runs the typed
// look-ups on the result.
// Build: make fuzz   (or by hand:
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc
//     tests/fuzz/fuzz_json.c src/io/json.c src/io/file.c src/core/error.c -lm -o build/fuzz/fuzz_json)
// Run:   build/fuzz/fuzz_json -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>

#include "io/json.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    JsonValue v;
    if (json_parse((const char *)data, size, "fuzz.json", &v) != 0) return 0;
    if (v.type == JSON_OBJECT) {
        for (int i = 0; i < v.count; i++) {
            const char *k = v.keys[i];
            int n, lst[4];
            double d;
            const char *s;
            int64_t i64;
            json_get_int(&v, k, 0, &n);
            json_get_double(&v, k, 0, &d);
            json_get_bool(&v, k, 0, &n);
            json_get_string(&v, k, NULL, &s);
            json_get_int_list(&v, k, 4, lst);
            json_as_int64(&v.items[i], &i64);
            char buf[64];
            json_escape(k, buf, sizeof buf);
        }
    }
    json_free(&v);
    return 0;
}
