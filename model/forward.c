/* The transformer forward pass, written once against the backend interface. */
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "model/model.h"
#include "model/model_internal.h"

/* Rows of logits computed per head call: bounds the logits buffer to
 * HEAD_CHUNK x vocab floats however long the batch is. */
#define HEAD_CHUNK 64

static int is_cpu(const kg_backend *be) { return be->ops->name[0] == 'c' && be->ops->name[1] == 'p'; }

void kg_workspace_free(kg_model *m) {
  kg_workspace *ws = m->ws;
  if (!ws) return;
  kg_backend *be = m->be;
  float *bufs[] = {ws->xb, ws->q, ws->k, ws->v, ws->att, ws->gate, ws->up, ws->x, ws->head_in, ws->head_logits};
  for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) be->ops->release(be, bufs[i]);
  if (ws->host_logits != ws->head_logits) free(ws->host_logits);
  free(ws->row_ids);
  free(ws);
  m->ws = NULL;
}

static int reserve_head(kg_model *m) {
  kg_workspace *ws = m->ws;
  kg_backend *be = m->be;
  if (ws->head_rows) return KG_OK;
  const size_t vocab = m->cfg.vocab_size, dim = m->cfg.dim;
  ws->head_in = be->ops->alloc(be, HEAD_CHUNK * dim * sizeof(float));
  ws->head_logits = be->ops->alloc(be, HEAD_CHUNK * vocab * sizeof(float));
  ws->row_ids = malloc(HEAD_CHUNK * sizeof(int64_t));
  if (!ws->head_in || !ws->head_logits || !ws->row_ids) return kg_error(KG_ERR_NOMEM, "out of memory for the output head");
  if (is_cpu(be)) {
    ws->host_logits = ws->head_logits;
  } else if (!(ws->host_logits = malloc(HEAD_CHUNK * vocab * sizeof(float)))) {
    return kg_error(KG_ERR_NOMEM, "out of memory for host logits");
  }
  ws->head_rows = HEAD_CHUNK;
  return KG_OK;
}

int kg_workspace_reserve(kg_model *m, int64_t rows) {
  kg_backend *be = m->be;
  if (!m->ws && !(m->ws = calloc(1, sizeof(kg_workspace)))) return kg_error(KG_ERR_NOMEM, "out of memory");
  kg_workspace *ws = m->ws;
  if (ws->rows >= rows) return KG_OK;
  const kg_model_config *c = &m->cfg;
  const size_t q_w = (size_t)c->n_heads * c->head_dim, kv_w = (size_t)c->n_kv_heads * c->head_dim;
  struct {
    float **buf;
    size_t width;
  } plan[] = {{&ws->xb, c->dim}, {&ws->q, q_w},           {&ws->k, kv_w},          {&ws->v, kv_w},
              {&ws->att, q_w},   {&ws->gate, c->hidden_dim}, {&ws->up, c->hidden_dim}, {&ws->x, c->dim}};
  for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
    be->ops->release(be, *plan[i].buf);
    *plan[i].buf = NULL;
  }
  ws->rows = 0;
  for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
    if (!(*plan[i].buf = be->ops->alloc(be, (size_t)rows * plan[i].width * sizeof(float))))
      return kg_error_context("workspace for %lld tokens: ", (long long)rows);
  }
  ws->rows = rows;
  return KG_OK;
}

static int check_tokens(const kg_model *m, const int32_t *tokens, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
      return kg_error(KG_ERR_ARG, "token id %d at position %lld is outside the vocabulary [0, %d)", tokens[i],
                      (long long)i, m->cfg.vocab_size);
  return KG_OK;
}

int kg_model_embed(kg_model *m, const int32_t *tokens, int64_t n, float *x) {
  KG_TRY(check_tokens(m, tokens, n));
  return m->be->ops->embed(m->be, &m->dev_embed, tokens, n, x);
}

/* One block over x [n_seq * T, dim]. Keys/values go to (k_cache, v_cache) at
 * pos0 with kv_stride positions per sequence; with no cache they are the
 * workspace's k/v buffers themselves (kv_stride = T, pos0 = 0). */
