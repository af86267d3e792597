// Helpers shared by the GPU micro-benchmarks (ceilings.cu, gemm_shapes.cu):
// error checks that exit, median timing with CUDA events, and fills with
// pseudo-random values.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK_CUDA(x)                                                                 \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)
#define CHECK_OK(x)                                                                   \
  do {                                                                                \
    if ((int)(x) != 0) {                                                              \
      std::fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #x, (int)(x)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

template <class F>
static double median_ms(F f, int warm, int reps) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warm; i++) f();
  std::vector<float> t;
  for (int i = 0; i < reps; i++) {
    CHECK_CUDA(cudaEventRecord(a));
    f();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t[t.size() / 2];
}

// pseudo-random values in [-1, 1): tensor cores run slower on random bits than on zeros
template <class T>
__global__ void fill(T *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned z = (unsigned)(i * 2654435761u) ^ (unsigned)(i >> 13) * 0x9e3779b9u;
    x[i] = (T)((float)(z % 20000u) / 10000.0f - 1.0f);
  }
}

static void fill_any(void *x, size_t n, cudaDataType t) {
  if (t == CUDA_R_16BF)
    fill<__nv_bfloat16><<<1024, 256>>>((__nv_bfloat16 *)x, n);
  else if (t == CUDA_R_16F)
    fill<__half><<<1024, 256>>>((__half *)x, n);
  else
    fill<float><<<1024, 256>>>((float *)x, n);
  CHECK_CUDA(cudaGetLastError());
}

