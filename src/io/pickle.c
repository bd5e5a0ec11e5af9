// Restricted unpickler (see pickle.h). The opcodes and their meaning follow
// CPython's Lib/pickletools.py, which documents each one; the machine is the
// same as pickle.py's _Unpickler: a value stack, a stack of MARK positions and a
// memo, one opcode at a time until STOP. Nothing is imported or called.
#include "io/pickle.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { BLOCK_VALUES = 256 };

void pickle_doc_init(PickleDoc *doc) { memset(doc, 0, sizeof(*doc)); }

void pickle_doc_free(PickleDoc *doc) {
    for (int b = 0; b < doc->num_blocks; b++) {
        int n = b == doc->num_blocks - 1 ? doc->used_in_last : BLOCK_VALUES;
        for (int i = 0; i < n; i++) {
            free(doc->blocks[b][i].s);
            free(doc->blocks[b][i].items);
        }
        free(doc->blocks[b]);
    }
    free(doc->blocks);
    memset(doc, 0, sizeof(*doc));
}

PyValue *py_new(PickleDoc *doc, PyKind kind) {
    if (doc->num_blocks == 0 || doc->used_in_last == BLOCK_VALUES) {
        PyValue **blocks = (PyValue **)realloc(doc->blocks, (size_t)(doc->num_blocks + 1) * sizeof(PyValue *));
        if (!blocks) return NULL;
        doc->blocks = blocks;
        blocks[doc->num_blocks] = (PyValue *)calloc(BLOCK_VALUES, sizeof(PyValue));
        if (!blocks[doc->num_blocks]) return NULL;
        doc->num_blocks++;
        doc->used_in_last = 0;
    }
    PyValue *v = &doc->blocks[doc->num_blocks - 1][doc->used_in_last++];
    v->kind = kind;
    return v;
}

static int py_push_item(PyValue *v, PyValue *item) {
    if (v->count == v->cap) {
        int cap = v->cap ? 2 * v->cap : 4;
        PyValue **items = (PyValue **)realloc(v->items, (size_t)cap * sizeof(PyValue *));
        if (!items) return SD_FAIL;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->count++] = item;
    return 0;
}

const char *py_kind_name(PyKind k) {
    static const char *names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "list",
                                  "tuple", "dict", "set", "global", "object", "storage", "tensor"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

const PyValue *py_dict_get(const PyValue *dict, const char *key) {
    if (!dict || dict->kind != PY_DICT) return NULL;
    for (int k = dict->count / 2 - 1; k >= 0; k--) {
        const PyValue *kv = dict->items[2 * k];
        if (kv->kind == PY_STR && strcmp(kv->s, key) == 0) return dict->items[2 * k + 1];
    }
    return NULL;
}

int py_is_global(const PyValue *v, const char *module_dot_name) {
    return v && v->kind == PY_GLOBAL && strcmp(v->s, module_dot_name) == 0;
}

void py_repr(const PyValue *v, char *out, size_t size) {
    if (!size) return;
    switch (v->kind) {
    case PY_NONE: snprintf(out, size, "None"); break;
    case PY_BOOL: snprintf(out, size, v->i ? "True" : "False"); break;
    case PY_INT: snprintf(out, size, "%lld", (long long)v->i); break;
    case PY_BIGINT: snprintf(out, size, "<%zu-byte int>", v->len); break;
    case PY_FLOAT: snprintf(out, size, "%.17g", v->f); break;
    case PY_STR: snprintf(out, size, "'%.*s%s'", v->len > 60 ? 60 : (int)v->len, v->s, v->len > 60 ? "..." : ""); break;
    case PY_BYTES: snprintf(out, size, "<%zu bytes>", v->len); break;
    case PY_LIST: case PY_TUPLE: case PY_SET:
        snprintf(out, size, "%s of %d item%s", py_kind_name(v->kind), v->count, v->count == 1 ? "" : "s");
        break;
    case PY_DICT: snprintf(out, size, "dict of %d key%s", v->count / 2, v->count == 2 ? "" : "s"); break;
    case PY_GLOBAL: snprintf(out, size, "<global %s>", v->s); break;
    case PY_OBJECT:
        snprintf(out, size, "<%s object>", v->cls && v->cls->kind == PY_GLOBAL ? v->cls->s : "unknown");
        break;
    case PY_STORAGE: snprintf(out, size, "<storage '%s', %lld elements>", v->s ? v->s : "", (long long)v->numel); break;
    case PY_TENSOR: {
        size_t n = (size_t)snprintf(out, size, "tensor (");
        for (int d = 0; d < v->ndim && n < size; d++) n += (size_t)snprintf(out + n, size - n, d ? ", %lld" : "%lld", (long long)v->size[d]);
        if (n < size) snprintf(out + n, size - n, ")");
        break;
    }
    }
}

// ---------------------------------------------------------------------------
// The machine.

typedef struct {
    const char *path;
    const unsigned char *buf;
    size_t size, pos;
    PickleDoc *doc;
    const PickleHooks *hooks;
    PyValue **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t num_marks, marks_cap;
    PyValue **memo;
    size_t memo_len;     // slots allocated
    size_t memo_next;    // MEMOIZE's next index
    size_t op_at;        // offset of the current opcode, for messages
    int op;
} Unpickler;

static int fail(Unpickler *u, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, detail ? detail : "");
    return sd_errorf("%s: pickle: %s (opcode 0x%02x at byte %zu)", u->path, msg, u->op, u->op_at);
}

