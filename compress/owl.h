/* OWL, outlier-weighed layerwise sparsity (luuyin/OWL lib/prune_all.py,
 * prune_wanda_outlier and prune_sparsegpt_outlier).
 *
 * 1. For every transformer block, on the dense weights and calibration
 *    statistics of a first pass, the Wanda metric |W| * sqrt(scaler_row) of
 *    all the block's linears is concatenated into one vector; the block's
 *    outlier ratio is 100 * count(metric > M * mean(metric)) / size, with the
 *    mean over the whole block (not per linear).
 * 2. The ratios r_l of all blocks become densities
 *      d_l = (r_l - min r) * (1 / (max r - min r) * lambda * 2)
 *      d_l = d_l - mean(d) + (1 - target)
 *    and block l is pruned at sparsity s_l = 1 - d_l (0.01 where s_l <= 0),
 *    every linear of the block alike, by Wanda (per-row rule) or by
 *    SparseGPT (fasterprune with s_l). The arithmetic follows the reference's
 *    NumPy expressions in the same order (mean in NumPy's summation order),
 *    so the floors floor(cols * s_l) match it.
 * When all ratios are equal the reference divides by zero and gets NaN;
 * here every block then gets the target sparsity. */
#ifndef KG_COMPRESS_OWL_H
#define KG_COMPRESS_OWL_H

#include <stdint.h>

#define KG_OWL_DEFAULT_M 5.0
#define KG_OWL_DEFAULT_LAMBDA 0.08

/* One linear of a block: dense weights [rows, cols] and its scaler_row[cols]
 * (kg_stats_scaler_row). Borrowed, read only. */
typedef struct kg_owl_linear {
  const float *W;
  int64_t rows, cols;
  const double *scaler_row;
} kg_owl_linear;

/* Outlier ratio in percent of one block made of n_linear linears. */
int kg_owl_outlier_ratio(const kg_owl_linear *lin, int n_linear, double M, double *ratio_percent);

/* Per-block sparsities from the blocks' outlier ratios. sparsity[n_layers]
 * is caller-owned. */
int kg_owl_allocate(const double *ratio, int n_layers, double target_sparsity, double lambda, double *sparsity);

#endif
