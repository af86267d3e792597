/* The transformer forward pass, written once against the backend interface. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "model/model.h"
#include "model/model_internal.h"

/* Rows of logits per head call on the CPU: bounds the logits buffer to
 * HEAD_CHUNK x vocab floats however long the batch is. Devices take larger
 * chunks (HEAD_DEVICE_BYTES of logits) so the head GEMM stays efficient. */
#define HEAD_CHUNK 64
#define HEAD_DEVICE_BYTES ((size_t)128 << 20)
#define HEAD_DEVICE_MAX_ROWS 4096

static int is_cpu(const kg_backend *be) { return be->ops->name[0] == 'c' && be->ops->name[1] == 'p'; }

static int64_t head_chunk_rows(const kg_model *m) {
  if (is_cpu(m->be)) return HEAD_CHUNK;
  int64_t rows = (int64_t)(HEAD_DEVICE_BYTES / ((size_t)m->cfg.vocab_size * sizeof(float)));
  return rows < HEAD_CHUNK ? HEAD_CHUNK : rows > HEAD_DEVICE_MAX_ROWS ? HEAD_DEVICE_MAX_ROWS : rows;
}

size_t kg_workspace_bytes(const kg_model_config *c, int64_t rows) {
  const size_t q_w = (size_t)c->n_heads * c->head_dim, kv_w = (size_t)c->n_kv_heads * c->head_dim;
  const size_t per_row = 2 * (size_t)c->dim + 2 * q_w + 2 * kv_w + 2 * (size_t)c->hidden_dim;
  const size_t head = HEAD_DEVICE_BYTES + (size_t)HEAD_DEVICE_MAX_ROWS * c->dim * sizeof(float);
  /* a 16-bit copy of the widest linear input (backends that cast float32 inputs) */
  const size_t widest = (size_t)(c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
  return (size_t)rows * (per_row * sizeof(float) + widest * 2) + head;
}

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

/* Head buffers for `rows` rows (grow-only); host_logits only when asked. */
static int reserve_head(kg_model *m, int64_t rows, int want_host) {
  kg_workspace *ws = m->ws;
  kg_backend *be = m->be;
  const size_t vocab = m->cfg.vocab_size, dim = m->cfg.dim;
  if (ws->head_rows < rows) {
    be->ops->release(be, ws->head_in);
    be->ops->release(be, ws->head_logits);
    if (ws->host_logits != ws->head_logits) free(ws->host_logits);
    free(ws->row_ids);
    ws->head_in = ws->head_logits = ws->host_logits = NULL;
    ws->row_ids = NULL;
    ws->head_rows = 0;
    ws->head_in = be->ops->alloc(be, (size_t)rows * dim * sizeof(float));
    ws->head_logits = ws->head_in ? be->ops->alloc(be, (size_t)rows * vocab * sizeof(float)) : NULL;
    ws->row_ids = malloc((size_t)rows * sizeof(int64_t));
    if (!ws->head_in || !ws->head_logits || !ws->row_ids) return kg_error_context("output head of %lld rows: ", (long long)rows);
    if (is_cpu(be)) ws->host_logits = ws->head_logits;
    ws->head_rows = rows;
  }
  if (want_host && !ws->host_logits && !(ws->host_logits = malloc((size_t)ws->head_rows * vocab * sizeof(float))))
    return kg_error(KG_ERR_NOMEM, "out of memory for host logits");
  return KG_OK;
}

/* The model's workspace, created empty on first use. */
static int workspace_get(kg_model *m) {
  if (!m->ws && !(m->ws = calloc(1, sizeof(kg_workspace)))) return kg_error(KG_ERR_NOMEM, "out of memory");
  return KG_OK;
}

int kg_workspace_reserve(kg_model *m, int64_t rows, int elem_bytes, int hidden) {
  kg_backend *be = m->be;
  KG_TRY(workspace_get(m));
  kg_workspace *ws = m->ws;
  const kg_model_config *c = &m->cfg;
  if (hidden && ws->x_rows < rows) {
    be->ops->release(be, ws->x);
    ws->x_rows = 0;
    if (!(ws->x = be->ops->alloc(be, (size_t)rows * c->dim * sizeof(float))))
      return kg_error_context("residual stream for %lld tokens: ", (long long)rows);
    ws->x_rows = rows;
  }
  const int64_t row_bytes = rows * elem_bytes;
  if (ws->row_bytes >= row_bytes) return KG_OK;
  const size_t q_w = (size_t)c->n_heads * c->head_dim, kv_w = (size_t)c->n_kv_heads * c->head_dim;
  struct {
    float **buf;
    size_t width;
  } plan[] = {{&ws->xb, c->dim}, {&ws->q, q_w},           {&ws->k, kv_w},          {&ws->v, kv_w},
              {&ws->att, q_w},   {&ws->gate, c->hidden_dim}, {&ws->up, c->hidden_dim}};
  for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
    be->ops->release(be, *plan[i].buf);
    *plan[i].buf = NULL;
  }
  ws->row_bytes = 0;
  for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
    if (!(*plan[i].buf = be->ops->alloc(be, (size_t)row_bytes * plan[i].width)))
      return kg_error_context("workspace for %lld tokens: ", (long long)rows);
  }
  ws->row_bytes = row_bytes;
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
  kg_weight *table = &m->dev_embed;
  if (m->be->ops->weights_acquire) KG_TRY(m->be->ops->weights_acquire(m->be, &table, 1));
  return m->be->ops->embed(m->be, &m->dev_embed, tokens, n, x);
}

