// Scaled dot-product attention with an online softmax over key tiles (the
// "flash" recurrence), on the GEMM micro-kernels. Per head, for a tile of
// queries and each tile of keys:
//   S^T = K Q^T * scale          (keys x queries: the micro-kernel, k = head_dim)
//   per query j: m' = max(m, max_key S);  corr = exp(m - m');  P = exp(S - m')
//                l = l*corr + sum_key P;   O^T[:, j] *= corr
//   O^T += V^T P^T                (head_dim x queries: the micro-kernel, k = keys)
// and out = O / l at the end. Working transposed makes every operand land in
// the layout the micro-kernel reads: S^T is written straight as packed B
// panels for the second product, V^T and K need one cheap pack per head, and
// the softmax runs down columns, one vector of queries at a time.
// Memory: per thread O(N_keys * head_dim) packed K and V plus fixed tiles,
// never the Nq x Nk matrix. Each output element is reduced by one thread in a
// fixed order, so the bits do not depend on the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "core/runtime.h"
#include "kernels/gemm_internal.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"

// Query tile: a few micro-kernel column slivers; key tile: a multiple of mr near 256.
static int query_tile(const GemmKernelInfo *ki) { return ki->nr * ((128 + ki->nr - 1) / ki->nr); }
static int key_tile(const GemmKernelInfo *ki) { return ki->mr * (256 / ki->mr > 0 ? 256 / ki->mr : 1); }

// The kernel set whose register tile lays out the tiles and the workspace: the f32 set in use,
// or for the bf16 path the bf16 set's 14 x 32 (x86 or arm64) whatever the f32 set (NEON's is
// 8 x 8): the same key tiles, so the same online-softmax steps and bits on every bf16 CPU.
// The f32 set's optional hooks (scale_columns, finish_rows) serve both paths.
static const GemmKernelInfo *tile_set(int bf16) {
    if (!bf16) return gemm_kernel_info();
    return gemm_kernel_avx512_bf16() ? gemm_kernel_avx512_bf16() : gemm_kernel_neon_bf16();
}

typedef struct {
    float *kp;    // K of one head as A panels: [key panel][d][mr]            (nk_pad x hd)
    float *vp;    // V^T of one head as A panels: [d panel][key][mr]          (hd_pad x nk)
    float *qp;    // Q^T tile as B panels: [query sliver][d][nr], times scale (hd x br)
    float *s;     // S^T / P^T tile as B panels: [query sliver][key][nr]      (bc x br)
    float *o;     // O^T tile, hd x br, row stride br
    float *m, *l, *corr;  // per query of the tile
} AttnWork;

static size_t work_floats(const GemmKernelInfo *ki, int nk, int hd) {
    size_t mr = (size_t)ki->mr, br = (size_t)query_tile(ki), bc = (size_t)key_tile(ki);
    size_t nk_pad = ((size_t)nk + mr - 1) / mr * mr, hd_pad = ((size_t)hd + mr - 1) / mr * mr;
    // each piece rounded up to 16 floats so that every one starts 64-byte aligned
    size_t total = 0;
    size_t parts[7] = {nk_pad * hd, hd_pad * nk, (size_t)hd * br, bc * br, hd_pad * br, br, 2 * br};
    for (int i = 0; i < 7; i++) total += (parts[i] + 15) / 16 * 16;
    return total;
}

static AttnWork work_split(const GemmKernelInfo *ki, int nk, int hd, float *base) {
    size_t mr = (size_t)ki->mr, br = (size_t)query_tile(ki), bc = (size_t)key_tile(ki);
    size_t nk_pad = ((size_t)nk + mr - 1) / mr * mr, hd_pad = ((size_t)hd + mr - 1) / mr * mr;
    AttnWork w;
    float *p = base;
    w.kp = p, p += (nk_pad * hd + 15) / 16 * 16;
    w.vp = p, p += (hd_pad * nk + 15) / 16 * 16;
    w.qp = p, p += ((size_t)hd * br + 15) / 16 * 16;
    w.s = p, p += (bc * br + 15) / 16 * 16;
    w.o = p, p += (hd_pad * br + 15) / 16 * 16;
    w.m = p, p += (br + 15) / 16 * 16;
    w.l = p;
    w.corr = p + br;
    return w;
}