static PyValue *new_value(Unpickler *u, PyKind k) {
    PyValue *v = py_new(u->doc, k);
    if (!v) sd_errorf("%s: out of memory reading the pickle", u->path);
    return v;
}

static int need(Unpickler *u, size_t n) {
    if (n > u->size - u->pos) return fail(u, "truncated: the data ends inside an opcode%s", NULL);
    return 0;
}

static uint64_t read_le(const unsigned char *p, int n) {
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

// The stack holds at most one value per byte read, so its size is bounded by the input.
static int push(Unpickler *u, PyValue *v) {
    if (!v) return SD_FAIL;
    if (u->sp == u->stack_cap) {
        size_t cap = u->stack_cap ? 2 * u->stack_cap : 64;
        PyValue **s = (PyValue **)realloc(u->stack, cap * sizeof(PyValue *));
        if (!s) return sd_errorf("%s: out of memory reading the pickle", u->path);
        u->stack = s;
        u->stack_cap = cap;
    }
    u->stack[u->sp++] = v;
    return 0;
}

static size_t mark_base(Unpickler *u) { return u->num_marks ? u->marks[u->num_marks - 1] : 0; }

static int pop(Unpickler *u, PyValue **out) {
    if (u->sp <= mark_base(u)) return fail(u, "stack underflow%s", NULL);
    *out = u->stack[--u->sp];
    return 0;
}

static int top(Unpickler *u, PyValue **out) {
    if (u->sp <= mark_base(u)) return fail(u, "stack underflow%s", NULL);
    *out = u->stack[u->sp - 1];
    return 0;
}

// Pops the values above the last MARK (and the mark): they are u->stack[*first .. u->sp).
static int pop_mark(Unpickler *u, size_t *first) {
    if (!u->num_marks) return fail(u, "no MARK to pop to%s", NULL);
    *first = u->marks[--u->num_marks];
    return 0;
}

static PyValue *make_sequence(Unpickler *u, PyKind kind, PyValue **items, size_t n) {
    PyValue *v = new_value(u, kind);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++)
        if (py_push_item(v, items[i])) { sd_errorf("%s: out of memory reading the pickle", u->path); return NULL; }
    return v;
}

static PyValue *make_string(Unpickler *u, PyKind kind, const unsigned char *p, size_t n) {
    PyValue *v = new_value(u, kind);
    if (!v) return NULL;
    v->s = (char *)malloc(n + 1);
    if (!v->s) { sd_errorf("%s: out of memory reading the pickle", u->path); return NULL; }
    memcpy(v->s, p, n);
    v->s[n] = '\0';
    v->len = n;
    return v;
}

