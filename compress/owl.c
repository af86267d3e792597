#include "compress/owl.h"

#include <math.h>
#include <stdlib.h>

#include "compress/linalg.h"
#include "compress/masks.h"
#include "io/error.h"

static int check_linear(const kg_owl_linear *l, int i) {
  if (!l->W || !l->scaler_row || l->rows <= 0 || l->cols <= 0)
    return kg_error(KG_ERR_ARG, "owl: linear %d has a bad shape %lldx%lld or null buffers", i, (long long)l->rows,
                    (long long)l->cols);
  for (int64_t j = 0; j < l->cols; j++)
    if (!(l->scaler_row[j] >= 0.0) || !isfinite(l->scaler_row[j]))
      return kg_error(KG_ERR_NUMERIC, "owl: linear %d scaler_row[%lld] = %g is not finite and non-negative", i,
                      (long long)j, l->scaler_row[j]);
  return kg_check_finite(l->W, l->rows * l->cols, "owl: weight");
}

/* Two passes over the scores, recomputed rather than stored: a block of
 * LLaMA-7B is 200M weights. */
int kg_owl_outlier_ratio(const kg_owl_linear *lin, int n_linear, double M, double *ratio_percent) {
  if (!lin || n_linear <= 0 || !ratio_percent || !(M > 0.0) || !isfinite(M))
    return kg_error(KG_ERR_ARG, "owl: need linears and a positive M (got %d, %g)", n_linear, M);
  double sum = 0.0;
  int64_t total = 0;
  for (int i = 0; i < n_linear; i++) {
    KG_TRY(check_linear(&lin[i], i));
    const kg_owl_linear *l = &lin[i];
    for (int64_t r = 0; r < l->rows; r++)
      for (int64_t j = 0; j < l->cols; j++) sum += fabs((double)l->W[r * l->cols + j]) * sqrt(l->scaler_row[j]);
    total += l->rows * l->cols;
  }
  const double thresh = sum / (double)total * M;
  int64_t count = 0;
  for (int i = 0; i < n_linear; i++) {
    const kg_owl_linear *l = &lin[i];
    for (int64_t r = 0; r < l->rows; r++)
      for (int64_t j = 0; j < l->cols; j++)
        count += fabs((double)l->W[r * l->cols + j]) * sqrt(l->scaler_row[j]) > thresh;
  }
  *ratio_percent = (double)count / (double)total * 100.0;
  return KG_OK;
}

int kg_owl_allocate(const double *ratio, int n_layers, double target_sparsity, double lambda, double *sparsity) {
  int rc = KG_OK;
  double *d = NULL;
  if (!ratio || !sparsity || n_layers <= 0)
    return kg_error(KG_ERR_ARG, "owl: need at least one layer ratio (got %d)", n_layers);
  if (!(target_sparsity >= 0.0 && target_sparsity < 1.0) || !(lambda >= 0.0) || !isfinite(lambda))
    return kg_error(KG_ERR_ARG, "owl: target sparsity %g or lambda %g out of range", target_sparsity, lambda);
  double mn = ratio[0], mx = ratio[0];
  for (int i = 0; i < n_layers; i++) {
    if (!isfinite(ratio[i])) return kg_error(KG_ERR_NUMERIC, "owl: outlier ratio of layer %d is not finite", i);
    if (ratio[i] < mn) mn = ratio[i];
    if (ratio[i] > mx) mx = ratio[i];
  }
  if (mx == mn) {
    for (int i = 0; i < n_layers; i++) sparsity[i] = target_sparsity;
    return KG_OK;
  }
  if (!(d = malloc((size_t)n_layers * sizeof(double)))) return kg_error(KG_ERR_NOMEM, "owl: no memory for %d layers", n_layers);
  const double factor = 1.0 / (mx - mn) * lambda * 2.0;
  for (int i = 0; i < n_layers; i++) d[i] = (ratio[i] - mn) * factor;
  const double mean = kg_linalg_numpy_sum(d, n_layers) / (double)n_layers;
  for (int i = 0; i < n_layers; i++) {
    const double density = d[i] - mean + (1.0 - target_sparsity);
    sparsity[i] = 1.0 - density;
    if (sparsity[i] <= 0.0) sparsity[i] = 0.01;
  }
  free(d);
  return rc;
}
