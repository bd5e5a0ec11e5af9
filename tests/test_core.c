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
    CHECK(arena_init(&a, 1000) == 0, "init");
    float *x = arena_floats(&a, 10);
    CHECK(x && ((uintptr_t)x % 64) == 0, "aligned");
    size_t mark = arena_mark(&a);
    float *y = arena_floats(&a, 100);
    CHECK(y && y >= x + 10, "second block after the first");
    arena_reset(&a, mark);
    float *z = arena_floats(&a, 100);
    CHECK(z == y, "reset reuses memory");
    sd_clear_error();
    CHECK(arena_floats(&a, 1000) == NULL && strstr(sd_last_error(), "out of scratch memory"), "full arena: %s", sd_last_error());
    CHECK(a.peak >= 440, "peak recorded");
    CHECK(arena_alloc(&a, (size_t)-1) == NULL, "absurd size refused without overflow");
    arena_free(&a);
}

static void test_errors_and_threads(void) {
    sd_errorf("tensor '%s' bad", "w");
    sd_error_context("file %s", "m.safetensors");
    CHECK(strcmp(sd_last_error(), "file m.safetensors: tensor 'w' bad") == 0, "context: %s", sd_last_error());
    CHECK(sd_threads_init(1) == 1 && sd_threads() == 1, "one thread");
    setenv("SATDIFUSER_THREADS", "abc", 1);
    CHECK(sd_threads_init(0) < 0 && strstr(sd_last_error(), "SATDIFUSER_THREADS"), "bad env value: %s", sd_last_error());
    setenv("SATDIFUSER_THREADS", "2", 1);
    CHECK(sd_threads_init(0) == 2, "env value used");
    unsetenv("SATDIFUSER_THREADS");
    CHECK(sd_threads_init(0) >= 1, "default: all cores");
    SdIsa isa = sd_cpu_isa();
    CHECK(strlen(sd_isa_name(isa)) > 0, "isa %s", sd_isa_name(isa));
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
