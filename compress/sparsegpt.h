/* SparseGPT (IST-DASLab/sparsegpt, SparseGPT.fasterprune; the copy in
 * locuslab/wanda and luuyin/OWL is the same algorithm): prune one linear
 * layer with second-order error compensation. See compress/obs.h for the
 * steps, the float64 arithmetic and the damping retry policy.
 *
 * W: float32 [rows = out_features, cols = in_features] row-major, replaced
 *    in place by the pruned (and, with opts->quant, quantized) weights.
 * H: float64 [cols, cols] full symmetric, the reference Hessian
 *    2/n * sum x x^T (kg_stats_hessian); not modified.
 * Unstructured masks are chosen per block of `blocksize` columns by the
 * threshold rule (floor(rows*count*sparsity) + 1 weights plus ties per block,
 * as the reference); N:M masks every M columns on the updated weights.
 * OWL + SparseGPT passes OWL's per-layer sparsity as opts->sparsity.
 * Memory: about 8*(cols^2 + rows*cols) bytes of scratch, freed on return. */
#ifndef KG_COMPRESS_SPARSEGPT_H
#define KG_COMPRESS_SPARSEGPT_H

#include <stdint.h>

#include "compress/obs.h"
#include "compress/quant.h"

typedef struct kg_sparsegpt_opts {
  double sparsity;            /* [0, 1); unused with N:M */
  int prune_n, prune_m;       /* N:M when prune_n > 0 (M divides cols and blocksize) */
  int blocksize;              /* 128 */
  double percdamp;            /* 0.01 */
  int max_damp_retries;       /* 3: percdamp up to 10 */
  const kg_quant_opts *quant; /* NULL: prune only; else quantize the kept weights (sparsegpt's --wbits) */
} kg_sparsegpt_opts;

typedef kg_obs_result kg_sparsegpt_result;

/* The reference defaults, with the given sparsity. */
void kg_sparsegpt_opts_default(kg_sparsegpt_opts *opts, double sparsity);

/* res is nullable. Returns KG_OK, KG_ERR_ARG, KG_ERR_NUMERIC (non-finite
 * input, or a Hessian still not positive definite after the retries) or
 * KG_ERR_NOMEM; W is unchanged on error. */
int kg_sparsegpt_prune(float *W, int64_t rows, int64_t cols, const double *H, const kg_sparsegpt_opts *opts,
                       kg_sparsegpt_result *res);

#endif
