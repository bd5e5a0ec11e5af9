// satdifuser reproduce: one experiment of the paper's GEO-Bench tables as one command.
//
//   RUNDIR/reproduce.json   the settings of the run (a rerun with other settings is refused)
//   RUNDIR/labels/          labels.csv (+ masks/) of the partition (geobench export, labels only)
//   FEATURES/ (RUNDIR/features unless --features)   extract --input TASKDIR (resumable, shardable)
//   RUNDIR/train/           train (run.py's settings for the task: configs/tasks/<task>.json)
//   RUNDIR/metrics_test.json                          eval --split test
//   RUNDIR/results.csv, results.md (or --table FILE)  one row: task, fuser, partition, metric, ...
// Each stage leaves RUNDIR/<stage>.done when it completes; a rerun skips finished stages and
// resumes the stopped one (extract skips finished images, train continues its checkpoint).
// The stages are the extract, train and eval commands themselves, called as functions.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/file.h"
#include "io/geobench.h"
#include "io/json.h"
#include "io/outdir.h"

static void reproduce_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser reproduce --geobench ROOT --task NAME|FILE.json --model DIR --out RUNDIR [options]\n\n"
            "One experiment of the paper on a GEO-Bench task: extract the features of the task folder\n"
            "ROOT/<folder of the preset> (e.g. ROOT/classification_v1.0/m-eurosat), train a fusion module + head\n"
            "with the original run.py settings for the task, evaluate it on the test split and append a row\n"
            "(task, fuser, partition, metric, value, seed, time) to RUNDIR/results.csv and results.md.\n"
            "A rerun skips the finished stages and resumes the stopped one; a rerun with other settings is\n"
            "refused (RUNDIR/reproduce.json records them).\n\n"
            "  --geobench ROOT      the GEO-Bench root (classification_v1.0/, segmentation_v1.0/ below it)\n"
            "  --task NAME          a preset of configs/tasks (m-eurosat, m-bigearthnet, m-chesapeake, m-nz-cattle,\n"
            "                       m-brick-kiln, m-so2sat, m-forestnet, m-pv4ger, m-cashew-plant, m-SA-crop-type,\n"
            "                       m-pv4ger-seg, m-NeonTree) or a preset file (docs/geobench.md); a preset is\n"
            "                       looked for in $SATDIFUSER_CONFIGS/tasks (when set), the binary's configs/tasks,\n"
            "                       ./configs/tasks\n"
            "  --fuser gw|lw|moe|concat|single   fusion module (default gw, configs/_base_/satdifuser.yaml)\n"
            "  --partition NAME     NAME_partition.json of the task folder (default: default; 0.10x_train ...)\n"
            "  --model DIR          diffusers pipeline folder or packed model; DiffusionSat's release root with\n"
            "                       resolution256/ and resolution512/ is resolved as run.py does (DIR/resolution<size>,\n"
            "                       its UNet from checkpoint-150000/unet)\n"
            "  --unet DIR           the UNet folder (default: MODEL/checkpoint-150000/unet when it exists)\n"
            "  --out RUNDIR         the run folder\n"
            "  --features DIR       feature folder (default RUNDIR/features; share one between fusers)\n"
            "  --seed N             training seed (default: the preset's, 42)\n"
            "  --size N, --scale S, --ignore-value V   override the preset (e.g. PANGAEA's choices, docs/geobench.md)\n"
            "  --max-steps N        stop training after N steps (quick runs)\n"
            "  --shard K/N|auto     extract only this shard (SLURM arrays: auto) and stop; rerun without --shard to\n"
            "                       train once every shard is done\n"
            "  --batch B            extract B images at a time (the same features)\n"
            "  --table FILE.csv     append the row to FILE.csv and FILE.md instead of RUNDIR/results.{csv,md}\n"
            "  --quiet              less progress output\n"
            "  --dry-run            print the settings and the extract / train / eval commands; run nothing\n"
            "Exit status: 0 done (or the shard done), 1 a stage failed, 2 usage error, 130/143 stopped by a signal.\n");
}

