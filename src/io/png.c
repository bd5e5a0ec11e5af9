// PNG reader and writer.
//
// File = 8-byte signature, then chunks: length (4 bytes, big-endian), type (4
// ASCII letters), data, CRC-32 of type+data. IHDR comes first; the image data
// is the concatenation of the IDAT chunks (which must be consecutive), one
// zlib stream. Inflated, it holds rows of `1 filter byte + packed samples`,
// per Adam7 pass when interlaced. Each row is un-filtered against the row
// above it (same pass) and the bytes one pixel to the left.
#include "io/png.h"
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/inflate.h"

static const uint8_t PNG_SIGNATURE[8] = {137, 80, 78, 71, 13, 10, 26, 10};

// Adam7 passes: first column, first row, column step, row step.
static const int ADAM7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

uint32_t png_crc32(uint32_t crc, const uint8_t *buf, size_t len) {
    // Reflected polynomial 0xEDB88320, 4 bits at a time.
    static const uint32_t table[16] = {0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
                                       0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
                                       0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C};
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        crc = (crc >> 4) ^ table[crc & 15];
        crc = (crc >> 4) ^ table[crc & 15];
    }
    return ~crc;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int channels_of(int color_type) {
    switch (color_type) {
    case 0: return 1;
    case 2: return 3;
    case 3: return 1;
    case 4: return 2;
    case 6: return 4;
    default: return 0;
    }
}

// Allowed bit depths per colour type (PNG spec table 11.1).
static int valid_depth(int color_type, int depth) {
    switch (color_type) {
    case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2: case 4: case 6: return depth == 8 || depth == 16;
    default: return 0;
    }
}

static int parse_ihdr(const uint8_t *d, uint32_t len, PngImage *img) {
    if (len != 13) return sd_errorf("IHDR has %u bytes, expected 13", len);
    uint32_t w = be32(d), h = be32(d + 4);
    int depth = d[8], ct = d[9];
    if (w == 0 || h == 0) return sd_errorf("IHDR: image size %ux%u, width and height must be > 0", w, h);
    if (w > 0x7fffffffu || h > 0x7fffffffu) return sd_errorf("IHDR: image size %ux%u exceeds 2^31-1", w, h);
    if (!channels_of(ct)) return sd_errorf("IHDR: invalid colour type %d (valid: 0, 2, 3, 4, 6)", ct);
    if (!valid_depth(ct, depth)) return sd_errorf("IHDR: bit depth %d is not allowed with colour type %d", depth, ct);
    if (d[10] != 0) return sd_errorf("IHDR: unknown compression method %d", d[10]);
    if (d[11] != 0) return sd_errorf("IHDR: unknown filter method %d", d[11]);
    if (d[12] > 1) return sd_errorf("IHDR: unknown interlace method %d", d[12]);
    img->width = (int)w;
    img->height = (int)h;
    img->bit_depth = depth;
    img->color_type = ct;
    img->interlace = d[12];
    img->channels = channels_of(ct);
    img->bytes_per_sample = depth == 16 ? 2 : 1;
    uint64_t bytes = (uint64_t)w * h * (uint64_t)img->channels * (uint64_t)img->bytes_per_sample;
    if (bytes > PNG_MAX_PIXEL_BYTES)
        return sd_errorf("IHDR: image %ux%u with %d channels needs %llu bytes, over the limit of %llu", w, h,
                         img->channels, (unsigned long long)bytes, (unsigned long long)PNG_MAX_PIXEL_BYTES);
    return 0;
}

// Bytes in one packed row of `w` pixels (without the filter byte).
static size_t row_bytes(const PngImage *img, size_t w) {
    return (w * (size_t)img->channels * (size_t)img->bit_depth + 7) / 8;
}

static void pass_size(const PngImage *img, int pass, size_t *pw, size_t *ph) {
    const int *p = ADAM7[pass];
    *pw = img->width > p[0] ? (size_t)(img->width - p[0] + p[2] - 1) / (size_t)p[2] : 0;
    *ph = img->height > p[1] ? (size_t)(img->height - p[1] + p[3] - 1) / (size_t)p[3] : 0;
}

// Size of the inflated image data: per (pass) row, 1 filter byte + packed samples.
static uint64_t expected_data_size(const PngImage *img) {
    if (!img->interlace) return (uint64_t)img->height * (1 + row_bytes(img, (size_t)img->width));
    uint64_t total = 0;
    for (int pass = 0; pass < 7; pass++) {
        size_t pw, ph;
        pass_size(img, pass, &pw, &ph);
        if (pw && ph) total += (uint64_t)ph * (1 + row_bytes(img, pw));
    }
    return total;
}