/* ---- weight streaming: stage block `layer`, start staging the next one ---- */

static int stage_block(kg_model *m, int layer) {
  const kg_backend_ops *ops = m->be->ops;
  if (!ops->weights_acquire) return KG_OK;
  kg_weight *w[KG_LIN_COUNT];
  for (int id = 0; id < KG_LIN_COUNT; id++) w[id] = &m->blocks[layer].lin[id].dev;
  KG_TRY(ops->weights_acquire(m->be, w, KG_LIN_COUNT));
  /* The next block that lives in host memory uploads while this one computes. */
  for (int l = layer + 1; l < m->cfg.n_layers && ops->weights_prefetch; l++) {
    if (!m->blocks[l].lin[0].dev.streamed) continue;
    for (int id = 0; id < KG_LIN_COUNT; id++) w[id] = &m->blocks[l].lin[id].dev;
    return ops->weights_prefetch(m->be, w, KG_LIN_COUNT);
  }
  return KG_OK;
}

static int stage_head(kg_model *m) {
  kg_weight *w = &m->dev_lm_head;
  return m->be->ops->weights_acquire ? m->be->ops->weights_acquire(m->be, &w, 1) : KG_OK;
}

/* Whether the backend has the whole 16-bit activation path (qk-norm models
 * keep the float32 path: their extra norms run on q/k in place). */
static int has_act16(const kg_model *m) {
  const kg_backend_ops *o = m->be->ops;
  return o->norm_h && o->linear_h && o->linear_h_f32 && o->rope_h && o->attention_h && o->swiglu_h &&
         !m->cfg.qk_norm;
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

  KG_TRY(stage_block(m, layer));
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

/* The same block with 16-bit activations between operations: the float32
 * workspace buffers hold the 16-bit tensors, residual adds are folded into
 * the o/down projections. No cache; the hook (may be NULL) sees 16-bit inputs. */
static int block_forward_act16(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook16 hook, void *ctx) {
  const kg_model_config *c = &m->cfg;
  const kg_backend_ops *ops = m->be->ops;
  kg_backend *be = m->be;
  const kg_dtype dt = be->act16;
  kg_workspace *ws = m->ws;
  const kg_block *b = &m->blocks[layer];
  const int64_t n = (int64_t)n_seq * T;
  void *xh = ws->xb, *qh = ws->q, *kh = ws->k, *vh = ws->v, *ah = ws->att, *gh = ws->gate, *uh = ws->up;
  int rc;

  KG_TRY(stage_block(m, layer));
  KG_TRY(ops->norm_h(be, c->norm, x, b->dev_attn_norm, n, c->dim, c->norm_eps, xh));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_ATTN, xh, dt, n, c->dim)) != 0) return rc;
  KG_TRY(ops->linear_h(be, &b->lin[KG_LIN_Q].dev, xh, n, qh));
  KG_TRY(ops->linear_h(be, &b->lin[KG_LIN_K].dev, xh, n, kh));
  KG_TRY(ops->linear_h(be, &b->lin[KG_LIN_V].dev, xh, n, vh));
  KG_TRY(ops->rope_h(be, qh, n_seq, T, 0, c->n_heads, c->head_dim, m->rope_inv_freq));
  KG_TRY(ops->rope_h(be, kh, n_seq, T, 0, c->n_kv_heads, c->head_dim, m->rope_inv_freq));
  kg_attention_args a = {.q = qh, .k_cache = kh, .v_cache = vh, .out = ah, .n_seq = n_seq, .T = T, .pos0 = 0,
                         .kv_stride = T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                         .head_dim = c->head_dim};
  KG_TRY(ops->attention_h(be, &a));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_ATTN_OUT, ah, dt, n, c->n_heads * c->head_dim)) != 0) return rc;
  KG_TRY(ops->linear_h_f32(be, &b->lin[KG_LIN_O].dev, ah, n, x, 1));
  KG_TRY(ops->norm_h(be, c->norm, x, b->dev_ffn_norm, n, c->dim, c->norm_eps, xh));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_MLP, xh, dt, n, c->dim)) != 0) return rc;
  KG_TRY(ops->linear_h(be, &b->lin[KG_LIN_GATE].dev, xh, n, gh));
  KG_TRY(ops->linear_h(be, &b->lin[KG_LIN_UP].dev, xh, n, uh));
  KG_TRY(ops->swiglu_h(be, gh, uh, n * c->hidden_dim, gh));
  if (hook && (rc = hook(ctx, layer, KG_INPUT_MLP_HIDDEN, gh, dt, n, c->hidden_dim)) != 0) return rc;
  return ops->linear_h_f32(be, &b->lin[KG_LIN_DOWN].dev, gh, n, x, 1);
}

