// `make bench`, whole jobs (issue 20): what a user's run costs beyond one forward, at the real
// SD 2.1 / VAE / OpenCLIP-H sizes with bench_models' random weights (build/bench_models):
//   - load of the pipeline from its folder (read, convert, pack every weight) against the load of the
//     same pipeline packed by `satdifuser pack` (mapped: nothing converted or packed), warm page cache;
//   - the memory of two extraction processes at once on one packed file (their PSS summed, the
//     weights' pages shared) against one (RSS);
//   - a 256x256 extraction (VAE + text + 10 UNet calls) per image at batch 1 and at batch 4, in % of
//     the machine's FMA peak measured in the same run.
// Each measurement runs in its own child process. Usage: bench_jobs [--quick] (--quick: loads and
// memory only). The pipeline folder and the packed file are made once in the bench cache.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/runtime.h"
#include "tests/test_env.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/features.h"
#include "models/pack.h"
#include "models/nn.h"
#include "tests/bench_flops.h"
#include "tests/bench_peak.h"

static char g_dir[600], g_pack[700];

typedef struct {
    int ok;
    double seconds, value;  // what the child measured
    double pss_kb, rss_kb;
    char msg[512];
} Result;

// The kB of a /proc/self/smaps_rollup field ("Pss:", "Rss:").
static double smaps_kb(const char *field) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    double kb = -1.0;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, strlen(field))) kb = atof(line + strlen(field));
    if (f) fclose(f);
    return kb;
}

static int link_file(const char *target, const char *path) {
    unlink(path);
    char abs[1024];
    if (!realpath(target, abs)) return -1;
    return symlink(abs, path);
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ok = a && b;
    char buf[1 << 14];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = 0;
    return ok ? 0 : -1;
}

// A diffusers folder over bench_models' weights (symlinks), with the tiny pipeline's tokenizer,
// scheduler and model_index (the text encoder's vocabulary is larger than the tokenizer's ids).
static int make_pipeline(const char *cache) {
    snprintf(g_dir, sizeof(g_dir), "%s/pipeline", cache);
    const char *tiny = "tests/data/tiny_pipeline";
    const struct { ModelFiles *m; const char *sub, *weights; } parts[3] = {
        {&g_unet, "unet", "diffusion_pytorch_model.safetensors"},
        {&g_vae, "vae", "diffusion_pytorch_model.safetensors"},
        {&g_clip, "text_encoder", "model.safetensors"}};
    char a[1024], b[1200];
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s/%s", g_dir, parts[i].sub);
        if (mkdirs(a)) return -1;
        snprintf(b, sizeof(b), "%s/config.json", a);
        if (link_file(parts[i].m->config_path, b)) return -1;
        snprintf(b, sizeof(b), "%s/%s", a, parts[i].weights);
        if (link_file(parts[i].m->weights_path, b)) return -1;
    }
    const char *files[] = {"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
                           "tokenizer/special_tokens_map.json", "scheduler/scheduler_config.json", "model_index.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(a, sizeof(a), "%s/%s", tiny, files[i]);
        snprintf(b, sizeof(b), "%s/%s", g_dir, files[i]);
        char d[1200];
        snprintf(d, sizeof(d), "%s", b);
        *strrchr(d, '/') = 0;
        if (mkdirs(d) || copy_file(a, b)) return -1;
    }
    return 0;
}

static void run_child(void (*fn)(const void *, Result *), const void *arg, Result *res) {
    memset(res, 0, sizeof(*res));
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        Result r;
        memset(&r, 0, sizeof(r));
        fn(arg, &r);
        ssize_t w = write(fd[1], &r, sizeof(r));
        _exit(w == (ssize_t)sizeof(r) ? 0 : 3);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof(*res)) {
        ssize_t n = read(fd[0], (char *)res + got, sizeof(*res) - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != sizeof(*res)) snprintf(res->msg, sizeof(res->msg), "the child died (status %d)", status);
}

// The FMA peak (value, GFLOP/s) as bench_models states it: one core's register-only rate times the
// threads (seconds field): what the threads could reach if none of them were slowed by the other.
static void child_peak(const void *arg, Result *r) {
    (void)arg;
    int threads = test_env_apply();
    r->value = measure_peak(sd_cpu_isa(), 1) * threads;
    r->seconds = threads;
    r->ok = 1;
}

static void child_pack(const void *arg, Result *r) {
    (void)arg;
    double t0 = sd_now();
    if (model_pack_write(g_dir, NULL, g_pack, r->msg, sizeof(r->msg))) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        return;
    }
    r->seconds = sd_now() - t0;
    r->ok = 1;
}

// Loads the model (the folder or the packed file) and times it (the prompt's embedding, a text
// encoder forward, is timed apart: it is compute, not loading); value = weights repacked.
static void child_load(const void *arg, Result *r) {
    const char *path = (const char *)arg;
    DiffusionModel m;
    double t0 = sd_now();
    if (diffusion_model_load(&m, path, NULL, 0, NULL)) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        return;
    }
    r->seconds = sd_now() - t0;
    const float *emb;
    t0 = sd_now();
    if (diffusion_model_prompt(&m, "A satellite image", &emb)) snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
    r->pss_kb = sd_now() - t0;  // (seconds of the prompt's embedding)
    r->value = m.pack_repacked;
    r->rss_kb = smaps_kb("Rss:");
    diffusion_model_free(&m);
    r->ok = 1;
}

