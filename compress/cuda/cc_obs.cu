/* The SparseGPT / GPTQ column sweep (compress/obs.h) on the device, float32.
 *
 * Factorization: H = 2/n G with the dead-column fix and damping, permuted
 * (act_order) and reversed, is factored by cuSOLVER potrf; its triangular
 * inverse (trtri), reversed back, is the upper Cholesky factor U of H^-1:
 * the same P chol(P H P)^-1 P identity compress/linalg.c uses. A failed
 * potrf (not positive definite) retries with percdamp * 10, as the host does.
 *
 * Sweep: per block of <= 128 columns, one kernel: a warp per row holds the
 * block's 128 weights in registers (lane l owns columns l, l+32, l+64,
 * l+96), U's diagonal block sits in shared memory, and the column loop runs
 * in registers: the owner lane of column i computes q (mask, quantizer), the
 * loss and the error, broadcasts the error with a shuffle, and every lane
 * updates its later columns. N:M choices are made every M columns from the
 * current values; unstructured masks come from a device radix select over the
 * block's scores before the kernel. One cuBLAS SGEMM then applies the lazy
 * update W[:, i2:] -= Err @ U[i1:i2, i2:]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/cuda/cc_select.cuh"

extern "C" {
#include "io/log.h"
}

#define SW_WARPS 32 /* rows per thread block */
#define SW_MAXB 128
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float sw_score(float w, float d) { return __fdiv_rn(__fmul_rn(w, w), __fmul_rn(d, d)); }

/* keys[r * count + c] = bits of the score of W[r, i1 + c]: the radix select
 * passes then read 4 bytes per weight instead of recomputing. */
__global__ void k_sgpt_keys(const float *W, int64_t ld, int rows, int i1, int count, const float *U, int64_t n,
                            unsigned *keys) {
  const int64_t total = (int64_t)rows * count;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t r = idx / count;
    const int c = (int)(idx - r * count);
    keys[idx] = __float_as_uint(sw_score(W[r * ld + i1 + c], U[(int64_t)(i1 + c) * n + i1 + c]));
  }
}

struct sweep_args {
  float *W;      /* [rows, n] working weights */
  int64_t n;     /* columns = order of U = leading dimension */
  int rows, i1, count;
  const float *U;
  float *err;    /* [rows, count] */
  double *rowloss;
  unsigned long long *masked;
  int mode;      /* 0 no pruning, 1 threshold (keys <= thr), 2 N:M */
  const cc_select_state *thr;
  const unsigned *keys; /* [rows, count] score bits (mode 1) */
  int nm_n, nm_m;
  int quant, bits, sym;
  float maxq;
  int64_t gs;    /* > 0: groups of gs permuted positions */
  float *scale, *zero; /* [rows] current quantizer parameters */
};

/* Quantizer parameters of the group starting at position c, from W as the
 * reference reads it (this block's columns still hold their block-start
 * values in memory; later columns carry earlier blocks' updates). */
__device__ void sw_group_params(const sweep_args &a, int r, int64_t c, int lane, float *scale, float *zero) {
  const int64_t end = c + a.gs < a.n ? c + a.gs : a.n;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t k = c + lane; k < end; k += 32) {
    const float v = a.W[(int64_t)r * a.n + k];
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(FULL_MASK, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(FULL_MASK, hi, o));
  }
  cc_quant_params(lo, hi, a.bits, a.sym, scale, zero);
}

