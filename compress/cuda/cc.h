/* Device side of the compress layer ("cc"): statistics, activation storage,
 * masks and the SparseGPT/GPTQ sweep on a CUDA device, with a C interface
 * for compress/cuda/engine_cuda.c and the GPU tests.
 *
 * All work is queued on the context's stream (the CUDA backend's stream when
 * the context is made from a backend, so it is ordered with the model's
 * forward pass). Device pointers are marked "device"; everything else is host.
 * Functions return KG_OK or a negative kg_code with kg_error set
 * (KG_ERR_DEVICE for CUDA/cuBLAS/cuSOLVER failures, KG_ERR_NOMEM for device
 * allocations, KG_ERR_NUMERIC for non-finite data or a Hessian that stays
 * indefinite, KG_ERR_COMM for NCCL). Callers own the buffers they pass; the
 * context owns its scratch.
 *
 * 16-bit activations. Activations are stored and fed to the tensor cores as
 * fp16 after scaling by a power of two s = 2^k chosen per call from max|x|
 * so that the largest magnitude lands in [2^14, 2^15): no overflow whatever
 * the model's activation range (LLaMA's "massive activations" reach
 * thousands), 11 significant bits (bf16 has 8), and since s is a power of
 * two the scaling itself is exact; values then round to nearest even. A
 * product of two fp16 values is exact in fp32, so the Gram X^T X (fp32
 * accumulation on the tensor cores, then times 1/s^2, also exact) differs
 * from the fp32 reference only by the input rounding (relative 2^-12 per
 * element) and summation order. Column squared norms (Wanda) are taken from
 * the unrounded fp32 input with float64 sums: the products are exact there,
 * and the kernel is bandwidth-bound, so the extra precision costs nothing. */
#ifndef KG_COMPRESS_CUDA_CC_H
#define KG_COMPRESS_CUDA_CC_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <mpi.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "compress/masks.h"
#include "compress/obs.h"
#include "compress/quant.h"
#include "io/dtype.h"
#include "io/error.h"

/* ---- context ---- */

typedef struct kg_cc {
  int device;
  cudaStream_t stream;         /* borrowed from the backend, or owned (own_stream) */
  int own_stream;
  cublasHandle_t cublas;       /* owned, bound to stream */
  cusolverDnHandle_t cusolver; /* owned, bound to stream */
  cusolverDnParams_t params;
  int *flags;                  /* device [4]: [0] non-finite input seen, [1] factorization info */
  void *scratch[8];            /* grow-only device scratch, see cc_internal.cuh */
  size_t scratch_cap[8];
  void *host_ws;               /* cuSOLVER host workspace */
  size_t host_ws_cap;
} kg_cc;

/* device < 0: the current device. stream NULL: the context makes its own. */
int kg_cc_create(int device, cudaStream_t stream, kg_cc **out);
void kg_cc_destroy(kg_cc *cc);
int kg_cc_sync(kg_cc *cc);
/* Fails with KG_ERR_NUMERIC naming `what` when a kernel flagged a
 * non-finite (or out of fp32 Gram range, |x| >= 2^64) value since the last
 * check; waits for the stream. */
int kg_cc_check_finite(kg_cc *cc, const char *what);
/* cudaMalloc / cudaFree with kickgrid errors (bytes 0 gives NULL). */
int kg_cc_alloc(void **ptr, size_t bytes, const char *what);
void kg_cc_free(void *ptr);
/* Host<->device copies on the context's stream; complete on return. */
int kg_cc_upload(kg_cc *cc, void *dst, const void *src, size_t bytes);
int kg_cc_download(kg_cc *cc, void *dst, const void *src, size_t bytes);

/* Turn library status codes into kg errors (used by the CC_* macros). */
int kg_cc_cuda_fail(cudaError_t e, const char *what, const char *file, int line);
int kg_cc_cublas_fail(cublasStatus_t s, const char *what, const char *file, int line);
int kg_cc_cusolver_fail(cusolverStatus_t s, const char *what, const char *file, int line);

/* ---- 16-bit activation storage ---- */

/* out[n] (device fp16 bits) = x[n] (device fp32) * s, with *scale (device)
 * = s chosen as described above. Flags non-finite input. */
int kg_cc_pack16(kg_cc *cc, const float *x, int64_t n, uint16_t *out, float *scale);
/* x[n] = in[n] / *scale. */
int kg_cc_unpack16(kg_cc *cc, const uint16_t *in, int64_t n, const float *scale, float *x);

/* ---- statistics ---- */

