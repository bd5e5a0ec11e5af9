// Threads, CPU features and time: the machine-facing parts of the core.
#ifndef SD_RUNTIME_H
#define SD_RUNTIME_H

// Sets the OpenMP thread count: `requested` if > 0, else $SATDIFUSER_THREADS,
// else every core. Returns the count in use, or -1 if the value is invalid.
int sd_threads_init(int requested);
int sd_threads(void);

// The SIMD path chosen at run time from the CPU's features. $SATDIFUSER_ISA
// (scalar, avx2, avx512, neon) can force a lower one for testing.
typedef enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3 } SdIsa;
SdIsa sd_cpu_isa(void);
const char *sd_isa_name(SdIsa isa);

// Wall-clock seconds (monotonic).
double sd_now(void);

#endif
