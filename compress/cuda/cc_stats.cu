/* Statistics on the device: scaled fp16 copies of the hook input feed a
 * tensor-core Gram update (fp32 accumulation), column squared norms come
 * from the fp32 input with float64 sums; also the 16-bit activation store.
 * See cc.h for the rounding. */
#include <stdlib.h>
#include <string.h>

#include "compress/cuda/cc_internal.cuh"

extern "C" {
#include "compress/stats.h"
}

#define STATS_ROWS_PER_CHUNK 64

/* max|x| as float bits (atomicMax on the bits orders non-negative floats),
 * and the non-finite flag. */
__global__ void k_amax(const float *__restrict__ x, int64_t n, unsigned *amax_bits, int *flags) {
  float m = 0.0f;
  int bad = 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (((uintptr_t)x & 15) == 0) {
    const float4 *x4 = (const float4 *)x;
    const int64_t n4 = n / 4;
    for (int64_t j = i; j < n4; j += stride) {
      const float4 v = x4[j];
      const float a = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
      /* fmaxf drops NaN: check the sum too */
      if (!(fabsf(v.x + v.y + v.z + v.w) <= FLT_MAX) || !(a < CC_AMAX_LIMIT)) bad = 1;
      m = fmaxf(m, a);
    }
    for (int64_t j = n4 * 4 + i; j < n; j += stride) {
      const float a = fabsf(x[j]);
      if (!(a < CC_AMAX_LIMIT)) bad = 1;
      m = fmaxf(m, a);
    }
  } else {
    for (int64_t j = i; j < n; j += stride) {
      const float a = fabsf(x[j]);
      if (!(a < CC_AMAX_LIMIT)) bad = 1;
      m = fmaxf(m, a);
    }
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  __shared__ float wmax[32];
  if ((threadIdx.x & 31) == 0) wmax[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float b = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) b = fmaxf(b, wmax[w]);
    atomicMax(amax_bits, __float_as_uint(b));
  }
  if (bad) flags[0] = 1;
}

__global__ void k_pack16(const float *__restrict__ x, int64_t n, const unsigned *amax_bits, __half *out,
                         float *scale_out) {
  const float s = cc_pow2_scale(*amax_bits);
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __float2half_rn(x[i] * s);
  if (blockIdx.x == 0 && threadIdx.x == 0 && scale_out) *scale_out = s;
}

__global__ void k_unpack16(const __half *__restrict__ in, int64_t n, const float *scale, float *x) {
  const float inv = 1.0f / *scale; /* a power of two: exact */
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = __half2float(in[i]) * inv;
}

/* The end of a column-sums block (32, 8): the 8 row partials of each column
 * into partial[chunk, col], in a fixed order; the bad flag raised. */
__device__ __forceinline__ void stats_rows_finish(double acc, int bad, int col, int d, double *partial, int *flags) {
  __shared__ double part[8][33];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    double t = 0.0;
    for (int k = 0; k < 8; k++) t += part[k][threadIdx.x];
    partial[(int64_t)blockIdx.y * d + col] = t;
  }
  if (bad) flags[0] = 1;
}

/* One pass over x [rows, d]: partial sums of x^2 per chunk of rows (float64,
 * exact products) and, when xh != NULL, the scaled fp16 copy. Block (32, 8):
 * a warp reads 32 consecutive columns of a row. */
__global__ void k_stats_rows(const float *__restrict__ x, int64_t rows, int d, const unsigned *amax_bits,
                             __half *xh, double *partial, float *alpha_beta, int *flags) {
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * STATS_ROWS_PER_CHUNK;
  const int64_t r1 = r0 + STATS_ROWS_PER_CHUNK < rows ? r0 + STATS_ROWS_PER_CHUNK : rows;
  const float s = xh ? cc_pow2_scale(*amax_bits) : 1.0f;
  double acc = 0.0;
  int bad = 0;
  if (col < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float v = x[r * d + col];
      acc += (double)v * (double)v;
      if (!(fabsf(v) <= FLT_MAX)) bad = 1;
      if (xh) xh[r * d + col] = __float2half_rn(v * s);
    }
  }
  stats_rows_finish(acc, bad, col, d, partial, flags);
  if (alpha_beta && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0) {
    alpha_beta[0] = 1.0f / (s * s); /* a power of two: exact */
    alpha_beta[1] = 1.0f;
  }
}

