#include "compress/gptq.h"

#include <string.h>

#include "io/error.h"

void kg_gptq_opts_default(kg_gptq_opts *opts, int bits) {
  memset(opts, 0, sizeof *opts);
  opts->quant.bits = bits;
  opts->quant.group_size = -1;
  opts->blocksize = 128;
  opts->percdamp = 0.01;
  opts->max_damp_retries = 3;
}

int kg_gptq_quantize(float *W, int64_t rows, int64_t cols, const double *H, const kg_gptq_opts *opts,
                     kg_gptq_result *res, float *scales, float *zeros, int32_t *perm) {
  kg_gptq_result local;
  if (!opts) return kg_error(KG_ERR_ARG, "gptq: no options");
  kg_obs_job job = {
      .W = W, .rows = rows, .cols = cols, .H = H, .blocksize = opts->blocksize, .percdamp = opts->percdamp,
      .max_damp_retries = opts->max_damp_retries, .quant = &opts->quant, .act_order = opts->act_order,
      .scales = scales, .zeros = zeros, .perm = perm,
  };
  int rc = kg_obs_sweep(&job, res ? res : &local);
  if (rc < 0) return kg_error_context("gptq %lldx%lld: ", (long long)rows, (long long)cols);
  return KG_OK;
}
