#include "compress/stats.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/linalg.h"
#include "io/error.h"

/* Rows converted to float64 per dsyrk call: about 16 MiB of copy, and at
 * least 64 rows so that the rank-k update stays compute bound. */
static int64_t chunk_rows(int64_t d) {
  int64_t r = ((int64_t)2 << 20) / d;
  if (r < 64) r = 64;
  if (r > 1024) r = 1024;
  return r;
}

int kg_stats_init(kg_linear_stats *st, int64_t d, int with_gram) {
  memset(st, 0, sizeof *st);
  if (d <= 0 || d > (int64_t)1 << 20) return kg_error(KG_ERR_ARG, "stats: input width %lld out of range", (long long)d);
  st->d = d;
  st->with_gram = with_gram ? 1 : 0;
  st->sqnorm = calloc((size_t)d, sizeof(double));
  if (!st->sqnorm) return kg_error(KG_ERR_NOMEM, "stats: no memory for %lld column sums", (long long)d);
  if (st->with_gram) {
    st->gram = calloc((size_t)d * (size_t)d, sizeof(double));
    if (!st->gram) {
      free(st->sqnorm);
      st->sqnorm = NULL;
      return kg_error(KG_ERR_NOMEM, "stats: no memory for a %lldx%lld Gram matrix", (long long)d, (long long)d);
    }
  }
  return KG_OK;
}

void kg_stats_free(kg_linear_stats *st) {
  if (!st) return;
  free(st->gram);
  free(st->sqnorm);
  memset(st, 0, sizeof *st);
}

void kg_stats_reset(kg_linear_stats *st) {
  if (st->gram) memset(st->gram, 0, (size_t)st->d * (size_t)st->d * sizeof(double));
  if (st->sqnorm) memset(st->sqnorm, 0, (size_t)st->d * sizeof(double));
  st->n_samples = 0;
  st->n_tokens = 0;
}

int kg_stats_accumulate(kg_linear_stats *st, const float *X, int64_t rows, int64_t n_samples_in_X) {
  int rc = KG_OK;
  double *buf = NULL;
  if (!st || !st->sqnorm) return kg_error(KG_ERR_ARG, "stats: accumulator not initialized");
  if (rows < 0 || n_samples_in_X < 0 || (rows > 0 && !X))
    return kg_error(KG_ERR_ARG, "stats: bad batch (%lld rows, %lld samples)", (long long)rows,
                    (long long)n_samples_in_X);
  const int64_t d = st->d;
  for (int64_t i = 0; i < rows * d; i++)
    if (!isfinite(X[i]))
      return kg_error(KG_ERR_NUMERIC, "stats: non-finite input at token %lld, column %lld", (long long)(i / d),
                      (long long)(i % d));
  for (int64_t r = 0; r < rows; r++) {
    const float *x = X + r * d;
    for (int64_t j = 0; j < d; j++) st->sqnorm[j] += (double)x[j] * (double)x[j];
  }
  if (st->with_gram && rows > 0) {
    const int64_t ch = chunk_rows(d);
    if (!(buf = malloc((size_t)ch * (size_t)d * sizeof(double)))) {
      rc = kg_error(KG_ERR_NOMEM, "stats: no memory for a %lldx%lld chunk", (long long)ch, (long long)d);
      goto done;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += ch) {
      int64_t k = rows - r0 < ch ? rows - r0 : ch;
      for (int64_t i = 0; i < k * d; i++) buf[i] = X[r0 * d + i];
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)k, 1.0, buf, (int)d, 1.0, st->gram, (int)d);
    }
  }
  st->n_samples += n_samples_in_X;
  st->n_tokens += rows;
done:
  free(buf);
  return rc;
}

int kg_stats_merge(kg_linear_stats *dst, const kg_linear_stats *src) {
  if (!dst || !src || !dst->sqnorm || !src->sqnorm) return kg_error(KG_ERR_ARG, "stats merge: accumulator not initialized");
  if (dst->d != src->d)
    return kg_error(KG_ERR_ARG, "stats merge: widths differ (%lld vs %lld)", (long long)dst->d, (long long)src->d);
  if (dst->with_gram && !src->with_gram) return kg_error(KG_ERR_ARG, "stats merge: source has no Gram matrix");
  for (int64_t j = 0; j < dst->d; j++) dst->sqnorm[j] += src->sqnorm[j];
  if (dst->with_gram) {
    const int64_t n = dst->d * dst->d;
    for (int64_t i = 0; i < n; i++) dst->gram[i] += src->gram[i];
  }
  dst->n_samples += src->n_samples;
  dst->n_tokens += src->n_tokens;
  return KG_OK;
}

/* MPI counts are int: large Gram matrices (d = 11008 is 121M doubles) are
 * reduced in pieces. */