static int block_forward(kg_model *m, int layer, float *x, int n_seq, int T, float *k_cache, float *v_cache,
                         int pos0, int kv_stride, kg_input_hook hook, void *ctx) {
  const kg_model_config *c = &m->cfg;
  const kg_backend_ops *ops = m->be->ops;
  kg_backend *be = m->be;
  kg_workspace *ws = m->ws;
  const kg_block *b = &m->blocks[layer];
  const int64_t n = (int64_t)n_seq * T;
  const int q_w = c->n_heads * c->head_dim, kv_w = c->n_kv_heads * c->head_dim;
  int rc;

  KG_TRY(ops->norm(be, c->norm, x, b->dev_attn_norm, n, c->dim, c->norm_eps, ws->xb));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_ATTN, ws->xb, n, c->dim)) != 0) return rc;
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_Q].dev, ws->xb, n, ws->q));
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_K].dev, ws->xb, n, ws->k));
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_V].dev, ws->xb, n, ws->v));
  if (c->qk_norm) {
    KG_TRY(ops->norm(be, c->norm, ws->q, b->dev_q_norm, n, q_w, c->norm_eps, ws->q));
    KG_TRY(ops->norm(be, c->norm, ws->k, b->dev_k_norm, n, kv_w, c->norm_eps, ws->k));
  }
  KG_TRY(ops->rope(be, ws->q, n_seq, T, pos0, c->n_heads, c->head_dim, m->rope_inv_freq));
  KG_TRY(ops->rope(be, ws->k, n_seq, T, pos0, c->n_kv_heads, c->head_dim, m->rope_inv_freq));
  if (k_cache) {
    KG_TRY(ops->cache_store(be, k_cache, ws->k, n_seq, T, pos0, kv_stride, kv_w));
    KG_TRY(ops->cache_store(be, v_cache, ws->v, n_seq, T, pos0, kv_stride, kv_w));
  } else {
    k_cache = ws->k;
    v_cache = ws->v;
    kv_stride = T;
    pos0 = 0;
  }
  kg_attention_args a = {.q = ws->q, .k_cache = k_cache, .v_cache = v_cache, .out = ws->att, .n_seq = n_seq,
                         .T = T, .pos0 = pos0, .kv_stride = kv_stride, .n_heads = c->n_heads,
                         .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim};
  KG_TRY(ops->attention(be, &a));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_ATTN_OUT, ws->att, n, q_w)) != 0) return rc;
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_O].dev, ws->att, n, ws->xb));
  KG_TRY(ops->add(be, x, ws->xb, n * c->dim));

  KG_TRY(ops->norm(be, c->norm, x, b->dev_ffn_norm, n, c->dim, c->norm_eps, ws->xb));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_MLP, ws->xb, n, c->dim)) != 0) return rc;
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_GATE].dev, ws->xb, n, ws->gate));
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_UP].dev, ws->xb, n, ws->up));
  KG_TRY(ops->swiglu(be, ws->gate, ws->up, n * c->hidden_dim, ws->gate));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_MLP_HIDDEN, ws->gate, n, c->hidden_dim)) != 0) return rc;
  KG_TRY(ops->linear(be, &b->lin[KG_LIN_DOWN].dev, ws->gate, n, ws->xb));
  return ops->add(be, x, ws->xb, n * c->dim);
}

int kg_model_block_forward(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook hook, void *ctx) {
  if (layer < 0 || layer >= m->cfg.n_layers) return kg_error(KG_ERR_ARG, "layer %d out of range", layer);
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch");
  KG_TRY(kg_workspace_reserve(m, (int64_t)n_seq * T));
  return block_forward(m, layer, x, n_seq, T, NULL, NULL, 0, 0, hook, ctx);
}

int kg_model_head(kg_model *m, const float *x, int n_seq, int T, const uint8_t *want_logits, kg_logits_fn fn,
                  void *ctx) {
  const kg_model_config *c = &m->cfg;
  kg_backend *be = m->be;
  const kg_backend_ops *ops = be->ops;
  const int64_t n = (int64_t)n_seq * T;
  KG_TRY(kg_workspace_reserve(m, n));
  KG_TRY(reserve_head(m));
  kg_workspace *ws = m->ws;
  const size_t row_bytes = (size_t)c->dim * sizeof(float);
  int64_t next = 0;
  while (next < n) {
    int64_t count = 0;
    for (; next < n && count < HEAD_CHUNK; next++) {
      if (want_logits && !want_logits[next]) continue;
      KG_TRY(ops->copy(be, ws->head_in + count * c->dim, x + next * c->dim, row_bytes));
      ws->row_ids[count++] = next;
    }
    if (!count) continue;
    KG_TRY(ops->norm(be, c->norm, ws->head_in, m->dev_final_norm, count, c->dim, c->norm_eps, ws->head_in));
    KG_TRY(ops->linear(be, &m->dev_lm_head, ws->head_in, count, ws->head_logits));
    if (ws->host_logits != ws->head_logits)
      KG_TRY(ops->to_host(be, ws->host_logits, ws->head_logits, (size_t)count * c->vocab_size * sizeof(float)));
    int rc = fn(ctx, ws->row_ids, count, ws->host_logits, c->vocab_size);
    if (rc != 0) return rc;
  }
  return KG_OK;
}

