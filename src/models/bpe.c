// The CLIP byte-level BPE tokenizer (see bpe.h and docs/text-encoder.md). Each step names the
// Python it reproduces (transformers 4.31 tokenization_clip.py / tokenization_utils.py).
#include "models/bpe.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "models/unicode_tables.h"

// ---------------------------------------------------------------------------
// Growable buffers of code points and of ints.
typedef struct {
    uint32_t *v;
    int n, cap;
} CpBuf;

static int cp_push(CpBuf *b, uint32_t cp) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        uint32_t *v = (uint32_t *)realloc(b->v, (size_t)cap * sizeof(uint32_t));
        if (!v) return sd_errorf("tokenizer: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = cp;
    return 0;
}

typedef struct {
    int *v;
    int n, cap;
} IdBuf;

static int id_push(IdBuf *b, int id) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        int *v = (int *)realloc(b->v, (size_t)cap * sizeof(int));
        if (!v) return sd_errorf("tokenizer: out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return 0;
}

// ---------------------------------------------------------------------------
// String -> int map, open addressing with linear probing, FNV-1a hash.
static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int map_init(BpeStrMap *m, uint32_t expected) {
    uint32_t cap = 64;
    while (cap < expected * 2u) cap *= 2;
    m->keys = (char **)calloc(cap, sizeof(char *));
    m->values = (int *)calloc(cap, sizeof(int));
    m->capacity = cap;
    m->count = 0;
    if (!m->keys || !m->values) return sd_errorf("tokenizer: out of memory");
    return 0;
}

static void map_free(BpeStrMap *m) {
    for (uint32_t i = 0; i < m->capacity; i++) free(m->keys ? m->keys[i] : NULL);
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof(*m));
}

// Slot holding key[0..n), or the empty slot where it would go.
static uint32_t map_slot(const BpeStrMap *m, const char *key, size_t n) {
    uint32_t i = hash_bytes(key, n) & (m->capacity - 1);
    while (m->keys[i] && !(strncmp(m->keys[i], key, n) == 0 && m->keys[i][n] == '\0')) i = (i + 1) & (m->capacity - 1);
    return i;
}

static int map_get(const BpeStrMap *m, const char *key, size_t n) {
    if (!m->capacity) return -1;
    uint32_t i = map_slot(m, key, n);
    return m->keys[i] ? m->values[i] : -1;
}

// Inserts or overwrites (a later duplicate wins, as in a Python dict built in file order).
static int map_put(BpeStrMap *m, const char *key, size_t n, int value) {
    if ((m->count + 1) * 2 > m->capacity) {
        BpeStrMap bigger;
        if (map_init(&bigger, m->capacity)) return SD_FAIL;
        for (uint32_t i = 0; i < m->capacity; i++) {
            if (!m->keys[i]) continue;
            uint32_t j = map_slot(&bigger, m->keys[i], strlen(m->keys[i]));
            bigger.keys[j] = m->keys[i];
            bigger.values[j] = m->values[i];
            bigger.count++;
        }
        free(m->keys);
        free(m->values);
        *m = bigger;
    }
    uint32_t i = map_slot(m, key, n);
    if (!m->keys[i]) {
        char *k = (char *)malloc(n + 1);
        if (!k) return sd_errorf("tokenizer: out of memory");
        memcpy(k, key, n);
        k[n] = '\0';
        m->keys[i] = k;
        m->count++;
    }
    m->values[i] = value;
    return 0;
}

// ---------------------------------------------------------------------------
// UTF-8, strictly as Python's bytes.decode("utf-8"): no overlong forms, no surrogates, <= U+10FFFF.
// report: record a message on failure (else fail silently: ftfy's trial decodings).
static int utf8_decode_impl(const unsigned char *s, size_t len, CpBuf *out, int report) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        int n = 0;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        uint32_t cp;
        if (c < 0x80) { n = 1; cp = c; }
        else if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            if (!report) return SD_FAIL;
            return sd_errorf("text is not valid UTF-8: byte 0x%02X at offset %zu cannot start a character", c, i);
        }
        if (i + (size_t)n > len) {
            if (!report) return SD_FAIL;
            return sd_errorf("text is not valid UTF-8: character at offset %zu is cut off by the end of the text", i);
        }
        for (int k = 1; k < n; k++) {
            unsigned b = s[i + (size_t)k];
            unsigned bl = k == 1 ? lo : 0x80, bh = k == 1 ? hi : 0xBF;
            if (b < bl || b > bh) {
                if (!report) return SD_FAIL;
                return sd_errorf("text is not valid UTF-8: byte 0x%02X at offset %zu is not a valid continuation "
                                 "of the character at offset %zu", b, i + (size_t)k, i);
            }
            cp = (cp << 6) | (b & 0x3F);
        }
        if (cp_push(out, cp)) return SD_FAIL;
        i += (size_t)n;
    }
    return 0;
}