static int paeth(int a, int b, int c) {
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    if (pb <= pc) return b;
    return c;
}

// Un-filters `ph` rows of `rb` bytes in place (each preceded by its filter
// byte); bpp = bytes per complete pixel, at least 1.
static int unfilter(uint8_t *data, size_t ph, size_t rb, size_t bpp) {
    const uint8_t *prev = NULL;
    for (size_t y = 0; y < ph; y++) {
        uint8_t *row = data + y * (rb + 1);
        int filter = row[0];
        uint8_t *x = row + 1;
        switch (filter) {
        case 0: break;
        case 1:  // Sub: x += left
            for (size_t i = bpp; i < rb; i++) x[i] = (uint8_t)(x[i] + x[i - bpp]);
            break;
        case 2:  // Up: x += above
            if (prev)
                for (size_t i = 0; i < rb; i++) x[i] = (uint8_t)(x[i] + prev[i]);
            break;
        case 3:  // Average: x += floor((left + above) / 2)
            for (size_t i = 0; i < rb; i++) {
                int left = i >= bpp ? x[i - bpp] : 0, up = prev ? prev[i] : 0;
                x[i] = (uint8_t)(x[i] + ((left + up) >> 1));
            }
            break;
        case 4:  // Paeth: x += the neighbour (left, above, upper-left) closest to left + above - upper-left
            for (size_t i = 0; i < rb; i++) {
                int left = i >= bpp ? x[i - bpp] : 0, up = prev ? prev[i] : 0;
                int ul = (prev && i >= bpp) ? prev[i - bpp] : 0;
                x[i] = (uint8_t)(x[i] + paeth(left, up, ul));
            }
            break;
        default: return sd_errorf("row %zu has invalid filter type %d (valid: 0..4)", y, filter);
        }
        prev = x;
    }
    return 0;
}

// Unpacks the un-filtered rows of one pass into the full image at
// (x0 + i*dx, y0 + j*dy).
static void scatter_pass(PngImage *img, const uint8_t *data, size_t pw, size_t ph, int x0, int y0, int dx, int dy) {
    size_t rb = row_bytes(img, pw), c = (size_t)img->channels, W = (size_t)img->width;
    int depth = img->bit_depth;
    for (size_t j = 0; j < ph; j++) {
        const uint8_t *src = data + j * (rb + 1) + 1;
        size_t y = (size_t)y0 + j * (size_t)dy;
        for (size_t i = 0; i < pw; i++) {
            size_t x = (size_t)x0 + i * (size_t)dx;
            size_t o = (y * W + x) * c;
            for (size_t k = 0; k < c; k++) {
                size_t s = i * c + k;  // sample index within the row
                if (depth == 16) {
                    ((uint16_t *)img->pixels)[o + k] = (uint16_t)(src[2 * s] << 8 | src[2 * s + 1]);
                } else if (depth == 8) {
                    ((uint8_t *)img->pixels)[o + k] = src[s];
                } else {  // 1, 2, 4 bits, first sample in the high bits
                    size_t bit = s * (size_t)depth;
                    int shift = 8 - depth - (int)(bit & 7);
                    ((uint8_t *)img->pixels)[o + k] = (uint8_t)((src[bit >> 3] >> shift) & ((1 << depth) - 1));
                }
            }
        }
    }
}

static int decode_image_data(PngImage *img, const uint8_t *zdata, size_t zlen) {
    uint64_t need = expected_data_size(img);
    if (need > SIZE_MAX / 2) return sd_errorf("image data of %llu bytes is too large", (unsigned long long)need);
    // The output buffer grows with the data actually inflated, so a small file
    // declaring a huge image fails before any huge allocation.
    uint8_t *data;
    size_t got;
    if (zlib_inflate(zdata, zlen, &data, &got, (size_t)need)) return sd_error_context("IDAT");
    if (got != need) {
        free(data);
        return sd_errorf("IDAT: image data has %zu bytes, expected %llu", got, (unsigned long long)need);
    }
    size_t npix = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    img->pixels = malloc(npix * (size_t)img->bytes_per_sample);
    if (!img->pixels) {
        free(data);
        return sd_errorf("out of memory for a %dx%d image", img->width, img->height);
    }
    size_t bpp = ((size_t)img->channels * (size_t)img->bit_depth + 7) / 8;
    int npass = img->interlace ? 7 : 1;
    uint8_t *p = data;
    for (int pass = 0; pass < npass; pass++) {
        size_t pw = (size_t)img->width, ph = (size_t)img->height;
        int x0 = 0, y0 = 0, dx = 1, dy = 1;
        if (img->interlace) {
            pass_size(img, pass, &pw, &ph);
            x0 = ADAM7[pass][0], y0 = ADAM7[pass][1], dx = ADAM7[pass][2], dy = ADAM7[pass][3];
        }
        if (!pw || !ph) continue;
        size_t rb = row_bytes(img, pw);
        if (unfilter(p, ph, rb, bpp)) {
            free(data);
            return img->interlace ? sd_error_context("Adam7 pass %d", pass + 1) : -1;
        }
        scatter_pass(img, p, pw, ph, x0, y0, dx, dy);
        p += ph * (rb + 1);
    }
    free(data);
    return 0;
}

