#include "compress/sparsegpt.h"

#include <string.h>

#include "io/error.h"

void kg_sparsegpt_opts_default(kg_sparsegpt_opts *opts, double sparsity) {
  memset(opts, 0, sizeof *opts);
  opts->sparsity = sparsity;
  opts->blocksize = 128;
  opts->percdamp = 0.01;
  opts->max_damp_retries = 3;
}

int kg_sparsegpt_prune(float *W, int64_t rows, int64_t cols, const double *H, const kg_sparsegpt_opts *opts,
                       kg_sparsegpt_result *res) {
  kg_sparsegpt_result local;
  if (!opts) return kg_error(KG_ERR_ARG, "sparsegpt: no options");
  kg_obs_job job = {
      .W = W, .rows = rows, .cols = cols, .H = H, .blocksize = opts->blocksize, .percdamp = opts->percdamp,
      .max_damp_retries = opts->max_damp_retries, .sparsity = opts->prune_n ? 0.0 : opts->sparsity,
      .prune_n = opts->prune_n, .prune_m = opts->prune_m, .quant = opts->quant,
  };
  int rc = kg_obs_sweep(&job, res ? res : &local);
  if (rc < 0) return kg_error_context("sparsegpt %lldx%lld: ", (long long)rows, (long long)cols);
  return KG_OK;
}
