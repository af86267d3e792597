#include "compress/obs.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/linalg.h"
#include "compress/masks.h"
#include "io/error.h"
#include "io/log.h"

/* Working state. W is held transposed (WT[col][row], float64) so that a
 * column is contiguous: the per-column error step and the GEMM updates then
 * run over contiguous rows. */
typedef struct sweep {
  const kg_obs_job *job;
  int64_t rows, n;  /* n = cols = order of H */
  int64_t gs, ngroups;
  float maxq;
  double *WT;       /* [n][rows] */
  double *Hinv;     /* [n][n], upper triangular after factoring */
  int32_t *perm;    /* [n] */
  uint8_t *dead;    /* [n], indexed by original column */
  float *scale, *zero; /* [rows]: current quantizer parameters */
  float *lo, *hi;   /* [rows]: group extremes scratch */
  double *err;      /* [blocksize][rows] */
  uint8_t *mask;    /* [blocksize][rows] */
  double *score;    /* [blocksize * rows] */
  double *start;    /* [blocksize][rows]: block at its start (groups only) */
  double *row_loss; /* [rows] */
  int64_t masked;
} sweep;

int kg_obs_check_params(int64_t rows, int64_t cols, int blocksize, double percdamp, int max_damp_retries, int prune_n,
                        int prune_m, double sparsity, const kg_quant_opts *quant) {
  if (rows <= 0 || cols <= 0 || rows > INT32_MAX || cols > INT32_MAX)
    return kg_error(KG_ERR_ARG, "bad layer shape %lldx%lld", (long long)rows, (long long)cols);
  if (blocksize <= 0) return kg_error(KG_ERR_ARG, "blocksize %d must be positive", blocksize);
  if (!(percdamp > 0.0) || !isfinite(percdamp)) return kg_error(KG_ERR_ARG, "percdamp %g must be positive", percdamp);
  if (max_damp_retries < 0 || max_damp_retries > 12)
    return kg_error(KG_ERR_ARG, "max_damp_retries %d is outside 0..12", max_damp_retries);
  if (prune_n != 0) {
    if (prune_n < 0 || prune_m <= 0 || prune_n > prune_m || prune_m > 256)
      return kg_error(KG_ERR_ARG, "bad N:M pattern %d:%d", prune_n, prune_m);
    if (cols % prune_m || blocksize % prune_m)
      return kg_error(KG_ERR_ARG, "N:M with M=%d needs input columns (%lld) and blocksize (%d) divisible by M", prune_m,
                      (long long)cols, blocksize);
  } else if (!(sparsity >= 0.0 && sparsity < 1.0)) {
    return kg_error(KG_ERR_ARG, "sparsity %g is outside [0, 1)", sparsity);
  }
  return quant ? kg_quant_opts_check(quant, cols, "quantizer") : KG_OK;
}

static int check_job(const kg_obs_job *j) {
  if (!j->W || !j->H) return kg_error(KG_ERR_ARG, "null weight or Hessian buffer");
  KG_TRY(kg_obs_check_params(j->rows, j->cols, j->blocksize, j->percdamp, j->max_damp_retries, j->prune_n, j->prune_m,
                             j->sparsity, j->quant));
  KG_TRY(kg_check_finite(j->W, j->rows * j->cols, "weight"));
  for (int64_t i = 0; i < j->cols * j->cols; i++)
    if (!isfinite(j->H[i]))
      return kg_error(KG_ERR_NUMERIC, "hessian: non-finite value at (%lld, %lld)", (long long)(i / j->cols),
                      (long long)(i % j->cols));
  return KG_OK;
}

typedef struct keyed {
  double v;
  int32_t i;
} keyed;

