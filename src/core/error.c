#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char g_error[4096];

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
