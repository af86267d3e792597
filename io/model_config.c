#include "io/model_config.h"

#include <math.h>
#include <string.h>

#include "io/error.h"

void kg_model_config_defaults(kg_model_config *c) {
  memset(c, 0, sizeof(*c));
  c->arch = KG_ARCH_LLAMA;
  c->norm = KG_NORM_RMS;
  c->norm_eps = 1e-5f;
  c->rope_theta = 10000.0f;
  c->rope_scaling = KG_ROPE_SCALING_NONE;
  c->rope_factor = 1.0f;
  c->max_seq_len = 2048;
  c->bos_id = -1;
  c->eos_id = -1;
}

int kg_model_config_validate(const kg_model_config *c, const char *source) {
  const int max_dim = 1 << 16;
  if (c->dim <= 0 || c->dim > max_dim) return kg_error(KG_ERR_FORMAT, "%s: hidden size %d out of range", source, c->dim);
  if (c->hidden_dim <= 0 || c->hidden_dim > 8 * max_dim)
    return kg_error(KG_ERR_FORMAT, "%s: intermediate size %d out of range", source, c->hidden_dim);
  if (c->n_layers <= 0 || c->n_layers > 1024) return kg_error(KG_ERR_FORMAT, "%s: layer count %d out of range", source, c->n_layers);
  if (c->n_heads <= 0 || c->n_heads > 1024) return kg_error(KG_ERR_FORMAT, "%s: head count %d out of range", source, c->n_heads);
  if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
    return kg_error(KG_ERR_FORMAT, "%s: %d key/value heads do not divide %d query heads", source, c->n_kv_heads, c->n_heads);
  if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024)
    return kg_error(KG_ERR_FORMAT, "%s: head dimension %d must be a positive even number", source, c->head_dim);
  if (c->vocab_size <= 0 || c->vocab_size > (1 << 22)) return kg_error(KG_ERR_FORMAT, "%s: vocabulary size %d out of range", source, c->vocab_size);
  if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f)) return kg_error(KG_ERR_FORMAT, "%s: norm epsilon %g out of range", source, (double)c->norm_eps);
  if (!(c->rope_theta > 1.0f) || !isfinite(c->rope_theta)) return kg_error(KG_ERR_FORMAT, "%s: rope theta %g out of range", source, (double)c->rope_theta);
  if (c->rope_scaling != KG_ROPE_SCALING_NONE && !(c->rope_factor >= 1.0f && isfinite(c->rope_factor)))
    return kg_error(KG_ERR_FORMAT, "%s: rope scaling factor %g out of range", source, (double)c->rope_factor);
  if (c->rope_scaling == KG_ROPE_SCALING_LLAMA3 &&
      (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_low_freq_factor <= 0 || c->rope_original_max_pos <= 0))
    return kg_error(KG_ERR_FORMAT, "%s: llama3 rope scaling needs high_freq_factor > low_freq_factor > 0 and original_max_position_embeddings", source);
  if (c->max_seq_len <= 0) return kg_error(KG_ERR_FORMAT, "%s: context length %d out of range", source, c->max_seq_len);
  if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size)
    return kg_error(KG_ERR_FORMAT, "%s: bos/eos id outside the vocabulary", source);
  return KG_OK;
}

long long kg_model_config_params(const kg_model_config *c) {
  long long d = c->dim, h = c->hidden_dim, hd = c->head_dim;
  long long attn = d * hd * c->n_heads * 2 + d * hd * c->n_kv_heads * 2;
  long long mlp = 3 * d * h;
  long long norms = 2 * d + (c->qk_norm ? hd * (c->n_heads + c->n_kv_heads) : 0);
  long long per_layer = attn + mlp + norms;
  long long emb = (long long)c->vocab_size * d;
  return per_layer * c->n_layers + emb * (c->tied_embeddings ? 1 : 2) + d;
}
