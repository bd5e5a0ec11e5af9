// Subcommands of the satdifuser binary: each takes the arguments after its
// name and returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef SD_CLI_H
#define SD_CLI_H

#define SATDIFUSER_VERSION "0.1.0"

int cmd_golden(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_labels(int argc, char **argv);
int cmd_import_head(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_figures(int argc, char **argv);
int cmd_geobench(int argc, char **argv);
// geobench export's progress printer (gb_export's callback, io/geobench.h); user: a CliGeobenchExport.
typedef struct {
    const char *task, *out;  // TASKDIR and --out, for the summary line
    int images;              // 0: labels only
} CliGeobenchExport;
void cli_geobench_export_progress(void *user, int done, int total, int finished, const char *partition,
                                  const char *task);
// reproduce (cmd_reproduce.c): a GEO-Bench experiment end to end by calling extract, train and eval.
int cmd_reproduce(int argc, char **argv);
// info FILE.hdf5 (cmd_geobench.c): 1 if the file starts with the HDF5 signature; the listing.
int is_hdf5_file(const char *path);
int info_hdf5(const char *path);

// Parses "--threads N" anywhere in argv (removing it) and starts the thread
// pool; returns -1 with a message on a bad value.
int cli_take_threads(int *argc, char **argv);

#endif
