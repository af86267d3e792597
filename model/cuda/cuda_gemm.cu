/* The backend's GEMMs through cuBLASLt: one plan per shape (descriptors and
 * algorithm), the heuristic's first choice unless KG_CUDA_GEMM_TUNE=1, which
 * times the top candidates once, at the shape's first use.
 * bench/gpu/gemm_shapes.cu found the best candidate 3-14% faster than
 * cublasGemmEx's default on several LLaMA-2-7B shapes timed alone; in a
 * whole 7B perplexity pass on an H100 the tuned GEMMs took 2% less time
 * (6.56 against 6.69 s) and the tuning itself cost 0.19 s of kernel loads
 * and timing, so it is off by default and pays only in long runs.
 *
 * Plans are shared by every backend of the process (keyed by device, shape,
 * types and pointer alignment), so two models on one device, resident and
 * streamed say, run the same algorithm and agree bit for bit.
 *
 * Untuned, the choice is the same on every run. Tuned choices can differ
 * between runs when two candidates time alike, and with them the last bits
 * of a GEMM's float32 sums (the summation order), never more. */
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include "model/cuda/cuda_internal.h"

/* Each candidate's first launch loads its kernel (lazy module loading), a
 * few milliseconds: six candidates (the best of the LLaMA-2-7B shapes was
 * at most the sixth), one warm-up and one timed run each. */
#define GEMM_CANDIDATES 6
#define GEMM_PLANS_MAX 256

struct gemm_key {
  int device, rows, cols, n, ytype, accumulate, t16;
  unsigned align_w, align_x, align_y; /* bytes, at most 256 */
  bool operator==(const gemm_key &o) const {
    return device == o.device && rows == o.rows && cols == o.cols && n == o.n && ytype == o.ytype &&
           accumulate == o.accumulate && t16 == o.t16 && align_w == o.align_w && align_x == o.align_x &&
           align_y == o.align_y;
  }
};

struct gemm_key_hash {
  size_t operator()(const gemm_key &k) const {
    size_t h = (size_t)k.rows * 1000003u;
    h = (h ^ (size_t)k.cols) * 1000003u;
    h = (h ^ (size_t)k.n) * 1000003u;
    h = (h ^ (size_t)(k.align_w + 3 * k.align_x + 7 * k.align_y)) * 1000003u;
    return h ^ (size_t)(k.ytype * 8 + k.accumulate * 2 + k.t16 + 64 * k.device);
  }
};

struct gemm_plan {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  float ms;       /* timed cost of the chosen algorithm; 0 when untimed */
  int candidates; /* how many the heuristic offered */
};

/* The process's plans; freed when the last backend that used them goes. */
static std::mutex plans_lock;
static std::unordered_map<gemm_key, gemm_plan *, gemm_key_hash> *plans;
static int plan_users;
static int tune = -1;

static void plan_free(gemm_plan *p) {
  if (!p) return;
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->c) cublasLtMatrixLayoutDestroy(p->c);
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  delete p;
}

void kg_cuda_gemm_destroy(kg_cuda_impl *c) {
  if (!c->uses_gemm_plans) return;
  c->uses_gemm_plans = 0;
  std::lock_guard<std::mutex> hold(plans_lock);
  if (--plan_users > 0 || !plans) return;
  int tuned = 0;
  for (auto &kv : *plans) {
    tuned += kv.second->ms > 0;
    plan_free(kv.second);
  }
  if (!plans->empty()) kg_debug("CUDA GEMMs: %zu shapes planned, %d by timing", plans->size(), tuned);
  delete plans;
  plans = NULL;
}

static int run_plan(kg_cuda_impl *c, const gemm_plan *p, const cublasLtMatmulAlgo_t *algo, const void *W,
                    const void *x16, void *y, float beta) {
  const float alpha = 1.0f;
  KG_CUBLAS(cublasLtMatmul(c->ctx.cublaslt, p->op, &alpha, W, p->a, x16, p->b, &beta, y, p->c, y, p->c, algo,
                           c->ctx.workspace, c->ctx.workspace_bytes, c->ctx.stream));
  return KG_OK;
}

/* Times each candidate (one warm-up, then one run between two events)
 * into `y`, which must be a buffer whose contents do not matter; returns the
 * index of the fastest that ran, or -1. */
static int time_candidates(kg_cuda_impl *c, gemm_plan *p, const cublasLtMatmulHeuristicResult_t *cand, int found,
                           const void *W, const void *x16, void *y, float beta, float *best_ms) {
  cudaEvent_t e0 = NULL, e1 = NULL;
  int best = -1;
  *best_ms = 0.0f;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto done;
  for (int i = 0; i < found; i++) {
    if (run_plan(c, p, &cand[i].algo, W, x16, y, beta) != KG_OK) {
      kg_error_clear();
      continue;
    }
    cudaEventRecord(e0, c->ctx.stream);
    const int ok = run_plan(c, p, &cand[i].algo, W, x16, y, beta) == KG_OK;
    cudaEventRecord(e1, c->ctx.stream);
    float ms = 0.0f;
    if (!ok || cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
      kg_error_clear();
      cudaGetLastError();
      continue;
    }
    if (best < 0 || ms < *best_ms) best = i, *best_ms = ms;
  }
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  cudaGetLastError();
  return best;
}

