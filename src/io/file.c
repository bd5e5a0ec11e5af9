#include "io/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

int read_whole_file(const char *path, uint8_t **data, size_t *len, size_t max_bytes) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sd_errorf("%s: cannot open: %s", path, strerror(errno));
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return sd_errorf("%s: cannot determine the file size", path);
    }
    if (max_bytes && (size_t)n > max_bytes) {
        fclose(f);
        return sd_errorf("%s: %ld bytes, more than the %zu this reader accepts", path, n, max_bytes);
    }
    uint8_t *buf = (uint8_t *)malloc(n > 0 ? (size_t)n + 1 : 1);  // +1: room for a NUL (text readers)
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return sd_errorf("%s: cannot read %ld bytes", path, n);
    }
    fclose(f);
    *data = buf;
    *len = (size_t)n;
    return 0;
}

int write_text_atomic(const char *path, const char *text) {
    size_t n = strlen(path) + 8;
    char *tmp = (char *)malloc(n);
    if (!tmp) return sd_errorf("out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(tmp);
        return sd_errorf("%s: cannot write: %s", path, strerror(errno));
    }
    int ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return sd_errorf("%s: write failed", path);
    }
    free(tmp);
    return 0;
}