static int memo_put(Unpickler *u, size_t index, PyValue *v) {
    // A real pickler numbers memo entries 0, 1, 2...: an index past the input size is hostile.
    if (index > u->size) return fail(u, "memo index out of range%s", NULL);
    if (index >= u->memo_len) {
        size_t len = u->memo_len ? u->memo_len : 64;
        while (len <= index) len *= 2;
        PyValue **m = (PyValue **)realloc(u->memo, len * sizeof(PyValue *));
        if (!m) return sd_errorf("%s: out of memory reading the pickle", u->path);
        memset(m + u->memo_len, 0, (len - u->memo_len) * sizeof(PyValue *));
        u->memo = m;
        u->memo_len = len;
    }
    u->memo[index] = v;
    return 0;
}

static int memo_get(Unpickler *u, size_t index) {
    if (index >= u->memo_len || !u->memo[index]) {
        char d[32];
        snprintf(d, sizeof(d), "%zu", index);
        return fail(u, "memo entry %s was never stored", d);
    }
    return push(u, u->memo[index]);
}

// Reads a newline-terminated argument of a text opcode (protocol 0 style).
static int read_line(Unpickler *u, const char **line, size_t *len) {
    const unsigned char *start = u->buf + u->pos;
    const unsigned char *nl = (const unsigned char *)memchr(start, '\n', u->size - u->pos);
    if (!nl) return fail(u, "truncated: a text argument has no end of line%s", NULL);
    *line = (const char *)start;
    *len = (size_t)(nl - start);
    u->pos += *len + 1;
    return 0;
}

static int parse_decimal(Unpickler *u, const char *line, size_t len, int64_t *out) {
    char tmp[32];
    if (len && line[len - 1] == 'L') len--;  // Python 2 long suffix
    if (len == 0 || len >= sizeof(tmp)) return fail(u, "bad decimal number%s", NULL);
    memcpy(tmp, line, len);
    tmp[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (*end || errno) return fail(u, "bad or too large decimal number '%s'", tmp);
    *out = v;
    return 0;
}

// Names that would run code if Python imported and called them: refused outright, so a
// hostile file is reported as such even though this reader never calls anything.
static int is_dangerous_global(const char *module, const char *name) {
    static const char *const modules[] = {"os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy",
                                          "pty", "socket", "webbrowser", "ctypes", "multiprocessing", "code",
                                          "codeop", "pickle", "_pickle", "marshal", "commands", "popen2", "platform",
                                          "pdb", "timeit", "signal", "asyncio", "threading", "_thread", "tempfile"};
    static const char *const builtins[] = {"eval", "exec", "execfile", "compile", "__import__", "getattr", "setattr",
                                           "delattr", "open", "input", "breakpoint", "globals", "locals", "vars",
                                           "apply", "exit", "quit", "help", "__builtins__"};
    size_t ml = strlen(module);
    for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
        size_t n = strlen(modules[i]);
        if (ml >= n && strncmp(module, modules[i], n) == 0 && (module[n] == '\0' || module[n] == '.')) return 1;
    }
    if (!strcmp(module, "builtins") || !strcmp(module, "__builtin__") || !strcmp(module, "__main__"))
        for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
            if (!strcmp(name, builtins[i])) return 1;
    return 0;
}