/* sqnorm[j] += sum over chunks in chunk order (deterministic). */
__global__ void k_stats_finish(const double *partial, int chunks, int d, double *sqnorm) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double t = 0.0;
  for (int c = 0; c < chunks; c++) t += partial[(int64_t)c * d + j];
  sqnorm[j] += t;
}

/* Blocks per side for the Gram update: wide inputs skip the blocks above
 * the diagonal; blocks stay large enough (>= 1024) for full-rate GEMMs. */
static int gram_blocks(int64_t d) {
  if (d >= 8192 && d % 4 == 0) return 4;
  if (d >= 2048 && d % 2 == 0) return 2;
  return 1;
}

/* M[i + j d] = M[j + i d] where i's block is above j's (nb blocks a side). */
__global__ void k_mirror_blocks(float *M, int64_t d, int64_t h) {
  const int64_t total = d * d;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
    const int64_t j = k / d, i = k - j * d; /* column-major (i, j) */
    if (i / h < j / h) M[k] = M[j + i * d];
  }
}

/* Gram update of each non-NULL target from xh [rows, d] (16-bit `type`):
 * alpha and beta are device floats. */
static int gram_update(kg_cc *cc, kg_cc_stats *const targets[2], const void *xh, cudaDataType_t type, int64_t rows,
                       int64_t d, const float *alpha_dev, const float *beta_dev) {
  int rc = KG_OK;
  const int nb = gram_blocks(d);
  const int64_t h = d / nb;
  const char *x = (const char *)xh; /* 2 bytes an element */
  CC_CUBLAS(cublasSetPointerMode(cc->cublas, CUBLAS_POINTER_MODE_DEVICE));
  for (int t = 0; t < 2; t++) {
    if (!targets[t]) continue;
    /* Row-major X [rows, d] is column-major X^T (d x rows): G += X^T X is
     * C = A A^T with A = X^T; block (bi, bj), bi >= bj, is A's row block bi
     * times row block bj transposed. */
    for (int bi = 0; bi < nb; bi++)
      for (int bj = 0; bj <= bi; bj++) {
        cublasStatus_t s = cublasGemmEx(cc->cublas, CUBLAS_OP_N, CUBLAS_OP_T, (int)h, (int)h, (int)rows, alpha_dev,
                                        x + 2 * bi * h, type, (int)d, x + 2 * bj * h, type, (int)d, beta_dev,
                                        targets[t]->gram + bi * h + bj * h * d, CUDA_R_32F, (int)d,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) {
          rc = kg_cc_cublas_fail(s, "cublasGemmEx (Gram)", __FILE__, __LINE__);
          goto done;
        }
      }
    targets[t]->mirror = nb > 1;
  }
done:
  cublasSetPointerMode(cc->cublas, CUBLAS_POINTER_MODE_HOST);
  return rc;
}

extern "C" int kg_cc_stats_finish(kg_cc *cc, kg_cc_stats *st) {
  int rc = KG_OK;
  if (!st->gram || !st->mirror) return KG_OK;
  k_mirror_blocks<<<cc_blocks(st->d * st->d, 256, 8192), 256, 0, cc->stream>>>(st->gram, st->d, st->d / gram_blocks(st->d));
  CC_LAUNCHED();
  st->mirror = 0;
done:
  return rc;
}

extern "C" int kg_cc_pack16(kg_cc *cc, const float *x, int64_t n, uint16_t *out, float *scale) {
  int rc = KG_OK;
  unsigned *amax = NULL;
  CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&amax));
  CC_CUDA(cudaMemsetAsync(amax, 0, sizeof(unsigned), cc->stream));
  k_amax<<<cc_blocks(n / 4, 256, 1024), 256, 0, cc->stream>>>(x, n, amax, cc->flags);
  CC_LAUNCHED();
  k_pack16<<<cc_blocks(n, 256, 4096), 256, 0, cc->stream>>>(x, n, amax, (__half *)out, scale);
  CC_LAUNCHED();