typedef struct kg_cc_stats {
  int64_t d;
  int with_gram;
  int mirror;      /* the Gram holds only its lower blocks until kg_cc_stats_finish */
  float *gram;     /* device [d, d]: sum x x^T, both triangles after kg_cc_stats_finish */
  double *sqnorm;  /* device [d]: sum x_j^2 */
  int64_t n_samples, n_tokens;
} kg_cc_stats;

int kg_cc_stats_init(kg_cc *cc, kg_cc_stats *st, int64_t d, int with_gram);
void kg_cc_stats_free(kg_cc_stats *st);
/* Adds x (device fp32 [rows, d], one calibration sequence per `samples`) to
 * st and, when recon != NULL, to recon's Gram as well (one rounding pass
 * serves both). Queued; bad values are reported by kg_cc_check_finite. */
int kg_cc_stats_add(kg_cc *cc, kg_cc_stats *st, kg_cc_stats *recon, const float *x, int64_t rows, int64_t samples);
/* The same from 16-bit x (dtype KG_DT_BF16 or KG_DT_F16: the values the
 * linears read on the 16-bit activation path): no scaling and no copy, the
 * Gram GEMM reads x itself (products of 16-bit values are exact in fp32). */
int kg_cc_stats_add16(kg_cc *cc, kg_cc_stats *st, kg_cc_stats *recon, const void *x, kg_dtype dtype, int64_t rows,
                      int64_t samples);
/* Completes the Gram after accumulation: wide inputs accumulate only the
 * blocks on and below the diagonal (2x2 or 4x4 blocks: 25% or 37.5% fewer
 * flops), and this copies them onto the blocks above. Idempotent; needed
 * before anything reads the Gram (kg_cc_stats_download calls it). */
int kg_cc_stats_finish(kg_cc *cc, kg_cc_stats *st);
/* Host float64 copy in compress/stats.h's layout (kg_stats_init'ed by the
 * caller with the same d; the Gram only when both have one). */
int kg_cc_stats_download(kg_cc *cc, kg_cc_stats *st, void *host_stats /* kg_linear_stats * */);

/* ---- NCCL team ---- */

typedef struct kg_cc_team kg_cc_team;
/* The NCCL communicator of MPI communicator `comm` on `device`, built on
 * first use (ncclGetUniqueId on rank 0, MPI_Bcast, ncclCommInitRank) and
 * cached for the life of the process. Sets NCCL_NVLS_ENABLE=0 in the
 * environment first unless it is set: NVLink multicast can take a shared
 * host's GPUs out of service. Collective over comm. */
int kg_cc_team_get(MPI_Comm comm, int device, kg_cc_team **out);
int kg_cc_team_size(const kg_cc_team *t);
/* In-place sums over the team on the context's stream. */
int kg_cc_team_sum_f32(kg_cc_team *t, kg_cc *cc, float *buf, size_t n);
int kg_cc_team_sum_f64(kg_cc_team *t, kg_cc *cc, double *buf, size_t n);
/* Sums a stats accumulator: device sums by NCCL, counts by MPI. */
int kg_cc_team_sum_stats(kg_cc_team *t, kg_cc *cc, MPI_Comm comm, kg_cc_stats *st);
void kg_cc_team_release_all(void);

/* ---- masks (in place on device W [rows, cols] fp32) ---- */

/* Magnitude pruning as kg_magnitude_prune (threshold over |W| or N:M). */
int kg_cc_magnitude_prune(kg_cc *cc, float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts);
/* Wanda as kg_wanda_prune without the variant: score |W| * sqrt_scaler[col]
 * (device float64 [cols], sqrt of kg_stats_scaler_row), per-row or N:M. */
int kg_cc_wanda_prune(kg_cc *cc, float *W, int64_t rows, int64_t cols, const double *sqrt_scaler,
                      const kg_prune_opts *opts);
/* Exact zeros among the n entries of device W (waits for the stream). */
int kg_cc_count_zeros(kg_cc *cc, const float *W, int64_t n, int64_t *zeros);
/* bits[i / 32] bit i % 32 = (W[i] == 0) for the n entries of device W:
 * ceil(n / 32) device words, a 32x smaller download than W for the masks.
 * *count (device memory) is set to the number of zeros, so nobody has to
 * count the bits on the host. Queued on the stream; waits for nothing. */
int kg_cc_zero_bitmask(kg_cc *cc, const float *W, int64_t n, uint32_t *bits, unsigned long long *count);
/* Flags a non-finite entry of W (device) for kg_cc_check_finite. */
int kg_cc_flag_nonfinite(kg_cc *cc, const float *W, int64_t n);

