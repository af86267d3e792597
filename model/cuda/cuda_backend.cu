/* The CUDA backend: device memory under a budget, 16-bit weights, cuBLAS
 * GEMMs with float32 accumulation, and the kg_backend_ops table. Kernels live
 * in cuda_kernels.cu, cuda_attention.cu and cuda_head.cu; weight upload and
 * block streaming in cuda_weights.cu. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/cuda_internal.h"

/* cuBLAS workspace: Hopper kernels want 32 MiB for their best algorithms. */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
/* Tokens a forward pass runs best at (KG_CUDA_ROWS overrides it, for
 * measurements); shorter windows are batched up to it. The LLaMA-2-7B
 * perplexity pass at 4096 tokens a window: 8.53-8.55 s at one window a
 * forward, 8.30 s at two, on one H100 (bench/NOTES.md, run I): the gate/up
 * GEMMs' last wave of tiles fills the device. */
#define KG_CUDA_PREFERRED_ROWS 8192

static int64_t preferred_rows(void) {
  const char *v = getenv("KG_CUDA_ROWS");
  const long rows = v && *v ? atol(v) : 0;
  return rows > 0 ? rows : KG_CUDA_PREFERRED_ROWS;
}

extern "C" int kg_cuda_fail(cudaError_t e, const char *what, const char *file, int line) {
  cudaGetLastError(); /* clear a non-sticky error so later calls can go on */
  const int code = e == cudaErrorMemoryAllocation ? KG_ERR_NOMEM : KG_ERR_DEVICE;
  return kg_error_at(file, line, code, "CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" int kg_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line) {
  const int code = s == CUBLAS_STATUS_ALLOC_FAILED ? KG_ERR_NOMEM : KG_ERR_DEVICE;
  return kg_error_at(file, line, code, "cuBLAS: %s failed: %s", what, cublasGetStatusString(s));
}

/* ---- memory under the budget ---- */

void *kg_cuda_dev_alloc(kg_cuda_impl *c, size_t bytes, const char *what) {
  if (!bytes) bytes = 256;
  const size_t budget = c->ctx.memory_budget_bytes;
  if (budget && c->used + bytes > budget) {
    kg_error(KG_ERR_NOMEM, "CUDA memory budget of %.2f GiB exceeded: %s needs %.1f MiB with %.1f MiB in use",
             (double)budget / (1 << 30), what, (double)bytes / (1 << 20), (double)c->used / (1 << 20));
    return NULL;
  }
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    kg_error(KG_ERR_NOMEM, "CUDA: out of device memory allocating %.1f MiB for %s (%.1f MiB in use): %s",
             (double)bytes / (1 << 20), what, (double)c->used / (1 << 20), cudaGetErrorString(e));
    return NULL;
  }
  (*c->sizes)[p] = bytes;
  c->used += bytes;
  if (c->used > c->peak) c->peak = c->used;
  return p;
}

void kg_cuda_dev_free(kg_cuda_impl *c, void *p) {
  if (!p) return;
  auto it = c->sizes->find(p);
  if (it != c->sizes->end()) {
    c->used -= it->second;
    c->sizes->erase(it);
  }
  cudaFree(p);
}

int kg_cuda_scratch_reserve(kg_cuda_impl *c, kg_cuda_scratch *s, size_t bytes, const char *what) {
  if (s->cap >= bytes) return KG_OK;
  /* Queued kernels may still read the old buffer; cudaFree waits for them. */
  kg_cuda_dev_free(c, s->ptr);
  s->ptr = NULL;
  s->cap = 0;
  size_t cap = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes + bytes / 8;
  if (!(s->ptr = kg_cuda_dev_alloc(c, cap, what)) && !(s->ptr = kg_cuda_dev_alloc(c, bytes, what)))
    return kg_error_code();
  s->cap = s->ptr ? ((*c->sizes)[s->ptr]) : 0;
  return KG_OK;
}

/* ---- ops: memory ---- */

static void *cu_alloc(kg_backend *be, size_t bytes) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (cudaSetDevice(c->ctx.device) != cudaSuccess) {
    kg_error(KG_ERR_DEVICE, "CUDA: cannot select device %d", c->ctx.device);
    return NULL;
  }
  return kg_cuda_dev_alloc(c, bytes, "a buffer");
}