// Packs keys [0, nk) of one head: K as A panels (rows = keys) and V^T as A panels (rows = d).
static void pack_kv(const GemmKernelInfo *ki, const float *k, const float *v, int ld, int nk, int hd, AttnWork *w) {
    const int mr = ki->mr;
    for (int k0 = 0; k0 < nk; k0 += mr) {
        float *dst = w->kp + (size_t)k0 * hd;
        int rows = nk - k0 < mr ? nk - k0 : mr;
        const float *src = k + (int64_t)k0 * ld;
        // sequential stores; the mr source rows stay in L1 while d walks along them
        for (int d = 0; d < hd; d++) {
            float *dd = dst + (size_t)d * mr;
            for (int i = 0; i < rows; i++) dd[i] = src[(int64_t)i * ld + d];
            for (int i = rows; i < mr; i++) dd[i] = 0.0f;
        }
    }
    for (int d0 = 0; d0 < hd; d0 += mr) {
        float *dst = w->vp + (size_t)d0 * nk;
        int cols = hd - d0 < mr ? hd - d0 : mr;
        for (int key = 0; key < nk; key++) gemm_copy_pad(dst + (size_t)key * mr, v + (int64_t)key * ld + d0, cols, mr);
    }
}

// ---- Pieces both tile functions (f32 and bf16) share ---------------------------------------

// A new query tile: m = -inf, l = 0 for its width columns, O^T = 0.
static void tile_start(AttnWork *w, int width, int hd, int br) {
    for (int j = 0; j < width; j++) {
        w->m[j] = -INFINITY;
        w->l[j] = 0.0f;
    }
    memset(w->o, 0, (size_t)hd * br * sizeof(float));
}

// Causal: in the S^T tile of keys k0.. (nkt rows) and the queries q_first.. (nr columns),
// query q_first + j sees keys <= its index.
static void mask_causal(float *s, int nkt, int nr, int k0, int q_first) {
    for (int r = 0; r < nkt; r++) {
        int masked_below = k0 + r - q_first;  // columns j < this have key > query
        for (int j = 0; j < nr && j < masked_below; j++) s[(size_t)r * nr + j] = -INFINITY;
    }
}

// O^T columns *= corr (the softmax's rescaling of what the earlier key tiles added).
static void rescale_o(const GemmKernelInfo *ki, AttnWork *w, int hd, int br, int width) {
    const float *corr = w->corr;
    if (ki->ops->scale_columns) {
        ki->ops->scale_columns(w->o, hd, width, br, corr);
        return;
    }
    for (int d = 0; d < hd; d++) {
        float *od = w->o + (size_t)d * br;
#pragma omp simd
        for (int j = 0; j < width; j++) od[j] *= corr[j];
    }
}

// out = O / l for the tile's nq queries (the O^T tile transposed back; 1/l reuses corr's storage).
static void tile_finish(const GemmKernelInfo *ki, AttnWork *w, float *out, int ld, int nq, int hd, int br) {
    float *inv = w->corr;
    for (int j = 0; j < nq; j++) inv[j] = w->l[j] > 0.0f ? 1.0f / w->l[j] : 0.0f;
    if (ki->ops->finish_rows) {
        ki->ops->finish_rows(w->o, hd, nq, br, inv, out, ld);
        return;
    }
    for (int j0 = 0; j0 < nq; j0 += 8) {
        int jn = nq - j0 < 8 ? nq - j0 : 8;
        for (int d = 0; d < hd; d++) {
            const float *od = w->o + (size_t)d * br + j0;
            for (int j = 0; j < jn; j++) out[(int64_t)(j0 + j) * ld + d] = od[j] * inv[j0 + j];
        }
    }
}