/* ---- SparseGPT / GPTQ sweep ---- */

/* The factorization of one input's Hessian, kept for the linears that share
 * it (q/k/v, gate/up): valid while G and the options it was made with. */
typedef struct kg_cc_factor {
  const float *G;      /* the Gram it came from (identity, not owned) */
  int64_t n, n_samples;
  double percdamp_asked;
  int max_retries, act_order;
  float *U;            /* device [n, n] row-major: upper Cholesky factor of H^-1 (permuted) */
  int32_t *perm;       /* device [n]: original column at each position */
  uint8_t *dead;       /* device [n], by original column */
  int32_t *host_perm;  /* [n] */
  double percdamp, damp;
  int retries;
  int64_t dead_columns;
} kg_cc_factor;

void kg_cc_factor_free(kg_cc_factor *f);

typedef struct kg_cc_obs_job {
  float *W;             /* device [rows, cols], updated in place */
  float *work;          /* device [rows, cols] scratch (needed with act_order) */
  int64_t rows, cols;
  const float *G;       /* device [cols, cols] Gram sums; H = 2/n_samples * G */
  int64_t n_samples;
  int blocksize;        /* 1..128 */
  double percdamp;
  int max_damp_retries;
  double sparsity;      /* unstructured, per block by the threshold rule */
  int prune_n, prune_m; /* N:M, M <= 128 dividing blocksize and cols */
  const kg_quant_opts *quant;
  int act_order;
} kg_cc_obs_job;

/* kg_obs_sweep on the device in float32 (see obs.h for the steps; the
 * differences are listed in compress/cuda/README.md). factor may be NULL;
 * otherwise it is reused when it matches the job, and refilled when not.
 * KG_ERR_UNSUPPORTED for shapes the device sweep does not take (the caller
 * then solves on the host). */
int kg_cc_obs_sweep(kg_cc *cc, const kg_cc_obs_job *job, kg_cc_factor *factor, kg_obs_result *res);
/* Builds the factorization kg_cc_obs_sweep would use for job's Gram into
 * *factor (kept when it already matches). Reads neither job->W nor
 * job->work, so the weights may still be uploading on another stream. */
int kg_cc_obs_prepare(kg_cc *cc, const kg_cc_obs_job *job, kg_cc_factor *factor);
/* Whether kg_cc_obs_sweep takes these options. */
int kg_cc_obs_supported(int blocksize, int prune_n, int prune_m);

/* ---- reconstruction error ---- */

/* err = trace((W0-W1) G (W0-W1)^T), base = trace(W0 G W0^T) with G device
 * [cols, cols] Gram sums; fp16 tensor-core products of power-of-two scaled
 * copies (TF32's precision), float64 sums (a report, not a decision:
 * relative error about 1e-3). */
int kg_cc_recon_error(kg_cc *cc, const float *W0, const float *W1, int64_t rows, int64_t cols, const float *G,
                      double *err, double *base);

#ifdef __cplusplus
}
#endif

/* Error macros for functions with one `done:` label and an `int rc`. */
#define CC_CUDA(call)                                                                                      \
  do {                                                                                                     \
    cudaError_t cc_e_ = (call);                                                                            \
    if (cc_e_ != cudaSuccess) {                                                                            \
      rc = kg_cc_cuda_fail(cc_e_, #call, __FILE__, __LINE__);                                              \
      goto done;                                                                                           \
    }                                                                                                      \
  } while (0)
#define CC_CUBLAS(call)                                                                                    \
  do {                                                                                                     \
    cublasStatus_t cc_s_ = (call);                                                                         \
    if (cc_s_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
      rc = kg_cc_cublas_fail(cc_s_, #call, __FILE__, __LINE__);                                            \
      goto done;                                                                                           \
    }                                                                                                      \
  } while (0)
#define CC_CUSOLVER(call)                                                                                  \
  do {                                                                                                     \
    cusolverStatus_t cc_s_ = (call);                                                                       \
    if (cc_s_ != CUSOLVER_STATUS_SUCCESS) {                                                                \
      rc = kg_cc_cusolver_fail(cc_s_, #call, __FILE__, __LINE__);                                          \
      goto done;                                                                                           \
    }                                                                                                      \
  } while (0)
#define CC_TRY(expr)                                                                                       \
  do {                                                                                                     \
    if ((rc = (expr)) < 0) goto done;                                                                      \
  } while (0)
/* A kernel launch: reports a bad configuration at once. */
#define CC_LAUNCHED() CC_CUDA(cudaGetLastError())

#endif
