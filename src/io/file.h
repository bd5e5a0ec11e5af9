// Whole-file reading shared by the decoders (PNG, NPY, TIFF, JSON).
#ifndef SD_FILE_H
#define SD_FILE_H

#include <stddef.h>
#include <stdint.h>

// Reads the whole file into a malloc'd buffer (*data, *len bytes). Files over
// max_bytes are refused (0: no limit). Messages start with the path.
int read_whole_file(const char *path, uint8_t **data, size_t *len, size_t max_bytes);
// Writes text to path through path.tmp renamed into place (a stopped run leaves the old file or
// the new one, never half of it). Messages start with the path.
int write_text_atomic(const char *path, const char *text);

// Calls on_file for every regular file below root, in readdir order, descending into folders up to
// 16 levels; names starting with '.' (hidden files, "." and "..") are skipped. rel is the file's path
// relative to root ("Forest/Forest_1.tif"), full root + "/" + rel, name its last component. A
// non-zero return of on_file stops the walk and is returned; a folder that cannot be opened is an
// error naming it.
int walk_files(const char *root, int (*on_file)(void *ctx, const char *rel, const char *full, const char *name),
               void *ctx);

#endif
