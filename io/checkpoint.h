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
  /* Owned by the checkpoint (mapping or arena). Little-endian, and not
   * necessarily aligned (a foreign safetensors header can leave any offset):
   * read it through kg_dequantize or memcpy, never by casting to float*. */
  const void *data;
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
  size_t tensors_cap;       /* internal: capacity of `tensors` */
} kg_checkpoint;

/* Opens a checkpoint, detecting the format: a directory is a Hugging Face
 * directory (config.json + safetensors; a *.safetensors or config.json path
 * opens its directory), a file starting with "GGUF" is GGUF (a *.gguf without
 * that magic is an error), anything else is tried as a llama2.c .bin (header
 * plausibility, then the exact file size). Every reader then checks that all
 * tensors the config implies are present with their shapes. On success *out
 * is owned by the caller (kg_checkpoint_close). Errors are one line naming the
 * file. */
int kg_checkpoint_open(const char *path, kg_checkpoint **out);
void kg_checkpoint_close(kg_checkpoint *ck);

/* NULL when absent. */
const kg_tensor_ref *kg_checkpoint_find(const kg_checkpoint *ck, const char *name);

/* Per-format readers behind kg_checkpoint_open. */
int kg_llama2c_open(const char *path, kg_checkpoint **out);
int kg_hf_open(const char *dir, kg_checkpoint **out);
int kg_gguf_checkpoint_open(const char *path, kg_checkpoint **out);

/* Writes a Hugging Face directory that kg_hf_open reads back bit-exactly and
 * transformers loads: config.json (LlamaForCausalLM, or the flat OpenLM form
 * of apple/DCLM-7B for KG_ARCH_DCLM, whose q/k/v and gate/up are fused back
 * into in_proj and w12), and model.safetensors or, when the weights exceed
 * max_shard_bytes (0: never), model-0000k-of-0000n.safetensors shards with
 * model.safetensors.index.json. `tensors` are in canonical names (q/k rows in
 * Hugging Face order), any float-convertible dtype; every tensor `cfg`
 * implies must be present. Values are converted to out_dtype (F32, F16 or
 * BF16; round to nearest even). Each file is written to a temporary name,
 * fsynced and renamed; a stale index or single file of the other layout is
 * removed. The directory is created when missing. */
int kg_hf_write(const char *dir, const kg_model_config *cfg, const kg_tensor_ref *tensors, size_t n,
                kg_dtype out_dtype, size_t max_shard_bytes);

/* llama2.c checkpoint held in memory (the fuzzer's entry point): tensors
 * point into `data`, which must outlive the checkpoint. `name` labels errors. */
int kg_llama2c_open_memory(const unsigned char *data, size_t size, const char *name, kg_checkpoint **out);

/* One tensor a configuration implies, in canonical naming and order. */
typedef struct kg_tensor_spec {
  char name[96];
  int ndim;
  int64_t shape[2];
  int is_norm; /* a norm gain (vector), as opposed to a matrix */
} kg_tensor_spec;

/* Number of tensors `cfg` implies (embeddings, per layer in the order of the
 * canonical list above, final norm, lm_head unless tied). When `specs` is not
 * NULL it must hold that many entries and is filled. */
size_t kg_checkpoint_expected_tensors(const kg_model_config *cfg, kg_tensor_spec *specs);

/* OpenLM's SwiGLU hidden size for a model width: 256 * ceil(int(8*dim/3) / 256)
 * (11008 for DCLM-7B's 4096); OpenLM configs do not store it. */
int kg_dclm_hidden_dim(int dim);

/* Elements of a tensor (product of its shape). */
int64_t kg_tensor_elems(const kg_tensor_ref *t);

/* Allocates an empty checkpoint with its arena; used by the readers. */
int kg_checkpoint_new(kg_ckpt_format format, const char *path, kg_checkpoint **out);
/* Appends a tensor (name copied into the arena); used by the readers. */
int kg_checkpoint_add(kg_checkpoint *ck, const char *name, kg_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, size_t nbytes);
/* Checks that every tensor the config implies is present with the right shape
 * and a float-convertible dtype; names the file and tensor on failure. */
int kg_checkpoint_check_shapes(const kg_checkpoint *ck);

#endif
