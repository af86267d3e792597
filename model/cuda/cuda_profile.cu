/* KG_CUDA_PROFILE=1: device time of the backend's operations by kind, from
 * CUDA events around each one on the backend's stream, reported when the
 * backend is destroyed. The span from the first timed operation to the last
 * minus the sum of their times is the time the stream held no timed work:
 * host stalls, synchronizations and launch gaps. Timing costs two event
 * records per operation; off (the default), one branch. */
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_internal.h"

static const char *const kind_names[KG_PROF_KINDS] = {"gemm",  "attention", "norm", "rope", "swiglu", "add",
                                                      "head",  "embed",     "cast", "copy"};

/* Event pairs recorded but not yet read; read at the next synchronization. */
#define PROFILE_PAIRS 4096

struct kg_cuda_profile {
  cudaEvent_t first;  /* recorded before the first timed operation */
  cudaEvent_t start[PROFILE_PAIRS], end[PROFILE_PAIRS];
  int kind[PROFILE_PAIRS];
  int n_pending;
  int started;
  double ms[KG_PROF_KINDS];
  long long count[KG_PROF_KINDS];
  double span_ms;     /* first .. end of the latest pair read */
};

int kg_cuda_profile_init(kg_cuda_impl *c) {
  const char *v = getenv("KG_CUDA_PROFILE");
  if (!v || !*v || !strcmp(v, "0")) return KG_OK;
  kg_cuda_profile *p = (kg_cuda_profile *)calloc(1, sizeof(*p));
  if (!p) return kg_error(KG_ERR_NOMEM, "out of memory for the CUDA profile");
  c->profile = p;
  KG_CUDA(cudaEventCreate(&p->first));
  for (int i = 0; i < PROFILE_PAIRS; i++) {
    KG_CUDA(cudaEventCreate(&p->start[i]));
    KG_CUDA(cudaEventCreate(&p->end[i]));
  }
  return KG_OK;
}

/* Reads every pending pair; the stream must have passed them. */
static void collect(kg_cuda_profile *p) {
  for (int i = 0; i < p->n_pending; i++) {
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, p->start[i], p->end[i]) == cudaSuccess) {
      p->ms[p->kind[i]] += ms;
      p->count[p->kind[i]]++;
    }
  }
  float span = 0.0f;
  if (p->n_pending && cudaEventElapsedTime(&span, p->first, p->end[p->n_pending - 1]) == cudaSuccess)
    p->span_ms = span;
  p->n_pending = 0;
  cudaGetLastError();
}

void kg_cuda_profile_synced(kg_cuda_impl *c) {
  if (c->profile) collect(c->profile);
}

int kg_cuda_profile_begin(kg_cuda_impl *c, int kind) {
  kg_cuda_profile *p = c->profile;
  if (!p) return -1;
  if (p->n_pending == PROFILE_PAIRS) {
    if (cudaStreamSynchronize(c->ctx.stream) != cudaSuccess) return -1;
    collect(p);
  }
  if (!p->started) {
    cudaEventRecord(p->first, c->ctx.stream);
    p->started = 1;
  }
  const int i = p->n_pending++;
  p->kind[i] = kind;
  cudaEventRecord(p->start[i], c->ctx.stream);
  return i;
}

void kg_cuda_profile_end(kg_cuda_impl *c, int pair) {
  if (pair < 0 || !c->profile) return;
  cudaEventRecord(c->profile->end[pair], c->ctx.stream);
}

void kg_cuda_profile_report(kg_cuda_impl *c) {
  kg_cuda_profile *p = c->profile;
  if (!p) return;
  if (cudaStreamSynchronize(c->ctx.stream) == cudaSuccess) collect(p);
  double busy = 0.0;
  for (int k = 0; k < KG_PROF_KINDS; k++) busy += p->ms[k];
  kg_info("cuda profile: span %.1f ms, operations %.1f ms, stream without timed work %.1f ms (%.1f%%)", p->span_ms,
          busy, p->span_ms - busy, p->span_ms > 0 ? 100.0 * (p->span_ms - busy) / p->span_ms : 0.0);
  for (int k = 0; k < KG_PROF_KINDS; k++)
    if (p->count[k])
      kg_info("cuda profile: %-9s %10.1f ms %8lld calls %9.3f ms/call", kind_names[k], p->ms[k], p->count[k],
              p->ms[k] / (double)p->count[k]);
  cudaEventDestroy(p->first);
  for (int i = 0; i < PROFILE_PAIRS; i++) {
    cudaEventDestroy(p->start[i]);
    cudaEventDestroy(p->end[i]);
  }
  free(p);
  c->profile = NULL;
}
