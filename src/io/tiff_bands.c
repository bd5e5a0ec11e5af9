// GeoTIFF band descriptions: GDAL keeps a band's description (GetDescription / SetDescription,
// `gdal_translate -b`, rasterio's `descriptions`) in the GDAL_METADATA tag (42112) of IFD 0, an
// XML text such as
//   <GDALMetadata>
//     <Item name="DESCRIPTION" sample="0" role="description">Red</Item>
//     <Item name="OFFSET" sample="0" role="offset">0</Item> ...
//   </GDALMetadata>
// with `sample` the 0-based band. Only the header, IFD 0 and that tag's bytes are read (pread),
// so a scene of any size costs a few reads. Every offset and count is checked against the file.
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/tiff_bands.h"

#define TAG_GDAL_METADATA 42112
#define MAX_METADATA_BYTES (16u << 20)

typedef struct {
    int fd, big_endian;
    uint64_t size;
} Src;

// n (<= 8) bytes at off as an unsigned number in the file's byte order; -1 past the end.
static int rd(const Src *s, uint64_t off, int n, uint64_t *v) {
    uint8_t b[8];
    if (off > s->size || (uint64_t)n > s->size - off || pread(s->fd, b, (size_t)n, (off_t)off) != n) return -1;
    *v = 0;
    for (int i = 0; i < n; i++) *v |= (uint64_t)b[s->big_endian ? i : n - 1 - i] << (8 * (n - 1 - i));
    return 0;
}

// The GDAL_METADATA text of IFD 0 (malloc'd, NUL-terminated) or NULL when the tag is absent.
static int read_metadata(const char *path, char **text) {
    *text = NULL;
    Src s;
    s.fd = open(path, O_RDONLY);
    if (s.fd < 0) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(s.fd, &st) == 0 ? 0 : sd_errorf("%s: cannot stat: %s", path, strerror(errno));
    s.size = rc == 0 ? (uint64_t)st.st_size : 0;
    uint8_t h[2] = {0, 0};
    if (rc == 0 && (s.size < 8 || pread(s.fd, h, 2, 0) != 2 || !((h[0] == 'I' && h[1] == 'I') || (h[0] == 'M' && h[1] == 'M'))))
        rc = sd_errorf("%s: not a TIFF file", path);
    s.big_endian = h[0] == 'M';
    uint64_t magic = 0, ifd = 0, count = 0;
    if (rc == 0 && rd(&s, 2, 2, &magic)) rc = sd_errorf("%s: truncated TIFF header", path);
    int big = magic == 43;
    if (rc == 0 && magic != 42 && magic != 43) rc = sd_errorf("%s: not a TIFF file (version %llu)", path, (unsigned long long)magic);
    if (rc == 0 && (big ? rd(&s, 8, 8, &ifd) : rd(&s, 4, 4, &ifd))) rc = sd_errorf("%s: truncated TIFF header", path);
    if (rc == 0 && (big ? rd(&s, ifd, 8, &count) : rd(&s, ifd, 2, &count)))
        rc = sd_errorf("%s: IFD 0 at %llu lies outside the file", path, (unsigned long long)ifd);
    int entry = big ? 20 : 12, head = big ? 8 : 2;
    if (rc == 0 && count > (s.size - ifd - (uint64_t)head) / (uint64_t)entry)
        rc = sd_errorf("%s: IFD 0 has %llu entries, more than the file holds", path, (unsigned long long)count);
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
        uint64_t e = ifd + (uint64_t)head + i * (uint64_t)entry, tag, type, n, off;
        if (rd(&s, e, 2, &tag) || rd(&s, e + 2, 2, &type) || rd(&s, e + 4, big ? 8 : 4, &n)) {
            rc = sd_errorf("%s: truncated IFD 0", path);
            break;
        }
        if (tag != TAG_GDAL_METADATA) continue;
        if ((type != 2 && type != 1 && type != 7) || n == 0 || n > MAX_METADATA_BYTES) {
            rc = sd_errorf("%s: GDAL_METADATA (tag 42112) of type %llu with %llu values: expected ASCII text under 16 MiB",
                           path, (unsigned long long)type, (unsigned long long)n);
            break;
        }
        uint64_t inline_max = big ? 8 : 4;
        off = e + (big ? 12 : 8);
        if (n > inline_max && rd(&s, off, big ? 8 : 4, &off)) rc = sd_errorf("%s: truncated IFD 0", path);
        if (rc == 0 && (off > s.size || n > s.size - off))
            rc = sd_errorf("%s: GDAL_METADATA (tag 42112) lies outside the file", path);
        if (rc) break;
        char *t = (char *)malloc((size_t)n + 1);
        if (!t) rc = sd_errorf("out of memory");
        else if (pread(s.fd, t, (size_t)n, (off_t)off) != (ssize_t)n) rc = sd_errorf("%s: cannot read GDAL_METADATA", path);
        if (rc == 0) {
            t[n] = 0;
            *text = t;
        } else {
            free(t);
        }
        break;
    }
    close(s.fd);
    return rc;
}

