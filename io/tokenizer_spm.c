/* SentencePiece BPE encoding (bpe_model.cc semantics): normalize (dummy
 * prefix, optional whitespace squeezing, spaces to ▁), split into
 * characters, repeatedly merge the adjacent pair whose concatenation is the
 * highest-scoring piece (ties: leftmost), then map pieces to ids with byte
 * fallback for unknown ones. The merge runs on a binary heap of candidate
 * pairs over a linked list of symbols: O(n log n) per word. */
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/heap.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"

static const char WS[] = "\xE2\x96\x81"; /* ▁ U+2581 */

typedef struct sym {
  uint32_t start, len; /* bytes of the segment; len 0 = merged away */
  int32_t prev, next;
  uint8_t frozen; /* user-defined pieces never merge */
} sym;

typedef struct pair {
  float score;
  int32_t left, right;
  uint32_t size;
} pair;

typedef struct spm_work {
  const kg_tokenizer *t;
  sym *s;
  size_t s_cap;
  pair *h;
  size_t h_n, h_cap;
  int32_t *rev_left; /* UNUSED piece id -> byte length of its left part */
  kg_ids seg;        /* ids of the current segment */
  kg_ids stack;
  kg_wcache cache;
} spm_work;

static int pair_before(const pair *a, const pair *b) {
  return a->score > b->score || (a->score == b->score && a->left < b->left);
}

KG_HEAP_DEFINE(pheap, pair, pair_before)

static int mergeable(int type) {
  return type == KG_PIECE_NORMAL || type == KG_PIECE_USER || type == KG_PIECE_UNUSED;
}

static int try_pair(spm_work *w, const char *text, int32_t l, int32_t r) {
  if (l < 0 || r < 0 || w->s[l].frozen || w->s[r].frozen) return KG_OK;
  const kg_tokenizer *t = w->t;
  uint32_t size = w->s[l].len + w->s[r].len;
  int32_t id = kg_tok_lookup(t, text + w->s[l].start, size);
  if (id < 0 || !mergeable(t->type[id])) return KG_OK;
  if (t->type[id] == KG_PIECE_UNUSED) w->rev_left[id] = (int32_t)w->s[l].len;
  pair p = {t->score[id], l, r, size};
  return pheap_push(&w->h, &w->h_n, &w->h_cap, p, w->t->name);
}

/* Emits the ids of one final piece: unknown text falls back to bytes. */
static int emit_piece(spm_work *w, const char *p, size_t n) {
  const kg_tokenizer *t = w->t;
  w->stack.n = 0;
  KG_TRY(kg_ids_push(&w->stack, 0));
  KG_TRY(kg_ids_push(&w->stack, (int32_t)n));
  while (w->stack.n) {
    int32_t len = w->stack.v[--w->stack.n], start = w->stack.v[--w->stack.n];
    int32_t id = kg_tok_lookup(t, p + start, (size_t)len);
    if (id >= 0 && t->type[id] == KG_PIECE_UNUSED && w->rev_left && w->rev_left[id] > 0 &&
        w->rev_left[id] < len) {
      /* An UNUSED piece stands for the two pieces it was merged from. */
      int32_t left = w->rev_left[id];
      KG_TRY(kg_ids_push(&w->stack, start + left));
      KG_TRY(kg_ids_push(&w->stack, len - left));
      KG_TRY(kg_ids_push(&w->stack, start));
      KG_TRY(kg_ids_push(&w->stack, left));
      continue;
    }
    if (id >= 0) {
      KG_TRY(kg_ids_push(&w->seg, id));
    } else if (t->byte_fallback) {
      for (int32_t i = 0; i < len; i++) KG_TRY(kg_ids_push(&w->seg, t->byte_id[(unsigned char)p[start + i]]));
    } else {
      if (t->unk_id < 0) return kg_error(KG_ERR_FORMAT, "%s: text needs <unk> but the vocabulary has none", t->name);
      KG_TRY(kg_ids_push(&w->seg, t->unk_id));
    }
  }
  return KG_OK;
}