static int utf8_decode(const unsigned char *s, size_t len, CpBuf *out) { return utf8_decode_impl(s, len, out, 1); }

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ---------------------------------------------------------------------------
// Unicode look-ups in the generated tables.
static int uni_lookup(const UniBreak *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;  // t[0].start == 0
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    return t[lo].value;
}

static int regex_class(uint32_t cp) { return uni_lookup(uni_regex_class, uni_regex_class_count, cp); }
static int clean_class(uint32_t cp) { return uni_lookup(uni_clean_class, uni_clean_class_count, cp); }
static int case_prop(uint32_t cp) { return uni_lookup(uni_case_prop, uni_case_prop_count, cp); }
static int combining_class(uint32_t cp) { return uni_lookup(uni_ccc, uni_ccc_count, cp); }

// str.lower() of one code point, for every code point but U+0130 and U+03A3 (handled by the caller).
static uint32_t lower_simple(uint32_t cp) {
    int lo = 0, hi = uni_lower_runs_count - 1;
    if (cp < uni_lower_runs[0].start) return cp;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (uni_lower_runs[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    const UniLowerRun *r = &uni_lower_runs[lo];
    uint32_t off = cp - r->start;
    if (off % r->stride == 0 && off / r->stride < r->count) return (uint32_t)((int32_t)cp + r->delta);
    return cp;
}

// str.lower() of w[0..n), appended to out. U+0130 becomes "i" + U+0307; U+03A3 becomes final sigma
// U+03C2 when a Cased character precedes it and none follows (Case_Ignorable ones skipped both ways).
static int lower_append(const uint32_t *w, int n, CpBuf *out) {
    for (int i = 0; i < n; i++) {
        uint32_t cp = w[i];
        if (cp == 0x130) {
            if (cp_push(out, 'i') || cp_push(out, 0x307)) return SD_FAIL;
            continue;
        }
        if (cp == 0x3A3) {
            int j = i - 1;
            while (j >= 0 && case_prop(w[j]) == UNI_CASE_IGNORABLE) j--;
            int final = j >= 0 && case_prop(w[j]) == UNI_CASE_CASED;
            if (final) {
                j = i + 1;
                while (j < n && case_prop(w[j]) == UNI_CASE_IGNORABLE) j++;
                final = j == n || case_prop(w[j]) != UNI_CASE_CASED;
            }
            if (cp_push(out, final ? 0x3C2 : 0x3C3)) return SD_FAIL;
            continue;
        }
        if (cp_push(out, lower_simple(cp))) return SD_FAIL;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// NFC: full canonical decomposition, canonical ordering, canonical composition (UAX #15).
#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_SCOUNT 11172u

static const UniDecomp *find_decomp(uint32_t cp) {
    int lo = 0, hi = uni_decomp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_decomp[mid].cp == cp) return &uni_decomp[mid];
        if (uni_decomp[mid].cp < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static int decompose(uint32_t cp, CpBuf *out, int depth) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
        uint32_t s = cp - HANGUL_S, t = s % 28;
        if (cp_push(out, HANGUL_L + s / 588) || cp_push(out, HANGUL_V + (s % 588) / 28)) return SD_FAIL;
        return t ? cp_push(out, HANGUL_T + t) : 0;
    }
    const UniDecomp *d = depth < 8 ? find_decomp(cp) : NULL;
    if (!d) return cp_push(out, cp);
    if (decompose(d->first, out, depth + 1)) return SD_FAIL;
    return d->second ? decompose(d->second, out, depth + 1) : 0;
}

static int cmp_composition(const void *a, const void *b) {
    const BpeComposition *x = (const BpeComposition *)a, *y = (const BpeComposition *)b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->second != y->second) return x->second < y->second ? -1 : 1;
    return 0;
}

// The primary composite of first + second, or 0.
static uint32_t compose_pair(const ClipTokenizer *tok, uint32_t first, uint32_t second) {
    if (first >= HANGUL_L && first < HANGUL_L + 19 && second >= HANGUL_V && second < HANGUL_V + 21)
        return HANGUL_S + ((first - HANGUL_L) * 21 + (second - HANGUL_V)) * 28;
    if (first >= HANGUL_S && first < HANGUL_S + HANGUL_SCOUNT && (first - HANGUL_S) % 28 == 0 && second > HANGUL_T &&
        second < HANGUL_T + 28)
        return first + (second - HANGUL_T);
    BpeComposition key = {first, second, 0};
    const BpeComposition *c = (const BpeComposition *)bsearch(&key, tok->compositions, (size_t)tok->n_compositions,
                                                               sizeof(BpeComposition), cmp_composition);
    return c ? c->composite : 0;
}

// In place on b. tmp is scratch.
static int nfc(const ClipTokenizer *tok, CpBuf *b, CpBuf *tmp) {
    tmp->n = 0;
    for (int i = 0; i < b->n; i++)
        if (decompose(b->v[i], tmp, 0)) return SD_FAIL;
    // Canonical ordering: a stable insertion sort of each run of non-starters by combining class.
    uint32_t *s = tmp->v;
    int n = tmp->n;
    for (int i = 1; i < n; i++) {
        int ci = combining_class(s[i]);
        if (ci == 0) continue;
        int j = i;
        while (j > 0 && combining_class(s[j - 1]) > ci) {
            uint32_t t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
            j--;
        }
    }
    // Composition: a character joins the last starter unless a character of equal or higher class
    // stands between them (last_class: class of the last character kept; 0 means it is the starter).
    b->n = 0;
    int starter = -1, last_class = 0;
    for (int i = 0; i < n; i++) {
        uint32_t ch = s[i];
        int cls = combining_class(ch);
        if (starter >= 0 && (last_class < cls || last_class == 0)) {
            uint32_t c = compose_pair(tok, b->v[starter], ch);
            if (c) {
                b->v[starter] = c;
                continue;
            }
        }
        if (cls == 0) starter = b->n;
        last_class = cls;
        if (cp_push(b, ch)) return SD_FAIL;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize, the clean-up CLIPTokenizer
// uses without ftfy: _clean_text (drop control/format/unassigned/private-use characters, U+0000 and
// U+FFFD; whitespace to " "), spaces around CJK ideographs, NFC. Splitting on whitespace and
// lower-casing follow in encode_segment.
static int is_chinese_char(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int basic_clean(const ClipTokenizer *tok, const uint32_t *text, int n, CpBuf *out, CpBuf *tmp) {
    out->n = 0;
    for (int i = 0; i < n; i++) {
        uint32_t cp = text[i];
        int cls = clean_class(cp);
        if (cls == UNI_CLEAN_DROP) continue;
        if (cls == UNI_CLEAN_SPACE) cp = ' ';
        if (is_chinese_char(cp)) {
            if (cp_push(out, ' ') || cp_push(out, cp) || cp_push(out, ' ')) return SD_FAIL;
        } else if (cp_push(out, cp)) {
            return SD_FAIL;
        }
    }
    return nfc(tok, out, tmp);
}

// str.split() separators left after _clean_text: " " and the few kept characters str.isspace() accepts.
static int is_split_space(uint32_t cp) { return cp == ' ' || clean_class(cp) != UNI_CLEAN_KEEP; }

// ---------------------------------------------------------------------------
// CLIP's pre-tokenizer, re.findall with re.IGNORECASE of
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// Alternatives are tried in that order at each position (first match wins, not the longest).

// Case-insensitive match of one character against a lower-case ASCII letter or symbol, as the
// regex module folds: ASCII case, plus U+017F (long s) for s.
static int fold_eq(uint32_t cp, char want) {
    if (cp == (uint32_t)want) return 1;
    if (want >= 'a' && want <= 'z' && cp == (uint32_t)(want - 'a' + 'A')) return 1;
    return want == 's' && cp == 0x17F;
}

static int match_literal(const uint32_t *w, int n, int i, const char *lit) {
    int k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || !fold_eq(w[i + k], lit[k])) return 0;
    return k;
}

// Length of the match starting at w[i], or 0 if no alternative matches there.
static int pretoken_at(const uint32_t *w, int n, int i) {
    static const char *const literals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < sizeof(literals) / sizeof(literals[0]); k++) {
        int len = match_literal(w, n, i, literals[k]);
        if (len) return len;
    }
    int cls = regex_class(w[i]);
    if (cls == UNI_RX_NUMBER) return 1;
    if (cls == UNI_RX_NONE) return 0;
    int j = i + 1;
    while (j < n && regex_class(w[j]) == cls) j++;  // [\p{L}]+ or [^\s\p{L}\p{N}]+
    return j - i;
}

// ---------------------------------------------------------------------------
// CLIPTokenizer.bpe on one pre-token, appending the ids of its pieces.
// word: the UTF-8 of the token's bytes mapped through bytes_to_unicode(), then "</w>".
// Symbols are contiguous spans of word; a merge joins two neighbours.
typedef struct {
    int off, len;
} Span;

static int span_eq(const char *w, Span a, Span b) { return a.len == b.len && memcmp(w + a.off, w + b.off, (size_t)a.len) == 0; }

static int bpe_word(const ClipTokenizer *tok, const char *word, Span *sym, int n_sym, char *key, IdBuf *out) {
    while (n_sym > 1) {
        // The adjacent pair of lowest merge rank.
        int best = -1, best_rank = INT_MAX;
        for (int i = 0; i + 1 < n_sym; i++) {
            memcpy(key, word + sym[i].off, (size_t)sym[i].len);
            key[sym[i].len] = ' ';
            memcpy(key + sym[i].len + 1, word + sym[i + 1].off, (size_t)sym[i + 1].len);
            int rank = map_get(&tok->ranks, key, (size_t)(sym[i].len + 1 + sym[i + 1].len));
            if (rank >= 0 && rank < best_rank) {
                best_rank = rank;
                best = i;
            }
        }
        if (best < 0) break;
        // Merge every occurrence of (first, second), left to right, without overlaps.
        Span first = sym[best], second = sym[best + 1];
        int m = 0;
        for (int i = 0; i < n_sym;) {
            if (i + 1 < n_sym && span_eq(word, sym[i], first) && span_eq(word, sym[i + 1], second)) {
                sym[m].off = sym[i].off;
                sym[m].len = sym[i].len + sym[i + 1].len;
                i += 2;
            } else {
                sym[m] = sym[i];
                i++;
            }
            m++;
        }
        n_sym = m;
    }
    for (int i = 0; i < n_sym; i++) {
        int id = map_get(&tok->vocab, word + sym[i].off, (size_t)sym[i].len);
        if (id_push(out, id >= 0 ? id : tok->unk_id)) return SD_FAIL;
    }
    return 0;
}

static int encode_pretoken(const ClipTokenizer *tok, const uint32_t *p, int n, IdBuf *out) {
    // The bpe cache holds the two special strings: they map to themselves, then to their ids.
    static const char *const specials[] = {CLIP_BOS_TOKEN, CLIP_EOS_TOKEN};
    for (int k = 0; k < 2; k++) {
        int len = (int)strlen(specials[k]), same = len == n;
        for (int i = 0; same && i < n; i++) same = p[i] == (uint32_t)specials[k][i];
        if (same) {
            int id = map_get(&tok->vocab, specials[k], (size_t)len);
            return id_push(out, id >= 0 ? id : tok->unk_id);
        }
    }
    // Each UTF-8 byte becomes one stand-in character of at most 2 UTF-8 bytes; "</w>" closes the word.
    size_t cap = (size_t)n * 8 + 8;
    char *word = (char *)malloc(cap);
    char *key = (char *)malloc(cap + 1);
    Span *sym = (Span *)malloc((size_t)n * 4 * sizeof(Span));
    int rc = SD_FAIL;
    if (!word || !key || !sym) {
        sd_errorf("tokenizer: out of memory");
        goto done;
    }
    int wlen = 0, n_sym = 0;
    for (int i = 0; i < n; i++) {
        char bytes[4];
        size_t nb = utf8_encode(p[i], bytes);
        for (size_t b = 0; b < nb; b++) {
            const char *c = tok->byte_char[(unsigned char)bytes[b]];
            int cl = (int)strlen(c);
            memcpy(word + wlen, c, (size_t)cl);
            sym[n_sym].off = wlen;
            sym[n_sym].len = cl;
            n_sym++;
            wlen += cl;
        }
    }
    memcpy(word + wlen, "</w>", 4);
    sym[n_sym - 1].len += 4;
    rc = bpe_word(tok, word, sym, n_sym, key, out);
done:
    free(word);
    free(key);
    free(sym);
    return rc;
}

// ===========================================================================
// ftfy 6.1.1 fix_text with its default options, the clean-up CLIPTokenizer uses when ftfy is
// installed: text = whitespace_clean(ftfy.fix_text(text)).lower(). Each function names the ftfy
// function (ftfy/__init__.py, fixes.py, chardata.py, badness.py, bad_codecs/) it reproduces; the
// character classes and byte tables are generated from ftfy itself (unicode_tables.c).

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

static int py_class(uint32_t cp) { return uni_lookup(uni_py_class, uni_py_class_count, cp); }

// Is cp in class cls of ftfy's regexes (unicode_tables.h)?
static int ftfy_in(uint32_t cp, int cls) {
    switch (cls) {
    case UNI_FTFY_PY_SPACE: return py_class(cp) == UNI_PY_SPACE;
    case UNI_FTFY_PY_WORD: return py_class(cp) == UNI_PY_WORD || py_class(cp) == UNI_PY_DIGIT;
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
        if (i > start && utf8_decode_impl(b->v + start, (size_t)(i - start), out, 0)) return SD_FAIL;
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
                           : utf8_decode_impl(bytes.v, (size_t)bytes.n, (fixed.n = 0, &fixed), 0);
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
            while (j < t->n && (t->v[j] == ';' || py_class(t->v[j]) == UNI_PY_DIGIT)) j++;
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
static int fix_segment(const ClipTokenizer *tok, CpBuf *t, int unescape) {
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
        if (rc == 0) rc = nfc(tok, t, &tmp);
        if (rc == 0 && cp_same(&orig, t)) break;
    }
    free(orig.v);
    free(tmp.v);
    return rc;
}

// ftfy.fix_text: segments end after each "\n" (or every 1,000,000 characters); HTML unescaping is on
// until a segment holding "<" turns it off for that segment and every later one.
static int ftfy_fix_text(const ClipTokenizer *tok, const uint32_t *text, int n, CpBuf *out) {
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
        if (rc == 0) rc = fix_segment(tok, &seg, unescape);
        for (int i = 0; rc == 0 && i < seg.n; i++) rc = cp_push(out, seg.v[i]);
        pos = end;
    }
    free(seg.v);
    return rc;
}

static int is_regex_space(uint32_t cp) {
    for (int i = 0; i < uni_regex_space_count; i++)
        if (uni_regex_space[i] == cp) return 1;
    return 0;
}

// whitespace_clean(fix_text(text)).lower(): runs of the regex module's \s become one space, then
// str.strip() (Python's whitespace), then lower-case with final-sigma context over the whole text.
static int ftfy_clean(const ClipTokenizer *tok, const uint32_t *text, int n, CpBuf *out, CpBuf *tmp) {
    if (ftfy_fix_text(tok, text, n, tmp)) return SD_FAIL;
    CpBuf spaced = {0};
    int rc = 0;
    for (int i = 0; rc == 0 && i < tmp->n;) {
        if (is_regex_space(tmp->v[i])) {
            while (i < tmp->n && is_regex_space(tmp->v[i])) i++;
            rc = cp_push(&spaced, ' ');
        } else {
            rc = cp_push(&spaced, tmp->v[i++]);
        }
    }
    int b = 0, e = spaced.n;
    while (b < e && py_class(spaced.v[b]) == UNI_PY_SPACE) b++;
    while (e > b && py_class(spaced.v[e - 1]) == UNI_PY_SPACE) e--;
    out->n = 0;
    if (rc == 0) rc = lower_append(spaced.v + b, e - b, out);
    free(spaced.v);
    return rc;
}

// ---------------------------------------------------------------------------
// One piece of text between special tokens: clean-up (BASIC: then split on whitespace and lower-case
// each word; FTFY: lower-case the whole text), pre-tokenize, BPE. Stops once out holds `limit` ids
// (limit < 0: never); the first ids do not depend on what follows, so the result is the same as
// processing everything and truncating.
static int encode_words(const ClipTokenizer *tok, const uint32_t *w, int n, int limit, IdBuf *out) {
    for (int k = 0; k < n && (limit < 0 || out->n < limit);) {
        int len = pretoken_at(w, n, k);
        if (len == 0) {
            k++;
            continue;
        }
        if (encode_pretoken(tok, w + k, len, out)) return SD_FAIL;
        k += len;
    }
    return 0;
}

static int encode_segment(const ClipTokenizer *tok, const uint32_t *text, int n, int limit, IdBuf *out) {
    CpBuf clean = {0}, tmp = {0}, lower = {0};
    int rc;
    if (tok->cleaning == CLIP_CLEAN_FTFY) {
        rc = ftfy_clean(tok, text, n, &lower, &tmp);
        if (rc == 0) rc = encode_words(tok, lower.v, lower.n, limit, out);
    } else {
        rc = basic_clean(tok, text, n, &clean, &tmp);
        for (int i = 0; rc == 0 && i < clean.n && (limit < 0 || out->n < limit);) {
            if (is_split_space(clean.v[i])) {
                i++;
                continue;
            }
            int j = i;
            while (j < clean.n && !is_split_space(clean.v[j])) j++;
            lower.n = 0;
            rc = lower_append(clean.v + i, j - i, &lower);
            if (rc == 0) rc = encode_words(tok, lower.v, lower.n, limit, out);
            i = j;
        }
    }
    free(clean.v);
    free(tmp.v);
    free(lower.v);
    return rc;
}

// ---------------------------------------------------------------------------
// PreTrainedTokenizer.tokenize: the text is first cut at the special (no-split) tokens, matched
// exactly (case-sensitive) on the raw text: at each position the longest special token starting
// there, the leftmost position first (transformers' Trie.split for these tokens).
int clip_tokenize_raw(const ClipTokenizer *tok, const char *text, int limit, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (!text) return sd_errorf("tokenizer: text is NULL");
    size_t len = strlen(text);
    if (len > (size_t)INT_MAX / 8) return sd_errorf("tokenizer: text of %zu bytes is too long", len);
    CpBuf all = {0};
    if (utf8_decode((const unsigned char *)text, len, &all)) {
        free(all.v);
        return SD_FAIL;
    }
    free(all.v);  // decoded again per segment below; this pass only validates
    IdBuf out = {0};
    int rc = 0, prev = -1;  // prev: the special token before the current piece of text
    size_t seg_start = 0, i = 0;
    while (rc == 0 && i <= len && (limit < 0 || out.n < limit)) {
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; i < len && k < tok->n_special; k++) {
            size_t sl = strlen(tok->special[k]);
            if (sl > best_len && sl <= len - i && memcmp(text + i, tok->special[k], sl) == 0) {
                best = k;
                best_len = sl;
            }
        }
        if (best < 0 && i < len) {
            i++;
            continue;
        }
        // text[seg_start, i) is ordinary text (valid UTF-8: special tokens start on a character),
        // minus the whitespace (str.isspace) the special tokens around it strip.
        if (i > seg_start) {
            CpBuf seg = {0};
            rc = utf8_decode((const unsigned char *)text + seg_start, i - seg_start, &seg);
            int b = 0, e = seg.n;
            if (prev >= 0 && tok->strip_right[prev])
                while (b < e && py_class(seg.v[b]) == UNI_PY_SPACE) b++;
            if (best >= 0 && tok->strip_left[best])
                while (e > b && py_class(seg.v[e - 1]) == UNI_PY_SPACE) e--;
            if (rc == 0 && e > b) rc = encode_segment(tok, seg.v + b, e - b, limit, &out);
            free(seg.v);
        }
        if (best < 0) break;  // end of text
        if (rc == 0) rc = id_push(&out, tok->special_id[best]);
        i += best_len;
        seg_start = i;
        prev = best;
    }
    if (rc) {
        free(out.v);
        return SD_FAIL;
    }
    if (limit >= 0 && out.n > limit) out.n = limit;
    *ids = out.v;
    *n = out.n;
    return 0;
}

int clip_tokenize(const ClipTokenizer *tok, const char *text, int max_length, int64_t *ids) {
    if (max_length < 2) return sd_errorf("tokenizer: max_length %d must be at least 2 (start and end tokens)", max_length);
    int *body = NULL, n = 0;
    if (clip_tokenize_raw(tok, text, max_length - 2, &body, &n)) return SD_FAIL;
    // truncation=True cuts the text's tokens; then [bos] text [eos]; padding="max_length" fills.
    int k = 0;
    ids[k++] = tok->bos_id;
    for (int i = 0; i < n; i++) ids[k++] = body[i];
    ids[k++] = tok->eos_id;
    while (k < max_length) ids[k++] = tok->pad_id;
    free(body);
    return 0;
}

int clip_token_id(const ClipTokenizer *tok, const char *token) { return map_get(&tok->vocab, token, strlen(token)); }

// ---------------------------------------------------------------------------
// Loading.

// bytes_to_unicode(): printable Latin-1 bytes stand for themselves; the others (controls, space,
// 0x7F-0xA0, 0xAD) map in order to U+0100, U+0101, ...
static void build_byte_chars(ClipTokenizer *tok) {
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + next++);
        size_t k = utf8_encode(cp, tok->byte_char[b]);
        tok->byte_char[b][k] = '\0';
    }
}

