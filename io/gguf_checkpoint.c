/* GGUF checkpoints of the "llama" architecture (LLaMA, SmolLM2, ...).
 *
 * llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.modify_tensors)
 * permutes the rows of q_proj and k_proj from the Hugging Face rotate-half
 * order back to Meta's interleaved-pair order
 * (reshape(n_head, 2, head_dim/2, dim).swapaxes(1, 2)), because llama.cpp's
 * LLAMA rope rotates adjacent pairs; hence rope_interleaved = 1 here.
 *
 * GGUF ne[] lists dimensions fastest first, so the PyTorch shape is ne
 * reversed: token_embd ne = [dim, vocab] is [vocab, dim]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/gguf.h"
#include "io/log.h"

/* Optional integer key; *out untouched when absent. */
static int opt_int(const kg_gguf *g, const char *key, int64_t lo, int64_t hi, int *out) {
  int64_t v;
  int rc = kg_gguf_get_int(g, key, &v);
  if (rc == KG_ERR_NOT_FOUND) return KG_OK;
  if (rc < 0) return rc;
  if (v < lo || v > hi) return kg_error(KG_ERR_FORMAT, "%s: %s = %lld is out of range", g->path, key, (long long)v);
  *out = (int)v;
  return KG_OK;
}

static int req_int(const kg_gguf *g, const char *key, int64_t lo, int64_t hi, int *out) {
  if (!kg_gguf_find(g, key)) return kg_error(KG_ERR_FORMAT, "%s: missing key %s", g->path, key);
  return opt_int(g, key, lo, hi, out);
}

static int opt_float(const kg_gguf *g, const char *key, float *out) {
  double v;
  int rc = kg_gguf_get_float(g, key, &v);
  if (rc == KG_ERR_NOT_FOUND) return KG_OK;
  if (rc < 0) return rc;
  *out = (float)v;
  return KG_OK;
}

/* LLaMA-3.1-style GGUFs carry the llama3 rope scaling as a rope_freqs tensor of
 * per-frequency divisors, not as metadata. Recover the parameters by matching
 * the factors that the converter computes for the published settings. */
static double llama3_divisor(double inv_freq, double factor, double lo, double hi, double orig) {
  double wavelen = 2.0 * M_PI / inv_freq;
  if (wavelen < orig / hi) return 1.0;
  if (wavelen > orig / lo) return factor;
  double smooth = (orig / wavelen - lo) / (hi - lo);
  return 1.0 / ((1.0 - smooth) / factor + smooth);
}

static int detect_rope_freqs(const kg_gguf *g, kg_model_config *c) {
  const kg_gguf_tensor_info *t = kg_gguf_find_tensor(g, "rope_freqs.weight");
  if (!t) return KG_OK;
  int half = c->head_dim / 2;
  if (t->dtype != KG_DT_F32 || t->ne[0] != half || t->ne[1] != 1)
    return kg_error(KG_ERR_FORMAT, "%s: rope_freqs.weight should be %d float32 values", g->path, half);
  static const double factors[] = {8.0, 16.0, 32.0, 4.0};
  for (size_t k = 0; k < sizeof(factors) / sizeof(factors[0]); k++) {
    int match = 1;
    for (int i = 0; i < half && match; i++) {
      float stored;
      memcpy(&stored, (const unsigned char *)t->data + 4 * i, 4);
      double inv = 1.0 / pow((double)c->rope_theta, (2.0 * i) / c->head_dim);
      double want = llama3_divisor(inv, factors[k], 1.0, 4.0, 8192.0);
      match = fabs((double)stored - want) <= 1e-4 * want;
    }
    if (match) {
      c->rope_scaling = KG_ROPE_SCALING_LLAMA3;
      c->rope_factor = (float)factors[k];
      c->rope_low_freq_factor = 1.0f;
      c->rope_high_freq_factor = 4.0f;
      c->rope_original_max_pos = 8192;
      return KG_OK;
    }
  }
  return kg_error(KG_ERR_UNSUPPORTED, "%s: rope_freqs.weight does not match llama3 rope scaling with a known factor",
                  g->path);
}

