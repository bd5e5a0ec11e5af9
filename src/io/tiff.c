// TIFF / GeoTIFF reader (IFD 0).
//
// A TIFF file is a header (byte order "II" or "MM", 42 or 43 for BigTIFF,
// offset of the first IFD) and image file directories: sorted tag entries
// (tag, type, count, value or offset). The image is cut into strips (full-width
// row bands) or tiles, each compressed on its own; with PlanarConfiguration 2
// each band has its own set of chunks. Decoding a chunk: decompress, put the
// samples in host byte order, undo the predictor row by row, then copy the part
// inside the image into the (bands, H, W) output.
#include "io/tiff.h"
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/inflate.h"

enum {
    TAG_IMAGE_WIDTH = 256, TAG_IMAGE_LENGTH = 257, TAG_BITS_PER_SAMPLE = 258, TAG_COMPRESSION = 259,
    TAG_PHOTOMETRIC = 262, TAG_STRIP_OFFSETS = 273, TAG_SAMPLES_PER_PIXEL = 277, TAG_ROWS_PER_STRIP = 278,
    TAG_STRIP_BYTE_COUNTS = 279, TAG_PLANAR_CONFIG = 284, TAG_PREDICTOR = 317, TAG_TILE_WIDTH = 322,
    TAG_TILE_LENGTH = 323, TAG_TILE_OFFSETS = 324, TAG_TILE_BYTE_COUNTS = 325, TAG_SAMPLE_FORMAT = 339,
    TAG_MODEL_PIXEL_SCALE = 33550, TAG_MODEL_TIEPOINT = 33922, TAG_MODEL_TRANSFORMATION = 34264,
    TAG_GEO_KEY_DIRECTORY = 34735, TAG_GEO_DOUBLE_PARAMS = 34736, TAG_GEO_ASCII_PARAMS = 34737,
    TAG_GDAL_NODATA = 42113,
};

// The tags we use, located in the file: values start at `offset` (inline
// values point into the entry itself, so every value is read the same way).
typedef struct {
    int tag, type;
    uint64_t count, offset;
} TagEntry;

#define MAX_TAGS 32

typedef struct {
    const uint8_t *buf;
    size_t len;
    int big_endian, bigtiff;
    TagEntry tags[MAX_TAGS];
    int ntags;
} TiffFile;

const char *tiff_compression_name(int code) {
    switch (code) {
    case 1: return "none";
    case 2: return "CCITT RLE";
    case 3: return "CCITT Group 3 fax";
    case 4: return "CCITT Group 4 fax";
    case 5: return "LZW";
    case 6: return "old-style JPEG";
    case 7: return "JPEG";
    case 8: return "Deflate (Adobe)";
    case 32946: return "Deflate (old code 32946)";
    case 32773: return "PackBits";
    case 34676: return "SGI LogLuv";
    case 34712: return "JPEG 2000";
    case 34887: return "LERC";
    case 34925: return "LZMA";
    case 50000: return "ZSTD";
    case 50001: return "WebP";
    case 50002: return "JPEG XL";
    default: return "unknown";
    }
}

// ---------------------------------------------------------------------------
// Byte access (callers check bounds first)

static uint64_t rd(const TiffFile *t, uint64_t off, int size) {
    const uint8_t *p = t->buf + off;
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v |= (uint64_t)p[t->big_endian ? size - 1 - i : i] << (8 * i);
    return v;
}

static int in_file(const TiffFile *t, uint64_t off, uint64_t n) { return off <= t->len && n <= t->len - off; }

static int type_size(int type) {
    switch (type) {
    case 1: case 2: case 6: case 7: return 1;      // BYTE ASCII SBYTE UNDEFINED
    case 3: case 8: return 2;                      // SHORT SSHORT
    case 4: case 9: case 11: case 13: return 4;    // LONG SLONG FLOAT IFD
    case 5: case 10: case 12: case 16: case 17: case 18: return 8;  // RATIONAL SRATIONAL DOUBLE LONG8 SLONG8 IFD8
    default: return 0;
    }
}

static const TagEntry *find_tag(const TiffFile *t, int tag) {
    for (int i = 0; i < t->ntags; i++)
        if (t->tags[i].tag == tag) return &t->tags[i];
    return NULL;
}

// Value i of an unsigned integer tag.
static int tag_uint(const TiffFile *t, const TagEntry *e, uint64_t i, uint64_t *v) {
    int sz = type_size(e->type);
    int is_uint = e->type == 1 || e->type == 3 || e->type == 4 || e->type == 13 || e->type == 16 || e->type == 18;
    if (!is_uint) return sd_errorf("tag %d has type %d, expected an unsigned integer type", e->tag, e->type);
    if (i >= e->count) return sd_errorf("tag %d has %llu values, value %llu requested", e->tag,
                                        (unsigned long long)e->count, (unsigned long long)i);
    *v = rd(t, e->offset + i * (uint64_t)sz, sz);
    return 0;
}