static void cu_release(kg_backend *be, void *ptr) {
  if (ptr) kg_cuda_dev_free(kg_cuda_impl_of(be), ptr);
}

static int cu_to_device(kg_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes) return KG_OK;
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->ctx.stream));
  /* The caller may reuse src at once; pageable copies are staged before
   * returning, pinned ones are not, so wait for the copy. */
  KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  kg_cuda_profile_synced(c);
  return KG_OK;
}

static int cu_to_host(kg_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes) return KG_OK;
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  const int pair = kg_cuda_profile_begin(c, KG_PROF_COPY);
  KG_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->ctx.stream));
  kg_cuda_profile_end(c, pair);
  KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  kg_cuda_profile_synced(c);
  return KG_OK;
}

static int cu_copy(kg_backend *be, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return KG_OK;
  KG_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kg_cuda_impl_of(be)->ctx.stream));
  return KG_OK;
}

static int cu_synchronize(kg_backend *be) {
  KG_CUDA(cudaStreamSynchronize(kg_cuda_impl_of(be)->ctx.stream));
  kg_cuda_profile_synced(kg_cuda_impl_of(be));
  return KG_OK;
}

static int cu_set_budget(kg_backend *be, size_t bytes) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  c->ctx.memory_budget_bytes = bytes;
  /* Under a budget every token of workspace is a token less for weights. */
  be->preferred_rows = bytes ? 0 : preferred_rows();
  if (bytes && c->used > bytes)
    kg_warn("CUDA memory budget %.2f GiB is below the %.2f GiB already in use", (double)bytes / (1 << 30),
            (double)c->used / (1 << 30));
  return KG_OK;
}

/* ---- GEMMs: y[n, rows] = x[n, cols] W^T with 16-bit operands, float32 accumulation ---- */

static cudaDataType_t cuda_type16(const kg_cuda_impl *c) { return c->wdtype == KG_DT_F16 ? CUDA_R_16F : CUDA_R_16BF; }

static int check_weight(const kg_weight *w, const char *op) {
  if (!w->data) {
    if (w->host)
      return kg_error(KG_ERR_ARG, "%s: weight [%d x %d] of block %d is streamed and not staged (weights_acquire)", op,
                      w->rows, w->cols, w->group);
    return kg_error(KG_ERR_ARG, "%s: weight [%d x %d] was never uploaded", op, w->rows, w->cols);
  }
  return KG_OK;
}

static int gemm(kg_cuda_impl *c, const kg_weight *w, const void *x16, int64_t n, void *y, cudaDataType_t ytype,
                float beta) {
  if (n <= 0) return KG_OK;
  if (n > INT32_MAX) return kg_error(KG_ERR_ARG, "linear over %lld rows is too large", (long long)n);
  return kg_cuda_gemm(c, w->data, w->rows, w->cols, x16, n, y, ytype, beta);
}

static int cu_linear(kg_backend *be, const kg_weight *w, const float *x, int64_t n, float *y) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_TRY(check_weight(w, "linear"));
  const size_t elems = (size_t)n * w->cols;
  KG_TRY(kg_cuda_scratch_reserve(c, &c->cast, elems * 2, "a linear's 16-bit input"));
  KG_TRY(kg_cuda_timed(c, KG_PROF_CAST, [&] { return kg_cuda_f32_to_16(c, x, c->cast.ptr, elems); }));
  return gemm(c, w, c->cast.ptr, n, y, CUDA_R_32F, 0.0f);
}

static int cu_linear_h(kg_backend *be, const kg_weight *w, const void *xh, int64_t n, void *yh) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_TRY(check_weight(w, "linear_h"));
  return gemm(c, w, xh, n, yh, cuda_type16(c), 0.0f);
}

static int cu_linear_h_f32(kg_backend *be, const kg_weight *w, const void *xh, int64_t n, float *y, int accumulate) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_TRY(check_weight(w, "linear_h_f32"));
  return gemm(c, w, xh, n, y, CUDA_R_32F, accumulate ? 1.0f : 0.0f);
}

/* ---- ops: element-wise and row-wise ---- */

static int upload_small(kg_cuda_impl *c, const void *host, size_t bytes, void **dev) {
  KG_TRY(kg_cuda_scratch_reserve(c, &c->small, bytes, "token ids"));
  KG_CUDA(cudaMemcpyAsync(c->small.ptr, host, bytes, cudaMemcpyHostToDevice, c->ctx.stream));
  *dev = c->small.ptr;
  return KG_OK;
}