typedef struct {
    const char *root, *task, *fuser, *partition, *model, *unet, *out, *features, *shard, *batch, *table;
    const char *size, *scale, *ignore, *seed, *max_steps;
    int quiet, dry_run;
} Args;

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// path made absolute (realpath when it exists); out may be path itself. Returns out.
static const char *absolute(const char *path, char *out, size_t size) {
    char buf[PATH_MAX];
    if (realpath(path, buf)) snprintf(out, size, "%s", buf);
    else if (path[0] != '/' && getcwd(buf, sizeof(buf)) && strlen(buf) + 1 + strlen(path) < size) {
        size_t n = strlen(buf);
        memmove(out + n + 1, path, strlen(path) + 1);  // out may be path
        memcpy(out, buf, n);
        out[n] = '/';
    } else if (out != path)
        snprintf(out, size, "%s", path);
    return out;
}

// The shortest of %.15g / %.17g that reads back as x (1e-05, not 1.0000000000000001e-05).
static void fmt_double(double x, char *out, size_t size) {
    snprintf(out, size, "%.15g", x);
    if (strtod(out, NULL) != x) snprintf(out, size, "%.17g", x);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A whole number option in lo..hi.
static int int_opt(const char *opt, const char *v, long lo, long hi, int *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) return sd_errorf("%s '%s': expected a whole number from %ld to %ld", opt, v, lo, hi);
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--quiet")) { a->quiet = 1; continue; }
        if (!strcmp(o, "--dry-run")) { a->dry_run = 1; continue; }
        if (i + 1 >= argc) return sd_errorf("%s: missing value (or unknown option)", o);
        const char *v = argv[++i];
        const char **dst = !strcmp(o, "--geobench")       ? &a->root
                           : !strcmp(o, "--task")         ? &a->task
                           : !strcmp(o, "--fuser")        ? &a->fuser
                           : !strcmp(o, "--partition")    ? &a->partition
                           : !strcmp(o, "--model")        ? &a->model
                           : !strcmp(o, "--unet")         ? &a->unet
                           : !strcmp(o, "--out")          ? &a->out
                           : !strcmp(o, "--features")     ? &a->features
                           : !strcmp(o, "--shard")        ? &a->shard
                           : !strcmp(o, "--batch")        ? &a->batch
                           : !strcmp(o, "--table")        ? &a->table
                           : !strcmp(o, "--size")         ? &a->size
                           : !strcmp(o, "--scale")        ? &a->scale
                           : !strcmp(o, "--ignore-value") ? &a->ignore
                           : !strcmp(o, "--seed")         ? &a->seed
                           : !strcmp(o, "--max-steps")    ? &a->max_steps
                                                          : NULL;
        if (!dst) return sd_errorf("unknown option '%s'", o);
        if (*dst) return sd_errorf("%s given twice", o);
        *dst = v;
    }
    if (!a->fuser) a->fuser = "gw";
    if (!a->partition) a->partition = "default";
    if (!a->root || !a->task || !a->model || !a->out)
        return sd_errorf("--geobench, --task, --model and --out are required");
    static const char *const fusers[] = {"gw", "lw", "moe", "concat", "single"};
    int ok = 0;
    for (int k = 0; k < 5; k++) ok |= !strcmp(a->fuser, fusers[k]);
    if (!ok) return sd_errorf("--fuser '%s': expected gw, lw, moe, concat or single", a->fuser);
    for (const char *p = a->partition; *p; p++)
        if (*p == '/' || *p == ',') return sd_errorf("--partition '%s': a name, not a path", a->partition);
    return 0;
}

// The settings that decide the run's results: (key, value) pairs in a fixed order, every value
// as text (numbers formatted once here, so reproduce.json compares as strings).
typedef struct {
    const char *key[32], *val[32];
    char num[32][64];  // the formatted numbers val[] points into
    int n;
} Settings;

static void set_str(Settings *s, const char *key, const char *val) {
    s->key[s->n] = key;
    s->val[s->n++] = val;
}

static void set_int(Settings *s, const char *key, int val) {
    snprintf(s->num[s->n], sizeof(s->num[0]), "%d", val);
    set_str(s, key, s->num[s->n]);
}

static void set_double(Settings *s, const char *key, double val) {
    fmt_double(val, s->num[s->n], sizeof(s->num[0]));
    set_str(s, key, s->num[s->n]);
}

