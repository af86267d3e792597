/* Reconstruction error on the device: trace(D G D^T) summed over row chunks,
 * each chunk one tensor-core GEMM T = D G and a float64 dot product of D and
 * T. Where G is small, G and each chunk are packed to fp16 with a
 * power-of-two scale (kg_cc_pack16), which keeps TF32's 11 significant bits
 * at twice its rate, and the dot product divides the scales back out,
 * exactly; wider inputs use TF32 on G itself. */
#include <string.h>

#include "compress/cuda/cc_internal.cuh"

#define DOT_BLOCKS 256
#define RECON_HALF_G_BYTES ((size_t)40 << 20) /* up to 4096 columns and a little more */


__global__ void k_diff(const float *a, const float *b, int64_t n, float *out) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = a[i] - b[i];
}

/* partial[blockIdx.x] = sum of a[i] * b[i] / (*sa * *sb) over the block's
 * share; NULL scales are 1. */
__global__ void k_dot_partial(const float *a, const float *b, int64_t n, const float *sa, const float *sb,
                              double *partial) {
  double acc = 0.0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) acc += (double)a[i] * (double)b[i];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ double w[32];
  if ((threadIdx.x & 31) == 0) w[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int k = 0; k < (int)(blockDim.x >> 5); k++) t += w[k];
    partial[blockIdx.x] = sa ? t / ((double)*sa * (double)*sb) : t;
  }
}

/* *sum += partials in order (one thread: deterministic). */
__global__ void k_dot_finish(const double *partial, int n, double *sum) {
  double t = 0.0;
  for (int k = 0; k < n; k++) t += partial[k];
  *sum += t;
}

extern "C" int kg_cc_recon_error(kg_cc *cc, const float *W0, const float *W1, int64_t rows, int64_t cols,
                                 const float *G, double *err, double *base) {
  int rc = KG_OK;
  float *chunk = NULL, *prod = NULL, *scales = NULL;
  uint16_t *g16 = NULL, *a16 = NULL;
  double *sums = NULL, host[2] = {0, 0};
  if (rows <= 0 || cols <= 0 || cols > INT32_MAX)
    return kg_error(KG_ERR_ARG, "recon error: bad shape %lldx%lld", (long long)rows, (long long)cols);
  /* about 64 MiB per product chunk */
  int64_t rc_rows = ((int64_t)16 << 20) / cols;
  if (rc_rows < 1) rc_rows = 1;
  if (rc_rows > rows) rc_rows = rows;
  const size_t chunk_n = (size_t)(rc_rows * cols);
  /* An fp16 copy of G only where it is small: a wide input's copy (242 MB at
   * 11008 columns) would sit in scratch and raise SparseGPT's peak memory
   * above the reference's; there TF32 reads G as it is, at half the rate. */
  const int half = (size_t)(cols * cols) * sizeof(uint16_t) <= RECON_HALF_G_BYTES;
  /* fp32 difference, fp32 product, and the fp16 chunk where used */
  CC_TRY(cc_scratch(cc, CC_SCRATCH_BLOCK, chunk_n * (2 * sizeof(float) + (half ? sizeof(uint16_t) : 0)),
                    (void **)&chunk));
  prod = chunk + chunk_n;
  a16 = (uint16_t *)(prod + chunk_n);
  /* partials, the two sums, then the scales of G and of the chunk */
  CC_TRY(cc_scratch(cc, CC_SCRATCH_PARTIAL, (DOT_BLOCKS + 3) * sizeof(double), (void **)&sums));
  scales = (float *)(sums + DOT_BLOCKS + 2);
  CC_CUDA(cudaMemsetAsync(sums + DOT_BLOCKS, 0, 2 * sizeof(double), cc->stream));
  if (half) {
    CC_TRY(cc_scratch(cc, CC_SCRATCH_HALF, (size_t)(cols * cols) * sizeof(uint16_t), (void **)&g16));
    CC_TRY(kg_cc_pack16(cc, G, cols * cols, g16, scales));
  }
  {
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += rc_rows) {
      const int64_t k = rows - r0 < rc_rows ? rows - r0 : rc_rows, n = k * cols;
      for (int which = 0; which < 2; which++) {
        /* which 0: D = W0 - W1 (the error); 1: W0 itself (the baseline) */
        const float *A = W0 + r0 * cols;
        if (which == 0) {
          k_diff<<<cc_blocks(n, 256, 4096), 256, 0, cc->stream>>>(W0 + r0 * cols, W1 + r0 * cols, n, chunk);
          CC_LAUNCHED();
          A = chunk;
        }
        /* row-major A [k, cols] times symmetric G: column-major G * A^T */
        if (half) {
          CC_TRY(kg_cc_pack16(cc, A, n, a16, scales + 1));
          CC_CUBLAS(cublasGemmEx(cc->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)cols, (int)k, (int)cols, &one, g16,
                                 CUDA_R_16F, (int)cols, a16, CUDA_R_16F, (int)cols, &zero, prod, CUDA_R_32F, (int)cols,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        } else {
          CC_CUBLAS(cublasGemmEx(cc->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)cols, (int)k, (int)cols, &one, G, CUDA_R_32F,
                                 (int)cols, A, CUDA_R_32F, (int)cols, &zero, prod, CUDA_R_32F, (int)cols,
                                 CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
        }
        k_dot_partial<<<DOT_BLOCKS, 256, 0, cc->stream>>>(A, prod, n, half ? scales : NULL, half ? scales + 1 : NULL,
                                                          sums);
        CC_LAUNCHED();
        k_dot_finish<<<1, 1, 0, cc->stream>>>(sums, DOT_BLOCKS, sums + DOT_BLOCKS + which);
        CC_LAUNCHED();
      }
    }
  }
  CC_TRY(kg_cc_download(cc, host, sums + DOT_BLOCKS, 2 * sizeof(double)));
  *err = host[0];
  *base = host[1];
done:
  return rc;
}
