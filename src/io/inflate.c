// DEFLATE / zlib decoder (RFC 1951 / RFC 1950).
//
// A DEFLATE stream is a sequence of blocks: stored (raw bytes), fixed Huffman
// (code lengths given by the RFC) or dynamic Huffman (code lengths sent in the
// block header, themselves Huffman coded). Huffman codes are packed starting
// at the most significant bit of the code, into bytes starting at the least
// significant bit, so we decode with a table indexed by the next `max_len`
// input bits (bit-reversed codes, replicated over the unused high bits).
//
// The whole output lives in one buffer, so the "sliding window" is simply the
// output written so far: a back-reference may reach any earlier byte (zlib
// does the same; the window size in the zlib header is only checked for range).
#include "io/inflate.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define HUFF_MAX_BITS 15
#define MAX_LITLEN_CODES 288
#define MAX_DIST_CODES 32

// entry = (symbol << 4) | code length; length 0 marks a bit pattern that is not a code.
typedef struct {
    uint16_t entry[1 << HUFF_MAX_BITS];
    int max_len;
} HuffTable;

typedef struct {
    const uint8_t *in;
    size_t in_len;
    size_t pos;       // next input byte to load into bitbuf
    uint64_t bitbuf;  // unread bits, the next one in bit 0
    int bitcnt;
    uint8_t *out;
    size_t out_len, out_cap, max_out;
    int can_grow;     // 1: out is ours and may be realloc'd up to max_out
    int stop_when_full;  // 1: a full fixed buffer ends decoding without error
    int full;         // set when decoding stopped because the buffer is full
    HuffTable lit, dist, codelen;
} Inflater;

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                       33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
// Order in which the code-length code lengths are sent (RFC 1951 3.2.7).
static const uint8_t CODELEN_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

enum { TABLE_CODELEN, TABLE_LITLEN, TABLE_DIST };

// ---------------------------------------------------------------------------
// Bit input

