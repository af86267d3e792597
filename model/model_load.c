/* Building a kg_model from a checkpoint: dequantize every tensor into the
 * model's float32 arena, un-permute interleaved q/k rows, upload to the
 * backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/log.h"
#include "model/model.h"
#include "model/model_internal.h"

static const char *const linear_names[KG_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};
static const char *const linear_hf_names[KG_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const char *const input_names[KG_INPUT_COUNT] = {"attn_in", "attn_out", "mlp_in", "mlp_hidden"};

const char *kg_linear_name(kg_linear_id id) { return id < KG_LIN_COUNT ? linear_names[id] : "?"; }
const char *kg_linear_hf_name(kg_linear_id id) { return id < KG_LIN_COUNT ? linear_hf_names[id] : "?"; }
const char *kg_linear_input_name(kg_linear_input in) { return in < KG_INPUT_COUNT ? input_names[in] : "?"; }

kg_linear_input kg_linear_input_of(kg_linear_id id) {
  switch (id) {
  case KG_LIN_Q:
  case KG_LIN_K:
  case KG_LIN_V: return KG_INPUT_ATTN;
  case KG_LIN_O: return KG_INPUT_ATTN_OUT;
  case KG_LIN_GATE:
  case KG_LIN_UP: return KG_INPUT_MLP;
  default: return KG_INPUT_MLP_HIDDEN;
  }
}

void kg_rope_inv_freq(const kg_model_config *cfg, float *inv_freq) {
  const int half = cfg->head_dim / 2;
  for (int i = 0; i < half; i++) {
    /* float32 like the reference: 1 / theta^(2i/d) */
    float exponent = (float)(2 * i) / (float)cfg->head_dim;
    float f = (float)(1.0 / pow((double)cfg->rope_theta, (double)exponent));
    if (cfg->rope_scaling == KG_ROPE_SCALING_LINEAR) {
      f /= cfg->rope_factor;
    } else if (cfg->rope_scaling == KG_ROPE_SCALING_LLAMA3) {
      const double factor = cfg->rope_factor;
      const double old_len = cfg->rope_original_max_pos;
      const double low_wavelen = old_len / cfg->rope_low_freq_factor;
      const double high_wavelen = old_len / cfg->rope_high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = (float)(f / factor);
      } else if (!(wavelen < high_wavelen)) {
        const double smooth = (old_len / wavelen - cfg->rope_low_freq_factor) /
                              (cfg->rope_high_freq_factor - cfg->rope_low_freq_factor);
        f = (float)((1.0 - smooth) * f / factor + smooth * f);
      }
    }
    inv_freq[i] = f;
  }
}

/* Dequantizes a checkpoint tensor into a new float32 array in the arena. */
static int load_tensor(kg_model *m, const kg_checkpoint *ck, const char *name, int64_t expect_elems,
                       float **out) {
  *out = NULL;
  const kg_tensor_ref *t = kg_checkpoint_find(ck, name);
  if (!t) return kg_error(KG_ERR_FORMAT, "%s: tensor %s is missing", ck->path, name);
  int64_t elems = 1;
  for (int i = 0; i < t->ndim; i++) elems *= t->shape[i];
  if (elems != expect_elems)
    return kg_error(KG_ERR_FORMAT, "%s: tensor %s has %lld elements, the config implies %lld", ck->path, name,
                    (long long)elems, (long long)expect_elems);
  float *dst = kg_arena_alloc(m->arena, (size_t)elems * sizeof(float));
  if (!dst) return kg_error_context("%s: ", ck->path);
  int rc = kg_dequantize(t->dtype, t->data, dst, elems);
  if (rc < 0) return kg_error_context("%s: tensor %s: ", ck->path, name);
  *out = dst;
  return KG_OK;
}

/* Meta/ggml store each head's rotary pairs interleaved (rows 2i, 2i+1); HF
 * stores them as halves (rows i, i + d/2). Reorders rows in place. */
static int unpermute_rotary_rows(float *w, int n_heads, int head_dim, int cols) {
  const size_t head_bytes = (size_t)head_dim * cols * sizeof(float);
  float *tmp = malloc(head_bytes);
  if (!tmp) return kg_error(KG_ERR_NOMEM, "out of memory reordering rotary rows");
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; h++) {
    float *head = w + (size_t)h * head_dim * cols;
    memcpy(tmp, head, head_bytes);
    for (int i = 0; i < half; i++)
      for (int j = 0; j < 2; j++)
        memcpy(head + (size_t)(j * half + i) * cols, tmp + (size_t)(2 * i + j) * cols, (size_t)cols * sizeof(float));
  }
  free(tmp);
  return KG_OK;
}

