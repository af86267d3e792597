#include "compress/masks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"

int kg_prune_opts_check(const kg_prune_opts *opts, int64_t rows, int64_t cols, const char *what) {
  if (!opts) return kg_error(KG_ERR_ARG, "%s: no options", what);
  if (rows <= 0 || cols <= 0 || rows > INT32_MAX || cols > INT32_MAX)
    return kg_error(KG_ERR_ARG, "%s: bad shape %lldx%lld", what, (long long)rows, (long long)cols);
  if (opts->prune_n != 0) {
    if (opts->prune_n < 0 || opts->prune_m <= 0 || opts->prune_n > opts->prune_m)
      return kg_error(KG_ERR_ARG, "%s: bad N:M pattern %d:%d", what, opts->prune_n, opts->prune_m);
    if (cols % opts->prune_m != 0)
      return kg_error(KG_ERR_ARG, "%s: %lld input columns are not a multiple of M=%d", what, (long long)cols,
                      opts->prune_m);
    return KG_OK;
  }
  if (!(opts->sparsity >= 0.0 && opts->sparsity < 1.0))
    return kg_error(KG_ERR_ARG, "%s: sparsity %g is outside [0, 1)", what, opts->sparsity);
  return KG_OK;
}

int kg_check_finite(const float *W, int64_t n, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(W[i])) return kg_error(KG_ERR_NUMERIC, "%s: non-finite value at element %lld", what, (long long)i);
  return KG_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Hoare partitioning around a median-of-three value; after ~128 rounds
 * without convergence (adversarial orders) the rest is sorted instead, which
 * bounds the worst case at O(n log n). */
double kg_select_kth(double *a, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  int rounds = 128;
  while (hi > lo) {
    if (rounds-- == 0) {
      qsort(a + lo, (size_t)(hi - lo + 1), sizeof(double), cmp_double);
      return a[k];
    }
    int64_t mid = lo + (hi - lo) / 2;
    double t;
#define KG_SWAP_(p, q) (t = a[p], a[p] = a[q], a[q] = t)
    if (a[mid] < a[lo]) KG_SWAP_(mid, lo);
    if (a[hi] < a[lo]) KG_SWAP_(hi, lo);
    if (a[hi] < a[mid]) KG_SWAP_(hi, mid);
    const double pivot = a[mid];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        KG_SWAP_(i, j);
        i++;
        j--;
      }
    }
#undef KG_SWAP_
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return a[k]; /* between the two parts every value equals the pivot */
  }
  return a[k];
}

int kg_mask_threshold(const double *score, int64_t n, double sparsity, uint8_t *mask, int64_t *n_pruned) {
  double *tmp = NULL;
  int64_t count = 0;
  if (!(sparsity >= 0.0 && sparsity < 1.0) || n <= 0)
    return kg_error(KG_ERR_ARG, "threshold mask: sparsity %g or size %lld out of range", sparsity, (long long)n);
  memset(mask, 0, (size_t)n);
  if (sparsity > 0.0) {
    if (!(tmp = malloc((size_t)n * sizeof(double))))
      return kg_error(KG_ERR_NOMEM, "threshold mask: no memory for %lld scores", (long long)n);
    memcpy(tmp, score, (size_t)n * sizeof(double));
    const double thresh = kg_select_kth(tmp, n, (int64_t)((double)n * sparsity));
    free(tmp);
    for (int64_t i = 0; i < n; i++)
      if (score[i] <= thresh) {
        mask[i] = 1;
        count++;
      }
  }
  if (n_pruned) *n_pruned = count;
  return KG_OK;
}

