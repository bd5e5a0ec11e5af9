// libFuzzer target: the restricted unpickler on raw bytes (no hooks: persistent ids are errors),
// then a render of the root value. Checks that no input crashes, hangs or allocates without bound.
// Build: make fuzz; run: build/fuzz/fuzz_pickle -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 CORPUS_DIR
#include <stdint.h>
#include <stdio.h>

#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    PickleDoc doc;
    pickle_doc_init(&doc);
    PyValue *root;
    size_t used;
    if (pickle_load(&doc, "fuzz.pkl", data, size, NULL, &root, &used) == 0) {
        char text[256];
        py_repr(root, text, sizeof(text));
        py_dict_get(root, "state_dict");
    }
    pickle_doc_free(&doc);
    return 0;
}