__global__ void __launch_bounds__(SW_WARPS * 32) k_sweep(sweep_args a) {
  extern __shared__ double smem_d[];
  const int count = a.count;
  double *gbuf = smem_d;                        /* [SW_WARPS][SW_MAXB] N:M scores */
  float *hs = (float *)(smem_d + SW_WARPS * SW_MAXB); /* [count][count], upper triangle */
  for (int idx = threadIdx.x; idx < count * count; idx += blockDim.x) {
    const int ra = idx / count, cb = idx - ra * count;
    if (cb >= ra) hs[idx] = a.U[(int64_t)(a.i1 + ra) * a.n + a.i1 + cb];
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.x * SW_WARPS + warp;
  if (r >= a.rows) return;
  float *wrow = a.W + (int64_t)r * a.n + a.i1;
  float w[4], e[4];
  unsigned mk = 0; /* bit t: column lane + 32 t is pruned */
#pragma unroll
  for (int t = 0; t < 4; t++) {
    const int c = lane + 32 * t;
    w[t] = c < count ? wrow[c] : 0.0f;
    e[t] = 0.0f;
  }
  if (a.mode == 1) {
    const unsigned thr = a.thr->prefix;
#pragma unroll
    for (int t = 0; t < 4; t++) {
      const int c = lane + 32 * t;
      if (c < count && a.keys[(int64_t)r * count + c] <= thr) mk |= 1u << t;
    }
  }
  float scale = 0.0f, zero = 0.0f;
  if (a.quant) {
    scale = a.scale[r];
    zero = a.zero[r];
  }
  double loss = 0.0;
  int nmasked = 0;
  double *gb = gbuf + warp * SW_MAXB;
#pragma unroll
  for (int t = 0; t < 4; t++) {
    for (int l = 0; l < 32; l++) {
      const int i = t * 32 + l;
      if (i >= count) break;
      if (a.mode == 2 && i % a.nm_m == 0) {
        /* kg_nm_select on the current values: rank by (score, column) */
        const int m = a.nm_m;
#pragma unroll
        for (int t2 = 0; t2 < 4; t2++) {
          const int c2 = lane + 32 * t2;
          if (c2 >= i && c2 < i + m) {
            const double wd = w[t2], dd = hs[c2 * count + c2];
            gb[c2 - i] = (wd * wd) / (dd * dd);
          }
        }
        __syncwarp();
#pragma unroll
        for (int t2 = 0; t2 < 4; t2++) {
          const int c2 = lane + 32 * t2;
          if (c2 >= i && c2 < i + m) {
            const double s = gb[c2 - i];
            int rank = 0;
            for (int j = 0; j < m; j++) {
              const double sj = gb[j];
              rank += sj < s || (sj == s && j < c2 - i);
            }
            if (rank < a.nm_n)
              mk |= 1u << t2;
            else
              mk &= ~(1u << t2);
          }
        }
        __syncwarp();
      }
      if (a.gs > 0 && (a.i1 + i) % a.gs == 0) {
        sw_group_params(a, r, a.i1 + i, lane, &scale, &zero);
        if (lane == 0) {
          a.scale[r] = scale;
          a.zero[r] = zero;
        }
      }
      const float d = hs[i * count + i];
      float err_i = 0.0f;
      if (lane == l) {
        const float wi = w[t];
        const int pruned = (mk >> t) & 1u;
        float q = pruned ? 0.0f : wi;
        if (a.quant) q = cc_quant_value(q, scale, zero, a.maxq);
        const float diff = __fsub_rn(wi, q);
        loss += ((double)diff * (double)diff) / ((double)d * (double)d);
        err_i = __fdiv_rn(diff, d);
        w[t] = q;
        e[t] = err_i;
        nmasked += pruned;
      }
      err_i = __shfl_sync(FULL_MASK, err_i, l);
#pragma unroll
      for (int t2 = t; t2 < 4; t2++) {
        const int c2 = lane + 32 * t2;
        if (c2 > i && c2 < count) w[t2] = __fmaf_rn(-err_i, hs[i * count + c2], w[t2]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < 4; t++) {
    const int c = lane + 32 * t;
    if (c < count) {
      wrow[c] = w[t];
      a.err[(int64_t)r * count + c] = e[t];
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    loss += __shfl_xor_sync(FULL_MASK, loss, o);
    nmasked += __shfl_xor_sync(FULL_MASK, nmasked, o);
  }
  if (lane == 0) {
    a.rowloss[r] += loss;
    if (nmasked) atomicAdd(a.masked, (unsigned long long)nmasked);
  }
}

/* Per-row quantizer parameters from the original W (find_params(W)). */
__global__ void k_row_params(const float *W, int rows, int64_t n, int bits, int sym, float *scale, float *zero) {
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= rows) return;
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t k = lane; k < n; k += 32) {
    const float v = W[(int64_t)r * n + k];
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(FULL_MASK, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(FULL_MASK, hi, o));
  }
  if (lane == 0) cc_quant_params(lo, hi, bits, sym, &scale[r], &zero[r]);
}

/* A[i][j] = scale2 * G[p[i]][p[j]] with the dead fix and damping on the
 * diagonal (p already composed with the reversal). Flags non-finite G. */
__global__ void k_build(const float *G, int64_t n, double scale2, const int32_t *p, const uint8_t *dead, double damp,
                        float *A, int *flags) {
  const int64_t total = n * n;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int bad = 0;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t i = idx / n, j = idx - i * n;
    const int64_t pi = p[i], pj = p[j];
    const float g = G[pi * n + pj];
    if (!(fabsf(g) <= FLT_MAX)) bad = 1;
    if (i == j)
      A[idx] = (float)((dead[pi] ? 1.0 : scale2 * (double)g) + damp);
    else
      A[idx] = (float)(scale2 * (double)g);
  }
  if (bad) flags[0] = 1;
}

/* In place: from cuSOLVER's column-major lower L^-1 of the reversed matrix to
 * row-major U = P L^-1 P (upper); the strict lower part is zeroed. The map
 * k -> n^2 - 1 - transpose(k) is an involution, so pairs are swapped once. */
__global__ void k_reverse_inverse(float *M, int64_t n) {
  const int64_t total = n * n;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
    const int64_t i = k / n, j = k - i * n;
    if (i > j) {
      M[k] = 0.0f;
      continue;
    }
    const int64_t k2 = total - 1 - (j * n + i);
    if (k < k2) {
      const float t = M[k];
      M[k] = M[k2];
      M[k2] = t;
    }
  }
}

/* dst[r][k] = dead[perm[k]] ? 0 : src[r][perm[k]] (gather), or back. */
__global__ void k_permute(const float *src, float *dst, int rows, int64_t n, const int32_t *perm, const uint8_t *dead,
                          int gather) {
  const int64_t total = (int64_t)rows * n;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t r = idx / n, k = idx - r * n;
    const int64_t col = perm[k];
    if (gather)
      dst[idx] = dead[col] ? 0.0f : src[r * n + col];
    else
      dst[r * n + col] = src[idx];
  }
}

