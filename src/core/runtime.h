// Threads, CPU features and time: the machine-facing parts of the core.
#ifndef SD_RUNTIME_H
#define SD_RUNTIME_H

#include <stddef.h>

// The OpenMP thread count of the calling host thread's parallel regions (OpenMP keeps one per
// host thread: two threads may set different counts): n if > 0, else every core. Returns the count.
// Reads no environment: what the library API (satdifuser.h) uses.
int sd_threads_set(int n);
// For the CLI and tests: sd_threads_set of `requested` if > 0, else of $SATDIFUSER_THREADS, else of
// every core. Returns the count in use, or -1 if the environment value is invalid.
int sd_threads_init(int requested);
// The calling thread's count (omp_get_max_threads()).
int sd_threads(void);

// The SIMD path chosen at run time from the CPU's features. $SATDIFUSER_ISA forces another:
//   scalar, avx2, avx512, neon  a SIMD path this CPU can run (a lower one, for testing);
//   reference                   the naive loops of kernels/reference.c for GEMM, convolution,
//                               attention and the norms (sd_reference_path() is 1; the other
//                               element-wise kernels and sd_cpu_isa() are the scalar ones).
// Any other value, or a path this CPU cannot run, is an error that sd_isa_check() reports
// (the CLI calls it first); until then the best path is used.
typedef enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3, ISA_REFERENCE = 4 } SdIsa;
SdIsa sd_cpu_isa(void);
const char *sd_isa_name(SdIsa isa);
// 0, or -1 with a message naming the value of $SATDIFUSER_ISA and the accepted ones.
int sd_isa_check(void);
// 1 when $SATDIFUSER_ISA=reference.
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