// The value of attribute `name` in the tag text [p, end) (quoted with " or '), into out.
static int xml_attr(const char *p, const char *end, const char *name, char *out, size_t size) {
    size_t nl = strlen(name);
    for (const char *q = p; q + nl + 2 < end; q++) {
        if ((q == p || q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n') && !strncmp(q, name, nl) && q[nl] == '=' &&
            (q[nl + 1] == '"' || q[nl + 1] == '\'')) {
            const char *v = q + nl + 2, *close = memchr(v, q[nl + 1], (size_t)(end - v));
            if (!close || (size_t)(close - v) >= size) return -1;
            memcpy(out, v, (size_t)(close - v));
            out[close - v] = 0;
            return 0;
        }
    }
    return -1;
}

// XML character data with the five predefined entities and numeric ASCII references decoded.
static void xml_text(const char *p, const char *end, char *out, size_t size) {
    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}};
    size_t n = 0;
    while (p < end && n + 1 < size) {
        int done = 0;
        for (int k = 0; k < 5 && !done; k++) {
            size_t l = strlen(ent[k][0]);
            if ((size_t)(end - p) >= l && !strncmp(p, ent[k][0], l)) out[n++] = ent[k][1][0], p += l, done = 1;
        }
        if (!done && p[0] == '&' && end - p > 3 && p[1] == '#') {
            char *stop;
            long c = p[2] == 'x' ? strtol(p + 3, &stop, 16) : strtol(p + 2, &stop, 10);
            if (stop < end && *stop == ';' && c > 0 && c < 128) out[n++] = (char)c, p = stop + 1, done = 1;
        }
        if (!done) out[n++] = *p++;
    }
    out[n] = 0;
}

int tiff_band_names(const char *path, char **names, int max, int *found) {
    *found = 0;
    for (int i = 0; i < max; i++) names[i] = NULL;
    char *text;
    if (read_metadata(path, &text)) return -1;
    if (!text) return 0;
    const char *end = text + strlen(text);
    int rc = 0;
    for (const char *p = strstr(text, "<Item"); rc == 0 && p; p = strstr(p + 5, "<Item")) {
        const char *gt = memchr(p, '>', (size_t)(end - p));
        if (!gt) break;
        char name[64], sample[32];
        if (xml_attr(p + 5, gt, "name", name, sizeof(name)) || strcmp(name, "DESCRIPTION") ||
            xml_attr(p + 5, gt, "sample", sample, sizeof(sample)))
            continue;  // dataset-wide items and other metadata
        char *stop;
        long b = strtol(sample, &stop, 10);
        const char *close = strstr(gt, "</Item>");
        if (*stop || b < 0 || b >= max || !close || gt[-1] == '/') continue;
        char value[256];
        xml_text(gt + 1, close, value, sizeof(value));
        free(names[b]);
        if (!(names[b] = strdup(value))) rc = sd_errorf("out of memory");
        if (b + 1 > *found) *found = (int)b + 1;
    }
    free(text);
    if (rc)
        for (int i = 0; i < max; i++) free(names[i]), names[i] = NULL;
    return rc;
}
