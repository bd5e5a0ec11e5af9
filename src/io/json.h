// A small JSON parser (RFC 8259) for config.json, case.json and safetensors
// headers. Malformed input is rejected with its line and column.
#ifndef SD_JSON_H
#define SD_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue {
    JsonType type;
    int boolean;
    double number;
    char *string;             // JSON_STRING: UTF-8, NUL-terminated (embedded \u0000 rejected)
    int count;                // JSON_ARRAY / JSON_OBJECT: number of items
    struct JsonValue *items;  // the items (values of an object, in file order)
    char **keys;              // JSON_OBJECT: the keys, parallel to items
} JsonValue;

#define JSON_MAX_DEPTH 64

// Parses text[0..len). `source` names the file in error messages.
int json_parse(const char *text, size_t len, const char *source, JsonValue *out);
// Reads and parses a whole file.
int json_parse_file(const char *path, JsonValue *out);
void json_free(JsonValue *v);

// Look-ups. json_get returns NULL when obj is not an object or has no such key.
const JsonValue *json_get(const JsonValue *obj, const char *key);
// Typed look-ups with a default when the key is absent (or null). They fail
// (return -1 with a message naming `key`) when the key holds the wrong type.
int json_get_int(const JsonValue *obj, const char *key, int dflt, int *out);
int json_get_double(const JsonValue *obj, const char *key, double dflt, double *out);
int json_get_bool(const JsonValue *obj, const char *key, int dflt, int *out);
// *out points into obj (not a copy); dflt may be NULL.
int json_get_string(const JsonValue *obj, const char *key, const char *dflt, const char **out);
// An int array, or a single int repeated `count` times (diffusers allows both
// for attention_head_dim). Fails if the array length is not `count`.
int json_get_int_list(const JsonValue *obj, const char *key, int count, int *out);
// Whole number check for a number value: fits int64 exactly.
int json_as_int64(const JsonValue *v, int64_t *out);
// The same for an int: a whole number in -2^31+1 .. 2^31-1 (a cast of a larger one would wrap).
int json_as_int(const JsonValue *v, int *out);

// Appends the JSON text of s as a quoted, escaped string to buf (for writers).
// Returns the number of characters that would have been written.
size_t json_escape(const char *s, char *buf, size_t size);

#endif
