#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// The message of the calling thread: each host thread that uses the library has its own, so two
// threads failing at once do not overwrite each other's message. OpenMP's threadprivate makes a
// per-thread copy in C99 (with GCC/Clang it is thread-local storage, as __thread). Worker threads
// of a parallel region have their own copy too: a message recorded there is not seen by the
// thread that opened the region (sd_errorf is not meant to be called there; see error.h).
static char g_error[4096];
#pragma omp threadprivate(g_error)

int sd_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof(g_error), fmt, ap);
    va_end(ap);
    return SD_FAIL;
}

int sd_error_context(const char *fmt, ...) {
    char prefix[1024], old[sizeof(g_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, g_error, sizeof(old));
    size_t n = strlen(prefix);
    memcpy(g_error, prefix, n + 1);
    if (n + 2 < sizeof(g_error)) {
        memcpy(g_error + n, ": ", 3);
        strncat(g_error, old, sizeof(g_error) - n - 3);
    }
    return SD_FAIL;
}

const char *sd_last_error(void) { return g_error; }
void sd_clear_error(void) { g_error[0] = '\0'; }