// The settings as a JSON object of strings; the preset's head options last, as "head.<key>".
static void settings_json(const Args *a, const GbPreset *p, const char *taskdir, const char *model, const char *unet,
                          const char *features, char *out, size_t size) {
    Settings st = {.n = 0};
    set_str(&st, "task", p->task);
    set_str(&st, "task_dir", taskdir);
    set_str(&st, "partition", a->partition);
    set_str(&st, "fuser", a->fuser);
    set_str(&st, "model", model);
    set_str(&st, "unet", unet ? unet : "");
    set_str(&st, "features", features);
    set_str(&st, "bands", p->bands);
    set_str(&st, "scale", p->scale);
    set_int(&st, "size", p->size);
    set_str(&st, "prompt", p->prompt);
    set_int(&st, "num_classes", p->num_classes);
    set_int(&st, "ignore_value", p->ignore_value);
    set_str(&st, "metric", p->metric);
    const PresetTrain *t = &p->train;
    set_int(&st, "batch_size", t->batch_size);
    set_int(&st, "val_batch_size", t->val_batch_size);
    set_int(&st, "epochs", t->epochs);
    set_int(&st, "warmup_epochs", t->warmup_epochs);
    set_double(&st, "lr", t->lr);
    set_double(&st, "min_lr", t->min_lr);
    set_double(&st, "weight_decay", t->weight_decay);
    set_int(&st, "eval_every", t->eval_every);
    set_int(&st, "patience", t->patience);
    set_int(&st, "seed", t->seed);
    set_int(&st, "max_steps", t->max_steps);
    size_t used = (size_t)snprintf(out, size, "{");
    for (int i = 0; i < st.n && used < size; i++) {
        used += (size_t)snprintf(out + used, size - used, "%s\n  ", i ? "," : "");
        if (used < size) used += json_escape(st.key[i], out + used, size - used);
        if (used < size) used += (size_t)snprintf(out + used, size - used, ": ");
        if (used < size) used += json_escape(st.val[i], out + used, size - used);
    }
    for (int h = 0; h < p->num_head && used < size; h++)
        used += (size_t)snprintf(out + used, size - used, ",\n  \"head.%s\": \"%d\"", p->head_keys[h], p->head_vals[h]);
    if (used < size) snprintf(out + used, size - used, "\n}\n");
}

// RUNDIR/reproduce.json: written by the first run; a later run must ask for the same settings.
static int check_settings(const char *rundir, const char *text) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/reproduce.json", rundir);
    if (!exists(path)) {
        // the tasks of an array job start together: each writes its own file and links it into
        // place; link() fails for all but the first, and the others compare with its file
        char tmp[4300];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f) return sd_errorf("%s: cannot write: %s", tmp, strerror(errno));
        int ok = fputs(text, f) >= 0;
        if (fclose(f) != 0 || !ok) {
            unlink(tmp);
            return sd_errorf("%s: write failed", tmp);
        }
        int linked = link(tmp, path) == 0, err = errno;
        unlink(tmp);
        if (linked) return 0;
        if (err != EEXIST) return sd_errorf("%s: cannot create: %s", path, strerror(err));
    }
    JsonValue old, now;
    if (json_parse_file(path, &old)) return -1;
    if (json_parse(text, strlen(text), "the command's settings", &now)) {
        json_free(&old);
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < now.count; i++) {
        const JsonValue *o = json_get(&old, now.keys[i]);
        const char *was = o && o->type == JSON_STRING ? o->string : "(not set)";
        if (strcmp(was, now.items[i].string) != 0)
            rc = sd_errorf("%s: this run was made with %s '%s'; the command asks for '%s'. Settings are not mixed: "
                           "use another --out (or remove %s to start over)", path, now.keys[i], was,
                           now.items[i].string, rundir);
    }
    for (int i = 0; rc == 0 && i < old.count; i++)
        if (!json_get(&now, old.keys[i]))
            rc = sd_errorf("%s: this run was made with %s set; the command does not set it. Use another --out", path,
                           old.keys[i]);
    json_free(&old);
    json_free(&now);
    return rc;
}

// RUNDIR/<stage>.done holds the stage's seconds.
static int stage_done(const char *rundir, const char *stage, double *seconds) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.done", rundir, stage);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    double s = 0;
    if (fscanf(f, "%lf", &s) != 1) s = 0;
    fclose(f);
    if (seconds) *seconds = s;
    return 1;
}

static int mark_done(const char *rundir, const char *stage, double seconds) {
    char path[4200], text[64];
    snprintf(path, sizeof(path), "%s/%s.done", rundir, stage);
    snprintf(text, sizeof(text), "%.3f\n", seconds);
    return write_text_atomic(path, text);
}

static int g_dry_run;

