/* A LLaMA-family transformer held in memory: host float32 master weights in
 * one arena (what compression reads and edits) plus the backend's copies
 * (aliases on the CPU backend, bf16/fp16 device copies on CUDA).
 *
 * Rope is always applied in Hugging Face rotate-half form; checkpoints that
 * store q/k rows in Meta's interleaved order are un-permuted at load. */
#ifndef KG_MODEL_MODEL_H
#define KG_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "io/arena.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "io/tokenizer.h"
#include "model/backend.h"

typedef enum kg_linear_id {
  KG_LIN_Q = 0,
  KG_LIN_K,
  KG_LIN_V,
  KG_LIN_O,
  KG_LIN_GATE,
  KG_LIN_UP,
  KG_LIN_DOWN,
  KG_LIN_COUNT
} kg_linear_id;

/* The four distinct inputs of a block's linears: q/k/v share the normed
 * attention input, gate/up share the normed MLP input. */
typedef enum kg_linear_input {
  KG_INPUT_ATTN = 0,     /* q_proj, k_proj, v_proj */
  KG_INPUT_ATTN_OUT = 1, /* o_proj */
  KG_INPUT_MLP = 2,      /* gate_proj, up_proj */
  KG_INPUT_MLP_HIDDEN = 3, /* down_proj */
  KG_INPUT_COUNT
} kg_linear_input;

const char *kg_linear_name(kg_linear_id id);      /* "q_proj", ... */
const char *kg_linear_hf_name(kg_linear_id id);   /* "self_attn.q_proj", "mlp.down_proj", ... */
kg_linear_input kg_linear_input_of(kg_linear_id id);
const char *kg_linear_input_name(kg_linear_input in);

typedef struct kg_linear {
  float *w;     /* host master weights [rows, cols]; owned by the model's arena */
  int rows;     /* output features */
  int cols;     /* input features */
  kg_weight dev;
} kg_linear;

typedef struct kg_block {
  kg_linear lin[KG_LIN_COUNT];
  float *attn_norm; /* [dim] host */
  float *ffn_norm;  /* [dim] host */
  float *q_norm;    /* DCLM qk-norm gains [n_heads*head_dim], else NULL */
  float *k_norm;    /* [n_kv_heads*head_dim], else NULL */
  float *dev_attn_norm, *dev_ffn_norm, *dev_q_norm, *dev_k_norm; /* backend copies */
} kg_block;

typedef struct kg_workspace kg_workspace;

typedef struct kg_model {
  kg_model_config cfg;
  kg_block *blocks;      /* [n_layers] */
  float *embed;          /* [vocab, dim] host */
  float *final_norm;     /* [dim] host */
  float *lm_head;        /* [vocab, dim] host; == embed when tied */
  kg_weight dev_embed;
  kg_weight dev_lm_head; /* aliases dev_embed when tied */
  float *dev_final_norm;
  float *rope_inv_freq;  /* [head_dim/2] host, scaling applied */
  kg_backend *be;        /* not owned */
  kg_arena *arena;       /* owns the host weights */
  kg_workspace *ws;      /* grow-only scratch, owned; a model is used by one thread at a time */
  char source[512];      /* where it was loaded from */
  char tokenizer_source[512]; /* file the tokenizer came from ("" when not loaded) */
} kg_model;

/* Converts a checkpoint (any supported dtype) into a model on backend `be`
 * (which the caller keeps alive and owns). The checkpoint can be closed
 * afterwards. *out is owned by the caller (kg_model_free). */
int kg_model_from_checkpoint(const kg_checkpoint *ck, kg_backend *be, kg_model **out);
/* Opens `spec` (a path, an alias such as smollm2/stories260K, or
 * synthetic:<spec>) and builds the model; optionally also loads the model's
 * tokenizer (*tok owned by the caller; pass NULL to skip). */
int kg_model_load(const char *spec, kg_backend *be, kg_model **out, kg_tokenizer **tok);
/* Deep copy of the host weights onto backend `be` (a dense reference next to a pruned copy). */
int kg_model_clone(const kg_model *src, kg_backend *be, kg_model **out);
void kg_model_free(kg_model *m);
/* Copies src's host weights into dst (same architecture) and re-uploads:
 * resets a working copy to the dense weights without reallocating. */
int kg_model_copy_weights(kg_model *dst, const kg_model *src);
/* Re-uploads host weights to the backend after compression edited them:
 * one block (layer >= 0) or the whole model (layer < 0). */
int kg_model_sync(kg_model *m, int layer);

/* Writes the host weights as a Hugging Face directory (config.json and
 * safetensors in `dtype`: f32, bf16 or f16), atomically. */
int kg_model_save_hf(const kg_model *m, const char *dir, kg_dtype dtype);

/* Finds the tokenizer that belongs with a checkpoint: the GGUF's own, a
 * tokenizer.json/tokenizer.model in a Hugging Face directory, a tokenizer
 * .bin beside a llama2.c file, or the family's tokenizer from the data
 * directory for synthetic models. */
int kg_model_tokenizer(const char *spec, const kg_checkpoint *ck, kg_tokenizer **out, char *source, size_t cap);

/* Makes a Hugging Face directory written from `m` self-contained for
 * kickgrid: copies the tokenizer file in, or (for a tokenizer embedded in a
 * GGUF) records where it lives in DIR/kickgrid.json. */
