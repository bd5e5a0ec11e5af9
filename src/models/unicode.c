// Unicode text primitives (see unicode.h): UTF-8 as Python decodes it, str.lower(), NFC.
#include "models/unicode.h"

#include <stdlib.h>

#include "core/error.h"

int cp_push(CpBuf *b, uint32_t cp) {
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

int utf8_decode(const unsigned char *s, size_t len, CpBuf *out) { return utf8_decode_impl(s, len, out, 1); }
int utf8_try_decode(const unsigned char *s, size_t len, CpBuf *out) { return utf8_decode_impl(s, len, out, 0); }

size_t utf8_encode(uint32_t cp, char *out) {
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
int uni_lookup(const UniBreak *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;  // t[0].start == 0
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t[mid].start <= cp) lo = mid;
        else hi = mid - 1;
    }
    return t[lo].value;
}

int uni_python_class(uint32_t cp) { return uni_lookup(uni_py_class, uni_py_class_count, cp); }
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
int uni_lower_append(const uint32_t *w, int n, CpBuf *out) {
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
    const UniComposition *x = (const UniComposition *)a, *y = (const UniComposition *)b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->second != y->second) return x->second < y->second ? -1 : 1;
    return 0;
}

// The primary composite of first + second, or 0.
static uint32_t compose_pair(const UniNfc *nfc, uint32_t first, uint32_t second) {
    if (first >= HANGUL_L && first < HANGUL_L + 19 && second >= HANGUL_V && second < HANGUL_V + 21)
        return HANGUL_S + ((first - HANGUL_L) * 21 + (second - HANGUL_V)) * 28;
    if (first >= HANGUL_S && first < HANGUL_S + HANGUL_SCOUNT && (first - HANGUL_S) % 28 == 0 && second > HANGUL_T &&
        second < HANGUL_T + 28)
        return first + (second - HANGUL_T);
    UniComposition key = {first, second, 0};
    const UniComposition *c =
        (const UniComposition *)bsearch(&key, nfc->pairs, (size_t)nfc->n, sizeof(UniComposition), cmp_composition);
    return c ? c->composite : 0;
}

int uni_nfc(const UniNfc *nfc, CpBuf *b, CpBuf *tmp) {
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
            uint32_t c = compose_pair(nfc, b->v[starter], ch);
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

int uni_nfc_init(UniNfc *nfc) {
    int n = 0;
    for (int i = 0; i < uni_decomp_count; i++) n += uni_decomp[i].composes;
    nfc->pairs = (UniComposition *)malloc((size_t)n * sizeof(UniComposition));
    nfc->n = 0;
    if (!nfc->pairs) return sd_errorf("tokenizer: out of memory");
    for (int i = 0; i < uni_decomp_count; i++) {
        if (!uni_decomp[i].composes) continue;
        UniComposition c = {uni_decomp[i].first, uni_decomp[i].second, uni_decomp[i].cp};
        nfc->pairs[nfc->n++] = c;
    }
    qsort(nfc->pairs, (size_t)nfc->n, sizeof(UniComposition), cmp_composition);
    return 0;
}

void uni_nfc_free(UniNfc *nfc) {
    free(nfc->pairs);
    nfc->pairs = NULL;
    nfc->n = 0;
}