int kg_mask_rows(const double *score, int64_t rows, int64_t cols, double sparsity, uint8_t *mask) {
  if (!(sparsity >= 0.0 && sparsity < 1.0) || rows <= 0 || cols <= 0)
    return kg_error(KG_ERR_ARG, "row mask: sparsity %g or shape %lldx%lld out of range", sparsity, (long long)rows,
                    (long long)cols);
  memset(mask, 0, (size_t)(rows * cols));
  const int64_t k = (int64_t)((double)cols * sparsity);
  if (k == 0) return KG_OK;
  double *tmp = malloc((size_t)cols * sizeof(double));
  if (!tmp) return kg_error(KG_ERR_NOMEM, "row mask: no memory for %lld scores", (long long)cols);
  for (int64_t r = 0; r < rows; r++) {
    const double *s = score + r * cols;
    uint8_t *m = mask + r * cols;
    memcpy(tmp, s, (size_t)cols * sizeof(double));
    /* v is the largest pruned score: everything below it goes, then the
     * lowest columns among those equal to v until k are pruned. */
    const double v = kg_select_kth(tmp, cols, k - 1);
    int64_t left = k;
    for (int64_t j = 0; j < cols; j++)
      if (s[j] < v) {
        m[j] = 1;
        left--;
      }
    for (int64_t j = 0; j < cols && left > 0; j++)
      if (s[j] == v) {
        m[j] = 1;
        left--;
      }
  }
  free(tmp);
  return KG_OK;
}

void kg_nm_select(const double *s, int m, int n, uint8_t *pruned) {
  memset(pruned, 0, (size_t)m);
  for (int t = 0; t < n; t++) {
    int best = -1;
    for (int j = 0; j < m; j++)
      if (!pruned[j] && (best < 0 || s[j] < s[best])) best = j; /* strict <: lower index wins ties */
    pruned[best] = 1;
  }
}

int kg_mask_nm(const double *score, int64_t rows, int64_t cols, int n, int m, uint8_t *mask) {
  if (rows <= 0 || cols <= 0 || n < 0 || m <= 0 || n > m || cols % m != 0)
    return kg_error(KG_ERR_ARG, "N:M mask: pattern %d:%d does not fit %lldx%lld", n, m, (long long)rows,
                    (long long)cols);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c += m) kg_nm_select(score + r * cols + c, m, n, mask + r * cols + c);
  return KG_OK;
}

int64_t kg_mask_apply(float *W, const uint8_t *mask, int64_t n) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++)
    if (mask[i]) {
      W[i] = 0.0f;
      count++;
    }
  return count;
}

int kg_magnitude_mask(const float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts, uint8_t *mask) {
  int rc = KG_OK;
  double *score = NULL;
  if (!W || !mask) return kg_error(KG_ERR_ARG, "magnitude: null weight or mask");
  KG_TRY(kg_prune_opts_check(opts, rows, cols, "magnitude"));
  KG_TRY(kg_check_finite(W, rows * cols, "magnitude: weight"));
  if (!(score = malloc((size_t)(rows * cols) * sizeof(double))))
    return kg_error(KG_ERR_NOMEM, "magnitude: no memory for %lldx%lld scores", (long long)rows, (long long)cols);
  for (int64_t i = 0; i < rows * cols; i++) score[i] = fabs((double)W[i]);
  if (opts->prune_n != 0)
    rc = kg_mask_nm(score, rows, cols, opts->prune_n, opts->prune_m, mask);
  else
    rc = kg_mask_threshold(score, rows * cols, opts->sparsity, mask, NULL);
  free(score);
  return rc;
}

int kg_magnitude_prune(float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts) {
  uint8_t *mask = NULL;
  if (rows <= 0 || cols <= 0) return kg_error(KG_ERR_ARG, "magnitude: bad shape %lldx%lld", (long long)rows, (long long)cols);
  if (!(mask = malloc((size_t)(rows * cols))))
    return kg_error(KG_ERR_NOMEM, "magnitude: no memory for a %lldx%lld mask", (long long)rows, (long long)cols);
  int rc = kg_magnitude_mask(W, rows, cols, opts, mask);
  if (rc == KG_OK) kg_mask_apply(W, mask, rows * cols);
  free(mask);
  return rc;
}
