// satdifuser train: a fusion module and head on cached features (run.py's loop).
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/train_report.h"
#include "core/error.h"
#include "core/runtime.h"
#include "figures/figures.h"
#include "train/trainer.h"

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: satdifuser train --features DIR --labels FILE --task cls|multilabel|seg --out RUN_DIR [options]\n\n"
            "Trains a fusion module + head on the features `satdifuser extract` cached in DIR, with the\n"
            "labels of FILE (docs/labels-format.md), as the original run.py: Adam, per-epoch warmup +\n"
            "cosine LR, validation every N steps, best checkpoint kept, early stopping, final test.\n"
            "Ctrl-C stops after the current step, saves the checkpoint and exits 130; --resume continues\n"
            "it. A second Ctrl-C stops at once (the last checkpoint stays whole). An --out folder that\n"
            "holds a run is refused unless --resume (continue) or --force (start over).\n\n"
            "  --fuser gw|lw|moe|concat|single   fusion (default gw)\n"
            "  --batch-size N        32          --val-batch-size N   (batch size)\n"
            "  --epochs N            40          --warmup-epochs N    5\n"
            "  --lr X                0.01        --min-lr X           1e-5\n"
            "  --weight-decay X      0 (Adam L2) --seed N             42\n"
            "  --eval-every N        100 (steps; at most one epoch)\n"
            "  --patience N          10 evaluations without improvement (0: never stop early)\n"
            "  --num-classes N       (default: from the labels)\n"
            "  --ignore-value V      mask value ignored by loss and metrics (255)\n"
            "  --max-steps N         stop after N steps in total (checkpoint kept; for quick runs)\n"
            "  --resume              continue RUN_DIR/checkpoint.safetensors\n"
            "  --force               start over in a RUN_DIR that holds a run (its run files are deleted)\n"
            "  --allow-mixed-preprocessing  use feature files made with other scaling or preprocessing\n"
            "                        (refused by default, naming two files; then a warning)\n"
            "  --quiet               no progress (else: one line on a terminal, plain lines in a log file)\n"
            "head options (the original constructors' names, defaults as released):\n"
            "  --projection-dim N    384 (fusion output channels; a classifier's fuser gets N too: the\n"
            "                        released classifier keeps it at 384 and runs only with 384)\n"
            "  --num-norm-groups N   32\n"
            "  --num-experts N       8           --top-k N            2\n"
            "  --warmup-steps N      MoE dense warm-up calls (300 classifiers, 500 segmenters)\n"
            "  --temperature X       gating temperature (1.0)\n"
            "  --channels N          UPerNet channels (512)\n"
            "  --corrected           fix the released code's quirks (LW channel offset; classifier fuser size)\n"
            "  --head-json TEXT      any other head config keys as a JSON object\n");
}

// ---------------------------------------------------------------------------
// Progress on stderr (train_run's events): on a terminal one line rewritten in place (at most 10 times
// a second); on a file or a pipe plain lines, at most one every PLAIN_EVERY seconds, so a log stays
// readable. Results (the test table, metrics, best checkpoint) on stdout.

enum { PLAIN_EVERY = 5 };

typedef struct {
    int mode;        // 0 quiet, 1 terminal, 2 plain lines
    double t_line;   // when the last progress line was printed
    int open_len;    // terminal: length of the line on screen (0: none)
} Progress;

static void format_hms(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, size, "?"); return; }
    long t = (long)(s + 0.5);
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

// A progress line, printed when `force` or when the last one is old enough.
static void progress_line(Progress *p, int force, const char *fmt, ...) {
    if (!p->mode) return;
    double now = sd_now();
    if (!force && now - p->t_line < (p->mode == 1 ? 0.1 : PLAIN_EVERY)) return;
    p->t_line = now;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (len < 0) return;
    if (len >= (int)sizeof(text)) len = (int)sizeof(text) - 1;
    if (p->mode == 1) {  // over the previous line: blanks where it was longer
        fprintf(stderr, "\r%s%*s", text, p->open_len > len ? p->open_len - len : 0, "");
        p->open_len = len;
    } else {
        fprintf(stderr, "%s\n", text);
    }
    fflush(stderr);
}