static void linear_shape(const kg_model_config *c, kg_linear_id id, int *rows, int *cols) {
  const int q_width = c->n_heads * c->head_dim, kv_width = c->n_kv_heads * c->head_dim;
  switch (id) {
  case KG_LIN_Q: *rows = q_width; *cols = c->dim; break;
  case KG_LIN_K:
  case KG_LIN_V: *rows = kv_width; *cols = c->dim; break;
  case KG_LIN_O: *rows = c->dim; *cols = q_width; break;
  case KG_LIN_GATE:
  case KG_LIN_UP: *rows = c->hidden_dim; *cols = c->dim; break;
  default: *rows = c->dim; *cols = c->hidden_dim; break;
  }
}

static kg_model *model_alloc(const kg_model_config *cfg, kg_backend *be) {
  kg_model *m = calloc(1, sizeof(*m));
  if (!m) return NULL;
  m->cfg = *cfg;
  m->be = be;
  m->arena = kg_arena_create();
  m->blocks = calloc((size_t)cfg->n_layers, sizeof(kg_block));
  m->rope_inv_freq = malloc((size_t)(cfg->head_dim / 2) * sizeof(float));
  if (!m->arena || !m->blocks || !m->rope_inv_freq) {
    kg_arena_destroy(m->arena);
    free(m->blocks);
    free(m->rope_inv_freq);
    free(m);
    return NULL;
  }
  kg_rope_inv_freq(cfg, m->rope_inv_freq);
  for (int l = 0; l < cfg->n_layers; l++)
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      linear_shape(cfg, id, &m->blocks[l].lin[id].rows, &m->blocks[l].lin[id].cols);
      m->blocks[l].lin[id].dev.group = l;
    }
  m->dev_embed.group = m->dev_lm_head.group = -1;
  return m;
}

static int upload_vector(kg_backend *be, const float *host, int n, float **dev) {
  if (!host) {
    *dev = NULL;
    return KG_OK;
  }
  if (!*dev && !(*dev = be->ops->alloc(be, (size_t)n * sizeof(float)))) return kg_error_code();
  return be->ops->to_device(be, *dev, host, (size_t)n * sizeof(float));
}

/* Asks the backend which blocks stay on the device (the rest stream from
 * host memory, block by block) before the first upload. The activations of
 * one window of up to 4096 tokens are kept free. */
static int plan_residency(kg_model *m) {
  const kg_model_config *c = &m->cfg;
  kg_backend *be = m->be;
  if (!be->ops->plan_weights) return KG_OK;
  int64_t block_elems = 0;
  for (int id = 0; id < KG_LIN_COUNT; id++) block_elems += (int64_t)m->blocks[0].lin[id].rows * m->blocks[0].lin[id].cols;
  const int64_t table = (int64_t)c->vocab_size * c->dim;
  const int64_t global_elems = m->lm_head == m->embed ? table : 2 * table;
  int64_t rows = c->max_seq_len < 512 ? 512 : c->max_seq_len > 4096 ? 4096 : c->max_seq_len;
  int n_resident = c->n_layers;
  KG_TRY(be->ops->plan_weights(be, c->n_layers, block_elems, global_elems, kg_workspace_bytes(c, rows), &n_resident));
  for (int l = 0; l < c->n_layers; l++)
    for (int id = 0; id < KG_LIN_COUNT; id++) m->blocks[l].lin[id].dev.streamed = l >= n_resident;
  if (n_resident < c->n_layers)
    kg_info("model %s: %d of %d blocks stream from host memory (device memory budget)", m->source,
            c->n_layers - n_resident, c->n_layers);
  return KG_OK;
}

/* Uploads overwrite a weight's existing storage in place (for a streamed
 * weight: its pinned host copy, and any staged device copy is dropped). */
static int sync_block(kg_model *m, int l) {
  const kg_model_config *c = &m->cfg;
  kg_backend *be = m->be;
  kg_block *b = &m->blocks[l];
  for (int id = 0; id < KG_LIN_COUNT; id++) {
    kg_linear *lin = &b->lin[id];
    KG_TRY(be->ops->weight_upload(be, &lin->dev, lin->w, lin->rows, lin->cols));
  }
  KG_TRY(upload_vector(be, b->attn_norm, c->dim, &b->dev_attn_norm));
  KG_TRY(upload_vector(be, b->ffn_norm, c->dim, &b->dev_ffn_norm));
  KG_TRY(upload_vector(be, b->q_norm, c->n_heads * c->head_dim, &b->dev_q_norm));
  KG_TRY(upload_vector(be, b->k_norm, c->n_kv_heads * c->head_dim, &b->dev_k_norm));
  return KG_OK;
}