static int cu_embed(kg_backend *be, const kg_weight *table, const int32_t *tokens, int64_t n, float *out) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  KG_TRY(check_weight(table, "embed"));
  void *dtok = NULL;
  KG_TRY(upload_small(c, tokens, (size_t)n * sizeof(int32_t), &dtok));
  KG_TRY(kg_cuda_timed(c, KG_PROF_EMBED,
                       [&] { return kg_cuda_embed(c, table->data, table->cols, (const int32_t *)dtok, n, out); }));
  /* The next upload_small may reuse the buffer: the host must not overwrite
   * it before the gather ran. */
  KG_CUDA(cudaStreamSynchronize(c->ctx.stream));
  kg_cuda_profile_synced(c);
  return KG_OK;
}

static int cu_norm(kg_backend *be, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d, float eps,
                   float *y) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_NORM, [&] { return kg_cuda_norm(c, kind, x, gain, n, d, eps, y, NULL); });
}

static int cu_norm_h(kg_backend *be, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d, float eps,
                     void *yh) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_NORM, [&] { return kg_cuda_norm(c, kind, x, gain, n, d, eps, NULL, yh); });
}

static int cu_rope(kg_backend *be, float *x, int n_seq, int T, int pos0, int n_heads, int head_dim,
                   const float *inv_freq) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_ROPE,
                       [&] { return kg_cuda_rope(c, x, 0, n_seq, T, pos0, n_heads, head_dim, inv_freq); });
}

static int cu_rope_h(kg_backend *be, void *xh, int n_seq, int T, int pos0, int n_heads, int head_dim,
                     const float *inv_freq) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_ROPE,
                       [&] { return kg_cuda_rope(c, xh, 1, n_seq, T, pos0, n_heads, head_dim, inv_freq); });
}

static int cu_cache_store(kg_backend *be, float *cache, const float *x, int n_seq, int T, int pos0, int kv_stride,
                          int width) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  const size_t row = (size_t)width * sizeof(float);
  /* One strided copy: sequence s's T rows go to cache rows s*kv_stride+pos0... */
  KG_CUDA(cudaMemcpy2DAsync(cache + (size_t)pos0 * width, (size_t)kv_stride * row, x, (size_t)T * row, (size_t)T * row,
                            (size_t)n_seq, cudaMemcpyDeviceToDevice, c->ctx.stream));
  return KG_OK;
}

static int attention(kg_backend *be, const kg_attention_args *a, int in16) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_ATTENTION, [&] { return kg_cuda_attention(c, a, in16); });
}
static int cu_attention(kg_backend *be, const kg_attention_args *a) { return attention(be, a, 0); }
static int cu_attention_h(kg_backend *be, const kg_attention_args *a) { return attention(be, a, 1); }

static int cu_swiglu(kg_backend *be, const float *gate, const float *up, int64_t n, float *out) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_SWIGLU, [&] { return kg_cuda_swiglu(c, gate, up, n, out, 0); });
}
static int cu_swiglu_h(kg_backend *be, const void *gate, const void *up, int64_t n, void *out) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_SWIGLU, [&] { return kg_cuda_swiglu(c, gate, up, n, out, 1); });
}

static int cu_add(kg_backend *be, float *y, const float *x, int64_t n) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  return kg_cuda_timed(c, KG_PROF_ADD, [&] { return kg_cuda_add(c, y, x, n); });
}

/* ---- ops: statistics and row reductions (host results) ---- */

