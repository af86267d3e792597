/* The compute backend interface (ggml style): the transformer in model/ is
 * written once against these operations; the CPU backend implements them with
 * OpenBLAS and OpenMP, the CUDA backend (model/cuda/) with cuBLAS and fused
 * kernels. The CPU path is the reference the CUDA path is validated against.
 *
 * Activations are float32 buffers in backend memory ("device" buffers; host
 * memory for the CPU backend). Weights are uploaded once into a kg_weight in
 * the backend's preferred storage format (CPU: fp32; CUDA: bf16 or fp16).
 * Every operation returns KG_OK or a negative kg_code with kg_error set. */
#ifndef KG_MODEL_BACKEND_H
#define KG_MODEL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/model_config.h"

typedef struct kg_backend kg_backend;

/* A weight matrix [rows, cols] (rows = output features) in backend storage. */
typedef struct kg_weight {
  int rows;
  int cols;
  kg_dtype dtype;  /* storage type chosen by the backend */
  void *data;      /* backend memory, owned by the backend (weight_release) */
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
  void (*release)(kg_backend *be, void *ptr);
  int (*to_device)(kg_backend *be, void *dst, const void *src, size_t bytes);
  int (*to_host)(kg_backend *be, void *dst, const void *src, size_t bytes);
  int (*copy)(kg_backend *be, void *dst, const void *src, size_t bytes); /* device to device */
  int (*synchronize)(kg_backend *be);

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
} kg_backend_ops;

struct kg_backend {
  const kg_backend_ops *ops;
  int n_threads;
  void *impl;
};

/* The CPU backend; n_threads <= 0 uses all cores. Caller owns the result
 * (kg_backend_destroy). */
int kg_cpu_backend_create(int n_threads, kg_backend **out);
/* The CUDA backend when this build has it (KG_ERR_UNSUPPORTED otherwise). */
int kg_cuda_backend_create(int device, kg_backend **out);
/* Creates a backend by name: "cpu" or "cuda" / "cuda:N". */
int kg_backend_create(const char *name, int n_threads, kg_backend **out);
void kg_backend_destroy(kg_backend *be);

#endif
