// Baseline TIFF writer (TIFF 6.0 part 1, GeoTIFF 1.1 tags), little-endian, classic.
//
// File layout: the 8-byte header, the strips, the tag values that do not fit in
// an entry's 4 bytes (word-aligned), then IFD 0 (entry count, entries sorted by
// tag, next-IFD offset 0). The header's IFD offset is written last.
#include "io/tiff_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/inflate.h"

enum { T_BYTE = 1, T_ASCII = 2, T_SHORT = 3, T_LONG = 4, T_RATIONAL = 5, T_DOUBLE = 12 };

// A growable little-endian byte buffer.
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const void *data, size_t len) {
    if (b->oom) return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len) cap *= 2;
        uint8_t *q = (uint8_t *)realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void buf_u16(Buf *b, uint32_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    buf_put(b, x, 2);
}

static void buf_u32(Buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_put(b, x, 4);
}

static void buf_f64(Buf *b, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    buf_u32(b, (uint32_t)u);
    buf_u32(b, (uint32_t)(u >> 32));
}

static void set_u32(Buf *b, size_t at, uint32_t v) {
    if (b->oom) return;
    for (int i = 0; i < 4; i++) b->p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

// One IFD entry; its values already encoded little-endian in `val` (count * type size bytes).
#define MAX_ENTRIES 32
typedef struct {
    int tag, type;
    uint32_t count;
    Buf val;
} Entry;

typedef struct {
    Entry e[MAX_ENTRIES];
    int n;
} Entries;

static Entry *add(Entries *es, int tag, int type, uint32_t count) {
    Entry *e = &es->e[es->n++];  // at most ~22 tags below
    memset(e, 0, sizeof(*e));
    e->tag = tag, e->type = type, e->count = count;
    return e;
}

static void add_short(Entries *es, int tag, uint32_t v) { buf_u16(&add(es, tag, T_SHORT, 1)->val, v); }
static void add_long(Entries *es, int tag, uint32_t v) { buf_u32(&add(es, tag, T_LONG, 1)->val, v); }

static void add_ascii(Entries *es, int tag, const char *s, size_t len) {  // len bytes, a NUL added if missing
    int nul = len == 0 || s[len - 1] != '\0';
    Entry *e = add(es, tag, T_ASCII, (uint32_t)(len + (size_t)nul));
    buf_put(&e->val, s, len);
    if (nul) buf_put(&e->val, "", 1);
}

static void add_doubles(Entries *es, int tag, const double *v, int n) {
    Entry *e = add(es, tag, T_DOUBLE, (uint32_t)n);
    for (int i = 0; i < n; i++) buf_f64(&e->val, v[i]);
}

static int cmp_entry(const void *a, const void *b) { return ((const Entry *)a)->tag - ((const Entry *)b)->tag; }

int tiff_encode(const TiffWriteImage *img, uint8_t **out, size_t *out_len) {
    *out = NULL, *out_len = 0;
    int W = img->width, H = img->height, spp = img->channels;
    if (W <= 0 || H <= 0 || (spp != 1 && spp != 3)) return sd_errorf("TIFF writer: bad image %dx%dx%d", W, H, spp);
    if (img->palette_rgb && (spp != 1 || img->palette_size < 1 || img->palette_size > 256))
        return sd_errorf("TIFF writer: a palette needs 1 channel and 1..256 colours");
    size_t row = (size_t)W * (size_t)spp;
    if ((double)row * H > 4.0e9) return sd_errorf("TIFF writer: %dx%dx%d is over the 4 GiB of a classic TIFF", W, H, spp);
    // Strips of about 64 KiB: small enough for any reader, few enough for small tag arrays.
    int rps = (int)(65536 / row);
    if (rps < 1) rps = 1;
    if (rps > H) rps = H;
    int nstrips = (H + rps - 1) / rps;
    uint32_t *offs = (uint32_t *)malloc((size_t)nstrips * sizeof(uint32_t));
    uint32_t *counts = (uint32_t *)malloc((size_t)nstrips * sizeof(uint32_t));
    Buf b = {0};
    Entries es;
    es.n = 0;
    int rc = -1;
    if (!offs || !counts) { sd_errorf("out of memory"); goto done; }
    buf_put(&b, "II\x2a\0\0\0\0\0", 8);  // IFD offset patched at the end
    for (int s = 0; s < nstrips; s++) {
        int y0 = s * rps, rows = H - y0 < rps ? H - y0 : rps;
        const uint8_t *src = img->pixels + (size_t)y0 * row;
        size_t len = (size_t)rows * row;
        offs[s] = (uint32_t)b.n;
        if (img->deflate) {
            uint8_t *z = NULL;
            size_t zn = 0;
            if (zlib_compress(src, len, &z, &zn)) goto done;
            buf_put(&b, z, zn);
            free(z);
            counts[s] = (uint32_t)zn;
        } else {
            buf_put(&b, src, len);
            counts[s] = (uint32_t)len;
        }
        if (b.n & 1) buf_put(&b, "", 1);  // strips start on word boundaries
        if (b.n > 0xFFFFFFF0u) { sd_errorf("TIFF writer: the file would pass 4 GiB"); goto done; }
    }
    // The entries.
    add_long(&es, 256, (uint32_t)W);
    add_long(&es, 257, (uint32_t)H);
    Entry *bps = add(&es, 258, T_SHORT, (uint32_t)spp);
    for (int c = 0; c < spp; c++) buf_u16(&bps->val, 8);
    add_short(&es, 259, img->deflate ? 8 : 1);
    add_short(&es, 262, img->palette_rgb ? 3 : spp == 3 ? 2 : 1);  // palette, RGB, BlackIsZero
    if (img->description) add_ascii(&es, 270, img->description, strlen(img->description));
    Entry *so = add(&es, 273, T_LONG, (uint32_t)nstrips);
    for (int s = 0; s < nstrips; s++) buf_u32(&so->val, offs[s]);
    add_short(&es, 277, (uint32_t)spp);
    add_long(&es, 278, (uint32_t)rps);
    Entry *sc = add(&es, 279, T_LONG, (uint32_t)nstrips);
    for (int s = 0; s < nstrips; s++) buf_u32(&sc->val, counts[s]);
    for (int t = 282; t <= 283; t++) {  // X/YResolution 1/1 with ResolutionUnit 1 (none): baseline asks for them
        Entry *r = add(&es, t, T_RATIONAL, 1);
        buf_u32(&r->val, 1), buf_u32(&r->val, 1);
    }
    add_short(&es, 284, 1);  // PlanarConfiguration: contiguous
    add_short(&es, 296, 1);
    add_ascii(&es, 305, "satdifuser", 10);
    if (img->palette_rgb) {  // ColorMap: all reds, then greens, then blues, 16-bit (v * 257)
        Entry *cm = add(&es, 320, T_SHORT, 3 * 256);
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 256; i++)
                buf_u16(&cm->val, i < img->palette_size ? 257u * img->palette_rgb[3 * i + k] : 0);
    }
    const TiffGeoTags *g = img->geo;
    if (g) {
        if (g->n_pixel_scale) add_doubles(&es, 33550, g->pixel_scale, g->n_pixel_scale);
        if (g->n_tiepoint) add_doubles(&es, 33922, g->tiepoint, g->n_tiepoint);
        if (g->n_transformation) add_doubles(&es, 34264, g->transformation, g->n_transformation);
        if (g->n_key_directory) {
            Entry *k = add(&es, 34735, T_SHORT, (uint32_t)g->n_key_directory);
            for (int i = 0; i < g->n_key_directory; i++) buf_u16(&k->val, g->key_directory[i]);
        }
        if (g->n_double_params) add_doubles(&es, 34736, g->double_params, g->n_double_params);
        if (g->n_ascii_params) add_ascii(&es, 34737, g->ascii_params, (size_t)g->n_ascii_params);
    }
    if (img->has_nodata) {
        char text[64];
        snprintf(text, sizeof(text), "%.17g", img->nodata);
        add_ascii(&es, 42113, text, strlen(text));
    }
    qsort(es.e, (size_t)es.n, sizeof(Entry), cmp_entry);
    // Values over 4 bytes go before the IFD; the entries point at them.
    uint32_t at[MAX_ENTRIES];
    for (int i = 0; i < es.n; i++) {
        if (es.e[i].val.oom) b.oom = 1;
        if (es.e[i].val.n <= 4) continue;
        at[i] = (uint32_t)b.n;
        buf_put(&b, es.e[i].val.p, es.e[i].val.n);
        if (b.n & 1) buf_put(&b, "", 1);
    }
    size_t ifd = b.n;
    buf_u16(&b, (uint32_t)es.n);
    for (int i = 0; i < es.n; i++) {
        const Entry *e = &es.e[i];
        buf_u16(&b, (uint32_t)e->tag);
        buf_u16(&b, (uint32_t)e->type);
        buf_u32(&b, e->count);
        if (e->val.n <= 4) {  // inline, left-justified
            uint8_t v[4] = {0, 0, 0, 0};
            memcpy(v, e->val.p, e->val.n);
            buf_put(&b, v, 4);
        } else {
            buf_u32(&b, at[i]);
        }
    }
    buf_u32(&b, 0);
    if (b.oom || b.n > 0xFFFFFFFFu) { sd_errorf(b.oom ? "out of memory" : "TIFF writer: the file would pass 4 GiB"); goto done; }
    set_u32(&b, 4, (uint32_t)ifd);
    *out = b.p, *out_len = b.n;
    b.p = NULL;
    rc = 0;
done:
    for (int i = 0; i < es.n; i++) free(es.e[i].val.p);
    free(b.p);
    free(offs);
    free(counts);
    return rc;
}

int write_file_atomic(const char *path, const uint8_t *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return sd_errorf("%s: cannot write: %s", path, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len;
    bad |= fflush(f) != 0;
    bad |= fclose(f) != 0;
    if (bad) {
        unlink(tmp);
        return sd_errorf("%s: write failed (disk full?)", path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sd_errorf("%s: cannot rename the finished file into place: %s", path, strerror(e));
    }
    return 0;
}

int tiff_write(const char *path, const TiffWriteImage *img) {
    uint8_t *data;
    size_t len;
    if (tiff_encode(img, &data, &len)) return sd_error_context("%s", path);
    int rc = write_file_atomic(path, data, len);
    free(data);
    return rc;
}