static int push_global(Unpickler *u, const char *module, size_t ml, const char *name, size_t nl) {
    if (memchr(module, 0, ml) || memchr(name, 0, nl)) return fail(u, "a global name holds a NUL byte%s", NULL);
    PyValue *g = new_value(u, PY_GLOBAL);
    if (!g) return SD_FAIL;
    g->s = (char *)malloc(ml + nl + 2);
    if (!g->s) return sd_errorf("%s: out of memory reading the pickle", u->path);
    memcpy(g->s, module, ml);
    g->s[ml] = '\0';
    memcpy(g->s + ml + 1, name, nl);
    g->s[ml + nl + 1] = '\0';
    const char *name_z = g->s + ml + 1;
    int refused = ml == 0 || is_dangerous_global(g->s, name_z);
    if (!refused && u->hooks && u->hooks->check_global) refused = u->hooks->check_global(u->hooks->ctx, g->s, name_z);
    if (refused) {
        char full[200];
        snprintf(full, sizeof(full), "%.*s.%.*s", (int)(ml > 90 ? 90 : ml), module, (int)(nl > 90 ? 90 : nl), name);
        return fail(u, "refused: the file names the global '%s', which would run code when loaded by Python; "
                       "nothing was executed",
                    full);
    }
    g->s[ml] = '.';
    g->len = ml + nl + 1;
    return push(u, g);
}

// latin-1 bytes of a UTF-8 string (_codecs.encode(s, 'latin1'), how protocol 2 pickles bytes).
static PyValue *latin1_bytes(Unpickler *u, const PyValue *s) {
    PyValue *b = make_string(u, PY_BYTES, (const unsigned char *)s->s, s->len);
    if (!b) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c < 0x80) b->s[n++] = (char)c;
        else if ((c & 0xE0) == 0xC0 && i + 1 < s->len && c <= 0xC3) {
            b->s[n++] = (char)(((c & 0x03) << 6) | ((unsigned char)s->s[i + 1] & 0x3F));
            i++;
        } else {
            fail(u, "_codecs.encode: a character outside latin-1%s", NULL);
            return NULL;
        }
    }
    b->len = n;
    b->s[n] = '\0';
    return b;
}

// REDUCE / NEWOBJ: callable(*args). Known plain-value constructors are built here, the
// caller's hook may build its own values, everything else becomes an inert placeholder.
static int do_reduce(Unpickler *u, PyValue *callable, PyValue *args) {
    if (args->kind != PY_TUPLE) return fail(u, "the arguments of a call are not a tuple%s", NULL);
    if (py_is_global(callable, "collections.OrderedDict") || py_is_global(callable, "builtins.dict") ||
        py_is_global(callable, "__builtin__.dict")) {
        PyValue *d = new_value(u, PY_DICT);
        if (!d) return SD_FAIL;
        if (args->count > 0) {  // OrderedDict([(k, v), ...])
            const PyValue *pairs = args->items[0];
            if (pairs->kind != PY_LIST && pairs->kind != PY_TUPLE) return fail(u, "dict() of a non-list%s", NULL);
            for (int i = 0; i < pairs->count; i++) {
                const PyValue *kv = pairs->items[i];
                if ((kv->kind != PY_TUPLE && kv->kind != PY_LIST) || kv->count != 2)
                    return fail(u, "dict() item is not a pair%s", NULL);
                if (py_push_item(d, kv->items[0]) || py_push_item(d, kv->items[1]))
                    return sd_errorf("%s: out of memory reading the pickle", u->path);
            }
        }
        return push(u, d);
    }
    if (py_is_global(callable, "builtins.set") || py_is_global(callable, "builtins.frozenset") ||
        py_is_global(callable, "__builtin__.set")) {
        PyValue *s = new_value(u, PY_SET);
        if (!s) return SD_FAIL;
        if (args->count > 0 && (args->items[0]->kind == PY_LIST || args->items[0]->kind == PY_TUPLE))
            for (int i = 0; i < args->items[0]->count; i++)
                if (py_push_item(s, args->items[0]->items[i])) return sd_errorf("out of memory");
        return push(u, s);
    }
    if (py_is_global(callable, "_codecs.encode") && args->count >= 1 && args->items[0]->kind == PY_STR)
        return push(u, latin1_bytes(u, args->items[0]));
    if (u->hooks && u->hooks->reduce) {
        PyValue *out = NULL;
        int rc = u->hooks->reduce(u->hooks->ctx, u->doc, callable, args, &out);
        if (rc < 0) return sd_error_context("%s: pickle (opcode 0x%02x at byte %zu)", u->path, u->op, u->op_at);
        if (rc > 0) return push(u, out);
    }
    PyValue *o = new_value(u, PY_OBJECT);
    if (!o) return SD_FAIL;
    o->cls = callable;
    o->args = args;
    return push(u, o);
}