static int cu_gram_accumulate(kg_backend *be, const float *x, int64_t n, int d, double *gram, double *colsq) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  int rc = KG_OK;
  double *host = NULL;
  if (n <= 0 || (!gram && !colsq)) return KG_OK;
  const size_t dd = (size_t)d * d;
  /* Row chunks bound the float64 copy of x to about the Gram matrix's size. */
  int64_t chunk = (int64_t)(dd / (size_t)d);
  if (chunk < 256) chunk = 256;
  if (chunk > n) chunk = n;
  const size_t need = (gram ? dd + (size_t)chunk * d : 0) + (size_t)d;
  if ((rc = kg_cuda_scratch_reserve(c, &c->gram, need * sizeof(double), "a Gram matrix")) < 0) return rc;
  double *dgram = (double *)c->gram.ptr, *dx = dgram + (gram ? dd : 0), *dcol = dx + (gram ? (size_t)chunk * d : 0);
  if (!(host = (double *)malloc((gram ? dd : (size_t)d) * sizeof(double))))
    return kg_error(KG_ERR_NOMEM, "out of host memory for a %dx%d Gram matrix", d, d);
  if (colsq) {
    if ((rc = kg_cuda_colsq(c, x, n, d, dcol)) < 0) goto done;
    if ((rc = cu_to_host(be, host, dcol, (size_t)d * sizeof(double))) < 0) goto done;
    for (int j = 0; j < d; j++) colsq[j] += host[j];
  }
  if (gram) {
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t rows = n - r0 < chunk ? n - r0 : chunk;
      const double one = 1.0, beta = r0 ? 1.0 : 0.0;
      if ((rc = kg_cuda_f32_to_f64(c, x + (size_t)r0 * d, dx, (size_t)rows * d)) < 0) goto done;
      /* Row-major X [rows, d] is column-major X' [d, rows]: X^T X = X' X'^T. */
      cublasStatus_t s = cublasDsyrk(c->ctx.cublas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, d, (int)rows, &one, dx, d, &beta,
                                     dgram, d);
      if (s != CUBLAS_STATUS_SUCCESS) {
        rc = kg_cublas_fail(s, "cublasDsyrk", __FILE__, __LINE__);
        goto done;
      }
    }
    if ((rc = cu_to_host(be, host, dgram, dd * sizeof(double))) < 0) goto done;
    /* Column-major upper triangle: element (i <= j) at host[j * d + i]. */
    for (int j = 0; j < d; j++)
      for (int i = 0; i <= j; i++) {
        const double v = host[(size_t)j * d + i];
        gram[(size_t)i * d + j] += v;
        if (i != j) gram[(size_t)j * d + i] += v;
      }
  }
done:
  free(host);
  return rc;
}

static int cu_row_nll(kg_backend *be, const float *logits, int64_t n, int vocab, const int32_t *targets, double *nll) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (n <= 0) return KG_OK;
  const size_t tb = ((size_t)n * sizeof(int32_t) + 255) & ~(size_t)255;
  KG_TRY(kg_cuda_scratch_reserve(c, &c->small, tb + (size_t)n * sizeof(double), "per-row results"));
  char *base = (char *)c->small.ptr;
  KG_CUDA(cudaMemcpyAsync(base, targets, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, c->ctx.stream));
  KG_TRY(kg_cuda_timed(c, KG_PROF_HEAD,
                       [&] { return kg_cuda_row_nll(c, logits, n, vocab, (const int32_t *)base, (double *)(base + tb)); }));
  return cu_to_host(be, nll, base + tb, (size_t)n * sizeof(double));
}

static int cu_row_js(kg_backend *be, const float *p, const float *q, int64_t n, int vocab, double *js, int32_t *argmax_p,
                     int32_t *argmax_q) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (n <= 0) return KG_OK;
  const size_t ib = ((size_t)n * sizeof(int32_t) + 255) & ~(size_t)255;
  KG_TRY(kg_cuda_scratch_reserve(c, &c->small, (size_t)n * sizeof(double) + 2 * ib, "per-row results"));
  char *base = (char *)c->small.ptr;
  double *djs = (double *)base;
  int32_t *dap = (int32_t *)(base + (size_t)n * sizeof(double)), *daq = (int32_t *)((char *)dap + ib);
  KG_TRY(kg_cuda_timed(c, KG_PROF_HEAD, [&] { return kg_cuda_row_js(c, p, q, n, vocab, djs, dap, daq); }));
  KG_TRY(cu_to_host(be, js, djs, (size_t)n * sizeof(double)));
  if (argmax_p) KG_TRY(cu_to_host(be, argmax_p, dap, (size_t)n * sizeof(int32_t)));
  if (argmax_q) KG_TRY(cu_to_host(be, argmax_q, daq, (size_t)n * sizeof(int32_t)));
  return KG_OK;
}

/* ---- creation ---- */

int kg_cuda_weight_upload(kg_backend *be, kg_weight *w, const float *host, int rows, int cols);
void kg_cuda_weight_release(kg_backend *be, kg_weight *w);
int kg_cuda_plan_weights(kg_backend *be, int n_blocks, int64_t block_elems, int64_t global_elems, size_t reserve_bytes,
                         int *n_resident);