// Value i of a numeric tag as a double.
static int tag_double(const TiffFile *t, const TagEntry *e, uint64_t i, double *v) {
    if (i >= e->count) return sd_errorf("tag %d has only %llu values", e->tag, (unsigned long long)e->count);
    int sz = type_size(e->type);
    uint64_t raw = rd(t, e->offset + i * (uint64_t)sz, sz == 8 && (e->type == 5 || e->type == 10) ? 4 : sz);
    switch (e->type) {
    case 12: { double d; memcpy(&d, &raw, 8); *v = d; return 0; }
    case 11: { uint32_t r32 = (uint32_t)raw; float f; memcpy(&f, &r32, 4); *v = f; return 0; }
    case 5: case 10: {
        uint64_t den = rd(t, e->offset + i * 8 + 4, 4);
        double num = e->type == 5 ? (double)(uint32_t)raw : (double)(int32_t)(uint32_t)raw;
        *v = den ? num / (double)(e->type == 5 ? (double)(uint32_t)den : (double)(int32_t)(uint32_t)den) : 0.0;
        return 0;
    }
    case 6: *v = (int8_t)raw; return 0;
    case 8: *v = (int16_t)raw; return 0;
    case 9: *v = (int32_t)raw; return 0;
    case 17: *v = (double)(int64_t)raw; return 0;
    case 1: case 3: case 4: case 16: *v = (double)raw; return 0;
    default: return sd_errorf("tag %d has non-numeric type %d", e->tag, e->type);
    }
}

// A single-valued unsigned tag, or `dflt` when absent.
static int tag_scalar(const TiffFile *t, int tag, uint64_t dflt, uint64_t *v) {
    const TagEntry *e = find_tag(t, tag);
    if (!e) {
        *v = dflt;
        return 0;
    }
    return tag_uint(t, e, 0, v);
}

// ---------------------------------------------------------------------------
// Header and IFD 0

static int read_ifd0(TiffFile *t) {
    if (t->len < 8) return sd_errorf("not a TIFF file (%zu bytes)", t->len);
    if (t->buf[0] == 'I' && t->buf[1] == 'I') t->big_endian = 0;
    else if (t->buf[0] == 'M' && t->buf[1] == 'M') t->big_endian = 1;
    else return sd_errorf("not a TIFF file (byte order mark is not II or MM)");
    uint64_t version = rd(t, 2, 2), ifd;
    if (version == 42) {
        ifd = rd(t, 4, 4);
    } else if (version == 43) {
        if (t->len < 16) return sd_errorf("BigTIFF header truncated");
        if (rd(t, 4, 2) != 8 || rd(t, 6, 2) != 0) return sd_errorf("BigTIFF header: unsupported offset size");
        t->bigtiff = 1;
        ifd = rd(t, 8, 8);
    } else {
        return sd_errorf("not a TIFF file (version %llu, expected 42 or 43)", (unsigned long long)version);
    }
    int count_size = t->bigtiff ? 8 : 2, entry_size = t->bigtiff ? 20 : 12, value_size = t->bigtiff ? 8 : 4;
    if (!in_file(t, ifd, (uint64_t)count_size)) return sd_errorf("IFD offset %llu is outside the file", (unsigned long long)ifd);
    uint64_t n = rd(t, ifd, count_size);
    if (n == 0 || n > 65535 || !in_file(t, ifd + (uint64_t)count_size, n * (uint64_t)entry_size))
        return sd_errorf("IFD 0 at %llu: %llu entries do not fit in the file", (unsigned long long)ifd, (unsigned long long)n);
    static const int wanted[] = {TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_BITS_PER_SAMPLE, TAG_COMPRESSION,
                                 TAG_PHOTOMETRIC, TAG_STRIP_OFFSETS, TAG_SAMPLES_PER_PIXEL, TAG_ROWS_PER_STRIP,
                                 TAG_STRIP_BYTE_COUNTS, TAG_PLANAR_CONFIG, TAG_PREDICTOR, TAG_TILE_WIDTH,
                                 TAG_TILE_LENGTH, TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS, TAG_SAMPLE_FORMAT,
                                 TAG_MODEL_PIXEL_SCALE, TAG_MODEL_TIEPOINT, TAG_MODEL_TRANSFORMATION,
                                 TAG_GEO_KEY_DIRECTORY, TAG_GEO_DOUBLE_PARAMS, TAG_GEO_ASCII_PARAMS,
                                 TAG_GDAL_NODATA};
    t->ntags = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t p = ifd + (uint64_t)count_size + i * (uint64_t)entry_size;
        TagEntry e;
        e.tag = (int)rd(t, p, 2);
        e.type = (int)rd(t, p + 2, 2);
        e.count = rd(t, p + 4, t->bigtiff ? 8 : 4);
        int is_wanted = 0;
        for (size_t k = 0; k < sizeof(wanted) / sizeof(wanted[0]); k++) is_wanted |= wanted[k] == e.tag;
        if (!is_wanted) continue;
        int sz = type_size(e.type);
        if (sz == 0) return sd_errorf("tag %d has unknown field type %d", e.tag, e.type);
        if (e.count > ((uint64_t)1 << 40) / (uint64_t)sz) return sd_errorf("tag %d: absurd count %llu", e.tag, (unsigned long long)e.count);
        uint64_t bytes = e.count * (uint64_t)sz, value_at = p + 4 + (uint64_t)(t->bigtiff ? 8 : 4);
        e.offset = bytes <= (uint64_t)value_size ? value_at : rd(t, value_at, value_size);
        if (!in_file(t, e.offset, bytes))
            return sd_errorf("tag %d: %llu bytes of values at offset %llu run past the end of the file", e.tag,
                             (unsigned long long)bytes, (unsigned long long)e.offset);
        if (find_tag(t, e.tag)) return sd_errorf("tag %d appears twice in IFD 0", e.tag);
        if (t->ntags < MAX_TAGS) t->tags[t->ntags++] = e;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Codecs. Each fills out[0..cap) and sets *got to the bytes produced.

// TIFF LZW (TIFF 6.0 section 13): codes MSB-first, 9 to 12 bits, 256 = Clear,
// 257 = end of information, the code width grows one code early.
static int lzw_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *got) {
    if (in_len >= 2 && in[0] == 0 && (in[1] & 1))
        return sd_errorf("old-style (pre-6.0, LSB-first) LZW is not supported");
    uint16_t *prefix = (uint16_t *)malloc(4096 * sizeof(uint16_t));
    uint16_t *length = (uint16_t *)malloc(4096 * sizeof(uint16_t));
    uint8_t *suffix = (uint8_t *)malloc(4096), *first = (uint8_t *)malloc(4096);
    if (!prefix || !length || !suffix || !first) {
        free(prefix), free(length), free(suffix), free(first);
        return sd_errorf("out of memory for the LZW table");
    }
    for (int i = 0; i < 256; i++) prefix[i] = 0, length[i] = 1, suffix[i] = (uint8_t)i, first[i] = (uint8_t)i;
    size_t pos = 0, inpos = 0;
    uint32_t acc = 0;
    int nbits = 0, width = 9, next = 258, old = -1, rc = 0;
    while (pos < cap) {
        while (nbits < width && inpos < in_len) acc = (acc << 8) | in[inpos++], nbits += 8;
        if (nbits < width) break;  // input ended without an end code
        int code = (int)((acc >> (nbits - width)) & ((1u << width) - 1));
        nbits -= width;
        if (code == 257) break;
        if (code == 256) {
            width = 9, next = 258, old = -1;
            continue;
        }
        if (old < 0) {
            if (code > 255) { rc = sd_errorf("LZW: code %d follows a Clear code (expected a literal)", code); break; }
        } else if (code < next) {
            if (next < 4096) {
                prefix[next] = (uint16_t)old, suffix[next] = first[code], first[next] = first[old];
                length[next] = (uint16_t)(length[old] + 1), next++;
            }
        } else if (code == next && next < 4096) {  // the string being defined: old + first(old)
            prefix[next] = (uint16_t)old, suffix[next] = first[old], first[next] = first[old];
            length[next] = (uint16_t)(length[old] + 1), next++;
        } else {
            rc = sd_errorf("LZW: invalid code %d (table has %d entries)", code, next);
            break;
        }
        // Write the string of `code` backwards from its last byte, clipped to the buffer.
        int c = code;
        for (int k = length[code] - 1; k >= 0; k--) {
            if (pos + (size_t)k < cap) out[pos + (size_t)k] = suffix[c];
            c = prefix[c];
        }
        pos += length[code];
        if (pos > cap) pos = cap;
        old = code;
        if (next >= (1 << width) - 1 && width < 12) width++;
    }
    free(prefix), free(length), free(suffix), free(first);
    *got = pos;
    return rc;
}