/* Length of the literal (user-defined) piece starting at p, or 0. */
static size_t literal_at(const kg_tokenizer *t, const unsigned char *p, size_t avail) {
  const kg_matcher *m = &t->literal;
  if (!m->n) return 0;
  for (uint32_t k = m->first[p[0]]; k < m->first[p[0] + 1]; k++) {
    int32_t id = m->ids[k];
    if (t->len[id] <= avail && memcmp(p, t->blob.data + t->off[id], t->len[id]) == 0) return t->len[id];
  }
  return 0;
}

/* Bytes of the character starting at p; see char_mode for malformed UTF-8. */
static size_t char_len(const kg_tokenizer *t, const unsigned char *p, size_t avail) {
  size_t k;
  if (t->char_mode == KG_CHARS_LLAMA2C) {
    for (k = 1; k < avail && k < 4 && (p[k] & 0xC0) == 0x80;) k++;
    return k;
  }
  if (t->char_mode == KG_CHARS_LEAD_LENGTH) {
    static const unsigned char len_by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    k = len_by_high_nibble[p[0] >> 4];
    return k < avail ? k : avail;
  }
  k = kg_utf8_decode(p, avail, NULL);
  return k ? k : 1;
}

/* Runs BPE on text[0..n) and appends the ids to w->seg. */
static int bpe_segment(spm_work *w, const char *text, size_t n) {
  const kg_tokenizer *t = w->t;
  const unsigned char *u = (const unsigned char *)text;
  size_t count = 0;
  for (size_t i = 0; i < n;) {
    if (count == w->s_cap) {
      size_t cap = w->s_cap ? w->s_cap * 2 : 256;
      sym *s = realloc(w->s, cap * sizeof *s);
      if (!s) return kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
      w->s = s;
      w->s_cap = cap;
    }
    size_t k = literal_at(t, u + i, n - i);
    uint8_t frozen = k > 0;
    if (!k) k = char_len(t, u + i, n - i);
    w->s[count] = (sym){(uint32_t)i, (uint32_t)k, (int32_t)count - 1, (int32_t)count + 1, frozen};
    count++;
    i += k;
  }
  if (!count) return KG_OK;
  w->s[count - 1].next = -1;
  w->h_n = 0;
  for (size_t i = 1; i < count; i++) KG_TRY(try_pair(w, text, (int32_t)i - 1, (int32_t)i));
  while (w->h_n) {
    pair p = pheap_pop(w->h, &w->h_n);
    sym *l = &w->s[p.left], *r = &w->s[p.right];
    /* Stale entries: one side was merged since the pair was queued. */
    if (!l->len || !r->len || l->len + r->len != p.size) continue;
    l->len += r->len;
    l->next = r->next;
    if (r->next >= 0) w->s[r->next].prev = p.left;
    r->len = 0;
    KG_TRY(try_pair(w, text, l->prev, p.left));
    KG_TRY(try_pair(w, text, p.left, l->next));
  }
  for (int32_t i = 0; i >= 0; i = w->s[i].next) KG_TRY(emit_piece(w, text + w->s[i].start, w->s[i].len));
  return KG_OK;
}

/* SentencePiece's identity normalizer: dummy prefix, spaces to ▁, and, when
 * asked, no leading/trailing spaces and no runs of spaces. */