int kg_cuda_weights_acquire(kg_backend *be, kg_weight *const *w, int n);
int kg_cuda_weights_prefetch(kg_backend *be, kg_weight *const *w, int n);
void kg_cuda_streaming_destroy(kg_cuda_impl *c);
int kg_cuda_streaming_init(kg_cuda_impl *c);

static void cu_destroy(kg_backend *be);

static int cu_memory_stats(kg_backend *be, size_t *used, size_t *peak) {
  const kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (used) *used = c->used;
  if (peak) *peak = c->peak;
  return KG_OK;
}

#define KG_CUDA_OPS_COMMON                                                                                    \
  .destroy = cu_destroy, .alloc = cu_alloc, .release = cu_release, .to_device = cu_to_device,                 \
  .to_host = cu_to_host, .copy = cu_copy, .synchronize = cu_synchronize,                                      \
  .weight_upload = kg_cuda_weight_upload, .weight_release = kg_cuda_weight_release, .embed = cu_embed,        \
  .linear = cu_linear, .norm = cu_norm, .rope = cu_rope, .cache_store = cu_cache_store,                       \
  .attention = cu_attention, .swiglu = cu_swiglu, .add = cu_add, .gram_accumulate = cu_gram_accumulate,       \
  .row_nll = cu_row_nll, .row_js = cu_row_js, .set_memory_budget = cu_set_budget,                             \
  .plan_weights = kg_cuda_plan_weights, .weights_acquire = kg_cuda_weights_acquire,                           \
  .weights_prefetch = kg_cuda_weights_prefetch, .memory_stats = cu_memory_stats

static const kg_backend_ops cuda_ops = {
    .name = "cuda",
    KG_CUDA_OPS_COMMON,
    .norm_h = cu_norm_h,
    .linear_h = cu_linear_h,
    .linear_h_f32 = cu_linear_h_f32,
    .rope_h = cu_rope_h,
    .attention_h = cu_attention_h,
    .swiglu_h = cu_swiglu_h,
};

/* KG_CUDA_ACT16=0: float32 activations everywhere (for comparisons). */
static const kg_backend_ops cuda_ops_f32 = {
    .name = "cuda",
    KG_CUDA_OPS_COMMON,
};

extern "C" const kg_cuda_context *kg_cuda_context_of(const kg_backend *be) {
  if (!be || (be->ops != &cuda_ops && be->ops != &cuda_ops_f32)) return NULL;
  return &((const kg_cuda_impl *)be->impl)->ctx;
}

static void cu_destroy(kg_backend *be) {
  kg_cuda_impl *c = kg_cuda_impl_of(be);
  if (c) {
    cudaSetDevice(c->ctx.device);
    if (c->ctx.stream) cudaStreamSynchronize(c->ctx.stream);
    kg_cuda_profile_report(c);
    kg_cuda_gemm_destroy(c);
    kg_cuda_streaming_destroy(c);
    kg_cuda_scratch *scr[] = {&c->cast, &c->stage32, &c->stage16, &c->small, &c->gram};
    for (size_t i = 0; i < sizeof(scr) / sizeof(scr[0]); i++) kg_cuda_dev_free(c, scr[i]->ptr);
    if (c->ctx.workspace) kg_cuda_dev_free(c, c->ctx.workspace);
    if (c->inexact) kg_cuda_dev_free(c, c->inexact);
    if (c->ctx.cublas) cublasDestroy(c->ctx.cublas);
    if (c->ctx.cublaslt) cublasLtDestroy(c->ctx.cublaslt);
    if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
    if (c->ctx.stream) cudaStreamDestroy(c->ctx.stream);
    if (c->sizes && !c->sizes->empty())
      kg_debug("CUDA backend: %zu buffers (%.1f MiB) still allocated at destroy", c->sizes->size(),
               (double)c->used / (1 << 20));
    delete c->sizes;
    free(c);
  }
  free(be);
}

/* The node-local rank from the launcher's environment, else 0. */
static int local_rank(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
    const char *v = getenv(vars[i]);
    char *end = NULL;
    if (v && *v) {
      long r = strtol(v, &end, 10);
      if (!*end && r >= 0 && r < (1 << 20)) return (int)r;
    }
  }
  return 0;
}

