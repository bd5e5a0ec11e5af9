// DEFLATE / zlib decoder tests on hand-built streams: stored, fixed and
// dynamic blocks (with every code-length repeat code), the longest length and
// distance, small windows, and one malformed stream per error the decoder
// reports; truncation at every length; round trips through zlib_compress.
#include "tests/test_util.h"

#include "core/error.h"
#include "io/inflate.h"

// ---------------------------------------------------------------------------
// A bit writer for building streams by hand (LSB-first; Huffman codes MSB-first).

typedef struct {
    uint8_t buf[70000];
    size_t nbits;
} Bits;

static void put(Bits *b, uint32_t v, int n) {
    for (int i = 0; i < n; i++, b->nbits++) {
        if ((b->nbits & 7) == 0) b->buf[b->nbits >> 3] = 0;
        b->buf[b->nbits >> 3] |= (uint8_t)(((v >> i) & 1) << (b->nbits & 7));
    }
}

static void put_code(Bits *b, uint32_t code, int len) {
    for (int i = len - 1; i >= 0; i--) put(b, (code >> i) & 1, 1);
}

static size_t bytes_of(const Bits *b) { return (b->nbits + 7) / 8; }

static void align(Bits *b) {
    while (b->nbits & 7) put(b, 0, 1);
}

// Fixed Huffman code of a literal/length symbol (RFC 1951 3.2.6).
static void put_fixed(Bits *b, int sym) {
    if (sym < 144) put_code(b, (uint32_t)(0x30 + sym), 8);
    else if (sym < 256) put_code(b, (uint32_t)(0x190 + sym - 144), 9);
    else if (sym < 280) put_code(b, (uint32_t)(sym - 256), 7);
    else put_code(b, (uint32_t)(0xc0 + sym - 280), 8);
}

// Canonical codes from code lengths.
static void canonical(const int *len, int n, uint32_t *code) {
    int count[16] = {0}, next[16];
    for (int i = 0; i < n; i++) count[len[i]]++;
    count[0] = 0;
    int c = 0;
    for (int l = 1; l < 16; l++) {
        c = (c + count[l - 1]) << 1;
        next[l] = c;
    }
    for (int i = 0; i < n; i++)
        if (len[i]) code[i] = (uint32_t)next[len[i]]++;
}

static void zlib_header(Bits *b) {
    put(b, 0x78, 8);
    put(b, 0x01, 8);
}

static void zlib_trailer(Bits *b, const uint8_t *data, size_t n) {
    align(b);
    uint32_t a = adler32_update(1, data, n);
    for (int k = 3; k >= 0; k--) put(b, (a >> (8 * k)) & 255, 8);
}

static int inflate_ok(const Bits *b, const uint8_t *want, size_t want_len, const char *what) {
    uint8_t *out;
    size_t n;
    int rc = zlib_inflate(b->buf, bytes_of(b), &out, &n, 1 << 20);
    CHECK(rc == 0, "%s: %s", what, sd_last_error());
    if (rc) return 0;
    int same = n == want_len && memcmp(out, want, n) == 0;
    CHECK(same, "%s: output differs (%zu bytes, expected %zu)", what, n, want_len);
    free(out);
    return same;
}

static void inflate_fails(const Bits *b, const char *needle, const char *what) {
    uint8_t *out = (uint8_t *)1;
    size_t n;
    sd_clear_error();
    int rc = zlib_inflate(b->buf, bytes_of(b), &out, &n, 1 << 20);
    CHECK(rc != 0 && out == NULL && strstr(sd_last_error(), needle) != NULL, "%s: expected an error with '%s', got '%s'",
          what, needle, rc ? sd_last_error() : "success");
}

// ---------------------------------------------------------------------------

static void test_adler(void) {
    CHECK(adler32_update(1, (const uint8_t *)"Wikipedia", 9) == 0x11E60398u, "Adler-32 of 'Wikipedia'");
    static uint8_t big[100000];
    memset(big, 0xff, sizeof(big));
    uint32_t a = 1, b = 1;  // incremental == one shot, and the modulo is right past 5552 bytes
    for (size_t i = 0; i < sizeof(big); i += 777) a = adler32_update(a, big + i, sizeof(big) - i < 777 ? sizeof(big) - i : 777);
    b = adler32_update(1, big, sizeof(big));
    uint32_t s1 = 1, s2 = 0;
    for (size_t i = 0; i < sizeof(big); i++) s1 = (s1 + 255) % 65521, s2 = (s2 + s1) % 65521;
    CHECK(a == b && b == (s2 << 16 | s1), "Adler-32 over 100000 bytes");
}

