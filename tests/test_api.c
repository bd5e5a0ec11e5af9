// The library face (src/satdifuser.h): errors as values with a per-thread message, and two host
// threads with their own contexts extracting at once give the same bytes as one after the other
// (also with different thread counts and precisions per context: the settings are per thread).
#include <pthread.h>

#include "core/runtime.h"
#include "kernels/kernels.h"
#include "satdifuser.h"
#include "tests/test_util.h"

#define MODEL "tests/data/tiny_pipeline"
enum { H = 40, W = 48, RUNS = 2 };

static float g_image[3 * H * W];

typedef struct {
    SdfOptions opts;
    int status;
    char message[512];
    int n_maps;
    float *maps[64];
    long sizes[64];
    int threads_after;
} Job;

// One context, one model, RUNS extractions (the last one's maps kept): what an embedding thread does.
static void *run_job(void *arg) {
    Job *j = (Job *)arg;
    SdfContext *ctx = NULL;
    SdfModel *model = NULL;
    SdfFeatures *f = NULL;
    SdfExtractOptions eo;
    sdf_extract_options_default(&eo);
    eo.size = 32;
    j->status = sdf_context_new(&j->opts, &ctx);
    if (!j->status) j->status = sdf_model_load(ctx, MODEL, NULL, &model);
    for (int r = 0; r < RUNS && !j->status; r++) {
        sdf_features_free(f);
        f = NULL;
        j->status = sdf_extract(ctx, model, &eo, g_image, 3, H, W, &f);
    }
    if (j->status) snprintf(j->message, sizeof(j->message), "%s", sdf_last_error());
    j->n_maps = 0;
    for (int i = 0; f && i < sdf_features_steps(f); i++)
        for (int s = 0; s < sdf_features_scales(f); s++) {
            int c, h, w;
            const float *m = sdf_features_map(f, i, s, &c, &h, &w);
            long n = (long)c * h * w;
            j->maps[j->n_maps] = (float *)malloc((size_t)n * sizeof(float));
            memcpy(j->maps[j->n_maps], m, (size_t)n * sizeof(float));
            j->sizes[j->n_maps++] = n;
        }
#ifdef _OPENMP
    j->threads_after = omp_get_max_threads();
#endif
    sdf_features_free(f);
    sdf_model_free(model);
    sdf_context_free(ctx);
    sdf_thread_release();  // this thread's GEMM buffers (ASan: no leak when the thread ends)
    return NULL;
}

static void job_free(Job *j) {
    for (int k = 0; k < j->n_maps; k++) free(j->maps[k]);
    j->n_maps = 0;
}

static int same_maps(const Job *a, const Job *b) {
    if (a->n_maps != b->n_maps || a->n_maps == 0) return 0;
    for (int k = 0; k < a->n_maps; k++)
        if (a->sizes[k] != b->sizes[k] || memcmp(a->maps[k], b->maps[k], (size_t)a->sizes[k] * sizeof(float))) return 0;
    return 1;
}

// Two jobs one after the other, then the same two at once on two host threads.
static void check_pair(const char *what, SdfOptions oa, SdfOptions ob) {
    Job seq[2], par[2];
    memset(seq, 0, sizeof(seq));
    memset(par, 0, sizeof(par));
    seq[0].opts = par[0].opts = oa;
    seq[1].opts = par[1].opts = ob;
    run_job(&seq[0]);
    run_job(&seq[1]);
    pthread_t t[2];
    for (int k = 0; k < 2; k++) pthread_create(&t[k], NULL, run_job, &par[k]);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++) {
        CHECK(seq[k].status == SDF_OK && par[k].status == SDF_OK, "%s, job %d: %s%s", what, k, seq[k].message,
              par[k].message);
        CHECK(same_maps(&seq[k], &par[k]), "%s, job %d: two threads at once give other bytes than one after the other",
              what, k);
        job_free(&seq[k]);
        job_free(&par[k]);
    }
}

// Each thread reads back its own message after the other has recorded its own (a barrier between).
static pthread_barrier_t g_barrier;

static void *fail_often(void *arg) {
    const char *dir = (const char *)arg;
    SdfContext *ctx = NULL;
    SdfModel *m = NULL;
    long wrong = 0;
    sdf_context_new(NULL, &ctx);
    for (int i = 0; i < 20; i++) {
        int st = sdf_model_load(ctx, dir, NULL, &m);
        pthread_barrier_wait(&g_barrier);  // both messages recorded
        if (st != SDF_ERR_FAILED || !strstr(sdf_last_error(), dir)) wrong++;
        pthread_barrier_wait(&g_barrier);  // both read
    }
    sdf_context_free(ctx);
    sdf_thread_release();
    return (void *)wrong;
}

// The kernel set another thread sees.
static char g_other_kernel[32];
static void *kernel_name(void *arg) {
    (void)arg;
    snprintf(g_other_kernel, sizeof(g_other_kernel), "%s", gemm_kernel_info()->name);
    return NULL;
}

