// ftfy 6.1.1 fix_text with its default options (see ftfy.h), the clean-up CLIPTokenizer uses when
// ftfy is installed: text = whitespace_clean(ftfy.fix_text(text)).lower(). Each function names the
// ftfy function (ftfy/__init__.py, fixes.py, chardata.py, badness.py, bad_codecs/) it reproduces;
// the character classes and byte tables are generated from ftfy itself (unicode_tables.c).
#include "models/ftfy.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/unicode_tables.h"

// Buffers of bytes (the text re-encoded with a candidate codec) and helpers on code point buffers.
typedef struct {
    unsigned char *v;
    int n, cap;
} ByteBuf;

static int byte_push(ByteBuf *b, unsigned c) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        unsigned char *v = (unsigned char *)realloc(b->v, (size_t)cap);
        if (!v) return sd_errorf("tokenizer: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (unsigned char)c;
    return 0;
}

static int cp_same(const CpBuf *a, const CpBuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, (size_t)a->n * sizeof(uint32_t)) == 0);
}

static int cp_assign(CpBuf *dst, const uint32_t *src, int n) {
    dst->n = 0;
    for (int i = 0; i < n; i++)
        if (cp_push(dst, src[i])) return SD_FAIL;
    return 0;
}

static void cp_swap(CpBuf *a, CpBuf *b) {
    CpBuf t = *a;
    *a = *b;
    *b = t;
}

