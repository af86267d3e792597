/* Calibration statistics of one linear layer's input.
 *
 * A kg_linear_stats accumulates, for an input of width d (the layer's
 * in_features), over every calibration token x (a row of X):
 *   gram[d*d]   sum x x^T (float64; only when with_gram: SparseGPT and GPTQ)
 *   sqnorm[d]   sum x_j^2 per input column (Wanda's ||X_j||^2)
 *   n_samples   calibration sequences seen (the reference's nsamples)
 *   n_tokens    rows of X seen
 * Sums are kept unscaled so partial statistics from several ranks add up
 * exactly (kg_stats_allreduce); the reference's scaled quantities come from
 * the finalizers. Only the lower triangle of gram is accumulated (row-major);
 * the finalizers return full symmetric matrices.
 *
 * The reference (Wanda's WrappedGPT, SparseGPT/GPTQ add_batch) keeps running
 * means: H *= n/(n+b); n += b; H += (2/n) X_b^T X_b, and the same with
 * scaler_row and ||X_b||^2; both end at the sums below divided by the final n,
 * where n counts sequences (the batch dimension), not tokens.
 *
 * Memory: the accumulator owns gram and sqnorm (kg_stats_free releases them).
 * Functions return KG_OK or a negative kg_code with kg_error set. */
#ifndef KG_COMPRESS_STATS_H
#define KG_COMPRESS_STATS_H

#include <mpi.h>
#include <stdint.h>

typedef struct kg_linear_stats {
  int64_t d;
  int with_gram;
  double *gram;   /* d*d row-major, lower triangle filled; NULL unless with_gram */
  double *sqnorm; /* d */
  int64_t n_samples;
  int64_t n_tokens;
} kg_linear_stats;

/* Allocates zeroed sums for width d (d*d*8 bytes more when with_gram). */
int kg_stats_init(kg_linear_stats *st, int64_t d, int with_gram);
void kg_stats_free(kg_linear_stats *st);
/* Zeroes the sums and counts, keeping the allocation. */
void kg_stats_reset(kg_linear_stats *st);

/* Adds the rows of X (float32, [rows, d] row-major, not modified), which hold
 * n_samples_in_X whole calibration sequences (e.g. 1 sequence of 2048
 * tokens). Non-finite inputs are an error (KG_ERR_NUMERIC) and leave st
 * unchanged. The Gram update is a BLAS dsyrk over float64 copies of row
 * chunks, so it is exact up to float64 summation order. */
int kg_stats_accumulate(kg_linear_stats *st, const float *X, int64_t rows, int64_t n_samples_in_X);

/* dst += src (same d; src's Gram is needed when dst has one). */
int kg_stats_merge(kg_linear_stats *dst, const kg_linear_stats *src);

/* Sums the statistics of every rank of comm in place (MPI_Allreduce with
 * MPI_IN_PLACE; all ranks must call it with the same d and with_gram).
 * comm == MPI_COMM_NULL (or a null handle) is a no-op. KG_ERR_COMM on MPI failure. */
int kg_stats_allreduce(kg_linear_stats *st, MPI_Comm comm);

/* The reference Hessian H = (2 / n_samples) * sum x x^T, full symmetric,
 * written to the caller's d*d buffer. KG_ERR_ARG without a Gram or samples. */
int kg_stats_hessian(const kg_linear_stats *st, double *H);
int kg_stats_hessian_f32(const kg_linear_stats *st, float *H);

/* The Gram sum itself, sum x x^T, full symmetric, unscaled (for
 * kg_recon_error). */
int kg_stats_gram(const kg_linear_stats *st, double *G);

/* Wanda's scaler_row = (1 / n_samples) * sum over tokens of x_j^2, into the
 * caller's d buffer. */
int kg_stats_scaler_row(const kg_linear_stats *st, double *scaler_row);

/* Reconstruction error of replacing W by W2 (both [rows, cols] float32,
 * cols = d): trace((W - W2) G (W - W2)^T) with G symmetric [cols, cols]
 * float64. With G from kg_stats_gram this is ||X W^T - X W2^T||_F^2 over
 * the calibration tokens; with G = H it is 2/n_samples times that. Only the
 * lower triangle of G is read. Result in *err. */
int kg_recon_error(const float *W, const float *W2, int64_t rows, int64_t cols, const double *G, double *err);

#endif