// A line that stays (results, notes), after the progress line on a terminal.
static void progress_note(Progress *p, const char *fmt, ...) {
    if (!p->mode) return;
    if (p->open_len) fputc('\n', stderr);
    p->open_len = 0;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void eval_result_print(const EvalResult *r, const LabelSet *labels, const char *split) {
    char buf[32];
    printf("%s: %d images, loss %.4f\n", split, r->count, r->loss);
    if (r->task == LABELS_CLASSIFICATION) {
        printf("  accuracy %.4f  precision %.4f  recall %.4f  F1 %.4f (macro P/R, as the original)\n", r->accuracy,
               r->precision, r->recall, r->f1);
    } else if (r->task == LABELS_MULTILABEL) {
        printf("  micro precision %.4f  recall %.4f  F1 %.4f\n", r->precision, r->recall, r->f1);
    } else {
        printf("  mIoU %.2f  mF1 %.2f  pixel accuracy %.2f\n", r->miou, r->mf1, r->macc);
        printf("  %-24s %8s %8s\n", "class", "IoU", "F1");
        for (int c = 0; c < r->num_classes; c++)
            printf("  %-24s %8.2f %8.2f\n", labels_class_name(labels, c, buf, (int)sizeof(buf)), r->per_class_iou[c],
                   r->per_class_f1[c]);
    }
}

void report_figures_after_eval(const char *run_dir, const char *split, const EvalResult *ev, const LabelSet *labels) {
    int rc = figures_after_eval(run_dir, split, ev, labels);
    if (rc < 0) fprintf(stderr, "warning: confusion matrix figure not written: %s\n", sd_last_error());
    else if (rc == 0) printf("figure: %s/confusion_%s.png\n", run_dir, split);
}

void report_figures_after_train(const char *run_dir) {
    if (figures_after_train(run_dir)) fprintf(stderr, "warning: training curves figure not written: %s\n", sd_last_error());
    else printf("figure: %s/training_curves.png\n", run_dir);
}

static void on_train_event(const TrainEvent *e, void *user) {
    Progress *pg = (Progress *)user;
    char eta[32];
    switch (e->kind) {
    case TRAIN_EV_PLAN:
        progress_note(pg, "train: %d train, %d val, %d test images; %d step%s per epoch (batch %d%s), %d epochs -> %s",
                      e->n_train, e->n_val, e->n_test, e->steps_per_epoch, e->steps_per_epoch == 1 ? "" : "s",
                      e->batch_size, e->merged_last_batch ? ", the last batch of 1 joined to the one before: BatchNorm" : "",
                      e->epochs, e->dir);
        break;
    case TRAIN_EV_CHECKING:
        progress_line(pg, 1, "checking %d feature files in %s%s", e->n_files, e->dir, e->seg ? " and their masks" : "");
        break;
    case TRAIN_EV_RESUMED:
        progress_note(pg, "resuming %s at epoch %d, step %d of the epoch (global step %lld)", e->dir, e->epoch + 1,
                      e->step, (long long)e->global_step);
        break;
    case TRAIN_EV_EVAL_BATCH:
        eta[0] = '\0';
        if (e->batch > 1) format_hms(e->seconds_left, eta, sizeof(eta));
        progress_line(pg, 0, "%s: batch %d/%d%s%s", e->what, e->batch, e->n_batches, e->batch > 1 ? ", left " : "", eta);
        break;
    case TRAIN_EV_EVAL_BEFORE:
        if (!strcmp(e->split, "val")) progress_note(pg, "%s: metric %.4f", e->what, e->metric);
        break;
    case TRAIN_EV_STEP:
        // ETA: the time per step so far (validations included) times the steps left (early stopping may end sooner)
        format_hms(e->seconds_left, eta, sizeof(eta));
        progress_line(pg, e->first_step || (pg->mode == 1 && e->step == e->steps_per_epoch),
                      "epoch %d/%d  step %d/%d  (%lld/%lld)  loss %.4f  lr %.3g  %.3g s/step  ETA %s", e->epoch,
                      e->epochs, e->step, e->steps_per_epoch, (long long)e->global_step, (long long)e->total_steps,
                      e->loss, e->lr, e->seconds_per_step, eta);
        break;
    case TRAIN_EV_VALIDATION:
        if (e->improved || pg->mode == 1)  // plain lines: the others only as often as progress lines
            progress_note(pg, "  val at step %lld: metric %.4f%s", (long long)e->global_step, e->metric,
                          e->improved ? " (best so far, saved)" : "");
        else
            progress_line(pg, 0, "  val at step %lld: metric %.4f", (long long)e->global_step, e->metric);
        break;
    case TRAIN_EV_STOPPED:
        if (pg->open_len) fputc('\n', stderr);  // said even with --quiet
        fprintf(stderr, "stopped at global step %lld; checkpoint saved, continue with --resume\n",
                (long long)e->global_step);
        break;
    case TRAIN_EV_FINISHED:
        if (e->early) progress_note(pg, "early stop: %d evaluations without improvement", e->no_improve);
        else progress_note(pg, "training done (%lld steps)", (long long)e->global_step);
        break;
    case TRAIN_EV_TEST:
        if (pg->open_len) fputc('\n', stderr);
        pg->open_len = 0;
        eval_result_print(e->result, e->labels, e->what);
        break;
    case TRAIN_EV_METRICS:
        report_figures_after_eval(e->dir, e->split, e->result, e->labels);  // RUN/confusion_test.{json,png}
        printf("metrics: %s\n", e->path);
        break;
    case TRAIN_EV_WARNING:  // said even with --quiet
        if (pg->open_len) fputc('\n', stderr);
        pg->open_len = 0;
        fprintf(stderr, "warning: %s\n", e->what);
        break;
    case TRAIN_EV_DONE:
        printf("best val metric %.4f at step %lld; head weights: %s\n", e->best_metric, (long long)e->best_step,
               e->path);
        break;
    }
}

// The first SIGINT/SIGTERM asks the loop to stop after its step (it saves the checkpoint); the second
// stops at once: the checkpoint is written to a temporary file and renamed, so the last one stays
// whole, and the temporary file of a write in progress is removed here. Only async-signal-safe calls.
static char g_tmp_files[2][4200];
static volatile int g_train_stop = 0;

static void say(const char *s) {
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void on_signal(int sig) {
    if (!g_train_stop) {
        g_train_stop = sig;
        say(sig == SIGINT ? "\nsatdifuser train: Ctrl-C: stopping after this step, checkpoint kept (Ctrl-C again stops "
                            "at once)\n"
                          : "\nsatdifuser train: SIGTERM: stopping after this step, checkpoint kept\n");
        return;
    }
    for (int k = 0; k < 2; k++) unlink(g_tmp_files[k]);
    say("\nsatdifuser train: stopped at once; the last checkpoint is kept (continue with --resume)\n");
    _exit(128 + sig);
}

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    train_options_defaults(&o);
    const char *task = NULL;
    char extra[4096] = "";
    size_t extra_len = 0;
    int val_batch_given = 0, corrected = 0, seed_negative = 0, quiet = 0;
    const char *head_json = NULL, *projection_dim = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { train_usage(stdout); return 0; }
        if (!strcmp(a, "--resume")) { o.resume = 1; continue; }
        if (!strcmp(a, "--force")) { o.force = 1; continue; }
        if (!strcmp(a, "--allow-mixed-preprocessing")) { o.allow_mixed_preprocessing = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--corrected")) { corrected = 1; continue; }
        if (!v) { fprintf(stderr, "satdifuser train: %s needs a value\n", a); return 2; }
        i++;
        char *end = NULL;
        double num = strtod(v, &end);
        int is_num = end != v && *end == '\0' && isfinite(num);
        // options taking a count: a whole number in int range (no 2.5, 1e12 or hex)
        int is_int = is_num && num == floor(num) && fabs(num) <= 2147483647.0 && !strpbrk(v, "xX");
        if (!strcmp(a, "--features")) o.features_dir = v;
        else if (!strcmp(a, "--labels")) o.labels_path = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--task")) task = v;
        else if (!strcmp(a, "--fuser")) o.fuser = v;
        else if (!strcmp(a, "--head-json")) head_json = v;
        else if (!is_num) { fprintf(stderr, "satdifuser train: %s '%s': expected a finite number (or unknown option)\n", a, v); return 2; }
        else if (!is_int && strcmp(a, "--lr") && strcmp(a, "--min-lr") && strcmp(a, "--weight-decay") &&
                 strcmp(a, "--temperature")) {
            fprintf(stderr, "satdifuser train: %s '%s': expected a whole number\n", a, v);
            return 2;
        }
        else if (!strcmp(a, "--batch-size")) o.batch_size = (int)num;
        else if (!strcmp(a, "--val-batch-size")) { o.val_batch_size = (int)num; val_batch_given = 1; }
        else if (!strcmp(a, "--epochs")) o.epochs = (int)num;
        else if (!strcmp(a, "--warmup-epochs")) o.warmup_epochs = (int)num;
        else if (!strcmp(a, "--lr")) o.lr = num;
        else if (!strcmp(a, "--min-lr")) o.min_lr = num;
        else if (!strcmp(a, "--weight-decay")) o.weight_decay = num;
        else if (!strcmp(a, "--eval-every")) o.eval_every = (int)num;
        else if (!strcmp(a, "--patience")) o.patience = (int)num;
        else if (!strcmp(a, "--seed")) { seed_negative = num < 0; o.seed = seed_negative ? 0 : (uint64_t)num; }
        else if (!strcmp(a, "--num-classes")) o.num_classes = (int)num;
        else if (!strcmp(a, "--ignore-value")) o.ignore_value = (int)num;
        else if (!strcmp(a, "--max-steps")) o.max_steps = (int)num;
        else {
            const char *key = !strcmp(a, "--projection-dim")    ? "projection_dim"
                              : !strcmp(a, "--num-norm-groups") ? "num_norm_groups"
                              : !strcmp(a, "--num-experts")     ? "num_experts"
                              : !strcmp(a, "--top-k")           ? "top_k"
                              : !strcmp(a, "--warmup-steps")    ? "warmup_steps"
                              : !strcmp(a, "--temperature")     ? "gating_tempature"
                              : !strcmp(a, "--channels")        ? "channels"
                                                                : NULL;
            if (!key) { fprintf(stderr, "satdifuser train: unknown option '%s'\n", a); train_usage(stderr); return 2; }
            if (!strcmp(key, "projection_dim")) projection_dim = v;
            if (strlen(v) > 64 || extra_len + strlen(key) + strlen(v) + 8 >= sizeof(extra)) {
                fprintf(stderr, "satdifuser train: %s '%.20s...': value too long\n", a, v);
                return 2;
            }
            char quoted[64];
            snprintf(quoted, sizeof(quoted), "\"%s\"", key);
            if (strstr(extra, quoted)) { fprintf(stderr, "satdifuser train: %s given twice\n", a); return 2; }
            extra_len += (size_t)snprintf(extra + extra_len, sizeof(extra) - extra_len, "%s\"%s\": %s",
                                          extra_len ? ", " : "", key, v);
        }
    }
    if (!o.features_dir || !o.labels_path || !o.out_dir || !task) {
        fprintf(stderr, "satdifuser train: --features, --labels, --task and --out are required\n\n");
        train_usage(stderr);
        return 2;
    }
    if (label_task_from_name(task, &o.task)) { fprintf(stderr, "satdifuser train: %s\n", sd_last_error()); return 2; }
    if (o.resume && o.force) {
        fprintf(stderr, "satdifuser train: --resume continues the run in --out, --force starts it over: give one\n");
        return 2;
    }
    if (o.batch_size < 1 || o.val_batch_size < 1 || o.epochs < 1 || o.lr <= 0) {
        fprintf(stderr, "satdifuser train: batch sizes, --epochs and --lr must be positive\n");
        return 2;
    }
    if (o.min_lr < 0 || o.weight_decay < 0 || o.warmup_epochs < 0 || o.eval_every < 0 || o.patience < 0 ||
        o.max_steps < 0 || o.num_classes < 0 || seed_negative) {
        fprintf(stderr, "satdifuser train: --min-lr, --weight-decay, --warmup-epochs, --eval-every, --patience, "
                        "--max-steps, --num-classes and --seed must not be negative\n");
        return 2;
    }
    if (o.warmup_epochs == o.epochs) {
        // the cosine part would divide by epochs - warmup_epochs = 0 at the last epoch
        fprintf(stderr, "satdifuser train: --warmup-epochs %d equals --epochs: nothing left for the cosine decay\n",
                o.warmup_epochs);
        return 2;
    }
    if (!val_batch_given) o.val_batch_size = o.batch_size;
    if (!corrected && projection_dim && o.task != LABELS_SEGMENTATION &&
        !(head_json && strstr(head_json, "\"fuser_projection_dim\""))) {
        // the released classifiers build their fuser at its default 384 (LinearClassifierDecoderMixin does not
        // pass projection_dim on) and the Linear at N: they run only at 384. The fuser gets N too.
        extra_len += (size_t)snprintf(extra + extra_len, sizeof(extra) - extra_len, ", \"fuser_projection_dim\": %s",
                                      projection_dim);
    }
    if (corrected) {
        extra_len += (size_t)snprintf(extra + extra_len, sizeof(extra) - extra_len, "%s\"lw_advance_channels\": true",
                                      extra_len ? ", " : "");
        if (o.task != LABELS_SEGMENTATION) {
            // the classifier's fuser gets projection_dim too (the released code leaves it at 384)
            extra_len += (size_t)snprintf(extra + extra_len, sizeof(extra) - extra_len, ", \"fuser_projection_dim\": %s",
                                          projection_dim ? projection_dim : "384");
        }
    }
    char merged[8192];
    if (head_json && extra_len) {
        const char *b = strrchr(head_json, '}');
        if (!b) { fprintf(stderr, "satdifuser train: --head-json must be a JSON object\n"); return 2; }
        snprintf(merged, sizeof(merged), "%.*s%s%s}", (int)(b - head_json), head_json,
                 strchr(head_json, ':') ? ", " : "", extra);
        o.head_json = merged;
    } else if (head_json) {
        o.head_json = head_json;
    } else if (extra_len) {
        snprintf(merged, sizeof(merged), "{%s}", extra);
        o.head_json = merged;
    }
    Progress pg = {quiet ? 0 : !isatty(2) ? 2 : 1, 0.0, 0};
    o.on_event = on_train_event;
    o.event_user = &pg;
    o.stop = &g_train_stop;
    snprintf(g_tmp_files[0], sizeof(g_tmp_files[0]), "%s/checkpoint.safetensors.tmp.%d", o.out_dir, (int)getpid());
    snprintf(g_tmp_files[1], sizeof(g_tmp_files[1]), "%s/best.safetensors.tmp.%d", o.out_dir, (int)getpid());
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = train_run(&o);
    if (rc == TRAIN_STOPPED) return 128 + g_train_stop;
    if (rc == 0) report_figures_after_train(o.out_dir);  // RUN/training_curves.png from log.jsonl
    if (rc) {
        fprintf(stderr, "\nsatdifuser train: %s\n", sd_last_error());
        return 1;
    }
    return 0;
}
