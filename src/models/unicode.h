// Unicode text primitives shared by the CLIP tokenizer (bpe.c) and the ftfy port (ftfy.c), over the
// generated tables of unicode_tables.h: code point buffers, UTF-8 exactly as Python decodes it,
// property look-ups, Python's str.lower() and NFC (unicodedata.normalize("NFC", ...)).
#ifndef SD_UNICODE_H
#define SD_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "models/unicode_tables.h"

// A growable buffer of code points. Zero-initialise; free(v) when done.
typedef struct {
    uint32_t *v;
    int n, cap;
} CpBuf;

// Appends cp. 0, or -1 with a message when out of memory.
int cp_push(CpBuf *b, uint32_t cp);

// Appends the code points of s[0..len) to out, strictly as Python's bytes.decode("utf-8"): no overlong
// forms, no surrogates, nothing above U+10FFFF. utf8_decode records a message naming the offset on
// invalid input; utf8_try_decode fails quietly (ftfy's trial decodings). Both return 0 or -1.
int utf8_decode(const unsigned char *s, size_t len, CpBuf *out);
int utf8_try_decode(const unsigned char *s, size_t len, CpBuf *out);

// Writes the UTF-8 of cp (<= U+10FFFF) to out (room for 4 bytes, no NUL); returns the byte count.
size_t utf8_encode(uint32_t cp, char *out);

// The value of cp in a step table of unicode_tables.h (t[0].start == 0).
int uni_lookup(const UniBreak *t, int n, uint32_t cp);

// Python's class of cp (UNI_PY_OTHER, _WORD, _SPACE, _DIGIT: re's \w, \s, \d and str.isspace()).
int uni_python_class(uint32_t cp);

// Python's str.lower() of w[0..n), appended to out: the full mapping (U+0130 -> "i" + U+0307) and
// the final-sigma rule over the whole of w.
int uni_lower_append(const uint32_t *w, int n, CpBuf *out);

// NFC needs the primary compositions (first + second -> composite), a table built once from the
// generated decompositions and sorted for binary search.
typedef struct {
    uint32_t first, second, composite;
} UniComposition;

typedef struct {
    UniComposition *pairs;
    int n;
} UniNfc;

int uni_nfc_init(UniNfc *nfc);
void uni_nfc_free(UniNfc *nfc);

// unicodedata.normalize("NFC", b), in place on b (Unicode 14.0). tmp is scratch.
int uni_nfc(const UniNfc *nfc, CpBuf *b, CpBuf *tmp);

#endif