static void refill(Inflater *s) {
    while (s->bitcnt <= 56 && s->pos < s->in_len) {
        s->bitbuf |= (uint64_t)s->in[s->pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
}

// Reads n <= 16 bits, first bit in the lowest position.
static int get_bits(Inflater *s, int n, uint32_t *v) {
    if (s->bitcnt < n) refill(s);
    if (s->bitcnt < n) return sd_errorf("inflate: compressed data truncated (input ends at byte %zu)", s->in_len);
    *v = (uint32_t)(s->bitbuf & ((1u << n) - 1));
    s->bitbuf >>= n;
    s->bitcnt -= n;
    return 0;
}

// Drops the bits up to the next byte boundary and gives the unread whole
// bytes of bitbuf back to the input, so s->pos is the next byte to read.
static void align_to_byte(Inflater *s) {
    s->bitcnt -= s->bitcnt % 8;
    s->pos -= (size_t)(s->bitcnt / 8);
    s->bitbuf = 0;
    s->bitcnt = 0;
}

// ---------------------------------------------------------------------------
// Huffman tables

// Builds the decode table of a canonical Huffman code from its code lengths
// (RFC 1951 3.2.2). Over-subscribed codes are errors; incomplete codes are
// errors except a single code of length 1 (allowed for literal/length and
// distance codes, as zlib does) and an empty distance code.
static int huff_build(HuffTable *t, const uint8_t *lengths, int n, int kind) {
    static const char *names[3] = {"code-length", "literal/length", "distance"};
    int count[HUFF_MAX_BITS + 1] = {0};
    int next_code[HUFF_MAX_BITS + 1];
    for (int i = 0; i < n; i++) count[lengths[i]]++;
    count[0] = 0;
    int max_len = 0;
    for (int len = 1; len <= HUFF_MAX_BITS; len++)
        if (count[len]) max_len = len;
    // Kraft sum: `left` = number of unused codes of the current length.
    int left = 1;
    for (int len = 1; len <= HUFF_MAX_BITS; len++) {
        left <<= 1;
        left -= count[len];
        if (left < 0) return sd_errorf("inflate: over-subscribed %s code lengths", names[kind]);
    }
    if (left > 0) {
        int empty_ok = (kind == TABLE_DIST && max_len == 0);
        int single_ok = (kind != TABLE_CODELEN && max_len == 1);
        if (!empty_ok && !single_ok) return sd_errorf("inflate: incomplete %s code lengths", names[kind]);
    }
    int code = 0;
    next_code[0] = 0;
    for (int len = 1; len <= HUFF_MAX_BITS; len++) {
        code = (code + count[len - 1]) << 1;
        next_code[len] = code;
    }
    t->max_len = max_len;
    int size = 1 << max_len;
    memset(t->entry, 0, (size_t)size * sizeof(t->entry[0]));
    for (int sym = 0; sym < n; sym++) {
        int len = lengths[sym];
        if (len == 0) continue;
        int c = next_code[len]++;
        int rev = 0;  // the code bit-reversed: its first bit is the first bit read
        for (int b = 0; b < len; b++) rev |= ((c >> b) & 1) << (len - 1 - b);
        for (int i = rev; i < size; i += 1 << len) t->entry[i] = (uint16_t)((sym << 4) | len);
    }
    return 0;
}

static int decode_symbol(Inflater *s, const HuffTable *t, int *sym) {
    if (s->bitcnt < t->max_len) refill(s);
    uint32_t idx = (uint32_t)(s->bitbuf & ((1u << t->max_len) - 1));
    int e = t->entry[idx];
    int len = e & 15;
    if (len == 0 || len > s->bitcnt) {
        if (s->bitcnt < t->max_len)
            return sd_errorf("inflate: compressed data truncated (input ends at byte %zu)", s->in_len);
        return sd_errorf("inflate: invalid Huffman code at input byte %zu", s->pos);
    }
    s->bitbuf >>= len;
    s->bitcnt -= len;
    *sym = e >> 4;
    return 0;
}

static int build_fixed_tables(Inflater *s) {
    uint8_t lengths[MAX_LITLEN_CODES];
    int i = 0;
    for (; i < 144; i++) lengths[i] = 8;
    for (; i < 256; i++) lengths[i] = 9;
    for (; i < 280; i++) lengths[i] = 7;
    for (; i < 288; i++) lengths[i] = 8;
    if (huff_build(&s->lit, lengths, MAX_LITLEN_CODES, TABLE_LITLEN)) return -1;
    // All 32 distance codes are 5 bits; 30 and 31 are then refused as symbols.
    for (i = 0; i < 32; i++) lengths[i] = 5;
    return huff_build(&s->dist, lengths, 32, TABLE_DIST);
}

static int read_dynamic_tables(Inflater *s) {
    uint32_t hlit, hdist, hclen, v;
    if (get_bits(s, 5, &hlit) || get_bits(s, 5, &hdist) || get_bits(s, 4, &hclen)) return -1;
    int nlit = (int)hlit + 257, ndist = (int)hdist + 1, ncodelen = (int)hclen + 4;
    if (nlit > 286) return sd_errorf("inflate: dynamic block declares %d literal/length codes (max 286)", nlit);
    if (ndist > 30) return sd_errorf("inflate: dynamic block declares %d distance codes (max 30)", ndist);
    uint8_t cl_lengths[19] = {0};
    for (int i = 0; i < ncodelen; i++) {
        if (get_bits(s, 3, &v)) return -1;
        cl_lengths[CODELEN_ORDER[i]] = (uint8_t)v;
    }
    if (huff_build(&s->codelen, cl_lengths, 19, TABLE_CODELEN)) return -1;
    uint8_t lengths[286 + 30];
    int n = 0, total = nlit + ndist;
    while (n < total) {
        int sym;
        if (decode_symbol(s, &s->codelen, &sym)) return -1;
        if (sym < 16) {
            lengths[n++] = (uint8_t)sym;
            continue;
        }
        int repeat, value = 0;
        if (sym == 16) {  // copy the previous length 3..6 times
            if (n == 0) return sd_errorf("inflate: code-length repeat with no previous length");
            if (get_bits(s, 2, &v)) return -1;
            value = lengths[n - 1];
            repeat = 3 + (int)v;
        } else if (sym == 17) {  // 3..10 zeros
            if (get_bits(s, 3, &v)) return -1;
            repeat = 3 + (int)v;
        } else {  // 18: 11..138 zeros
            if (get_bits(s, 7, &v)) return -1;
            repeat = 11 + (int)v;
        }
        if (n + repeat > total)
            return sd_errorf("inflate: code-length repeat runs past the %d declared codes", total);
        memset(lengths + n, value, (size_t)repeat);
        n += repeat;
    }
    if (lengths[256] == 0) return sd_errorf("inflate: dynamic block has no end-of-block code");
    if (huff_build(&s->lit, lengths, nlit, TABLE_LITLEN)) return -1;
    if (huff_build(&s->dist, lengths + nlit, ndist, TABLE_DIST)) return -1;
    return 0;
}

// ---------------------------------------------------------------------------
// Output

static int ensure_space(Inflater *s, size_t n) {
    if (n <= s->out_cap - s->out_len) return 0;
    if (!s->can_grow || n > s->max_out - s->out_len)
        return sd_errorf("inflate: decompressed data exceeds the limit of %zu bytes",
                         s->can_grow ? s->max_out : s->out_cap);
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap - s->out_len < n) cap = cap > s->max_out / 2 ? s->max_out : cap * 2;
    if (cap > s->max_out) cap = s->max_out;
    uint8_t *p = (uint8_t *)realloc(s->out, cap);
    if (!p) return sd_errorf("inflate: out of memory growing output to %zu bytes", cap);
    s->out = p;
    s->out_cap = cap;
    return 0;
}

// Makes room for n more bytes. In stop-when-full mode, clips *n to the space
// left and flags the stream as finished instead of failing.
static int make_room(Inflater *s, size_t *n) {
    if (s->stop_when_full && *n > s->out_cap - s->out_len) {
        *n = s->out_cap - s->out_len;
        s->full = 1;
        return 0;
    }
    return ensure_space(s, *n);
}

static int inflate_stored(Inflater *s) {
    align_to_byte(s);
    if (s->in_len - s->pos < 4) return sd_errorf("inflate: stored block header truncated");
    const uint8_t *p = s->in + s->pos;
    unsigned len = p[0] | (unsigned)p[1] << 8, nlen = p[2] | (unsigned)p[3] << 8;
    if (len != (~nlen & 0xffffu))
        return sd_errorf("inflate: stored block length %u does not match its complement %u", len, nlen);
    s->pos += 4;
    if (s->in_len - s->pos < len)
        return sd_errorf("inflate: stored block of %u bytes truncated (%zu bytes left)", len, s->in_len - s->pos);
    const uint8_t *src = s->in + s->pos;
    s->pos += len;
    size_t n = len;
    if (make_room(s, &n)) return -1;
    if (n > 0) memcpy(s->out + s->out_len, src, n);
    s->out_len += n;
    return 0;
}

// Decodes literal/length + distance symbols until end-of-block (RFC 1951 3.2.5).
static int inflate_huffman(Inflater *s) {
    for (;;) {
        int sym;
        if (decode_symbol(s, &s->lit, &sym)) return -1;
        if (sym < 256) {
            if (s->out_len == s->out_cap) {
                size_t one = 1;
                if (make_room(s, &one)) return -1;
                if (s->full) return 0;
            }
            s->out[s->out_len++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) return 0;
        sym -= 257;
        if (sym >= 29) return sd_errorf("inflate: invalid length symbol %d", sym + 257);
        uint32_t extra;
        if (get_bits(s, LEN_EXTRA[sym], &extra)) return -1;
        size_t len = LEN_BASE[sym] + extra;
        int dsym;
        if (decode_symbol(s, &s->dist, &dsym)) return -1;
        if (dsym >= 30) return sd_errorf("inflate: invalid distance symbol %d", dsym);
        if (get_bits(s, DIST_EXTRA[dsym], &extra)) return -1;
        size_t dist = DIST_BASE[dsym] + extra;
        if (dist > s->out_len)
            return sd_errorf("inflate: distance %zu too far back (only %zu bytes written)", dist, s->out_len);
        if (make_room(s, &len)) return -1;
        uint8_t *dst = s->out + s->out_len;
        const uint8_t *src = dst - dist;
        if (dist >= len) {
            memcpy(dst, src, len);
        } else {  // overlapping copy repeats the last `dist` bytes
            for (size_t i = 0; i < len; i++) dst[i] = src[i];
        }
        s->out_len += len;
        if (s->full) return 0;
    }
}

static int inflate_blocks(Inflater *s) {
    uint32_t final, type;
    do {
        if (get_bits(s, 1, &final) || get_bits(s, 2, &type)) return -1;
        int rc;
        if (type == 0) {
            rc = inflate_stored(s);
        } else if (type == 1) {
            rc = build_fixed_tables(s);
            if (!rc) rc = inflate_huffman(s);
        } else if (type == 2) {
            rc = read_dynamic_tables(s);
            if (!rc) rc = inflate_huffman(s);
        } else {
            rc = sd_errorf("inflate: invalid block type 3");
        }
        if (rc) return -1;
        if (s->full) return 0;  // stop-when-full: the rest of the stream is not read
    } while (!final);
    align_to_byte(s);
    return 0;
}

// ---------------------------------------------------------------------------
// Public API

uint32_t adler32_update(uint32_t adler, const uint8_t *buf, size_t len) {
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (len > 0) {
        size_t n = len < 5552 ? len : 5552;  // largest n with no uint32 overflow before the modulo
        len -= n;
        while (n--) {
            a += *buf++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

static Inflater *inflater_new(const uint8_t *in, size_t in_len) {
    Inflater *s = (Inflater *)malloc(sizeof(Inflater));
    if (!s) {
        sd_errorf("inflate: out of memory");
        return NULL;
    }
    memset(s, 0, offsetof(Inflater, lit));
    s->in = in;
    s->in_len = in ? in_len : 0;
    return s;
}

// Checks the 2-byte zlib header (RFC 1950 2.2).
static int zlib_header(Inflater *s) {
    if (s->in_len < 2) return sd_errorf("inflate: zlib stream truncated (%zu bytes, header needs 2)", s->in_len);
    int cmf = s->in[0], flg = s->in[1];
    if ((cmf & 15) != 8) return sd_errorf("inflate: zlib compression method %d, expected 8 (deflate)", cmf & 15);
    if ((cmf >> 4) > 7) return sd_errorf("inflate: zlib window size 2^%d too large (max 2^15)", (cmf >> 4) + 8);
    if ((cmf * 256 + flg) % 31 != 0) return sd_errorf("inflate: zlib header check bits wrong (0x%02x%02x)", cmf, flg);
    if (flg & 0x20) return sd_errorf("inflate: zlib preset dictionary not supported");
    s->pos = 2;
    return 0;
}

static int zlib_trailer(Inflater *s) {
    if (s->in_len - s->pos < 4) return sd_errorf("inflate: zlib Adler-32 trailer truncated");
    const uint8_t *p = s->in + s->pos;
    uint32_t want = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t got = adler32_update(1, s->out, s->out_len);
    if (want != got) return sd_errorf("inflate: Adler-32 mismatch (stored 0x%08x, computed 0x%08x)", want, got);
    s->pos += 4;
    return 0;
}

static int run(const uint8_t *in, size_t in_len, int zlib, uint8_t **out_grow, uint8_t *out_fixed,
               size_t cap, size_t *out_len, size_t *consumed, int stop_when_full) {
    *out_len = 0;
    if (out_grow) *out_grow = NULL;
    Inflater *s = inflater_new(in, in_len);
    if (!s) return -1;
    if (out_grow) {
        s->can_grow = 1;
        s->max_out = cap;
    } else {
        s->out = out_fixed;
        s->out_cap = cap;
        s->max_out = cap;
        s->stop_when_full = stop_when_full;
    }
    int rc = 0;
    if (zlib) rc = zlib_header(s);
    if (!rc) rc = inflate_blocks(s);
    if (!rc && zlib && !s->full) rc = zlib_trailer(s);
    if (rc) {
        if (out_grow) free(s->out);
    } else {
        *out_len = s->out_len;
        if (consumed) *consumed = s->pos;
        if (out_grow) {
            // Never hand back NULL on success, even for an empty output.
            *out_grow = s->out ? s->out : (uint8_t *)malloc(1);
            if (!*out_grow) rc = sd_errorf("inflate: out of memory");
        }
    }
    free(s);
    return rc;
}

int zlib_inflate(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out) {
    return run(in, in_len, 1, out, NULL, max_out, out_len, NULL, 0);
}

int zlib_inflate_into(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len) {
    return run(in, in_len, 1, NULL, out, out_cap, out_len, NULL, 0);
}

int zlib_inflate_prefix(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len) {
    return run(in, in_len, 1, NULL, out, out_cap, out_len, NULL, 1);
}

int deflate_inflate(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out,
                    size_t *consumed) {
    return run(in, in_len, 0, out, NULL, max_out, out_len, consumed, 0);
}

int deflate_inflate_into(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len,
                         size_t *consumed) {
    return run(in, in_len, 0, NULL, out, out_cap, out_len, consumed, 0);
}

// ---------------------------------------------------------------------------
// Compressor (fixed Huffman, RFC 1951 3.2.6)

typedef struct {
    uint8_t *out;
    size_t len;
    uint64_t bitbuf;
    int bitcnt;
} BitWriter;

// Appends n <= 32 bits, lowest first. The output buffer is sized by the caller.
static void put_bits(BitWriter *w, uint32_t v, int n) {
    w->bitbuf |= (uint64_t)v << w->bitcnt;
    w->bitcnt += n;
    while (w->bitcnt >= 8) {
        w->out[w->len++] = (uint8_t)w->bitbuf;
        w->bitbuf >>= 8;
        w->bitcnt -= 8;
    }
}

// Huffman codes are sent most significant bit first.
static void put_code(BitWriter *w, uint32_t code, int len) {
    uint32_t rev = 0;
    for (int b = 0; b < len; b++) rev |= ((code >> b) & 1) << (len - 1 - b);
    put_bits(w, rev, len);
}

static void put_literal(BitWriter *w, int sym) {
    if (sym < 144) put_code(w, 0x30 + sym, 8);
    else if (sym < 256) put_code(w, 0x190 + (sym - 144), 9);
    else if (sym < 280) put_code(w, sym - 256, 7);
    else put_code(w, 0xc0 + (sym - 280), 8);
}

static void put_match(BitWriter *w, int len, int dist) {
    int l = 28;
    while (LEN_BASE[l] > len) l--;
    put_literal(w, 257 + l);
    put_bits(w, (uint32_t)(len - LEN_BASE[l]), LEN_EXTRA[l]);
    int d = 29;
    while (DIST_BASE[d] > dist) d--;
    put_code(w, (uint32_t)d, 5);
    put_bits(w, (uint32_t)(dist - DIST_BASE[d]), DIST_EXTRA[d]);
}

#define LZ_WINDOW 32768
#define LZ_HASH_BITS 15
#define LZ_MAX_CHAIN 32

int zlib_compress(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    // Worst case: 9 bits per literal, plus header, end code and trailer.
    size_t cap = in_len + in_len / 8 + 64;
    int32_t *head = (int32_t *)malloc(sizeof(int32_t) << LZ_HASH_BITS);
    int32_t *prev = (int32_t *)malloc(sizeof(int32_t) * LZ_WINDOW);
    BitWriter w = {(uint8_t *)malloc(cap), 0, 0, 0};
    if (!head || !prev || !w.out || in_len > (size_t)INT32_MAX) {
        free(head);
        free(prev);
        free(w.out);
        return sd_errorf("zlib_compress: cannot compress %zu bytes (out of memory or too large)", in_len);
    }
    for (int i = 0; i < (1 << LZ_HASH_BITS); i++) head[i] = -1;
    w.out[w.len++] = 0x78;  // CMF: deflate, 32 KiB window
    w.out[w.len++] = 0x01;  // FLG: check bits, no dictionary
    put_bits(&w, 1, 1);      // BFINAL
    put_bits(&w, 1, 2);      // BTYPE = 01, fixed Huffman
    size_t i = 0;
    while (i < in_len) {
        int best_len = 0, best_dist = 0;
        if (in_len - i >= 3) {
            uint32_t h = ((uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2]) * 2654435761u >> (32 - LZ_HASH_BITS);
            int32_t cand = head[h];
            size_t max_len = in_len - i < 258 ? in_len - i : 258;
            for (int chain = 0; cand >= 0 && chain < LZ_MAX_CHAIN; chain++) {
                size_t dist = i - (size_t)cand;
                if (dist > LZ_WINDOW) break;
                size_t n = 0;
                while (n < max_len && in[cand + n] == in[i + n]) n++;
                if ((int)n > best_len) {
                    best_len = (int)n;
                    best_dist = (int)dist;
                    if (n == max_len) break;
                }
                int32_t p = prev[cand % LZ_WINDOW];
                if (p >= cand) break;  // stale slot from an older window position
                cand = p;
            }
            prev[i % LZ_WINDOW] = head[h];
            head[h] = (int32_t)i;
        }
        if (best_len >= 3) {
            put_match(&w, best_len, best_dist);
            // Index the skipped positions too, so later matches can find them.
            for (size_t k = i + 1; k < i + (size_t)best_len && in_len - k >= 3; k++) {
                uint32_t h = ((uint32_t)in[k] << 16 | (uint32_t)in[k + 1] << 8 | in[k + 2]) * 2654435761u >> (32 - LZ_HASH_BITS);
                prev[k % LZ_WINDOW] = head[h];
                head[h] = (int32_t)k;
            }
            i += (size_t)best_len;
        } else {
            put_literal(&w, in[i]);
            i++;
        }
    }
    put_literal(&w, 256);
    if (w.bitcnt > 0) put_bits(&w, 0, 8 - w.bitcnt);
    uint32_t adler = adler32_update(1, in, in_len);
    for (int k = 3; k >= 0; k--) w.out[w.len++] = (uint8_t)(adler >> (8 * k));
    free(head);
    free(prev);
    *out = w.out;
    *out_len = w.len;
    return 0;
}
