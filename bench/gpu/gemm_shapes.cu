// The GEMMs of a LLaMA-2-7B forward at the shapes kickgrid issues them, each
// timed three ways: cublasGemmEx with the default algorithm (what the
// backend calls), cuBLASLt's first heuristic choice, and the fastest of its
// top candidates (what an autotuner would pick). Also the fused and batched
// forms of q/k/v and gate/up, and the float32 residual-accumulating outputs
// of o/down against 16-bit outputs, so the table says which change to the
// backend's GEMMs would pay.
//
// Layout as in model/cuda/cuda_backend.cu: y[n, rows] = x[n, cols] W^T with
// row-major W [rows, cols], i.e. column-major C[rows x n] = op_T(A) B.
// Build: nvcc -O3 -arch=sm_90 -o gemm_shapes gemm_shapes.cu -lcublasLt -lcublas
// Usage: gemm_shapes [tokens ...]   (default 4096 8192)
//        gemm_shapes --sustained SECONDS [tokens]: each candidate of the
//        pass's four distinct shapes run back to back for SECONDS on a board
//        already at its power limit (a 10 s warm-up GEMM first). Under the
//        700 W cap an algorithm's sustained rate is set by its energy per
//        FLOP, which short timings do not show.
#include <cublasLt.h>

#include <cstring>
#include <string>

#include "bench_cuda.cuh"

struct shape {
  const char *name;
  int rows, cols, batch; /* batch > 1: strided batched over `batch` weights */
  bool f32_out, accumulate;
};

struct lt_result {
  double first_ms, best_ms;
  int candidates, best_index;
};

/* A shape's weights, input and output on the device, filled with pseudo-random values. */
struct operands {
  void *W, *X, *Y;
  operands(const shape &s, int n) {
    const size_t wn = (size_t)s.rows * s.cols * s.batch, xn = (size_t)n * s.cols, yn = (size_t)n * s.rows * s.batch;
    CHECK_CUDA(cudaMalloc(&W, wn * 2));
    CHECK_CUDA(cudaMalloc(&X, xn * 2));
    CHECK_CUDA(cudaMalloc(&Y, yn * (s.f32_out ? 4 : 2)));
    fill_any(W, wn, CUDA_R_16BF);
    fill_any(X, xn, CUDA_R_16BF);
    CHECK_CUDA(cudaMemset(Y, 0, yn * (s.f32_out ? 4 : 2)));
  }
  ~operands() {
    cudaFree(W);
    cudaFree(X);
    cudaFree(Y);
  }
};

/* One shape's cuBLASLt descriptors and its heuristic's top candidates. */
struct lt_plan {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulHeuristicResult_t cand[16];
  int found;
};

static lt_plan plan_lt(cublasLtHandle_t lt, const shape &s, int n, size_t ws_bytes, int max_candidates) {
  lt_plan p;
  CHECK_OK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
  CHECK_OK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof(tr)));
  CHECK_OK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof(nt)));
  const cudaDataType ct = s.f32_out ? CUDA_R_32F : CUDA_R_16BF;
  CHECK_OK(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, s.cols, s.rows, s.cols));
  CHECK_OK(cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, s.cols, n, s.cols));
  CHECK_OK(cublasLtMatrixLayoutCreate(&p.lc, ct, s.rows, n, s.rows));
  if (s.batch > 1) {
    const int32_t b = s.batch;
    const int64_t sa = (int64_t)s.rows * s.cols, sb = 0, sc = (int64_t)s.rows * n;
    for (auto *l : {&p.la, &p.lb, &p.lc})
      CHECK_OK(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b)));
    CHECK_OK(cublasLtMatrixLayoutSetAttribute(p.la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof(sa)));
    CHECK_OK(cublasLtMatrixLayoutSetAttribute(p.lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof(sb)));
    CHECK_OK(cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof(sc)));
  }
  cublasLtMatmulPreference_t pref;
  CHECK_OK(cublasLtMatmulPreferenceCreate(&pref));
  CHECK_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                sizeof(ws_bytes)));
  p.found = 0;
  CHECK_OK(cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.la, p.lb, p.lc, p.lc, pref, std::min(max_candidates, 16), p.cand,
                                          &p.found));
  cublasLtMatmulPreferenceDestroy(pref);
  return p;
}

