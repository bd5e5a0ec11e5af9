// Recursive-descent JSON parser. Depth is bounded (JSON_MAX_DEPTH), numbers
// must follow the JSON grammar and be finite, strings must be valid UTF-8.
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/file.h"

typedef struct {
    const char *text;
    size_t len, pos;
    const char *source;
} Parser;

static int parse_error(const Parser *p, const char *what) {
    int line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->text[i] == '\n') { line++; col = 1; } else col++;
    }
    return sd_errorf("%s: invalid JSON at line %d, column %d (byte %zu): %s", p->source, line, col,
                     p->pos, what);
}

static void skip_space(Parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static int parse_value(Parser *p, JsonValue *v, int depth);

// Appends code point cp as UTF-8.
static int put_utf8(char *out, size_t *n, unsigned cp) {
    if (cp < 0x80) { out[(*n)++] = (char)cp; }
    else if (cp < 0x800) { out[(*n)++] = (char)(0xC0 | (cp >> 6)); out[(*n)++] = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
    return 0;
}

static int read_hex4(Parser *p, unsigned *out) {
    if (p->len - p->pos < 4) return parse_error(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->text[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else { p->pos--; return parse_error(p, "bad hex digit in \\u escape"); }
    }
    *out = v;
    return 0;
}

// Length of a valid UTF-8 sequence starting at s (max n bytes), 0 if invalid.
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return len;
}

static int parse_string(Parser *p, char **out) {
    // p->text[p->pos] == '"'. The decoded string is never longer than the source.
    p->pos++;
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->text[end] != '"') end += (p->text[end] == '\\') ? 2 : 1;
    if (end >= p->len) return parse_error(p, "unterminated string");
    char *s = (char *)malloc(end - start + 1);
    if (!s) return sd_errorf("%s: out of memory parsing JSON", p->source);
    size_t n = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c == '"') { p->pos++; s[n] = '\0'; *out = s; return 0; }
        if (c < 0x20) { free(s); return parse_error(p, "control character in string"); }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len) break;
            char e = p->text[p->pos++];
            unsigned cp;
            switch (e) {
            case '"': s[n++] = '"'; break;
            case '\\': s[n++] = '\\'; break;
            case '/': s[n++] = '/'; break;
            case 'b': s[n++] = '\b'; break;
            case 'f': s[n++] = '\f'; break;
            case 'n': s[n++] = '\n'; break;
            case 'r': s[n++] = '\r'; break;
            case 't': s[n++] = '\t'; break;
            case 'u':
                if (read_hex4(p, &cp)) { free(s); return SD_FAIL; }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->len - p->pos < 6 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
                        free(s);
                        return parse_error(p, "unpaired UTF-16 surrogate in \\u escape");
                    }
                    p->pos += 2;
                    if (read_hex4(p, &lo)) { free(s); return SD_FAIL; }
                    if (lo < 0xDC00 || lo > 0xDFFF) { free(s); return parse_error(p, "bad low surrogate"); }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(s);
                    return parse_error(p, "unpaired UTF-16 surrogate in \\u escape");
                }
                if (cp == 0) { free(s); return parse_error(p, "\\u0000 in string is not supported"); }
                put_utf8(s, &n, cp);  // 6-12 source bytes give at most 4 bytes
                break;
            default:
                p->pos--;
                free(s);
                return parse_error(p, "unknown escape in string");
            }
        } else {
            int l = utf8_len((const unsigned char *)p->text + p->pos, p->len - p->pos);
            if (l == 0) { free(s); return parse_error(p, "invalid UTF-8 in string"); }
            memcpy(s + n, p->text + p->pos, (size_t)l);
            n += (size_t)l;
            p->pos += (size_t)l;
        }
    }
    free(s);
    return parse_error(p, "unterminated string");
}

static int parse_number(Parser *p, JsonValue *v) {
    size_t start = p->pos, i = p->pos;
    const char *t = p->text;
    if (i < p->len && t[i] == '-') i++;
    if (i >= p->len || !(t[i] >= '0' && t[i] <= '9')) { p->pos = i; return parse_error(p, "bad number"); }
    if (t[i] == '0') i++;
    else while (i < p->len && t[i] >= '0' && t[i] <= '9') i++;
    if (i < p->len && t[i] == '.') {
        i++;
        if (i >= p->len || !(t[i] >= '0' && t[i] <= '9')) { p->pos = i; return parse_error(p, "bad number: digit expected after '.'"); }
        while (i < p->len && t[i] >= '0' && t[i] <= '9') i++;
    }
    if (i < p->len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < p->len && (t[i] == '+' || t[i] == '-')) i++;
        if (i >= p->len || !(t[i] >= '0' && t[i] <= '9')) { p->pos = i; return parse_error(p, "bad number: digit expected in exponent"); }
        while (i < p->len && t[i] >= '0' && t[i] <= '9') i++;
    }
    size_t n = i - start;
    if (n > 400) return parse_error(p, "number too long");
    char buf[512];
    memcpy(buf, t + start, n);
    buf[n] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (!isfinite(d) || (errno == ERANGE && fabs(d) > 1.0)) return parse_error(p, "number out of range");
    v->type = JSON_NUMBER;
    v->number = d;
    p->pos = i;
    return 0;
}

