/* The compute backend interface (ggml style): the transformer in model/ is
 * written once against these operations; the CPU backend implements them with
 * OpenBLAS and OpenMP, the CUDA backend (model/cuda/) with cuBLAS and fused
 * kernels. The CPU path is the reference the CUDA path is validated against.
 *
 * Activations are float32 buffers in backend memory ("device" buffers; host
 * memory for the CPU backend). Weights are uploaded once into a kg_weight in
 * the backend's preferred storage format (CPU: fp32; CUDA: bf16 or fp16).
 * Every operation returns KG_OK or a negative kg_code with kg_error set.
 *
 * Optional operations (NULL on backends without them, forward.c then composes
 * the basic ones): a memory budget, weight streaming, and a 16-bit activation
 * path for passes that no hook observes (see docs/cuda.md). */
#ifndef KG_MODEL_BACKEND_H
#define KG_MODEL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/model_config.h"

typedef struct kg_backend kg_backend;

/* A weight matrix [rows, cols] (rows = output features) in backend storage.
 * The caller zero-initializes it and may set `group` and `streamed` before
 * the first upload; the backend owns everything else. */
typedef struct kg_weight {
  int rows;
  int cols;
  kg_dtype dtype;  /* storage type chosen by the backend */
  void *data;      /* backend memory, owned by the backend (weight_release); for a
                    * streamed weight, its place in a staging slot while staged, else NULL */
  int group;       /* block index (>= 0) or -1 for weights outside blocks (caller-set) */
  int streamed;    /* caller-set: 1 keeps the weight in host memory, staged per block
                    * (weights_acquire) by backends that stream; ignored by the others */
  void *host;      /* streamed weights: the backend's pinned host copy, else NULL */
  int slot;        /* streamed weights: staging slot + 1 holding it, 0 when not staged */
  int exact;       /* backend-set: 1 when `data` holds the last uploaded (or refreshed)
                    * floats exactly, so they can be read back from it */
} kg_weight;

/* Causal attention over a KV cache. Query row (s, t) sits at position
 * pos0 + t and attends to keys 0 .. pos0 + t of sequence s. */
typedef struct kg_attention_args {
  const float *q;       /* [n_seq * T, n_heads * head_dim] */
  const float *k_cache; /* [n_seq, kv_stride, n_kv_heads * head_dim] */
  const float *v_cache; /* same layout as k_cache */
  float *out;           /* [n_seq * T, n_heads * head_dim] */
  int n_seq;
  int T;
  int pos0;
  int kv_stride;        /* positions allocated per sequence in the cache */
  int n_heads;
  int n_kv_heads;
  int head_dim;
} kg_attention_args;

