// Zip directory reader (see zip.h). Layout reference: PKWARE APPNOTE.TXT
// sections 4.3.7 (local header), 4.3.12 (central directory header), 4.3.14-16
// (ZIP64 end of central directory record and locator, end of central directory).
// All multi-byte fields are little-endian, read byte by byte on every host.
#include "io/zip.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static uint32_t rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const unsigned char *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

enum {
    SIG_LOCAL = 0x04034b50,
    SIG_CENTRAL = 0x02014b50,
    SIG_END = 0x06054b50,
    SIG_END64 = 0x06064b50,
    SIG_END64_LOCATOR = 0x07064b50,
    END_SIZE = 22,
    END64_SIZE = 56,
    LOCATOR_SIZE = 20,
    CENTRAL_SIZE = 46,
    LOCAL_SIZE = 30,
};

int zip_sniff(const unsigned char *buf, size_t size) {
    return size >= 4 && (rd32(buf) == SIG_LOCAL || rd32(buf) == SIG_END);
}

// The end-of-central-directory record: the last signature in the final 64 KB + 22 bytes
// (it may be followed by a comment of up to 65535 bytes).
static int find_end_record(const unsigned char *buf, size_t size, size_t *at) {
    if (size < END_SIZE) return SD_FAIL;
    size_t lowest = size > END_SIZE + 65535 ? size - END_SIZE - 65535 : 0;
    for (size_t i = size - END_SIZE + 1; i-- > lowest;) {
        if (rd32(buf + i) == SIG_END && i + END_SIZE + rd16(buf + i + 20) == size) {
            *at = i;
            return 0;
        }
    }
    return SD_FAIL;
}

// Reads the ZIP64 extended-information extra field (id 0x0001) of a central header:
// it holds, in this order, only the fields whose 32-bit value is 0xFFFFFFFF.
static int read_zip64_extra(const ZipArchive *z, const char *name, const unsigned char *extra, size_t len,
                            uint64_t *usize, uint64_t *csize, uint64_t *offset) {
    size_t i = 0;
    while (i + 4 <= len) {
        uint32_t id = rd16(extra + i), n = rd16(extra + i + 2);
        if (i + 4 + n > len) break;
        if (id == 0x0001) {
            const unsigned char *p = extra + i + 4;
            size_t k = 0;
            uint64_t *fields[3] = {usize, csize, offset};
            for (int f = 0; f < 3; f++) {
                if (*fields[f] != 0xFFFFFFFFu) continue;
                if (k + 8 > n) return sd_errorf("%s: entry '%s': ZIP64 extra field too short", z->path, name);
                *fields[f] = rd64(p + k);
                k += 8;
            }
            return 0;
        }
        i += 4 + n;
    }
    if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *offset == 0xFFFFFFFFu)
        return sd_errorf("%s: entry '%s': sizes marked ZIP64 but no ZIP64 extra field", z->path, name);
    return 0;
}

static int cmp_header_offset(const void *a, const void *b) {
    const ZipEntry *x = *(const ZipEntry *const *)a, *y = *(const ZipEntry *const *)b;
    return (x->header_offset > y->header_offset) - (x->header_offset < y->header_offset);
}

// Each entry's local header + data must lie inside the file before the next entry's header.
static int check_no_overlap(ZipArchive *z) {
    if (z->count < 2) return 0;
    const ZipEntry **sorted = (const ZipEntry **)malloc((size_t)z->count * sizeof(*sorted));
    if (!sorted) return sd_errorf("out of memory");
    for (int i = 0; i < z->count; i++) sorted[i] = &z->entries[i];
    qsort(sorted, (size_t)z->count, sizeof(*sorted), cmp_header_offset);
    int rc = 0;
    for (int i = 1; i < z->count && !rc; i++) {
        const ZipEntry *a = sorted[i - 1], *b = sorted[i];
        if (a->data_offset + a->compressed_size > b->header_offset)
            rc = sd_errorf("%s: entries '%s' and '%s' overlap (a zip bomb or a damaged archive)", z->path, a->name,
                           b->name);
    }
    free(sorted);
    return rc;
}

int zip_open(ZipArchive *z, const char *path, const unsigned char *buf, size_t size) {
    memset(z, 0, sizeof(*z));
    z->path = path;
    z->buf = buf;
    z->size = size;
    size_t end;
    if (find_end_record(buf, size, &end))
        return sd_errorf("%s: no zip end-of-central-directory record: truncated or not a zip archive", path);
    uint64_t count = rd16(buf + end + 10), cd_size = rd32(buf + end + 12), cd_offset = rd32(buf + end + 16);
    if (rd16(buf + end + 4) != 0 || rd16(buf + end + 6) != 0)
        return sd_errorf("%s: multi-volume zip archives are not supported", path);
    // ZIP64: a locator just before the end record points at the 64-bit end record.
    if (end >= LOCATOR_SIZE && rd32(buf + end - LOCATOR_SIZE) == SIG_END64_LOCATOR) {
        uint64_t at = rd64(buf + end - LOCATOR_SIZE + 8);
        if (at > size - END64_SIZE || size < END64_SIZE || rd32(buf + at) != SIG_END64)
            return sd_errorf("%s: bad ZIP64 end-of-central-directory locator", path);
        count = rd64(buf + at + 32);
        cd_size = rd64(buf + at + 40);
        cd_offset = rd64(buf + at + 48);
    }
    if (cd_offset > size || cd_size > size - cd_offset)
        return sd_errorf("%s: central directory (offset %llu, %llu bytes) runs past the end of the file (%zu bytes): "
                         "truncated?",
                         path, (unsigned long long)cd_offset, (unsigned long long)cd_size, size);
    if (count > ZIP_MAX_ENTRIES || count > cd_size / CENTRAL_SIZE + 1)
        return sd_errorf("%s: %llu entries declared in a %llu-byte central directory", path, (unsigned long long)count,
                         (unsigned long long)cd_size);
    z->entries = (ZipEntry *)calloc((size_t)(count ? count : 1), sizeof(ZipEntry));
    if (!z->entries) return sd_errorf("out of memory");
    const unsigned char *p = buf + cd_offset, *cd_end = buf + cd_offset + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if ((size_t)(cd_end - p) < CENTRAL_SIZE || rd32(p) != SIG_CENTRAL) {
            zip_close(z);
            return sd_errorf("%s: central directory entry %llu is damaged or truncated", path, (unsigned long long)i);
        }
        size_t name_len = rd16(p + 28), extra_len = rd16(p + 30), comment_len = rd16(p + 32);
        if ((size_t)(cd_end - p) < CENTRAL_SIZE + name_len + extra_len + comment_len) {
            zip_close(z);
            return sd_errorf("%s: central directory entry %llu runs past the directory", path, (unsigned long long)i);
        }
        ZipEntry *e = &z->entries[z->count];
        e->name = (char *)malloc(name_len + 1);
        if (!e->name) { zip_close(z); return sd_errorf("out of memory"); }
        memcpy(e->name, p + CENTRAL_SIZE, name_len);
        e->name[name_len] = '\0';
        z->count++;
        if (strlen(e->name) != name_len) {
            zip_close(z);
            return sd_errorf("%s: entry %llu has a NUL byte in its name", path, (unsigned long long)i);
        }
        e->method = (int)rd16(p + 10);
        e->compressed_size = rd32(p + 20);
        e->size = rd32(p + 24);
        e->header_offset = rd32(p + 42);
        if (read_zip64_extra(z, e->name, p + CENTRAL_SIZE + name_len, extra_len, &e->size, &e->compressed_size,
                             &e->header_offset)) {
            zip_close(z);
            return SD_FAIL;
        }
        p += CENTRAL_SIZE + name_len + extra_len + comment_len;
        // The local header: its name and extra field lengths may differ from the central ones
        // (PyTorch pads the local extra field so that the data starts on a 64-byte boundary).
        uint64_t h = e->header_offset;
        if (h > size || size - h < LOCAL_SIZE || rd32(buf + h) != SIG_LOCAL) {
            int rc = sd_errorf("%s: entry '%s': no local header at offset %llu (truncated or damaged archive)", path,
                               e->name, (unsigned long long)h);
            zip_close(z);
            return rc;
        }
        e->data_offset = h + LOCAL_SIZE + rd16(buf + h + 26) + rd16(buf + h + 28);
        if (e->data_offset > size || e->compressed_size > size - e->data_offset) {
            int rc = sd_errorf("%s: entry '%s' (%llu bytes at offset %llu) runs past the end of the file (%zu bytes): "
                               "truncated?",
                               path, e->name, (unsigned long long)e->compressed_size,
                               (unsigned long long)e->data_offset, size);
            zip_close(z);
            return rc;
        }
    }
    if (check_no_overlap(z)) { zip_close(z); return SD_FAIL; }
    return 0;
}

void zip_close(ZipArchive *z) {
    for (int i = 0; i < z->count; i++) free(z->entries[i].name);
    free(z->entries);
    memset(z, 0, sizeof(*z));
}

const ZipEntry *zip_find(const ZipArchive *z, const char *name) {
    for (int i = 0; i < z->count; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

int zip_entry_data(const ZipArchive *z, const ZipEntry *e, const unsigned char **data, uint64_t *size) {
    if (e->method != 0)
        return sd_errorf("%s: entry '%s' is compressed (method %d); PyTorch checkpoints store their records "
                         "uncompressed: re-save the file with torch.save",
                         z->path, e->name, e->method);
    if (e->compressed_size != e->size)
        return sd_errorf("%s: stored entry '%s' has compressed size %llu but size %llu", z->path, e->name,
                         (unsigned long long)e->compressed_size, (unsigned long long)e->size);
    *data = z->buf + e->data_offset;
    *size = e->size;
    return 0;
}