__global__ void k_zero_dead(float *W, int rows, int64_t n, const uint8_t *dead) {
  const int64_t total = (int64_t)rows * n;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride)
    if (dead[idx % n]) W[idx] = 0.0f;
}

extern "C" int kg_cc_obs_supported(int blocksize, int prune_n, int prune_m) {
  return blocksize >= 1 && blocksize <= SW_MAXB && (prune_n == 0 || prune_m <= SW_MAXB);
}

extern "C" void kg_cc_factor_free(kg_cc_factor *f) {
  if (!f) return;
  kg_cc_free(f->U);
  kg_cc_free(f->perm);
  kg_cc_free(f->dead);
  free(f->host_perm);
  memset(f, 0, sizeof(*f));
}

static int check_job(const kg_cc_obs_job *j) {
  if (!j->W || !j->G) return kg_error(KG_ERR_ARG, "null weight or Gram buffer");
  if (j->n_samples <= 0) return kg_error(KG_ERR_ARG, "no calibration samples accumulated");
  KG_TRY(kg_obs_check_params(j->rows, j->cols, j->blocksize, j->percdamp, j->max_damp_retries, j->prune_n, j->prune_m,
                             j->sparsity, j->quant));
  if (!kg_cc_obs_supported(j->blocksize, j->prune_n, j->prune_m))
    return kg_error(KG_ERR_UNSUPPORTED, "the device sweep takes blocksize <= %d and M <= %d (got %d, %d)", SW_MAXB,
                    SW_MAXB, j->blocksize, j->prune_m);
  if (j->act_order && !j->work) return kg_error(KG_ERR_ARG, "act_order needs a work buffer");
  return KG_OK;
}

static int factor_matches(const kg_cc_factor *f, const kg_cc_obs_job *j) {
  return f && f->U && f->G == j->G && f->n == j->cols && f->n_samples == j->n_samples &&
         f->percdamp_asked == j->percdamp && f->max_retries == j->max_damp_retries && f->act_order == j->act_order;
}

/* Fills f for the job's H: dead columns, permutation, damped factorization
 * with the retry policy of obs.h. */