static int parse_literal(Parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return parse_error(p, "unexpected character");
    p->pos += n;
    return 0;
}

// Grows items (and keys) to hold one more.
static int push_item(Parser *p, JsonValue *v, int *cap, int with_key) {
    if (v->count < *cap) return 0;
    int ncap = *cap ? *cap * 2 : 4;
    JsonValue *items = (JsonValue *)realloc(v->items, (size_t)ncap * sizeof(JsonValue));
    if (!items) return sd_errorf("%s: out of memory parsing JSON", p->source);
    v->items = items;
    if (with_key) {
        char **keys = (char **)realloc(v->keys, (size_t)ncap * sizeof(char *));
        if (!keys) return sd_errorf("%s: out of memory parsing JSON", p->source);
        v->keys = keys;
    }
    *cap = ncap;
    return 0;
}

static int parse_array(Parser *p, JsonValue *v, int depth) {
    p->pos++;  // '['
    v->type = JSON_ARRAY;
    int cap = 0;
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == ']') { p->pos++; return 0; }
    for (;;) {
        if (push_item(p, v, &cap, 0)) return SD_FAIL;
        memset(&v->items[v->count], 0, sizeof(JsonValue));
        v->count++;
        if (parse_value(p, &v->items[v->count - 1], depth + 1)) return SD_FAIL;
        skip_space(p);
        if (p->pos >= p->len) return parse_error(p, "unterminated array");
        char c = p->text[p->pos++];
        if (c == ']') return 0;
        if (c != ',') { p->pos--; return parse_error(p, "expected ',' or ']' in array"); }
    }
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Duplicate keys are refused. Checked once the object is complete, on sorted
// keys: comparing each new key with all earlier ones was quadratic (a 1 MB
// object of 100k keys took 13 s; a safetensors header may be 100 MB).
static int check_duplicate_keys(Parser *p, const JsonValue *v) {
    if (v->count < 2) return 0;
    char **sorted = (char **)malloc((size_t)v->count * sizeof(char *));
    if (!sorted) return sd_errorf("%s: out of memory parsing JSON", p->source);
    memcpy(sorted, v->keys, (size_t)v->count * sizeof(char *));
    qsort(sorted, (size_t)v->count, sizeof(char *), cmp_key);
    int rc = 0;
    for (int i = 1; i < v->count && !rc; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            char what[128];
            Parser at = *p;
            at.pos--;  // the closing '}'
            snprintf(what, sizeof what, "duplicate key \"%.60s\" in the object ending here", sorted[i]);
            rc = parse_error(&at, what);
        }
    free(sorted);
    return rc;
}

static int parse_object(Parser *p, JsonValue *v, int depth) {
    p->pos++;  // '{'
    v->type = JSON_OBJECT;
    int cap = 0;
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == '}') { p->pos++; return 0; }
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len || p->text[p->pos] != '"') return parse_error(p, "expected a string key in object");
        if (push_item(p, v, &cap, 1)) return SD_FAIL;
        char *key = NULL;
        if (parse_string(p, &key)) return SD_FAIL;
        v->keys[v->count] = key;
        memset(&v->items[v->count], 0, sizeof(JsonValue));
        v->count++;
        skip_space(p);
        if (p->pos >= p->len || p->text[p->pos] != ':') return parse_error(p, "expected ':' after key");
        p->pos++;
        if (parse_value(p, &v->items[v->count - 1], depth + 1)) return SD_FAIL;
        skip_space(p);
        if (p->pos >= p->len) return parse_error(p, "unterminated object");
        char c = p->text[p->pos++];
        if (c == '}') return check_duplicate_keys(p, v);
        if (c != ',') { p->pos--; return parse_error(p, "expected ',' or '}' in object"); }
    }
}

