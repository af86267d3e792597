/* Choosing the compression engine (see engine.h). */
#include <stdlib.h>
#include <string.h>

#include "compress/engine.h"
#include "io/error.h"
#include "io/log.h"

#ifndef KG_HAVE_CUDA
int kg_engine_cuda_create(kg_model *m, const kg_compress_opts *o, kg_engine **out) {
  *out = NULL;
  return kg_error(KG_ERR_UNSUPPORTED, "this build has no CUDA compression engine (configure with -DKG_CUDA=ON)");
}

void kg_engine_shutdown(void) {}

static int backend_is_cuda(const kg_backend *be) { return 0; }
#else
#include "model/cuda/kg_cuda.h"

static int backend_is_cuda(const kg_backend *be) { return kg_cuda_context_of(be) != NULL; }
#endif

int kg_engine_create(kg_model *m, const kg_compress_opts *o, kg_engine **out) {
  *out = NULL;
  const char *want = getenv("KG_COMPRESS_ENGINE");
  if (!want || !*want || !strcmp(want, "auto"))
    return backend_is_cuda(m->be) ? kg_engine_cuda_create(m, o, out) : kg_engine_cpu_create(m, o, out);
  if (!strcmp(want, "cpu")) return kg_engine_cpu_create(m, o, out);
  if (!strcmp(want, "cuda")) {
    if (!backend_is_cuda(m->be))
      return kg_error(KG_ERR_ARG, "KG_COMPRESS_ENGINE=cuda needs the CUDA backend (model is on '%s')", m->be->ops->name);
    return kg_engine_cuda_create(m, o, out);
  }
  return kg_error(KG_ERR_ARG, "KG_COMPRESS_ENGINE='%s' is not cpu, cuda or auto", want);
}

void kg_engine_destroy(kg_engine *e) {
  if (e) e->ops->destroy(e);
}