// Runs a subcommand as a function with argv built here; prints the command line first (--dry-run:
// only prints it, to stdout).
static int run_stage(const char *name, int (*fn)(int, char **), int argc, char **argv, int quiet) {
    if (!quiet || g_dry_run) {
        FILE *f = g_dry_run ? stdout : stderr;
        fprintf(f, "%ssatdifuser %s", g_dry_run ? "" : "reproduce: ", name);
        for (int i = 0; i < argc; i++) fprintf(f, strchr(argv[i], ' ') ? " \"%s\"" : " %s", argv[i]);
        fprintf(f, "\n");
    }
    if (g_dry_run) return 0;
    fflush(stdout);
    int rc = fn(argc, argv);
    fflush(stdout);
    return rc;
}

#define ARG(s) (av[ac++] = (char *)(s))

static int stage_extract(const Args *a, const GbPreset *p, const char *taskdir, const char *model, const char *unet,
                         const char *features) {
    char *av[40], size[16];
    int ac = 0;
    snprintf(size, sizeof(size), "%d", p->size);
    ARG("--model"), ARG(model), ARG("--input"), ARG(taskdir), ARG("--partition"), ARG(a->partition);
    ARG("--out"), ARG(features), ARG("--bands"), ARG(p->bands), ARG("--scale"), ARG(p->scale), ARG("--size"), ARG(size);
    ARG("--prompt"), ARG(p->prompt);
    if (unet) ARG("--unet"), ARG(unet);
    if (a->shard) ARG("--shard"), ARG(a->shard);
    if (a->batch) ARG("--batch"), ARG(a->batch);
    if (a->quiet) ARG("--quiet");
    return run_stage("extract", cmd_extract, ac, av, a->quiet);
}

static int stage_train(const Args *a, const GbPreset *p, const char *features, const char *labels, const char *rundir) {
    static const char *const task_names[] = {"cls", "multilabel", "seg"};
    static const char *const flags[][2] = {{"projection_dim", "--projection-dim"}, {"num_norm_groups", "--num-norm-groups"},
                                           {"num_experts", "--num-experts"},       {"top_k", "--top-k"},
                                           {"warmup_steps", "--warmup-steps"},     {"channels", "--channels"}};
    const PresetTrain *t = &p->train;
    char *av[64], num[16][32], trainout[4200], path[4300];
    int ac = 0, k = 0;
#define NUM(fmt, v) (snprintf(num[k], 32, fmt, v), num[k++])
    snprintf(trainout, sizeof(trainout), "%s/train", rundir);
    ARG("--features"), ARG(features), ARG("--labels"), ARG(labels), ARG("--task"), ARG(task_names[p->type]);
    ARG("--fuser"), ARG(a->fuser), ARG("--out"), ARG(trainout);
    ARG("--num-classes"), ARG(NUM("%d", p->num_classes)), ARG("--ignore-value"), ARG(NUM("%d", p->ignore_value));
    ARG("--batch-size"), ARG(NUM("%d", t->batch_size)), ARG("--val-batch-size"), ARG(NUM("%d", t->val_batch_size));
    ARG("--epochs"), ARG(NUM("%d", t->epochs)), ARG("--warmup-epochs"), ARG(NUM("%d", t->warmup_epochs));
    fmt_double(t->lr, num[k], 32), ARG("--lr"), ARG(num[k++]);
    fmt_double(t->min_lr, num[k], 32), ARG("--min-lr"), ARG(num[k++]);
    fmt_double(t->weight_decay, num[k], 32), ARG("--weight-decay"), ARG(num[k++]);
    ARG("--eval-every"), ARG(NUM("%d", t->eval_every));
    ARG("--patience"), ARG(NUM("%d", t->patience)), ARG("--seed"), ARG(NUM("%d", t->seed));
    if (t->max_steps) ARG("--max-steps"), ARG(NUM("%d", t->max_steps));
#undef NUM
    char hv[GB_PRESET_MAX_HEAD][16];
    for (int h = 0; h < p->num_head; h++)
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
            if (!strcmp(p->head_keys[h], flags[f][0])) {
                snprintf(hv[h], sizeof(hv[h]), "%d", p->head_vals[h]);
                ARG(flags[f][1]), ARG(hv[h]);
            }
    // a stopped training continues from its checkpoint; a folder without one starts over
    snprintf(path, sizeof(path), "%s/checkpoint.safetensors", trainout);
    if (exists(path)) ARG("--resume");
    else if (is_dir(trainout)) ARG("--force");
    if (a->quiet) ARG("--quiet");
    return run_stage("train", cmd_train, ac, av, a->quiet);
}

static int stage_eval(const Args *a, const GbPreset *p, const char *features, const char *labels, const char *rundir,
                      const char *metrics) {
    char *av[24], trainout[4200], ignore[16];
    int ac = 0;
    snprintf(trainout, sizeof(trainout), "%s/train", rundir);
    snprintf(ignore, sizeof(ignore), "%d", p->ignore_value);
    ARG("--run"), ARG(trainout), ARG("--features"), ARG(features), ARG("--labels"), ARG(labels);
    ARG("--split"), ARG("test"), ARG("--json"), ARG(metrics), ARG("--ignore-value"), ARG(ignore);
    if (!g_dry_run) unlink(metrics);  // a stopped eval's file is not a result
    return run_stage("eval", cmd_eval, ac, av, a->quiet);
}

#undef ARG

// Appends the row to TABLE.csv and TABLE.md (headers when new), unless TABLE.csv has this run's row.
static int append_row(const char *csv, const char *row_csv, const char *row_md, const char *run) {
    char md[4200];
    size_t n = strlen(csv);
    snprintf(md, sizeof(md), "%.*s.md", (int)(n > 4 && !strcmp(csv + n - 4, ".csv") ? n - 4 : n), csv);
    uint8_t *old = NULL;
    size_t len = 0;
    if (exists(csv) && read_whole_file(csv, &old, &len, 0)) return -1;
    char tail[4300];
    snprintf(tail, sizeof(tail), ",%s\n", run);
    int have = 0;
    for (char *line = (char *)old; line && line < (char *)old + len;) {
        char *end = memchr(line, '\n', (size_t)((char *)old + len - line));
        size_t l = end ? (size_t)(end - line) + 1 : (size_t)((char *)old + len - line);
        have |= l >= strlen(tail) && !memcmp(line + l - strlen(tail), tail, strlen(tail));
        line += l;
    }
    free(old);
    if (have) return 0;
    int new_csv = !exists(csv), new_md = !exists(md);
    FILE *f = fopen(csv, "a");
    if (!f) return sd_errorf("%s: cannot append: %s", csv, strerror(errno));
    if (new_csv) fprintf(f, "task,fuser,partition,metric,value_pct,seed,time_s,finished,run\n");
    fprintf(f, "%s", row_csv);
    if (fclose(f) != 0) return sd_errorf("%s: write failed", csv);
    f = fopen(md, "a");
    if (!f) return sd_errorf("%s: cannot append: %s", md, strerror(errno));
    if (new_md)
        fprintf(f, "| task | fuser | partition | metric | value (%%) | seed | time (s) | finished | run |\n"
                   "|---|---|---|---|---:|---:|---:|---|---|\n");
    fprintf(f, "%s", row_md);
    if (fclose(f) != 0) return sd_errorf("%s: write failed", md);
    return 0;
}