done:
  return rc;
}

extern "C" int kg_cc_unpack16(kg_cc *cc, const uint16_t *in, int64_t n, const float *scale, float *x) {
  int rc = KG_OK;
  k_unpack16<<<cc_blocks(n, 256, 4096), 256, 0, cc->stream>>>((const __half *)in, n, scale, x);
  CC_LAUNCHED();
done:
  return rc;
}

extern "C" int kg_cc_stats_init(kg_cc *cc, kg_cc_stats *st, int64_t d, int with_gram) {
  int rc = KG_OK;
  memset(st, 0, sizeof(*st));
  if (d <= 0 || d > ((int64_t)1 << 20)) return kg_error(KG_ERR_ARG, "device stats: input width %lld out of range", (long long)d);
  st->d = d;
  st->with_gram = with_gram ? 1 : 0;
  CC_TRY(kg_cc_alloc((void **)&st->sqnorm, (size_t)d * sizeof(double), "column norms"));
  CC_CUDA(cudaMemsetAsync(st->sqnorm, 0, (size_t)d * sizeof(double), cc->stream));
  if (st->with_gram) {
    CC_TRY(kg_cc_alloc((void **)&st->gram, (size_t)d * (size_t)d * sizeof(float), "a Gram matrix"));
    CC_CUDA(cudaMemsetAsync(st->gram, 0, (size_t)d * (size_t)d * sizeof(float), cc->stream));
  }
  return KG_OK;
done:
  kg_cc_stats_free(st);
  return rc;
}

extern "C" void kg_cc_stats_free(kg_cc_stats *st) {
  if (!st) return;
  kg_cc_free(st->gram);
  kg_cc_free(st->sqnorm);
  memset(st, 0, sizeof(*st));
}

/* After a batch's column sums: the Gram update of whichever of st and recon
 * keep one (from the 16-bit rows xh of `type`, alpha and beta on the device
 * at alpha_beta[0..1]), then both counts. */
static int stats_commit(kg_cc *cc, kg_cc_stats *st, kg_cc_stats *recon, const void *xh, cudaDataType_t type,
                        int64_t rows, int64_t samples, const float *alpha_beta) {
  kg_cc_stats *targets[2] = {st->with_gram ? st : NULL, recon && recon->with_gram ? recon : NULL};
  if (targets[0] || targets[1]) KG_TRY(gram_update(cc, targets, xh, type, rows, st->d, alpha_beta, alpha_beta + 1));
  st->n_samples += samples;
  st->n_tokens += rows;
  if (recon) {
    recon->n_samples += samples;
    recon->n_tokens += rows;
  }
  return KG_OK;
}

extern "C" int kg_cc_stats_add(kg_cc *cc, kg_cc_stats *st, kg_cc_stats *recon, const float *x, int64_t rows,
                               int64_t samples) {
  int rc = KG_OK;
  const int64_t d = st->d;
  const int gram = st->with_gram || (recon && recon->with_gram);
  if (rows <= 0) return KG_OK;
  if (recon && recon->d != d) return kg_error(KG_ERR_ARG, "device stats: recon width %lld != %lld", (long long)recon->d, (long long)d);
  const int chunks = (int)((rows + STATS_ROWS_PER_CHUNK - 1) / STATS_ROWS_PER_CHUNK);
  unsigned *amax = NULL;
  float *small = NULL;
  double *partial = NULL;
  __half *xh = NULL;
  CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&small));
  amax = (unsigned *)small;
  CC_TRY(cc_scratch(cc, CC_SCRATCH_PARTIAL, (size_t)chunks * d * sizeof(double), (void **)&partial));
  if (gram) {
    CC_TRY(cc_scratch(cc, CC_SCRATCH_HALF, (size_t)rows * d * sizeof(__half), (void **)&xh));
    CC_CUDA(cudaMemsetAsync(amax, 0, sizeof(unsigned), cc->stream));
    k_amax<<<cc_blocks(rows * d / 4, 256, 1024), 256, 0, cc->stream>>>(x, rows * d, amax, cc->flags);
    CC_LAUNCHED();
  }
  {
    dim3 grid((unsigned)((d + 31) / 32), (unsigned)chunks), block(32, 8);
    k_stats_rows<<<grid, block, 0, cc->stream>>>(x, rows, (int)d, amax, xh, partial, gram ? small + 1 : NULL,
                                                 cc->flags);
    CC_LAUNCHED();
    k_stats_finish<<<(unsigned)((d + 255) / 256), 256, 0, cc->stream>>>(partial, chunks, (int)d, st->sqnorm);
    CC_LAUNCHED();
  }
  CC_TRY(stats_commit(cc, st, recon, xh, CUDA_R_16F, rows, samples, small + 1));