static void plan_free(lt_plan &p) {
  cublasLtMatrixLayoutDestroy(p.la);
  cublasLtMatrixLayoutDestroy(p.lb);
  cublasLtMatrixLayoutDestroy(p.lc);
  cublasLtMatmulDescDestroy(p.op);
}

static lt_result time_lt(cublasLtHandle_t lt, const shape &s, int n, void *W, void *X, void *Y, void *ws,
                         size_t ws_bytes) {
  lt_plan p = plan_lt(lt, s, n, ws_bytes, 16);
  const float one = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
  lt_result r = {0, 1e30, p.found, -1};
  for (int i = 0; i < p.found; i++) {
    const double ms = median_ms([&] {
      CHECK_OK(cublasLtMatmul(lt, p.op, &one, W, p.la, X, p.lb, &beta, Y, p.lc, Y, p.lc, &p.cand[i].algo, ws, ws_bytes,
                              0));
    }, 2, 7);
    if (i == 0) r.first_ms = ms;
    if (ms < r.best_ms) r.best_ms = ms, r.best_index = i;
  }
  plan_free(p);
  return r;
}

static double time_gemmex(cublasHandle_t h, const shape &s, int n, void *W, void *X, void *Y) {
  const float one = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
  const cudaDataType ct = s.f32_out ? CUDA_R_32F : CUDA_R_16BF;
  return median_ms([&] {
    if (s.batch > 1)
      CHECK_OK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, n, s.cols, &one, W, CUDA_R_16BF, s.cols,
                                          (long long)s.rows * s.cols, X, CUDA_R_16BF, s.cols, 0, &beta, Y, ct, s.rows,
                                          (long long)s.rows * n, s.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
      CHECK_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, n, s.cols, &one, W, CUDA_R_16BF, s.cols, X,
                            CUDA_R_16BF, s.cols, &beta, Y, ct, s.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }, 3, 9);
}

/* Runs f back to back for `seconds` (in batches of `batch` calls between
 * two events); returns the mean milliseconds per call. */
template <class F>
static double sustained_ms(F f, double seconds, int batch) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  double total_ms = 0;
  long calls = 0;
  while (total_ms < 1e3 * seconds) {
    CHECK_CUDA(cudaEventRecord(a));
    for (int i = 0; i < batch; i++) f();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    total_ms += ms;
    calls += batch;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return total_ms / (double)calls;
}

/* Every candidate of each shape: short median and sustained rate. */
static void sustained_table(cublasLtHandle_t lt, const shape *shapes, int n_shapes, int n, double seconds, void *ws,
                            size_t ws_bytes) {
  std::printf("%-34s %6s %4s %9s %9s %9s %9s\n", "GEMM", "tokens", "cand", "short ms", "TFLOP/s", "sust. ms",
              "TFLOP/s");
  for (int si = 0; si < n_shapes; si++) {
    const shape &s = shapes[si];
    const operands o(s, n);
    void *W = o.W, *X = o.X, *Y = o.Y;
    lt_plan pl = plan_lt(lt, s, n, ws_bytes, 8);
    const float one = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
    const double flop = 2.0 * s.rows * (double)s.cols * n;
    for (int i = 0; i < pl.found; i++) {
      auto call = [&] {
        CHECK_OK(cublasLtMatmul(lt, pl.op, &one, W, pl.la, X, pl.lb, &beta, Y, pl.lc, Y, pl.lc, &pl.cand[i].algo, ws,
                                ws_bytes, 0));
      };
      const double short_ms = median_ms(call, 2, 7);
      const double sust = sustained_ms(call, seconds, 20);
      std::printf("%-34s %6d %4d %9.3f %9.1f %9.3f %9.1f\n", s.name, n, i, short_ms, flop / short_ms / 1e9, sust,
                  flop / sust / 1e9);
      std::fflush(stdout);
    }
    plan_free(pl);
  }
}