// PackBits: header byte n >= 0 copies n+1 bytes, -127..-1 repeats the next byte 1-n times, -128 is a no-op.
static int packbits_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *got) {
    size_t i = 0, o = 0;
    while (o < cap && i < in_len) {
        int n = (int8_t)in[i++];
        if (n >= 0) {
            size_t k = (size_t)n + 1;
            if (k > in_len - i) k = in_len - i;
            if (k > cap - o) k = cap - o;
            memcpy(out + o, in + i, k);
            o += k;
            i += (size_t)n + 1;
        } else if (n != -128) {
            if (i >= in_len) break;
            size_t k = (size_t)(1 - n);
            if (k > cap - o) k = cap - o;
            memset(out + o, in[i++], k);
            o += k;
        }
    }
    *got = o;
    return 0;
}

static int decompress(int compression, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *got) {
    switch (compression) {
    case 1:
        *got = in_len < cap ? in_len : cap;
        memcpy(out, in, *got);
        return 0;
    case 5: return lzw_decode(in, in_len, out, cap, got);
    case 8: case 32946:  // a strip may hold more data than its rows need (libtiff ignores it)
        return zlib_inflate_prefix(in, in_len, out, cap, got);
    case 32773: return packbits_decode(in, in_len, out, cap, got);
    default: return sd_errorf("compression %d (%s) is not supported", compression, tiff_compression_name(compression));
    }
}

// ---------------------------------------------------------------------------
// Predictors, applied to one row of `n` samples (stride = samples per pixel
// for contig data, 1 for planar) already in host byte order.

static void undo_horizontal(uint8_t *row, size_t n, int stride, int bytes) {
    for (size_t i = (size_t)stride; i < n; i++) {
        switch (bytes) {
        case 1: row[i] = (uint8_t)(row[i] + row[i - stride]); break;
        case 2: ((uint16_t *)row)[i] = (uint16_t)(((uint16_t *)row)[i] + ((uint16_t *)row)[i - stride]); break;
        case 4: ((uint32_t *)row)[i] += ((uint32_t *)row)[i - stride]; break;
        case 8: ((uint64_t *)row)[i] += ((uint64_t *)row)[i - stride]; break;
        }
    }
}

// Floating-point predictor (Adobe Technical Note 3): the row's bytes are
// differenced bytewise, after being reordered into planes: all most
// significant bytes first, ..., all least significant bytes last.
static void undo_floating(uint8_t *row, uint8_t *tmp, size_t n, int stride, int bytes, int host_little) {
    size_t nb = n * (size_t)bytes;
    for (size_t i = (size_t)stride; i < nb; i++) row[i] = (uint8_t)(row[i] + row[i - stride]);
    memcpy(tmp, row, nb);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < bytes; b++) {  // plane b holds byte b counted from the most significant
            int dst = host_little ? bytes - 1 - b : b;
            row[i * (size_t)bytes + (size_t)dst] = tmp[(size_t)b * n + i];
        }
}

