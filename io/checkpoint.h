/* Model checkpoints as read from disk: the architecture and a table of named
 * tensors that point into memory-mapped files (no copy) or into the
 * checkpoint's arena (when a format forces a conversion).
 *
 * Every reader maps tensor names to the canonical Hugging Face
 * LlamaForCausalLM names, so model/ sees one naming:
 *   model.embed_tokens.weight                     [vocab, dim]
 *   model.layers.{i}.input_layernorm.weight       [dim]
 *   model.layers.{i}.self_attn.q_proj.weight      [n_heads*head_dim, dim]
 *   model.layers.{i}.self_attn.k_proj.weight      [n_kv_heads*head_dim, dim]
 *   model.layers.{i}.self_attn.v_proj.weight      [n_kv_heads*head_dim, dim]
 *   model.layers.{i}.self_attn.o_proj.weight      [dim, n_heads*head_dim]
 *   model.layers.{i}.self_attn.q_norm.weight      [n_heads*head_dim]     (DCLM only)
 *   model.layers.{i}.self_attn.k_norm.weight      [n_kv_heads*head_dim]  (DCLM only)
 *   model.layers.{i}.post_attention_layernorm.weight [dim]
 *   model.layers.{i}.mlp.gate_proj.weight         [hidden, dim]
 *   model.layers.{i}.mlp.up_proj.weight           [hidden, dim]
 *   model.layers.{i}.mlp.down_proj.weight         [dim, hidden]
 *   model.norm.weight                             [dim]
 *   lm_head.weight                                [vocab, dim]  (absent when tied)
 * Shapes are row-major in PyTorch order (last dimension fastest).
 *
 * q_proj/k_proj rows are in Hugging Face "rotate-half" order. Formats that
 * store them in Meta's interleaved-pair order (llama2.c, GGUF llama) set
 * rope_interleaved; model/ un-permutes those rows when it loads them.
 */
#ifndef KG_IO_CHECKPOINT_H
#define KG_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "io/arena.h"
#include "io/dtype.h"
#include "io/model_config.h"

typedef struct kg_tensor_ref {
  const char *name; /* canonical name, owned by the checkpoint */
  kg_dtype dtype;
  int ndim;
  int64_t shape[4];
  const void *data; /* owned by the checkpoint (mapping or arena) */
  size_t nbytes;
} kg_tensor_ref;

typedef enum kg_ckpt_format {
  KG_CKPT_LLAMA2C = 0,
  KG_CKPT_HF = 1,
  KG_CKPT_GGUF = 2,
  KG_CKPT_SYNTHETIC = 3,
} kg_ckpt_format;

struct kg_gguf;

typedef struct kg_checkpoint {
  kg_ckpt_format format;
  char *path;               /* owned (arena) */
  kg_model_config config;
  kg_tensor_ref *tensors;   /* owned (arena) */
  size_t n_tensors;
  int rope_interleaved;     /* q/k rows in Meta interleaved-pair order */
  struct kg_gguf *gguf;     /* parsed GGUF file (metadata for the tokenizer), else NULL */
  kg_arena *arena;          /* owns everything above, mappings included */
} kg_checkpoint;

/* Opens a checkpoint, detecting the format: a directory is a Hugging Face
 * directory (config.json + safetensors), a file starting with "GGUF" is GGUF,
 * anything else is tried as a llama2.c .bin. On success *out is owned by the
 * caller (kg_checkpoint_close). Errors are one line naming the file. */
int kg_checkpoint_open(const char *path, kg_checkpoint **out);
void kg_checkpoint_close(kg_checkpoint *ck);

/* NULL when absent. */
const kg_tensor_ref *kg_checkpoint_find(const kg_checkpoint *ck, const char *name);

/* Per-format readers behind kg_checkpoint_open. */
int kg_llama2c_open(const char *path, kg_checkpoint **out);
int kg_hf_open(const char *dir, kg_checkpoint **out);
int kg_gguf_checkpoint_open(const char *path, kg_checkpoint **out);

/* Allocates an empty checkpoint with its arena; used by the readers. */
int kg_checkpoint_new(kg_ckpt_format format, const char *path, kg_checkpoint **out);
/* Appends a tensor (name copied into the arena); used by the readers. */
int kg_checkpoint_add(kg_checkpoint *ck, const char *name, kg_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, size_t nbytes);
/* Checks that every tensor the config implies is present with the right shape
 * and a float-convertible dtype; names the file and tensor on failure. */
int kg_checkpoint_check_shapes(const kg_checkpoint *ck);

#endif