static int cmp_desc_then_index(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

int kg_obs_act_order_perm(const double *diag, int64_t stride, const uint8_t *dead, int64_t n, int32_t *perm) {
  keyed *k = malloc((size_t)n * sizeof *k);
  if (!k) return kg_error(KG_ERR_NOMEM, "act_order: no memory for %lld keys", (long long)n);
  for (int64_t i = 0; i < n; i++) {
    k[i].v = dead[i] ? 1.0 : diag[i * stride];
    k[i].i = (int32_t)i;
  }
  qsort(k, (size_t)n, sizeof *k, cmp_desc_then_index);
  for (int64_t i = 0; i < n; i++) perm[i] = k[i].i;
  free(k);
  return KG_OK;
}

static int build_perm(sweep *s) {
  for (int64_t i = 0; i < s->n; i++) s->perm[i] = (int32_t)i;
  if (!s->job->act_order) return KG_OK;
  return kg_obs_act_order_perm(s->job->H, s->n + 1, s->dead, s->n, s->perm);
}

/* Permuted, dead-fixed, damped H factored into Hinv; see the retry policy in
 * obs.h. */
static int factor(sweep *s, kg_obs_result *res) {
  const int64_t n = s->n;
  const double *H = s->job->H;
  double pd = s->job->percdamp;
  for (int attempt = 0;; attempt++) {
#pragma omp parallel for schedule(static) if (n >= 512)
    for (int64_t i = 0; i < n; i++) {
      const double *src = H + (int64_t)s->perm[i] * n;
      double *dst = s->Hinv + i * n;
      for (int64_t j = 0; j < n; j++) dst[j] = src[s->perm[j]];
      if (s->dead[s->perm[i]]) dst[i] = 1.0;
    }
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += s->Hinv[i * n + i];
    mean /= (double)n;
    const double damp = pd * mean;
    for (int64_t i = 0; i < n; i++) s->Hinv[i * n + i] += damp;
    int rc = kg_linalg_upper_chol_of_inverse(s->Hinv, n);
    if (rc == KG_OK) {
      res->percdamp = pd;
      res->damp = damp;
      res->retries = attempt;
      return KG_OK;
    }
    if (rc != KG_ERR_NUMERIC || attempt >= s->job->max_damp_retries)
      return kg_error_context("hessian with percdamp %g after %d retries: ", pd, attempt);
    kg_warn("hessian (%lld inputs) is not positive definite with percdamp %g; retrying with %g", (long long)n, pd,
            pd * 10.0);
    kg_error_clear();
    pd *= 10.0;
  }
}

/* Quantizer parameters for the group starting at permuted position c, from
 * W[:, c:c+gs] as the reference reads it (see obs.h, step 6). */
static void group_params(sweep *s, int64_t c, int64_t i1, int64_t i2) {
  const int64_t rows = s->rows, end = c + s->gs < s->n ? c + s->gs : s->n;
  for (int64_t k = c; k < end; k++) {
    const double *col = k < i2 ? s->start + (k - i1) * rows : s->WT + k * rows;
    for (int64_t r = 0; r < rows; r++) {
      const float v = (float)col[r];
      if (k == c || v < s->lo[r]) s->lo[r] = v;
      if (k == c || v > s->hi[r]) s->hi[r] = v;
    }
  }
  const int64_t g = c / s->gs;
  for (int64_t r = 0; r < rows; r++) {
    kg_quant_params(s->lo[r], s->hi[r], s->job->quant->bits, s->job->quant->sym, &s->scale[r], &s->zero[r]);
    if (s->job->scales) s->job->scales[r * s->ngroups + g] = s->scale[r];
    if (s->job->zeros) s->job->zeros[r * s->ngroups + g] = s->zero[r];
  }
}

/* N:M choice for columns i..i+M-1 of the block on their current values. */
static void nm_mask(sweep *s, int64_t i1, int64_t i) {
  const int m = s->job->prune_m, nn = s->job->prune_n;
  const int64_t rows = s->rows, n = s->n;
  double sc[256];
  uint8_t sel[256];
  for (int64_t r = 0; r < rows; r++) {
    for (int j = 0; j < m; j++) {
      const int64_t c = i1 + i + j;
      const double w = s->WT[c * rows + r], d = s->Hinv[c * n + c];
      sc[j] = (w * w) / (d * d);
    }
    kg_nm_select(sc, m, nn, sel);
    for (int j = 0; j < m; j++) s->mask[(i + j) * rows + r] = sel[j];
  }
}

static int sweep_block(sweep *s, int64_t i1, int64_t i2) {
  const kg_obs_job *job = s->job;
  const int64_t rows = s->rows, n = s->n, count = i2 - i1;
  const int grouped = job->quant && job->quant->group_size > 0;
  if (grouped) memcpy(s->start, s->WT + i1 * rows, (size_t)(count * rows) * sizeof(double));
  memset(s->mask, 0, (size_t)(count * rows));
  if (job->prune_n == 0 && job->sparsity > 0.0) {
    for (int64_t i = 0; i < count; i++) {
      const double d = s->Hinv[(i1 + i) * n + i1 + i];
      const double *w = s->WT + (i1 + i) * rows;
      for (int64_t r = 0; r < rows; r++) s->score[i * rows + r] = (w[r] * w[r]) / (d * d);
    }
    KG_TRY(kg_mask_threshold(s->score, count * rows, job->sparsity, s->mask, NULL));
  }
  /* Sub-blocks of 32 columns (a multiple of M) get immediate rank-1 updates;
   * the rest of the block is updated by a GEMM after each sub-block. Same
   * arithmetic as the reference's per-column update of the whole block,
   * reordered. */
  int64_t sb = 32;
  if (job->prune_n) sb = ((32 + job->prune_m - 1) / job->prune_m) * job->prune_m;
  for (int64_t s1 = 0; s1 < count; s1 += sb) {
    const int64_t s2 = s1 + sb < count ? s1 + sb : count;
    for (int64_t i = s1; i < s2; i++) {
      const int64_t c = i1 + i;
      double *w = s->WT + c * rows;
      double *e = s->err + i * rows;
      const uint8_t *mk = s->mask + i * rows;
      const double d = s->Hinv[c * n + c];
      if (job->prune_n && i % job->prune_m == 0) nm_mask(s, i1, i);
      if (grouped && c % s->gs == 0) group_params(s, c, i1, i2);
      /* Rows are independent: threads split them, each doing the error
       * step and the rank-1 updates of its rows. Losses are kept per row so
       * the total does not depend on the thread count. */
      const double *hrow = s->Hinv + c * n + i1;
      const float *scale = s->scale, *zero = s->zero;
      const float maxq = s->maxq;
      const int quant = job->quant != NULL;
      double *WT = s->WT, *rloss = s->row_loss;
#pragma omp parallel for schedule(static) if (rows * (s2 - i) >= 65536)
      for (int64_t r0 = 0; r0 < rows; r0 += 256) {
        const int64_t r1 = r0 + 256 < rows ? r0 + 256 : rows;
        for (int64_t r = r0; r < r1; r++) {
          double q = mk[r] ? 0.0 : w[r];
          if (quant) q = kg_quant_value((float)q, scale[r], zero[r], maxq);
          const double diff = w[r] - q;
          rloss[r] += (diff * diff) / (d * d);
          e[r] = diff / d;
          w[r] = q;
        }
        for (int64_t j = i + 1; j < s2; j++) {
          const double h = hrow[j];
          double *wj = WT + (i1 + j) * rows;
          for (int64_t r = r0; r < r1; r++) wj[r] -= e[r] * h;
        }
      }
      for (int64_t r = 0; r < rows; r++) s->masked += mk[r];
    }
    if (s2 < count)
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(count - s2), (int)rows, (int)(s2 - s1), -1.0,
                  s->Hinv + (i1 + s1) * n + i1 + s2, (int)n, s->err + s1 * rows, (int)rows, 1.0,
                  s->WT + (i1 + s2) * rows, (int)rows);
  }
  if (i2 < n)
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(n - i2), (int)rows, (int)count, -1.0,
                s->Hinv + i1 * n + i2, (int)n, s->err, (int)rows, 1.0, s->WT + i2 * rows, (int)rows);
  return KG_OK;
}