int kg_model_sync(kg_model *m, int layer) {
  kg_backend *be = m->be;
  if (layer >= 0 && layer < m->cfg.n_layers) return sync_block(m, layer);
  if (layer >= m->cfg.n_layers) return kg_error(KG_ERR_ARG, "layer %d out of range", layer);
  /* Global weights first: they are always resident, and streamed blocks
   * then see the device memory that is really left. */
  KG_TRY(be->ops->weight_upload(be, &m->dev_embed, m->embed, m->cfg.vocab_size, m->cfg.dim));
  if (m->lm_head == m->embed) {
    m->dev_lm_head = m->dev_embed;
  } else {
    KG_TRY(be->ops->weight_upload(be, &m->dev_lm_head, m->lm_head, m->cfg.vocab_size, m->cfg.dim));
  }
  for (int l = 0; l < m->cfg.n_layers; l++) KG_TRY(sync_block(m, l));
  return upload_vector(be, m->final_norm, m->cfg.dim, &m->dev_final_norm);
}

int kg_model_from_checkpoint(const kg_checkpoint *ck, kg_backend *be, kg_model **out) {
  int rc = KG_OK;
  const kg_model_config *c = &ck->config;
  kg_model *m = NULL;
  char name[256];
  *out = NULL;
  if ((rc = kg_model_config_validate(c, ck->path)) < 0) goto done;
  if (!(m = model_alloc(c, be))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory creating a model");
    goto done;
  }
  snprintf(m->source, sizeof(m->source), "%s", ck->path);
  const int64_t dim = c->dim, vocab = c->vocab_size;
  if ((rc = load_tensor(m, ck, "model.embed_tokens.weight", vocab * dim, &m->embed)) < 0) goto done;
  if ((rc = load_tensor(m, ck, "model.norm.weight", dim, &m->final_norm)) < 0) goto done;
  if (c->tied_embeddings) {
    m->lm_head = m->embed;
  } else if ((rc = load_tensor(m, ck, "lm_head.weight", vocab * dim, &m->lm_head)) < 0) {
    goto done;
  }
  for (int l = 0; l < c->n_layers; l++) {
    kg_block *b = &m->blocks[l];
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      kg_linear *lin = &b->lin[id];
      snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, linear_hf_names[id]);
      if ((rc = load_tensor(m, ck, name, (int64_t)lin->rows * lin->cols, &lin->w)) < 0) goto done;
    }
    if (ck->rope_interleaved) {
      if ((rc = unpermute_rotary_rows(b->lin[KG_LIN_Q].w, c->n_heads, c->head_dim, c->dim)) < 0) goto done;
      if ((rc = unpermute_rotary_rows(b->lin[KG_LIN_K].w, c->n_kv_heads, c->head_dim, c->dim)) < 0) goto done;
    }
    snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
    if ((rc = load_tensor(m, ck, name, dim, &b->attn_norm)) < 0) goto done;
    snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
    if ((rc = load_tensor(m, ck, name, dim, &b->ffn_norm)) < 0) goto done;
    if (c->qk_norm) {
      snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
      if ((rc = load_tensor(m, ck, name, (int64_t)c->n_heads * c->head_dim, &b->q_norm)) < 0) goto done;
      snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
      if ((rc = load_tensor(m, ck, name, (int64_t)c->n_kv_heads * c->head_dim, &b->k_norm)) < 0) goto done;
    }
  }
  if ((rc = plan_residency(m)) < 0 || (rc = kg_model_sync(m, -1)) < 0) goto done;
  kg_debug("model %s: %d layers, dim %d, %.1f MiB of float32 weights", m->source, c->n_layers, c->dim,
           (double)kg_arena_bytes(m->arena) / (1 << 20));
  *out = m;
  m = NULL;
done:
  kg_model_free(m);
  return rc;
}

/* Copies `n` floats of a host array into the clone's arena. */
static float *clone_array(kg_model *dst, const float *src, size_t n) {
  if (!src) return NULL;
  float *p = kg_arena_alloc(dst->arena, n * sizeof(float));
  if (p) memcpy(p, src, n * sizeof(float));
  return p;
}

