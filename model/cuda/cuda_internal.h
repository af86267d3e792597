/* Internals of the CUDA backend (C++; model/cuda/*.cu only). */
#ifndef KG_MODEL_CUDA_CUDA_INTERNAL_H
#define KG_MODEL_CUDA_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <unordered_map>

#include "model/cuda/kg_cuda.h"

/* Staging slots for streamed blocks: two, so block i+1 uploads (copy stream)
 * while block i computes (main stream). */
#define KG_CUDA_SLOTS 2
#define KG_CUDA_SLOT_MAX_WEIGHTS 16

struct kg_cuda_slot {
  void *dev;          /* device buffer */
  size_t cap;
  kg_weight *held[KG_CUDA_SLOT_MAX_WEIGHTS];
  int n_held;
  cudaEvent_t ready;  /* upload finished (copy stream) */
  cudaEvent_t done;   /* last use finished (main stream), recorded when the slot stops being current */
};

/* Kinds of operations timed under KG_CUDA_PROFILE (cuda_profile.cu). */
enum {
  KG_PROF_GEMM, KG_PROF_ATTENTION, KG_PROF_NORM, KG_PROF_ROPE, KG_PROF_SWIGLU, KG_PROF_ADD, KG_PROF_HEAD,
  KG_PROF_EMBED, KG_PROF_CAST, KG_PROF_COPY, KG_PROF_KINDS
};
struct kg_cuda_profile;

/* A grow-only device scratch buffer. */
struct kg_cuda_scratch {
  void *ptr;
  size_t cap;
};

struct kg_cuda_impl {
  kg_cuda_context ctx;           /* public part, see kg_cuda.h */
  cudaStream_t copy_stream;      /* streamed-weight uploads */
  kg_dtype wdtype;               /* KG_DT_BF16 or KG_DT_F16: weights and 16-bit activations */
  size_t device_total;           /* device memory at creation */
  size_t used;                   /* bytes allocated through the budget */
  size_t peak;
  std::unordered_map<void *, size_t> *sizes; /* live allocations */
  kg_cuda_slot slots[KG_CUDA_SLOTS];
  int current_slot;              /* slot of the last acquired streamed block, -1 */
  kg_cuda_scratch cast;          /* 16-bit copy of a linear's float32 input */
  kg_cuda_scratch stage32;       /* float32 staging of weight uploads */
  kg_cuda_scratch stage16;       /* 16-bit staging of streamed-weight conversion */
  kg_cuda_scratch small;         /* token ids, targets, per-row results */
  kg_cuda_scratch gram;          /* gram_accumulate */
  int *inexact;                  /* device flag of kg_cuda_check_exact16 */
  int sm_count;
  int wgmma_state;               /* sm_90a attention (hopper/): 0 unknown, 1 runs, 2 does not */
  kg_cuda_profile *profile;      /* NULL unless KG_CUDA_PROFILE is set */
  int uses_gemm_plans;           /* counted among the users of the process's GEMM plans (cuda_gemm.cu) */
};

/* Rope frequencies by value: kernels get them as a parameter (no upload). */
#define KG_CUDA_MAX_HALF 512
struct kg_rope_freq {
  float f[KG_CUDA_MAX_HALF];
};

struct kg_attn_params {
  int n_seq, T, pos0, kv_stride, n_heads, n_kv_heads, head_dim;
  int q_stride;   /* elements between query rows: n_heads * head_dim */
  int kv_width;   /* elements between key rows: n_kv_heads * head_dim */
};

static inline kg_cuda_impl *kg_cuda_impl_of(kg_backend *be) { return (kg_cuda_impl *)be->impl; }

/* Memory through the budget (kg_error on failure, NULL returned). */
void *kg_cuda_dev_alloc(kg_cuda_impl *c, size_t bytes, const char *what);
void kg_cuda_dev_free(kg_cuda_impl *c, void *p);
/* Makes s hold at least `bytes` (contents are not kept). */
int kg_cuda_scratch_reserve(kg_cuda_impl *c, kg_cuda_scratch *s, size_t bytes, const char *what);