static int build_factor(kg_cc *cc, const kg_cc_obs_job *job, kg_cc_factor *f) {
  int rc = KG_OK;
  const int64_t n = job->cols;
  float *diag = NULL;
  double *h = NULL;
  uint8_t *dead = NULL;
  int32_t *rperm = NULL, *drperm = NULL;
  int *info_dev = cc->flags + 1;
  void *dws = NULL;
  kg_cc_factor_free(f);
  diag = (float *)malloc((size_t)n * sizeof(float));
  h = (double *)malloc((size_t)n * sizeof(double));
  dead = (uint8_t *)malloc((size_t)n);
  rperm = (int32_t *)malloc((size_t)n * sizeof(int32_t));
  f->host_perm = (int32_t *)malloc((size_t)n * sizeof(int32_t));
  if (!diag || !h || !dead || !rperm || !f->host_perm) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  CC_CUDA(cudaMemcpy2DAsync(diag, sizeof(float), job->G, (size_t)(n + 1) * sizeof(float), sizeof(float), (size_t)n,
                            cudaMemcpyDeviceToHost, cc->stream));
  CC_CUDA(cudaStreamSynchronize(cc->stream));
  {
    const double scale2 = 2.0 / (double)job->n_samples;
    for (int64_t i = 0; i < n; i++) {
      dead[i] = diag[i] == 0.0f;
      f->dead_columns += dead[i];
      h[i] = scale2 * (double)diag[i];
      f->host_perm[i] = (int32_t)i;
    }
    if (job->act_order && (rc = kg_obs_act_order_perm(h, 1, dead, n, f->host_perm)) < 0) goto done;
    for (int64_t i = 0; i < n; i++) rperm[i] = f->host_perm[n - 1 - i];
    CC_TRY(kg_cc_alloc((void **)&f->U, (size_t)n * n * sizeof(float), "an inverse Hessian factor"));
    CC_TRY(kg_cc_alloc((void **)&f->perm, (size_t)n * sizeof(int32_t), "a permutation"));
    CC_TRY(kg_cc_alloc((void **)&drperm, (size_t)n * sizeof(int32_t), "a permutation"));
    CC_TRY(kg_cc_alloc((void **)&f->dead, (size_t)n, "dead columns"));
    CC_CUDA(cudaMemcpyAsync(f->perm, f->host_perm, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, cc->stream));
    CC_CUDA(cudaMemcpyAsync(drperm, rperm, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, cc->stream));
    CC_CUDA(cudaMemcpyAsync(f->dead, dead, (size_t)n, cudaMemcpyHostToDevice, cc->stream));
    size_t dws_bytes = 0, hws_bytes = 0, d2 = 0, h2 = 0;
    CC_CUSOLVER(cusolverDnXpotrf_bufferSize(cc->cusolver, cc->params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, f->U, n,
                                            CUDA_R_32F, &dws_bytes, &hws_bytes));
    CC_CUSOLVER(cusolverDnXtrtri_bufferSize(cc->cusolver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F,
                                            f->U, n, &d2, &h2));
    if (d2 > dws_bytes) dws_bytes = d2;
    if (h2 > hws_bytes) hws_bytes = h2;
    CC_TRY(cc_scratch(cc, CC_SCRATCH_SOLVER, dws_bytes + 16, &dws));
    if (hws_bytes > cc->host_ws_cap) {
      free(cc->host_ws);
      cc->host_ws_cap = 0;
      if (!(cc->host_ws = malloc(hws_bytes))) {
        rc = kg_error(KG_ERR_NOMEM, "out of memory for a cuSOLVER workspace");
        goto done;
      }
      cc->host_ws_cap = hws_bytes;
    }
    double pd = job->percdamp;
    for (int attempt = 0;; attempt++) {
      double mean = 0.0;
      for (int64_t i = 0; i < n; i++) mean += dead[f->host_perm[i]] ? 1.0 : h[f->host_perm[i]];
      mean /= (double)n;
      const double damp = pd * mean;
      k_build<<<cc_blocks(n * n, 256, 8192), 256, 0, cc->stream>>>(job->G, n, scale2, drperm, f->dead, damp, f->U,
                                                                   cc->flags);
      CC_LAUNCHED();
      CC_CUSOLVER(cusolverDnXpotrf(cc->cusolver, cc->params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, f->U, n,
                                   CUDA_R_32F, dws, dws_bytes, cc->host_ws, hws_bytes, info_dev));
      int info = 0;
      CC_CUDA(cudaMemcpyAsync(&info, info_dev, sizeof(int), cudaMemcpyDeviceToHost, cc->stream));
      CC_CUDA(cudaStreamSynchronize(cc->stream));
      CC_TRY(kg_cc_check_finite(cc, "hessian"));
      if (info < 0) {
        rc = kg_error(KG_ERR_DEVICE, "cuSOLVER potrf rejected argument %d", -info);
        goto done;
      }
      if (info == 0) {
        f->percdamp = pd;
        f->damp = damp;
        f->retries = attempt;
        break;
      }
      if (attempt >= job->max_damp_retries) {
        rc = kg_error(KG_ERR_NUMERIC,
                      "hessian with percdamp %g after %d retries: not positive definite (leading minor %d)", pd,
                      attempt, info);
        goto done;
      }
      kg_warn("hessian (%lld inputs) is not positive definite with percdamp %g; retrying with %g", (long long)n, pd,
              pd * 10.0);
      pd *= 10.0;
    }
    CC_CUSOLVER(cusolverDnXtrtri(cc->cusolver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F, f->U, n,
                                 dws, dws_bytes, cc->host_ws, hws_bytes, info_dev));
    int info = 0;
    CC_CUDA(cudaMemcpyAsync(&info, info_dev, sizeof(int), cudaMemcpyDeviceToHost, cc->stream));
    CC_CUDA(cudaStreamSynchronize(cc->stream));
    if (info != 0) {
      rc = kg_error(KG_ERR_NUMERIC, "hessian factor is singular (trtri info %d)", info);
      goto done;
    }
    k_reverse_inverse<<<cc_blocks(n * n, 256, 8192), 256, 0, cc->stream>>>(f->U, n);
    CC_LAUNCHED();
  }
  f->G = job->G;
  f->n = n;
  f->n_samples = job->n_samples;
  f->percdamp_asked = job->percdamp;
  f->max_retries = job->max_damp_retries;
  f->act_order = job->act_order;
done:
  free(diag);
  free(h);
  free(dead);
  free(rperm);
  kg_cc_free(drperm);
  if (rc < 0) kg_cc_factor_free(f);
  return rc;
}