int cmd_reproduce(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            reproduce_usage(stdout);
            return 0;
        }
    Args a;
    if (parse_args(argc, argv, &a)) {
        fprintf(stderr, "satdifuser reproduce: %s\n\n", sd_last_error());
        reproduce_usage(stderr);
        return 2;
    }
    GbPreset p;
    char path[4200], taskdir[4200], model[4200], unet_buf[4200], features[4200], labels[4300], metrics[4300];
    if (gb_preset_find(a.task, getenv("SATDIFUSER_CONFIGS"), path, sizeof(path)) || gb_preset_load(&p, path)) {
        fprintf(stderr, "satdifuser reproduce: %s\n", sd_last_error());
        return 2;
    }
    int rc = 2;
    // overrides (recorded in the settings like the preset's values)
    if (a.size && int_opt("--size", a.size, 8, 8192, &p.size)) goto usage;
    if (p.size % 8) { sd_errorf("--size %d: must be a multiple of 8", p.size); goto usage; }
    if (a.ignore && int_opt("--ignore-value", a.ignore, -1000000, 1000000, &p.ignore_value)) goto usage;
    if (a.seed && int_opt("--seed", a.seed, 0, 2147483647, &p.train.seed)) goto usage;
    if (a.max_steps && int_opt("--max-steps", a.max_steps, 0, 2147483647, &p.train.max_steps)) goto usage;
    if (a.scale) {
        char *s = strdup(a.scale);
        if (!s) { sd_errorf("out of memory"); goto usage; }
        free(p.scale);
        p.scale = s;
    }
    // the task folder
    snprintf(taskdir, sizeof(taskdir), "%s/%s", a.root, p.folder);
    if (!a.dry_run && !gb_is_task_dir(taskdir, a.partition)) {
        rc = 1;
        if (!is_dir(taskdir)) sd_errorf("%s: no such folder (task %s under --geobench %s)", taskdir, p.task, a.root);
        else sd_errorf("%s: no %s_partition.json: not a GEO-Bench task folder or no partition '%s'", taskdir,
                       a.partition, a.partition);
        goto fail;
    }
    // the model: DiffusionSat's release root holds one model per resolution (run.py appends
    // /resolution<img_size>, its UNet in checkpoint-150000/unet)
    snprintf(model, sizeof(model), "%s/resolution%d", a.model, p.size);
    if (!is_dir(model)) snprintf(model, sizeof(model), "%s", a.model);
    const char *unet = a.unet;
    if (snprintf(unet_buf, sizeof(unet_buf), "%s/checkpoint-150000/unet", model) < (int)sizeof(unet_buf) && !unet &&
        is_dir(unet_buf))
        unet = unet_buf;
    rc = 1;
    if (a.dry_run) {  // the settings and the commands; nothing read but the preset, nothing written
        g_dry_run = 1;
        char settings[16384];
        const char *feat = a.features ? a.features : (snprintf(features, sizeof(features), "%s/features", a.out), features);
        snprintf(labels, sizeof(labels), "%s/labels/labels.csv", a.out);
        snprintf(metrics, sizeof(metrics), "%s/metrics_test.json", a.out);
        settings_json(&a, &p, taskdir, model, unet, feat, settings, sizeof(settings));
        printf("# preset %s; settings (RUNDIR/reproduce.json):\n%s", p.path, settings);
        printf("# labels: %s/labels/labels.csv (+ masks/), as `satdifuser geobench export %s --partition %s` writes them\n",
               a.out, taskdir, a.partition);
        stage_extract(&a, &p, taskdir, model, unet, feat);
        stage_train(&a, &p, feat, labels, a.out);
        stage_eval(&a, &p, feat, labels, a.out, metrics);
        rc = 0;
        goto done;
    }
    // the folder must hold the preset's task (a wrong --geobench or preset would train nonsense)
    if (!stage_done(a.out, "extract", NULL)) {
        GbTask t;
        if (gb_task_open(&t, taskdir, a.partition)) goto fail;
        static const char *const types[] = {"cls", "multilabel", "seg"};
        if (t.type != p.type)
            sd_errorf("%s: a %s task, but the preset %s is %s", taskdir, types[t.type], p.path, types[p.type]);
        else if (t.num_classes && t.num_classes != p.num_classes)
            sd_errorf("%s: the task folder has %d classes (task_specs.pkl, label_stats.json), the preset %s %d",
                      taskdir, t.num_classes, p.path, p.num_classes);
        int bad = t.type != p.type || (t.num_classes && t.num_classes != p.num_classes);
        gb_task_free(&t);
        if (bad) goto fail;
    }
    if (outdir_check(a.out, "--out")) goto fail;
    if (!is_dir(a.out) && mkdir(a.out, 0777) != 0 && errno != EEXIST) {
        sd_errorf("%s: cannot create the folder: %s", a.out, strerror(errno));
        goto fail;
    }
    // absolute paths in the settings, so a rerun from another folder compares equal
    char out_abs[4096];
    absolute(a.out, out_abs, sizeof(out_abs));
    absolute(taskdir, taskdir, sizeof(taskdir));
    absolute(model, model, sizeof(model));
    if (unet) unet = absolute(unet, unet_buf, sizeof(unet_buf));
    if (a.features) absolute(a.features, features, sizeof(features));
    else snprintf(features, sizeof(features), "%s/features", out_abs);
    snprintf(labels, sizeof(labels), "%s/labels/labels.csv", a.out);
    snprintf(metrics, sizeof(metrics), "%s/metrics_test.json", a.out);
    char settings[16384];
    settings_json(&a, &p, taskdir, model, unet, features, settings, sizeof(settings));
    if (check_settings(a.out, settings)) goto fail;
    double t_extract = 0, t_train = 0, t_eval = 0, t0;
    if (stage_done(a.out, "results", NULL)) {
        printf("reproduce: %s is complete (%s/results.done); nothing to do\n", a.out, a.out);
        rc = 0;
        goto done;
    }
    // 1. labels of the partition (not in a shard job: the array's tasks would race for it)
    if (!a.shard && !exists(labels)) {
        char dir[4300];
        snprintf(dir, sizeof(dir), "%s/labels", a.out);
        CliGeobenchExport where = {taskdir, dir, 0};
        if (gb_export(taskdir, dir, a.partition, p.bands, 0, a.quiet ? NULL : cli_geobench_export_progress, &where))
            goto fail;
    }
    // 2. features
    if (!stage_done(a.out, "extract", &t_extract)) {
        t0 = now_seconds();
        int r = stage_extract(&a, &p, taskdir, model, unet, features);
        if (r) { rc = r; goto quiet_fail; }
        t_extract = now_seconds() - t0;
        if (a.shard) {
            printf("reproduce: extraction shard %s done; when every shard is, rerun without --shard to train\n", a.shard);
            rc = 0;
            goto done;
        }
        if (mark_done(a.out, "extract", t_extract)) goto fail;
    } else if (a.shard) {
        printf("reproduce: extraction is complete (%s/extract.done)\n", a.out);
        rc = 0;
        goto done;
    }
    // 3. training
    if (!stage_done(a.out, "train", &t_train)) {
        t0 = now_seconds();
        int r = stage_train(&a, &p, features, labels, a.out);
        if (r) { rc = r; goto quiet_fail; }
        t_train = now_seconds() - t0;
        if (mark_done(a.out, "train", t_train)) goto fail;
    }
    // 4. evaluation on the test split, and the row
    if (!stage_done(a.out, "eval", &t_eval)) {
        t0 = now_seconds();
        int r = stage_eval(&a, &p, features, labels, a.out, metrics);
        if (r) { rc = r; goto quiet_fail; }
        t_eval = now_seconds() - t0;
        if (mark_done(a.out, "eval", t_eval)) goto fail;
    }
    JsonValue m;
    if (json_parse_file(metrics, &m)) goto fail;
    double value = 0;
    const JsonValue *mv = json_get(&m, p.metric);
    if (!mv || mv->type != JSON_NUMBER) {
        sd_errorf("%s: no number '%s' (the preset's metric)", metrics, p.metric);
        json_free(&m);
        goto fail;
    }
    // percent, as the paper's tables: eval writes accuracy and F1 as fractions, segmentation metrics in %
    value = p.type == GB_TASK_SEG ? mv->number : 100.0 * mv->number;
    json_free(&m);
    char stamp[32], row_csv[9000], row_md[9000], table[4200];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    double secs = t_extract + t_train + t_eval;
    snprintf(row_csv, sizeof(row_csv), "%s,%s,%s,%s,%.4f,%d,%.1f,%s,%s\n", p.task, a.fuser, a.partition, p.metric, value,
             p.train.seed, secs, stamp, out_abs);
    snprintf(row_md, sizeof(row_md), "| %s | %s | %s | %s | %.2f | %d | %.1f | %s | %s |\n", p.task, a.fuser, a.partition,
             p.metric, value, p.train.seed, secs, stamp, out_abs);
    if (a.table) snprintf(table, sizeof(table), "%s", a.table);
    else snprintf(table, sizeof(table), "%s/results.csv", a.out);
    if (append_row(table, row_csv, row_md, out_abs)) goto fail;
    if (write_text_atomic((snprintf(path, sizeof(path), "%s/results.done", a.out), path), row_csv)) goto fail;
    printf("reproduce: %s %s %s: test %s %.2f%% (%s)\n", p.task, a.fuser, a.partition, p.metric, value, table);
    rc = 0;
    goto done;
usage:
    fprintf(stderr, "satdifuser reproduce: %s\n", sd_last_error());
    goto done;
fail:  // rc != 0, the message in sd_last_error()
    fprintf(stderr, "satdifuser reproduce: %s\n", sd_last_error());
    goto done;
quiet_fail:  // the stage printed its own message
    fprintf(stderr, "satdifuser reproduce: stage failed (exit %d); rerun the same command to resume\n", rc);
done:
    gb_preset_free(&p);
    return rc;
}