int kg_model_block_forward(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook hook, void *ctx) {
  if (layer < 0 || layer >= m->cfg.n_layers) return kg_error(KG_ERR_ARG, "layer %d out of range", layer);
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch");
  const int act16 = !hook && has_act16(m);
  KG_TRY(kg_workspace_reserve(m, (int64_t)n_seq * T, act16 ? 2 : 4, 0));
  if (act16) return block_forward_act16(m, layer, x, n_seq, T, NULL, NULL);
  return block_forward(m, layer, x, n_seq, T, NULL, NULL, 0, 0, hook, ctx);
}

int kg_model_has_act16(const kg_model *m) { return has_act16(m); }

int kg_model_preferred_batch(const kg_model *m, int T) {
  const int64_t rows = m->be->preferred_rows;
  if (rows <= 0 || T <= 0 || T >= rows) return 1;
  return (int)(rows / T);
}

int kg_model_block_forward16(kg_model *m, int layer, float *x, int n_seq, int T, kg_input_hook16 hook, void *ctx) {
  if (layer < 0 || layer >= m->cfg.n_layers) return kg_error(KG_ERR_ARG, "layer %d out of range", layer);
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch");
  if (!has_act16(m)) return kg_error(KG_ERR_UNSUPPORTED, "the %s backend has no 16-bit activation path", m->be->ops->name);
  KG_TRY(kg_workspace_reserve(m, (int64_t)n_seq * T, 2, 0));
  return block_forward_act16(m, layer, x, n_seq, T, hook, ctx);
}

/* Final norm + head over `count` consecutive rows of hidden states into
 * logits [count, vocab] (backend memory). */
static int head_rows(kg_model *m, const float *x_rows, int64_t count, float *logits) {
  const kg_model_config *c = &m->cfg;
  kg_backend *be = m->be;
  const kg_backend_ops *ops = be->ops;
  kg_workspace *ws = m->ws;
  KG_TRY(stage_head(m));
  if (has_act16(m)) {
    KG_TRY(ops->norm_h(be, c->norm, x_rows, m->dev_final_norm, count, c->dim, c->norm_eps, ws->head_in));
    return ops->linear_h_f32(be, &m->dev_lm_head, ws->head_in, count, logits, 0);
  }
  KG_TRY(ops->norm(be, c->norm, x_rows, m->dev_final_norm, count, c->dim, c->norm_eps, ws->head_in));
  return ops->linear(be, &m->dev_lm_head, ws->head_in, count, logits);
}

