/* Method names and properties, and compressing one linear layer given its
 * input statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"
#include "compress/compress_internal.h"
#include "compress/gptq.h"
#include "compress/masks.h"
#include "compress/sparsegpt.h"
#include "compress/wanda.h"
#include "io/error.h"
#include "io/log.h"

static const char *const method_names[KG_METHOD_COUNT] = {"dense", "magnitude", "wanda", "sparsegpt",
                                                          "owl-wanda", "owl-sparsegpt", "rtn", "gptq"};

int kg_method_parse(const char *name, kg_method_kind *out) {
  for (int k = 0; k < KG_METHOD_COUNT; k++)
    if (!strcmp(name, method_names[k])) {
      *out = (kg_method_kind)k;
      return KG_OK;
    }
  return kg_error(KG_ERR_ARG, "unknown method '%s' (dense, magnitude, wanda, sparsegpt, owl-wanda, owl-sparsegpt, rtn, gptq)",
                  name);
}

const char *kg_method_name(kg_method_kind kind) { return kind < KG_METHOD_COUNT ? method_names[kind] : "?"; }

int kg_method_uses_calibration(kg_method_kind k) {
  return k == KG_METHOD_WANDA || k == KG_METHOD_SPARSEGPT || k == KG_METHOD_OWL_WANDA || k == KG_METHOD_OWL_SPARSEGPT ||
         k == KG_METHOD_GPTQ;
}

int kg_method_uses_hessian(kg_method_kind k) {
  return k == KG_METHOD_SPARSEGPT || k == KG_METHOD_OWL_SPARSEGPT || k == KG_METHOD_GPTQ;
}

int kg_method_is_quantization(kg_method_kind k) { return k == KG_METHOD_RTN || k == KG_METHOD_GPTQ; }

void kg_compress_opts_defaults(kg_compress_opts *o) {
  memset(o, 0, sizeof(*o));
  o->method = KG_METHOD_WANDA;
  o->sparsity = 0.5;
  o->quant.bits = 4;
  o->quant.group_size = -1;
  o->percdamp = 0.01;
  o->blocksize = 128;
  o->owl_m = 5.0;
  o->owl_lambda = 0.08;
  o->recon_samples = 16;
  o->team = MPI_COMM_NULL;
}

void kg_compress_report_free(kg_compress_report *r) {
  if (!r) return;
  free(r->linears);
  free(r->layer_sparsity);
  memset(r, 0, sizeof(*r));
}

int kg_compress_linear(const kg_compress_opts *o, double sparsity, float *W, int64_t rows, int64_t cols,
                       const double *scaler_row, const double *H, kg_linear_report *lr) {
  kg_prune_opts popts = {sparsity, o->prune_n, o->prune_m, o->use_variant};
  lr->percdamp = NAN;
  lr->damp_retries = 0;
  switch (o->method) {
  case KG_METHOD_DENSE: return KG_OK;
  case KG_METHOD_MAGNITUDE: return kg_magnitude_prune(W, rows, cols, &popts);
  case KG_METHOD_WANDA:
  case KG_METHOD_OWL_WANDA: {
    kg_wanda_report wr;
    return kg_wanda_prune(W, rows, cols, scaler_row, &popts, &wr);
  }
  case KG_METHOD_SPARSEGPT:
  case KG_METHOD_OWL_SPARSEGPT: {
    kg_sparsegpt_opts so;
    kg_sparsegpt_opts_default(&so, sparsity);
    so.prune_n = o->prune_n;
    so.prune_m = o->prune_m;
    so.blocksize = o->blocksize;
    so.percdamp = o->percdamp;
    kg_sparsegpt_result res;
    KG_TRY(kg_sparsegpt_prune(W, rows, cols, H, &so, &res));
    lr->percdamp = res.percdamp;
    lr->damp_retries = res.retries;
    return KG_OK;
  }
  case KG_METHOD_RTN: return kg_rtn_quantize(W, rows, cols, &o->quant, NULL, NULL);
  case KG_METHOD_GPTQ: {
    kg_gptq_opts go;
    kg_gptq_opts_default(&go, o->quant.bits);
    go.quant = o->quant;
    go.act_order = o->act_order;
    go.blocksize = o->blocksize;
    go.percdamp = o->percdamp;
    kg_gptq_result res;
    KG_TRY(kg_gptq_quantize(W, rows, cols, H, &go, &res, NULL, NULL, NULL));
    lr->percdamp = res.percdamp;
    lr->damp_retries = res.retries;
    return KG_OK;
  }
  default: return kg_error(KG_ERR_ARG, "method %d cannot compress a linear", (int)o->method);
  }
}
