// Two host threads calling the GEMM at once (issue 17): the kept workspaces (pack buffers, the
// shared B panel, the bf16 convolution's input copy) are per host thread, so each thread's
// products have the bits they have when run alone. Before they were, both threads packed into
// the same buffers and got each other's panels. Each thread runs its own shapes (the buffers
// grow while the other thread uses its own) in a loop: f32 GEMMs (the default kernel set and
// the shared-B grid: a row-only grid of a 4x4-map convolution), f32 and bf16 convolutions and
// a bf16 linear where the CPU has AVX512_BF16. The forced ISA path is per host thread too: one
// thread of each pair runs the scalar kernel set, the other the automatic one.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/kernels.h"
#include "tests/test_util.h"

enum { ROUNDS = 12, JOBS = 4 };

typedef struct {
    int M, N, K, Cin, H, W;  // a GEMM M x N x K, then a 3x3 conv Cin -> M on H x W
    float *A, *B, *bias, *x, *wt, *lw;
    float *c_ref, *y_ref, *yb_ref, *l_ref;  // results run alone
    float *c, *y, *yb, *l;
    Bf16Packed wb, lb;
    int bf16;
    int isa;  // forced ISA path (-1: automatic)
    int bad, wrong_set;
} Job;

static float *rnd(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

// One round of the job's products into c, y, yb, l.
static void run_job(Job *j, float *c, float *y, float *yb, float *l) {
    sgemm(0, 0, j->M, j->N, j->K, 1.0f, j->A, j->K, j->B, j->N, 0.0f, c, j->N);
    conv2d_forward(j->x, 1, j->Cin, j->H, j->W, j->wt, j->bias, j->M, conv_geometry(3, 1, 1), y);
    if (j->bf16) {
        conv2d_forward_bf16(j->x, 1, j->Cin, j->H, j->W, &j->wb, j->bias, j->M, conv_geometry(3, 1, 1), yb);
        linear_forward_bf16(j->B, &j->lb, j->bias, l, j->K);  // rows: K rows of B (N wide) -> M
    }
}

static void job_init(Job *j, int M, int N, int K, int Cin, int H, int W, int isa, unsigned seed) {
    memset(j, 0, sizeof *j);
    j->isa = isa;
    j->M = M, j->N = N, j->K = K, j->Cin = Cin, j->H = H, j->W = W;
    j->A = rnd((size_t)M * K, seed);
    j->B = rnd((size_t)K * N, seed + 1);
    j->bias = rnd((size_t)M, seed + 2);
    j->x = rnd((size_t)Cin * H * W, seed + 3);
    j->wt = rnd((size_t)M * Cin * 9, seed + 4);
    j->lw = rnd((size_t)M * N, seed + 5);
    j->bf16 = gemm_bf16_supported();
    if (j->bf16) {
        gemm_bf16_pack_weights(&j->wb, j->wt, M, Cin * 9, GEMM_BF16_A);
        gemm_bf16_pack_weights(&j->lb, j->lw, M, N, GEMM_BF16_BT);  // (out M, in N): K rows of B times it^T
    }
    size_t nc = (size_t)M * N, ny = (size_t)M * H * W, nl = (size_t)K * M;
    j->c_ref = calloc(nc, 4), j->c = calloc(nc, 4);
    j->y_ref = calloc(ny, 4), j->y = calloc(ny, 4);
    j->yb_ref = calloc(ny, 4), j->yb = calloc(ny, 4);
    j->l_ref = calloc(nl, 4), j->l = calloc(nl, 4);
    gemm_force_isa(isa);
    run_job(j, j->c_ref, j->y_ref, j->yb_ref, j->l_ref);
    gemm_force_isa(-1);
}

static void job_free(Job *j) {
    free(j->A), free(j->B), free(j->bias), free(j->x), free(j->wt), free(j->lw);
    free(j->c_ref), free(j->c), free(j->y_ref), free(j->y), free(j->yb_ref), free(j->yb), free(j->l_ref), free(j->l);
    if (j->bf16) gemm_bf16_packed_free(&j->wb), gemm_bf16_packed_free(&j->lb);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void *worker(void *arg) {
    Job *j = arg;
    gemm_force_isa(j->isa);
    const GemmKernelInfo *mine = gemm_kernel_info();
    for (int r = 0; r < ROUNDS; r++) {
        run_job(j, j->c, j->y, j->yb, j->l);
        size_t nc = (size_t)j->M * j->N, ny = (size_t)j->M * j->H * j->W, nl = (size_t)j->K * j->M;
        if (!same(j->c, j->c_ref, nc) || !same(j->y, j->y_ref, ny) || (j->bf16 && !same(j->yb, j->yb_ref, ny)) ||
            (j->bf16 && !same(j->l, j->l_ref, nl)))
            j->bad++;
        if (gemm_kernel_info() != mine) j->wrong_set++;
    }
    gemm_free_thread_buffers();
    return NULL;
}

int main(void) {
    Job jobs[JOBS];
    // different shapes: other blockings, other buffer sizes; 4x4 maps give a row-only grid
    // (the shared B panel), 32x32 maps the plain per-block packing
    job_init(&jobs[0], 300, 260, 700, 64, 4, 4, ISA_SCALAR, 11u);
    job_init(&jobs[1], 130, 900, 520, 40, 32, 32, -1, 23u);
    job_init(&jobs[2], 200, 64, 1100, 96, 8, 8, -1, 37u);
    job_init(&jobs[3], 96, 480, 300, 24, 16, 24, ISA_SCALAR, 51u);
    for (int pair = 0; pair < JOBS; pair += 2) {
        pthread_t t[2];
        for (int k = 0; k < 2; k++) pthread_create(&t[k], NULL, worker, &jobs[pair + k]);
        for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
        for (int k = 0; k < 2; k++)
            CHECK(jobs[pair + k].bad == 0,
                  "job %d (%d x %d x %d, conv %d -> %d on %d x %d%s): %d of %d rounds on two host threads differ "
                  "from the same products run alone",
                  pair + k, jobs[pair + k].M, jobs[pair + k].N, jobs[pair + k].K, jobs[pair + k].Cin, jobs[pair + k].M,
                  jobs[pair + k].H, jobs[pair + k].W, jobs[pair + k].bf16 ? ", bf16 too" : "", jobs[pair + k].bad,
                  ROUNDS);
        for (int k = 0; k < 2; k++)
            CHECK(jobs[pair + k].wrong_set == 0, "job %d: the kernel set forced on its thread changed under it",
                  pair + k);
    }
    CHECK(sd_cpu_isa() == ISA_SCALAR || strcmp(gemm_kernel_info()->name, "scalar") != 0,
          "the main thread's set is still the automatic one (%s)", gemm_kernel_info()->name);
    // the buffers come back after being freed
    gemm_free_thread_buffers();
    gemm_force_isa(jobs[0].isa);
    run_job(&jobs[0], jobs[0].c, jobs[0].y, jobs[0].yb, jobs[0].l);
    gemm_force_isa(-1);
    CHECK(same(jobs[0].c, jobs[0].c_ref, (size_t)jobs[0].M * jobs[0].N), "a GEMM after gemm_free_thread_buffers");
    for (int k = 0; k < JOBS; k++) job_free(&jobs[k]);
    return test_report("test_gemm_threads");
}
