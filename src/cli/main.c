// satdifuser: the command-line front end. One file per subcommand.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/error.h"
#include "core/runtime.h"
#include "kernels/kernels.h"
#include "models/nn.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} g_commands[] = {
    {"extract", cmd_extract, "VAE-encode, DDIM-invert and capture UNet features for images"},
    {"train", cmd_train, "train a fusion module and head on cached features"},
    {"eval", cmd_eval, "evaluate a trained head on cached features"},
    {"predict", cmd_predict, "image to class or segmentation map"},
    {"labels", cmd_labels, "labels CSV from class folders (labels from-folders DIR --out FILE)"},
    {"golden", cmd_golden, "run golden cases (folders of case.json + safetensors) against this implementation"},
    {"info", cmd_info, "list the tensors and metadata of a safetensors or PyTorch (.bin .pt .pth .ckpt) file"},
    {"convert", cmd_convert, "single-file SD checkpoint (.safetensors, .ckpt) -> diffusers folder; any checkpoint -> safetensors"},
    {"figures", cmd_figures, "PNG figures from features, runs and predictions (PCA, fusion weights, curves, ...)"},
    {"pack", cmd_pack, "a model folder as one packed file that loads by mapping it (extract --model FILE)"},
    {"import-head", cmd_import_head, "run folder from a head trained by the original run.py (.pth)"},
    {"geobench", cmd_geobench, "GEO-Bench task folder (HDF5 samples) -> images/*.npy, masks/*.npy, labels.csv"},
    {"reproduce", cmd_reproduce, "one GEO-Bench experiment of the paper: extract, train, eval, a results row"},
};

static void usage(FILE *f) {
    fprintf(f, "satdifuser %s: SatDiFuser (diffusion features for geospatial tasks) in C\n\n", SATDIFUSER_VERSION);
    fprintf(f, "usage: satdifuser [--threads N] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(g_commands) / sizeof(g_commands[0]); i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].help);
    fprintf(f, "  %-10s %s\n", "version", "print the version and the SIMD path in use");
    fprintf(f, "\n'satdifuser <command> --help' describes a command's options.\n");
    fprintf(f, "Threads: --threads N or $SATDIFUSER_THREADS (default: all cores).\n");
}

int cli_take_threads(int *argc, char **argv) {
    int requested = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--threads") == 0) {
            if (i + 1 >= *argc) return sd_errorf("--threads: missing value");
            char *end = NULL;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 4096) return sd_errorf("--threads '%s': expected a whole number from 1 to 4096", argv[i + 1]);
            requested = (int)v;
            for (int j = i; j + 2 <= *argc; j++) argv[j] = argv[j + 2];
            *argc -= 2;
            i--;
        }
    }
    const char *env = getenv("SATDIFUSER_THREADS");  // the library reads no environment: the command does
    if (requested <= 0 && env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (*end != '\0' || v < 1 || v > 4096)
            return sd_errorf("SATDIFUSER_THREADS='%s': expected a whole number from 1 to 4096", env);
        requested = (int)v;
    }
    sd_threads_set(requested);
    return 0;
}

// $SATDIFUSER_ISA: the process's SIMD path (runtime.h), before any work. An unknown value or a path
// this CPU cannot run is an error naming the paths accepted here, not a silent fallback.
static int apply_isa_env(void) {
    const char *env = getenv("SATDIFUSER_ISA");
    if (!env || !*env) return 0;
    int isa = -1;
    for (int k = ISA_SCALAR; k <= ISA_REFERENCE; k++)
        if (!strcmp(env, sd_isa_name((SdIsa)k))) isa = k;
    if (isa >= 0 && sd_isa_runnable((SdIsa)isa)) return sd_isa_set_default(isa);
    SdIsa best = sd_isa_best();
    return sd_errorf("SATDIFUSER_ISA='%s': %s; accepted here: reference, scalar%s%s%s (unset: the best, %s)", env,
                     isa >= 0 ? "this CPU cannot run that path" : "unknown value",
                     best == ISA_AVX2 || best == ISA_AVX512 ? ", avx2" : "", best == ISA_AVX512 ? ", avx512" : "",
                     best == ISA_NEON ? ", neon" : "", sd_isa_name(best));
}

// OpenMP's default wait policy lets idle threads spin between parallel
// regions (libgomp: ~3 ms); on a busy machine (CI, a shared node) that made
// extraction 15-50x slower. PASSIVE alone puts a thread to sleep at once, and a
// forward opens ~700 parallel regions microseconds apart: each wake-up is a
// futex call (4.6% of a bf16 UNet forward's CPU time). So: PASSIVE, but spin
// 2000 times (~20 us) first (GOMP_SPINCOUNT, libgomp only; bf16 UNet 32x32 2-6%
// faster in 4 of 4 alternating runs, f32 unchanged, docs/benchmarks-models.md).
// libgomp reads both when it is loaded, before main, so when the user has not
// chosen a policy we set them and re-execute ourselves once.
static void prefer_passive_openmp_threads(char **argv) {
#if defined(__linux__)
    if (getenv("OMP_WAIT_POLICY") || getenv("SATDIFUSER_NO_REEXEC")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("GOMP_SPINCOUNT", "2000", 0);
    setenv("SATDIFUSER_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
#else
    (void)argv;
#endif
}

int main(int argc, char **argv) {
    prefer_passive_openmp_threads(argv);
    if (cli_take_threads(&argc, argv) || apply_isa_env()) {
        fprintf(stderr, "satdifuser: %s\n", sd_last_error());
        return 2;
    }
    // $SATDIFUSER_PRECISION=bf16 (on a CPU that has it) or f16: that precision for the models loaded
    // (the library reads no environment, so the front end does)
    const char *precision = getenv("SATDIFUSER_PRECISION");
    if (precision && !strcmp(precision, "bf16") && gemm_bf16_supported()) nn_set_precision(NN_BF16);
    if (precision && !strcmp(precision, "f16")) nn_set_precision(NN_F16);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        // bf16: whether `--precision bf16` can run here (tests ask this, not /proc/cpuinfo,
        // which under qemu-user shows the host's CPU)
        printf("satdifuser %s (simd: %s, bf16: %s, threads: %d)\n", SATDIFUSER_VERSION, sd_isa_in_use(),
               gemm_bf16_supported() ? "yes" : "no", sd_threads());
        return 0;
    }
    for (size_t i = 0; i < sizeof(g_commands) / sizeof(g_commands[0]); i++)
        if (!strcmp(argv[1], g_commands[i].name)) return g_commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "satdifuser: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