static int is_letter(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

// Walks the chunks; fills the header fields, palette, tRNS and image data.
static int decode_chunks(const uint8_t *buf, size_t len, PngImage *img) {
    if (len < 8 || memcmp(buf, PNG_SIGNATURE, 8) != 0) return sd_errorf("not a PNG file (bad signature)");
    size_t pos = 8;
    int seen_ihdr = 0, seen_idat = 0, idat_ended = 0, seen_plte = 0, seen_iend = 0;
    uint8_t *zdata = NULL;
    size_t zlen = 0, zcap = 0;
    int rc = 0;
    const uint8_t *trns = NULL;
    uint32_t trns_len = 0;
    while (!seen_iend) {
        if (len - pos < 12) {
            rc = sd_errorf("file truncated at byte %zu (expected a chunk%s)", len, seen_idat ? " or IEND" : "");
            break;
        }
        uint32_t clen = be32(buf + pos);
        const uint8_t *type = buf + pos + 4, *cdata = buf + pos + 8;
        char name[5] = {0};
        for (int i = 0; i < 4; i++) name[i] = is_letter(type[i]) ? (char)type[i] : '?';
        if (clen > 0x7fffffffu) { rc = sd_errorf("chunk %s: length %u exceeds 2^31-1", name, clen); break; }
        if (len - pos - 12 < clen) {
            rc = sd_errorf("chunk %s: %u data bytes declared but the file ends after %zu", name, clen, len - pos - 12);
            break;
        }
        if (!is_letter(type[0]) || !is_letter(type[1]) || !is_letter(type[2]) || !is_letter(type[3])) {
            rc = sd_errorf("invalid chunk type at byte %zu", pos + 4);
            break;
        }
        if (!seen_ihdr && memcmp(type, "IHDR", 4) != 0) { rc = sd_errorf("first chunk is %s, expected IHDR", name); break; }
        uint32_t crc_want = be32(cdata + clen), crc_got = png_crc32(0, type, 4 + (size_t)clen);
        if (crc_want != crc_got) {
            rc = sd_errorf("chunk %s at byte %zu: CRC mismatch (stored 0x%08x, computed 0x%08x)", name, pos, crc_want,
                           crc_got);
            break;
        }
        pos += 12 + (size_t)clen;
        int is_idat = memcmp(type, "IDAT", 4) == 0;
        if (seen_idat && !is_idat) idat_ended = 1;
        if (memcmp(type, "IHDR", 4) == 0) {
            if (seen_ihdr) { rc = sd_errorf("more than one IHDR chunk"); break; }
            seen_ihdr = 1;
            if ((rc = parse_ihdr(cdata, clen, img))) break;
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (seen_plte) { rc = sd_errorf("more than one PLTE chunk"); break; }
            if (seen_idat) { rc = sd_errorf("PLTE after IDAT"); break; }
            if (clen % 3 != 0 || clen == 0 || clen > 768) {
                rc = sd_errorf("PLTE has %u bytes (must be 3..768 and a multiple of 3)", clen);
                break;
            }
            seen_plte = 1;
            img->palette_size = (int)(clen / 3);
            for (int i = 0; i < img->palette_size; i++) {
                img->palette[i][0] = cdata[3 * i];
                img->palette[i][1] = cdata[3 * i + 1];
                img->palette[i][2] = cdata[3 * i + 2];
                img->palette[i][3] = 255;
            }
        } else if (memcmp(type, "tRNS", 4) == 0) {
            if (seen_idat) { rc = sd_errorf("tRNS after IDAT"); break; }
            trns = cdata;
            trns_len = clen;
        } else if (is_idat) {
            if (idat_ended) { rc = sd_errorf("IDAT chunks are not consecutive"); break; }
            seen_idat = 1;
            if (clen > zcap - zlen) {
                size_t ncap = zcap ? zcap : 65536;
                while (ncap - zlen < clen) ncap *= 2;
                uint8_t *nz = (uint8_t *)realloc(zdata, ncap);
                if (!nz) { rc = sd_errorf("out of memory collecting IDAT data"); break; }
                zdata = nz;
                zcap = ncap;
            }
            if (clen) memcpy(zdata + zlen, cdata, clen);
            zlen += clen;
        } else if (memcmp(type, "IEND", 4) == 0) {
            seen_iend = 1;
        } else if (!(type[0] & 0x20)) {  // uppercase first letter: critical, must be understood
            rc = sd_errorf("unknown critical chunk %s", name);
            break;
        }
    }
    if (!rc && !seen_idat) rc = sd_errorf("no IDAT chunk");
    if (!rc && img->color_type == 3 && !seen_plte) rc = sd_errorf("palette image without PLTE chunk");
    if (!rc && trns) {
        if (img->color_type == 3) {
            if (trns_len > (uint32_t)img->palette_size)
                rc = sd_errorf("tRNS has %u entries but the palette only %d", trns_len, img->palette_size);
            for (uint32_t i = 0; !rc && i < trns_len; i++) img->palette[i][3] = trns[i];
        } else if (img->color_type == 0 || img->color_type == 2) {
            uint32_t want = img->color_type == 0 ? 2 : 6;
            if (trns_len != want) rc = sd_errorf("tRNS has %u bytes, expected %u for colour type %d", trns_len, want,
                                                  img->color_type);
            for (uint32_t i = 0; !rc && i < want / 2; i++) img->trns_key[i] = (uint16_t)(trns[2 * i] << 8 | trns[2 * i + 1]);
            if (!rc) img->has_trns_key = 1;
        }
        // Colour types 4 and 6 already carry alpha: a tRNS chunk is ignored (as libpng does).
    }
    if (!rc) rc = decode_image_data(img, zdata, zlen);
    free(zdata);
    return rc;
}

int png_decode(const uint8_t *data, size_t len, PngImage *img) {
    memset(img, 0, sizeof(*img));
    if (decode_chunks(data, len, img)) {
        png_free(img);
        return -1;
    }
    return 0;
}

void png_free(PngImage *img) {
    free(img->pixels);
    img->pixels = NULL;
}

int png_read(const char *path, PngImage *img) {
    uint8_t *buf;
    size_t len;
    memset(img, 0, sizeof(*img));
    if (read_whole_file(path, &buf, &len, 0)) return -1;
    int rc = png_decode(buf, len, img);
    free(buf);
    if (rc) return sd_error_context("file %s", path);
    return 0;
}

int png_to_rgba(const PngImage *img, void **rgba, int *bytes_per_sample) {
    *rgba = NULL;
    size_t n = (size_t)img->width * (size_t)img->height;
    int wide = img->bit_depth == 16;
    *bytes_per_sample = wide ? 2 : 1;
    void *out = malloc(n * 4 * (size_t)*bytes_per_sample);
    if (!out) return sd_errorf("out of memory for a %dx%d RGBA image", img->width, img->height);
    int c = img->channels;
    if (wide) {
        const uint16_t *src = (const uint16_t *)img->pixels;
        uint16_t *dst = (uint16_t *)out;
        for (size_t i = 0; i < n; i++, src += c, dst += 4) {
            int is_gray = c <= 2;
            dst[0] = src[0];
            dst[1] = is_gray ? src[0] : src[1];
            dst[2] = is_gray ? src[0] : src[2];
            if (c == 2 || c == 4) dst[3] = src[c - 1];
            else if (img->has_trns_key && src[0] == img->trns_key[0] &&
                     (c == 1 || (src[1] == img->trns_key[1] && src[2] == img->trns_key[2])))
                dst[3] = 0;
            else dst[3] = 65535;
        }
    } else {
        const uint8_t *src = (const uint8_t *)img->pixels;
        uint8_t *dst = (uint8_t *)out;
        // v * 255 / (2^d - 1) for d = 1, 2, 4, 8
        int scale = img->bit_depth == 1 ? 255 : img->bit_depth == 2 ? 85 : img->bit_depth == 4 ? 17 : 1;
        for (size_t i = 0; i < n; i++, src += c, dst += 4) {
            if (img->color_type == 3) {
                int idx = src[0];
                if (idx < img->palette_size) memcpy(dst, img->palette[idx], 4);
                else dst[0] = dst[1] = dst[2] = 0, dst[3] = 255;
                continue;
            }
            int is_gray = c <= 2;
            uint8_t g = (uint8_t)(src[0] * scale);
            dst[0] = is_gray ? g : src[0];
            dst[1] = is_gray ? g : src[1];
            dst[2] = is_gray ? g : src[2];
            if (c == 2 || c == 4) dst[3] = src[c - 1];
            else if (img->has_trns_key && src[0] == img->trns_key[0] &&
                     (c == 1 || (src[1] == img->trns_key[1] && src[2] == img->trns_key[2])))
                dst[3] = 0;
            else dst[3] = 255;
        }
    }
    *rgba = out;
    return 0;
}

// ---------------------------------------------------------------------------
// Writer

static void put_chunk(uint8_t *out, size_t *pos, const char *type, const uint8_t *data, uint32_t len) {
    uint8_t *p = out + *pos;
    put_be32(p, len);
    memcpy(p + 4, type, 4);
    if (len) memcpy(p + 8, data, len);
    put_be32(p + 8 + len, png_crc32(0, p + 4, 4 + (size_t)len));
    *pos += 12 + (size_t)len;
}

int png_encode(const uint8_t *pixels, int width, int height, int channels, const uint8_t *palette_rgb,
               int palette_size, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    int color_type = channels == 1 ? (palette_rgb ? 3 : 0) : channels == 3 ? 2 : channels == 4 ? 6 : -1;
    if (color_type < 0 || (palette_rgb && channels != 1))
        return sd_errorf("png_encode: %d channels not supported (1 gray or palette, 3 RGB, 4 RGBA)", channels);
    if (width <= 0 || height <= 0) return sd_errorf("png_encode: invalid size %dx%d", width, height);
    if (palette_rgb && (palette_size < 1 || palette_size > 256))
        return sd_errorf("png_encode: palette of %d entries (must be 1..256)", palette_size);
    size_t rb = (size_t)width * (size_t)channels;
    if ((uint64_t)rb * (uint64_t)height > PNG_MAX_PIXEL_BYTES)
        return sd_errorf("png_encode: %dx%dx%d image is over the size limit", width, height, channels);
    if (palette_rgb) {
        for (size_t i = 0; i < rb * (size_t)height; i++)
            if (pixels[i] >= palette_size)
                return sd_errorf("png_encode: pixel %zu has index %d, palette has %d entries", i, pixels[i],
                                 palette_size);
    }
    // Filter type 0 on every row: simple, and label maps compress well with LZ77.
    size_t raw_len = (rb + 1) * (size_t)height;
    uint8_t *raw = (uint8_t *)malloc(raw_len);
    if (!raw) return sd_errorf("png_encode: out of memory");
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * (rb + 1)] = 0;
        memcpy(raw + (size_t)y * (rb + 1) + 1, pixels + (size_t)y * rb, rb);
    }
    uint8_t *z;
    size_t zlen;
    int rc = zlib_compress(raw, raw_len, &z, &zlen);
    free(raw);
    if (rc) return -1;
    if (zlen > 0x7fffffffu) {
        free(z);
        return sd_errorf("png_encode: compressed data too large for one IDAT chunk");
    }
    size_t cap = 8 + 25 + (12 + 768) + 12 + zlen + 12;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf) {
        free(z);
        return sd_errorf("png_encode: out of memory");
    }
    size_t pos = 0;
    memcpy(buf, PNG_SIGNATURE, 8);
    pos = 8;
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;
    ihdr[9] = (uint8_t)color_type;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    put_chunk(buf, &pos, "IHDR", ihdr, 13);
    if (palette_rgb) put_chunk(buf, &pos, "PLTE", palette_rgb, (uint32_t)(3 * palette_size));
    put_chunk(buf, &pos, "IDAT", z, (uint32_t)zlen);
    put_chunk(buf, &pos, "IEND", NULL, 0);
    free(z);
    *out = buf;
    *out_len = pos;
    return 0;
}

int png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
              const uint8_t *palette_rgb, int palette_size) {
    uint8_t *buf;
    size_t len;
    if (png_encode(pixels, width, height, channels, palette_rgb, palette_size, &buf, &len))
        return sd_error_context("file %s", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return sd_errorf("cannot create %s", path);
    }
    size_t wrote = fwrite(buf, 1, len, f);
    int close_rc = fclose(f);
    free(buf);
    if (wrote != len || close_rc != 0) return sd_errorf("%s: write failed", path);
    return 0;
}