done:
  return rc;
}

/* Column sums of x^2 (float64) over chunks of rows of 16-bit x, flagging
 * values that are not finite or too large for an fp32 Gram. */
template <typename T16>
__global__ void k_stats_rows16(const T16 *__restrict__ x, int64_t rows, int d, double *partial, float *alpha_beta,
                               int *flags) {
  const int col = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * STATS_ROWS_PER_CHUNK;
  const int64_t r1 = r0 + STATS_ROWS_PER_CHUNK < rows ? r0 + STATS_ROWS_PER_CHUNK : rows;
  double acc = 0.0;
  int bad = 0;
  if (col < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float v = cc_widen(x[r * d + col]);
      acc += (double)v * (double)v;
      if (!(fabsf(v) < CC_AMAX_LIMIT)) bad = 1;
    }
  }
  stats_rows_finish(acc, bad, col, d, partial, flags);
  if (alpha_beta && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0) {
    alpha_beta[0] = 1.0f;
    alpha_beta[1] = 1.0f;
  }
}

/* The same sums, 8 columns a thread through 16-byte loads: the kernel above
 * keeps one 2-byte load in flight per thread, far from the copy rate on a
 * 7B layer's activations. Every column sums its rows in the same order as
 * above (rows threadIdx.y, +8, ...; then the 8 row partials in order), so
 * both kernels give the same bits. Needs d % 8 == 0 and 16-byte rows. */
#define STATS_VEC_COLS 8
template <typename T16>
__global__ void __launch_bounds__(256) k_stats_rows16_vec(const T16 *__restrict__ x, int64_t rows, int d,
                                                          double *partial, float *alpha_beta, int *flags) {
  __shared__ double part[8][32 * STATS_VEC_COLS + 1];
  const int col0 = (blockIdx.x * 32 + threadIdx.x) * STATS_VEC_COLS;
  const int64_t r0 = (int64_t)blockIdx.y * STATS_ROWS_PER_CHUNK;
  const int64_t r1 = r0 + STATS_ROWS_PER_CHUNK < rows ? r0 + STATS_ROWS_PER_CHUNK : rows;
  double acc[STATS_VEC_COLS];
#pragma unroll
  for (int k = 0; k < STATS_VEC_COLS; k++) acc[k] = 0.0;
  int bad = 0;
  if (col0 < d) {
#pragma unroll 4
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4 *>(x + r * d + col0));
      const T16 *v = reinterpret_cast<const T16 *>(&raw);
#pragma unroll
      for (int k = 0; k < STATS_VEC_COLS; k++) {
        const float f = cc_widen(v[k]);
        acc[k] += (double)f * (double)f;
        if (!(fabsf(f) < CC_AMAX_LIMIT)) bad = 1;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < STATS_VEC_COLS; k++) part[threadIdx.y][threadIdx.x * STATS_VEC_COLS + k] = acc[k];
  __syncthreads();
  /* 256 columns, 256 threads: each thread finishes one column */
  const int t = threadIdx.y * 32 + threadIdx.x, col = blockIdx.x * 32 * STATS_VEC_COLS + t;
  if (col < d) {
    double sum = 0.0;
    for (int k = 0; k < 8; k++) sum += part[k][t];
    partial[(int64_t)blockIdx.y * d + col] = sum;
  }
  if (bad) flags[0] = 1;
  if (alpha_beta && blockIdx.x == 0 && blockIdx.y == 0 && t == 0) {
    alpha_beta[0] = 1.0f;
    alpha_beta[1] = 1.0f;
  }
}