static float *rand_images(int B, int side) {
    size_t n = (size_t)B * 3 * side * side;
    float *x = (float *)malloc(n * sizeof(float));
    uint64_t s = 99;
    for (size_t i = 0; x && i < n; i++) x[i] = uniform_pm1(&s);
    return x;
}

// One extraction of 4 images at 256x256, at batch `*arg` (1: one by one); seconds per image.
static void child_extract(const void *arg, Result *r) {
    const int B = *(const int *)arg, side = 256, n_images = 4;
    DiffusionModel m;
    if (diffusion_model_load(&m, g_pack, NULL, 0, "A satellite image")) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        return;
    }
    ExtractOptions o;
    extract_options_default(&o);
    float *x = rand_images(n_images, side);
    FeaturePyramid p[4];
    double t0 = sd_now();
    int rc = 0;
    for (int i = 0; i < n_images && !rc; i += B) {
        Tensor t = tensor_view(x + (size_t)i * 3 * side * side, 4, (int[4]){B, 3, side, side});
        rc = features_extract_batch(&m, &o, &t, p);
        for (int b = 0; b < B; b++) feature_pyramid_free(&p[b]);
    }
    r->seconds = (sd_now() - t0) / n_images;
    if (rc) snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
    r->ok = !rc;
    r->rss_kb = smaps_kb("Rss:");
    free(x);
    diffusion_model_free(&m);
}

// Issue 21's memory rows: the peak resident set of one 256x256 extraction as `satdifuser extract`
// runs it from the model folder (the text encoder freed once the prompt's embedding exists), at the
// precision `*arg` (NN_F32, NN_BF16 or NN_F16: weights resident in bf16 / f16). value = peak RSS in kB (getrusage:
// this child's own high-water mark; the parent that forked it holds no model).
static void child_rss(const void *arg, Result *r) {
    const int precision = *(const int *)arg, side = 256;
    if (nn_set_precision(precision)) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        return;
    }
    DiffusionModel m;
    double t0 = sd_now();
    if (diffusion_model_load(&m, g_dir, NULL, 0, "A satellite image")) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        return;
    }
    ExtractOptions o;
    extract_options_default(&o);
    float *x = rand_images(1, side);
    FeaturePyramid p;
    Tensor t = tensor_view(x, 4, (int[4]){1, 3, side, side});
    int rc = x ? features_extract_batch(&m, &o, &t, &p) : -1;
    if (rc == 0) feature_pyramid_free(&p);
    else snprintf(r->msg, sizeof(r->msg), "%s", x ? sd_last_error() : "out of memory");
    r->seconds = sd_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->value = (double)ru.ru_maxrss;
    r->ok = !rc;
    free(x);
    diffusion_model_free(&m);
}