// Stored blocks, then a fixed block reaching 32768 bytes back with length 258.
static void test_stored_and_fixed(void) {
    static Bits b;
    static uint8_t want[40000];
    size_t n = 0;
    b.nbits = 0;
    zlib_header(&b);
    // Two stored blocks: 5 bytes, then 32763 bytes (the window is now full).
    put(&b, 0, 1), put(&b, 0, 2);
    align(&b);
    put(&b, 5, 16), put(&b, 0xffff ^ 5, 16);
    for (int i = 0; i < 5; i++) put(&b, (uint32_t)("hello"[i]), 8), want[n++] = (uint8_t)"hello"[i];
    put(&b, 0, 1), put(&b, 0, 2);
    align(&b);
    put(&b, 32763, 16), put(&b, 0xffff ^ 32763, 16);
    for (int i = 0; i < 32763; i++) {
        uint8_t v = (uint8_t)(i * 7 + (i >> 8));
        put(&b, v, 8);
        want[n++] = v;
    }
    // Empty stored block, then the final fixed block.
    put(&b, 0, 1), put(&b, 0, 2);
    align(&b);
    put(&b, 0, 16), put(&b, 0xffff, 16);
    put(&b, 1, 1), put(&b, 1, 2);
    put_fixed(&b, 'X'), want[n++] = 'X';
    put_fixed(&b, 200), want[n++] = 200;  // a 9-bit literal
    // length 258 (symbol 285), distance 32768 (code 29, 13 extra bits = 8191)
    put_fixed(&b, 285);
    put_code(&b, 29, 5), put(&b, 8191, 13);
    for (int i = 0; i < 258; i++, n++) want[n] = want[n - 32768];
    // length 10 at distance 1: a run of the previous byte (overlapping copy)
    put_fixed(&b, 264);
    put_code(&b, 0, 5);
    for (int i = 0; i < 10; i++, n++) want[n] = want[n - 1];
    put_fixed(&b, 265), put(&b, 1, 1);  // length 11 + 1 extra = 12
    put_code(&b, 4, 5), put(&b, 1, 1);  // distance 5 + 1 = 6
    for (int i = 0; i < 12; i++, n++) want[n] = want[n - 6];
    put_fixed(&b, 256);
    zlib_trailer(&b, want, n);
    inflate_ok(&b, want, n, "stored + fixed, max length and distance");

    // The same stream decoded into a buffer exactly big enough, one too small,
    // and with zlib_inflate_prefix (stops when full).
    uint8_t *out = (uint8_t *)malloc(n);
    size_t got;
    CHECK(zlib_inflate_into(b.buf, bytes_of(&b), out, n, &got) == 0 && got == n, "exact buffer");
    CHECK(zlib_inflate_into(b.buf, bytes_of(&b), out, n - 1, &got) != 0 && strstr(sd_last_error(), "exceeds"),
          "one byte short: %s", sd_last_error());
    CHECK(zlib_inflate_prefix(b.buf, bytes_of(&b), out, 1000, &got) == 0 && got == 1000 && memcmp(out, want, 1000) == 0,
          "prefix of 1000 bytes");
    CHECK(zlib_inflate_prefix(b.buf, bytes_of(&b), out, n - 5, &got) == 0 && got == n - 5 &&
              memcmp(out, want, n - 5) == 0,
          "prefix cut inside a match");
    free(out);
    uint8_t *o2;
    CHECK(zlib_inflate(b.buf, bytes_of(&b), &o2, &got, n - 1) != 0 && strstr(sd_last_error(), "limit"),
          "max_out enforced: %s", sd_last_error());

    // Every truncation fails with a message (never a crash).
    int all = 1;
    for (size_t cut = 0; cut < bytes_of(&b); cut += (cut < 64 || cut > bytes_of(&b) - 64) ? 1 : 997) {
        uint8_t *part = (uint8_t *)malloc(cut ? cut : 1);
        memcpy(part, b.buf, cut);
        sd_clear_error();
        if (zlib_inflate(part, cut, &o2, &got, 1 << 20) == 0 || !sd_last_error()[0]) all = 0, free(o2);
        free(part);
    }
    CHECK(all, "every truncation rejected");
    // A wrong Adler-32.
    b.buf[bytes_of(&b) - 1] ^= 1;
    inflate_fails(&b, "Adler-32", "corrupt checksum");
}