static int make_plan(kg_cuda_impl *c, const gemm_key &k, const void *W, const void *x16, void *y, float beta,
                     gemm_plan **out) {
  gemm_plan *p = new gemm_plan();
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t cand[GEMM_CANDIDATES];
  void *scratch = NULL;
  int found = 0, pick = 0, rc = KG_OK;
  const cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
  const cudaDataType_t t16 = (cudaDataType_t)k.t16, yt = (cudaDataType_t)k.ytype;
  size_t ws = c->ctx.workspace_bytes;
#define PLAN_LT(call)                                                        \
  do {                                                                       \
    cublasStatus_t s_ = (call);                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                       \
      rc = kg_cublas_fail(s_, #call, __FILE__, __LINE__);                    \
      goto done;                                                             \
    }                                                                        \
  } while (0)
  /* Row-major y^T = W x^T is column-major y = op_T(W) x: W is [cols x rows]
   * column-major, x is [cols x n], y is [rows x n]. */
  PLAN_LT(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  PLAN_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof(tr)));
  PLAN_LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof(nt)));
  PLAN_LT(cublasLtMatrixLayoutCreate(&p->a, t16, k.cols, k.rows, k.cols));
  PLAN_LT(cublasLtMatrixLayoutCreate(&p->b, t16, k.cols, k.n, k.cols));
  PLAN_LT(cublasLtMatrixLayoutCreate(&p->c, yt, k.rows, k.n, k.rows));
  PLAN_LT(cublasLtMatmulPreferenceCreate(&pref));
  PLAN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  /* Only algorithms that work at the pointers' alignment (the default
   * assumes 256 bytes; row-chunk views of a buffer can have less). */
  PLAN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.align_w,
                                               sizeof(k.align_w)));
  PLAN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.align_x,
                                               sizeof(k.align_x)));
  PLAN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.align_y,
                                               sizeof(k.align_y)));
  PLAN_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.align_y,
                                               sizeof(k.align_y)));
  PLAN_LT(cublasLtMatmulAlgoGetHeuristic(c->ctx.cublaslt, p->op, p->a, p->b, p->c, p->c, pref,
                                         tune ? GEMM_CANDIDATES : 1, cand, &found));
  if (found <= 0) {
    rc = kg_error(KG_ERR_DEVICE, "cuBLASLt has no algorithm for a %d x %d linear over %d rows", k.rows, k.cols, k.n);
    goto done;
  }
  p->candidates = found;
  if (tune && found > 1) {
    /* A non-accumulating GEMM may time into y: the real call overwrites it.
     * An accumulating one times into scratch, or keeps the first choice when
     * the budget has no room for it. */
    void *target = y;
    if (k.accumulate) {
      const size_t bytes = (size_t)k.rows * k.n * (yt == CUDA_R_32F ? 4 : 2);
      scratch = kg_cuda_dev_alloc(c, bytes, "GEMM tuning");
      if (!scratch) kg_error_clear();
      target = scratch;
    }
    if (target) {
      float ms = 0.0f;
      const int best = time_candidates(c, p, cand, found, W, x16, target, beta, &ms);
      if (best >= 0) pick = best, p->ms = ms;
    }
  }
  p->algo = cand[pick].algo;
  *out = p;
  p = NULL;
done:
  if (scratch) kg_cuda_dev_free(c, scratch);
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  plan_free(p);
  return rc;
#undef PLAN_LT
}

static unsigned alignment(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  const uintptr_t low = a & (~a + 1);
  return !a || low >= 256 ? 256u : (unsigned)low;
}

int kg_cuda_gemm(kg_cuda_impl *c, const void *W, int rows, int cols, const void *x16, int64_t n, void *y,
                 cudaDataType_t ytype, float beta) {
  const gemm_key k = {c->ctx.device, rows, cols, (int)n, (int)ytype, beta != 0.0f,
                      (int)(c->wdtype == KG_DT_F16 ? CUDA_R_16F : CUDA_R_16BF), alignment(W), alignment(x16),
                      alignment(y)};
  /* Planning, timing and the (asynchronous) launch happen under the lock: a
   * backend on another thread waits rather than time the same shape twice,
   * and no plan is freed while a launch reads it. */
  std::lock_guard<std::mutex> hold(plans_lock);
  if (!c->uses_gemm_plans) {
    c->uses_gemm_plans = 1;
    plan_users++;
  }
  if (!plans) plans = new std::unordered_map<gemm_key, gemm_plan *, gemm_key_hash>();
  if (tune < 0) {
    const char *v = getenv("KG_CUDA_GEMM_TUNE");
    tune = v && !strcmp(v, "1");
  }
  gemm_plan *p = NULL;
  auto it = plans->find(k);
  if (it != plans->end()) {
    p = it->second;
  } else {
    KG_TRY(make_plan(c, k, W, x16, y, beta, &p));
    if (plans->size() >= GEMM_PLANS_MAX) {
      /* Many distinct row counts (uneven chunks): forget the old plans. */
      for (auto &kv : *plans) plan_free(kv.second);
      plans->clear();
    }
    (*plans)[k] = p;
  }
  const int pair = kg_cuda_profile_begin(c, KG_PROF_GEMM);
  const int rc = run_plan(c, p, &p->algo, W, x16, y, beta);
  kg_cuda_profile_end(c, pair);
  return rc;
}
