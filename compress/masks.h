/* Pruning masks: selection rules shared by the pruning methods, and
 * magnitude pruning.
 *
 * A mask is uint8_t per weight, row-major like W, 1 = pruned (set to zero).
 * Scores are float64; lower scores are pruned first. Every function takes
 * caller-owned buffers and returns KG_OK or a negative kg_code (kg_error set);
 * scratch memory is allocated and freed inside.
 *
 * Rules (see compress/README.md):
 * - threshold rule (magnitude, SparseGPT blocks): t = the element of rank
 *   floor(n * sparsity) (0-based) of the ascending scores, prune every
 *   score <= t. That prunes floor(n*s) + 1 weights plus any ties with t, as
 *   the reference's `W_metric <= sort(W_metric)[int(numel*s)]` does.
 * - per-row rule (Wanda): prune exactly floor(cols * sparsity) weights of each
 *   row, the smallest in (score, column) order: among equal scores the lower
 *   column goes first, as a stable ascending sort does.
 * - N:M rule: in each row, each group of M consecutive columns starting at
 *   column 0 loses its N smallest in (score, column) order (the reference's
 *   topk(largest=False) with ties resolved toward the lower column).
 * sparsity == 0 prunes nothing under every rule (the reference's threshold
 * rule would still prune the minimum; nobody asks for that). */
#ifndef KG_COMPRESS_MASKS_H
#define KG_COMPRESS_MASKS_H

#include <stdint.h>

/* Options shared by magnitude and Wanda pruning. */
typedef struct kg_prune_opts {
  double sparsity; /* fraction of weights to prune, [0, 1); ignored for N:M */
  int prune_n;     /* N of N:M (0 = unstructured) */
  int prune_m;     /* M of N:M; cols must be a multiple */
  int use_variant; /* Wanda only: the alpha-bisection variant */
} kg_prune_opts;

/* Checks opts against a rows x cols matrix; the message names `what`. */
int kg_prune_opts_check(const kg_prune_opts *opts, int64_t rows, int64_t cols, const char *what);

/* The value of rank k (0-based) among x[0..n) in ascending order. x is
 * reordered (a partial sort); no allocation. x must hold no NaN. */
double kg_select_kth(double *x, int64_t n, int64_t k);

/* Threshold rule over all n scores. *n_pruned (nullable) gets the count. */
int kg_mask_threshold(const double *score, int64_t n, double sparsity, uint8_t *mask, int64_t *n_pruned);

/* Per-row rule over a rows x cols score matrix. */
int kg_mask_rows(const double *score, int64_t rows, int64_t cols, double sparsity, uint8_t *mask);

/* N:M rule over a rows x cols score matrix. */
int kg_mask_nm(const double *score, int64_t rows, int64_t cols, int n, int m, uint8_t *mask);

/* Marks in pruned[0..m) the n smallest of s[0..m) in (score, index) order;
 * the building block of the N:M rule (also used inside the SparseGPT sweep). */
void kg_nm_select(const double *s, int m, int n, uint8_t *pruned);

/* Zeroes W[i] where mask[i]; returns how many were zeroed. */
int64_t kg_mask_apply(float *W, const uint8_t *mask, int64_t n);

/* Fails with KG_ERR_NUMERIC naming `what` when W holds a NaN or infinity. */
int kg_check_finite(const float *W, int64_t n, const char *what);

/* Magnitude pruning (locuslab/wanda prune_magnitude): score |W|, threshold
 * rule over the whole matrix, or N:M. The mask variant writes mask and leaves
 * W alone; the prune variant zeroes W in place. */
int kg_magnitude_mask(const float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts, uint8_t *mask);
int kg_magnitude_prune(float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts);

#endif
