// Errors are values: a failing function records a message and returns -1.
// The message names the file, the tensor or the argument at fault.
// Never abort() or exit() inside the library.
#ifndef SD_ERROR_H
#define SD_ERROR_H

#define SD_OK 0
#define SD_FAIL (-1)

// Records the message (printf format) and returns SD_FAIL, so a caller can write
//   if (n < 0) return sd_errorf("%s: tensor '%s' has %d dims, expected 4", path, name, nd);
// The message is per thread: each host thread reads back its own with sd_last_error. Do not call
// it from inside an OpenMP parallel region (a worker's message stays with the worker).
int sd_errorf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

// Prefixes the current message with more context: "context: old message".
int sd_error_context(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

// The last message recorded by the calling thread ("" if none).
const char *sd_last_error(void);
void sd_clear_error(void);

#endif
