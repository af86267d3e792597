/* Architecture hyper-parameters of a LLaMA-family model, filled by the
 * checkpoint readers (config.json, GGUF metadata, llama2.c header, synthetic
 * specs) and consumed by model/. */
#ifndef KG_IO_MODEL_CONFIG_H
#define KG_IO_MODEL_CONFIG_H

typedef enum kg_arch {
  KG_ARCH_LLAMA = 0, /* LLaMA-2/3/3.1, SmolLM2, llama2.c models */
  KG_ARCH_DCLM = 1,  /* OpenLM (DCLM-7B): gain-only LayerNorm, qk-norm, fused w12 */
} kg_arch;

typedef enum kg_norm_kind {
  KG_NORM_RMS = 0,        /* x / sqrt(mean(x^2) + eps) * g */
  KG_NORM_LAYER_GAIN = 1, /* (x - mean) / sqrt(var + eps) * g, no bias */
} kg_norm_kind;

typedef enum kg_rope_scaling {
  KG_ROPE_SCALING_NONE = 0,
  KG_ROPE_SCALING_LLAMA3 = 1, /* rope_scaling.rope_type == "llama3" (LLaMA-3.1) */
  KG_ROPE_SCALING_LINEAR = 2, /* positions divided by factor */
} kg_rope_scaling;

typedef struct kg_model_config {
  kg_arch arch;
  char name[64];   /* a label for logs, e.g. "llama-2-7b" or the file stem */
  int dim;         /* hidden size */
  int hidden_dim;  /* MLP intermediate size */
  int n_layers;
  int n_heads;
  int n_kv_heads;  /* == n_heads for multi-head attention, fewer for GQA */
  int head_dim;    /* usually dim / n_heads */
  int vocab_size;
  int max_seq_len; /* longest context the model was configured for */
  float norm_eps;
  kg_norm_kind norm;
  int qk_norm;     /* DCLM: norm over the full q and k projections before RoPE */
  float rope_theta;
  kg_rope_scaling rope_scaling;
  float rope_factor;
  float rope_low_freq_factor;
  float rope_high_freq_factor;
  int rope_original_max_pos;
  int tied_embeddings; /* lm_head shares model.embed_tokens.weight */
  int bos_id;          /* -1 when unknown */
  int eos_id;          /* -1 when unknown */
} kg_model_config;

/* Fills defaults every reader starts from (LLaMA, RMSNorm, theta 1e4, no scaling). */
void kg_model_config_defaults(kg_model_config *c);

/* Checks that the numbers describe a model kickgrid can run; `source` names
 * the file in the message. Returns KG_OK or KG_ERR_FORMAT. */
int kg_model_config_validate(const kg_model_config *c, const char *source);

/* Parameter count of the transformer (embeddings and head included). */
long long kg_model_config_params(const kg_model_config *c);

#endif