/* ---- GEMMs (cuda_gemm.cu) ---- */
/* Column-major y[rows x n] = beta y + op_T(W) x16 (row-major y[n, rows] =
 * x[n, cols] W^T), 16-bit W [rows, cols] and x16 of the backend's type,
 * float32 accumulation, y of ytype; the algorithm is planned per shape. */
int kg_cuda_gemm(kg_cuda_impl *c, const void *W, int rows, int cols, const void *x16, int64_t n, void *y,
                 cudaDataType_t ytype, float beta);
void kg_cuda_gemm_destroy(kg_cuda_impl *c);

/* ---- kernels (cuda_kernels.cu, cuda_attention.cu, cuda_head.cu) ---- */
int kg_cuda_f32_to_16(kg_cuda_impl *c, const float *x, void *y, size_t n);
/* Sets *dflag (device int) to 1 when some y[i] (16-bit) does not widen to
 * x[i] bit for bit; the caller zeroes the flag. */
int kg_cuda_check_exact16(kg_cuda_impl *c, const float *x, const void *y, size_t n, int *dflag);
/* x[n] = widened 16-bit y[n] */
int kg_cuda_16_to_f32(kg_cuda_impl *c, const void *y, float *x, size_t n);
int kg_cuda_embed(kg_cuda_impl *c, const void *table, int dim, const int32_t *dtokens, int64_t n, float *out);
/* y32 and/or y16 (either may be NULL) = norm(x) * gain */
int kg_cuda_norm(kg_cuda_impl *c, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d, float eps,
                 float *y32, void *y16);
int kg_cuda_rope(kg_cuda_impl *c, void *x, int x16, int n_seq, int T, int pos0, int n_heads, int head_dim,
                 const float *inv_freq);
int kg_cuda_swiglu(kg_cuda_impl *c, const void *gate, const void *up, int64_t n, void *out, int h16);
int kg_cuda_add(kg_cuda_impl *c, float *y, const float *x, int64_t n);
int kg_cuda_colsq(kg_cuda_impl *c, const float *x, int64_t n, int d, double *dcolsq);
int kg_cuda_f32_to_f64(kg_cuda_impl *c, const float *x, double *y, size_t n);
/* in16: q/k/v/out are 16-bit (wdtype) rather than float32 */
int kg_cuda_attention(kg_cuda_impl *c, const kg_attention_args *a, int in16);
/* The same on Hopper's warpgroup tensor cores (hopper/attention_wgmma.cu),
 * configuration `variant` (9-15, KG_CUDA_ATTN_VARIANT): bf16, head_dim 64 or
 * 128, a 9.0 device and a build with sm_90a code; KG_ERR_UNSUPPORTED (no
 * kg_error) otherwise. */
int kg_cuda_attention_wgmma(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p, int variant);
/* Per-row results into device arrays (dnll [n]; djs [n], dargp/dargq [n]). */
int kg_cuda_row_nll(kg_cuda_impl *c, const float *logits, int64_t n, int vocab, const int32_t *dtargets, double *dnll);
int kg_cuda_row_js(kg_cuda_impl *c, const float *p, const float *q, int64_t n, int vocab, double *djs, int32_t *dargp,
                   int32_t *dargq);

/* ---- KG_CUDA_PROFILE (cuda_profile.cu); every call is a no-op when off ---- */
int kg_cuda_profile_init(kg_cuda_impl *c);
/* Records the start of an operation of `kind` on the stream; returns the
 * pair to pass to _end (-1: not timed). */
int kg_cuda_profile_begin(kg_cuda_impl *c, int kind);
void kg_cuda_profile_end(kg_cuda_impl *c, int pair);
/* Call after the stream was synchronized: reads the recorded pairs. */
void kg_cuda_profile_synced(kg_cuda_impl *c);
/* Logs the totals and frees the profile. */
void kg_cuda_profile_report(kg_cuda_impl *c);

/* Runs op() (returning a kg status) as one timed operation of `kind`. */
template <class Op>
static inline int kg_cuda_timed(kg_cuda_impl *c, int kind, Op op) {
  const int pair = kg_cuda_profile_begin(c, kind);
  const int rc = op();
  kg_cuda_profile_end(c, pair);
  return rc;
}

#define KG_CUDA_LAUNCHED(what) KG_CUDA(cudaGetLastError())

#endif
