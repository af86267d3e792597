#include "evaluate/loglik.h"

#include <stdlib.h>
#include <string.h>

#include "evaluate/ppl.h"
#include "io/error.h"
#include "io/log.h"
#include "io/tasks.h"
#include "model/sampling.h"

void kg_loglik_options_default(kg_loglik_options *o) {
  memset(o, 0, sizeof(*o));
  o->batch = 8;
  o->reuse_prefix = 1;
  o->cache_bytes = (size_t)512 << 20;
}

/* ---- encoding ---- */

int kg_loglik_encode_pair(const kg_tokenizer *tok, const char *context, const char *continuation, int add_bos,
                          int32_t **ctx, int *n_ctx, int32_t **cont, int *n_cont) {
  int rc = KG_OK;
  int32_t *whole = NULL, *c = NULL;
  size_t n_whole = 0, n_c = 0;
  char *joined = NULL;
  *ctx = *cont = NULL;
  *n_ctx = *n_cont = 0;
  size_t clen = strlen(context), keep = kg_py_rstrip_len(context, clen), tail = strlen(continuation);
  if (keep == 0) {
    /* The harness scores an empty context after the prefix token. */
    int prefix = kg_tokenizer_bos_id(tok) >= 0 ? kg_tokenizer_bos_id(tok) : kg_tokenizer_eos_id(tok);
    if (prefix < 0) return kg_error(KG_ERR_ARG, "empty context and the tokenizer has neither BOS nor EOS");
    if (!(joined = malloc(clen + tail + 1))) return kg_error(KG_ERR_NOMEM, "continuation text");
    memcpy(joined, context, clen);
    memcpy(joined + clen, continuation, tail + 1);
    if ((rc = kg_tokenizer_encode(tok, joined, clen + tail, 0, &whole, &n_whole)) < 0) goto done;
    if (!(c = malloc(sizeof(*c)))) {
      rc = kg_error(KG_ERR_NOMEM, "context tokens");
      goto done;
    }
    c[0] = prefix;
    *ctx = c;
    *n_ctx = 1;
    *cont = whole;
    *n_cont = (int)n_whole;
    c = whole = NULL;
    goto done;
  }
  if (!(joined = malloc(clen + tail + 1))) return kg_error(KG_ERR_NOMEM, "context text");
  memcpy(joined, context, clen);
  memcpy(joined + clen, continuation, tail + 1);
  if ((rc = kg_tokenizer_encode(tok, joined, clen + tail, add_bos, &whole, &n_whole)) < 0) goto done;
  if ((rc = kg_tokenizer_encode(tok, joined, keep, add_bos, &c, &n_c)) < 0) goto done;
  if (n_c == 0) {
    rc = kg_error(KG_ERR_ARG, "context \"%.40s\" encodes to no tokens", context);
    goto done;
  }
  size_t rest = n_whole > n_c ? n_whole - n_c : 0;
  int32_t *tail_ids = malloc((rest ? rest : 1) * sizeof(*tail_ids));
  if (!tail_ids) {
    rc = kg_error(KG_ERR_NOMEM, "continuation tokens");
    goto done;
  }
  if (rest) memcpy(tail_ids, whole + n_c, rest * sizeof(*tail_ids));
  *ctx = c;
  *n_ctx = (int)n_c;
  *cont = tail_ids;
  *n_cont = (int)rest;
  c = NULL;
done:
  free(joined);
  free(whole);
  free(c);
  return rc;
}

/* ---- engine ---- */

typedef struct req_state {
  int32_t *full; /* context ++ continuation (owned) */
  int off;       /* X = full[off, off + len) is the model input */
  int len;
  int first;     /* first position of X whose logits are scored */
  int active;
} req_state;

typedef struct item {
  const int32_t *x;
  int len;
  int first;
  size_t r0, nr; /* its requests: order[r0, r0 + nr) */
  int group;
} item;

typedef struct engine {
  kg_model *m;
  const kg_loglik_request *reqs;
  kg_loglik_result *out;
  req_state *rs;
  size_t *order; /* request indices sorted by X */
  item *items;
  size_t n_items;
  /* the batch being run */
  const size_t *batch;
  int nb;
  int P;
  int T;
} engine;

static int lcp(const int32_t *a, int la, const int32_t *b, int lb) {
  int n = la < lb ? la : lb, i = 0;
  while (i < n && a[i] == b[i]) i++;
  return i;
}

