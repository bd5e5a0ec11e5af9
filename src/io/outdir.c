// Output folder checks: see outdir.h.
#include "io/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

// Creates and removes <dir>/.satdifuser-probe.<pid>. access(W_OK) is not enough: it ignores
// read-only mounts on some systems and says nothing of a full quota.
static int probe(const char *dir, const char *shown, const char *what) {
    char path[4200];
    if (snprintf(path, sizeof(path), "%s/.satdifuser-probe.%d", dir, (int)getpid()) >= (int)sizeof(path))
        return sd_errorf("%s %s: path too long", what, shown);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        int e = errno;
        if (!strcmp(dir, shown)) return sd_errorf("%s %s: cannot write there: %s", what, shown, strerror(e));
        return sd_errorf("%s %s: cannot create it in %s: %s", what, shown, dir, strerror(e));
    }
    close(fd);
    unlink(path);
    return 0;
}

int outdir_check(const char *dir, const char *what) {
    char cur[4096];
    if (!dir || !*dir) return sd_errorf("%s: empty path", what);
    if (snprintf(cur, sizeof(cur), "%s", dir) >= (int)sizeof(cur)) return sd_errorf("%s %s: path too long", what, dir);
    for (;;) {
        struct stat sb;
        if (stat(cur, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                if (!strcmp(cur, dir)) return sd_errorf("%s %s: exists and is not a folder", what, dir);
                return sd_errorf("%s %s: %s is not a folder", what, dir, cur);
            }
            return probe(cur, dir, what);
        }
        if (errno != ENOENT) return sd_errorf("%s %s: %s: %s", what, dir, cur, strerror(errno));
        // up one level: "a/b/c" -> "a/b", "a" -> ".", "/a" -> "/"
        size_t n = strlen(cur);
        while (n > 1 && cur[n - 1] == '/') cur[--n] = '\0';
        char *slash = strrchr(cur, '/');
        if (!slash) strcpy(cur, ".");
        else if (slash == cur) cur[1] = '\0';
        else *slash = '\0';
    }
}

int outfile_check(const char *path, const char *what) {
    char dir[4096];
    if (!path || !*path) return sd_errorf("%s: empty path", what);
    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) return sd_errorf("%s %s: path too long", what, path);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return sd_errorf("%s %s: is a folder, expected a file name", what, path);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return sd_errorf("%s %s: folder %s does not exist", what, path, dir);
    return probe(dir, path, what);
}
