// Core: tensors, the scratch arena, kept workspaces, errors, threads.
#include "core/error.h"
#include "core/runtime.h"
#include "core/tensor.h"
#include "tests/test_util.h"

static void test_tensor(void) {
    Tensor t;
    int shape[4] = {2, 3, 4, 5};
    CHECK(tensor_alloc(&t, 4, shape, "x") == 0 && tensor_numel(&t) == 120, "alloc 2x3x4x5");
    CHECK(t.data[119] == 0.0f, "zero-filled");
    char buf[64];
    CHECK(strcmp(tensor_shape_str(&t, buf, sizeof(buf)), "(2, 3, 4, 5)") == 0, "shape string %s", buf);
    CHECK(tensor_check_shape(&t, 4, shape, "x") == 0, "same shape");
    int other[4] = {2, 3, 5, 4};
    CHECK(tensor_check_shape(&t, 4, other, "latent") != 0 && strstr(sd_last_error(), "latent: shape (2, 3, 4, 5), expected (2, 3, 5, 4)"),
          "mismatch message: %s", sd_last_error());
    tensor_free(&t);
    CHECK(t.data == NULL, "freed");
    int five[5] = {1, 1, 1, 1, 1};
    CHECK(tensor_alloc(&t, 5, five, "y") != 0, "5 dims rejected");
    int neg[1] = {-1};
    CHECK(tensor_alloc(&t, 1, neg, "z") != 0, "negative dim rejected");
}

static void test_arena(void) {
    Arena a;
    CHECK(arena_init(&a, 1000) == 0 && a.capacity == 1024, "init: %zu bytes", a.capacity);
    float *x = arena_floats(&a, 10);
    CHECK(x && ((uintptr_t)x % 64) == 0, "aligned");
    size_t mark = arena_mark(&a);
    float *y = arena_floats(&a, 100);
    CHECK(y && y >= x + 10, "second block after the first");
    arena_reset(&a, mark);
    float *z = arena_floats(&a, 100);
    CHECK(z == y, "reset reuses memory");
    // past the first block: a new block is chained, the live floats stay where they are
    for (int i = 0; i < 10; i++) x[i] = (float)i;
    size_t mark2 = arena_mark(&a);
    float *big = arena_floats(&a, 1000);
    CHECK(big && ((uintptr_t)big % 64) == 0 && a.capacity > 1024 && a.used > 4000, "grown: %zu bytes, %zu used",
          a.capacity, a.used);
    int kept = 1;
    for (int i = 0; i < 10; i++) kept &= x[i] == (float)i;
    CHECK(kept && arena_floats(&a, 10) != NULL, "live data does not move when the arena grows");
    size_t peak = a.peak;
    CHECK(peak >= 1024 + 4000, "peak %zu counts positions through the chain", peak);
    arena_reset(&a, mark2);
    CHECK(arena_floats(&a, 1000) == big, "the chained block is kept for the next deeper use");
    // empty again: one block of the peak, where the same allocations fit without growing
    arena_reset(&a, 0);
    CHECK(a.used == 0 && a.capacity > ((peak + 63) & ~(size_t)63), "a reset keeps the chain: %zu", a.capacity);
    arena_end(&a, 0);
    CHECK(a.used == 0 && a.capacity == ((peak + 63) & ~(size_t)63), "merged into one block of the peak: %zu",
          a.capacity);
    size_t cap = a.capacity;
    CHECK(arena_floats(&a, 10) && arena_floats(&a, 100) && arena_floats(&a, 1000) && arena_floats(&a, 10) &&
              a.capacity == cap,
          "the same allocations fit the merged block (%zu bytes)", a.capacity);
    CHECK(arena_alloc(&a, (size_t)-1) == NULL && strstr(sd_last_error(), "not a size"), "absurd size refused: %s",
          sd_last_error());
    arena_free(&a);
    // Reset, then move live data from above the mark down (vae.c's move_down): the bytes above the
    // mark must stay readable until the next reset, also when the reset merges the chain (mark 0)
    // and when the new allocation replaces the blocks after the current one (a freed block read here
    // is a crash in a normal build or a heap-use-after-free under ASan).
    for (int variant = 0; variant < 2; variant++) {
        Arena m = {0};
        float *first = arena_floats(&m, 300000);                    // block 1 (1 MiB)
        size_t mk = variant ? arena_mark(&m) : 0;
        float *mid = arena_floats(&m, variant ? 200000 : 10);       // variant 1: block 2, later too small
        float *src = arena_floats(&m, 1000000);                     // block 2 or 3
        int ok = first && mid && src;
        for (int i = 0; ok && i < 1000000; i++) src[i] = (float)i;
        arena_reset(&m, mk);
        float *dst = ok ? arena_floats(&m, 1000000) : NULL;
        if (dst && dst != src) memmove(dst, src, 1000000 * sizeof(float));
        for (int i = 0; dst && i < 1000000; i++) ok &= dst[i] == (float)i;
        CHECK(ok && dst, "reset to %s, then live data moved down from a later block", variant ? "a mark" : "0");
        arena_end(&m, 0);
        CHECK(m.retired == NULL && m.capacity == ((m.peak + 63) & ~(size_t)63),
              "the blocks taken out of the chain are freed at the forward's end, the rest merged");
        arena_free(&m);
    }
    Arena zero = {0};
    CHECK(arena_floats(&zero, 3) != NULL && zero.capacity > 0, "a zeroed arena grows on first use");
    arena_free(&zero);
}

