#include "compress/wanda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"

int kg_wanda_scores(const float *W, int64_t rows, int64_t cols, const double *scaler_row, double *score) {
  if (!W || !scaler_row || !score || rows <= 0 || cols <= 0)
    return kg_error(KG_ERR_ARG, "wanda: bad arguments (%lldx%lld)", (long long)rows, (long long)cols);
  for (int64_t j = 0; j < cols; j++)
    if (!(scaler_row[j] >= 0.0) || !isfinite(scaler_row[j]))
      return kg_error(KG_ERR_NUMERIC, "wanda: scaler_row[%lld] = %g is not a finite non-negative value", (long long)j,
                      scaler_row[j]);
  KG_TRY(kg_check_finite(W, rows * cols, "wanda: weight"));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) score[r * cols + j] = fabs((double)W[r * cols + j]) * sqrt(scaler_row[j]);
  return KG_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Number of entries of the ascending row a[0..n) that are <= v. */
static int64_t count_le(const double *a, int64_t n, double v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] <= v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The reference's return_given_alpha: per row, the cut is the largest sorted
 * score whose cumulative sum is within alpha * row total; every score <= cut
 * is pruned. Returns the total pruned; thresholds go to thr[rows] (-inf for
 * a row that loses nothing). */
static int64_t given_alpha(double alpha, const double *sorted, const double *cums, const double *rowsum, int64_t rows,
                           int64_t cols, double *thr) {
  int64_t total = 0;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t cnt = count_le(cums + r * cols, cols, rowsum[r] * alpha);
    if (cnt == 0) {
      thr[r] = -INFINITY;
      continue;
    }
    thr[r] = sorted[r * cols + cnt - 1];
    total += count_le(sorted + r * cols, cols, thr[r]);
  }
  return total;
}

/* The reference compares float32 tensors: achieved = float(count)/float(numel). */
static float achieved(int64_t pruned, int64_t numel) { return (float)pruned / (float)numel; }

static int variant_mask(const double *score, int64_t rows, int64_t cols, double target, uint8_t *mask,
                        kg_wanda_report *rep) {
  int rc = KG_OK;
  const int64_t n = rows * cols;
  double *sorted = malloc((size_t)n * sizeof(double));
  double *cums = malloc((size_t)n * sizeof(double));
  double *rowsum = malloc((size_t)rows * sizeof(double));
  double *thr = malloc((size_t)rows * sizeof(double));
  if (!sorted || !cums || !rowsum || !thr) {
    rc = kg_error(KG_ERR_NOMEM, "wanda variant: no memory for %lldx%lld sorted scores", (long long)rows, (long long)cols);
    goto done;
  }
  memcpy(sorted, score, (size_t)n * sizeof(double));
  for (int64_t r = 0; r < rows; r++) {
    double *s = sorted + r * cols;
    qsort(s, (size_t)cols, sizeof(double), cmp_double);
    double acc = 0.0, tot = 0.0;
    for (int64_t j = 0; j < cols; j++) {
      acc += s[j];
      cums[r * cols + j] = acc;
      tot += score[r * cols + j];
    }
    rowsum[r] = tot;
  }
  const float target32 = (float)target, tol32 = (float)0.001;
  double alpha = 0.4, lo = 0.0, hi = 0.8;
  int iters = 0;
  float cur = achieved(given_alpha(alpha, sorted, cums, rowsum, rows, cols, thr), n);
  while (fabsf(cur - target32) > tol32 && hi - lo >= 0.001) {
    double next;
    if (cur > target32) {
      next = (alpha + lo) / 2.0;
      hi = alpha;
    } else {
      next = (alpha + hi) / 2.0;
      lo = alpha;
    }
    alpha = next;
    cur = achieved(given_alpha(alpha, sorted, cums, rowsum, rows, cols, thr), n);
    iters++;
  }
  int64_t pruned = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) {
      mask[r * cols + j] = score[r * cols + j] <= thr[r];
      pruned += mask[r * cols + j];
    }
  if (rep) {
    rep->pruned = pruned;
    rep->alpha = alpha;
    rep->iterations = iters;
  }
done:
  free(sorted);
  free(cums);
  free(rowsum);
  free(thr);
  return rc;
}

int kg_wanda_mask(const float *W, int64_t rows, int64_t cols, const double *scaler_row, const kg_prune_opts *opts,
                  uint8_t *mask, kg_wanda_report *rep) {
  int rc = KG_OK;
  double *score = NULL;
  if (!mask) return kg_error(KG_ERR_ARG, "wanda: null mask");
  KG_TRY(kg_prune_opts_check(opts, rows, cols, "wanda"));
  if (rep) memset(rep, 0, sizeof *rep);
  if (!(score = malloc((size_t)(rows * cols) * sizeof(double))))
    return kg_error(KG_ERR_NOMEM, "wanda: no memory for %lldx%lld scores", (long long)rows, (long long)cols);
  if ((rc = kg_wanda_scores(W, rows, cols, scaler_row, score)) < 0) goto done;
  const int variant = opts->prune_n == 0 && opts->use_variant;
  if (opts->prune_n != 0)
    rc = kg_mask_nm(score, rows, cols, opts->prune_n, opts->prune_m, mask);
  else if (variant)
    rc = variant_mask(score, rows, cols, opts->sparsity, mask, rep);
  else
    rc = kg_mask_rows(score, rows, cols, opts->sparsity, mask);
  if (rc == KG_OK && rep && !variant) {
    for (int64_t i = 0; i < rows * cols; i++) rep->pruned += mask[i];
  }
done:
  free(score);
  return rc;
}

int kg_wanda_prune(float *W, int64_t rows, int64_t cols, const double *scaler_row, const kg_prune_opts *opts,
                   kg_wanda_report *rep) {
  uint8_t *mask = NULL;
  if (rows <= 0 || cols <= 0) return kg_error(KG_ERR_ARG, "wanda: bad shape %lldx%lld", (long long)rows, (long long)cols);
  if (!(mask = malloc((size_t)(rows * cols))))
    return kg_error(KG_ERR_NOMEM, "wanda: no memory for a %lldx%lld mask", (long long)rows, (long long)cols);
  int rc = kg_wanda_mask(W, rows, cols, scaler_row, opts, mask, rep);
  if (rc == KG_OK) kg_mask_apply(W, mask, rows * cols);
  free(mask);
  return rc;
}
