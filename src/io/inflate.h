// DEFLATE (RFC 1951) and zlib (RFC 1950) decoder, our own code, no zlib.
// Used by the PNG reader (IDAT) and the TIFF reader (compression 8 / 32946).
// All inputs are untrusted: every read and write is bounds-checked and every
// malformed stream ends in a -1 return with a message (sd_last_error()).
#ifndef SD_INFLATE_H
#define SD_INFLATE_H

#include <stddef.h>
#include <stdint.h>

// Decodes a zlib stream (2-byte header, DEFLATE blocks, Adler-32 of the output).
// *out is malloc'd (caller frees; NULL on failure); at most max_out bytes are
// produced, a stream that wants more is an error. Bytes after the Adler-32
// trailer are ignored.
int zlib_inflate(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out);

// Decodes a zlib stream into a caller buffer of out_cap bytes. *out_len gets
// the number of bytes produced (may be < out_cap; the caller decides whether a
// short result is an error). A stream producing more than out_cap is an error.
int zlib_inflate_into(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);

// Like zlib_inflate_into, but a stream that produces more than out_cap bytes
// is not an error: decoding stops once the buffer is full (the rest of the
// stream and the Adler-32 are then not checked). libtiff reads strips so.
int zlib_inflate_prefix(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);

// Raw DEFLATE, no header or trailer. *consumed (if not NULL) gets the number
// of input bytes used, up to and including the final block's last byte.
int deflate_inflate(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out,
                    size_t *consumed);
int deflate_inflate_into(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len,
                         size_t *consumed);

// Compresses into a zlib stream: one fixed-Huffman block, greedy LZ77 with a
// 32 KiB window (hash chains). Small and simple, for the PNG writer; not a
// match for zlib's ratio. *out is malloc'd.
int zlib_compress(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len);

// Adler-32 (RFC 1950), start with adler = 1.
uint32_t adler32_update(uint32_t adler, const uint8_t *buf, size_t len);

#endif
