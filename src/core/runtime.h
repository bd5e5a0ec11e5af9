// Threads, CPU features and time: the machine-facing parts of the core.
#ifndef SD_RUNTIME_H
#define SD_RUNTIME_H

#include <stddef.h>

// The OpenMP thread count of the calling host thread's parallel regions (OpenMP keeps one per
// host thread: two threads may set different counts): n if > 0, else every core. Returns the count.
// The library reads no environment: the command applies --threads / $SATDIFUSER_THREADS with it
// (src/cli/main.c), the library API (satdifuser.h) a context's count.
int sd_threads_set(int n);
// The calling thread's count (omp_get_max_threads()).
int sd_threads(void);

// The SIMD path: by default the best this CPU has (sd_isa_best: AVX-512, AVX2+FMA, NEON or scalar).
// A program may choose another for the whole process, once at start, before any work
// (sd_isa_set_default; the command does it from $SATDIFUSER_ISA, src/cli/main.c):
//   ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON  a path this CPU can run (a lower one, for testing);
//   ISA_REFERENCE   the naive loops of kernels/reference.c for GEMM, convolution, attention and the
//                   norms (sd_reference_path() is 1; the other element-wise kernels and sd_cpu_isa()
//                   are the scalar ones).
// A library caller picks a GEMM path per thread instead (gemm_force_isa; SdfOptions.isa).
typedef enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3, ISA_REFERENCE = 4 } SdIsa;
// The path in use: the default's (scalar for ISA_REFERENCE), else the best.
SdIsa sd_cpu_isa(void);
// The best path of this CPU and build, whatever the default.
SdIsa sd_isa_best(void);
// 1 when this CPU can run the path (reference and scalar: always; x86 paths up to the best; NEON
// where it is the best).
int sd_isa_runnable(SdIsa isa);
// Sets the process's default path (-1: the best again). Not thread-safe: call it before any work.
// -1 with a message when this CPU cannot run it.
int sd_isa_set_default(int isa);
const char *sd_isa_name(SdIsa isa);
// 1 when the default is ISA_REFERENCE.
int sd_reference_path(void);
// What `satdifuser version` prints: "reference" or sd_isa_name(sd_cpu_isa()).
const char *sd_isa_in_use(void);

// Wall-clock seconds (monotonic).
double sd_now(void);

// Memory for big, long-lived blocks (packed weights, scratch arenas): 64-byte aligned,
// and from 2 MiB up aligned to 2 MiB with its whole 2 MiB pages marked for transparent
// huge pages where the system has them (fewer page faults when first touched, fewer TLB
// misses in the GEMM).
// NULL if out of memory. Release with free().
void *sd_alloc_large(size_t bytes);
// A workspace kept between calls (*buf, *cap bytes, both 0 at first): returns *buf once it holds
// at least `bytes`, replacing it (contents dropped) by a bigger sd_alloc_large block when it does
// not; NULL if out of memory (then *buf is NULL and *cap 0). Not thread-safe: one per caller.
void *sd_kept_buffer(void **buf, size_t *cap, size_t bytes);

#endif
