// PCA to 3 channels. See pca.h.
#include "figures/pca.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { PCA_MAX_DIM = 1 << 14, PCA_MAX_ITERS = 500 };

int pca_accum_init(PcaAccum *a, int dim) {
    memset(a, 0, sizeof(*a));
    if (dim < 1 || dim > PCA_MAX_DIM) return sd_errorf("PCA of %d channels: expected 1..%d", dim, PCA_MAX_DIM);
    a->dim = dim;
    a->sum = (double *)calloc((size_t)dim, sizeof(double));
    a->cross = (double *)calloc((size_t)dim * dim, sizeof(double));
    if (!a->sum || !a->cross) {
        pca_accum_free(a);
        return sd_errorf("out of memory for the PCA of %d channels", dim);
    }
    return 0;
}

void pca_accum_free(PcaAccum *a) {
    free(a->sum);
    free(a->cross);
    memset(a, 0, sizeof(*a));
}

void pca_accum_add(PcaAccum *a, const float *x, int64_t hw) {
    int D = a->dim;
    for (int i = 0; i < D; i++) {
        double s = 0.0;
        for (int64_t p = 0; p < hw; p++) s += x[(int64_t)i * hw + p];
        a->sum[i] += s;
    }
    // each (i, j) is one thread's fixed-order sum: the result does not depend on the thread count
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < D; i++) {
        const float *xi = x + (int64_t)i * hw;
        for (int j = i; j < D; j++) {
            const float *xj = x + (int64_t)j * hw;
            double s = 0.0;
            for (int64_t p = 0; p < hw; p++) s += (double)xi[p] * xj[p];
            a->cross[(size_t)i * D + j] += s;
        }
    }
    a->n += hw;
}

int pca_covariance(const PcaAccum *a, double *mean, double *cov) {
    int D = a->dim;
    if (a->n < 1) return sd_errorf("PCA: no pixels");
    for (int i = 0; i < D; i++) mean[i] = a->sum[i] / (double)a->n;
    for (int i = 0; i < D; i++)
        for (int j = i; j < D; j++) {
            double v = a->cross[(size_t)i * D + j] / (double)a->n - mean[i] * mean[j];
            cov[(size_t)i * D + j] = v;
            cov[(size_t)j * D + i] = v;
        }
    return 0;
}

int pca_top_eigen(double *cov, int D, int k, double *vec, double *val, int *iters) {
    double *v = (double *)malloc((size_t)D * sizeof(double)), *w = (double *)malloc((size_t)D * sizeof(double));
    if (!v || !w) {
        free(v);
        free(w);
        return sd_errorf("out of memory for the PCA");
    }
    double trace = 0.0;
    for (int i = 0; i < D; i++) trace += fabs(cov[(size_t)i * D + i]);
    for (int c = 0; c < k; c++) {
        // start from the column with the largest diagonal (not orthogonal to the top eigenvector
        // unless that direction carries no variance), plus a small spread so no entry starts at 0
        int best = 0;
        for (int i = 1; i < D; i++)
            if (cov[(size_t)i * D + i] > cov[(size_t)best * D + best]) best = i;
        for (int i = 0; i < D; i++) v[i] = cov[(size_t)i * D + best] + 1e-3 * (1.0 + (double)(i % 7)) / D;
        double lambda = 0.0;
        int it = 0;
        for (; it < PCA_MAX_ITERS; it++) {
            double norm = 0.0;
            for (int i = 0; i < D; i++) norm += v[i] * v[i];
            norm = sqrt(norm);
            if (!(norm > 0)) break;
            for (int i = 0; i < D; i++) v[i] /= norm;
            for (int i = 0; i < D; i++) {  // w = cov v
                double s = 0.0;
                const double *row = cov + (size_t)i * D;
                for (int j = 0; j < D; j++) s += row[j] * v[j];
                w[i] = s;
            }
            double l = 0.0, diff = 0.0, wn = 0.0;
            for (int i = 0; i < D; i++) { l += v[i] * w[i]; wn += w[i] * w[i]; }
            wn = sqrt(wn);
            for (int i = 0; i < D; i++) {
                double d = (wn > 0 ? w[i] / wn : 0.0) - v[i];
                diff += d * d;
            }
            lambda = l;
            memcpy(v, w, (size_t)D * sizeof(double));
            if (!(wn > 1e-12 * (trace + 1e-300)) || diff < 1e-24) { it++; break; }
        }
        double norm = 0.0;
        for (int i = 0; i < D; i++) norm += v[i] * v[i];
        norm = sqrt(norm);
        int big = 0;
        for (int i = 0; i < D; i++) {
            v[i] = norm > 0 ? v[i] / norm : (i == c ? 1.0 : 0.0);
            if (fabs(v[i]) > fabs(v[big])) big = i;
        }
        if (v[big] < 0)
            for (int i = 0; i < D; i++) v[i] = -v[i];
        if (lambda < 0 || norm == 0) lambda = 0;
        memcpy(vec + (size_t)c * D, v, (size_t)D * sizeof(double));
        val[c] = lambda;
        if (iters) iters[c] = it;
        for (int i = 0; i < D; i++)  // deflation: cov -= lambda v v^T
            for (int j = 0; j < D; j++) cov[(size_t)i * D + j] -= lambda * v[i] * v[j];
    }
    free(v);
    free(w);
    return 0;
}

int pca_fit(const PcaAccum *a, PcaBasis *b) {
    memset(b, 0, sizeof(*b));
    int D = a->dim;
    b->dim = D;
    b->k = D < PCA_MAX_K ? D : PCA_MAX_K;
    b->mean = (double *)malloc((size_t)D * sizeof(double));
    b->vec = (double *)malloc((size_t)b->k * D * sizeof(double));
    double *cov = (double *)malloc((size_t)D * D * sizeof(double));
    int rc = SD_FAIL;
    if (!b->mean || !b->vec || !cov) sd_errorf("out of memory for the PCA of %d channels", D);
    else if (pca_covariance(a, b->mean, cov) == 0) rc = pca_top_eigen(cov, D, b->k, b->vec, b->eigval, b->iterations);
    free(cov);
    if (rc) pca_basis_free(b);
    return rc;
}

void pca_basis_free(PcaBasis *b) {
    free(b->mean);
    free(b->vec);
    memset(b, 0, sizeof(*b));
}

void pca_project(const PcaBasis *b, const float *x, int64_t hw, float *out) {
    int D = b->dim;
    for (int c = 0; c < b->k; c++) {
        const double *v = b->vec + (size_t)c * D;
        for (int64_t p = 0; p < hw; p++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += v[i] * ((double)x[(int64_t)i * hw + p] - b->mean[i]);
            out[(int64_t)c * hw + p] = (float)s;
        }
    }
}

int pca_to_rgb(const PcaBasis *b, const float *x, int64_t hw, uint8_t *rgb) {
    float *y = (float *)malloc((size_t)(b->k > 0 ? b->k : 1) * hw * sizeof(float));
    if (!y) return sd_errorf("out of memory");
    pca_project(b, x, hw, y);
    for (int64_t p = 0; p < hw; p++)
        for (int c = 0; c < 3; c++) {
            double t = 0.5;
            if (c < b->k && b->eigval[c] > 0) t = 0.5 + y[(int64_t)c * hw + p] / (4.0 * sqrt(b->eigval[c]));
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            rgb[3 * p + c] = (uint8_t)(t * 255.0 + 0.5);
        }
    free(y);
    return 0;
}