static int create_impl(kg_cuda_impl *c, kg_backend *be) {
  KG_CUDA(cudaSetDevice(c->ctx.device));
  size_t free_b = 0, total_b = 0;
  KG_CUDA(cudaMemGetInfo(&free_b, &total_b));
  c->device_total = total_b;
  KG_CUDA(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->ctx.device));
  KG_CUDA(cudaStreamCreateWithFlags(&c->ctx.stream, cudaStreamNonBlocking));
  KG_CUDA(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
  KG_CUBLAS(cublasCreate(&c->ctx.cublas));
  KG_CUBLAS(cublasSetStream(c->ctx.cublas, c->ctx.stream));
  KG_CUBLAS(cublasLtCreate(&c->ctx.cublaslt));
  if (!(c->ctx.workspace = kg_cuda_dev_alloc(c, CUBLAS_WORKSPACE_BYTES, "the cuBLAS workspace"))) return kg_error_code();
  c->ctx.workspace_bytes = CUBLAS_WORKSPACE_BYTES;
  if (!(c->inexact = (int *)kg_cuda_dev_alloc(c, sizeof(int), "a conversion flag"))) return kg_error_code();
  KG_CUBLAS(cublasSetWorkspace(c->ctx.cublas, c->ctx.workspace, c->ctx.workspace_bytes));
  KG_TRY(kg_cuda_profile_init(c));
  return kg_cuda_streaming_init(c);
}

extern "C" int kg_cuda_backend_create(int device, kg_backend **out) {
  *out = NULL;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    cudaGetLastError();
    return kg_error(KG_ERR_DEVICE, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (device >= count) return kg_error(KG_ERR_ARG, "CUDA device %d requested, %d present", device, count);
  if (device < 0) device = local_rank() % count;

  kg_dtype wdtype = KG_DT_BF16;
  const char *wd = getenv("KG_CUDA_WEIGHT_DTYPE");
  if (wd && *wd) {
    if (!strcmp(wd, "f16") || !strcmp(wd, "fp16")) wdtype = KG_DT_F16;
    else if (strcmp(wd, "bf16"))
      return kg_error(KG_ERR_ARG, "KG_CUDA_WEIGHT_DTYPE=%s: expected bf16 or f16", wd);
  }
  size_t budget = 0;
  const char *gb = getenv("KG_GPU_MEMORY_GB");
  if (gb && *gb) {
    char *end = NULL;
    double v = strtod(gb, &end);
    if (*end || !(v >= 0.0) || v > 1e6) return kg_error(KG_ERR_ARG, "KG_GPU_MEMORY_GB=%s: expected a number of GiB", gb);
    budget = (size_t)(v * (double)(1 << 30));
  }
  const char *act = getenv("KG_CUDA_ACT16");
  const int act16 = !(act && !strcmp(act, "0"));

  kg_backend *be = (kg_backend *)calloc(1, sizeof(*be));
  kg_cuda_impl *c = (kg_cuda_impl *)calloc(1, sizeof(*c));
  if (!be || !c) {
    free(be);
    free(c);
    return kg_error(KG_ERR_NOMEM, "out of memory creating the CUDA backend");
  }
  c->sizes = new (std::nothrow) std::unordered_map<void *, size_t>();
  c->ctx.device = device;
  c->ctx.memory_budget_bytes = budget;
  c->wdtype = wdtype;
  c->current_slot = -1;
  be->ops = act16 ? &cuda_ops : &cuda_ops_f32;
  be->impl = c;
  be->n_threads = 1;
  be->act16 = wdtype;
  be->preferred_rows = preferred_rows();
  int rc = c->sizes ? create_impl(c, be) : kg_error(KG_ERR_NOMEM, "out of memory creating the CUDA backend");
  if (rc < 0) {
    kg_error_context("CUDA device %d: ", device);
    cu_destroy(be);
    return rc;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess)
    kg_debug("CUDA backend on device %d (%s, %d SMs, %.1f GiB), %s weights, budget %.2f GiB", device, prop.name,
             c->sm_count, (double)c->device_total / (1 << 30), wdtype == KG_DT_F16 ? "f16" : "bf16",
             (double)budget / (1 << 30));
  *out = be;
  return KG_OK;
}

