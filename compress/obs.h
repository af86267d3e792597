/* The column sweep shared by SparseGPT (IST-DASLab/sparsegpt fasterprune)
 * and GPTQ (IST-DASLab/gptq fasterquant): optimal-brain-surgeon updates in
 * blocks of columns with lazy (GEMM) updates of the columns to the right.
 * Callers use kg_sparsegpt_prune and kg_gptq_quantize; this header exists so
 * both share one implementation.
 *
 * Steps, as the references do them (float64 throughout here):
 *  1. quantizer parameters per row from the original W when quantizing
 *     without groups (before dead columns are zeroed, like find_params(W));
 *  2. dead inputs (H_ii == 0): H_ii = 1 and W[:, i] = 0;
 *  3. act_order: columns ordered by descending diag(H) (ties: lower index
 *     first), W and H permuted, the result permuted back;
 *  4. damping percdamp * mean(diag H) added to the diagonal, then
 *     Hinv = upper Cholesky factor of H^{-1};
 *  5. per block of `blocksize` columns: an unstructured mask from
 *     w^2 / diag(Hinv)^2 by the threshold rule of masks.h, or an N:M mask
 *     chosen every M columns on the updated weights; per column the pruned
 *     and/or quantized value q, loss (w - q)^2 / Hinv_ii^2, and the error
 *     (w - q) / Hinv_ii propagated to the later columns of the block; after
 *     the block one GEMM updates all columns to its right;
 *  6. with quantizer groups, parameters are recomputed at every group start
 *     from W[:, c:c+group_size] as the reference reads it: columns inside the
 *     current block as they were at the block's start, later columns with
 *     the updates of earlier blocks only.
 *
 * Retry policy (not in the references, which stop on a failed Cholesky):
 * when the damped H is not positive definite, percdamp is multiplied by 10
 * and the factorization retried from the caller's H, at most
 * max_damp_retries times; the damping used is reported. Exhausting the
 * retries returns KG_ERR_NUMERIC. */
#ifndef KG_COMPRESS_OBS_H
#define KG_COMPRESS_OBS_H

#include <stdint.h>

#include "compress/quant.h"

typedef struct kg_obs_result {
  double loss;          /* sum of the reference's Losses (0.5 * sum (w-q)^2 / Hinv_ii^2) */
  double percdamp;      /* relative damping actually used */
  double damp;          /* absolute damping added to diag(H) */
  int retries;          /* damping increases needed (0 = as asked) */
  int64_t dead_columns; /* inputs with H_ii == 0 */
  int64_t masked;       /* weights the pruning mask removed */
  int64_t zeros;        /* exact zeros in W afterwards (masked, dead, rounded to 0) */
  double seconds;       /* wall time of the solve */
} kg_obs_result;

typedef struct kg_obs_job {
  float *W;             /* [rows, cols] row-major, updated in place */
  int64_t rows, cols;
  const double *H;      /* [cols, cols] full symmetric, not modified */
  int blocksize;
  double percdamp;
  int max_damp_retries;
  double sparsity;      /* unstructured pruning fraction, [0, 1); 0 = none */
  int prune_n, prune_m; /* N:M pruning when prune_n > 0 */
  const kg_quant_opts *quant; /* NULL = no quantization */
  int act_order;
  float *scales, *zeros; /* nullable, [rows * ngroups]; group g = permuted positions [g*gs, (g+1)*gs) */
  int32_t *perm;        /* nullable, [cols]: column processed at position k (identity without act_order) */
} kg_obs_job;

/* Validates a solve's parameters (shape, blocksize, damping, N:M or sparsity,
 * quantizer); shared by the CPU and CUDA solvers so both refuse the same inputs. */
int kg_obs_check_params(int64_t rows, int64_t cols, int blocksize, double percdamp, int max_damp_retries, int prune_n,
                        int prune_m, double sparsity, const kg_quant_opts *quant);

/* GPTQ's act_order permutation, shared by the CPU and CUDA solvers:
 * perm[k] = column processed at position k, by descending diag (diag[i *
 * stride]; a dead column counts as 1.0), ties keeping the lower column first. */
int kg_obs_act_order_perm(const double *diag, int64_t stride, const uint8_t *dead, int64_t n, int32_t *perm);

int kg_obs_sweep(const kg_obs_job *job, kg_obs_result *res);

#endif