// SETITEM(S) / APPEND(S) target: a dict or list, or the contents of a placeholder subclass.
static int container_for(Unpickler *u, PyValue *target, PyKind want, PyValue **out) {
    if (target->kind == want || (want == PY_LIST && target->kind == PY_SET)) { *out = target; return 0; }
    if (target->kind == PY_OBJECT) {
        if (!target->contents) {
            target->contents = new_value(u, want);
            if (!target->contents) return SD_FAIL;
        }
        if (target->contents->kind == want) { *out = target->contents; return 0; }
    }
    return fail(u, want == PY_DICT ? "SETITEM on a value that is not a dict%s" : "APPEND on a value that is not a list%s",
                NULL);
}

static int do_build(Unpickler *u) {
    PyValue *state, *obj;
    if (pop(u, &state) || top(u, &obj)) return SD_FAIL;
    if (obj->kind == PY_OBJECT) obj->state = state;
    // dicts (an OrderedDict's _metadata), tensors and others: attributes Python would set; nothing to keep
    return 0;
}

static int step(Unpickler *u, int *stopped) {
    u->op_at = u->pos;
    if (need(u, 1)) return SD_FAIL;
    int op = u->op = u->buf[u->pos++];
    PyValue *a, *b, *c;
    size_t first = 0, n = 0;
    const char *line;
    switch (op) {
    case 0x80:  // PROTO
        if (need(u, 1)) return SD_FAIL;
        if (u->buf[u->pos] > 5) return fail(u, "pickle protocol newer than 5%s", NULL);
        u->pos++;
        return 0;
    case 0x95:  // FRAME: an 8-byte length; the frame's opcodes follow inline
        if (need(u, 8)) return SD_FAIL;
        if (read_le(u->buf + u->pos, 8) > u->size - u->pos - 8) return fail(u, "a FRAME runs past the end%s", NULL);
        u->pos += 8;
        return 0;
    case '.':  // STOP
        *stopped = 1;
        return 0;
    case '(':  // MARK
        if (u->num_marks == u->marks_cap) {
            size_t cap = u->marks_cap ? 2 * u->marks_cap : 16;
            size_t *m = (size_t *)realloc(u->marks, cap * sizeof(size_t));
            if (!m) return sd_errorf("out of memory");
            u->marks = m;
            u->marks_cap = cap;
        }
        u->marks[u->num_marks++] = u->sp;
        return 0;
    case '0': return pop(u, &a);                    // POP
    case '1': return pop_mark(u, &first) ? SD_FAIL : (u->sp = first, 0);  // POP_MARK
    case '2': return top(u, &a) || push(u, a);      // DUP
    case 'N': return push(u, new_value(u, PY_NONE));
    case 0x88: case 0x89:                           // NEWTRUE, NEWFALSE
        if (!(a = new_value(u, PY_BOOL))) return SD_FAIL;
        a->i = op == 0x88;
        return push(u, a);
    case 'J': case 'K': case 'M': {                 // BININT (4, signed), BININT1, BININT2 (unsigned)
        int w = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if (need(u, (size_t)w) || !(a = new_value(u, PY_INT))) return SD_FAIL;
        uint64_t x = read_le(u->buf + u->pos, w);
        a->i = w == 4 ? (int64_t)(int32_t)(uint32_t)x : (int64_t)x;
        u->pos += (size_t)w;
        return push(u, a);
    }
    case 0x8a: case 0x8b: {                         // LONG1, LONG4: little-endian two's complement
        int w = op == 0x8a ? 1 : 4;
        if (need(u, (size_t)w)) return SD_FAIL;
        uint64_t len = read_le(u->buf + u->pos, w);
        u->pos += (size_t)w;
        if (op == 0x8b && (len >> 31)) return fail(u, "negative LONG4 length%s", NULL);
        if (need(u, (size_t)len)) return SD_FAIL;
        const unsigned char *p = u->buf + u->pos;
        u->pos += (size_t)len;
        if (len > 8) return push(u, make_string(u, PY_BIGINT, p, (size_t)len));
        if (!(a = new_value(u, PY_INT))) return SD_FAIL;
        uint64_t x = read_le(p, (int)len);
        if (len > 0 && len < 8 && (p[len - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * len);  // sign-extend
        a->i = (int64_t)x;
        return push(u, a);
    }
    case 'I': case 'L': {                           // INT, LONG (text); "I01"/"I00" are bools
        if (read_line(u, &line, &n)) return SD_FAIL;
        int64_t x;
        if (parse_decimal(u, line, n, &x)) return SD_FAIL;
        int is_bool = op == 'I' && n == 2 && line[0] == '0';
        if (!(a = new_value(u, is_bool ? PY_BOOL : PY_INT))) return SD_FAIL;
        a->i = x;
        return push(u, a);
    }
    case 'G': {                                     // BINFLOAT: big-endian double
        if (need(u, 8) || !(a = new_value(u, PY_FLOAT))) return SD_FAIL;
        uint64_t x = 0;
        for (int i = 0; i < 8; i++) x = x << 8 | u->buf[u->pos + i];
        memcpy(&a->f, &x, 8);
        u->pos += 8;
        return push(u, a);
    }
    case 'F': {                                     // FLOAT (text)
        if (read_line(u, &line, &n)) return SD_FAIL;
        char tmp[64];
        if (n == 0 || n >= sizeof(tmp)) return fail(u, "bad float%s", NULL);
        memcpy(tmp, line, n);
        tmp[n] = '\0';
        char *end;
        double f = strtod(tmp, &end);
        if (*end) return fail(u, "bad float '%s'", tmp);
        if (!(a = new_value(u, PY_FLOAT))) return SD_FAIL;
        a->f = f;
        return push(u, a);
    }
    case 'X': case 0x8c: case 0x8d:                 // BINUNICODE (4), SHORT_BINUNICODE (1), BINUNICODE8
    case 'B': case 'C': case 0x8e: case 0x96:       // BINBYTES (4), SHORT_BINBYTES (1), BINBYTES8, BYTEARRAY8
    case 'T': case 'U': {                           // BINSTRING (4), SHORT_BINSTRING (1): Python 2 str
        int w = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
        if (need(u, (size_t)w)) return SD_FAIL;
        uint64_t len = read_le(u->buf + u->pos, w);
        u->pos += (size_t)w;
        if (len > u->size - u->pos) return fail(u, "truncated: a string runs past the end of the data%s", NULL);
        PyKind k = (op == 'X' || op == 0x8c || op == 0x8d) ? PY_STR : PY_BYTES;
        if (!(a = make_string(u, k, u->buf + u->pos, (size_t)len))) return SD_FAIL;
        u->pos += (size_t)len;
        return push(u, a);
    }
    case ']': return push(u, new_value(u, PY_LIST));   // EMPTY_LIST
    case ')': return push(u, new_value(u, PY_TUPLE));  // EMPTY_TUPLE
    case '}': return push(u, new_value(u, PY_DICT));   // EMPTY_DICT
    case 0x8f: return push(u, new_value(u, PY_SET));   // EMPTY_SET
    case 0x85: case 0x86: case 0x87: {                 // TUPLE1, TUPLE2, TUPLE3
        size_t k = (size_t)(op - 0x84);
        if (u->sp < mark_base(u) + k) return fail(u, "stack underflow%s", NULL);
        u->sp -= k;
        return push(u, make_sequence(u, PY_TUPLE, u->stack + u->sp, k));
    }
    case 't': case 'l': case 0x91:                     // TUPLE, LIST, FROZENSET: the items since MARK
        if (pop_mark(u, &first)) return SD_FAIL;
        n = u->sp - first;
        u->sp = first;
        return push(u, make_sequence(u, op == 't' ? PY_TUPLE : op == 'l' ? PY_LIST : PY_SET, u->stack + first, n));
    case 'd':                                          // DICT: key, value pairs since MARK
        if (pop_mark(u, &first)) return SD_FAIL;
        if ((u->sp - first) % 2) return fail(u, "DICT with an odd number of items%s", NULL);
        n = u->sp - first;
        u->sp = first;
        return push(u, make_sequence(u, PY_DICT, u->stack + first, n));
    case 'a':                                          // APPEND
        if (pop(u, &a) || top(u, &b) || container_for(u, b, PY_LIST, &c)) return SD_FAIL;
        return py_push_item(c, a) ? sd_errorf("out of memory") : 0;
    case 'e': case 0x90:                               // APPENDS, ADDITEMS
        if (pop_mark(u, &first)) return SD_FAIL;
        n = u->sp - first;
        u->sp = first;
        if (top(u, &b) || container_for(u, b, PY_LIST, &c)) return SD_FAIL;
        for (size_t i = 0; i < n; i++)
            if (py_push_item(c, u->stack[first + i])) return sd_errorf("out of memory");
        return 0;
    case 's':                                          // SETITEM
        if (pop(u, &a) || pop(u, &b) || top(u, &c) || container_for(u, c, PY_DICT, &c)) return SD_FAIL;
        return (py_push_item(c, b) || py_push_item(c, a)) ? sd_errorf("out of memory") : 0;
    case 'u':                                          // SETITEMS
        if (pop_mark(u, &first)) return SD_FAIL;
        n = u->sp - first;
        u->sp = first;
        if (n % 2) return fail(u, "SETITEMS with an odd number of items%s", NULL);
        if (top(u, &b) || container_for(u, b, PY_DICT, &c)) return SD_FAIL;
        for (size_t i = 0; i < n; i++)
            if (py_push_item(c, u->stack[first + i])) return sd_errorf("out of memory");
        return 0;
    case 'c': {                                        // GLOBAL: "module\nname\n"
        const char *mod;
        size_t ml;
        if (read_line(u, &mod, &ml) || read_line(u, &line, &n)) return SD_FAIL;
        return push_global(u, mod, ml, line, n);
    }
    case 0x93:                                         // STACK_GLOBAL: module, name on the stack
        if (pop(u, &b) || pop(u, &a)) return SD_FAIL;
        if (a->kind != PY_STR || b->kind != PY_STR) return fail(u, "STACK_GLOBAL of non-strings%s", NULL);
        return push_global(u, a->s, a->len, b->s, b->len);
    case 'R':                                          // REDUCE: callable, args
        if (pop(u, &b) || pop(u, &a)) return SD_FAIL;
        return do_reduce(u, a, b);
    case 0x81:                                         // NEWOBJ: cls, args
        if (pop(u, &b) || pop(u, &a)) return SD_FAIL;
        return do_reduce(u, a, b);
    case 0x92:                                         // NEWOBJ_EX: cls, args, kwargs
        if (pop(u, &c) || pop(u, &b) || pop(u, &a)) return SD_FAIL;
        return do_reduce(u, a, b);
    case 'o':                                          // OBJ: MARK cls args... 
        if (pop_mark(u, &first)) return SD_FAIL;
        if (u->sp == first) return fail(u, "OBJ without a class%s", NULL);
        a = u->stack[first];
        b = make_sequence(u, PY_TUPLE, u->stack + first + 1, u->sp - first - 1);
        u->sp = first;
        return b ? do_reduce(u, a, b) : SD_FAIL;
    case 'i': {                                        // INST: "module\nname\n", MARK args...
        const char *mod;
        size_t ml;
        if (read_line(u, &mod, &ml) || read_line(u, &line, &n) || push_global(u, mod, ml, line, n) || pop(u, &a))
            return SD_FAIL;
        if (pop_mark(u, &first)) return SD_FAIL;
        b = make_sequence(u, PY_TUPLE, u->stack + first, u->sp - first);
        u->sp = first;
        return b ? do_reduce(u, a, b) : SD_FAIL;
    }
    case 'b': return do_build(u);                      // BUILD
    case 'Q':                                          // BINPERSID
    case 'P':                                          // PERSID (text)
        if (op == 'Q') {
            if (pop(u, &a)) return SD_FAIL;
        } else {
            if (read_line(u, &line, &n) || !(a = make_string(u, PY_STR, (const unsigned char *)line, n))) return SD_FAIL;
        }
        if (!u->hooks || !u->hooks->persistent_load) return fail(u, "a persistent id, but this file type has none%s", NULL);
        if (u->hooks->persistent_load(u->hooks->ctx, u->doc, a, &b))
            return sd_error_context("%s: pickle (opcode 0x%02x at byte %zu)", u->path, u->op, u->op_at);
        return push(u, b);
    case 0x94:                                         // MEMOIZE
        if (top(u, &a)) return SD_FAIL;
        return memo_put(u, u->memo_next++, a);
    case 'q': case 'r': {                              // BINPUT (1), LONG_BINPUT (4)
        int w = op == 'q' ? 1 : 4;
        if (need(u, (size_t)w) || top(u, &a)) return SD_FAIL;
        size_t idx = (size_t)read_le(u->buf + u->pos, w);
        u->pos += (size_t)w;
        return memo_put(u, idx, a);
    }
    case 'h': case 'j': {                              // BINGET (1), LONG_BINGET (4)
        int w = op == 'h' ? 1 : 4;
        if (need(u, (size_t)w)) return SD_FAIL;
        size_t idx = (size_t)read_le(u->buf + u->pos, w);
        u->pos += (size_t)w;
        return memo_get(u, idx);
    }
    case 'p': case 'g': {                              // PUT, GET (text)
        int64_t idx;
        if (read_line(u, &line, &n) || parse_decimal(u, line, n, &idx)) return SD_FAIL;
        if (idx < 0) return fail(u, "negative memo index%s", NULL);
        if (op == 'g') return memo_get(u, (size_t)idx);
        return top(u, &a) || memo_put(u, (size_t)idx, a);
    }
    case 'S': case 'V':
        return fail(u, "protocol-0 text strings are not supported%s (PyTorch writes protocol 2)", NULL);
    case 0x82: case 0x83: case 0x84:
        return fail(u, "extension registry opcodes (EXT1/2/4) are not supported%s", NULL);
    case 0x97: case 0x98:
        return fail(u, "out-of-band buffers (NEXT_BUFFER) are not supported%s", NULL);
    default:
        return fail(u, "unknown opcode%s: not a pickle, or a damaged one", NULL);
    }
}

int pickle_load(PickleDoc *doc, const char *path, const unsigned char *buf, size_t size, const PickleHooks *hooks,
                PyValue **root, size_t *consumed) {
    Unpickler u;
    memset(&u, 0, sizeof(u));
    u.path = path;
    u.buf = buf;
    u.size = size;
    u.doc = doc;
    u.hooks = hooks;
    *root = NULL;
    int stopped = 0, rc = 0;
    // a stack from the start: `u.stack + first` of an empty MARK ... DICT is then never NULL + 0
    u.stack_cap = 64;
    if (!(u.stack = (PyValue **)malloc(u.stack_cap * sizeof(PyValue *)))) return sd_errorf("out of memory");
    while (!stopped && !rc) rc = step(&u, &stopped);
    if (!rc) {
        if (u.sp != 1 || u.num_marks)
            rc = sd_errorf("%s: pickle: STOP with %zu values and %zu marks on the stack (expected one value)", path, u.sp,
                           u.num_marks);
        else *root = u.stack[0];
    }
    if (consumed) *consumed = u.pos;
    free(u.stack);
    free(u.marks);
    free(u.memo);
    return rc;
}