int kg_model_head(kg_model *m, const float *x, int n_seq, int T, const uint8_t *want_logits, kg_logits_fn fn,
                  void *ctx) {
  const kg_model_config *c = &m->cfg;
  kg_backend *be = m->be;
  const kg_backend_ops *ops = be->ops;
  const int64_t n = (int64_t)n_seq * T, chunk = head_chunk_rows(m);
  KG_TRY(workspace_get(m));
  KG_TRY(reserve_head(m, chunk, 1));
  kg_workspace *ws = m->ws;
  const size_t row_bytes = (size_t)c->dim * sizeof(float);
  KG_TRY(stage_head(m));
  int64_t next = 0;
  while (next < n) {
    int64_t count = 0;
    /* Gather wanted rows, one copy per run of consecutive rows. */
    while (next < n && count < chunk) {
      if (want_logits && !want_logits[next]) {
        next++;
        continue;
      }
      int64_t run = 0;
      while (next + run < n && count + run < chunk && (!want_logits || want_logits[next + run])) {
        ws->row_ids[count + run] = next + run;
        run++;
      }
      KG_TRY(ops->copy(be, ws->head_in + count * c->dim, x + next * c->dim, (size_t)run * row_bytes));
      count += run;
      next += run;
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

/* Embedding and every block without a cache; the hidden states end in m->ws->x. */
static int forward_hidden(kg_model *m, const int32_t *tokens, int n_seq, int T, int allow_act16) {
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch (%d sequences of %d tokens)", n_seq, T);
  const int64_t n = (int64_t)n_seq * T;
  const int act16 = allow_act16 && has_act16(m);
  KG_TRY(kg_workspace_reserve(m, n, act16 ? 2 : 4, 1));
  float *x = m->ws->x;
  KG_TRY(kg_model_embed(m, tokens, n, x));
  for (int l = 0; l < m->cfg.n_layers; l++) {
    if (act16) KG_TRY(block_forward_act16(m, l, x, n_seq, T, NULL, NULL));
    else KG_TRY(block_forward(m, l, x, n_seq, T, NULL, NULL, 0, 0, NULL, NULL));
  }
  return KG_OK;
}

int kg_model_forward(kg_model *m, const kg_forward_request *r) {
  const kg_model_config *c = &m->cfg;
  if (r->n_seq <= 0 || r->T <= 0) return kg_error(KG_ERR_ARG, "empty batch (%d sequences of %d tokens)", r->n_seq, r->T);
  kg_kv_cache *cache = r->cache;
  if (!cache) {
    KG_TRY(forward_hidden(m, r->tokens, r->n_seq, r->T, !r->precise));
  } else {
    if (cache->n_seq != r->n_seq)
      return kg_error(KG_ERR_ARG, "cache holds %d sequences, batch has %d", cache->n_seq, r->n_seq);
    if (cache->len + r->T > cache->max_len)
      return kg_error(KG_ERR_ARG, "cache of %d positions cannot take %d more after %d", cache->max_len, r->T, cache->len);
    const int pos0 = cache->len;
    const int64_t n = (int64_t)r->n_seq * r->T;
    KG_TRY(kg_workspace_reserve(m, n, 4, 1));
    KG_TRY(kg_model_embed(m, r->tokens, n, m->ws->x));
    for (int l = 0; l < c->n_layers; l++)
      KG_TRY(block_forward(m, l, m->ws->x, r->n_seq, r->T, cache->k[l], cache->v[l], pos0, cache->max_len, NULL, NULL));
    cache->len += r->T;
  }
  if (!r->on_logits) return KG_OK;
  return kg_model_head(m, m->ws->x, r->n_seq, r->T, r->want_logits, r->on_logits, r->ctx);
}

/* Whether rows [r0, r0 + count) hold a wanted row. */
static int any_wanted(const uint8_t *want, int64_t r0, int64_t count) {
  if (!want) return 1;
  for (int64_t i = 0; i < count; i++)
    if (want[r0 + i]) return 1;
  return 0;
}

int kg_model_forward_nll(kg_model *m, const int32_t *tokens, int n_seq, int T, const uint8_t *want, double *nll) {
  int rc = KG_OK;
  int32_t *targets = NULL;
  double *chunk_nll = NULL;
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch (%d sequences of %d tokens)", n_seq, T);
  const int64_t n = (int64_t)n_seq * T;
  for (int64_t r = 0; r < n; r++) {
    nll[r] = NAN;
    if (want && want[r] && r % T == T - 1)
      return kg_error(KG_ERR_ARG, "row %lld is the last of its sequence: it has no next token to score", (long long)r);
  }
  KG_TRY(check_tokens(m, tokens, n));
  KG_TRY(forward_hidden(m, tokens, n_seq, T, 1));
  const int64_t chunk = head_chunk_rows(m);
  KG_TRY(reserve_head(m, chunk, 0));
  targets = malloc((size_t)chunk * sizeof(*targets));
  chunk_nll = malloc((size_t)chunk * sizeof(*chunk_nll));
  if (!targets || !chunk_nll) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory for %lld targets", (long long)chunk);
    goto done;
  }
  const int dim = m->cfg.dim;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t count = n - r0 < chunk ? n - r0 : chunk;
    if (!any_wanted(want, r0, count)) continue;
    /* Rows without a next token get token 0 as a placeholder and are dropped. */
    for (int64_t i = 0; i < count; i++) targets[i] = (r0 + i) % T == T - 1 ? 0 : tokens[r0 + i + 1];
    if ((rc = head_rows(m, m->ws->x + r0 * dim, count, m->ws->head_logits)) < 0) goto done;
    if ((rc = m->be->ops->row_nll(m->be, m->ws->head_logits, count, m->cfg.vocab_size, targets, chunk_nll)) < 0)
      goto done;
    for (int64_t i = 0; i < count; i++) {
      const int64_t r = r0 + i;
      if (r % T != T - 1 && (!want || want[r])) nll[r] = chunk_nll[i];
    }
  }
done:
  free(targets);
  free(chunk_nll);
  return rc;
}

int kg_model_forward_js(kg_model *p, kg_model *q, const int32_t *tokens, int n_seq, int T, const uint8_t *want,
                        double *js, int32_t *argmax_p, int32_t *argmax_q) {
  int rc = KG_OK;
  double *c_js = NULL;
  int32_t *c_ap = NULL, *c_aq = NULL;
  if (n_seq <= 0 || T <= 0) return kg_error(KG_ERR_ARG, "empty batch (%d sequences of %d tokens)", n_seq, T);
  if (p->be != q->be) return kg_error(KG_ERR_ARG, "JS divergence needs both models on one backend");
  if (p->cfg.vocab_size != q->cfg.vocab_size)
    return kg_error(KG_ERR_ARG, "JS divergence needs one vocabulary: %d vs %d", p->cfg.vocab_size, q->cfg.vocab_size);
  const int64_t n = (int64_t)n_seq * T;
  for (int64_t r = 0; r < n; r++) {
    js[r] = NAN;
    if (argmax_p) argmax_p[r] = -1;
    if (argmax_q) argmax_q[r] = -1;
  }
  KG_TRY(check_tokens(p, tokens, n));
  KG_TRY(forward_hidden(p, tokens, n_seq, T, 1));
  if (q != p) KG_TRY(forward_hidden(q, tokens, n_seq, T, 1));
  int64_t chunk = head_chunk_rows(p);
  KG_TRY(reserve_head(p, chunk, 0));
  KG_TRY(reserve_head(q, chunk, 0));
  c_js = malloc((size_t)chunk * sizeof(*c_js));
  c_ap = malloc((size_t)chunk * sizeof(*c_ap));
  c_aq = malloc((size_t)chunk * sizeof(*c_aq));
  if (!c_js || !c_ap || !c_aq) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory for %lld JS rows", (long long)chunk);
    goto done;
  }
  kg_backend *be = p->be;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t count = n - r0 < chunk ? n - r0 : chunk;
    if (!any_wanted(want, r0, count)) continue;
    if ((rc = head_rows(p, p->ws->x + r0 * p->cfg.dim, count, p->ws->head_logits)) < 0) goto done;
    if (q != p && (rc = head_rows(q, q->ws->x + r0 * q->cfg.dim, count, q->ws->head_logits)) < 0) goto done;
    if ((rc = be->ops->row_js(be, p->ws->head_logits, q->ws->head_logits, count, p->cfg.vocab_size, c_js, c_ap, c_aq)) < 0)
      goto done;
    for (int64_t i = 0; i < count; i++) {
      const int64_t r = r0 + i;
      if (want && !want[r]) continue;
      js[r] = c_js[i];
      if (argmax_p) argmax_p[r] = c_ap[i];
      if (argmax_q) argmax_q[r] = c_aq[i];
    }
  }
done:
  free(c_js);
  free(c_ap);
  free(c_aq);
  return rc;
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
