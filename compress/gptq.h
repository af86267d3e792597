/* GPTQ (IST-DASLab/gptq, GPTQ.fasterquant): weight-only quantization of one
 * linear layer with second-order error compensation, returning dequantized
 * ("simulated") float32 weights. See compress/obs.h for the steps, the
 * float64 arithmetic and the damping retry policy; compress/quant.h for the
 * quantizer.
 *
 * Groups (group_size > 0) follow the reference without static_groups:
 * parameters are recomputed at every group start from the partly updated
 * weights; with act_order the groups are runs of group_size consecutive
 * columns in the permuted order (perm says which).
 *
 * W: float32 [rows, cols] row-major, replaced in place. H: float64
 * [cols, cols] full symmetric (kg_stats_hessian), not modified. scales and
 * zeros (nullable) receive [rows * ngroups] parameters, group g covering
 * permuted positions [g*gs, (g+1)*gs); perm (nullable) receives [cols]: the
 * original column at each permuted position (the identity without
 * act_order). */
#ifndef KG_COMPRESS_GPTQ_H
#define KG_COMPRESS_GPTQ_H

#include <stdint.h>

#include "compress/obs.h"
#include "compress/quant.h"

typedef struct kg_gptq_opts {
  kg_quant_opts quant;
  int act_order;        /* 0 */
  int blocksize;        /* 128 */
  double percdamp;      /* 0.01 */
  int max_damp_retries; /* 3 */
} kg_gptq_opts;

typedef kg_obs_result kg_gptq_result;

/* Reference defaults: asymmetric, per-channel, no act_order. */
void kg_gptq_opts_default(kg_gptq_opts *opts, int bits);

/* res is nullable. Errors as kg_sparsegpt_prune; W is unchanged on error. */
int kg_gptq_quantize(float *W, int64_t rows, int64_t cols, const double *H, const kg_gptq_opts *opts,
                     kg_gptq_result *res, float *scales, float *zeros, int32_t *perm);

#endif
