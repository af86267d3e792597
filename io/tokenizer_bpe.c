/* Byte-level BPE encoding with HF tokenizers' semantics: literal (added)
 * tokens first, then the pre-tokenizer, then per word: bytes -> byte-level
 * characters -> ids, and merges applied lowest rank first (ties: leftmost)
 * from a heap over a linked list of symbols, as tokenizers' Word::merge_all
 * does (a queued merge is applied when the pair still produces the same
 * token). Words repeat a lot in text, so each call keeps a word cache. */
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/heap.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"

typedef struct bsym {
  int32_t id, prev, next;
  uint32_t len; /* 0 = merged into its left neighbour */
} bsym;

typedef struct bmerge {
  int32_t rank, pos, merged;
} bmerge;

typedef struct bpe_work {
  const kg_tokenizer *t;
  bsym *s;
  size_t s_cap;
  bmerge *h;
  size_t h_n, h_cap;
  kg_buf mapped;
  kg_wcache cache;
  size_t words;
} bpe_work;

static int merge_before(const bmerge *a, const bmerge *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

KG_HEAP_DEFINE(bheap, bmerge, merge_before)

static int queue_pair(bpe_work *w, int32_t pos) {
  if (pos < 0 || w->s[pos].next < 0) return KG_OK;
  int32_t rank, merged;
  if (!kg_pairmap_get(&w->t->merges, w->s[pos].id, w->s[w->s[pos].next].id, &rank, &merged)) return KG_OK;
  bmerge m = {rank, pos, merged};
  return bheap_push(&w->h, &w->h_n, &w->h_cap, m, w->t->name);
}

static int add_sym(bpe_work *w, size_t *count, int32_t id, uint32_t len) {
  if (*count == w->s_cap) {
    size_t cap = w->s_cap ? w->s_cap * 2 : 128;
    bsym *s = realloc(w->s, cap * sizeof *s);
    if (!s) return kg_error(KG_ERR_NOMEM, "%s: out of memory", w->t->name);
    w->s = s;
    w->s_cap = cap;
  }
  w->s[*count] = (bsym){id, (int32_t)*count - 1, (int32_t)*count + 1, len};
  (*count)++;
  return KG_OK;
}

/* The symbols of one word, as tokenizers' BPE::merge_word builds them: a
 * character missing from the vocabulary becomes <0xXX> tokens (byte_fallback),
 * else <unk> (fused with a preceding <unk> when fuse_unk), else is dropped. */
static int word_symbols(bpe_work *w, const unsigned char *s, size_t n, size_t *count) {
  const kg_tokenizer *t = w->t;
  int32_t pending_unk_len = 0;
  *count = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = t->char_id[s[i]];
    uint32_t clen = t->bl_len[s[i]];
    if (id >= 0) {
      if (pending_unk_len) KG_TRY(add_sym(w, count, t->bpe_unk_id, (uint32_t)pending_unk_len));
      pending_unk_len = 0;
      KG_TRY(add_sym(w, count, id, clen));
      continue;
    }
    if (t->byte_fallback) {
      int all = 1;
      for (uint32_t k = 0; k < clen; k++) all &= t->byte_id[t->bl_utf8[s[i]][k]] >= 0;
      if (all) {
        if (pending_unk_len) KG_TRY(add_sym(w, count, t->bpe_unk_id, (uint32_t)pending_unk_len));
        pending_unk_len = 0;
        for (uint32_t k = 0; k < clen; k++) KG_TRY(add_sym(w, count, t->byte_id[t->bl_utf8[s[i]][k]], 1));
        continue;
      }
    }
    if (t->bpe_unk_id < 0) continue;
    if (pending_unk_len && !t->fuse_unk) {
      KG_TRY(add_sym(w, count, t->bpe_unk_id, (uint32_t)pending_unk_len));
      pending_unk_len = 0;
    }
    pending_unk_len += (int32_t)clen;
  }
  if (pending_unk_len) KG_TRY(add_sym(w, count, t->bpe_unk_id, (uint32_t)pending_unk_len));
  if (*count) w->s[*count - 1].next = -1;
  return KG_OK;
}

static int encode_word(bpe_work *w, const unsigned char *s, size_t n, kg_ids *out) {
  const kg_tokenizer *t = w->t;
  if (t->ignore_merges) {
    w->mapped.len = 0;
    for (size_t i = 0; i < n; i++) KG_TRY(kg_buf_append(&w->mapped, t->bl_utf8[s[i]], t->bl_len[s[i]]));
    int32_t id = kg_tok_lookup(t, w->mapped.data, w->mapped.len);
    if (id >= 0) return kg_ids_push(out, id);
  }
  size_t count;
  KG_TRY(word_symbols(w, s, n, &count));
  if (!count) return KG_OK;
  w->h_n = 0;
  for (size_t i = 0; i + 1 < count; i++) KG_TRY(queue_pair(w, (int32_t)i));
  while (w->h_n) {
    bmerge m = bheap_pop(w->h, &w->h_n);
    bsym *cur = &w->s[m.pos];
    if (!cur->len || cur->next < 0) continue;
    int32_t rank, merged;
    if (!kg_pairmap_get(&t->merges, cur->id, w->s[cur->next].id, &rank, &merged) || merged != m.merged) continue;
    bsym *right = &w->s[cur->next];
    cur->id = m.merged;
    cur->len += right->len;
    right->len = 0;
    cur->next = right->next;
    if (cur->next >= 0) w->s[cur->next].prev = m.pos;
    KG_TRY(queue_pair(w, cur->prev));
    KG_TRY(queue_pair(w, m.pos));
  }
  for (int32_t i = 0; i >= 0; i = w->s[i].next) KG_TRY(kg_ids_push(out, w->s[i].id));
  return KG_OK;
}

static int encode_stretch(const kg_tokenizer *t, const unsigned char *s, size_t n, kg_ids *out, void *ctx) {
  bpe_work *w = ctx;
  const unsigned char *base = NULL;
  unsigned char *owned = NULL;
  kg_span *sp = NULL;
  size_t n_sp = 0;
  int rc = kg_pretok_run(t->pretok, s, n, &base, &owned, &sp, &n_sp);
  for (size_t i = 0; rc >= 0 && i < n_sp; i++) {
    const unsigned char *word = base + sp[i].off;
    size_t len = sp[i].len;
    uint64_t h = kg_tok_hash(word, len);
    rc = kg_wcache_get(&w->cache, word, len, h, out);
    if (rc != 0) continue; /* hit, or an error */
    size_t from = out->n;
    if ((rc = encode_word(w, word, len, out)) >= 0) rc = kg_wcache_put(&w->cache, word, len, h, out, from);
  }
  free(sp);
  free(owned);
  return rc < 0 ? rc : KG_OK;
}

int kg_tok_encode_bpe(const kg_tokenizer *t, const char *text, size_t len, kg_ids *out) {
  bpe_work w = {.t = t};
  const unsigned char *s = (const unsigned char *)text;
  int rc = KG_OK;
  if (t->nfc && (rc = kg_tok_nfc_check(t, s, len)) < 0) return rc;
  rc = kg_tok_split_literals(t, s, len, out, encode_stretch, &w);
  free(w.s);
  free(w.h);
  kg_buf_free(&w.mapped);
  kg_wcache_free(&w.cache);
  return rc;
}