int main(void) {
    for (int c = 0; c < 3; c++)  // a smooth pattern in [0, 1] with some values outside (clipped)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                g_image[(c * H + y) * W + x] = 0.5f + 0.6f * sinf(0.11f * (x + 3 * c) + 0.07f * y * (c + 1));

    // errors are values, with a message naming the argument or the file
    SdfContext *ctx = NULL;
    SdfOptions o;
    sdf_options_default(&o);
    o.threads = -3;
    CHECK(sdf_context_new(&o, &ctx) == SDF_ERR_ARGUMENT && ctx == NULL && strstr(sdf_last_error(), "threads"),
          "bad thread count: %s", sdf_last_error());
    CHECK(sdf_context_new(NULL, &ctx) == SDF_OK && ctx, "default context");
    SdfModel *model = NULL;
    CHECK(sdf_model_load(ctx, "tests/data/no_such_model", NULL, &model) == SDF_ERR_FAILED && !model &&
          strstr(sdf_last_error(), "tests/data/no_such_model"), "missing model: %s", sdf_last_error());
    CHECK(sdf_model_load(ctx, MODEL, NULL, &model) == SDF_OK && *sdf_last_error() == '\0', "model: %s", sdf_last_error());
    SdfFeatures *f = NULL;
    CHECK(sdf_extract(ctx, model, NULL, g_image, 4, H, W, &f) == SDF_ERR_ARGUMENT && !f &&
          strstr(sdf_last_error(), "channels"), "4 planes refused: %s", sdf_last_error());
    SdfExtractOptions eo;
    sdf_extract_options_default(&eo);
    eo.size = 36;
    CHECK(sdf_extract(ctx, model, &eo, g_image, 3, H, W, &f) == SDF_ERR_ARGUMENT && strstr(sdf_last_error(), "size"),
          "size 36 refused: %s", sdf_last_error());
    eo.size = 32;
    eo.save_steps[0] = 60;
    CHECK(sdf_extract(ctx, model, &eo, g_image, 3, H, W, &f) == SDF_ERR_FAILED && !f, "save step 60 of 50: %s",
          sdf_last_error());
    SdfHead *head = NULL;
    CHECK(sdf_head_load(ctx, "tests/data/no_such_run", NULL, &head) == SDF_ERR_FAILED &&
          strstr(sdf_last_error(), "no_such_run/head_config.json"), "missing run: %s", sdf_last_error());
    sdf_model_free(model);
    sdf_context_free(ctx);

    // per-thread messages
    pthread_t t[2];
    pthread_barrier_init(&g_barrier, NULL, 2);
    const char *dirs[2] = {"/nonexistent/first_model", "/nonexistent/second_model"};
    for (int k = 0; k < 2; k++) pthread_create(&t[k], NULL, fail_often, (void *)dirs[k]);
    for (int k = 0; k < 2; k++) {
        void *wrong;
        pthread_join(t[k], &wrong);
        CHECK(wrong == NULL, "thread %d read another thread's message %ld times of 20", k, (long)wrong);
    }
    pthread_barrier_destroy(&g_barrier);

    // two contexts at once: the same bytes as one after the other
    SdfOptions a, b;
    sdf_options_default(&a);
    sdf_options_default(&b);
    a.threads = b.threads = 2;
    check_pair("2 + 2 threads", a, b);
    a.threads = 1;
    check_pair("1 + 2 threads", a, b);
    // the settings are the thread's for the call only: its own count is back afterwards
    Job j;
    memset(&j, 0, sizeof(j));
    sdf_options_default(&j.opts);
    j.opts.threads = 1;
#ifdef _OPENMP
    omp_set_num_threads(3);
    run_job(&j);
    CHECK(j.threads_after == 3, "the caller's thread count is back after the calls: %d", j.threads_after);
    job_free(&j);
#endif
    // precision per context: a bf16 and an f32 context at once (where the CPU has bf16)
    sdf_options_default(&a);
    a.precision = SDF_BF16;
    if (sdf_context_new(&a, &ctx) == SDF_OK) {
        sdf_context_free(ctx);
        check_pair("bf16 + f32", a, b);
    } else {
        CHECK(strstr(sdf_last_error(), "bf16") != NULL, "bf16 refusal names it: %s", sdf_last_error());
        printf("SKIP test_api: no bf16 on this CPU (bf16 + f32 contexts at once not run)\n");
    }
    // the ISA path per context: an AVX2 and an automatic (AVX-512) context at once, where the kernels
    // keep the forced path per host thread (else a forced path is process-wide: not run)
    if (sd_cpu_isa() == ISA_AVX512 && gemm_force_isa(ISA_AVX2) == 0) {
        pthread_t other;
        pthread_create(&other, NULL, kernel_name, NULL);
        pthread_join(other, NULL);
        gemm_force_isa(-1);
        if (strcmp(g_other_kernel, "avx2") != 0) {
            sdf_options_default(&a);
            sdf_options_default(&b);
            b.isa = SDF_ISA_AVX2;
            check_pair("auto + avx2", a, b);
            Job ja, jb;
            memset(&ja, 0, sizeof(ja));
            memset(&jb, 0, sizeof(jb));
            ja.opts = a, jb.opts = b;
            run_job(&ja);
            run_job(&jb);
            CHECK(ja.n_maps && jb.n_maps && !same_maps(&ja, &jb), "the avx2 context's features differ from avx512's");
            CHECK(!strcmp(gemm_kernel_info()->name, "avx512"), "the caller's path is back after the calls: %s",
                  gemm_kernel_info()->name);
            job_free(&ja);
            job_free(&jb);
        } else {
            printf("SKIP test_api: the forced ISA path is process-wide in this build (auto + avx2 at once not run)\n");
        }
    }
    sdf_thread_release();
    return test_report("test_api");
}
