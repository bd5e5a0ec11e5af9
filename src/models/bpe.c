// The CLIP byte-level BPE tokenizer (see bpe.h and docs/text-encoder.md). Each step names the
// Python it reproduces (transformers 4.31 tokenization_clip.py / tokenization_utils.py).
#include "models/bpe.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "models/ftfy.h"
#include "models/unicode.h"
#include "models/unicode_tables.h"

// ---------------------------------------------------------------------------
// A growable buffer of token ids.
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
// Unicode look-ups in the generated tables.
static int regex_class(uint32_t cp) { return uni_lookup(uni_regex_class, uni_regex_class_count, cp); }
static int clean_class(uint32_t cp) { return uni_lookup(uni_clean_class, uni_clean_class_count, cp); }

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
    return uni_nfc(&tok->nfc, out, tmp);
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

// ---------------------------------------------------------------------------
// The clean-up with ftfy installed (ftfy.h), as CLIPTokenizer writes it:
// text = whitespace_clean(ftfy.fix_text(text)).lower().
static int is_regex_space(uint32_t cp) {
    for (int i = 0; i < uni_regex_space_count; i++)
        if (uni_regex_space[i] == cp) return 1;
    return 0;
}

// whitespace_clean: runs of the regex module's \s become one space, then str.strip() (Python's
// whitespace); then lower-case with final-sigma context over the whole text.
static int ftfy_clean(const ClipTokenizer *tok, const uint32_t *text, int n, CpBuf *out, CpBuf *tmp) {
    if (ftfy_fix_text(&tok->nfc, text, n, tmp)) return SD_FAIL;
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
    while (b < e && uni_python_class(spaced.v[b]) == UNI_PY_SPACE) b++;
    while (e > b && uni_python_class(spaced.v[e - 1]) == UNI_PY_SPACE) e--;
    out->n = 0;
    if (rc == 0) rc = uni_lower_append(spaced.v + b, e - b, out);
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
            rc = uni_lower_append(clean.v + i, j - i, &lower);
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
                while (b < e && uni_python_class(seg.v[b]) == UNI_PY_SPACE) b++;
            if (best >= 0 && tok->strip_left[best])
                while (e > b && uni_python_class(seg.v[e - 1]) == UNI_PY_SPACE) e--;
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
    if (load_vocab(tok, vocab_json) || load_merges(tok, merges_txt) || uni_nfc_init(&tok->nfc) ||
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
    uni_nfc_free(&tok->nfc);
    memset(tok, 0, sizeof(*tok));
}