// One tile of nq queries (starting at global query q0) against keys [0, nk_used).
// nk_packed: keys packed in w (the V^T panels' length).
static void attend_tile(const GemmKernelInfo *ki, const float *q, float *out, int ld, int q0, int nq, int nk_used,
                        int nk_packed, int hd, float scale, int causal, AttnWork *w) {
    const int mr = ki->mr, nr = ki->nr, br = query_tile(ki), bc = key_tile(ki);
    const int slivers = (nq + nr - 1) / nr;
    // Q^T * scale as B panels; query columns past nq are zeros.
    for (int js = 0; js < slivers; js++) {
        float *dst = w->qp + (size_t)js * hd * nr;
        int cols = nq - js * nr < nr ? nq - js * nr : nr;
        const float *src = q + (int64_t)js * nr * ld;
        for (int d = 0; d < hd; d++) {
            float *dd = dst + (size_t)d * nr;
            for (int j = 0; j < cols; j++) dd[j] = scale * src[(int64_t)j * ld + d];
            for (int j = cols; j < nr; j++) dd[j] = 0.0f;
        }
    }
    tile_start(w, slivers * nr, hd, br);

    for (int k0 = 0; k0 < nk_used; k0 += bc) {
        int nkt = nk_used - k0 < bc ? nk_used - k0 : bc;
        for (int js = 0; js < slivers; js++) {
            float *s = w->s + (size_t)js * bc * nr;
            // S^T[key, query] for this sliver, mr keys at a time
            for (int r0 = 0; r0 < nkt; r0 += mr) {
                int rows = nkt - r0 < mr ? nkt - r0 : mr;
                ki->ops->micro(hd, w->kp + (size_t)(k0 + r0) * hd, w->qp + (size_t)js * hd * nr, s + (size_t)r0 * nr, nr,
                          rows, nr, 0.0f, NULL, NULL);
            }
            if (causal) mask_causal(s, nkt, nr, k0, q0 + js * nr);
            ki->ops->softmax_step(s, nkt, w->m + js * nr, w->l + js * nr, w->corr + js * nr);
        }
        // O^T columns *= corr, then O^T += V^T P^T
        rescale_o(ki, w, hd, br, slivers * nr);
        for (int js = 0; js < slivers; js++)
            for (int d0 = 0; d0 < hd; d0 += mr) {
                int rows = hd - d0 < mr ? hd - d0 : mr;
                ki->ops->micro(nkt, w->vp + (size_t)d0 * nk_packed + (size_t)k0 * mr, w->s + (size_t)js * bc * nr,
                          w->o + (size_t)d0 * br + js * nr, br, rows, nr, 1.0f, NULL, NULL);
            }
    }
    tile_finish(ki, w, out, ld, nq, hd, br);
}

// ---- The bf16 path ------------------------------------------------------------------------
// The same tiles with both products in bf16 (the bf16 kernel set's pieces, gemm_internal.h): K, V, Q and P are rounded to bf16
// and packed in k pairs (one 32-bit word per row and pair: the even k in the low half), every
// sum stays f32, the online softmax is the f32 one. In the same AttnWork (a packed pair is one
// word where the f32 layout has two floats, so every piece fits):
//   kp: K as A panels over d pairs     [key panel][d pair][14]     word (K[key][2q], K[key][2q+1])
//   vp: V^T as A panels over key pairs [d panel][key pair][14]     word (V[2q][d], V[2q+1][d])
//   qp: Q^T * scale as B panels        [query sliver][d pair][32]
//   s:  S^T in f32, then P^T in pairs of key rows, in place (row q <- rows 2q, 2q+1)

static void pack_kv_bf16(const float *k, const float *v, int ld, int nk, int hd, AttnWork *w) {
    const int mr = 14, hdp = (hd + 1) / 2, nkp = (nk + 1) / 2;
    uint32_t *kp = (uint32_t *)w->kp, *vp = (uint32_t *)w->vp;
    for (int k0 = 0; k0 < nk; k0 += mr)
        gemm_bf16_rows_to_panel(k + (int64_t)k0 * ld, ld, nk - k0 < mr ? nk - k0 : mr, hd, 1.0f,
                                kp + (size_t)(k0 / mr) * hdp * mr, mr);
    for (int d0 = 0; d0 < hd; d0 += mr) {
        uint32_t *dst = vp + (size_t)(d0 / mr) * nkp * mr;
        int cols = hd - d0 < mr ? hd - d0 : mr;
        for (int q = 0; q < nkp; q++) {
            const float *even = v + (int64_t)(2 * q) * ld + d0;
            gemm_bf16_pair_rows(even, 2 * q + 1 < nk ? even + ld : NULL, cols, mr, dst + (size_t)q * mr);
        }
    }
}

