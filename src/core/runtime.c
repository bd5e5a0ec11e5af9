#include "core/runtime.h"

#include <stdlib.h>
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

// The CPU's best path, found once (the CPU does not change).
SdIsa sd_isa_best(void) {
    static int best = -1;
    if (best < 0) best = (int)detect_isa();
    return (SdIsa)best;
}

int sd_isa_runnable(SdIsa isa) {
    SdIsa best = sd_isa_best();
    switch (isa) {
    case ISA_REFERENCE:
    case ISA_SCALAR: return 1;
    // x86 paths are ordered scalar < avx2 < avx512; NEON is there only where it is the best
    case ISA_AVX2: return best == ISA_AVX2 || best == ISA_AVX512;
    case ISA_AVX512: return best == ISA_AVX512;
    case ISA_NEON: return best == ISA_NEON;
    }
    return 0;
}

// The process's default path (sd_isa_set_default): -1 the best one, else an SdIsa. Set once, at
// start, by the program (the command from $SATDIFUSER_ISA); the library only reads it.
static int g_isa_default = -1;

int sd_isa_set_default(int isa) {
    if (isa == -1) {
        g_isa_default = -1;
        return 0;
    }
    if (isa < ISA_SCALAR || isa > ISA_REFERENCE || !sd_isa_runnable((SdIsa)isa))
        return sd_errorf("the %s path: this CPU cannot run it (the best here: %s)",
                         isa >= ISA_SCALAR && isa <= ISA_REFERENCE ? sd_isa_name((SdIsa)isa) : "unknown",
                         sd_isa_name(sd_isa_best()));
    g_isa_default = isa;
    return 0;
}

SdIsa sd_cpu_isa(void) {
    // the reference path's element-wise kernels (activations, resampling) are the scalar ones
    int isa = g_isa_default;
    return isa == ISA_REFERENCE ? ISA_SCALAR : isa >= 0 ? (SdIsa)isa : sd_isa_best();
}

int sd_reference_path(void) { return g_isa_default == ISA_REFERENCE; }

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