int kg_model_forward(kg_model *m, const kg_forward_request *r) {
  const kg_model_config *c = &m->cfg;
  if (r->n_seq <= 0 || r->T <= 0) return kg_error(KG_ERR_ARG, "empty batch (%d sequences of %d tokens)", r->n_seq, r->T);
  kg_kv_cache *cache = r->cache;
  int pos0 = 0;
  if (cache) {
    if (cache->n_seq != r->n_seq)
      return kg_error(KG_ERR_ARG, "cache holds %d sequences, batch has %d", cache->n_seq, r->n_seq);
    if (cache->len + r->T > cache->max_len)
      return kg_error(KG_ERR_ARG, "cache of %d positions cannot take %d more after %d", cache->max_len, r->T, cache->len);
    pos0 = cache->len;
  }
  const int64_t n = (int64_t)r->n_seq * r->T;
  KG_TRY(kg_workspace_reserve(m, n));
  float *x = m->ws->x;
  KG_TRY(kg_model_embed(m, r->tokens, n, x));
  for (int l = 0; l < c->n_layers; l++) {
    float *kc = cache ? cache->k[l] : NULL, *vc = cache ? cache->v[l] : NULL;
    KG_TRY(block_forward(m, l, x, r->n_seq, r->T, kc, vc, pos0, cache ? cache->max_len : 0, NULL, NULL));
  }
  if (cache) cache->len += r->T;
  if (!r->on_logits) return KG_OK;
  return kg_model_head(m, x, r->n_seq, r->T, r->want_logits, r->on_logits, r->ctx);
}

typedef struct dense_logits_ctx {
  float *out;
} dense_logits_ctx;

static int copy_dense_logits(void *vctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  dense_logits_ctx *ctx = vctx;
  for (int64_t i = 0; i < n_rows; i++)
    memcpy(ctx->out + rows[i] * vocab, logits + i * vocab, (size_t)vocab * sizeof(float));
  return 0;
}

int kg_model_logits(kg_model *m, const int32_t *tokens, int T, float *out) {
  dense_logits_ctx ctx = {out};
  kg_forward_request r = {.tokens = tokens, .n_seq = 1, .T = T, .on_logits = copy_dense_logits, .ctx = &ctx};
  return kg_model_forward(m, &r);
}

int kg_kv_cache_create(const kg_model *m, int n_seq, int max_len, kg_kv_cache **out) {
  *out = NULL;
  if (n_seq <= 0 || max_len <= 0) return kg_error(KG_ERR_ARG, "bad cache size %d x %d", n_seq, max_len);
  kg_kv_cache *c = calloc(1, sizeof(*c));
  if (!c) return kg_error(KG_ERR_NOMEM, "out of memory");
  c->n_layers = m->cfg.n_layers;
  c->n_seq = n_seq;
  c->max_len = max_len;
  c->width = m->cfg.n_kv_heads * m->cfg.head_dim;
  c->be = m->be;
  c->k = calloc((size_t)c->n_layers, sizeof(float *));
  c->v = calloc((size_t)c->n_layers, sizeof(float *));
  if (!c->k || !c->v) {
    kg_kv_cache_free(c);
    return kg_error(KG_ERR_NOMEM, "out of memory");
  }
  const size_t bytes = (size_t)n_seq * max_len * c->width * sizeof(float);
  for (int l = 0; l < c->n_layers; l++) {
    if (!(c->k[l] = m->be->ops->alloc(m->be, bytes)) || !(c->v[l] = m->be->ops->alloc(m->be, bytes))) {
      kg_kv_cache_free(c);
      return kg_error_context("KV cache for %d x %d positions: ", n_seq, max_len);
    }
  }
  *out = c;
  return KG_OK;
}

void kg_kv_cache_free(kg_kv_cache *c) {
  if (!c) return;
  for (int l = 0; l < c->n_layers; l++) {
    if (c->k) c->be->ops->release(c->be, c->k[l]);
    if (c->v) c->be->ops->release(c->be, c->v[l]);
  }
  free(c->k);
  free(c->v);
  free(c);
}