static void attend_tile_bf16(const GemmKernelInfo *ki, const float *q, float *out, int ld, int q0, int nq,
                             int nk_used, int nk_packed, int hd, float scale, int causal, AttnWork *w) {
    const int mr = 14, nr = 32, br = query_tile(tile_set(1)), bc = key_tile(tile_set(1));
    const int hdp = (hd + 1) / 2, nkp = (nk_packed + 1) / 2, slivers = (nq + nr - 1) / nr;
    uint32_t *qp = (uint32_t *)w->qp;
    for (int js = 0; js < slivers; js++) {
        int cols = nq - js * nr < nr ? nq - js * nr : nr;
        gemm_bf16_rows_to_panel(q + (int64_t)js * nr * ld, ld, cols, hd, scale, qp + (size_t)js * hdp * nr, nr);
    }
    tile_start(w, slivers * nr, hd, br);

    for (int k0 = 0; k0 < nk_used; k0 += bc) {  // bc is even: key pairs never straddle two tiles
        int nkt = nk_used - k0 < bc ? nk_used - k0 : bc, pairs = (nkt + 1) / 2;
        for (int js = 0; js < slivers; js++) {
            float *s = w->s + (size_t)js * bc * nr;
            for (int r0 = 0; r0 < nkt; r0 += mr) {
                int rows = nkt - r0 < mr ? nkt - r0 : mr;
                gemm_bf16_micro(hdp, (const uint32_t *)w->kp + (size_t)((k0 + r0) / mr) * hdp * mr,
                                qp + (size_t)js * hdp * nr, s + (size_t)r0 * nr, nr, rows, nr, 0.0f);
            }
            if (causal) mask_causal(s, nkt, nr, k0, q0 + js * nr);
            // the softmax step, and P^T rows 2p, 2p+1 -> pair row p in place, in one pass
            gemm_bf16_softmax_pairs(s, nkt, w->m + js * nr, w->l + js * nr, w->corr + js * nr);
        }
        rescale_o(ki, w, hd, br, slivers * nr);
        for (int js = 0; js < slivers; js++)
            for (int d0 = 0; d0 < hd; d0 += mr) {
                int rows = hd - d0 < mr ? hd - d0 : mr;
                gemm_bf16_micro(pairs, (const uint32_t *)w->vp + (size_t)(d0 / mr) * nkp * mr + (size_t)(k0 / 2) * mr,
                                (const uint32_t *)(w->s + (size_t)js * bc * nr), w->o + (size_t)d0 * br + js * nr, br,
                                rows, nr, 1.0f);
            }
    }
    tile_finish(ki, w, out, ld, nq, hd, br);
}

size_t attention_scratch_bytes(int Nk, int head_dim) {
    if (Nk <= 0 || head_dim <= 0) return 0;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t per_thread = work_floats(tile_set(0), Nk, head_dim);
    if (gemm_bf16_supported() && work_floats(tile_set(1), Nk, head_dim) > per_thread)  // attention_forward_bf16's
        per_thread = work_floats(tile_set(1), Nk, head_dim);
    return per_thread * (size_t)threads * sizeof(float) + 64;
}

