/* Wanda pruning (locuslab/wanda prune_wanda, also OWL's per-layer pass).
 *
 * Score S_ij = |W_ij| * sqrt(scaler_row_j), with scaler_row from
 * kg_stats_scaler_row (mean over calibration sequences of ||X_j||^2).
 * Comparison groups are output rows: each row loses floor(cols * sparsity)
 * weights (per-row rule of masks.h), or N of every M consecutive inputs.
 *
 * use_variant reproduces the reference's "wanda variant": per row, prune the
 * smallest scores whose cumulative sum stays within alpha times the row's
 * total, with alpha found by bisection (start 0.4, bracket [0, 0.8], stop
 * when |achieved - target| <= 0.001 or the bracket is narrower than 0.001).
 * The achieved sparsity is compared in float32, as the reference's tensors
 * are. A row where even the smallest score exceeds the cut loses nothing
 * (the reference would index position -1 there and fail).
 *
 * W is float32 [rows, cols] row-major (cols = in_features); scaler_row has
 * cols entries. Caller owns every buffer. */
#ifndef KG_COMPRESS_WANDA_H
#define KG_COMPRESS_WANDA_H

#include <stdint.h>

#include "compress/masks.h"

typedef struct kg_wanda_report {
  int64_t pruned;       /* weights masked */
  double alpha;         /* variant only: the final alpha (else 0) */
  int iterations;       /* variant only: bisection steps taken */
} kg_wanda_report;

/* score[rows*cols] = |W| * sqrt(scaler_row). */
int kg_wanda_scores(const float *W, int64_t rows, int64_t cols, const double *scaler_row, double *score);

/* Writes the mask (1 = pruned) without touching W. rep is nullable. */
int kg_wanda_mask(const float *W, int64_t rows, int64_t cols, const double *scaler_row, const kg_prune_opts *opts,
                  uint8_t *mask, kg_wanda_report *rep);

/* Zeroes the masked weights of W in place. rep is nullable. */
int kg_wanda_prune(float *W, int64_t rows, int64_t cols, const double *scaler_row, const kg_prune_opts *opts,
                   kg_wanda_report *rep);

#endif