int main(int argc, char **argv) {
  std::vector<int> tokens;
  double sustained = 0;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--sustained") && i + 1 < argc) sustained = std::atof(argv[++i]);
    else tokens.push_back(std::atoi(argv[i]));
  }
  if (tokens.empty()) tokens = {4096, 8192};
  const shape shapes[] = {
      {"q/k/v (bf16 out)", 4096, 4096, 1, false, false},
      {"q/k/v as one batched GEMM of 3", 4096, 4096, 3, false, false},
      {"q|k|v fused weight", 12288, 4096, 1, false, false},
      {"o (fp32 out, += residual)", 4096, 4096, 1, true, true},
      {"o (bf16 out)", 4096, 4096, 1, false, false},
      {"gate/up (bf16 out)", 11008, 4096, 1, false, false},
      {"gate/up as one batched GEMM of 2", 11008, 4096, 2, false, false},
      {"gate|up fused weight", 22016, 4096, 1, false, false},
      {"down (fp32 out, += residual)", 4096, 11008, 1, true, true},
      {"down (bf16 out)", 4096, 11008, 1, false, false},
      {"lm_head (fp32 out)", 32000, 4096, 1, true, false},
  };
  cublasHandle_t h;
  cublasLtHandle_t lt;
  CHECK_OK(cublasCreate(&h));
  CHECK_OK(cublasLtCreate(&lt));
  const size_t ws_bytes = (size_t)64 << 20;
  void *ws;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  CHECK_OK(cublasSetWorkspace(h, ws, ws_bytes));
  cudaDeviceProp p;
  CHECK_CUDA(cudaGetDeviceProperties(&p, 0));
  std::printf("device %s\n", p.name);
  if (sustained > 0) {
    const shape pass[] = {shapes[0], shapes[3], shapes[5], shapes[8]};
    /* the warm-up: the board at its power limit before the first candidate */
    const int big = 8192;
    void *A, *B, *C;
    CHECK_CUDA(cudaMalloc(&A, (size_t)big * big * 2));
    CHECK_CUDA(cudaMalloc(&B, (size_t)big * big * 2));
    CHECK_CUDA(cudaMalloc(&C, (size_t)big * big * 2));
    fill_any(A, (size_t)big * big, CUDA_R_16BF);
    fill_any(B, (size_t)big * big, CUDA_R_16BF);
    const float one = 1.0f, zero = 0.0f;
    const double warm_ms = sustained_ms([&] {
      CHECK_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, big, big, big, &one, A, CUDA_R_16BF, big, B, CUDA_R_16BF, big,
                            &zero, C, CUDA_R_16BF, big, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }, 10.0, 20);
    std::printf("warm-up gemm_bf16_8192 for 10 s: %.1f TFLOP/s\n", 2.0 * big * (double)big * big / warm_ms / 1e9);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    sustained_table(lt, pass, 4, tokens.empty() ? 4096 : tokens[0], sustained, ws, ws_bytes);
    cublasLtDestroy(lt);
    cublasDestroy(h);
    return 0;
  }
  std::printf("%-34s %6s %9s %9s %9s %9s %6s  %s\n", "GEMM", "tokens", "GemmEx", "Lt first", "Lt best", "TFLOP/s",
              "gain", "candidates");
  for (int n : tokens) {
    for (const shape &s : shapes) {
      const operands o(s, n);
      const double ex = time_gemmex(h, s, n, o.W, o.X, o.Y);
      const lt_result r = time_lt(lt, s, n, o.W, o.X, o.Y, ws, ws_bytes);
      const double flop = 2.0 * s.rows * (double)s.cols * n * s.batch;
      std::printf("%-34s %6d %8.3fms %8.3fms %8.3fms %9.1f %5.1f%%  %d (best #%d)\n", s.name, n, ex, r.first_ms,
                  r.best_ms, flop / (std::min(ex, r.best_ms) * 1e-3) / 1e12, 100.0 * (ex - r.best_ms) / ex,
                  r.candidates, r.best_index);
    }
  }
  cublasLtDestroy(lt);
  cublasDestroy(h);
  return 0;
}