/* load: WT[k][r] = W[r][perm[k]] (zero for dead inputs); else the way
 * back. Tiled so both sides are walked in cache-sized pieces. */
static void transpose_weights(sweep *s, int load) {
  float *W = s->job->W;
  const int64_t rows = s->rows, n = s->n, T = 32;
#pragma omp parallel for schedule(static) if (rows * n >= (1 << 20))
  for (int64_t r0 = 0; r0 < rows; r0 += T)
    for (int64_t k0 = 0; k0 < n; k0 += T)
      for (int64_t k = k0; k < k0 + T && k < n; k++) {
        const int64_t col = s->perm[k];
        const int dead = s->dead[col];
        for (int64_t r = r0; r < r0 + T && r < rows; r++) {
          if (load)
            s->WT[k * rows + r] = dead ? 0.0 : (double)W[r * n + col];
          else
            W[r * n + col] = (float)s->WT[k * rows + r];
        }
      }
}

/* Per-row parameters from the whole original W (find_params before the
 * dead-column fix, as both references call it). */
static void channel_params(sweep *s) {
  const float *W = s->job->W;
  for (int64_t r = 0; r < s->rows; r++) {
    const float *w = W + r * s->n;
    float lo = w[0], hi = w[0];
    for (int64_t c = 1; c < s->n; c++) {
      if (w[c] < lo) lo = w[c];
      if (w[c] > hi) hi = w[c];
    }
    kg_quant_params(lo, hi, s->job->quant->bits, s->job->quant->sym, &s->scale[r], &s->zero[r]);
    if (s->job->scales) s->job->scales[r] = s->scale[r];
    if (s->job->zeros) s->job->zeros[r] = s->zero[r];
  }
}

