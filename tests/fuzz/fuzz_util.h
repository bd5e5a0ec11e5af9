// For the fuzz targets whose entry point takes a path (st_open mmaps a file, the image and
// label loaders open one): the input written to a file in /dev/shm, one per process.
#ifndef SD_FUZZ_UTIL_H
#define SD_FUZZ_UTIL_H

#include <stdio.h>

// Writes n bytes at p to path; returns 0, or -1 if the file cannot be written.
static int fuzz_write_file(const char *path, const unsigned char *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

#endif