static int attention_run(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                         int head_dim, float scale, int causal, Arena *scratch, int bf16) {
    if (B <= 0 || heads <= 0 || Nq <= 0 || head_dim <= 0) return 0;
    const int D = heads * head_dim, hd = head_dim;
    if (Nk <= 0) {
        for (int64_t i = 0; i < (int64_t)B * Nq * D; i++) out[i] = 0.0f;
        return 0;
    }
    const GemmKernelInfo *ki = gemm_kernel_info(), *geo = tile_set(bf16);
    const int br = query_tile(geo);
    int threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
    // Work items: (batch, head, chunk of query tiles), several per thread for balance.
    // Each item packs its head's K and V once, so items are few and large: the fewest chunks
    // per head that make the item count a multiple of the thread count (else ~4 per thread).
    int tiles = (Nq + br - 1) / br;
    int chunks = 0;
    for (int c = 1; c <= tiles && c <= 4 * threads; c++)
        if ((B * heads * c) % threads == 0 && B * heads * c >= threads) {
            chunks = c;
            break;
        }
    if (chunks == 0) chunks = (4 * threads + B * heads - 1) / (B * heads);
    if (chunks > tiles) chunks = tiles;
    int tiles_per_chunk = (tiles + chunks - 1) / chunks;
    chunks = (tiles + tiles_per_chunk - 1) / tiles_per_chunk;
    int items = B * heads * chunks;
    if (threads > items) threads = items;

    // Workspace per thread: from the caller's arena (it grows as needed), else from the heap.
    size_t per_thread = work_floats(geo, Nk, hd);
    size_t need = per_thread * (size_t)threads * sizeof(float);
    size_t mark = scratch ? arena_mark(scratch) : 0;
    float *base = NULL, *heap = NULL;
    if (scratch && !(base = arena_floats(scratch, need / 4))) return SD_FAIL;
    if (!base) {
        void *p = NULL;
        if (posix_memalign(&p, 64, need) != 0 || !p)
            return sd_errorf("attention: out of memory for %zu bytes of workspace (%d threads, %d keys, head_dim %d)",
                             need, threads, Nk, hd);
        base = heap = (float *)p;
    }

#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        AttnWork w = work_split(geo, Nk, hd, base + per_thread * (size_t)tid);
        int chunk = item % chunks, h = (item / chunks) % heads, b = item / (chunks * heads);
        int q_begin = chunk * tiles_per_chunk * br;
        int q_end = q_begin + tiles_per_chunk * br < Nq ? q_begin + tiles_per_chunk * br : Nq;
        // Causal: these queries see keys < q_end at most.
        int nk_used = causal && q_end < Nk ? q_end : Nk;
        const float *kh = k + (int64_t)b * Nk * D + h * hd, *vh = v + (int64_t)b * Nk * D + h * hd;
        if (bf16) pack_kv_bf16(kh, vh, D, nk_used, hd, &w);
        else pack_kv(ki, kh, vh, D, nk_used, hd, &w);
        for (int q0 = q_begin; q0 < q_end; q0 += br) {
            int nq = q_end - q0 < br ? q_end - q0 : br;
            int nk_tile = causal && q0 + nq < nk_used ? q0 + nq : nk_used;
            const float *qt = q + ((int64_t)b * Nq + q0) * D + h * hd;
            float *ot = out + ((int64_t)b * Nq + q0) * D + h * hd;
            if (bf16) attend_tile_bf16(ki, qt, ot, D, q0, nq, nk_tile, nk_used, hd, scale, causal, &w);
            else attend_tile(ki, qt, ot, D, q0, nq, nk_tile, nk_used, hd, scale, causal, &w);
        }
    }
    free(heap);
    if (scratch) arena_reset(scratch, mark);
    return 0;
}

int attention_forward(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq, int Nk,
                      int head_dim, float scale, int causal, Arena *scratch) {
    if (sd_reference_path())  // $SATDIFUSER_ISA=reference: scores, softmax, weighted sum
        return reference_attention(q, k, v, out, B, heads, Nq, Nk, head_dim, scale, causal, NULL);
    return attention_run(q, k, v, out, B, heads, Nq, Nk, head_dim, scale, causal, scratch, 0);
}

int attention_forward_bf16(const float *q, const float *k, const float *v, float *out, int B, int heads, int Nq,
                           int Nk, int head_dim, float scale, int causal, Arena *scratch) {
    if (!gemm_bf16_supported())
        return sd_errorf("attention_forward_bf16: this CPU has no bf16 kernel set (x86: AVX512_BF16 with AVX-512 in "
                         "use; arm64: FEAT_BF16 with NEON in use)");
    return attention_run(q, k, v, out, B, heads, Nq, Nk, head_dim, scale, causal, scratch, 1);
}
