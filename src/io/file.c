#include "io/file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

typedef int (*WalkFn)(void *ctx, const char *rel, const char *full, const char *name);

static int walk_dir(const char *root, const char *rel, int depth, WalkFn on_file, void *ctx) {
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return sd_errorf("%s: cannot open folder: %s", path, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;  // hidden files, "." and ".."
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >= (int)sizeof(sub) ||
            snprintf(full, sizeof(full), "%s/%s", root, sub) >= (int)sizeof(full)) {
            rc = sd_errorf("%s/%s: path too long", path, e->d_name);
            break;
        }
        struct stat sb;
        if (stat(full, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth < 16) rc = walk_dir(root, sub, depth + 1, on_file, ctx);
        } else if (S_ISREG(sb.st_mode)) {
            rc = on_file(ctx, sub, full, e->d_name);
        }
    }
    closedir(d);
    return rc;
}

int walk_files(const char *root, WalkFn on_file, void *ctx) { return walk_dir(root, "", 0, on_file, ctx); }