// Dynamic block: literals a..f, end-of-block and length symbol 257 all 3 bits;
// one distance code of 1 bit; the code lengths use repeat codes 16, 17 and 18.
static void build_dynamic(Bits *b, int variant) {
    int cl_len[19];  // code-length code: 13 symbols of 4 bits + 6 of 5 bits (complete)
    for (int i = 0; i < 19; i++) cl_len[i] = i < 13 ? 4 : 5;
    if (variant == 1) cl_len[0] = 3;  // over-subscribed
    if (variant == 2) cl_len[18] = 6;  // incomplete
    uint32_t cl_code[19];
    canonical(cl_len, 19, cl_code);
    static const int order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    b->nbits = 0;
    zlib_header(b);
    put(b, 1, 1), put(b, 2, 2);  // final, dynamic
    put(b, variant == 3 ? 30 : 1, 5);  // HLIT: 258 codes (287 in variant 3: too many)
    put(b, 0, 5);  // HDIST: 1 code
    put(b, 15, 4);  // HCLEN: 19
    for (int i = 0; i < 19; i++) put(b, (uint32_t)cl_len[order[i]], 3);
#define SYM(s) put_code(b, cl_code[s], cl_len[s])
    if (variant == 4) SYM(16), put(b, 0, 2);  // repeat with nothing before
    SYM(18), put(b, 97 - 11, 7);  // 97 zeros
    SYM(3);                        // 'a' = 3
    SYM(16), put(b, 0, 2);         // b, c, d = 3
    SYM(3), SYM(3);                // e, f
    SYM(18), put(b, 127, 7);       // 138 zeros
    SYM(17), put(b, 7, 3);         // 10 zeros
    SYM(17), put(b, 2, 3);         // 5 zeros: up to 255
    SYM(variant == 5 ? 0 : 3);     // 256 end-of-block (absent in variant 5)
    SYM(3);                        // 257 length 3
    if (variant == 6) SYM(18), put(b, 20, 7);  // runs past the declared codes
    SYM(1);                        // distance code 0: 1 bit
#undef SYM
    int ll[258] = {0};
    for (int s = 97; s <= 102; s++) ll[s] = 3;
    ll[256] = ll[257] = 3;
    uint32_t ll_code[258];
    canonical(ll, 258, ll_code);
    const char *text = "abcdef";
    for (int i = 0; i < 6; i++) put_code(b, ll_code[(int)text[i]], 3);
    put_code(b, ll_code[257], 3);  // length 3
    put_code(b, 0, 1);             // distance code 0 = distance 1
    put_code(b, ll_code[256], 3);
    zlib_trailer(b, (const uint8_t *)"abcdeffff", 9);
}

static void test_dynamic(void) {
    static Bits b;
    build_dynamic(&b, 0);
    inflate_ok(&b, (const uint8_t *)"abcdeffff", 9, "hand-built dynamic block");
    build_dynamic(&b, 1);
    inflate_fails(&b, "over-subscribed", "over-subscribed code-length code");
    build_dynamic(&b, 2);
    inflate_fails(&b, "incomplete", "incomplete code-length code");
    build_dynamic(&b, 3);
    inflate_fails(&b, "literal/length codes", "HLIT > 286");
    build_dynamic(&b, 4);
    inflate_fails(&b, "no previous", "repeat code first");
    build_dynamic(&b, 5);
    inflate_fails(&b, "end-of-block", "no end-of-block code");
    build_dynamic(&b, 6);
    inflate_fails(&b, "runs past", "repeat past the end");
}

static void test_errors(void) {
    static Bits b;
    b.nbits = 0;
    put(&b, 0x78, 8), put(&b, 0x02, 8);
    inflate_fails(&b, "check bits", "header check");
    b.nbits = 0;
    put(&b, 0x77, 8), put(&b, 0x01, 8);  // CM 7
    inflate_fails(&b, "method", "compression method 7");
    b.nbits = 0;
    put(&b, 0x88, 8), put(&b, 0x1c, 8);  // CINFO 8: (0x88 * 256 + 0x1c) % 31 == 0
    inflate_fails(&b, "window", "window 2^16");
    b.nbits = 0;
    put(&b, 0x78, 8), put(&b, 0x20, 8);  // FDICT set, 0x7820 % 31 == 0
    inflate_fails(&b, "dictionary", "preset dictionary");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 1, 1), put(&b, 3, 2);
    inflate_fails(&b, "block type 3", "reserved block type");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 1, 1), put(&b, 0, 2);
    align(&b);
    put(&b, 5, 16), put(&b, 5, 16);
    inflate_fails(&b, "complement", "stored LEN/NLEN");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 1, 1), put(&b, 1, 2);
    put_fixed(&b, 'a');
    put_fixed(&b, 257), put_code(&b, 1, 5);  // distance 2 with 1 byte written
    inflate_fails(&b, "too far back", "distance beyond the output");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 1, 1), put(&b, 1, 2);
    put_fixed(&b, 'a');
    put_fixed(&b, 257), put_code(&b, 30, 5);
    inflate_fails(&b, "distance", "distance code 30");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 1, 1), put(&b, 1, 2);
    put_fixed(&b, 286);
    inflate_fails(&b, "length symbol", "length symbol 286");
    b.nbits = 0;
    zlib_header(&b);
    put(&b, 0, 1), put(&b, 1, 2);  // not final, and nothing follows
    put_fixed(&b, 256);
    inflate_fails(&b, "truncated", "missing final block");
    uint8_t *out;
    size_t n;
    CHECK(zlib_inflate(NULL, 0, &out, &n, 100) != 0, "empty input");
}