static void test_errors_and_threads(void) {
    sd_errorf("tensor '%s' bad", "w");
    sd_error_context("file %s", "m.safetensors");
    CHECK(strcmp(sd_last_error(), "file m.safetensors: tensor 'w' bad") == 0, "context: %s", sd_last_error());
    CHECK(sd_threads_set(1) == 1 && sd_threads() == 1, "one thread");
    CHECK(sd_threads_set(2) == 2 && sd_threads() == 2, "two threads");
#ifdef _OPENMP
    CHECK(sd_threads_set(0) == omp_get_num_procs(), "0: every core");
#endif
    SdIsa isa = sd_cpu_isa();
    CHECK(strlen(sd_isa_name(isa)) > 0 && isa == sd_isa_best(), "isa %s, best %s", sd_isa_name(isa),
          sd_isa_name(sd_isa_best()));
    // the library reads no environment: the command applies $SATDIFUSER_ISA / _THREADS (cli/main.c)
    setenv("SATDIFUSER_ISA", "reference", 1);
    setenv("SATDIFUSER_THREADS", "3", 1);
    CHECK(sd_cpu_isa() == sd_isa_best() && !sd_reference_path(), "$SATDIFUSER_ISA is not read: isa %s, reference %d",
          sd_isa_name(sd_cpu_isa()), sd_reference_path());
#ifdef _OPENMP
    CHECK(sd_threads_set(0) == omp_get_num_procs(), "$SATDIFUSER_THREADS is not read: %d threads", sd_threads());
#endif
    unsetenv("SATDIFUSER_ISA");
    unsetenv("SATDIFUSER_THREADS");
    // the process's default path: reference (element-wise kernels scalar), back to the best
    CHECK(sd_isa_set_default(ISA_REFERENCE) == 0 && sd_reference_path() && sd_cpu_isa() == ISA_SCALAR &&
              !strcmp(sd_isa_in_use(), "reference"),
          "reference default: in use %s", sd_isa_in_use());
    CHECK(sd_isa_set_default(ISA_SCALAR) == 0 && !sd_reference_path() && sd_cpu_isa() == ISA_SCALAR &&
              !strcmp(sd_isa_in_use(), "scalar"),
          "scalar default: in use %s", sd_isa_in_use());
    CHECK(sd_isa_set_default(-1) == 0 && sd_cpu_isa() == sd_isa_best() && !sd_reference_path(), "back to the best");
    CHECK(sd_isa_set_default(99) == -1 && strstr(sd_last_error(), "unknown"), "an unknown path: %s", sd_last_error());
    SdIsa other = sd_isa_best() == ISA_NEON ? ISA_AVX2 : ISA_NEON;  // a path of the other architecture
    CHECK(!sd_isa_runnable(other) && sd_isa_set_default(other) == -1 && strstr(sd_last_error(), "cannot run") &&
              sd_cpu_isa() == sd_isa_best(),
          "%s refused on a %s CPU: %s", sd_isa_name(other), sd_isa_name(sd_isa_best()), sd_last_error());
    CHECK(sd_isa_runnable(ISA_SCALAR) && sd_isa_runnable(ISA_REFERENCE) && sd_isa_runnable(sd_isa_best()),
          "scalar, reference and the best are runnable");
    double t0 = sd_now();
    CHECK(sd_now() >= t0, "monotonic clock");
}

// sd_kept_buffer: the same block while it is big enough (its contents kept), a new one when not.
static void test_kept_buffer(void) {
    void *buf = NULL;
    size_t cap = 0;
    float *a = sd_kept_buffer(&buf, &cap, 100 * sizeof(float));
    CHECK(a && a == buf && cap == 100 * sizeof(float) && ((uintptr_t)a % 64) == 0, "first block: %p cap %zu", (void *)a,
          cap);
    a[99] = 7.0f;
    float *b = sd_kept_buffer(&buf, &cap, 50 * sizeof(float));
    CHECK(b == a && cap == 100 * sizeof(float) && b[99] == 7.0f, "a smaller request keeps the block");
    float *c = sd_kept_buffer(&buf, &cap, ((size_t)3 << 20));
    CHECK(c && c == buf && cap == ((size_t)3 << 20), "a bigger request grows it (cap %zu)", cap);
    c[((size_t)3 << 20) / sizeof(float) - 1] = 1.0f;  // all of it is usable (ASan checks)
    free(buf);
}

int main(void) {
    test_tensor();
    test_arena();
    test_kept_buffer();
    test_errors_and_threads();
    return test_report("test_core");
}