int kg_model_save_tokenizer(const kg_model *m, const char *dir);

/* Fills inv_freq[head_dim/2] for the config (theta, llama3/linear scaling). */
void kg_rope_inv_freq(const kg_model_config *cfg, float *inv_freq);

/* ---- Forward passes ---- */

/* Receives logits of selected rows: rows[i] is the row index (s * T + t) of
 * logits[i * vocab ...]. Memory is valid during the call only. Non-zero
 * return stops the forward pass and is passed through. */
typedef int (*kg_logits_fn)(void *ctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab);

typedef struct kg_kv_cache {
  int n_layers;
  int n_seq;
  int max_len;
  int width;   /* n_kv_heads * head_dim */
  int len;     /* positions filled (same for every sequence) */
  float **k;   /* [n_layers] backend buffers [n_seq, max_len, width] */
  float **v;
  kg_backend *be;
} kg_kv_cache;

int kg_kv_cache_create(const kg_model *m, int n_seq, int max_len, kg_kv_cache **out);
void kg_kv_cache_free(kg_kv_cache *c);

typedef struct kg_forward_request {
  const int32_t *tokens;       /* host [n_seq * T]; validated against the vocabulary */
  int n_seq;
  int T;
  kg_kv_cache *cache;          /* NULL: positions 0..T-1, no state kept */
  const uint8_t *want_logits;  /* optional host [n_seq * T]: rows that need logits */
  kg_logits_fn on_logits;      /* NULL: skip the head */
  void *ctx;
  int precise;                 /* 1: float32 activations even where the backend has a faster
                                  16-bit path, so uncached passes compute exactly what cached
                                  (always float32) passes compute */
} kg_forward_request;

/* Runs the model over n_seq sequences of T tokens (right-pad shorter ones:
 * attention is causal, so padding never changes earlier rows). With a cache,
 * tokens are appended at positions cache->len .. cache->len + T - 1 and the
 * cache grows by T. */
int kg_model_forward(kg_model *m, const kg_forward_request *r);

/* Convenience for tests and tools: logits of one sequence, out [T, vocab] host. */
int kg_model_logits(kg_model *m, const int32_t *tokens, int T, float *out);

/* Next-token negative log-likelihoods without host logits: runs n_seq
 * sequences of T tokens (no cache) and computes the head in row chunks on
 * the backend. nll (host [n_seq * T]) gets -log softmax(logits[r])[tokens[r+1]]
 * for every wanted row r (want NULL: every row but each sequence's last),
 * NaN elsewhere; wanting a sequence's last row is an error. */
int kg_model_forward_nll(kg_model *m, const int32_t *tokens, int n_seq, int T, const uint8_t *want, double *nll);
/* Jensen-Shannon divergence (natural log) between the next-token
 * distributions of p and q (same backend and vocabulary) at each wanted row
 * (want NULL: all), and each row's argmax under p and q (either may be NULL);
 * host arrays [n_seq * T], NaN / -1 where not wanted. At most one chunk of
 * logits per model is alive, on the backend. */
int kg_model_forward_js(kg_model *p, kg_model *q, const int32_t *tokens, int n_seq, int T, const uint8_t *want,
                        double *js, int32_t *argmax_p, int32_t *argmax_q);

/* ---- Per-block API for the compression pipeline ---- */

/* Called with each linear input of a block before it is used:
 * x is backend memory [n_rows, cols]. A negative return is an error and
 * stops the pass; KG_HOOK_STOP ends the pass early on purpose (the hidden
 * states are then incomplete) and is returned by kg_model_block_forward. */
#define KG_HOOK_STOP 1
typedef int (*kg_input_hook)(void *ctx, int layer, kg_linear_input which, const float *x, int64_t n_rows,
                             int cols);

/* x (backend memory [n, dim]) = embeddings of tokens. */
int kg_model_embed(kg_model *m, const int32_t *tokens, int64_t n, float *x);
/* Runs block `layer` in place on hidden states x [n_seq * T, dim] (backend
 * memory), positions 0..T-1 per sequence, calling hook (may be NULL). */
int kg_model_block_forward(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook hook, void *ctx);

/* The hook of the 16-bit activation path: x is backend memory [n_rows, cols]
 * of `dtype` (the backend's act16 type), the exact values the linear reads. */
typedef int (*kg_input_hook16)(void *ctx, int layer, kg_linear_input which, const void *x, kg_dtype dtype,
                               int64_t n_rows, int cols);
/* Whether m's backend runs blocks with 16-bit activations (CUDA; not the
 * CPU, not qk-norm models). */
int kg_model_has_act16(const kg_model *m);
/* Sequences of T tokens per forward pass that m's backend runs best at: 1
 * on the CPU and under a GPU memory budget, else enough for the backend's
 * preferred rows (4096 tokens on CUDA). */
int kg_model_preferred_batch(const kg_model *m, int T);
/* As kg_model_block_forward on the 16-bit activation path, the hook seeing
 * 16-bit inputs; KG_ERR_UNSUPPORTED where kg_model_has_act16 is 0. */
int kg_model_block_forward16(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook16 hook, void *ctx);
/* Final norm + head over hidden states x [n_seq * T, dim]. */
int kg_model_head(kg_model *m, const float *x, int n_seq, int T, const uint8_t *want_logits, kg_logits_fn fn,
                  void *ctx);

#endif