// A stream made by zlib 1.2.13 with a 512-byte window (level 9): dynamic block.
static void test_zlib_made(void) {
    static const uint8_t z[] = {
        0x18, 0xd3, 0x0b, 0xc9, 0x48, 0x55, 0x28, 0x2c, 0xcd, 0x4c, 0xce, 0x56, 0x48, 0x2a, 0xca, 0x2f, 0xcf, 0x53,
        0x48, 0xcb, 0xaf, 0x50, 0xc8, 0x2a, 0xcd, 0x2d, 0x28, 0x56, 0xc8, 0x2f, 0x4b, 0x2d, 0x52, 0x28, 0x01, 0x4a,
        0xe7, 0x24, 0x56, 0x55, 0x2a, 0xa4, 0xe4, 0xa7, 0xeb, 0x29, 0x84, 0x0c, 0x77, 0xc5, 0x0c, 0x8c, 0x4c, 0xcc,
        0x2c, 0xac, 0x6c, 0xec, 0x1c, 0x9c, 0x5c, 0xdc, 0x3c, 0xbc, 0x7c, 0xfc, 0x02, 0x82, 0x42, 0xc2, 0x22, 0xa2,
        0x62, 0xe2, 0x12, 0x92, 0x52, 0xd2, 0x32, 0xb2, 0x72, 0xf2, 0x0a, 0x8a, 0x4a, 0xca, 0x2a, 0xaa, 0x6a, 0xea,
        0x00, 0xd0, 0xfd, 0x63, 0xf7};
    uint8_t want[310];
    for (int i = 0; i < 6; i++) memcpy(want + 45 * i, "The quick brown fox jumps over the lazy dog. ", 45);
    for (int i = 0; i < 40; i++) want[270 + i] = (uint8_t)i;
    uint8_t *out;
    size_t n;
    int rc = zlib_inflate(z, sizeof(z), &out, &n, 1000);
    CHECK(rc == 0 && n == 310 && memcmp(out, want, 310) == 0, "zlib-made stream: %s", rc ? sd_last_error() : "");
    if (!rc) free(out);
    // Raw deflate: the same data without the 2-byte header; consumed stops before the Adler-32.
    size_t used = 0;
    rc = deflate_inflate(z + 2, sizeof(z) - 2, &out, &n, 1000, &used);
    CHECK(rc == 0 && n == 310 && used == sizeof(z) - 6, "raw deflate, %zu bytes consumed", used);
    if (!rc) free(out);
    uint8_t buf[310];
    CHECK(deflate_inflate_into(z + 2, sizeof(z) - 2, buf, sizeof(buf), &n, NULL) == 0 && n == 310, "raw into");
}

static void test_roundtrip(void) {
    unsigned long long s = 42;
    size_t sizes[] = {0, 1, 2, 3, 100, 5000, 70000, 200000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        uint8_t *data = (uint8_t *)malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {  // mix of runs, repeats and noise
            float r = test_rand(&s);
            data[i] = (i % 1000 < 300) ? (uint8_t)(i / 50) : (r > 0.5f ? (uint8_t)(r * 1000) : data[i > 40000 ? i - 40000 : 0]);
        }
        uint8_t *z, *back;
        size_t zlen, blen;
        CHECK(zlib_compress(data, n, &z, &zlen) == 0, "compress %zu", n);
        int rc = zlib_inflate(z, zlen, &back, &blen, n + 1);
        CHECK(rc == 0 && blen == n && memcmp(back, data, n) == 0, "round trip %zu bytes: %s", n, rc ? sd_last_error() : "");
        if (n == 200000) CHECK(zlen < n * 7 / 10, "compression ratio %zu -> %zu", n, zlen);
        if (!rc) free(back);
        free(z);
        free(data);
    }
}

int main(void) {
    test_adler();
    test_stored_and_fixed();
    test_dynamic();
    test_errors();
    test_zlib_made();
    test_roundtrip();
    return test_report("test_inflate");
}