extern "C" int kg_cc_stats_add16(kg_cc *cc, kg_cc_stats *st, kg_cc_stats *recon, const void *x, kg_dtype dtype,
                                 int64_t rows, int64_t samples) {
  int rc = KG_OK;
  const int64_t d = st->d;
  const int gram = st->with_gram || (recon && recon->with_gram);
  if (rows <= 0) return KG_OK;
  if (dtype != KG_DT_BF16 && dtype != KG_DT_F16) return kg_error(KG_ERR_ARG, "device stats: 16-bit input expected");
  if (recon && recon->d != d) return kg_error(KG_ERR_ARG, "device stats: recon width %lld != %lld", (long long)recon->d, (long long)d);
  const int chunks = (int)((rows + STATS_ROWS_PER_CHUNK - 1) / STATS_ROWS_PER_CHUNK);
  float *small = NULL;
  double *partial = NULL;
  CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&small));
  CC_TRY(cc_scratch(cc, CC_SCRATCH_PARTIAL, (size_t)chunks * d * sizeof(double), (void **)&partial));
  {
    float *ab = gram ? small + 1 : NULL;
    const dim3 block(32, 8);
    /* KG_CC_STATS_VEC=0 keeps the one-column kernel (for comparisons). */
    const char *vec_env = getenv("KG_CC_STATS_VEC");
    if (d % STATS_VEC_COLS == 0 && (uintptr_t)x % 16 == 0 && !(vec_env && !strcmp(vec_env, "0"))) {
      const dim3 grid((unsigned)((d + 32 * STATS_VEC_COLS - 1) / (32 * STATS_VEC_COLS)), (unsigned)chunks);
      if (dtype == KG_DT_BF16)
        k_stats_rows16_vec<<<grid, block, 0, cc->stream>>>((const __nv_bfloat16 *)x, rows, (int)d, partial, ab,
                                                          cc->flags);
      else
        k_stats_rows16_vec<<<grid, block, 0, cc->stream>>>((const __half *)x, rows, (int)d, partial, ab, cc->flags);
    } else {
      const dim3 grid((unsigned)((d + 31) / 32), (unsigned)chunks);
      if (dtype == KG_DT_BF16)
        k_stats_rows16<<<grid, block, 0, cc->stream>>>((const __nv_bfloat16 *)x, rows, (int)d, partial, ab, cc->flags);
      else
        k_stats_rows16<<<grid, block, 0, cc->stream>>>((const __half *)x, rows, (int)d, partial, ab, cc->flags);
    }
    CC_LAUNCHED();
    k_stats_finish<<<(unsigned)((d + 255) / 256), 256, 0, cc->stream>>>(partial, chunks, (int)d, st->sqnorm);
    CC_LAUNCHED();
  }
  CC_TRY(stats_commit(cc, st, recon, x, dtype == KG_DT_BF16 ? CUDA_R_16BF : CUDA_R_16F, rows, samples, small + 1));
done:
  return rc;
}

extern "C" int kg_cc_stats_download(kg_cc *cc, kg_cc_stats *st, void *host_stats) {
  int rc = KG_OK;
  kg_linear_stats *h = (kg_linear_stats *)host_stats;
  float *g = NULL;
  if (h->d != st->d) return kg_error(KG_ERR_ARG, "stats download: widths differ (%lld vs %lld)", (long long)h->d, (long long)st->d);
  CC_TRY(kg_cc_stats_finish(cc, st));
  CC_TRY(kg_cc_download(cc, h->sqnorm, st->sqnorm, (size_t)st->d * sizeof(double)));
  if (h->with_gram && st->with_gram) {
    const size_t n = (size_t)st->d * (size_t)st->d;
    if (!(g = (float *)malloc(n * sizeof(float)))) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory for a %lldx%lld Gram copy", (long long)st->d, (long long)st->d);
      goto done;
    }
    CC_TRY(kg_cc_download(cc, g, st->gram, n * sizeof(float)));
    for (size_t i = 0; i < n; i++) h->gram[i] = g[i];
  }
  h->n_samples = st->n_samples;
  h->n_tokens = st->n_tokens;
done:
  free(g);
  return rc;
}
