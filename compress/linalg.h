/* Dense linear algebra for compress/: Cholesky factorizations through the
 * LAPACK inside OpenBLAS, and a summation that reproduces NumPy's order.
 *
 * Matrices are row-major, n x n, float64, owned by the caller; every function
 * works in place and allocates nothing. Symmetric inputs must be stored in
 * full (both triangles). */
#ifndef KG_COMPRESS_LINALG_H
#define KG_COMPRESS_LINALG_H

#include <stdint.h>

/* A = L L^T. On success the lower triangle holds L and the strict upper
 * triangle is zeroed. A matrix that is not positive definite returns
 * KG_ERR_NUMERIC (the message names the failing leading minor) and leaves A
 * partly overwritten. */
int kg_linalg_cholesky_lower(double *A, int64_t n);

/* Replaces a symmetric positive-definite A by the upper-triangular U with
 * U^T U = A^{-1}, i.e. torch.linalg.cholesky(torch.cholesky_inverse(
 * torch.linalg.cholesky(A)), upper=True), the inverse factor SparseGPT and
 * GPTQ sweep with. The strict lower triangle is zeroed.
 *
 * Computed as P chol(P A P)^{-1} P with P the reversal permutation (one
 * Cholesky and one triangular inverse, 2n^3/3 flops instead of 5n^3/3); by
 * uniqueness of the Cholesky factor this is the same matrix. KG_ERR_NUMERIC
 * when A is not positive definite (A is then partly overwritten). */
int kg_linalg_upper_chol_of_inverse(double *A, int64_t n);

/* Copies the lower triangle onto the upper one. */
void kg_linalg_symmetrize_from_lower(double *A, int64_t n);

/* Sum of x[0..n) in NumPy's pairwise order (np.add.reduce on a contiguous
 * float64 array), so that means computed here equal the reference's bit for
 * bit where a decision (a truncation, a comparison) depends on them. */
double kg_linalg_numpy_sum(const double *x, int64_t n);

#endif