int kg_obs_sweep(const kg_obs_job *job, kg_obs_result *res) {
  int rc = KG_OK;
  sweep s;
  memset(&s, 0, sizeof s);
  memset(res, 0, sizeof *res);
  const double t0 = kg_now();
  KG_TRY(check_job(job));
  s.job = job;
  s.rows = job->rows;
  s.n = job->cols;
  const int64_t rows = s.rows, n = s.n, B = job->blocksize < n ? job->blocksize : n;
  const int grouped = job->quant && job->quant->group_size > 0;
  if (job->quant) {
    s.gs = grouped ? job->quant->group_size : n;
    s.ngroups = kg_quant_ngroups(n, job->quant->group_size);
    s.maxq = (float)((1 << job->quant->bits) - 1);
  }
  s.WT = malloc((size_t)(n * rows) * sizeof(double));
  s.Hinv = malloc((size_t)(n * n) * sizeof(double));
  s.perm = malloc((size_t)n * sizeof(int32_t));
  s.dead = malloc((size_t)n);
  s.err = malloc((size_t)(B * rows) * sizeof(double));
  s.mask = malloc((size_t)(B * rows));
  s.score = malloc((size_t)(B * rows) * sizeof(double));
  s.scale = malloc((size_t)rows * sizeof(float));
  s.zero = malloc((size_t)rows * sizeof(float));
  s.lo = malloc((size_t)rows * sizeof(float));
  s.hi = malloc((size_t)rows * sizeof(float));
  s.row_loss = calloc((size_t)rows, sizeof(double));
  if (grouped) s.start = malloc((size_t)(B * rows) * sizeof(double));
  if (!s.WT || !s.Hinv || !s.perm || !s.dead || !s.err || !s.mask || !s.score || !s.scale || !s.zero || !s.lo ||
      !s.hi || !s.row_loss || (grouped && !s.start)) {
    rc = kg_error(KG_ERR_NOMEM, "no memory for a %lldx%lld solve (%.0f MiB)", (long long)rows, (long long)n,
                  (double)(n * n + n * rows) * 8.0 / 1048576.0);
    goto done;
  }
  if (job->quant && !grouped) channel_params(&s);
  for (int64_t i = 0; i < n; i++) {
    s.dead[i] = job->H[i * n + i] == 0.0;
    res->dead_columns += s.dead[i];
  }
  if ((rc = build_perm(&s)) < 0) goto done;
  if ((rc = factor(&s, res)) < 0) goto done;
  transpose_weights(&s, 1);
  for (int64_t i1 = 0; i1 < n; i1 += B)
    if ((rc = sweep_block(&s, i1, i1 + B < n ? i1 + B : n)) < 0) goto done;
  transpose_weights(&s, 0);
  if (job->perm) memcpy(job->perm, s.perm, (size_t)n * sizeof(int32_t));
  for (int64_t r = 0; r < rows; r++) res->loss += s.row_loss[r];
  res->loss *= 0.5;
  res->masked = s.masked;
  for (int64_t i = 0; i < rows * n; i++) res->zeros += job->W[i] == 0.0f;
  res->seconds = kg_now() - t0;
done:
  free(s.WT);
  free(s.Hinv);
  free(s.perm);
  free(s.dead);
  free(s.err);
  free(s.mask);
  free(s.score);
  free(s.scale);
  free(s.zero);
  free(s.lo);
  free(s.hi);
  free(s.start);
  free(s.row_loss);
  return rc;
}
