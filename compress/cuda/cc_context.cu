/* The compress layer's device context: stream, cuBLAS and cuSOLVER handles,
 * flags and grow-only scratch (see cc.h). */
#include <stdlib.h>
#include <string.h>

#include "compress/cuda/cc_internal.cuh"

extern "C" {
#include "io/log.h"
}

extern "C" int kg_cc_cuda_fail(cudaError_t e, const char *what, const char *file, int line) {
  const int code = e == cudaErrorMemoryAllocation ? KG_ERR_NOMEM : KG_ERR_DEVICE;
  return kg_error_at(file, line, code, "CUDA: %s failed: %s", what, cudaGetErrorString(e));
}

extern "C" int kg_cc_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line) {
  const int code = s == CUBLAS_STATUS_ALLOC_FAILED ? KG_ERR_NOMEM : KG_ERR_DEVICE;
  return kg_error_at(file, line, code, "cuBLAS: %s failed: %s", what, cublasGetStatusString(s));
}

extern "C" int kg_cc_cusolver_fail(cusolverStatus_t s, const char *what, const char *file, int line) {
  const int code = s == CUSOLVER_STATUS_ALLOC_FAILED ? KG_ERR_NOMEM : KG_ERR_DEVICE;
  return kg_error_at(file, line, code, "cuSOLVER: %s failed with status %d", what, (int)s);
}

extern "C" int kg_cc_alloc(void **ptr, size_t bytes, const char *what) {
  *ptr = NULL;
  if (!bytes) return KG_OK;
  cudaError_t e = cudaMalloc(ptr, bytes);
  if (e != cudaSuccess) {
    *ptr = NULL;
    (void)cudaGetLastError();
    return kg_error(e == cudaErrorMemoryAllocation ? KG_ERR_NOMEM : KG_ERR_DEVICE,
                    "CUDA: no device memory for %s (%.1f MiB): %s", what, (double)bytes / 1048576.0,
                    cudaGetErrorString(e));
  }
  return KG_OK;
}

extern "C" void kg_cc_free(void *ptr) {
  if (ptr) cudaFree(ptr);
}

int cc_scratch(kg_cc *cc, int which, size_t bytes, void **out) {
  *out = NULL;
  if (bytes <= cc->scratch_cap[which] && cc->scratch[which]) {
    *out = cc->scratch[which];
    return KG_OK;
  }
  /* The old buffer may still be read by queued work. */
  cudaError_t e = cudaStreamSynchronize(cc->stream);
  if (e != cudaSuccess) return kg_cc_cuda_fail(e, "cudaStreamSynchronize", __FILE__, __LINE__);
  kg_cc_free(cc->scratch[which]);
  cc->scratch[which] = NULL;
  cc->scratch_cap[which] = 0;
  /* Round up so small growth does not reallocate every time. */
  size_t want = bytes < 4096 ? 4096 : bytes + bytes / 8;
  KG_TRY(kg_cc_alloc(&cc->scratch[which], want, "compression scratch"));
  cc->scratch_cap[which] = want;
  *out = cc->scratch[which];
  return KG_OK;
}

extern "C" int kg_cc_create(int device, cudaStream_t stream, kg_cc **out) {
  int rc = KG_OK;
  *out = NULL;
  kg_cc *cc = (kg_cc *)calloc(1, sizeof(kg_cc));
  if (!cc) return kg_error(KG_ERR_NOMEM, "out of memory");
  if (device < 0) {
    CC_CUDA(cudaGetDevice(&device));
  }
  CC_CUDA(cudaSetDevice(device));
  cc->device = device;
  if (stream) {
    cc->stream = stream;
  } else {
    CC_CUDA(cudaStreamCreateWithFlags(&cc->stream, cudaStreamNonBlocking));
    cc->own_stream = 1;
  }
  CC_CUBLAS(cublasCreate(&cc->cublas));
  CC_CUBLAS(cublasSetStream(cc->cublas, cc->stream));
  /* The sweep's and Gram's products must not silently drop to TF32. */
  CC_CUBLAS(cublasSetMathMode(cc->cublas, CUBLAS_DEFAULT_MATH));
  CC_CUSOLVER(cusolverDnCreate(&cc->cusolver));
  CC_CUSOLVER(cusolverDnSetStream(cc->cusolver, cc->stream));
  CC_CUSOLVER(cusolverDnCreateParams(&cc->params));
  CC_TRY(kg_cc_alloc((void **)&cc->flags, 4 * sizeof(int), "flags"));
  CC_CUDA(cudaMemsetAsync(cc->flags, 0, 4 * sizeof(int), cc->stream));
  *out = cc;
  return KG_OK;
done:
  kg_cc_destroy(cc);
  return rc;
}

extern "C" void kg_cc_destroy(kg_cc *cc) {
  if (!cc) return;
  if (cc->stream) cudaStreamSynchronize(cc->stream);
  for (int i = 0; i < (int)(sizeof(cc->scratch) / sizeof(cc->scratch[0])); i++) kg_cc_free(cc->scratch[i]);
  kg_cc_free(cc->flags);
  free(cc->host_ws);
  if (cc->params) cusolverDnDestroyParams(cc->params);
  if (cc->cusolver) cusolverDnDestroy(cc->cusolver);
  if (cc->cublas) cublasDestroy(cc->cublas);
  if (cc->own_stream && cc->stream) cudaStreamDestroy(cc->stream);
  free(cc);
}

extern "C" int kg_cc_sync(kg_cc *cc) {
  cudaError_t e = cudaStreamSynchronize(cc->stream);
  if (e != cudaSuccess) return kg_cc_cuda_fail(e, "cudaStreamSynchronize", __FILE__, __LINE__);
  return KG_OK;
}

extern "C" int kg_cc_check_finite(kg_cc *cc, const char *what) {
  int rc = KG_OK, flag = 0;
  CC_CUDA(cudaMemcpyAsync(&flag, cc->flags, sizeof(int), cudaMemcpyDeviceToHost, cc->stream));
  CC_CUDA(cudaStreamSynchronize(cc->stream));
  if (flag) {
    CC_CUDA(cudaMemsetAsync(cc->flags, 0, sizeof(int), cc->stream));
    rc = kg_error(KG_ERR_NUMERIC, "%s: non-finite value (or magnitude >= 2^64) on the device", what);
  }
done:
  return rc;
}

extern "C" int kg_cc_upload(kg_cc *cc, void *dst, const void *src, size_t bytes) {
  int rc = KG_OK;
  if (!bytes) return KG_OK;
  CC_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cc->stream));
  CC_CUDA(cudaStreamSynchronize(cc->stream));
done:
  return rc;
}

extern "C" int kg_cc_download(kg_cc *cc, void *dst, const void *src, size_t bytes) {
  int rc = KG_OK;
  if (!bytes) return KG_OK;
  CC_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cc->stream));
  CC_CUDA(cudaStreamSynchronize(cc->stream));
done:
  return rc;
}
