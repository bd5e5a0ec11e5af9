// A read-only view of a zip archive held in memory (a mapped file), as PyTorch
// >= 1.6 writes its checkpoints: every entry "stored" (method 0, no compression),
// data records 64-byte aligned, ZIP64 records for archives and entries over 4 GB.
// Only what such files need is read: the end-of-central-directory record (and its
// ZIP64 form), the central directory, and each entry's local header to find where
// its data starts. Compressed entries are listed but refused when opened.
//
// Every offset and size is checked against the buffer; entries may not overlap
// (a zip bomb of entries sharing data is refused), names may not hold NUL bytes.
#ifndef SD_ZIP_H
#define SD_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *name;              // NUL-terminated copy of the entry name
    int method;              // 0 = stored; anything else is refused by zip_entry_data
    uint64_t size;           // uncompressed size
    uint64_t compressed_size;
    uint64_t header_offset;  // of the local file header
    uint64_t data_offset;    // of the first data byte (after the local header)
} ZipEntry;

typedef struct {
    const char *path;        // for messages (not owned)
    const unsigned char *buf;
    size_t size;
    int count;
    ZipEntry *entries;       // in central-directory order
} ZipArchive;

#define ZIP_MAX_ENTRIES 1000000

// 1 if the buffer starts like a zip file (a local header or an empty archive).
int zip_sniff(const unsigned char *buf, size_t size);
// Reads the directory of the archive in buf[0..size). `path` names the file in messages.
int zip_open(ZipArchive *z, const char *path, const unsigned char *buf, size_t size);
void zip_close(ZipArchive *z);
// The entry with that exact name, or NULL.
const ZipEntry *zip_find(const ZipArchive *z, const char *name);
// The bytes of a stored entry: *data points into buf. Compressed entries are an error.
int zip_entry_data(const ZipArchive *z, const ZipEntry *e, const unsigned char **data, uint64_t *size);

#endif