int kg_model_clone(const kg_model *src, kg_backend *be, kg_model **out) {
  int rc = KG_OK;
  const kg_model_config *c = &src->cfg;
  kg_model *m = model_alloc(c, be);
  *out = NULL;
  if (!m) return kg_error(KG_ERR_NOMEM, "out of memory cloning a model");
  memcpy(m->source, src->source, sizeof(m->source));
  const size_t dim = c->dim, vocab = c->vocab_size;
  if (!(m->embed = clone_array(m, src->embed, vocab * dim)) ||
      !(m->final_norm = clone_array(m, src->final_norm, dim))) {
    rc = kg_error_code();
    goto done;
  }
  m->lm_head = src->lm_head == src->embed ? m->embed : clone_array(m, src->lm_head, vocab * dim);
  if (!m->lm_head) {
    rc = kg_error_code();
    goto done;
  }
  for (int l = 0; l < c->n_layers; l++) {
    const kg_block *sb = &src->blocks[l];
    kg_block *b = &m->blocks[l];
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      if (!(b->lin[id].w = clone_array(m, sb->lin[id].w, (size_t)sb->lin[id].rows * sb->lin[id].cols))) {
        rc = kg_error_code();
        goto done;
      }
    }
    b->attn_norm = clone_array(m, sb->attn_norm, dim);
    b->ffn_norm = clone_array(m, sb->ffn_norm, dim);
    b->q_norm = clone_array(m, sb->q_norm, (size_t)c->n_heads * c->head_dim);
    b->k_norm = clone_array(m, sb->k_norm, (size_t)c->n_kv_heads * c->head_dim);
    if (!b->attn_norm || !b->ffn_norm || (sb->q_norm && !b->q_norm) || (sb->k_norm && !b->k_norm)) {
      rc = kg_error_code();
      goto done;
    }
  }
  if ((rc = plan_residency(m)) < 0 || (rc = kg_model_sync(m, -1)) < 0) goto done;
  *out = m;
  m = NULL;
done:
  kg_model_free(m);
  return rc;
}

int kg_model_copy_weights(kg_model *dst, const kg_model *src) {
  const kg_model_config *a = &dst->cfg, *b = &src->cfg;
  if (a->dim != b->dim || a->hidden_dim != b->hidden_dim || a->n_layers != b->n_layers || a->vocab_size != b->vocab_size ||
      a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim ||
      (dst->lm_head == dst->embed) != (src->lm_head == src->embed) || (dst->blocks[0].q_norm == NULL) != (src->blocks[0].q_norm == NULL))
    return kg_error(KG_ERR_ARG, "cannot copy weights between models of different shapes");
  const size_t dim = a->dim, vocab = a->vocab_size;
  memcpy(dst->embed, src->embed, vocab * dim * sizeof(float));
  memcpy(dst->final_norm, src->final_norm, dim * sizeof(float));
  if (dst->lm_head != dst->embed) memcpy(dst->lm_head, src->lm_head, vocab * dim * sizeof(float));
  for (int l = 0; l < a->n_layers; l++) {
    kg_block *d = &dst->blocks[l];
    const kg_block *s = &src->blocks[l];
    for (int id = 0; id < KG_LIN_COUNT; id++)
      memcpy(d->lin[id].w, s->lin[id].w, (size_t)s->lin[id].rows * s->lin[id].cols * sizeof(float));
    memcpy(d->attn_norm, s->attn_norm, dim * sizeof(float));
    memcpy(d->ffn_norm, s->ffn_norm, dim * sizeof(float));
    if (s->q_norm) {
      memcpy(d->q_norm, s->q_norm, (size_t)a->n_heads * a->head_dim * sizeof(float));
      memcpy(d->k_norm, s->k_norm, (size_t)a->n_kv_heads * a->head_dim * sizeof(float));
    }
  }
  return kg_model_sync(dst, -1);
}

void kg_model_free(kg_model *m) {
  if (!m) return;
  kg_backend *be = m->be;
  if (be) {
    for (int l = 0; m->blocks && l < m->cfg.n_layers; l++) {
      kg_block *b = &m->blocks[l];
      for (int id = 0; id < KG_LIN_COUNT; id++)
        if (b->lin[id].dev.data || b->lin[id].dev.host) be->ops->weight_release(be, &b->lin[id].dev);
      be->ops->release(be, b->dev_attn_norm);
      be->ops->release(be, b->dev_ffn_norm);
      be->ops->release(be, b->dev_q_norm);
      be->ops->release(be, b->dev_k_norm);
    }
    if (m->dev_lm_head.data && m->dev_lm_head.data != m->dev_embed.data) be->ops->weight_release(be, &m->dev_lm_head);
    if (m->dev_embed.data) be->ops->weight_release(be, &m->dev_embed);
    be->ops->release(be, m->dev_final_norm);
  }
  kg_workspace_free(m);
  free(m->blocks);
  free(m->rope_inv_freq);
  kg_arena_destroy(m->arena);
  free(m);
}