static int allreduce_doubles(double *x, int64_t n, MPI_Comm comm) {
  const int64_t piece = (int64_t)1 << 26;
  for (int64_t off = 0; off < n; off += piece) {
    int cnt = (int)(n - off < piece ? n - off : piece);
    if (MPI_Allreduce(MPI_IN_PLACE, x + off, cnt, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
      return kg_error(KG_ERR_COMM, "stats allreduce: MPI_Allreduce of %d doubles failed", cnt);
  }
  return KG_OK;
}

int kg_stats_allreduce(kg_linear_stats *st, MPI_Comm comm) {
  /* NULL too: callers without MPI pass 0 (MPI_Comm is a pointer in Open MPI). */
  if (comm == MPI_COMM_NULL || !comm) return KG_OK;
  if (!st || !st->sqnorm) return kg_error(KG_ERR_ARG, "stats allreduce: accumulator not initialized");
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) return kg_error(KG_ERR_COMM, "stats allreduce: MPI is not initialized");
  /* Every rank must reduce the same shapes; a mismatch is reported on all
   * ranks instead of hanging or corrupting memory. */
  int64_t shape[4] = {st->d, -st->d, st->with_gram, -(int64_t)st->with_gram};
  if (MPI_Allreduce(MPI_IN_PLACE, shape, 4, MPI_INT64_T, MPI_MAX, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "stats allreduce: shape check failed");
  if (shape[0] != -shape[1] || shape[2] != -shape[3])
    return kg_error(KG_ERR_ARG, "stats allreduce: ranks disagree on width or Gram (d %lld..%lld)",
                    (long long)-shape[1], (long long)shape[0]);
  int64_t counts[2] = {st->n_samples, st->n_tokens};
  if (MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "stats allreduce: count reduction failed");
  KG_TRY(allreduce_doubles(st->sqnorm, st->d, comm));
  if (st->with_gram) KG_TRY(allreduce_doubles(st->gram, st->d * st->d, comm));
  st->n_samples = counts[0];
  st->n_tokens = counts[1];
  return KG_OK;
}

static int check_finalize(const kg_linear_stats *st, int need_gram, const void *out, const char *what) {
  if (!st || !st->sqnorm || !out) return kg_error(KG_ERR_ARG, "%s: accumulator not initialized", what);
  if (need_gram && !st->with_gram) return kg_error(KG_ERR_ARG, "%s: statistics were collected without a Gram matrix", what);
  if (st->n_samples <= 0) return kg_error(KG_ERR_ARG, "%s: no calibration samples accumulated", what);
  return KG_OK;
}

/* scale * gram, mirrored to full symmetric, into a float64 or a float32 buffer. */
static void fill_symmetric(const kg_linear_stats *st, double scale, double *outd, float *outf) {
  const int64_t d = st->d;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j <= i; j++) {
      const double v = scale * st->gram[i * d + j];
      if (outd)
        outd[i * d + j] = outd[j * d + i] = v;
      else
        outf[i * d + j] = outf[j * d + i] = (float)v;
    }
}

int kg_stats_hessian(const kg_linear_stats *st, double *H) {
  KG_TRY(check_finalize(st, 1, H, "hessian"));
  fill_symmetric(st, 2.0 / (double)st->n_samples, H, NULL);
  return KG_OK;
}

int kg_stats_gram(const kg_linear_stats *st, double *G) {
  KG_TRY(check_finalize(st, 1, G, "gram"));
  fill_symmetric(st, 1.0, G, NULL);
  return KG_OK;
}

int kg_stats_hessian_f32(const kg_linear_stats *st, float *H) {
  KG_TRY(check_finalize(st, 1, H, "hessian"));
  fill_symmetric(st, 2.0 / (double)st->n_samples, NULL, H);
  return KG_OK;
}

int kg_stats_scaler_row(const kg_linear_stats *st, double *scaler_row) {
  KG_TRY(check_finalize(st, 0, scaler_row, "scaler_row"));
  for (int64_t j = 0; j < st->d; j++) scaler_row[j] = st->sqnorm[j] / (double)st->n_samples;
  return KG_OK;
}

int kg_recon_error(const float *W, const float *W2, int64_t rows, int64_t cols, const double *G, double *err) {
  int rc = KG_OK;
  double *D = NULL, *T = NULL;
  if (!W || !W2 || !G || !err || rows <= 0 || cols <= 0 || cols > INT32_MAX)
    return kg_error(KG_ERR_ARG, "recon error: bad arguments (%lldx%lld)", (long long)rows, (long long)cols);
  const int64_t ch = chunk_rows(cols);
  if (!(D = malloc((size_t)ch * (size_t)cols * sizeof(double))) || !(T = malloc((size_t)ch * (size_t)cols * sizeof(double)))) {
    rc = kg_error(KG_ERR_NOMEM, "recon error: no memory for %lld rows of %lld", (long long)ch, (long long)cols);
    goto done;
  }
  double total = 0.0;
  for (int64_t r0 = 0; r0 < rows; r0 += ch) {
    int64_t k = rows - r0 < ch ? rows - r0 : ch;
    for (int64_t i = 0; i < k * cols; i++) D[i] = (double)W[r0 * cols + i] - (double)W2[r0 * cols + i];
    cblas_dsymm(CblasRowMajor, CblasRight, CblasLower, (int)k, (int)cols, 1.0, G, (int)cols, D, (int)cols, 0.0, T,
                (int)cols);
    for (int64_t i = 0; i < k * cols; i++) total += D[i] * T[i];
  }
  *err = total;
done:
  free(D);
  free(T);
  return rc;
}
