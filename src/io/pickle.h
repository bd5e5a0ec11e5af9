// A restricted unpickler: reads Python pickles (protocols 2 to 5, and the few
// protocol-0 text opcodes those still use) into a tree of plain values, and
// never executes anything. Where Python would import a global and call it,
// this reader only records the name:
//   - a short list of known globals build plain values (collections.OrderedDict
//     and builtins.dict -> a dict, set/frozenset, _codecs.encode -> bytes);
//   - a caller hook may build its own values for other names (io/torch_file.c
//     turns torch._utils._rebuild_tensor_v2 and the storage classes into tensors);
//   - globals that run code (os.system, builtins.eval / exec / __import__ /
//     getattr, subprocess.*, webbrowser.*, ...) are refused by name;
//   - every other class becomes an inert placeholder (PY_OBJECT) that keeps its
//     class name, constructor arguments and BUILD state, and is never called.
// Every read is bounds-checked; the stack, the memo and string sizes are limited
// by the input's size, so a hostile pickle gets an error, not a huge allocation.
// Values are shared as Python shares them (the memo), so the tree may be a DAG or
// even cyclic: walkers must guard against cycles (PyValue.visiting, PICKLE_MAX_DEPTH).
#ifndef SD_PICKLE_H
#define SD_PICKLE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PY_NONE,
    PY_BOOL,     // i = 0 or 1
    PY_INT,      // i
    PY_BIGINT,   // an integer wider than 64 bits: s/len = little-endian two's complement bytes
    PY_FLOAT,    // f
    PY_STR,      // s/len: UTF-8, NUL-terminated
    PY_BYTES,    // s/len (also Python 2 str)
    PY_LIST,     // items[count]
    PY_TUPLE,    // items[count]
    PY_DICT,     // items[2 * k] = key, items[2 * k + 1] = value, in insertion order (count = 2 * keys)
    PY_SET,      // items[count]
    PY_GLOBAL,   // a class or function, s = "module.name"; never called
    PY_OBJECT,   // placeholder instance: cls (a PY_GLOBAL or other value), args, state (BUILD), contents
    PY_STORAGE,  // made by a caller hook (PyTorch: a storage record)
    PY_TENSOR,   // made by a caller hook (PyTorch: a view of a storage)
} PyKind;

#define PY_TENSOR_MAX_DIMS 8
#define PICKLE_MAX_DEPTH 100  // nesting a walker follows before calling the structure too deep

typedef struct PyValue PyValue;
struct PyValue {
    PyKind kind;
    int64_t i;
    double f;
    char *s;
    size_t len;
    PyValue **items;
    int count, cap;
    // PY_OBJECT: what the pickle said to call (never called), and what it set on the result
    PyValue *cls, *args, *state;
    PyValue *contents;  // items a dict or list subclass received (SETITEM / APPEND), or NULL
    // PY_STORAGE (s = record key): dtype (a DType of io/safetensors.h), numel elements at data
    int dtype;
    int64_t numel;
    const unsigned char *data;
    uint64_t data_bytes;
    // PY_TENSOR: storage[offset + sum(index[d] * stride[d])], elements of the storage's dtype
    PyValue *storage;
    int64_t offset;
    int ndim;
    int64_t size[PY_TENSOR_MAX_DIMS], stride[PY_TENSOR_MAX_DIMS];
    int visiting;  // walker scratch (cycle detection)
};

// All values of one or more pickles, freed together.
typedef struct {
    PyValue **blocks;
    int num_blocks, used_in_last;
} PickleDoc;

typedef struct {
    void *ctx;
    // BINPERSID / PERSID: turns the persistent id into a value (PyTorch: a storage).
    // Without it a persistent id is an error.
    int (*persistent_load)(void *ctx, PickleDoc *doc, PyValue *pid, PyValue **out);
    // REDUCE / NEWOBJ of a global the reader does not know: return 1 with *out set to build a
    // value, 0 to leave it an inert placeholder, SD_FAIL (-1) with a message to refuse it.
    int (*reduce)(void *ctx, PickleDoc *doc, const PyValue *callable, const PyValue *args, PyValue **out);
    // GLOBAL / STACK_GLOBAL: 1 to refuse the name (beyond the built-in list of code-running
    // names), 0 to accept it. May be NULL.
    int (*check_global)(void *ctx, const char *module, const char *name);
} PickleHooks;

void pickle_doc_init(PickleDoc *doc);
void pickle_doc_free(PickleDoc *doc);
// A new value of that kind, owned by doc (NULL when out of memory).
PyValue *py_new(PickleDoc *doc, PyKind kind);

// Reads one pickle from buf (up to its STOP opcode) into *root. *consumed (may be NULL)
// gets the number of bytes read. `path` names the file in messages. hooks may be NULL.
int pickle_load(PickleDoc *doc, const char *path, const unsigned char *buf, size_t size, const PickleHooks *hooks,
                PyValue **root, size_t *consumed);

// Helpers for walkers.
const char *py_kind_name(PyKind k);
// The value of a dict entry whose key is the string `key`, or NULL (the last one wins).
const PyValue *py_dict_get(const PyValue *dict, const char *key);
// 1 if v is a global named exactly "module.name".
int py_is_global(const PyValue *v, const char *module_dot_name);
// A short human-readable rendering of v (at most `size` bytes with the NUL): "12", "'text'",
// "<omegaconf.dictconfig.DictConfig>", "[3 items]", "{5 keys}", "tensor F32 (3, 4)".
void py_repr(const PyValue *v, char *out, size_t size);

#endif