// ---------------------------------------------------------------------------

typedef struct {
    int spp, bytes, planar, tiled, compression, predictor;
    uint64_t chunk_w, chunk_h;       // tile size, or (width, rows per strip)
    uint64_t across, down;           // chunks per plane in x and y
    uint64_t nchunks;
    const TagEntry *offsets, *counts;
} Layout;

static int host_little_endian(void) {
    uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_samples(uint8_t *p, size_t n, int bytes) {
    for (size_t i = 0; i < n; i++, p += bytes)
        for (int a = 0, b = bytes - 1; a < b; a++, b--) {
            uint8_t x = p[a];
            p[a] = p[b];
            p[b] = x;
        }
}

// Samples per chunk pixel: all bands when interleaved, one band per plane when planar.
static size_t chunk_samples_per_pixel(const Layout *L) { return L->planar == 2 ? 1 : (size_t)L->spp; }

// Rows of chunk `index` (the last strip may be short) and the bytes it decodes to.
static uint64_t chunk_rows(const Layout *L, const TiffImage *img, uint64_t index) {
    uint64_t k = index % (L->across * L->down), y0 = (k / L->across) * L->chunk_h, rows = L->chunk_h;
    if (!L->tiled && y0 + rows > (uint64_t)img->height) rows = (uint64_t)img->height - y0;
    return rows;
}

static size_t chunk_need(const Layout *L, const TiffImage *img, uint64_t index) {
    return (size_t)(chunk_rows(L, img, index) * L->chunk_w) * chunk_samples_per_pixel(L) * (size_t)L->bytes;
}

// Decodes chunk `index` and copies its rows inside [oy0, oy0 + orows) into out, (bands, orows,
// width) samples: the whole image is oy0 = 0, orows = height. Its data lies inside the file
// (check_chunks ran before anything was allocated).
static int decode_chunk(const TiffFile *t, const Layout *L, const TiffImage *img, uint64_t index, uint8_t *raw,
                        uint8_t *tmp, uint8_t *out, uint64_t oy0, uint64_t orows) {
    uint64_t plane = L->planar == 2 ? index / (L->across * L->down) : 0;
    uint64_t k = index % (L->across * L->down);
    uint64_t x0 = (k % L->across) * L->chunk_w, y0 = (k / L->across) * L->chunk_h;
    uint64_t rows = chunk_rows(L, img, index);
    size_t spc = chunk_samples_per_pixel(L);
    size_t row_samples = (size_t)L->chunk_w * spc, row_bytes = row_samples * (size_t)L->bytes;
    size_t need = chunk_need(L, img, index);
    uint64_t off, count;
    if (tag_uint(t, L->offsets, index, &off) || tag_uint(t, L->counts, index, &count)) return -1;
    if (count == 0) return 0;  // sparse chunk (no data written): left as zeros
    size_t got = 0;
    if (decompress(L->compression, t->buf + off, (size_t)count, raw, need, &got))
        return sd_error_context("chunk %llu (%s)", (unsigned long long)index, tiff_compression_name(L->compression));
    if (got < need)
        return sd_errorf("chunk %llu (%s): decoded %zu bytes, expected %zu", (unsigned long long)index,
                         tiff_compression_name(L->compression), got, need);
    int little = host_little_endian();
    if (L->predictor == 3) {
        for (uint64_t r = 0; r < rows; r++)
            undo_floating(raw + r * row_bytes, tmp, row_samples, (int)spc, L->bytes, little);
    } else {
        if (L->bytes > 1 && t->big_endian == little) swap_samples(raw, need / (size_t)L->bytes, L->bytes);
        if (L->predictor == 2)
            for (uint64_t r = 0; r < rows; r++) undo_horizontal(raw + r * row_bytes, row_samples, (int)spc, L->bytes);
    }
    // Copy the part inside the image and the output rows into the band-major output.
    size_t W = (size_t)img->width, H = (size_t)img->height, bps = (size_t)L->bytes;
    size_t xend = x0 + L->chunk_w < W ? (size_t)(x0 + L->chunk_w) : W;
    size_t yend = y0 + rows < H ? (size_t)(y0 + rows) : H;
    if (yend > oy0 + orows) yend = (size_t)(oy0 + orows);
    for (size_t y = (size_t)(y0 > oy0 ? y0 : oy0); y < yend; y++) {
        const uint8_t *src = raw + (y - (size_t)y0) * row_bytes;
        for (size_t s = 0; s < spc; s++) {
            size_t band = L->planar == 2 ? (size_t)plane : s;
            uint8_t *dst = out + ((band * (size_t)orows + (y - (size_t)oy0)) * W) * bps;
            for (size_t x = (size_t)x0; x < xend; x++)
                memcpy(dst + x * bps, src + (((x - (size_t)x0) * spc) + s) * bps, bps);
        }
    }
    return 0;
}

// Most bytes a codec can produce from n input bytes.
static uint64_t max_decoded(int compression, uint64_t n) {
    switch (compression) {
    case 5: return (n * 8 / 9 + 1) * 4096;  // LZW: codes of 9+ bits, a string is at most 4096 bytes
    case 8: case 32946: return n * 1032 + 1032;  // Deflate: 258 bytes per 2-bit length/distance pair
    case 32773: return n * 64 + 128;  // PackBits: 2 bytes give at most 128
    default: return n;
    }
}

// whole: the image will be decoded in one piece (its size is limited); 0: read by rows.
static int read_layout(const TiffFile *t, TiffImage *img, Layout *L, int whole) {
    uint64_t w, h, spp, comp, photo, planar, pred;
    if (!find_tag(t, TAG_IMAGE_WIDTH) || !find_tag(t, TAG_IMAGE_LENGTH)) return sd_errorf("ImageWidth/ImageLength missing");
    if (tag_scalar(t, TAG_IMAGE_WIDTH, 0, &w) || tag_scalar(t, TAG_IMAGE_LENGTH, 0, &h) ||
        tag_scalar(t, TAG_SAMPLES_PER_PIXEL, 1, &spp) || tag_scalar(t, TAG_COMPRESSION, 1, &comp) ||
        tag_scalar(t, TAG_PHOTOMETRIC, 1, &photo) || tag_scalar(t, TAG_PLANAR_CONFIG, 1, &planar) ||
        tag_scalar(t, TAG_PREDICTOR, 1, &pred))
        return -1;
    if (w == 0 || h == 0 || w > 0x7fffffff || h > 0x7fffffff)
        return sd_errorf("image size %llux%llu is invalid", (unsigned long long)w, (unsigned long long)h);
    if (spp == 0 || spp > 65535) return sd_errorf("SamplesPerPixel %llu is invalid", (unsigned long long)spp);
    img->width = (int)w, img->height = (int)h, img->bands = (int)spp;
    img->compression = (int)comp, img->photometric = (int)photo, img->planar = (int)planar, img->predictor = (int)pred;
    if (comp != 1 && comp != 5 && comp != 8 && comp != 32946 && comp != 32773)
        return sd_errorf("compression %llu (%s) is not supported (supported: none, LZW, Deflate, PackBits)",
                         (unsigned long long)comp, tiff_compression_name((int)comp));
    if (planar != 1 && planar != 2) return sd_errorf("PlanarConfiguration %llu is invalid", (unsigned long long)planar);
    if (pred != 1 && pred != 2 && pred != 3) return sd_errorf("Predictor %llu is not supported", (unsigned long long)pred);
    if (photo == 6) return sd_errorf("YCbCr photometric interpretation is not supported (only with JPEG, which is not either)");
    // Bits per sample and sample format: the same for every band.
    const TagEntry *eb = find_tag(t, TAG_BITS_PER_SAMPLE), *ef = find_tag(t, TAG_SAMPLE_FORMAT);
    uint64_t bits = 1, fmt = 1;
    for (uint64_t s = 0; s < spp; s++) {
        uint64_t b = 1, f = 1;
        if (eb && tag_uint(t, eb, eb->count == 1 ? 0 : s, &b)) return -1;
        if (ef && tag_uint(t, ef, ef->count == 1 ? 0 : s, &f)) return -1;
        if (s > 0 && (b != bits || f != fmt)) return sd_errorf("bands with different sample types are not supported");
        bits = b, fmt = f;
    }
    if (fmt == 4) fmt = 1;  // "undefined" data: read as unsigned
    static const NpyDtype types[3][4] = {{NPY_UINT8, NPY_UINT16, NPY_UINT32, NPY_UINT64},
                                         {NPY_INT8, NPY_INT16, NPY_INT32, NPY_INT64},
                                         {NPY_DTYPE_COUNT, NPY_DTYPE_COUNT, NPY_FLOAT32, NPY_FLOAT64}};
    int bi = bits == 8 ? 0 : bits == 16 ? 1 : bits == 32 ? 2 : bits == 64 ? 3 : -1;
    if (fmt < 1 || fmt > 3 || bi < 0 || types[fmt - 1][bi] == NPY_DTYPE_COUNT)
        return sd_errorf("%llu-bit samples of SampleFormat %llu are not supported (8/16/32/64-bit integers, "
                         "32/64-bit floats)", (unsigned long long)bits, (unsigned long long)fmt);
    img->dtype = types[fmt - 1][bi];
    img->bytes_per_sample = (int)(bits / 8);
    if (pred == 3 && fmt != 3) return sd_errorf("floating-point predictor on integer samples");
    // w * h < 2^62 and spp * bytes < 2^19: test by division, as the full
    // product could wrap past 2^64 to a small number.
    if (whole && w * h > TIFF_MAX_PIXEL_BYTES / (spp * (bits / 8)))
        return sd_errorf("image %llux%llux%llu of %llu-bit samples needs %.0f bytes, over the limit of %llu",
                         (unsigned long long)w, (unsigned long long)h, (unsigned long long)spp,
                         (unsigned long long)bits, (double)(w * h) * (double)(spp * (bits / 8)),
                         (unsigned long long)TIFF_MAX_PIXEL_BYTES);
    L->spp = (int)spp, L->bytes = (int)(bits / 8), L->planar = (int)planar;
    L->compression = (int)comp, L->predictor = (int)pred;
    L->tiled = find_tag(t, TAG_TILE_WIDTH) != NULL;
    img->tiled = L->tiled;
    if (L->tiled) {
        if (tag_scalar(t, TAG_TILE_WIDTH, 0, &L->chunk_w) || tag_scalar(t, TAG_TILE_LENGTH, 0, &L->chunk_h)) return -1;
        L->offsets = find_tag(t, TAG_TILE_OFFSETS);
        L->counts = find_tag(t, TAG_TILE_BYTE_COUNTS);
    } else {
        uint64_t rps;
        if (tag_scalar(t, TAG_ROWS_PER_STRIP, 0xffffffffu, &rps)) return -1;
        L->chunk_w = w;
        L->chunk_h = rps < h ? rps : h;
        L->offsets = find_tag(t, TAG_STRIP_OFFSETS);
        L->counts = find_tag(t, TAG_STRIP_BYTE_COUNTS);
    }
    if (L->chunk_w == 0 || L->chunk_h == 0 || L->chunk_w > 0x7fffffff || L->chunk_h > 0x7fffffff)
        return sd_errorf("%s size %llux%llu is invalid", L->tiled ? "tile" : "strip", (unsigned long long)L->chunk_w,
                         (unsigned long long)L->chunk_h);
    // As for the image size: a tile of 2^30 x 2^30 x 16 bytes wrapped to 0 and
    // passed, then the copy read past the 0-byte tile buffer.
    uint64_t pixel_bytes = chunk_samples_per_pixel(L) * (bits / 8);
    if (L->chunk_w * L->chunk_h > TIFF_MAX_PIXEL_BYTES / pixel_bytes)
        return sd_errorf("%s of %llux%llu pixels of %llu bytes is too large (over %llu bytes)", L->tiled ? "tile" : "strip",
                         (unsigned long long)L->chunk_w, (unsigned long long)L->chunk_h, (unsigned long long)pixel_bytes,
                         (unsigned long long)TIFF_MAX_PIXEL_BYTES);
    if (!L->offsets || !L->counts)
        return sd_errorf("%s offsets or byte counts missing", L->tiled ? "tile" : "strip");
    L->across = (w + L->chunk_w - 1) / L->chunk_w;
    L->down = (h + L->chunk_h - 1) / L->chunk_h;
    L->nchunks = L->across * L->down * (planar == 2 ? spp : 1);
    if (L->offsets->count < L->nchunks || L->counts->count < L->nchunks)
        return sd_errorf("%llu %s expected, but offsets/byte counts list %llu/%llu", (unsigned long long)L->nchunks,
                         L->tiled ? "tiles" : "strips", (unsigned long long)L->offsets->count,
                         (unsigned long long)L->counts->count);
    return 0;
}

// Copies a numeric tag's values as doubles (*n = 0, *out = NULL when absent).
static int copy_doubles(const TiffFile *t, int tag, double **out, int *n) {
    const TagEntry *e = find_tag(t, tag);
    *out = NULL, *n = 0;
    if (!e || e->count == 0) return 0;
    if (e->count > (1u << 24)) return sd_errorf("tag %d: %llu values", tag, (unsigned long long)e->count);
    if (!(*out = (double *)malloc((size_t)e->count * sizeof(double)))) return sd_errorf("out of memory");
    for (uint64_t i = 0; i < e->count; i++)
        if (tag_double(t, e, i, &(*out)[i])) return -1;
    *n = (int)e->count;
    return 0;
}

// The GeoTIFF tags themselves, for writers of maps on the same grid (TiffGeoTags). The key
// directory must be SHORTs and the ASCII parameters ASCII (GeoTIFF 1.1, 7.1); other types are
// not copied.
static int copy_geo_tags(const TiffFile *t, TiffGeoTags *g) {
    if (copy_doubles(t, TAG_MODEL_PIXEL_SCALE, &g->pixel_scale, &g->n_pixel_scale) ||
        copy_doubles(t, TAG_MODEL_TIEPOINT, &g->tiepoint, &g->n_tiepoint) ||
        copy_doubles(t, TAG_MODEL_TRANSFORMATION, &g->transformation, &g->n_transformation) ||
        copy_doubles(t, TAG_GEO_DOUBLE_PARAMS, &g->double_params, &g->n_double_params))
        return -1;
    const TagEntry *k = find_tag(t, TAG_GEO_KEY_DIRECTORY), *a = find_tag(t, TAG_GEO_ASCII_PARAMS);
    if (k && k->type == 3 && k->count > 0 && k->count <= 65535) {
        if (!(g->key_directory = (uint16_t *)malloc((size_t)k->count * sizeof(uint16_t)))) return sd_errorf("out of memory");
        for (uint64_t i = 0; i < k->count; i++) g->key_directory[i] = (uint16_t)rd(t, k->offset + 2 * i, 2);
        g->n_key_directory = (int)k->count;
    }
    if (a && a->type == 2 && a->count > 0 && a->count <= (1u << 24)) {
        if (!(g->ascii_params = (char *)malloc((size_t)a->count + 1))) return sd_errorf("out of memory");
        memcpy(g->ascii_params, t->buf + a->offset, (size_t)a->count);
        g->ascii_params[a->count] = '\0';  // one more, so it can be printed
        g->n_ascii_params = (int)a->count;
    }
    return 0;
}

// GeoTIFF georeferencing in GDAL's convention, and GDAL's nodata tag.
static int read_geo(const TiffFile *t, TiffImage *img) {
    if (copy_geo_tags(t, &img->geo)) return -1;
    const TagEntry *scale = find_tag(t, TAG_MODEL_PIXEL_SCALE), *tie = find_tag(t, TAG_MODEL_TIEPOINT);
    const TagEntry *mt = find_tag(t, TAG_MODEL_TRANSFORMATION), *keys = find_tag(t, TAG_GEO_KEY_DIRECTORY);
    double *gt = img->geotransform;
    if (mt && mt->count >= 16) {
        double m[16];
        for (int i = 0; i < 16; i++)
            if (tag_double(t, mt, (uint64_t)i, &m[i])) return -1;
        gt[0] = m[3], gt[1] = m[0], gt[2] = m[1], gt[3] = m[7], gt[4] = m[4], gt[5] = m[5];
        img->has_geotransform = 1;
    } else if (scale && tie && scale->count >= 2 && tie->count >= 6) {
        double s[2], p[6];
        for (int i = 0; i < 2; i++)
            if (tag_double(t, scale, (uint64_t)i, &s[i])) return -1;
        for (int i = 0; i < 6; i++)
            if (tag_double(t, tie, (uint64_t)i, &p[i])) return -1;
        // Tiepoint (I, J, K) -> (X, Y, Z): raster point (I, J) sits at model point (X, Y).
        gt[0] = p[3] - p[0] * s[0], gt[1] = s[0], gt[2] = 0.0;
        gt[3] = p[4] + p[1] * s[1], gt[4] = 0.0, gt[5] = -s[1];
        img->has_geotransform = 1;
    }
    if (keys && keys->count >= 4 && (keys->type == 3)) {
        uint64_t nkeys, v;
        if (tag_uint(t, keys, 3, &nkeys)) return -1;
        for (uint64_t k = 0; k < nkeys && 4 + 4 * k + 3 < keys->count; k++) {
            uint64_t id, loc, value;
            if (tag_uint(t, keys, 4 + 4 * k, &id) || tag_uint(t, keys, 4 + 4 * k + 1, &loc) ||
                tag_uint(t, keys, 4 + 4 * k + 3, &value))
                return -1;
            if (loc != 0) continue;  // value stored in another tag (doubles, ASCII)
            v = value;
            if (id == 1025) img->pixel_is_point = v == 2;
            if (id == 3072 && v != 32767 && v != 0) img->epsg = (int)v;                 // ProjectedCSTypeGeoKey
            if (id == 2048 && v != 32767 && v != 0 && img->epsg == 0) img->epsg = (int)v;  // GeographicTypeGeoKey
        }
    }
    if (img->has_geotransform && img->pixel_is_point) {
        // The model point refers to the pixel centre; GDAL moves the origin to the corner.
        gt[0] -= 0.5 * gt[1] + 0.5 * gt[2];
        gt[3] -= 0.5 * gt[4] + 0.5 * gt[5];
    }
    const TagEntry *nd = find_tag(t, TAG_GDAL_NODATA);
    if (nd && nd->type == 2 && nd->count > 0) {
        char text[64];
        size_t n = nd->count < sizeof(text) - 1 ? (size_t)nd->count : sizeof(text) - 1;
        memcpy(text, t->buf + nd->offset, n);
        text[n] = '\0';
        char *end;
        double v = strtod(text, &end);
        if (end != text) {
            img->has_nodata = 1;
            img->nodata = img->dtype == NPY_FLOAT32 ? (double)(float)v : v;  // as GDAL: in the band's type
        }
    }
    return 0;
}

// Every chunk's data lies inside the file and can decode to the chunk's size: checked before
// anything is allocated (a 1.5 KB file declaring a 1.4 GB image, or a 2 GB tile, was allocated in
// full, then failed on chunk 0). Chunks without data (count 0) are sparse and stay zero.
// *max_need: the largest chunk that has data, the size of the chunk buffer.
static int check_chunks(const TiffFile *t, const Layout *L, const TiffImage *img, size_t *max_need) {
    *max_need = 0;
    for (uint64_t i = 0; i < L->nchunks; i++) {
        uint64_t off, count;
        if (tag_uint(t, L->offsets, i, &off) || tag_uint(t, L->counts, i, &count)) return -1;
        if (count == 0) continue;
        size_t need = chunk_need(L, img, i);
        if (!in_file(t, off, count))
            return sd_errorf("chunk %llu: %llu bytes at offset %llu run past the end of the file (%zu bytes)",
                             (unsigned long long)i, (unsigned long long)count, (unsigned long long)off, t->len);
        if (need > max_decoded(L->compression, count))
            return sd_errorf("chunk %llu: %llu bytes of data (compression %s) cannot decode to the %zu bytes it needs",
                             (unsigned long long)i, (unsigned long long)count, tiff_compression_name(L->compression),
                             need);
        if (need > *max_need) *max_need = need;
    }
    return 0;
}

// Header, IFD 0, layout, georeferencing and the chunk check: what both ways of reading share.
static int open_ifd0(TiffFile *t, TiffImage *img, Layout *L, int whole, size_t *max_need) {
    memset(L, 0, sizeof(*L));
    int rc = read_ifd0(t);
    if (!rc) {
        img->big_endian = t->big_endian;
        img->bigtiff = t->bigtiff;
        rc = read_layout(t, img, L, whole);
    }
    if (!rc) rc = read_geo(t, img);
    if (!rc) rc = check_chunks(t, L, img, max_need);
    return rc;
}

int tiff_decode(const uint8_t *buf, size_t len, TiffImage *img) {
    memset(img, 0, sizeof(*img));
    TiffFile *t = (TiffFile *)calloc(1, sizeof(TiffFile));
    if (!t) return sd_errorf("out of memory");
    t->buf = buf;
    t->len = len;
    Layout L;
    size_t max_need = 0;
    int rc = open_ifd0(t, img, &L, 1, &max_need);
    uint8_t *raw = NULL, *tmp = NULL;
    if (!rc) {
        size_t total = (size_t)img->width * (size_t)img->height * (size_t)img->bands * (size_t)img->bytes_per_sample;
        size_t row = (size_t)L.chunk_w * chunk_samples_per_pixel(&L) * (size_t)L.bytes;
        img->data = calloc(total, 1);
        raw = (uint8_t *)malloc(max_need ? max_need : 1);
        tmp = (uint8_t *)malloc(max_need ? row : 1);  // predictor 3 row scratch; row <= max_need
        if (!img->data || !raw || !tmp) rc = sd_errorf("out of memory for a %dx%dx%d image", img->width, img->height, img->bands);
    }
    for (uint64_t i = 0; !rc && i < L.nchunks; i++)
        rc = decode_chunk(t, &L, img, i, raw, tmp, (uint8_t *)img->data, 0, (uint64_t)img->height);
    free(raw);
    free(tmp);
    free(t);
    if (rc) tiff_free(img);
    return rc;
}

void tiff_geo_free(TiffGeoTags *g) {
    free(g->pixel_scale);
    free(g->tiepoint);
    free(g->transformation);
    free(g->key_directory);
    free(g->double_params);
    free(g->ascii_params);
    memset(g, 0, sizeof(*g));
}

void tiff_free(TiffImage *img) {
    free(img->data);
    img->data = NULL;
    tiff_geo_free(&img->geo);
}

int tiff_read(const char *path, TiffImage *img) {
    memset(img, 0, sizeof(*img));
    uint8_t *buf;
    size_t n;
    if (read_whole_file(path, &buf, &n, 0)) return SD_FAIL;
    int rc = tiff_decode(buf, n, img);
    free(buf);
    if (rc) return sd_error_context("file %s", path);
    return 0;
}

// ---------------------------------------------------------------------------
// Reading by rows: the file is mapped (pages come in as the strips are read), IFD 0 parsed
// once, and each call decodes only the chunks that cross its rows.

struct TiffReader {
    TiffFile t;
    Layout L;
    TiffImage info;
    void *map;
    size_t map_len;
    uint8_t *raw, *tmp;
    char *path;
};

void tiff_close(TiffReader *r) {
    if (!r) return;
    if (r->map) munmap(r->map, r->map_len);
    free(r->raw);
    free(r->tmp);
    free(r->path);
    tiff_geo_free(&r->info.geo);
    free(r);
}

int tiff_open(const char *path, TiffReader **out, TiffImage *info) {
    *out = NULL;
    memset(info, 0, sizeof(*info));
    TiffReader *r = (TiffReader *)calloc(1, sizeof(TiffReader));
    if (!r || !(r->path = strdup(path))) { free(r); return sd_errorf("out of memory"); }
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        sd_errorf("%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        tiff_close(r);
        return SD_FAIL;
    }
    r->map_len = (size_t)sb.st_size;
    if (r->map_len > 0) {
        void *m = mmap(NULL, r->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) r->map = m;
    }
    close(fd);
    if (!r->map) {
        tiff_close(r);
        return sd_errorf("%s: cannot map the file (%zu bytes)", path, (size_t)sb.st_size);
    }
    r->t.buf = (const uint8_t *)r->map;
    r->t.len = r->map_len;
    size_t max_need = 0;
    int rc = open_ifd0(&r->t, &r->info, &r->L, 0, &max_need);
    if (!rc) {
        size_t row = (size_t)r->L.chunk_w * chunk_samples_per_pixel(&r->L) * (size_t)r->L.bytes;
        r->raw = (uint8_t *)malloc(max_need ? max_need : 1);
        r->tmp = (uint8_t *)malloc(max_need ? row : 1);
        if (!r->raw || !r->tmp) rc = sd_errorf("out of memory for a %zu-byte chunk", max_need);
    }
    if (rc) {
        sd_error_context("file %s", path);
        tiff_close(r);
        return SD_FAIL;
    }
    *info = r->info;  // the caller's copy shares the geo arrays, which tiff_close frees
    *out = r;
    return 0;
}

int tiff_read_rows(TiffReader *r, int y0, int rows, void *out) {
    const TiffImage *img = &r->info;
    if (y0 < 0 || rows <= 0 || y0 > img->height - rows)
        return sd_errorf("%s: rows %d..%d requested of an image of %d rows", r->path, y0, y0 + rows - 1, img->height);
    size_t bytes = (size_t)rows * (size_t)img->width * (size_t)img->bands * (size_t)img->bytes_per_sample;
    memset(out, 0, bytes);  // sparse chunks stay zero
    const Layout *L = &r->L;
    uint64_t first = (uint64_t)y0 / L->chunk_h, last = (uint64_t)(y0 + rows - 1) / L->chunk_h;
    uint64_t planes = L->planar == 2 ? (uint64_t)L->spp : 1;
    for (uint64_t p = 0; p < planes; p++)
        for (uint64_t cy = first; cy <= last; cy++)
            for (uint64_t cx = 0; cx < L->across; cx++) {
                uint64_t index = p * L->across * L->down + cy * L->across + cx;
                if (decode_chunk(&r->t, L, img, index, r->raw, r->tmp, (uint8_t *)out, (uint64_t)y0, (uint64_t)rows))
                    return sd_error_context("file %s", r->path);
            }
    // The file's pages read so far leave the process (they stay in the page cache): a scene of
    // gigabytes is read with the memory of one row of chunks. Only advice: nothing depends on it.
    madvise(r->map, r->map_len, MADV_DONTNEED);
    return 0;
}
