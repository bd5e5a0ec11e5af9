#include "core/runtime.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"

// The thread count is OpenMP's nthreads-var, which every host thread has its own copy of (an
// initial task's data environment): setting it here changes the count of the calling thread's
// parallel regions only, and the regions' workers inherit it. No global of ours.
int sd_threads_set(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    n = 1;
#endif
    return n;
}

int sd_threads_init(int requested) {
    int n = requested;
    if (n <= 0) {
        const char *env = getenv("SATDIFUSER_THREADS");
        if (env && *env) {
            char *end = NULL;
            long v = strtol(env, &end, 10);
            if (*end != '\0' || v < 1 || v > 4096)
                return sd_errorf("SATDIFUSER_THREADS='%s': expected a whole number from 1 to 4096", env);
            n = (int)v;
        }
    }
    return sd_threads_set(n);
}

int sd_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static SdIsa detect_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
    return ISA_SCALAR;
#elif defined(__aarch64__)
    return ISA_NEON;
#else
    return ISA_SCALAR;
#endif
}

// $SATDIFUSER_ISA, read once: the path it asks for (-1: the best one; ISA_REFERENCE: the naive
// loops), or -2 when the value is not one the build and CPU can run (sd_isa_check reports it).
static int g_isa_env = -3;  // -3: not read yet

static int isa_from_env(SdIsa best) {
    const char *env = getenv("SATDIFUSER_ISA");
    if (!env || !*env) return -1;
    if (!strcmp(env, "reference")) return ISA_REFERENCE;
    if (!strcmp(env, "scalar")) return ISA_SCALAR;
    // x86 paths are ordered scalar < avx2 < avx512; NEON is there only where it is the best
    if (!strcmp(env, "avx2") && (best == ISA_AVX2 || best == ISA_AVX512)) return ISA_AVX2;
    if (!strcmp(env, "avx512") && best == ISA_AVX512) return ISA_AVX512;
    if (!strcmp(env, "neon") && best == ISA_NEON) return ISA_NEON;
    return -2;
}

int sd_isa_check(void) {
    (void)sd_cpu_isa();
    if (g_isa_env != -2) return 0;
    const char *env = getenv("SATDIFUSER_ISA");
    SdIsa best = detect_isa();
    int known = !strcmp(env, "avx2") || !strcmp(env, "avx512") || !strcmp(env, "neon");
    return sd_errorf("SATDIFUSER_ISA='%s': %s; accepted here: reference, scalar%s%s%s (unset: the best, %s)", env,
                     known ? "this CPU cannot run that path" : "unknown value",
                     best == ISA_AVX2 || best == ISA_AVX512 ? ", avx2" : "", best == ISA_AVX512 ? ", avx512" : "",
                     best == ISA_NEON ? ", neon" : "", sd_isa_name(best));
}

SdIsa sd_cpu_isa(void) {
    static int cached = -1;
    if (cached < 0) {
        SdIsa best = detect_isa();
        g_isa_env = isa_from_env(best);
        // the reference path's element-wise kernels (activations, resampling) are the scalar ones
        cached = g_isa_env == ISA_REFERENCE ? ISA_SCALAR : g_isa_env >= 0 ? g_isa_env : (int)best;
    }
    return (SdIsa)cached;
}

int sd_reference_path(void) {
    (void)sd_cpu_isa();
    return g_isa_env == ISA_REFERENCE;
}

const char *sd_isa_in_use(void) { return sd_reference_path() ? "reference" : sd_isa_name(sd_cpu_isa()); }

const char *sd_isa_name(SdIsa isa) {
    switch (isa) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    case ISA_NEON: return "neon";
    case ISA_REFERENCE: return "reference";
    default: return "scalar";
    }
}

double sd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *sd_alloc_large(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    if (bytes < huge) return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
    if (posix_memalign(&p, huge, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    // Only the whole huge pages: a partly used last one would hold up to 2 MiB of nothing
    // in memory for every weight. A hint: ignored where THP is off.
    madvise(p, bytes / huge * huge, MADV_HUGEPAGE);
#endif
    return p;
}

void *sd_kept_buffer(void **buf, size_t *cap, size_t bytes) {
    if (*cap < bytes) {
        free(*buf);
        *buf = sd_alloc_large(bytes);
        *cap = *buf ? bytes : 0;
    }
    return *buf;
}