// Two processes load the packed file and run a small UNet forward (every weight page touched),
// then each reports its PSS while both are alive: the shared pages count half in each.
static void child_pss(const void *arg, Result *r) {
    (void)arg;
    int sync_fd[2], back[2];
    if (pipe(sync_fd) || pipe(back)) return;
    pid_t pid = fork();
    int is_child = pid == 0;
    DiffusionModel m;
    if (diffusion_model_load(&m, g_pack, NULL, 0, "A satellite image")) {
        snprintf(r->msg, sizeof(r->msg), "%s", sd_last_error());
        if (is_child) _exit(1);
        return;
    }
    float x[4 * 8 * 8] = {0}, t = 21.0f, *out = (float *)malloc(4 * 8 * 8 * sizeof(float));
    unet_run(&m.unet, x, 1, 8, 8, &t, m.cached_embedding, m.L, NULL, NULL, out);
    free(out);
    char c = 1;
    double pss;
    if (is_child) {  // ready, wait for the parent to measure, then measure
        if (write(sync_fd[1], &c, 1) != 1 || read(back[0], &c, 1) != 1) _exit(1);
        pss = smaps_kb("Pss:");
        if (write(sync_fd[1], &pss, sizeof(pss)) != (ssize_t)sizeof(pss)) _exit(1);
        if (read(back[0], &c, 1) != 1) _exit(1);
        _exit(0);
    }
    double other = 0.0;
    if (read(sync_fd[0], &c, 1) != 1) return;
    pss = smaps_kb("Pss:");
    r->rss_kb = smaps_kb("Rss:");
    if (write(back[1], &c, 1) != 1 || read(sync_fd[0], &other, sizeof(other)) != (ssize_t)sizeof(other)) return;
    if (write(back[1], &c, 1) != 1) return;
    waitpid(pid, NULL, 0);
    r->pss_kb = pss + other;
    r->ok = 1;
    diffusion_model_free(&m);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    const char *cache = getenv("SATDIFUSER_BENCH_CACHE");
    if (!cache || !*cache) cache = "build/bench_models";
    printf("\nsatdifuser whole-job bench (random SD 2.1-sized weights, f32)\n");
    if (prepare_model(&g_unet, cache) || prepare_model(&g_vae, cache) || prepare_model(&g_clip, cache)) {
        printf("SKIP bench_jobs: %s%s%s\n", g_unet.why, g_vae.why, g_clip.why);
        printf("RESULT 0 0\n");
        return 0;
    }
    if (make_pipeline(cache)) {
        printf("SKIP bench_jobs: cannot make %s: %s\n", g_dir, strerror(errno));
        return 0;
    }
    snprintf(g_pack, sizeof(g_pack), "%s/pipeline.sdpack", cache);
    // packed once (the fingerprint of the folder says whether the file is current), in a child: the
    // parent must not start OpenMP's threads, or the forked children would wait for them forever
    Result packed, folder, pack, pack2, pss, peak_res;
    if (!model_pack_path_is_file(g_pack) || model_pack_fingerprint(g_pack) != diffusion_model_fingerprint(g_dir, NULL)) {
        run_child(child_pack, NULL, &packed);
        if (!packed.ok) {
            printf("SKIP bench_jobs: pack: %s\n", packed.msg);
            return 0;
        }
        printf("packed %s: %s in %.1f s\n", g_pack, packed.msg, packed.seconds);
    }
    run_child(child_load, g_pack, &pack);  // warms the page cache for the file
    run_child(child_load, g_dir, &folder);
    run_child(child_load, g_pack, &pack2);
    if (!folder.ok || !pack2.ok) {
        printf("bench_jobs: load failed: %s%s\n", folder.msg, pack2.msg);
        return 1;
    }
    printf("%-44s %8.2f s  RSS %6.0f MB  (then the prompt's embedding %.2f s)\n", "load pipeline from its folder (safetensors)",
           folder.seconds, folder.rss_kb / 1024, folder.pss_kb);
    printf("%-44s %8.2f s  RSS %6.0f MB  (%.0fx faster; %d weights repacked; prompt %.2f s)   target <= 1 s\n",
           "load the packed file (warm page cache)", pack2.seconds, pack2.rss_kb / 1024, folder.seconds / pack2.seconds,
           (int)pack2.value, pack2.pss_kb);
    run_child(child_pss, NULL, &pss);
    if (pss.ok)
        printf("%-44s PSS %6.0f MB for two, RSS %6.0f MB for one: %.2fx   target <= 1.2x\n",
               "two processes on one packed file", pss.pss_kb / 1024, pss.rss_kb / 1024, pss.pss_kb / pss.rss_kb);
    else
        printf("two processes: failed: %s\n", pss.msg);
    // peak RSS of one extraction from the folder, f32 weights and bf16- or f16-resident weights (issue 21)
    int precisions[3] = {NN_F32, NN_BF16, NN_F16};
    const double targets_mb[3] = {4096, 2560, 2560};
    for (int k = 0; k < 3; k++) {
        Result rss;
        const char *name = nn_precision_name(precisions[k]);
        run_child(child_rss, &precisions[k], &rss);
        char label[64];
        snprintf(label, sizeof(label), "one 256x256 extraction, %s weights", name);
        if (rss.ok)
            printf("%-44s peak RSS %6.0f MB (load + 1 image %.1f s)   target <= %.1f GB\n", label, rss.value / 1024,
                   rss.seconds, targets_mb[k] / 1024);
        else
            printf("one 256x256 extraction (%s): not run: %s\n", name, rss.msg);
    }
    if (!quick) {
        run_child(child_peak, NULL, &peak_res);
        double peak = peak_res.value * 1e9;
        int threads = (int)peak_res.seconds;
        double gflop = extract_flops(256, 10);
        printf("fp32 FMA peak %.1f GFLOP/s (%d threads x one core's register-only loop, measured now)\n", peak * 1e-9,
               threads);
        // alternated (1, 4, 1, 4): both batch sizes see the same phases of a shared machine; the best of each
        int batches[2] = {1, 4};
        Result ex[2], again;
        for (int round = 0; round < 2; round++)
            for (int k = 0; k < 2; k++) {
                run_child(child_extract, &batches[k], round ? &again : &ex[k]);
                if (round && again.ok && (!ex[k].ok || again.seconds < ex[k].seconds)) ex[k] = again;
            }
        for (int k = 0; k < 2; k++) {
            if (!ex[k].ok) { printf("extract batch %d: failed: %s\n", batches[k], ex[k].msg); continue; }
            printf("extract 256x256, batch %d %26s %8.2f s/image  %5.1f%% of peak  RSS %6.0f MB   target >= %d%%\n",
                   batches[k], "", ex[k].seconds, 100.0 * gflop / ex[k].seconds / peak, ex[k].rss_kb / 1024, k ? 78 : 70);
        }
        if (ex[0].ok && ex[1].ok) printf("batch 4 / batch 1 throughput: %.2fx\n", ex[0].seconds / ex[1].seconds);
    }
    printf("RESULT 0 0\n");
    return 0;
}
