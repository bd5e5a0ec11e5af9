// Output locations are checked before any computing: a read-only or missing-permission --out
// is reported in the first second, not after hours of extraction or training.
#ifndef SD_IO_OUTDIR_H
#define SD_IO_OUTDIR_H

// `dir` will hold output files (it may not exist yet: then it will be created under its nearest
// existing ancestor). Checks, by creating and removing a probe file, that files can be created
// there (or, for a missing folder, in that ancestor). Nothing is left behind. `what` names the
// option in the error ("--out").
int outdir_check(const char *dir, const char *what);
// The same for the folder of an output file `path`.
int outfile_check(const char *path, const char *what);

#endif
