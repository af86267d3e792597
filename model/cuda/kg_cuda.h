/* Shared by every CUDA source of kickgrid (model/cuda, compress/cuda): the
 * CUDA backend's context and error helpers. Include only from .cu files or
 * files compiled when KG_HAVE_CUDA is defined. */
#ifndef KG_MODEL_CUDA_KG_CUDA_H
#define KG_MODEL_CUDA_KG_CUDA_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

/* kickgrid's headers are C: .cu files include them inside extern "C". */
#ifdef __cplusplus
extern "C" {
#endif
#include "io/error.h"
#include "io/log.h"
#include "model/backend.h"

/* What the CUDA backend holds; owned by the backend, valid while it lives. */
typedef struct kg_cuda_context {
  int device;
  cudaStream_t stream;          /* all backend work is ordered on this stream */
  cublasHandle_t cublas;
  cublasLtHandle_t cublaslt;
  void *workspace;              /* cuBLASLt workspace */
  size_t workspace_bytes;
  size_t memory_budget_bytes;   /* 0: the whole device (gpu_memory_gb) */
} kg_cuda_context;

/* The context of a CUDA backend, or NULL when `be` is another backend. */
const kg_cuda_context *kg_cuda_context_of(const kg_backend *be);

/* Refreshes resident weight w (already uploaded, not streamed) from
 * rows * cols float32 values in device memory, with the rounding
 * weight_upload applies to host values, on the backend's stream; waits for
 * it (it reads back whether the rounding was exact, w->exact). Returns
 * KG_ERR_UNSUPPORTED for a streamed or unloaded weight (upload from the host
 * then). */
int kg_cuda_weight_refresh(kg_backend *be, kg_weight *w, const float *dev);
/* dev[rows * cols] (device float32) = the resident 16-bit copy of w, widened,
 * on the backend's stream: the master weights themselves when w->exact (the
 * last upload or refresh lost nothing in the rounding). KG_ERR_UNSUPPORTED
 * for an inexact, streamed or unloaded weight. */
int kg_cuda_weight_widen(kg_backend *be, const kg_weight *w, float *dev);

/* Turn CUDA/cuBLAS failures into kg_error codes (KG_ERR_DEVICE, or
 * KG_ERR_NOMEM for allocation failures) naming what failed. */
int kg_cuda_fail(cudaError_t e, const char *what, const char *file, int line);
int kg_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line);
#define KG_CUDA(call)                                                                  \
  do {                                                                                 \
    cudaError_t kg_cuda_e_ = (call);                                                   \
    if (kg_cuda_e_ != cudaSuccess) return kg_cuda_fail(kg_cuda_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define KG_CUBLAS(call)                                                                \
  do {                                                                                 \
    cublasStatus_t kg_cublas_s_ = (call);                                              \
    if (kg_cublas_s_ != CUBLAS_STATUS_SUCCESS) return kg_cublas_fail(kg_cublas_s_, #call, __FILE__, __LINE__); \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif
