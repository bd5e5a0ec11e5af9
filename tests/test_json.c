// JSON parser: valid documents parse to the right values; malformed ones are
// rejected with a position, never a crash.
#include <time.h>

#include "io/json.h"
#include "core/error.h"
#include "tests/test_util.h"

static int parses(const char *s) {
    JsonValue v;
    int rc = json_parse(s, strlen(s), "test", &v);
    json_free(&v);
    return rc == 0;
}

static void test_valid(void) {
    JsonValue v;
    const char *doc = "{\"a\": 1, \"b\": [true, false, null, -2.5e3], \"c\": \"x\\u00e9\\ud83d\\ude00\\n\", \"d\": {}}";
    CHECK(json_parse(doc, strlen(doc), "doc", &v) == 0, "valid doc: %s", sd_last_error());
    int a = 0;
    CHECK(json_get_int(&v, "a", 0, &a) == 0 && a == 1, "a == 1");
    const JsonValue *b = json_get(&v, "b");
    CHECK(b && b->type == JSON_ARRAY && b->count == 4, "b is a 4-array");
    if (b && b->count == 4) {
        CHECK(b->items[0].type == JSON_BOOL && b->items[0].boolean == 1, "true");
        CHECK(b->items[2].type == JSON_NULL, "null");
        CHECK(b->items[3].number == -2500.0, "-2.5e3");
    }
    const char *c = NULL;
    CHECK(json_get_string(&v, "c", NULL, &c) == 0 && c && strcmp(c, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0,
          "unicode escapes decode to UTF-8");
    int missing = 7;
    CHECK(json_get_int(&v, "zzz", 7, &missing) == 0 && missing == 7, "default for a missing key");
    CHECK(json_get_int(&v, "c", 0, &missing) != 0 && strstr(sd_last_error(), "'c'"), "wrong type names the key");
    int list[3];
    CHECK(json_get_int_list(&v, "a", 3, list) == 0 && list[2] == 1, "an int repeated as a list");
    json_free(&v);
    CHECK(parses(" [ ] "), "empty array");
    CHECK(parses("0"), "zero");
    CHECK(parses("-0.0e-0"), "negative zero");
    CHECK(parses("\"\""), "empty string");
}

static void test_malformed(void) {
    const char *bad[] = {
        "",            "{",          "[1,]",          "{\"a\":}",       "{\"a\" 1}",     "{a:1}",
        "[1 2]",       "01",         "1.",            ".5",             "1e",            "+1",
        "NaN",         "[NaN]",      "Infinity",      "-Infinity",      "1e999",         "-1e999",
        "tru",         "nul",        "\"abc",         "\"\\x\"",        "\"\\u12\"",     "\"\\ud800\"",
        "\"\\udc00x\"", "\"a\tb\"",  "[1] 2",         "{\"a\":1,\"a\":2}", "\"\\u0000\"", "{\"a\":1,}",
        "// c\n1",     "[\"\xff\"]", "\"\xc0\xaf\"",  "\"\xed\xa0\x80\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sd_clear_error();
        int ok = parses(bad[i]);
        CHECK(!ok, "malformed JSON #%zu accepted: %s", i, bad[i]);
        CHECK(strstr(sd_last_error(), "line") != NULL, "error #%zu has a position: '%s'", i, sd_last_error());
    }
    // deep nesting: 64 levels pass, 10000 are rejected without blowing the stack
    char deep[20001];
    for (int n = 0; n < 2; n++) {
        int depth = n ? 10000 : 64;
        for (int i = 0; i < depth; i++) deep[i] = '[';
        for (int i = 0; i < depth; i++) deep[depth + i] = ']';
        deep[2 * depth] = '\0';
        CHECK(parses(deep) == (n == 0), "nesting depth %d", depth);
    }
    // huge numbers are rejected, not silently infinite; long digit strings fail cleanly
    char longnum[1000];
    memset(longnum, '9', sizeof(longnum) - 1);
    longnum[sizeof(longnum) - 1] = '\0';
    CHECK(!parses(longnum), "1000-digit number rejected");
    // every truncation of a valid document is rejected
    const char *doc = "{\"k\": [1, 2.5, \"s\\n\", {\"x\": null}], \"t\": true}";
    size_t n = strlen(doc);
    int all = 1;
    for (size_t len = 0; len < n; len++) {
        JsonValue v;
        if (json_parse(doc, len, "trunc", &v) == 0) { all = 0; json_free(&v); }
    }
    CHECK(all, "every truncation rejected");
    JsonValue v;
    CHECK(json_parse_file("/nonexistent/config.json", &v) != 0 && strstr(sd_last_error(), "/nonexistent/config.json"),
          "missing file named in the error");
}

static void test_int64(void) {
    JsonValue v;
    const char *s = "[9007199254740992, 9007199254740993, 1.5, -3]";
    CHECK(json_parse(s, strlen(s), "t", &v) == 0, "parse");
    int64_t x;
    CHECK(json_as_int64(&v.items[0], &x) == 0 && x == 9007199254740992LL, "2^53 ok");
    CHECK(json_as_int64(&v.items[2], &x) != 0, "1.5 is not whole");
    CHECK(json_as_int64(&v.items[3], &x) == 0 && x == -3, "-3");
    json_free(&v);
    char buf[64];
    json_escape("a\"b\\c\n\x01", buf, sizeof(buf));
    CHECK(strcmp(buf, "\"a\\\"b\\\\c\\n\\u0001\"") == 0, "escape: %s", buf);
}

// Found while fuzzing (docs/fuzzing.md).
static void test_fuzz_regressions(void) {
    // Duplicate keys were found by comparing each key with all earlier ones:
    // 100k keys (1 MB) took 13 s, a 100 MB safetensors header would take days.
    // Now sorted once per object; the error still names the key.
    int nkeys = 200000;
    char *big = (char *)malloc((size_t)nkeys * 32 + 64);  // "k199999":199999, is 17 bytes
    size_t n = 0;
    big[n++] = '{';
    for (int i = 0; i < nkeys; i++) n += (size_t)sprintf(big + n, "%s\"k%d\":%d", i ? "," : "", i, i);
    n += (size_t)sprintf(big + n, "}");
    JsonValue v;
    clock_t t0 = clock();
    int rc = json_parse(big, n, "big", &v);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(rc == 0 && v.count == nkeys, "%d keys: %s", nkeys, sd_last_error());
    CHECK(secs < 10.0, "%d keys parsed in %.1f s (was quadratic)", nkeys, secs);
    int x = 0;
    CHECK(json_get_int(&v, "k123456", 0, &x) == 0 && x == 123456, "k123456 = %d", x);
    json_free(&v);
    n -= 1;  // a duplicate of the first key at the end
    n += (size_t)sprintf(big + n, ",\"k0\":1}");
    CHECK(json_parse(big, n, "big", &v) != 0 && strstr(sd_last_error(), "duplicate key \"k0\"") &&
              strstr(sd_last_error(), "big: invalid JSON at line 1"),
          "duplicate among %d keys: %s", nkeys, sd_last_error());
    free(big);
    const char *nested = "{\"a\": {\"x\": 1, \"y\": 2, \"x\": 3}, \"b\": 0}";
    CHECK(!parses(nested) && strstr(sd_last_error(), "duplicate key \"x\""), "nested duplicate: %s", sd_last_error());
    CHECK(parses("{\"a\": {\"x\": 1}, \"b\": {\"x\": 1}}"), "same key in two objects is fine");
    // Int lists: a whole number outside int was silently wrapped ((int)4294967304 == 8).
    const char *doc = "{\"l\": [1, 4294967304], \"n\": -3000000000, \"ok\": [2147483647, -2147483647]}";
    CHECK(json_parse(doc, strlen(doc), "list", &v) == 0, "parse: %s", sd_last_error());
    int list[2];
    CHECK(json_get_int_list(&v, "l", 2, list) != 0 && strstr(sd_last_error(), "'l'[1]"), "%s", sd_last_error());
    CHECK(json_get_int_list(&v, "n", 2, list) != 0 && strstr(sd_last_error(), "'n'"), "%s", sd_last_error());
    CHECK(json_get_int_list(&v, "ok", 2, list) == 0 && list[0] == 2147483647 && list[1] == -2147483647, "int range");
    json_free(&v);
}

int main(void) {
    test_valid();
    test_malformed();
    test_int64();
    test_fuzz_regressions();
    return test_report("test_json");
}
