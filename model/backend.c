#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "model/backend.h"

#ifndef KG_HAVE_CUDA
int kg_cuda_backend_create(int device, kg_backend **out) {
  *out = NULL;
  return kg_error(KG_ERR_UNSUPPORTED, "this build of kickgrid has no CUDA backend (configure with -DKG_CUDA=ON)");
}
#endif

int kg_backend_create(const char *name, int n_threads, kg_backend **out) {
  *out = NULL;
  if (!name || !strcmp(name, "cpu")) return kg_cpu_backend_create(n_threads, out);
  if (!strcmp(name, "cuda")) return kg_cuda_backend_create(-1, out);
  if (!strncmp(name, "cuda:", 5)) {
    char *end = NULL;
    long dev = strtol(name + 5, &end, 10);
    if (*end || dev < 0 || dev > 1024) return kg_error(KG_ERR_ARG, "bad backend '%s' (expected cuda:N)", name);
    return kg_cuda_backend_create((int)dev, out);
  }
  return kg_error(KG_ERR_ARG, "unknown backend '%s' (expected cpu, cuda or cuda:N)", name);
}

void kg_backend_destroy(kg_backend *be) {
  if (be) be->ops->destroy(be);
}

int kg_backend_set_memory_budget(kg_backend *be, size_t bytes) {
  if (!be) return kg_error(KG_ERR_ARG, "no backend to set a memory budget on");
  return be->ops->set_memory_budget ? be->ops->set_memory_budget(be, bytes) : KG_OK;
}

int kg_backend_memory_stats(kg_backend *be, size_t *used, size_t *peak) {
  if (used) *used = 0;
  if (peak) *peak = 0;
  if (!be) return kg_error(KG_ERR_ARG, "no backend");
  return be->ops->memory_stats ? be->ops->memory_stats(be, used, peak) : KG_OK;
}