static int normalize(const kg_tokenizer *t, const unsigned char *s, size_t n, kg_buf *out) {
  size_t i = 0;
  if (t->remove_extra_ws)
    while (i < n && s[i] == ' ') i++;
  if (i == n) return KG_OK;
  if (t->add_dummy_prefix && !t->ws_as_suffix) KG_TRY(kg_buf_append(out, t->escape_ws ? WS : " ", t->escape_ws ? 3 : 1));
  int prev_space = t->remove_extra_ws;
  while (i < n) {
    size_t k = kg_utf8_decode(s + i, n - i, NULL);
    if (!k) {
      if (t->replace_invalid_utf8) KG_TRY(kg_buf_append(out, "\xEF\xBF\xBD", 3));
      else KG_TRY(kg_buf_append(out, s + i, 1));
      prev_space = 0;
      i++;
      continue;
    }
    if (s[i] == ' ') {
      if (!(prev_space && t->remove_extra_ws)) KG_TRY(kg_buf_append(out, t->escape_ws ? WS : " ", t->escape_ws ? 3 : 1));
      prev_space = 1;
    } else {
      KG_TRY(kg_buf_append(out, s + i, k));
      prev_space = 0;
    }
    i += k;
  }
  if (t->remove_extra_ws) {
    size_t wl = t->escape_ws ? 3 : 1;
    while (out->len >= wl && memcmp(out->data + out->len - wl, t->escape_ws ? WS : " ", wl) == 0) out->len -= wl;
  }
  if (t->add_dummy_prefix && t->ws_as_suffix) KG_TRY(kg_buf_append(out, t->escape_ws ? WS : " ", t->escape_ws ? 3 : 1));
  return KG_OK;
}

/* Appends segment ids, folding runs of <unk> into one as SentencePiece does
 * when it has no byte fallback. */
static int append_ids(const kg_tokenizer *t, kg_ids *out, const int32_t *ids, size_t n) {
  if (t->byte_fallback || t->unk_id < 0) return kg_ids_append(out, ids, n);
  for (size_t i = 0; i < n; i++) {
    if (ids[i] == t->unk_id && out->n && out->v[out->n - 1] == t->unk_id) continue;
    KG_TRY(kg_ids_push(out, ids[i]));
  }
  return KG_OK;
}

static int encode_segment(spm_work *w, const char *s, size_t n, int use_cache, kg_ids *out) {
  w->seg.n = 0;
  uint64_t h = 0;
  int hit = 0;
  if (use_cache) {
    h = kg_tok_hash(s, n);
    KG_TRY(hit = kg_wcache_get(&w->cache, (const unsigned char *)s, n, h, &w->seg));
  }
  if (!hit) {
    KG_TRY(bpe_segment(w, s, n));
    if (use_cache) KG_TRY(kg_wcache_put(&w->cache, (const unsigned char *)s, n, h, &w->seg, 0));
  }
  return append_ids(w->t, out, w->seg.v, w->seg.n);
}

/* Words start at a whitespace symbol that follows something else. */
static int encode_stretch(const kg_tokenizer *t, const char *norm, size_t n, kg_ids *out, spm_work *w) {
  if (!t->per_word) return encode_segment(w, norm, n, 0, out);
  const char *ws = t->escape_ws ? WS : " ";
  size_t wl = t->escape_ws ? 3 : 1, start = 0;
  for (size_t i = 1; i + wl <= n; i++) {
    if (memcmp(norm + i, ws, wl) != 0 || (i >= wl && memcmp(norm + i - wl, ws, wl) == 0)) continue;
    KG_TRY(encode_segment(w, norm + start, i - start, 1, out));
    start = i;
    i += wl - 1;
  }
  return encode_segment(w, norm + start, n - start, 1, out);
}

int kg_tok_encode_spm(const kg_tokenizer *t, const char *text, size_t len, kg_ids *out) {
  int rc = KG_OK;
  kg_buf norm = {0};
  spm_work w = {.t = t};
  if (t->has_unused) {
    if (!(w.rev_left = malloc((size_t)t->n_vocab * sizeof *w.rev_left))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
      goto done;
    }
    memset(w.rev_left, 0, (size_t)t->n_vocab * sizeof *w.rev_left);
  }
  if ((rc = normalize(t, (const unsigned char *)text, len, &norm)) < 0) goto done;
  if (norm.len) rc = encode_stretch(t, norm.data, norm.len, out, &w);
done:
  kg_buf_free(&norm);
  free(w.s);
  free(w.h);
  free(w.rev_left);
  kg_ids_free(&w.seg);
  kg_ids_free(&w.stack);
  kg_wcache_free(&w.cache);
  return rc;
}
