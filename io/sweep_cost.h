/* A rough cost model for sweep cells, for `kickgrid plan` (and for sizing a
 * batch job). FLOPs are counted from the model's parameter count P and shape:
 *   forward pass     2 * P per token (attention scores ignored)
 *   calibration      passes * 2 * P * nsamples * seqlen, where passes is 1
 *                    (statistics) + 1 when pruned outputs are propagated
 *                    + 1 with true_sequential + 1 for OWL's outlier pass
 *                    + 1 for self-generated calibration text
 *   SparseGPT/GPTQ   per linear (d_out x d_in): Hessian 2 * T * d_in^2,
 *                    inverse 4/3 * d_in^3, updates d_out * d_in * (d_in + B)
 *   evaluation       2 * P * tokens of every perplexity text, JS window and
 *                    task prompt (assumed token counts in sweep_cost.c)
 * Hours follow from assumed sustained throughputs; every assumption is in
 * kg_cost_assumptions so the CLI can print it. */
#ifndef KG_IO_SWEEP_COST_H
#define KG_IO_SWEEP_COST_H

#include "io/sweep_config.h"

typedef struct kg_cost_assumptions {
  double cpu_flops_per_s;   /* one CPU node, fp32 BLAS on all cores */
  double gpu_flops_per_s;   /* one H100, sustained */
  double wikitext2_tokens;  /* WikiText-2 test split, LLaMA tokenizer */
  double c4_eval_windows;   /* C4 validation windows per perplexity run */
  double tinystories_tokens; /* the TinyStories sample in the data directory */
  double bytes_per_token;   /* for file: texts */
} kg_cost_assumptions;

void kg_cost_default_assumptions(kg_cost_assumptions *a);

typedef struct kg_cell_cost {
  double calib_flops;
  double hessian_flops;
  double eval_flops;
  double total_flops;
  double eval_tokens;
  int params_known;  /* 0: the model's size is unknown and every number is 0 */
  int hessian_known; /* 0: SparseGPT/GPTQ work needs the shape, which is unknown */
} kg_cell_cost;

/* Cost of computing one cell (replicas cost nothing: call it on computed cells). */
void kg_sweep_cell_cost(const kg_sweep *sweep, const kg_sweep_cell *cell, const kg_cost_assumptions *a,
                        kg_cell_cost *out);

#endif
