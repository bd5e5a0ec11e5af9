// PCA of feature maps to 3 channels, for showing a (C, H, W) feature map as an RGB image.
//
// Every pixel is a sample x in R^C. The covariance is accumulated over the pixels of one or more
// maps (all images given: the basis is then shared, so a colour means the same direction in
// feature space in every image):
//   mean = sum x / n,   cov = sum x x^T / n - mean mean^T
// The top k eigenvectors of cov come from power iteration with deflation (cov -= lambda v v^T after
// each), each one's sign fixed so its largest-magnitude entry is positive (a deterministic basis).
// A pixel's component k is y_k = v_k . (x - mean); shown as colour channel k:
//   c_k = clamp(0.5 + y_k / (4 sqrt(lambda_k)), 0, 1)     (+-2 standard deviations span the range)
// so the same y_k gives the same colour in every image that shares the basis.
#ifndef SD_FIGURES_PCA_H
#define SD_FIGURES_PCA_H

#include <stdint.h>

enum { PCA_MAX_K = 3 };

typedef struct {
    int dim;
    int64_t n;        // samples accumulated
    double *sum;      // dim
    double *cross;    // dim * dim, sum of x x^T (upper triangle filled; mirrored by pca_fit)
} PcaAccum;

typedef struct {
    int dim, k;                  // k = min(3, dim)
    double *mean;                // dim
    double *vec;                 // k * dim, unit rows
    double eigval[PCA_MAX_K];    // the variances along them, descending
    int iterations[PCA_MAX_K];   // power iterations each took
} PcaBasis;

int pca_accum_init(PcaAccum *a, int dim);
void pca_accum_free(PcaAccum *a);
// Adds the hw pixels of a channel-major map: x[c * hw + p] (channels 0..dim-1).
void pca_accum_add(PcaAccum *a, const float *x, int64_t hw);
// The mean and covariance (dim and dim * dim, caller's buffers).
int pca_covariance(const PcaAccum *a, double *mean, double *cov);
// Fits the basis (k = min(3, dim) components).
int pca_fit(const PcaAccum *a, PcaBasis *b);
// Power iteration with deflation on a symmetric dim x dim matrix (overwritten): the top k eigenpairs.
int pca_top_eigen(double *cov, int dim, int k, double *vec, double *val, int *iters);
void pca_basis_free(PcaBasis *b);
// Components of each pixel: out[k * hw + p] = y_k.
void pca_project(const PcaBasis *b, const float *x, int64_t hw, float *out);
// RGB (hw x 3, uint8) of a map under the basis; channels past k are mid-gray.
int pca_to_rgb(const PcaBasis *b, const float *x, int64_t hw, uint8_t *rgb);

#endif