static int parse_value(Parser *p, JsonValue *v, int depth) {
    if (depth > JSON_MAX_DEPTH) return parse_error(p, "nesting deeper than 64 levels");
    skip_space(p);
    if (p->pos >= p->len) return parse_error(p, "unexpected end of input");
    char c = p->text[p->pos];
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth);
    case '"': v->type = JSON_STRING; return parse_string(p, &v->string);
    case 't': v->type = JSON_BOOL; v->boolean = 1; return parse_literal(p, "true");
    case 'f': v->type = JSON_BOOL; v->boolean = 0; return parse_literal(p, "false");
    case 'n': v->type = JSON_NULL; return parse_literal(p, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        return parse_error(p, "unexpected character (NaN, Infinity and comments are not JSON)");
    }
}

int json_parse(const char *text, size_t len, const char *source, JsonValue *out) {
    Parser p = {text, len, 0, source ? source : "<json>"};
    memset(out, 0, sizeof(*out));
    if (parse_value(&p, out, 0)) { json_free(out); return SD_FAIL; }
    skip_space(&p);
    if (p.pos != p.len) {
        json_free(out);
        return parse_error(&p, "trailing characters after the JSON value");
    }
    return 0;
}

int json_parse_file(const char *path, JsonValue *out) {
    memset(out, 0, sizeof(*out));
    uint8_t *buf;
    size_t n;
    if (read_whole_file(path, &buf, &n, (size_t)256 << 20)) return SD_FAIL;
    int rc = json_parse((const char *)buf, n, path, out);
    free(buf);
    return rc;
}

void json_free(JsonValue *v) {
    if (!v) return;
    free(v->string);
    for (int i = 0; i < v->count; i++) {
        if (v->items) json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof(*v));
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

int json_as_int64(const JsonValue *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER) return SD_FAIL;
    double d = v->number;
    if (d != floor(d) || fabs(d) > 9007199254740992.0) return SD_FAIL;  // 2^53: exact in a double
    *out = (int64_t)d;
    return 0;
}

int json_as_int(const JsonValue *v, int *out) {
    int64_t i;
    if (json_as_int64(v, &i) || i < -2147483647 || i > 2147483647) return SD_FAIL;
    *out = (int)i;
    return 0;
}

int json_get_int(const JsonValue *obj, const char *key, int dflt, int *out) {
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) { *out = dflt; return 0; }
    if (json_as_int(v, out)) return sd_errorf("'%s': expected a whole number", key);
    return 0;
}

int json_get_double(const JsonValue *obj, const char *key, double dflt, double *out) {
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) { *out = dflt; return 0; }
    if (v->type != JSON_NUMBER) return sd_errorf("'%s': expected a number", key);
    *out = v->number;
    return 0;
}

int json_get_bool(const JsonValue *obj, const char *key, int dflt, int *out) {
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) { *out = dflt; return 0; }
    if (v->type != JSON_BOOL) return sd_errorf("'%s': expected true or false", key);
    *out = v->boolean;
    return 0;
}

int json_get_string(const JsonValue *obj, const char *key, const char *dflt, const char **out) {
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) { *out = dflt; return 0; }
    if (v->type != JSON_STRING) return sd_errorf("'%s': expected a string", key);
    *out = v->string;
    return 0;
}

int json_get_int_list(const JsonValue *obj, const char *key, int count, int *out) {
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) return sd_errorf("'%s': missing", key);
    int x;
    if (v->type == JSON_NUMBER) {
        if (json_as_int(v, &x)) return sd_errorf("'%s': expected a whole number", key);
        for (int i = 0; i < count; i++) out[i] = x;
        return 0;
    }
    if (v->type != JSON_ARRAY) return sd_errorf("'%s': expected a number or a list", key);
    if (v->count != count) return sd_errorf("'%s': %d entries, expected %d", key, v->count, count);
    for (int i = 0; i < count; i++)
        if (json_as_int(&v->items[i], &out[i])) return sd_errorf("'%s'[%d]: expected a whole number", key, i);
    return 0;
}

size_t json_escape(const char *s, char *buf, size_t size) {
    size_t n = 0;
#define PUT(ch) do { if (n + 1 < size) buf[n] = (ch); n++; } while (0)
    PUT('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') { PUT('\\'); PUT((char)*c); }
        else if (*c == '\n') { PUT('\\'); PUT('n'); }
        else if (*c == '\t') { PUT('\\'); PUT('t'); }
        else if (*c == '\r') { PUT('\\'); PUT('r'); }
        else if (*c < 0x20) {
            char tmp[8];
            snprintf(tmp, sizeof(tmp), "\\u%04x", *c);
            for (int i = 0; tmp[i]; i++) PUT(tmp[i]);
        } else PUT((char)*c);
    }
    PUT('"');
#undef PUT
    if (size) buf[n < size ? n : size - 1] = '\0';
    return n;
}
