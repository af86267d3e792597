// Hardware ceilings measured in the benchmark's own run, for the floors in
// bench/NOTES.md: dense GEMM rates (bf16, fp16, TF32 and plain fp32 on
// cuBLAS), device-to-device copy bandwidth, host<->device transfer rates
// (pageable, pinned, and the cost of pinning pageable memory with
// cudaHostRegister), cuSOLVER's Cholesky + triangular inverse, and the bf16
// GEMM sustained for 10 s (KG_CEILING_SUSTAINED_S), as long as a pass.
//
// Prints one "ceiling NAME VALUE UNIT" line per figure; each figure is the
// median of its timed repetitions after warm-ups.
// Build: nvcc -O3 -arch=sm_90 -o ceilings ceilings.cu -lcublas -lcusolver
#include <cusolverDn.h>

#include "bench_cuda.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <vector>

// Square n x n operands of type t filled with pseudo-random values, a float32
// result, and the product C = A B; owns its device buffers.
struct SquareGemm {
  static constexpr int n = 8192;
  void *A = nullptr, *B = nullptr, *C = nullptr;
  cudaDataType t;
  cublasComputeType_t ct;
  SquareGemm(cudaDataType type, cublasComputeType_t compute, size_t elem) : t(type), ct(compute) {
    CHECK_CUDA(cudaMalloc(&A, (size_t)n * n * elem));
    CHECK_CUDA(cudaMalloc(&B, (size_t)n * n * elem));
    CHECK_CUDA(cudaMalloc(&C, (size_t)n * n * 4));
    fill_any(A, (size_t)n * n, t);
    fill_any(B, (size_t)n * n, t);
  }
  ~SquareGemm() {
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
  }
  void run(cublasHandle_t h) const {
    const float one = 1.0f, zero = 0.0f;
    CHECK_OK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, A, t, n, B, t, n, &zero, C, CUDA_R_32F, n, ct,
                          CUBLAS_GEMM_DEFAULT));
  }
  double tflop() const { return 2.0 * n * n * (double)n / 1e12; }
};

static void gemm_rate(cublasHandle_t h, const char *name, cudaDataType t, cublasComputeType_t ct, size_t elem) {
  const SquareGemm g(t, ct, elem);
  const double ms = median_ms([&] { g.run(h); }, 3, 10);
  std::printf("ceiling %s %.1f TFLOP/s\n", name, g.tflop() / (ms * 1e-3));
}