static int load_vocab(ClipTokenizer *tok, const char *path) {
    JsonValue root;
    if (json_parse_file(path, &root)) return SD_FAIL;
    int rc = 0;
    if (root.type != JSON_OBJECT) rc = sd_errorf("%s: expected a JSON object {token: id}", path);
    if (rc == 0) rc = map_init(&tok->vocab, (uint32_t)root.count + 8);
    for (int i = 0; rc == 0 && i < root.count; i++) {
        int64_t id;
        if (json_as_int64(&root.items[i], &id) || id < 0 || id > INT_MAX) {
            rc = sd_errorf("%s: token '%s': expected a non-negative whole number id", path, root.keys[i]);
            break;
        }
        rc = map_put(&tok->vocab, root.keys[i], strlen(root.keys[i]), (int)id);
    }
    tok->vocab_size = (int)tok->vocab.count;
    json_free(&root);
    return rc;
}

static int read_text_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf("%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            char *b = (char *)realloc(buf, cap * 2 + 1);
            if (!b) break;
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return sd_errorf("%s: out of memory", path);
    if (err) {
        free(buf);
        return sd_errorf("%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// merges.txt as CLIPTokenizer reads it: read().strip().split("\n")[1 : 48894 + 1]: the first line
// (the "#version" header) is skipped whatever it holds; line k (from 0 after it) is rank k; a line
// that is not exactly two whitespace-separated symbols still uses its rank but never matches.
static int load_merges(ClipTokenizer *tok, const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (read_text_file(path, &text, &len)) return SD_FAIL;
    CpBuf check = {0};
    int rc = utf8_decode((const unsigned char *)text, len, &check);
    free(check.v);
    if (rc) {
        sd_error_context("%s", path);
        free(text);
        return SD_FAIL;
    }
    size_t b = 0, e = len;
    while (b < e && is_ascii_space(text[b])) b++;
    while (e > b && is_ascii_space(text[e - 1])) e--;
    rc = map_init(&tok->ranks, 65536);
    int line = -1;  // the header line
    size_t p = b;
    while (rc == 0 && p < e && line < CLIP_MAX_MERGES) {
        size_t q = p;
        while (q < e && text[q] != '\n') q++;
        if (line >= 0) {
            // Split text[p, q) on whitespace.
            size_t parts[3][2];
            int np = 0;
            for (size_t i = p; i < q && np < 3;) {
                while (i < q && is_ascii_space(text[i])) i++;
                if (i >= q) break;
                size_t s = i;
                while (i < q && !is_ascii_space(text[i])) i++;
                parts[np][0] = s;
                parts[np][1] = i;
                np++;
            }
            if (np == 2) {
                // The key is "first second" with one space, as bpe_word builds it.
                size_t l1 = parts[0][1] - parts[0][0], l2 = parts[1][1] - parts[1][0];
                char *key = (char *)malloc(l1 + l2 + 2);
                if (!key) rc = sd_errorf("%s: out of memory", path);
                else {
                    memcpy(key, text + parts[0][0], l1);
                    key[l1] = ' ';
                    memcpy(key + l1 + 1, text + parts[1][0], l2);
                    rc = map_put(&tok->ranks, key, l1 + 1 + l2, line);
                    free(key);
                }
            }
        }
        line++;
        p = q + 1;
    }
    free(text);
    if (rc == 0 && line < 0) rc = sd_errorf("%s: empty merges file", path);
    return rc;
}

static int build_compositions(ClipTokenizer *tok) {
    int n = 0;
    for (int i = 0; i < uni_decomp_count; i++) n += uni_decomp[i].composes;
    tok->compositions = (BpeComposition *)malloc((size_t)n * sizeof(BpeComposition));
    if (!tok->compositions) return sd_errorf("tokenizer: out of memory");
    n = 0;
    for (int i = 0; i < uni_decomp_count; i++) {
        if (!uni_decomp[i].composes) continue;
        BpeComposition c = {uni_decomp[i].first, uni_decomp[i].second, uni_decomp[i].cp};
        tok->compositions[n++] = c;
    }
    qsort(tok->compositions, (size_t)n, sizeof(BpeComposition), cmp_composition);
    tok->n_compositions = n;
    return 0;
}

// The special tokens and their ids. As from_pretrained's sanitize_special_tokens: a special token
// missing from the vocabulary is added with the next id (len(vocab) + number added so far), in the
// order bos, eos, unk, pad; the unknown token itself is never added, so it must be in the vocabulary.
static int set_specials(ClipTokenizer *tok, const char *vocab_path, const char *pad_token, const int pad_strip[2]) {
    const char *names[4] = {CLIP_BOS_TOKEN, CLIP_EOS_TOKEN, CLIP_EOS_TOKEN, pad_token ? pad_token : CLIP_EOS_TOKEN};
    if (!names[3][0]) return sd_errorf("tokenizer: the pad token is an empty string");
    if (clip_token_id(tok, CLIP_EOS_TOKEN) < 0)
        return sd_errorf("%s: the vocabulary has no '%s' (CLIP's end and unknown token)", vocab_path, CLIP_EOS_TOKEN);
    int ids[4], added = 0;
    tok->n_special = 0;
    for (int k = 0; k < 4; k++) {
        int dup = -1;
        for (int j = 0; j < tok->n_special; j++)
            if (strcmp(tok->special[j], names[k]) == 0) dup = j;
        if (dup >= 0) {
            ids[k] = tok->special_id[dup];
            continue;
        }
        int id = clip_token_id(tok, names[k]);
        if (id < 0) id = tok->vocab_size + added++;
        tok->special[tok->n_special] = strdup(names[k]);
        if (!tok->special[tok->n_special]) return sd_errorf("tokenizer: out of memory");
        tok->strip_left[tok->n_special] = k == 3 ? pad_strip[0] : 0;
        tok->strip_right[tok->n_special] = k == 3 ? pad_strip[1] : 0;
        tok->special_id[tok->n_special++] = id;
        ids[k] = id;
    }
    tok->bos_id = ids[0];
    tok->eos_id = ids[1];
    tok->unk_id = ids[2];
    tok->pad_id = ids[3];
    return 0;
}

// pad_strip: {strip_left, strip_right} of the pad token when it is not also bos/eos.
static int tokenizer_load(ClipTokenizer *tok, const char *vocab_json, const char *merges_txt, const char *pad_token,
                          const int pad_strip[2]) {
    memset(tok, 0, sizeof(*tok));
    build_byte_chars(tok);
    if (pad_token) {
        CpBuf check = {0};
        int bad = utf8_decode((const unsigned char *)pad_token, strlen(pad_token), &check);
        free(check.v);
        if (bad) return sd_error_context("pad token");
    }
    if (load_vocab(tok, vocab_json) || load_merges(tok, merges_txt) || build_compositions(tok) ||
        set_specials(tok, vocab_json, pad_token, pad_strip)) {
        clip_tokenizer_free(tok);
        return SD_FAIL;
    }
    return 0;
}

int clip_tokenizer_load(ClipTokenizer *tok, const char *vocab_json, const char *merges_txt, const char *pad_token) {
    const int plain_string[2] = {1, 1};
    return tokenizer_load(tok, vocab_json, merges_txt, pad_token, plain_string);
}

// "pad_token" of a tokenizer JSON file: a string (strips both sides) or an AddedToken {"content": "...",
// "lstrip": ..., "rstrip": ...}. NULL if absent.
static int read_pad_token(const char *path, char **out, int strip[2]) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;  // optional file
    fclose(f);
    JsonValue root;
    if (json_parse_file(path, &root)) return SD_FAIL;
    const JsonValue *v = json_get(&root, "pad_token");
    int rc = 0;
    strip[0] = strip[1] = 1;
    if (v && v->type == JSON_OBJECT) {
        // AddedToken.lstrip eats the whitespace on its left, rstrip on its right.
        if (json_get_bool(v, "lstrip", 0, &strip[0]) || json_get_bool(v, "rstrip", 0, &strip[1]))
            rc = sd_error_context("%s: pad_token", path);
        v = json_get(v, "content");
    }
    if (rc) {
    } else if (v && v->type == JSON_STRING) {
        *out = strdup(v->string);
        if (!*out) rc = sd_errorf("out of memory");
    } else if (v && v->type != JSON_NULL) {
        rc = sd_errorf("%s: 'pad_token' must be a string or an object with a string 'content'", path);
    }
    json_free(&root);
    return rc;
}

int clip_tokenizer_load_dir(ClipTokenizer *tok, const char *dir, const char *pad_token, int *max_length) {
    char vocab[4096], merges[4096], map_path[4096], config_path[4096];
    snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
    snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
    snprintf(map_path, sizeof(map_path), "%s/special_tokens_map.json", dir);
    snprintf(config_path, sizeof(config_path), "%s/tokenizer_config.json", dir);
    // from_pretrained: special_tokens_map.json overrides tokenizer_config.json; an argument overrides both.
    char *pad = NULL;
    int strip[2] = {1, 1};
    if (!pad_token) {
        if (read_pad_token(map_path, &pad, strip)) return SD_FAIL;
        if (!pad && read_pad_token(config_path, &pad, strip)) return SD_FAIL;
        if (!pad) strip[0] = strip[1] = 1;
    }
    if (max_length) {
        *max_length = CLIP_MAX_LENGTH;
        FILE *f = fopen(config_path, "rb");
        if (f) {
            fclose(f);
            JsonValue root;
            if (json_parse_file(config_path, &root)) {
                free(pad);
                return SD_FAIL;
            }
            int rc = json_get_int(&root, "model_max_length", CLIP_MAX_LENGTH, max_length);
            json_free(&root);
            if (rc || *max_length < 2) {
                free(pad);
                return sd_errorf("%s: 'model_max_length' must be a whole number >= 2", config_path);
            }
        }
    }
    int rc = tokenizer_load(tok, vocab, merges, pad_token ? pad_token : pad, strip);
    free(pad);
    return rc;
}

void clip_tokenizer_free(ClipTokenizer *tok) {
    map_free(&tok->vocab);
    map_free(&tok->ranks);
    for (int k = 0; k < 4; k++) free(tok->special[k]);
    free(tok->compositions);
    memset(tok, 0, sizeof(*tok));
}