extern "C" int kg_cc_obs_prepare(kg_cc *cc, const kg_cc_obs_job *job, kg_cc_factor *factor) {
  if (!job->G) return kg_error(KG_ERR_ARG, "null Gram buffer");
  if (job->n_samples <= 0) return kg_error(KG_ERR_ARG, "no calibration samples accumulated");
  if (factor_matches(factor, job)) return KG_OK;
  return build_factor(cc, job, factor);
}

extern "C" int kg_cc_obs_sweep(kg_cc *cc, const kg_cc_obs_job *job, kg_cc_factor *factor, kg_obs_result *res) {
  int rc = KG_OK;
  kg_cc_factor local;
  memset(&local, 0, sizeof(local));
  memset(res, 0, sizeof(*res));
  const double t0 = kg_now();
  KG_TRY(check_job(job));
  kg_cc_factor *f = factor ? factor : &local;
  const int64_t rows = job->rows, n = job->cols, B = job->blocksize < n ? job->blocksize : n;
  const int grouped = job->quant && job->quant->group_size > 0;
  float *Wk = job->act_order ? job->work : job->W;
  float *rowbuf = NULL, *blk = NULL;
  unsigned *keys = NULL;
  unsigned long long *masked = NULL;
  cc_select_state *st = NULL;
  double *rowloss_host = NULL;
  unsigned long long masked_host = 0;
  const size_t smem = SW_WARPS * SW_MAXB * sizeof(double) + (size_t)B * B * sizeof(float);

  /* Bad weights fail before anything changes. */
  CC_TRY(kg_cc_flag_nonfinite(cc, job->W, rows * n));
  CC_TRY(kg_cc_check_finite(cc, "weight"));
  /* scale, zero [rows] floats; losses [rows] doubles; counter */
  CC_TRY(cc_scratch(cc, CC_SCRATCH_ROW, (size_t)rows * (2 * sizeof(float) + sizeof(double)) + 64, (void **)&rowbuf));
  CC_TRY(cc_scratch(cc, CC_SCRATCH_BLOCK, (size_t)rows * B * sizeof(float), (void **)&blk));
  CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&st));
  if (!job->prune_n && job->sparsity > 0.0)
    CC_TRY(cc_scratch(cc, CC_SCRATCH_KEYS, (size_t)rows * B * sizeof(unsigned), (void **)&keys));
  masked = (unsigned long long *)((char *)st + 2048);
  {
    float *scale = rowbuf, *zero = rowbuf + rows;
    double *rowloss = (double *)(rowbuf + 2 * rows + ((2 * rows) & 1));
    CC_CUDA(cudaMemsetAsync(rowloss, 0, (size_t)rows * sizeof(double), cc->stream));
    CC_CUDA(cudaMemsetAsync(masked, 0, sizeof(*masked), cc->stream));
    if (job->quant && !grouped) {
      k_row_params<<<cc_blocks(rows, 8, 1u << 30), 256, 0, cc->stream>>>(job->W, (int)rows, n, job->quant->bits,
                                                                          job->quant->sym, scale, zero);
      CC_LAUNCHED();
    }
    if (!factor_matches(f, job)) CC_TRY(build_factor(cc, job, f));
    if (job->act_order) {
      k_permute<<<cc_blocks(rows * n, 256, 8192), 256, 0, cc->stream>>>(job->W, Wk, (int)rows, n, f->perm, f->dead, 1);
      CC_LAUNCHED();
    } else if (f->dead_columns) {
      k_zero_dead<<<cc_blocks(rows * n, 256, 8192), 256, 0, cc->stream>>>(Wk, (int)rows, n, f->dead);
      CC_LAUNCHED();
    }
    CC_CUDA(cudaFuncSetAttribute(k_sweep, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    sweep_args a;
    memset(&a, 0, sizeof(a));
    a.W = Wk;
    a.n = n;
    a.rows = (int)rows;
    a.U = f->U;
    a.err = blk;
    a.rowloss = rowloss;
    a.masked = masked;
    a.mode = job->prune_n ? 2 : job->sparsity > 0.0 ? 1 : 0;
    a.thr = st;
    a.keys = keys;
    a.nm_n = job->prune_n;
    a.nm_m = job->prune_m;
    if (job->quant) {
      a.quant = 1;
      a.bits = job->quant->bits;
      a.sym = job->quant->sym;
      a.maxq = (float)((1 << job->quant->bits) - 1);
      a.gs = grouped ? job->quant->group_size : 0;
      a.scale = scale;
      a.zero = zero;
    }
    const float minus_one = -1.0f, one = 1.0f;
    for (int64_t i1 = 0; i1 < n; i1 += B) {
      const int64_t i2 = i1 + B < n ? i1 + B : n, count = i2 - i1;
      a.i1 = (int)i1;
      a.count = (int)count;
      if (a.mode == 1) {
        const int64_t total = rows * count;
        k_sgpt_keys<<<cc_blocks(total, 256, 4096), 256, 0, cc->stream>>>(Wk, n, (int)rows, (int)i1, (int)count, f->U,
                                                                          n, keys);
        CC_LAUNCHED();
        CC_TRY(cc_select_kth(cc, cc_array_key{keys}, total, (unsigned long long)(int64_t)((double)total * job->sparsity),
                             st));
      }
      k_sweep<<<(unsigned)((rows + SW_WARPS - 1) / SW_WARPS), SW_WARPS * 32, smem, cc->stream>>>(a);
      CC_LAUNCHED();
      if (i2 < n) {
        CC_CUBLAS(cublasSgemm(cc->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(n - i2), (int)rows, (int)count, &minus_one,
                              f->U + i1 * n + i2, (int)n, blk, (int)count, &one, Wk + i2, (int)n));
      }
    }
    if (job->act_order) {
      k_permute<<<cc_blocks(rows * n, 256, 8192), 256, 0, cc->stream>>>(Wk, job->W, (int)rows, n, f->perm, f->dead, 0);
      CC_LAUNCHED();
    }
    if (!(rowloss_host = (double *)malloc((size_t)rows * sizeof(double)))) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
    CC_CUDA(cudaMemcpyAsync(rowloss_host, rowloss, (size_t)rows * sizeof(double), cudaMemcpyDeviceToHost, cc->stream));
    CC_CUDA(cudaMemcpyAsync(&masked_host, masked, sizeof(masked_host), cudaMemcpyDeviceToHost, cc->stream));
    CC_CUDA(cudaStreamSynchronize(cc->stream));
  }
  for (int64_t r = 0; r < rows; r++) res->loss += rowloss_host[r];
  res->loss *= 0.5;
  res->percdamp = f->percdamp;
  res->damp = f->damp;
  res->retries = f->retries;
  res->dead_columns = f->dead_columns;
  res->masked = (int64_t)masked_host;
  res->seconds = kg_now() - t0;
done:
  free(rowloss_host);
  if (f == &local) kg_cc_factor_free(&local);
  return rc;
}