// The same bf16 GEMM back to back for `seconds`: a perplexity pass keeps the
// tensor cores busy for ~9 s, long enough for the board's power limit to pull
// the clocks below what an 18 ms ceiling sees. Prints the rate of each chunk
// of 600 products (~0.85 s) and the rate over the last half.
static void gemm_sustained(cublasHandle_t h, double seconds) {
  const SquareGemm g(CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2);
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  const int per_chunk = 600;  // ~0.85 s at 770 TFLOP/s
  std::vector<double> rates;
  double elapsed = 0;
  while (elapsed < seconds * 1e3) {
    CHECK_CUDA(cudaEventRecord(a));
    for (int i = 0; i < per_chunk; i++) g.run(h);
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    elapsed += ms;
    rates.push_back(g.tflop() * per_chunk / (ms * 1e-3));
  }
  std::printf("sustained gemm_bf16_8192 per chunk:");
  for (double r : rates) std::printf(" %.0f", r);
  double sum = 0;
  const size_t half = rates.size() / 2;
  for (size_t i = half; i < rates.size(); i++) sum += rates[i];
  std::printf("\nceiling gemm_bf16_8192_sustained %.1f TFLOP/s\n", sum / (double)(rates.size() - half));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

int main() {
  int dev = 0;
  cudaDeviceProp p;
  CHECK_CUDA(cudaGetDeviceProperties(&p, dev));
  std::printf("device %s, %d SMs, %.1f GiB\n", p.name, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0);
  cublasHandle_t h;
  CHECK_OK(cublasCreate(&h));
  gemm_rate(h, "gemm_bf16_8192", CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2);
  gemm_rate(h, "gemm_fp16_8192", CUDA_R_16F, CUBLAS_COMPUTE_32F, 2);
  gemm_rate(h, "gemm_tf32_8192", CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4);
  gemm_rate(h, "gemm_fp32_8192", CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, 4);
  gemm_sustained(h, std::getenv("KG_CEILING_SUSTAINED_S") ? std::atof(std::getenv("KG_CEILING_SUSTAINED_S")) : 10.0);

  // device-to-device copy, bytes read + written
  {
    const size_t bytes = (size_t)2 << 30;
    void *a, *b;
    CHECK_CUDA(cudaMalloc(&a, bytes));
    CHECK_CUDA(cudaMalloc(&b, bytes));
    CHECK_CUDA(cudaMemset(a, 1, bytes));
    const double ms = median_ms([&] { CHECK_CUDA(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 2, 10);
    std::printf("ceiling copy_d2d %.1f GB/s\n", 2.0 * bytes / (ms * 1e-3) / 1e9);
    cudaFree(a);
    cudaFree(b);
  }

  // host <-> device: a linear of LLaMA-2-7B's MLP in fp32 (4096 x 11008)
  {
    const size_t bytes = (size_t)4096 * 11008 * 4;
    void *d, *pin;
    CHECK_CUDA(cudaMalloc(&d, bytes));
    char *host = (char *)std::malloc(bytes);
    std::memset(host, 1, bytes);
    CHECK_CUDA(cudaMallocHost(&pin, bytes));
    std::memset(pin, 1, bytes);
    double ms = median_ms([&] { CHECK_CUDA(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice)); }, 1, 5);
    std::printf("ceiling h2d_pageable %.1f GB/s\n", bytes / (ms * 1e-3) / 1e9);
    ms = median_ms([&] { CHECK_CUDA(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost)); }, 1, 5);
    std::printf("ceiling d2h_pageable %.1f GB/s\n", bytes / (ms * 1e-3) / 1e9);
    ms = median_ms([&] { CHECK_CUDA(cudaMemcpy(d, pin, bytes, cudaMemcpyHostToDevice)); }, 1, 5);
    std::printf("ceiling h2d_pinned %.1f GB/s\n", bytes / (ms * 1e-3) / 1e9);
    ms = median_ms([&] { CHECK_CUDA(cudaMemcpy(pin, d, bytes, cudaMemcpyDeviceToHost)); }, 1, 5);
    std::printf("ceiling d2h_pinned %.1f GB/s\n", bytes / (ms * 1e-3) / 1e9);
    ms = median_ms([&] {
      CHECK_CUDA(cudaHostRegister(host, bytes, cudaHostRegisterDefault));
      CHECK_CUDA(cudaHostUnregister(host));
    }, 1, 5);
    std::printf("ceiling host_register %.1f GB/s\n", bytes / (ms * 1e-3) / 1e9);
    cudaFree(d);
    cudaFreeHost(pin);
    std::free(host);
  }

  // Cholesky + triangular inverse (the SparseGPT/GPTQ factorization), fp32
  {
    cusolverDnHandle_t s;
    cusolverDnParams_t prm;
    CHECK_OK(cusolverDnCreate(&s));
    CHECK_OK(cusolverDnCreateParams(&prm));
    for (int n : {4096, 11008}) {
      float *A, *W;
      int *info;
      CHECK_CUDA(cudaMalloc(&A, (size_t)n * n * 4));
      CHECK_CUDA(cudaMalloc(&W, (size_t)n * n * 4));
      CHECK_CUDA(cudaMalloc(&info, sizeof(int)));
      std::vector<float> row(n);
      for (int i = 0; i < n; i++) {  // diagonally dominant: positive definite
        for (int j = 0; j < n; j++) row[j] = 0.5f * std::sin(0.37 * i + 0.11 * j) / n;
        row[i] = 2.0f;
        CHECK_CUDA(cudaMemcpy(W + (size_t)i * n, row.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
      }
      size_t dws = 0, hws = 0, d2 = 0, h2 = 0;
      CHECK_OK(cusolverDnXpotrf_bufferSize(s, prm, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, A, n, CUDA_R_32F, &dws, &hws));
      CHECK_OK(cusolverDnXtrtri_bufferSize(s, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F, A, n, &d2, &h2));
      dws = std::max(dws, d2);
      hws = std::max(hws, h2);
      void *dw, *hw = std::malloc(hws + 1);
      CHECK_CUDA(cudaMalloc(&dw, dws + 16));
      const double ms = median_ms([&] {
        CHECK_CUDA(cudaMemcpy(A, W, (size_t)n * n * 4, cudaMemcpyDeviceToDevice));
        CHECK_OK(cusolverDnXpotrf(s, prm, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, A, n, CUDA_R_32F, dw, dws, hw, hws, info));
        CHECK_OK(cusolverDnXtrtri(s, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F, A, n, dw, dws, hw, hws,
                                  info));
      }, 1, 3);
      std::printf("ceiling potrf_trtri_fp32_%d %.1f TFLOP/s (%.1f ms)\n", n, (2.0 / 3.0) * n * (double)n * n / (ms * 1e-3) / 1e12,
                  ms);
      cudaFree(A);
      cudaFree(W);
      cudaFree(dw);
      cudaFree(info);
      std::free(hw);
    }
    cusolverDnDestroyParams(prm);
    cusolverDnDestroy(s);
  }
  cublasDestroy(h);
  return 0;
}