// Is cp in class cls of ftfy's regexes (unicode_tables.h)?
static int ftfy_in(uint32_t cp, int cls) {
    switch (cls) {
    case UNI_FTFY_PY_SPACE: return uni_python_class(cp) == UNI_PY_SPACE;
    case UNI_FTFY_PY_WORD: return uni_python_class(cp) == UNI_PY_WORD || uni_python_class(cp) == UNI_PY_DIGIT;
    case UNI_FTFY_NOT_ASCII_LETTER: return !((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z'));
    case UNI_FTFY_NOT_NEWLINE: return cp != '\n';
    default: break;
    }
    int lo = 0, hi = uni_ftfy_class_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_ftfy_class[mid].cp == cp) return (int)((uni_ftfy_class[mid].mask[cls >> 6] >> (cls & 63)) & 1u);
        if (uni_ftfy_class[mid].cp < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

// badness.is_bad: BADNESS_RE.search(text) -- does any of its character sequences occur?
static int ftfy_is_bad(const uint32_t *t, int n) {
    for (int i = 0; i < n; i++) {
        for (int a = 0; a < uni_ftfy_bad_alts_count; a++) {
            const UniFtfyAlt *alt = &uni_ftfy_bad_alts[a];
            if ((alt->anchored && i > 0) || i + alt->n > n) continue;
            int k = 0;
            while (k < alt->n && ftfy_in(t[i + k], alt->cls[k])) k++;
            if (k == alt->n) return 1;
        }
    }
    return 0;
}

// chardata.possible_encoding(text, enc): every character is ASCII but U+001A, or decodes from a byte
// 0x80-0xFF or 0x1A in that codec.
static int charmap_has(int enc, uint32_t cp) {
    if (cp <= 0x19 || (cp >= 0x1B && cp <= 0x7F)) return 1;
    if (uni_ftfy_charmap[enc][0x1A] == cp) return 1;
    for (int b = 0x80; b < 0x100; b++)
        if (uni_ftfy_charmap[enc][b] == cp) return 1;
    return 0;
}

static int possible_encoding(int enc, const uint32_t *t, int n) {
    for (int i = 0; i < n; i++)
        if (!charmap_has(enc, t[i])) return 0;
    return 1;
}

// text.encode(enc) for a text possible_encoding accepted.
static int charmap_encode(int enc, const uint32_t *t, int n, ByteBuf *out) {
    out->n = 0;
    for (int i = 0; i < n; i++) {
        int byte = -1;
        if (t[i] < 0x100 && uni_ftfy_charmap[enc][t[i]] == t[i]) byte = (int)t[i];
        for (int b = 0; byte < 0 && b < 0x100; b++)
            if (uni_ftfy_charmap[enc][b] == t[i]) byte = b;
        if (byte < 0 || byte_push(out, (unsigned)byte)) return SD_FAIL;
    }
    return 0;
}

// A byte pattern: n classes, each a string of (low, high) byte pairs.
typedef struct {
    int n;
    const char *cls[6];
} BytePattern;

static int byte_in(unsigned char b, const char *pairs) {
    for (; pairs[0]; pairs += 2)
        if (b >= (unsigned char)pairs[0] && b <= (unsigned char)pairs[1]) return 1;
    return 0;
}

// Length of the first of pats matching at s[i], 0 if none (re's alternation order).
static int byte_match(const unsigned char *s, int n, int i, const BytePattern *pats, int n_pats) {
    for (int p = 0; p < n_pats; p++) {
        if (i + pats[p].n > n) continue;
        int k = 0;
        while (k < pats[p].n && byte_in(s[i + k], pats[p].cls[k])) k++;
        if (k == pats[p].n) return k;
    }
    return 0;
}

#define CONT_NO_85_A0 "\x80\x84\x86\x9f\xa1\xbf"
// chardata.ALTERED_UTF8_RE: UTF-8 sequences whose 0xA0 byte became a space.
static const BytePattern altered_utf8[] = {
    {2, {"\xc2\xc3\xc5\xc5\xce\xce\xd0\xd0\xd9\xd9", "  "}},
    {3, {"\xe2\xe3", "  ", CONT_NO_85_A0}},
    {3, {"\xe0\xe3", CONT_NO_85_A0, "  "}},
    {4, {"\xf0\xf0", "  ", "\x80\xbf", "\x80\xbf"}},
    {4, {"\xf0\xf0", "\x80\xbf", "  ", "\x80\xbf"}},
    {4, {"\xf0\xf0", "\x80\xbf", "\x80\xbf", "  "}},
};
// chardata.LOSSY_UTF8_RE: UTF-8 sequences with a byte lost to '?' or 0x1A (U+FFFD in sloppy codecs).
static const BytePattern lossy_utf8[] = {
    {2, {"\xc2\xdf", "\x1a\x1a"}},
    {2, {"\xc2\xc3", "\x3f\x3f"}},
    {6, {"\xed\xed", "\xa0\xaf", "\x1a\x1a\x3f\x3f", "\xed\xed", "\xb0\xbf", "\x1a\x1a\x3f\x3f\x80\xbf"}},
    {6, {"\xed\xed", "\xa0\xaf", "\x1a\x1a\x3f\x3f\x80\xbf", "\xed\xed", "\xb0\xbf", "\x1a\x1a\x3f\x3f"}},
    {3, {"\xe0\xef", "\x1a\x1a\x3f\x3f", "\x1a\x1a\x80\xbf"}},
    {3, {"\xe0\xef", "\x1a\x1a\x80\xbf", "\x1a\x1a\x3f\x3f"}},
    {4, {"\xf0\xf4", "\x1a\x1a\x3f\x3f", "\x1a\x1a\x80\xbf", "\x1a\x1a\x80\xbf"}},
    {4, {"\xf0\xf4", "\x1a\x1a\x80\xbf", "\x1a\x1a\x3f\x3f", "\x1a\x1a\x80\xbf"}},
    {4, {"\xf0\xf4", "\x1a\x1a\x80\xbf", "\x1a\x1a\x80\xbf", "\x1a\x1a\x3f\x3f"}},
    {1, {"\x1a\x1a"}},
};

static int altered_utf8_search(const ByteBuf *b) {
    for (int i = 0; i < b->n; i++)
        if (byte_match(b->v, b->n, i, altered_utf8, 6)) return 1;
    return 0;
}

static int a_grave_word_at(const unsigned char *s, int n, int i) {
    // A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )"
    if (i + 2 > n || s[i] != 0xC3 || s[i + 1] != ' ') return 0;
    const unsigned char *r = s + i + 2;
    int left = n - i - 2;
    static const char *const not_before[] = {" ", "quele", "quela", "quilo", "s "};
    for (int k = 0; k < 5; k++) {
        int len = (int)strlen(not_before[k]);
        if (left >= len && memcmp(r, not_before[k], (size_t)len) == 0) return 0;
    }
    return 1;
}

// fixes.restore_byte_a0: "\xc3 " -> "\xc3\xa0 " before a word, then the spaces of every
// ALTERED_UTF8_RE match -> 0xA0.
static int restore_byte_a0(const ByteBuf *in, ByteBuf *out) {
    ByteBuf mid = {0};
    int rc = 0;
    out->n = 0;
    for (int i = 0; rc == 0 && i < in->n;) {
        if (a_grave_word_at(in->v, in->n, i)) {
            rc = byte_push(&mid, 0xC3) || byte_push(&mid, 0xA0) || byte_push(&mid, ' ');
            i += 2;
        } else {
            rc = byte_push(&mid, in->v[i++]);
        }
    }
    for (int i = 0; rc == 0 && i < mid.n;) {
        int len = byte_match(mid.v, mid.n, i, altered_utf8, 6);
        if (!len) {
            rc = byte_push(out, mid.v[i++]);
            continue;
        }
        for (int k = 0; rc == 0 && k < len; k++) rc = byte_push(out, mid.v[i + k] == ' ' ? 0xA0 : mid.v[i + k]);
        i += len;
    }
    free(mid.v);
    return rc;
}

// fixes.replace_lossy_sequences: every LOSSY_UTF8_RE match -> the UTF-8 of U+FFFD.
static int replace_lossy_sequences(const ByteBuf *in, ByteBuf *out) {
    out->n = 0;
    for (int i = 0; i < in->n;) {
        int len = byte_match(in->v, in->n, i, lossy_utf8, 10);
        if (!len) {
            if (byte_push(out, in->v[i++])) return SD_FAIL;
            continue;
        }
        if (byte_push(out, 0xEF) || byte_push(out, 0xBF) || byte_push(out, 0xBD)) return SD_FAIL;
        i += len;
    }
    return 0;
}

// bad_codecs/utf8_variants.py, strict: UTF-8, plus C0 80 as U+0000 and CESU-8 surrogate pairs
// (ED A0-AF 80-BF ED B0-BF 80-BF) as one supplementary character. Returns -1 (quietly) on an error.
static int decode_utf8_variants(const ByteBuf *b, CpBuf *out) {
    out->n = 0;
    int i = 0, start = 0;
    while (i <= b->n) {
        const unsigned char *s = b->v + i;
        int left = b->n - i, special = 0;
        if (i < b->n && s[0] == 0xC0 && (left == 1 || s[1] == 0x80)) special = 1;
        if (i < b->n && s[0] == 0xED && (left == 1 || (s[1] >= 0xA0 && s[1] <= 0xBF))) special = 2;
        if (i < b->n && !special) {
            i++;
            continue;
        }
        // Plain UTF-8 up to the special sequence (or the end).
        if (i > start && utf8_try_decode(b->v + start, (size_t)(i - start), out)) return SD_FAIL;
        if (i == b->n) break;
        if (special == 1) {
            if (left == 1) return SD_FAIL;
            if (cp_push(out, 0)) return SD_FAIL;
            i += 2;
        } else {
            // CESU8_RE.match: "$" also matches before a final "\n", so a 6-byte tail ending in "\n" counts.
            int last_ok = left >= 6 && ((s[5] >= 0x80 && s[5] <= 0xBF) || (left == 6 && s[5] == '\n'));
            if (left < 6 || !(s[1] >= 0xA0 && s[1] <= 0xAF) || !(s[2] >= 0x80 && s[2] <= 0xBF) || s[3] != 0xED ||
                !(s[4] >= 0xB0 && s[4] <= 0xBF) || !last_ok)
                return SD_FAIL;
            uint32_t cp = ((uint32_t)(s[1] & 0x0F) << 16) + ((uint32_t)(s[2] & 0x3F) << 10) +
                          ((uint32_t)(s[4] & 0x0F) << 6) + (s[5] & 0x3F) + 0x10000;
            if (cp_push(out, cp)) return SD_FAIL;
            i += 6;
        }
        start = i;
    }
    return 0;
}

static int fix_encoding(CpBuf *text, int depth);

// chardata.UTF8_DETECTOR_RE match at t[p]: (?<![cont_strict])([f2][c]|[f3][c]{2}|[f4][c]{3})+, its end or -1.
static int utf8_detector_at(const uint32_t *t, int n, int p) {
    if (p > 0 && ftfy_in(t[p - 1], uni_ftfy_utf8_cont_strict)) return -1;
    const int firsts[3] = {uni_ftfy_utf8_first2, uni_ftfy_utf8_first3, uni_ftfy_utf8_first4};
    int q = p;
    for (;;) {
        int step = 0;
        for (int a = 0; a < 3 && !step; a++) {
            int len = a + 2;
            if (q + len > n || !ftfy_in(t[q], firsts[a])) continue;
            int k = 1;
            while (k < len && ftfy_in(t[q + k], uni_ftfy_utf8_cont)) k++;
            if (k == len) step = len;
        }
        if (!step) break;
        q += step;
    }
    return q > p ? q : -1;
}

// fixes.decode_inconsistent_utf8: each UTF8_DETECTOR_RE match shorter than the text that is_bad
// gets fix_encoding on its own.
static int decode_inconsistent_utf8(const CpBuf *text, CpBuf *out, int depth) {
    out->n = 0;
    CpBuf part = {0};
    int rc = 0;
    for (int p = 0; rc == 0 && p < text->n;) {
        int q = utf8_detector_at(text->v, text->n, p);
        if (q < 0) {
            rc = cp_push(out, text->v[p++]);
            continue;
        }
        rc = cp_assign(&part, text->v + p, q - p);
        if (rc == 0 && q - p < text->n && ftfy_is_bad(part.v, part.n)) rc = fix_encoding(&part, depth + 1);
        for (int k = 0; rc == 0 && k < part.n; k++) rc = cp_push(out, part.v[k]);
        p = q;
    }
    free(part.v);
    return rc;
}

// fixes.fix_c1_controls: U+0080-U+009F -> their sloppy-windows-1252 characters.
static void fix_c1_controls(CpBuf *t) {
    for (int i = 0; i < t->n; i++)
        if (t->v[i] >= 0x80 && t->v[i] <= 0x9F) t->v[i] = uni_ftfy_charmap[1][t->v[i]];
}

static int has_c1(const CpBuf *t) {
    for (int i = 0; i < t->n; i++)
        if (t->v[i] >= 0x80 && t->v[i] <= 0x9F) return 1;
    return 0;
}

// ftfy._fix_encoding_one_step_and_explain. *text is replaced by the result.
static int fix_encoding_one_step(CpBuf *text, int depth) {
    const uint32_t *t = text->v;
    const int n = text->n;
    int ascii = 1;
    for (int i = 0; i < n && ascii; i++) ascii = t[i] < 0x80;
    if (n == 0 || ascii || !ftfy_is_bad(t, n)) return 0;
    ByteBuf bytes = {0}, tmp = {0};
    CpBuf fixed = {0};
    int rc = 0, done = 0;
    // UTF-8 decoded as a single-byte codec: encode back, repair lost bytes, decode as UTF-8.
    for (int enc = 0; enc < 9 && rc == 0 && !done; enc++) {
        if (!possible_encoding(enc, t, n)) continue;
        rc = charmap_encode(enc, t, n, &bytes);
        if (rc == 0 && altered_utf8_search(&bytes)) {
            rc = restore_byte_a0(&bytes, &tmp);
            if (rc == 0) {
                ByteBuf s = bytes;
                bytes = tmp;
                tmp = s;
            }
        }
        if (rc == 0 && enc >= 1 && enc <= 5) {  // the sloppy-windows-125x codecs
            rc = replace_lossy_sequences(&bytes, &tmp);
            if (rc == 0) {
                ByteBuf s = bytes;
                bytes = tmp;
                tmp = s;
            }
        }
        if (rc) break;
        int variants = memchr(bytes.v, 0xED, (size_t)bytes.n) || memchr(bytes.v, 0xC0, (size_t)bytes.n);
        int bad = variants ? decode_utf8_variants(&bytes, &fixed)
                           : utf8_try_decode(bytes.v, (size_t)bytes.n, (fixed.n = 0, &fixed));
        if (!bad) done = 1;
    }
    if (rc == 0 && !done) {
        // Leftover UTF-8 mojibake in parts of the text.
        int found = 0;
        for (int p = 0; p < n && !found; p++) found = utf8_detector_at(t, n, p) >= 0;
        if (found) {
            rc = decode_inconsistent_utf8(text, &fixed, depth);
            done = rc == 0 && !cp_same(&fixed, text);
        }
    }
    if (rc == 0 && !done && possible_encoding(0, t, n)) {
        // Latin-1 meant as (strict) Windows-1252: C1 controls become punctuation.
        rc = cp_assign(&fixed, t, n);
        int ok = 1;
        for (int i = 0; rc == 0 && i < n && ok; i++) {
            uint32_t c = uni_ftfy_charmap[UNI_FTFY_WINDOWS_1252][t[i]];
            if (c == UNI_FTFY_UNDEFINED) ok = 0;
            else fixed.v[i] = c;
        }
        done = rc == 0 && ok && !cp_same(&fixed, text);
    }
    if (rc == 0 && !done && has_c1(text)) {
        rc = cp_assign(&fixed, t, n);
        fix_c1_controls(&fixed);
        done = 1;
    }
    if (rc == 0 && done) cp_swap(text, &fixed);
    free(bytes.v);
    free(tmp.v);
    free(fixed.v);
    return rc;
}

// ftfy.fix_encoding: one step at a time until nothing changes. (ftfy itself has no bound; a text that
// kept changing would hang it. We stop after 64 steps.)
static int fix_encoding(CpBuf *text, int depth) {
    if (depth > 16) return 0;
    CpBuf prev = {0};
    int rc = 0;
    for (int step = 0; step < 64 && rc == 0; step++) {
        rc = cp_assign(&prev, text->v, text->n);
        if (rc == 0) rc = fix_encoding_one_step(text, depth);
        if (rc == 0 && cp_same(&prev, text)) break;
    }
    free(prev.v);
    return rc;
}

// html.unescape of "&#<body>;" (body: 1-24 ASCII letters/digits), as ftfy's _unescape_fixup uses it:
// the replacement when html's charref regex consumes the whole body, else -1 (the entity is kept).
// *len gets 0 (an invalid code point: removed) or 1.
static int numeric_charref(const uint32_t *body, int n, uint32_t *out, int *len) {
    int hex = body[0] == 'x' || body[0] == 'X', i = hex ? 1 : 0, digits = 0;
    uint64_t num = 0;
    for (; i < n; i++) {
        uint32_t c = body[i];
        int d = c >= '0' && c <= '9' ? (int)(c - '0') : hex && c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
              : hex && c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10) : -1;
        if (d < 0) break;
        digits++;
        num = num * (hex ? 16u : 10u) + (uint64_t)d;
        if (num > 0x7FFFFFFF) num = 0x7FFFFFFF;  // saturate: anything above U+10FFFF gives U+FFFD
    }
    if (!digits || i < n) return -1;  // html leaves it, or leaves a tail with ";": ftfy keeps the entity
    *len = 1;
    if (num == 0) *out = 0xFFFD;
    else if (num == 0x0D) *out = '\r';
    else if (num >= 0x80 && num <= 0x9F) *out = uni_ftfy_charmap[1][num];  // html's cp1252 table
    else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) *out = 0xFFFD;
    else if ((num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F) || num == 0x7F ||
             (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        *len = 0;
    else *out = (uint32_t)num;
    if (*len == 1 && *out == ';') return -1;  // the result holds ";": ftfy keeps the entity
    return 0;
}

static int is_ascii_alnum(uint32_t c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// fixes.unescape_html: HTML_ENTITY_RE = "&#?[0-9A-Za-z]{1,24};" -> chardata.HTML_ENTITIES[...] or
// a numeric character reference; other matches stay.
static int unescape_html(const CpBuf *in, CpBuf *out) {
    out->n = 0;
    const uint32_t *t = in->v;
    for (int p = 0; p < in->n;) {
        int q = p + 1, numeric = 0, k = 0;
        if (t[p] == '&') {
            if (q < in->n && t[q] == '#') {
                q++;
                numeric = 1;
            }
            while (q + k < in->n && is_ascii_alnum(t[q + k])) k++;
        }
        if (t[p] != '&' || k < 1 || k > 24 || q + k >= in->n || t[q + k] != ';') {
            if (cp_push(out, t[p++])) return SD_FAIL;
            continue;
        }
        int end = q + k + 1, replaced = 0;
        if (!numeric) {
            char name[32];
            int m = 0;
            for (int i = p; i < end; i++) name[m++] = (char)t[i];
            name[m] = '\0';
            for (const char *e = uni_ftfy_html_entities; *e; e += strlen(e) + 1) {
                const char *value = e + strlen(e) + 1;
                if (strcmp(e, name) == 0) {
                    CpBuf v = {0};
                    if (utf8_decode((const unsigned char *)value, strlen(value), &v)) return SD_FAIL;
                    for (int i = 0; i < v.n; i++)
                        if (cp_push(out, v.v[i])) {
                            free(v.v);
                            return SD_FAIL;
                        }
                    free(v.v);
                    replaced = 1;
                    break;
                }
                e = value;
            }
        } else {
            uint32_t c;
            int len;
            if (numeric_charref(t + q, k, &c, &len) == 0) {
                if (len && cp_push(out, c)) return SD_FAIL;
                replaced = 1;
            }
        }
        for (int i = p; !replaced && i < end; i++)
            if (cp_push(out, t[i])) return SD_FAIL;
        p = end;
    }
    return 0;
}

static const UniFtfyMap *find_translation(uint32_t cp) {
    int lo = 0, hi = uni_ftfy_translate_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_ftfy_translate[mid].cp == cp) return &uni_ftfy_translate[mid];
        if (uni_ftfy_translate[mid].cp < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

// The character-level fixers after fix_encoding, in ftfy's order: fix_c1_controls,
// fix_latin_ligatures + fix_character_width (translation tables), uncurl_quotes, fix_line_breaks,
// (fix_surrogates: nothing to do on valid UTF-8), remove_terminal_escapes, remove_control_chars.
static int ftfy_char_fixers(CpBuf *t, CpBuf *tmp) {
    fix_c1_controls(t);
    tmp->n = 0;
    for (int i = 0; i < t->n; i++) {
        const UniFtfyMap *m = find_translation(t->v[i]);
        if (!m) {
            if (cp_push(tmp, t->v[i])) return SD_FAIL;
            continue;
        }
        for (int k = 0; k < 3 && m->to[k]; k++)
            if (cp_push(tmp, m->to[k])) return SD_FAIL;
    }
    // uncurl_quotes: [U+02BC U+2018-U+201B] -> ', [U+201C-U+201F] -> ".
    for (int i = 0; i < tmp->n; i++) {
        uint32_t c = tmp->v[i];
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) tmp->v[i] = '\'';
        else if (c >= 0x201C && c <= 0x201F) tmp->v[i] = '"';
    }
    // fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n.
    t->n = 0;
    for (int i = 0; i < tmp->n; i++) {
        uint32_t c = tmp->v[i];
        if (c == '\r' && i + 1 < tmp->n && tmp->v[i + 1] == '\n') continue;
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        if (cp_push(t, c)) return SD_FAIL;
    }
    // remove_terminal_escapes: ANSI_RE = "\033\[((?:\d|;)*)([a-zA-Z])" (\d: any Unicode decimal digit).
    tmp->n = 0;
    for (int i = 0; i < t->n;) {
        if (t->v[i] == 0x1B && i + 1 < t->n && t->v[i + 1] == '[') {
            int j = i + 2;
            while (j < t->n && (t->v[j] == ';' || uni_python_class(t->v[j]) == UNI_PY_DIGIT)) j++;
            if (j < t->n && ((t->v[j] >= 'a' && t->v[j] <= 'z') || (t->v[j] >= 'A' && t->v[j] <= 'Z'))) {
                i = j + 1;
                continue;
            }
        }
        if (cp_push(tmp, t->v[i++])) return SD_FAIL;
    }
    // remove_control_chars: chardata.CONTROL_CHARS.
    t->n = 0;
    for (int i = 0; i < tmp->n; i++) {
        uint32_t c = tmp->v[i];
        if (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
            c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
            continue;
        if (cp_push(t, c)) return SD_FAIL;
    }
    return 0;
}

// ftfy.fix_and_explain on one segment: every fixer, then NFC, repeated until nothing changes.
static int fix_segment(const UniNfc *nfc, CpBuf *t, int unescape) {
    CpBuf orig = {0}, tmp = {0};
    int rc = 0;
    for (int round = 0; round < 64 && rc == 0; round++) {
        rc = cp_assign(&orig, t->v, t->n);
        if (rc == 0 && unescape) {
            rc = unescape_html(t, &tmp);
            cp_swap(t, &tmp);
        }
        if (rc == 0) rc = fix_encoding(t, 0);
        if (rc == 0) rc = ftfy_char_fixers(t, &tmp);
        if (rc == 0) rc = uni_nfc(nfc, t, &tmp);
        if (rc == 0 && cp_same(&orig, t)) break;
    }
    free(orig.v);
    free(tmp.v);
    return rc;
}

// ftfy.fix_text: segments end after each "\n" (or every 1,000,000 characters); HTML unescaping is on
// until a segment holding "<" turns it off for that segment and every later one.
int ftfy_fix_text(const UniNfc *nfc, const uint32_t *text, int n, CpBuf *out) {
    CpBuf seg = {0};
    int rc = 0, unescape = 1;
    out->n = 0;
    for (int pos = 0; rc == 0 && pos < n;) {
        int end = pos;
        while (end < n && text[end] != '\n' && end - pos < 1000000) end++;
        if (end < n && text[end] == '\n' && end - pos < 1000000) end++;
        rc = cp_assign(&seg, text + pos, end - pos);
        for (int i = pos; i < end && unescape; i++)
            if (text[i] == '<') unescape = 0;
        if (rc == 0) rc = fix_segment(nfc, &seg, unescape);
        for (int i = 0; rc == 0 && i < seg.n; i++) rc = cp_push(out, seg.v[i]);
        pos = end;
    }
    free(seg.v);
    return rc;
}