static int read_config(const kg_gguf *g, kg_model_config *c) {
  char *arch = NULL;
  int rc = kg_gguf_get_string(g, "general.architecture", &arch);
  if (rc == KG_ERR_NOT_FOUND) return kg_error(KG_ERR_FORMAT, "%s: missing general.architecture", g->path);
  KG_TRY(rc);
  if (strcmp(arch, "llama") != 0) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: GGUF architecture '%.40s' is not supported (llama)", g->path, arch);
    free(arch);
    return rc;
  }
  free(arch);
  kg_model_config_defaults(c);
  KG_TRY(req_int(g, "llama.embedding_length", 1, 1 << 20, &c->dim));
  KG_TRY(req_int(g, "llama.feed_forward_length", 1, 1 << 22, &c->hidden_dim));
  KG_TRY(req_int(g, "llama.block_count", 1, 4096, &c->n_layers));
  KG_TRY(req_int(g, "llama.attention.head_count", 1, 4096, &c->n_heads));
  c->n_kv_heads = c->n_heads;
  KG_TRY(opt_int(g, "llama.attention.head_count_kv", 1, 4096, &c->n_kv_heads));
  c->head_dim = c->dim / c->n_heads;
  KG_TRY(opt_int(g, "llama.rope.dimension_count", 1, 4096, &c->head_dim));
  KG_TRY(opt_int(g, "llama.attention.key_length", 1, 4096, &c->head_dim));
  KG_TRY(opt_int(g, "llama.context_length", 1, 1 << 30, &c->max_seq_len));
  KG_TRY(opt_float(g, "llama.rope.freq_base", &c->rope_theta));
  KG_TRY(opt_float(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps));
  /* vocabulary: the embedding's rows, else llama.vocab_size, else the tokenizer */
  const kg_gguf_tensor_info *emb = kg_gguf_find_tensor(g, "token_embd.weight");
  if (emb && emb->n_dims == 2 && emb->ne[1] > 0 && emb->ne[1] <= (1 << 24)) {
    c->vocab_size = (int)emb->ne[1];
  } else {
    KG_TRY(opt_int(g, "llama.vocab_size", 1, 1 << 24, &c->vocab_size));
    const kg_gguf_kv *toks = kg_gguf_find(g, "tokenizer.ggml.tokens");
    if (!c->vocab_size && toks && toks->type == KG_GGUF_ARRAY && toks->array_len <= (1 << 24))
      c->vocab_size = (int)toks->array_len;
  }
  char *type = NULL;
  rc = kg_gguf_get_string(g, "llama.rope.scaling.type", &type);
  if (rc == KG_OK && strcmp(type, "none") != 0) {
    if (!strcmp(type, "linear")) {
      c->rope_scaling = KG_ROPE_SCALING_LINEAR;
      rc = opt_float(g, "llama.rope.scaling.factor", &c->rope_factor);
    } else {
      rc = kg_error(KG_ERR_UNSUPPORTED, "%s: rope scaling type '%.40s' is not supported", g->path, type);
    }
  } else if (rc == KG_ERR_NOT_FOUND) {
    rc = KG_OK;
  }
  free(type);
  KG_TRY(rc);
  c->tied_embeddings = kg_gguf_find_tensor(g, "output.weight") == NULL;
  KG_TRY(opt_int(g, "tokenizer.ggml.bos_token_id", 0, 1 << 30, &c->bos_id));
  KG_TRY(opt_int(g, "tokenizer.ggml.eos_token_id", 0, 1 << 30, &c->eos_id));
  if (c->rope_scaling == KG_ROPE_SCALING_NONE && c->head_dim > 1) KG_TRY(detect_rope_freqs(g, c));
  return KG_OK;
}

/* GGUF tensor names -> canonical names; 0 when the name is not a model weight we know. */
static int canonical_name(const kg_gguf_string *s, char *out, size_t cap, int n_layers) {
  char nm[128];
  if (s->len >= sizeof(nm)) return 0;
  memcpy(nm, s->data, (size_t)s->len);
  nm[s->len] = '\0';
  if (!strcmp(nm, "token_embd.weight")) return snprintf(out, cap, "model.embed_tokens.weight"), 1;
  if (!strcmp(nm, "output_norm.weight")) return snprintf(out, cap, "model.norm.weight"), 1;
  if (!strcmp(nm, "output.weight")) return snprintf(out, cap, "lm_head.weight"), 1;
  static const char *map[][2] = {
      {"attn_norm", "input_layernorm"},     {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},       {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},  {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  int layer = -1, used = 0;
  char part[64];
  if (sscanf(nm, "blk.%d.%63[a-z_].weight%n", &layer, part, &used) != 2 || nm[used] != '\0' || layer < 0 ||
      layer >= n_layers)
    return 0;
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (!strcmp(part, map[i][0])) return snprintf(out, cap, "model.layers.%d.%s.weight", layer, map[i][1]), 1;
  return 0;
}

static int build(kg_checkpoint *ck, kg_gguf *g) {
  KG_TRY(read_config(g, &ck->config));
  const char *base = strrchr(g->path, '/');
  snprintf(ck->config.name, sizeof(ck->config.name), "%s", base ? base + 1 : g->path);
  char *dot = strrchr(ck->config.name, '.');
  if (dot && dot != ck->config.name) *dot = '\0';
  KG_TRY(kg_model_config_validate(&ck->config, g->path));
  ck->rope_interleaved = 1;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const kg_gguf_tensor_info *t = &g->tensors[i];
    char name[96];
    if (!canonical_name(&t->name, name, sizeof(name), ck->config.n_layers)) {
      if (!kg_gguf_string_eq(t->name, "rope_freqs.weight"))
        kg_warn("%s: ignoring tensor %.*s", g->path, (int)(t->name.len < 100 ? t->name.len : 100), t->name.data);
      continue;
    }
    if (t->dtype == KG_DT_COUNT)
      return kg_error(KG_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %s, which kickgrid cannot convert", g->path,
                      name, kg_gguf_ggml_type_name(t->ggml_type));
    if (kg_checkpoint_find(ck, name)) return kg_error(KG_ERR_FORMAT, "%s: tensor %s appears twice", g->path, name);
    int64_t shape[4];
    for (uint32_t d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
    KG_TRY(kg_checkpoint_add(ck, name, t->dtype, (int)t->n_dims, shape, t->data, t->nbytes));
  }
  return kg_checkpoint_check_shapes(ck);
}

int kg_gguf_checkpoint_open(const char *path, kg_checkpoint **out) {
  int rc = KG_OK;
  kg_checkpoint *ck = NULL;
  kg_gguf *g = NULL;
  *out = NULL;
  if ((rc = kg_gguf_open(path, &g)) < 0) goto done;
  if ((rc = kg_checkpoint_new(KG_CKPT_GGUF, path, &ck)) < 0) goto done;
  ck->gguf = g; /* freed with the checkpoint; tensors point into its mapping */
  g = NULL;
  if ((rc = build(ck, ck->gguf)) < 0) goto done;
  *out = ck;
  ck = NULL;
done:
  kg_gguf_free(g);
  kg_checkpoint_close(ck);
  return rc;
}