static int cmp_x(const int32_t *a, int la, const int32_t *b, int lb) {
  int p = lcp(a, la, b, lb);
  if (p < la && p < lb) return a[p] < b[p] ? -1 : 1;
  return la < lb ? -1 : la > lb ? 1 : 0;
}

static int cmp_req(const void *pa, const void *pb, void *ctx) {
  const req_state *rs = ctx;
  const req_state *a = &rs[*(const size_t *)pa], *b = &rs[*(const size_t *)pb];
  int c = cmp_x(a->full + a->off, a->len, b->full + b->off, b->len);
  if (c) return c;
  return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

/* Groups stay together (multi-item groups first, in input order), items
 * inside a group and single-item groups go by length. */
static int cmp_order(const void *pa, const void *pb, void *ctx) {
  const item *it = ctx;
  const item *a = &it[*(const size_t *)pa], *b = &it[*(const size_t *)pb];
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static int on_logits(void *ctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  engine *e = ctx;
  for (int64_t i = 0; i < n_rows; i++) {
    int s = (int)(rows[i] / e->T), pos = e->P + (int)(rows[i] % e->T);
    if (s < 0 || s >= e->nb) continue;
    const item *it = &e->items[e->batch[s]];
    if (pos < it->first || pos >= it->len) continue;
    const float *row = logits + (size_t)i * (size_t)vocab;
    double lse = kg_logsumexp(row, vocab);
    int32_t best = kg_argmax(row, vocab);
    for (size_t q = it->r0; q < it->r0 + it->nr; q++) {
      size_t r = e->order[q];
      const req_state *st = &e->rs[r];
      if (pos < st->first) continue;
      kg_loglik_result *res = &e->out[r];
      if (e->reqs[r].want_next) {
        if (pos == st->len - 1) res->next_token = best;
        continue;
      }
      int32_t target = st->full[st->off + pos + 1];
      if (target < 0 || target >= vocab) return kg_error(KG_ERR_ARG, "continuation token %d outside the vocabulary", target);
      res->logprob += (double)row[target] - lse;
      if (best != target) res->is_greedy = 0;
    }
  }
  return KG_OK;
}

/* Copies KV positions [from, to) of the one-sequence cache pc into slots
 * 0..nb-1 of bc (layout [n_seq, max_len, width] per layer, model.h). */
static int copy_prefix(kg_model *m, kg_kv_cache *pc, kg_kv_cache *bc, int nb, int from, int to) {
  kg_backend *be = m->be;
  size_t w = (size_t)bc->width, bytes = (size_t)(to - from) * w * sizeof(float);
  for (int l = 0; l < bc->n_layers; l++)
    for (int s = 0; s < nb; s++) {
      size_t dst = ((size_t)s * (size_t)bc->max_len + (size_t)from) * w, src = (size_t)from * w;
      KG_TRY(be->ops->copy(be, bc->k[l] + dst, pc->k[l] + src, bytes));
      KG_TRY(be->ops->copy(be, bc->v[l] + dst, pc->v[l] + src, bytes));
    }
  return KG_OK;
}

static int prepare(engine *e, size_t n, int max_len) {
  for (size_t r = 0; r < n; r++) {
    const kg_loglik_request *q = &e->reqs[r];
    req_state *st = &e->rs[r];
    kg_loglik_result *res = &e->out[r];
    res->logprob = 0.0;
    res->is_greedy = 1;
    res->next_token = -1;
    res->truncated = 0;
    if (q->n_context < 1 || q->n_continuation < 0 || !q->context || (q->n_continuation && !q->continuation))
      return kg_error(KG_ERR_ARG, "request %zu: needs a non-empty context", r);
    if (q->want_next && q->n_continuation)
      return kg_error(KG_ERR_ARG, "request %zu: want_next needs an empty continuation", r);
    if (!q->want_next && q->n_continuation == 0) continue; /* harness: (0.0, True) */
    if (q->n_continuation > max_len)
      return kg_error(KG_ERR_ARG, "request %zu: continuation of %d tokens exceeds max_len %d", r, q->n_continuation,
                      max_len);
    int L = q->n_context + q->n_continuation;
    if (!(st->full = malloc((size_t)L * sizeof(int32_t)))) return kg_error(KG_ERR_NOMEM, "request tokens");
    memcpy(st->full, q->context, (size_t)q->n_context * sizeof(int32_t));
    if (q->n_continuation) memcpy(st->full + q->n_context, q->continuation, (size_t)q->n_continuation * sizeof(int32_t));
    if (q->want_next) {
      st->off = L > max_len ? L - max_len : 0;
      st->len = L - st->off;
      st->first = st->len - 1;
    } else {
      st->off = L - 1 > max_len ? L - 1 - max_len : 0;
      st->len = L - 1 - st->off;
      st->first = st->len - q->n_continuation;
    }
    res->truncated = st->off > 0;
    st->active = 1;
  }
  return KG_OK;
}

static int build_items(engine *e, size_t n) {
  size_t n_act = 0;
  for (size_t r = 0; r < n; r++)
    if (e->rs[r].active) e->order[n_act++] = r;
  qsort_r(e->order, n_act, sizeof(*e->order), cmp_req, e->rs);
  e->n_items = 0;
  for (size_t q = 0; q < n_act; q++) {
    const req_state *st = &e->rs[e->order[q]];
    item *prev = e->n_items ? &e->items[e->n_items - 1] : NULL;
    if (prev && prev->len == st->len && !memcmp(prev->x, st->full + st->off, (size_t)st->len * sizeof(int32_t))) {
      prev->nr++;
      if (st->first < prev->first) prev->first = st->first;
      continue;
    }
    item *it = &e->items[e->n_items++];
    it->x = st->full + st->off;
    it->len = st->len;
    it->first = st->first;
    it->r0 = q;
    it->nr = 1;
    /* items sharing at least half of the shorter input form one group */
    int share = prev ? lcp(prev->x, prev->len, it->x, it->len) : 0;
    int shorter = prev && prev->len < it->len ? prev->len : it->len;
    it->group = prev && share > 0 && 2 * share >= shorter ? prev->group : (int)e->n_items - 1;
  }
  /* single-item groups are pooled (sorted by length among themselves) */
  for (size_t i = 0; i < e->n_items; i++) {
    int g = e->items[i].group;
    int alone = (i == 0 || e->items[i - 1].group != g) && (i + 1 == e->n_items || e->items[i + 1].group != g);
    if (alone) e->items[i].group = (int)e->n_items; /* after every multi-item group */
  }
  return KG_OK;
}

int kg_loglik_run(kg_model *m, const kg_loglik_request *reqs, size_t n, const kg_loglik_options *opt,
                  kg_loglik_result *out) {
  kg_loglik_options o;
  if (opt) o = *opt;
  else kg_loglik_options_default(&o);
  if (o.batch <= 0) o.batch = 8;
  if (o.cache_bytes == 0) o.cache_bytes = (size_t)512 << 20;
  int max_len = o.max_len > 0 ? o.max_len : m->cfg.max_seq_len;
  if (max_len <= 0) max_len = 2048;
  int rc = KG_OK;
  engine e = {.m = m, .reqs = reqs, .out = out};
  if (o.stats) memset(o.stats, 0, sizeof(*o.stats));
  size_t *seq = NULL;
  int32_t *tokens = NULL;
  uint8_t *want = NULL;
  kg_kv_cache *pc = NULL, *bc = NULL;
  kg_progress prog;
  int prog_on = 0;
  if (n == 0) return KG_OK;
  e.rs = calloc(n, sizeof(*e.rs));
  e.order = calloc(n, sizeof(*e.order));
  e.items = calloc(n, sizeof(*e.items));
  seq = calloc(n, sizeof(*seq));
  if (!e.rs || !e.order || !e.items || !seq) {
    rc = kg_error(KG_ERR_NOMEM, "log-likelihood requests (%zu)", n);
    goto done;
  }
  if ((rc = prepare(&e, n, max_len)) < 0 || (rc = build_items(&e, n)) < 0) goto done;
  kg_loglik_stats st = {.items = (int64_t)e.n_items};
  if (e.n_items == 0) goto done;

  int Lmax = 1;
  for (size_t i = 0; i < e.n_items; i++) {
    seq[i] = i;
    if (e.items[i].len > Lmax) Lmax = e.items[i].len;
  }
  qsort_r(seq, e.n_items, sizeof(*seq), cmp_order, e.items);
  size_t per_slot = (size_t)m->cfg.n_layers * (size_t)m->cfg.n_kv_heads * (size_t)m->cfg.head_dim * 2 *
                    sizeof(float) * (size_t)Lmax;
  int B = o.batch;
  if (o.reuse_prefix && per_slot > 0 && (size_t)B * per_slot > o.cache_bytes) {
    B = (int)(o.cache_bytes / per_slot);
    if (B < 1) B = 1;
  }
  if (o.reuse_prefix) {
    if ((rc = kg_kv_cache_create(m, B, Lmax, &bc)) < 0 || (rc = kg_kv_cache_create(m, 1, Lmax, &pc)) < 0) goto done;
  }
  if (!(tokens = malloc((size_t)B * (size_t)Lmax * sizeof(*tokens))) || !(want = malloc((size_t)B * (size_t)Lmax))) {
    rc = kg_error(KG_ERR_NOMEM, "batch of %d x %d tokens", B, Lmax);
    goto done;
  }
  if (o.progress) {
    kg_progress_begin(&prog, o.label ? o.label : "loglik", (int64_t)e.n_items);
    prog_on = 1;
  }
  const int32_t *pc_tok = NULL, *bc_tok = NULL;
  int pc_len = 0, bc_len = 0, bc_slots = 0;
  for (size_t i0 = 0; i0 < e.n_items;) {
    /* a batch: up to B items of one group (single items are one pool) */
    size_t i1 = i0 + 1;
    while (i1 < e.n_items && i1 - i0 < (size_t)B && e.items[seq[i1]].group == e.items[seq[i0]].group) i1++;
    int nb = (int)(i1 - i0);
    const item *x0 = &e.items[seq[i0]];
    int P = 0, Tmax = 0;
    if (o.reuse_prefix) {
      P = x0->first;
      for (size_t k = i0; k < i1; k++) {
        const item *it = &e.items[seq[k]];
        int s = lcp(x0->x, x0->len, it->x, it->len);
        if (s < P) P = s;
        if (it->first < P) P = it->first;
      }
    }
    for (size_t k = i0; k < i1; k++)
      if (e.items[seq[k]].len - P > Tmax) Tmax = e.items[seq[k]].len - P;
    if (P > 0) {
      int a = nb <= bc_slots ? lcp(bc_tok, bc_len, x0->x, P) : 0;
      if (a < P) {
        int b = lcp(pc_tok, pc_len, x0->x, P);
        if (b < P) {
          pc->len = b;
          kg_forward_request fr = {.tokens = x0->x + b, .n_seq = 1, .T = P - b, .cache = pc};
          if ((rc = kg_model_forward(m, &fr)) < 0) goto done;
          st.forward_calls++;
          st.tokens_fed += P - b;
        }
        pc_tok = x0->x;
        pc_len = P;
        if ((rc = copy_prefix(m, pc, bc, nb, a, P)) < 0) goto done;
        bc_slots = nb;
      }
      bc_tok = x0->x;
      bc_len = P;
    } else {
      bc_len = 0;
    }
    for (int s = 0; s < nb; s++) {
      const item *it = &e.items[seq[i0 + (size_t)s]];
      int32_t *row = tokens + (size_t)s * (size_t)Tmax;
      uint8_t *w = want + (size_t)s * (size_t)Tmax;
      for (int t = 0; t < Tmax; t++) {
        int pos = P + t;
        row[t] = pos < it->len ? it->x[pos] : it->x[it->len - 1];
        w[t] = pos >= it->first && pos < it->len;
      }
    }
    e.batch = seq + i0;
    e.nb = nb;
    e.P = P;
    e.T = Tmax;
    kg_kv_cache view;
    /* precise: the same float32 arithmetic with or without prefix reuse, so a
     * score never depends on batching or cache settings (GPU 16-bit path off). */
    kg_forward_request fr = {.tokens = tokens, .n_seq = nb, .T = Tmax, .want_logits = want, .on_logits = on_logits,
                             .ctx = &e, .precise = 1};
    if (o.reuse_prefix) {
      view = *bc; /* the first nb slots of bc: same per-slot layout */
      view.n_seq = nb;
      view.len = P;
      fr.cache = &view;
    }
    if ((rc = kg_model_forward(m, &fr)) < 0) goto done;
    st.forward_calls++;
    st.tokens_fed += (int64_t)nb * Tmax;
    st.tokens_reused += (int64_t)nb * P;
    if (o.stats) *o.stats = st;
    if (prog_on) kg_progress_update(&prog, (int64_t)i1);
    i0 = i1;
  }
done:
  if (prog_on) kg_progress_end(&prog);
  if (e.rs)
    for (size_t r = 0; r < n; r++) free(e.rs[r].full);
  free(e.rs);
  free(e.order);
  free(e.items);
  free(seq);
  free(tokens);
  free(want);
  kg_kv_cache_free(pc);
  kg_kv_cache_free(bc);
  return rc;
}