typedef struct kg_backend_ops {
  const char *name;
  void (*destroy)(kg_backend *be);

  void *(*alloc)(kg_backend *be, size_t bytes); /* NULL + kg_error on failure */
  void (*release)(kg_backend *be, void *ptr);   /* NULL is a no-op */
  int (*to_device)(kg_backend *be, void *dst, const void *src, size_t bytes);
  int (*to_host)(kg_backend *be, void *dst, const void *src, size_t bytes);
  int (*copy)(kg_backend *be, void *dst, const void *src, size_t bytes); /* device to device */
  int (*synchronize)(kg_backend *be);

  /* (Re)places host float32 values into w. A weight that already holds
   * storage of the same shape is overwritten in place (kg_model_sync). */
  int (*weight_upload)(kg_backend *be, kg_weight *w, const float *host, int rows, int cols);
  void (*weight_release)(kg_backend *be, kg_weight *w);

  /* out[i, :] = table[tokens[i], :]; tokens are host memory, validated by the caller. */
  int (*embed)(kg_backend *be, const kg_weight *table, const int32_t *tokens, int64_t n, float *out);
  /* y[n, rows] = x[n, cols] W^T */
  int (*linear)(kg_backend *be, const kg_weight *w, const float *x, int64_t n, float *y);
  /* y = norm(x) * gain over rows of width d; y may alias x. */
  int (*norm)(kg_backend *be, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d,
              float eps, float *y);
  /* Rotate-half RoPE in place on x [n_seq * T, n_heads * head_dim] at positions pos0 + t. */
  int (*rope)(kg_backend *be, float *x, int n_seq, int T, int pos0, int n_heads, int head_dim,
              const float *inv_freq /* host, head_dim/2 */);
  /* Writes rows [n_seq * T, width] into the cache at positions pos0 .. pos0+T-1. */
  int (*cache_store)(kg_backend *be, float *cache, const float *x, int n_seq, int T, int pos0, int kv_stride,
                     int width);
  int (*attention)(kg_backend *be, const kg_attention_args *a);
  /* out = silu(gate) * up */
  int (*swiglu)(kg_backend *be, const float *gate, const float *up, int64_t n, float *out);
  /* y += x */
  int (*add)(kg_backend *be, float *y, const float *x, int64_t n);
  /* Gram accumulation for calibration statistics: gram[d, d] += X^T X and
   * colsq[d] += column sums of X^2 over rows of X [n, d]; gram/colsq are host
   * float64 (either may be NULL). */
  int (*gram_accumulate)(kg_backend *be, const float *x, int64_t n, int d, double *gram, double *colsq);

  /* ---- Row reductions of logits (backend memory [n, vocab]); results are host arrays ---- */
  /* nll[i] = logsumexp(logits[i, :]) - logits[i, targets[i]] in float64
   * (targets: host [n], validated by the caller). */
  int (*row_nll)(kg_backend *be, const float *logits, int64_t n, int vocab, const int32_t *targets, double *nll);
  /* js[i] = Jensen-Shannon divergence (natural log) between softmax(p[i, :])
   * and softmax(q[i, :]); argmax_p/argmax_q (may be NULL): first index of
   * each row's maximum. */
  int (*row_js)(kg_backend *be, const float *p, const float *q, int64_t n, int vocab, double *js,
                int32_t *argmax_p, int32_t *argmax_q);

  /* ---- Optional: memory budget and weight streaming ---- */
  /* 0: no limit beyond the device. */
  int (*set_memory_budget)(kg_backend *be, size_t bytes);
  /* Called before a model's weights are uploaded: n_blocks blocks of
   * block_elems weight elements each, global_elems more (embeddings, head),
   * and reserve_bytes the model's activations will need. Sets *n_resident:
   * blocks [0, n_resident) stay on the device, the rest are uploaded with
   * streamed = 1. */
  int (*plan_weights)(kg_backend *be, int n_blocks, int64_t block_elems, int64_t global_elems, size_t reserve_bytes,
                      int *n_resident);
  /* Makes the n weights (one block's) usable by the operations enqueued
   * next; weights_prefetch starts staging them in the background. Both
   * ignore resident weights. */
  int (*weights_acquire)(kg_backend *be, kg_weight *const *w, int n);
  int (*weights_prefetch)(kg_backend *be, kg_weight *const *w, int n);
  /* Bytes allocated now and at the peak (through the budget). */
  int (*memory_stats)(kg_backend *be, size_t *used, size_t *peak);

  /* ---- Optional 16-bit activation path ----
   * Buffers named *h hold elements of the backend's act16 type (2 bytes
   * each). forward.c uses these only when all are present and nothing
   * observes a block's inputs (no hook, no KV cache). */
  int (*norm_h)(kg_backend *be, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d, float eps,
                void *yh);
  /* yh[n, rows] = xh[n, cols] W^T */
  int (*linear_h)(kg_backend *be, const kg_weight *w, const void *xh, int64_t n, void *yh);
  /* y[n, rows] = xh W^T, or y += xh W^T when accumulate (float32 y) */
  int (*linear_h_f32)(kg_backend *be, const kg_weight *w, const void *xh, int64_t n, float *y, int accumulate);
  int (*rope_h)(kg_backend *be, void *xh, int n_seq, int T, int pos0, int n_heads, int head_dim,
                const float *inv_freq);
  /* As attention, with q, k_cache, v_cache and out pointing at act16 data. */
  int (*attention_h)(kg_backend *be, const kg_attention_args *a);
  /* outh = silu(gateh) * uph; outh may alias gateh */
  int (*swiglu_h)(kg_backend *be, const void *gateh, const void *uph, int64_t n, void *outh);
} kg_backend_ops;

struct kg_backend {
  const kg_backend_ops *ops;
  int n_threads;
  void *impl;
  kg_dtype act16;  /* element type of the 16-bit activation path (KG_DT_BF16 or KG_DT_F16) */
  int64_t preferred_rows; /* tokens a forward pass runs best at (0: no preference, one sequence) */
};

/* The CPU backend; n_threads <= 0 uses all cores. Caller owns the result
 * (kg_backend_destroy). */
int kg_cpu_backend_create(int n_threads, kg_backend **out);
/* The CUDA backend when this build has it (KG_ERR_UNSUPPORTED otherwise).
 * device -1 picks the node-local rank (OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID, MPI_LOCALRANKID, else 0) modulo the device count. Weights
 * are stored in bf16 (KG_CUDA_WEIGHT_DTYPE=f16 for fp16); KG_GPU_MEMORY_GB
 * sets the memory budget. */
int kg_cuda_backend_create(int device, kg_backend **out);
/* Creates a backend by name: "cpu" or "cuda" / "cuda:N". */
int kg_backend_create(const char *name, int n_threads, kg_backend **out);
void kg_backend_destroy(kg_backend *be);
/* Limits the backend's device memory to `bytes` (0: the whole device); a
 * no-op on the CPU. Set it before loading models: it decides which blocks
 * stream from host memory. */
int kg_backend_set_memory_budget(kg_backend *be, size_t bytes);
/* Device bytes in use and their peak; 0 on backends that do not count. */
int kg_backend_memory_stats(kg_backend *be, size_t *used, size_t *peak);

/* The CPU reference math of row_nll and row_js, shared with other layers:
 * log-sum-exp with a float max and a float64 sum; JS from log-probabilities
 * in float64 (kg_row_js_lse takes the rows' log-sum-exps); argmax ties go to
 * the lowest index. */
double kg_row_logsumexp(const float *x, int n);
double kg_row_js_lse(const float *p, double lse_p, const float *q, double lse_q, int n);
int32_t kg_row_argmax(const float *x, int n);

#endif
