// ftfy ("fixes text for you", Robyn Speer's Python library) repairs Unicode text that went wrong on
// the way: mojibake (UTF-8 decoded with a single-byte codec such as windows-1252, "Ã©" for "é"),
// HTML entities, C1 controls, ligatures, full-width forms, curly quotes, line breaks, terminal
// escapes and control characters. CLIPTokenizer runs it on every text when ftfy is installed.
//
// This is a port of ftfy 6.1.1's fix_text with its default options (docs/text-encoder.md gives the
// rules and how it was checked against the Python); the character classes, codec tables and the
// HTML5 entities are generated from ftfy itself (unicode_tables.c).
#ifndef SD_FTFY_H
#define SD_FTFY_H

#include <stdint.h>

#include "models/unicode.h"

// out = ftfy.fix_text(text[0..n)) on code points: the text is cut after each "\n"; each segment
// goes through unescape_html (until a segment holds "<"), fix_encoding, the character fixers and
// NFC (nfc: from uni_nfc_init), repeated until it stops changing. out is overwritten. 0, or -1 with
// a message (out of memory).
int ftfy_fix_text(const UniNfc *nfc, const uint32_t *text, int n, CpBuf *out);

#endif
