#include "compress/linalg.h"

#include <limits.h>
#include <string.h>

#include "io/error.h"

/* LAPACK from OpenBLAS has no C header on Debian; these match its f77blas.h
 * (OpenBLAS implements both in C, so no hidden string-length arguments). */
extern int dpotrf_(char *uplo, int *n, double *a, int *lda, int *info);
extern int dtrtri_(char *uplo, char *diag, int *n, double *a, int *lda, int *info);

static int check_order(int64_t n, const char *what) {
  if (n <= 0 || n > INT_MAX) return kg_error(KG_ERR_ARG, "%s: matrix order %lld out of range", what, (long long)n);
  return KG_OK;
}

/* Reversing the flat array of an n x n matrix maps element (i, j) to
 * (n-1-i, n-1-j): it is P A P for the reversal permutation P. */
static void reverse_flat(double *A, int64_t n) {
  size_t lo = 0, hi = (size_t)n * (size_t)n - 1;
  while (lo < hi) {
    double t = A[lo];
    A[lo++] = A[hi];
    A[hi--] = t;
  }
}

/* Row-major memory seen by column-major LAPACK is the transpose, so asking
 * LAPACK for the upper factor U (A = U^T U) leaves L = U^T in the row-major
 * lower triangle. */
static int potrf_rowmajor_lower(double *A, int64_t n, const char *what) {
  char uplo = 'U';
  int nn = (int)n, lda = (int)n, info = 0;
  dpotrf_(&uplo, &nn, A, &lda, &info);
  if (info > 0)
    return kg_error(KG_ERR_NUMERIC, "%s: matrix is not positive definite (leading minor %d of %d)", what, info,
                    nn);
  if (info < 0) return kg_error(KG_ERR_ARG, "%s: dpotrf rejected argument %d", what, -info);
  return KG_OK;
}

static void zero_strict_upper(double *A, int64_t n) {
  for (int64_t i = 0; i < n; i++) memset(A + i * n + i + 1, 0, (size_t)(n - i - 1) * sizeof(double));
}

int kg_linalg_cholesky_lower(double *A, int64_t n) {
  KG_TRY(check_order(n, "cholesky"));
  KG_TRY(potrf_rowmajor_lower(A, n, "cholesky"));
  zero_strict_upper(A, n);
  return KG_OK;
}

int kg_linalg_upper_chol_of_inverse(double *A, int64_t n) {
  KG_TRY(check_order(n, "inverse Cholesky factor"));
  reverse_flat(A, n);
  KG_TRY(potrf_rowmajor_lower(A, n, "inverse Cholesky factor"));
  /* Row-major lower L is column-major upper L^T; inverting that in place
   * gives (L^T)^{-1}, which row-major reads as L^{-1}. */
  char uplo = 'U', diag = 'N';
  int nn = (int)n, lda = (int)n, info = 0;
  dtrtri_(&uplo, &diag, &nn, A, &lda, &info);
  if (info > 0)
    return kg_error(KG_ERR_NUMERIC, "inverse Cholesky factor: factor is singular (diagonal %d of %d)", info, nn);
  if (info < 0) return kg_error(KG_ERR_ARG, "inverse Cholesky factor: dtrtri rejected argument %d", -info);
  zero_strict_upper(A, n);
  reverse_flat(A, n); /* P L^{-1} P: upper triangular */
  return KG_OK;
}

void kg_linalg_symmetrize_from_lower(double *A, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) A[i * n + j] = A[j * n + i];
}

/* NumPy's pairwise_sum for float64 (loops_utils.h): below 8 elements a plain
 * loop, up to 128 eight interleaved accumulators, above that a split at half
 * rounded down to a multiple of 8. */
double kg_linalg_numpy_sum(const double *x, int64_t n) {
  if (n < 8) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; j++) r[j] = x[j];
    int64_t i;
    for (i = 8; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; j++) r[j] += x[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) s += x[i];
    return s;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return kg_linalg_numpy_sum(x, n2) + kg_linalg_numpy_sum(x + n2, n - n2);
}
