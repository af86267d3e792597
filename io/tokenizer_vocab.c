/* Vocabulary storage shared by every tokenizer format: pieces, the text ->
 * id map, the decode table, literal-token matching, and the per-call word
 * cache. */
#ifndef _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"

int kg_buf_append(kg_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
      if (cap > SIZE_MAX / 2) return kg_error(KG_ERR_NOMEM, "tokenizer: buffer too large");
      cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return KG_OK;
}

void kg_buf_free(kg_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

static int ids_reserve(kg_ids *a, size_t extra) {
  if (a->n + extra <= a->cap) return KG_OK;
  size_t cap = a->cap ? a->cap : 64;
  while (cap < a->n + extra) {
    if (cap > SIZE_MAX / 8) return kg_error(KG_ERR_NOMEM, "tokenizer: id list too long");
    cap *= 2;
  }
  int32_t *v = realloc(a->v, cap * sizeof *v);
  if (!v) return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
  a->v = v;
  a->cap = cap;
  return KG_OK;
}

int kg_ids_push(kg_ids *a, int32_t id) {
  if (a->n == a->cap) KG_TRY(ids_reserve(a, 1));
  a->v[a->n++] = id;
  return KG_OK;
}

int kg_ids_append(kg_ids *a, const int32_t *ids, size_t n) {
  KG_TRY(ids_reserve(a, n));
  if (n) memcpy(a->v + a->n, ids, n * sizeof *ids);
  a->n += n;
  return KG_OK;
}

void kg_ids_free(kg_ids *a) {
  free(a->v);
  memset(a, 0, sizeof *a);
}

uint64_t kg_tok_hash(const void *s, size_t n) {
  const unsigned char *p = s;
  uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
  h = (h ^ w) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

/* ---- pair map ---- */
static int pairmap_grow(kg_pairmap *m) {
  uint64_t cap = m->mask ? (m->mask + 1) * 2 : 1024;
  uint64_t *key = calloc(cap, sizeof *key);
  int32_t *rank = malloc(cap * sizeof *rank), *merged = malloc(cap * sizeof *merged);
  if (!key || !rank || !merged) {
    free(key); free(rank); free(merged);
    return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory for merges");
  }
  for (uint64_t i = 0; m->mask && i <= m->mask; i++) {
    if (!m->key[i]) continue;
    uint64_t j = kg_tok_hash(&m->key[i], 8) & (cap - 1);
    while (key[j]) j = (j + 1) & (cap - 1);
    key[j] = m->key[i];
    rank[j] = m->rank[i];
    merged[j] = m->merged[i];
  }
  free(m->key); free(m->rank); free(m->merged);
  m->key = key;
  m->rank = rank;
  m->merged = merged;
  m->mask = cap - 1;
  return KG_OK;
}

int kg_pairmap_put(kg_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if (!m->mask || (m->count + 1) * 2 > m->mask + 1) KG_TRY(pairmap_grow(m));
  uint64_t k = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
  uint64_t j = kg_tok_hash(&k, 8) & m->mask;
  while (m->key[j] && m->key[j] != k) j = (j + 1) & m->mask;
  if (!m->key[j]) m->count++;
  m->key[j] = k;
  m->rank[j] = rank;
  m->merged[j] = merged;
  return KG_OK;
}

int kg_pairmap_get(const kg_pairmap *m, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
  if (!m->mask) return 0;
  uint64_t k = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
  uint64_t j = kg_tok_hash(&k, 8) & m->mask;
  while (m->key[j]) {
    if (m->key[j] == k) {
      *rank = m->rank[j];
      *merged = m->merged[j];
      return 1;
    }
    j = (j + 1) & m->mask;
  }
  return 0;
}

void kg_pairmap_free(kg_pairmap *m) {
  free(m->key); free(m->rank); free(m->merged);
  memset(m, 0, sizeof *m);
}

/* ---- building ---- */
int kg_tok_alloc(kg_tokenizer_kind kind, const char *name, int32_t n_vocab, kg_tokenizer **out) {
  *out = NULL;
  kg_tokenizer *t = calloc(1, sizeof *t);
  if (!t || !(t->name = strdup(name ? name : "tokenizer"))) {
    free(t);
    return kg_error(KG_ERR_NOMEM, "%s: out of memory", name ? name : "tokenizer");
  }
  t->kind = kind;
  t->bos_id = t->eos_id = t->unk_id = t->bpe_unk_id = -1;
  t->escape_ws = 1;
  for (int b = 0; b < 256; b++) t->byte_id[b] = t->char_id[b] = -1;
  int rc = kg_tok_resize(t, n_vocab);
  if (rc < 0) {
    kg_tokenizer_free(t);
    return rc;
  }
  *out = t;
  return KG_OK;
}

int kg_tok_resize(kg_tokenizer *t, int32_t n_vocab) {
  if (n_vocab < 0 || n_vocab > KG_TOK_MAX_VOCAB)
    return kg_error(KG_ERR_FORMAT, "%s: vocabulary size %d out of range", t->name, n_vocab);
  if (n_vocab <= t->n_vocab) return KG_OK;
  size_t n = (size_t)n_vocab, old = (size_t)t->n_vocab;
  uint32_t *off = realloc(t->off, n * sizeof *off);
  if (off) t->off = off;
  uint32_t *len = realloc(t->len, n * sizeof *len);
  if (len) t->len = len;
  float *score = realloc(t->score, n * sizeof *score);
  if (score) t->score = score;
  uint8_t *type = realloc(t->type, n);
  if (type) t->type = type;
  uint8_t *in_map = realloc(t->in_map, n);
  if (in_map) t->in_map = in_map;
  if (!off || !len || !score || !type || !in_map)
    return kg_error(KG_ERR_NOMEM, "%s: out of memory for %d tokens", t->name, n_vocab);
  for (size_t i = old; i < n; i++) {
    t->off[i] = t->len[i] = 0;
    t->score[i] = 0.0f;
    t->type[i] = KG_PIECE_NONE;
    t->in_map[i] = 0;
  }
  t->n_vocab = n_vocab;
  return KG_OK;
}

int kg_tok_set_piece(kg_tokenizer *t, int32_t id, const char *s, size_t len, float score, int type, int in_map) {
  if (id < 0 || id >= t->n_vocab) return kg_error(KG_ERR_FORMAT, "%s: token id %d out of range", t->name, id);
  if (len > (1u << 20) || t->blob.len + len > UINT32_MAX / 2)
    return kg_error(KG_ERR_FORMAT, "%s: token %d is too long (%zu bytes)", t->name, id, len);
  t->off[id] = (uint32_t)t->blob.len;
  t->len[id] = (uint32_t)len;
  t->score[id] = score;
  t->type[id] = (uint8_t)type;
  t->in_map[id] = (uint8_t)(in_map != 0);
  return kg_buf_append(&t->blob, s, len);
}

int32_t kg_tok_lookup(const kg_tokenizer *t, const char *s, size_t n) {
  if (!t->map) return -1;
  uint32_t j = (uint32_t)kg_tok_hash(s, n) & t->map_mask;
  for (int32_t id; (id = t->map[j]) >= 0; j = (j + 1) & t->map_mask)
    if (t->len[id] == n && memcmp(t->blob.data + t->off[id], s, n) == 0) return id;
  return -1;
}

int32_t kg_tok_find_any(const kg_tokenizer *t, const char *s, size_t n) {
  int32_t id = kg_tok_lookup(t, s, n);
  if (id >= 0) return id;
  for (int32_t i = 0; i < t->n_vocab; i++)
    if (t->type[i] != KG_PIECE_NONE && t->len[i] == n && memcmp(t->blob.data + t->off[i], s, n) == 0) return i;
  return -1;
}

static int build_map(kg_tokenizer *t) {
  size_t count = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) count += t->in_map[i];
  uint32_t cap = 16;
  while (cap < 2 * count) cap *= 2;
  free(t->map);
  if (!(t->map = malloc((size_t)cap * sizeof *t->map))) return kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
  memset(t->map, 0xFF, (size_t)cap * sizeof *t->map);
  t->map_mask = cap - 1;
  for (int32_t i = 0; i < t->n_vocab; i++) {
    if (!t->in_map[i]) continue;
    const char *s = t->blob.data + t->off[i];
    uint32_t j = (uint32_t)kg_tok_hash(s, t->len[i]) & t->map_mask;
    for (;; j = (j + 1) & t->map_mask) {
      int32_t id = t->map[j];
      if (id < 0) break;
      if (t->len[id] == t->len[i] && memcmp(t->blob.data + t->off[id], s, t->len[i]) == 0) break;
    }
    if (t->map[j] >= 0) {
      /* SentencePiece refuses a piece defined twice; JSON vocabularies and
       * llama.cpp's GGUF reader keep the last. */
      if (t->strict_duplicates)
        return kg_error(KG_ERR_FORMAT, "%s: piece '%.*s' is defined twice (ids %d and %d)", t->name,
                        (int)t->len[i], s, t->map[j], i);
      t->in_map[t->map[j]] = 0;
    }
    t->map[j] = i;
  }
  return KG_OK;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* "<0xAB>" -> 0xAB, else -1. */
static int byte_piece_value(const char *s, size_t n) {
  if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  int hi = hexval(s[3]), lo = hexval(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* HF's ByteLevel decoder: map every character back to its byte; a token with
 * any character outside the 256 (an added token) is kept as its UTF-8. */
static int decode_bytelevel(kg_buf *dec, const unsigned char *s, size_t n) {
  unsigned char tmp[256];
  size_t m = 0;
  int ok = n <= sizeof tmp;
  for (size_t i = 0; ok && i < n;) {
    uint32_t cp;
    size_t k = kg_utf8_decode(s + i, n - i, &cp);
    int b = k ? kg_bytelevel_byte(cp) : -1;
    if (b < 0) ok = 0;
    else tmp[m++] = (unsigned char)b;
    i += k ? k : 1;
  }
  return ok ? kg_buf_append(dec, tmp, m) : kg_buf_append(dec, s, n);
}

static int decode_spm(const kg_tokenizer *t, kg_buf *dec, const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; t->escape_ws && i + 3 <= n; i++) {
    if (memcmp(s + i, "\xE2\x96\x81", 3) != 0) continue;
    KG_TRY(kg_buf_append(dec, s + start, i - start));
    KG_TRY(kg_buf_append(dec, " ", 1));
    start = i + 3;
    i += 2;
  }
  return kg_buf_append(dec, s + start, n - start);
}

static int build_decode(kg_tokenizer *t) {
  size_t n = (size_t)t->n_vocab;
  if (!(t->dec_off = malloc(n * sizeof *t->dec_off)) || !(t->dec_len = malloc(n * sizeof *t->dec_len)))
    return kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
  for (size_t i = 0; i < n; i++) {
    size_t before = t->dec.len;
    const char *s = t->blob.data + t->off[i];
    int type = t->type[i];
    if (type == KG_PIECE_CONTROL || type == KG_PIECE_NONE) {
      /* no surface */
    } else if (t->kind == KG_TOK_SPM) {
      int b = byte_piece_value(s, t->len[i]);
      if (type == KG_PIECE_BYTE && b >= 0) {
        unsigned char c = (unsigned char)b;
        KG_TRY(kg_buf_append(&t->dec, &c, 1));
      } else if (type == KG_PIECE_UNKNOWN) {
        const char *u = t->unk_surface ? t->unk_surface : " \xE2\x81\x87 ";
        KG_TRY(kg_buf_append(&t->dec, u, strlen(u)));
      } else {
        KG_TRY(decode_spm(t, &t->dec, s, t->len[i]));
      }
    } else {
      KG_TRY(decode_bytelevel(&t->dec, (const unsigned char *)s, t->len[i]));
    }
    if (t->dec.len > UINT32_MAX / 2) return kg_error(KG_ERR_FORMAT, "%s: vocabulary too large", t->name);
    t->dec_off[i] = (uint32_t)before;
    t->dec_len[i] = (uint32_t)(t->dec.len - before);
  }
  return KG_OK;
}

static int literal_cmp(const void *a, const void *b, void *ctx) {
  const kg_tokenizer *sort_tok = ctx;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  unsigned char fx = (unsigned char)sort_tok->blob.data[sort_tok->off[x]];
  unsigned char fy = (unsigned char)sort_tok->blob.data[sort_tok->off[y]];
  if (fx != fy) return fx < fy ? -1 : 1;
  if (sort_tok->len[x] != sort_tok->len[y]) return sort_tok->len[x] > sort_tok->len[y] ? -1 : 1;
  return x < y ? -1 : x > y;
}

static int build_literals(kg_tokenizer *t) {
  size_t n = 0;
  for (int32_t i = 0; i < t->n_vocab; i++) n += t->type[i] == KG_PIECE_USER && t->len[i] > 0;
  memset(&t->literal.first, 0, sizeof t->literal.first);
  if (!n) return KG_OK;
  if (!(t->literal.ids = malloc(n * sizeof *t->literal.ids))) return kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
  t->literal.n = 0;
  for (int32_t i = 0; i < t->n_vocab; i++)
    if (t->type[i] == KG_PIECE_USER && t->len[i] > 0) t->literal.ids[t->literal.n++] = i;
  qsort_r(t->literal.ids, n, sizeof *t->literal.ids, literal_cmp, t);
  size_t k = 0;
  for (int b = 0; b < 256; b++) {
    t->literal.first[b] = (uint32_t)k;
    while (k < n && (unsigned char)t->blob.data[t->off[t->literal.ids[k]]] == b) k++;
  }
  t->literal.first[256] = (uint32_t)n;
  return KG_OK;
}

/* Per-word SentencePiece BPE is exact when no pair merge can join a
 * character with a following ▁ (the place words are cut): then no pair
 * across a cut is ever in the vocabulary and the words merge independently. */
static int spm_word_cut_safe(const kg_tokenizer *t) {
  const char *ws = t->escape_ws ? "\xE2\x96\x81" : " ";
  size_t w = strlen(ws);
  for (int32_t i = 0; i < t->n_vocab; i++) {
    int type = t->type[i];
    if (type != KG_PIECE_NORMAL && type != KG_PIECE_USER && type != KG_PIECE_UNUSED) continue;
    const char *s = t->blob.data + t->off[i];
    size_t n = t->len[i];
    for (size_t k = 1; k + w <= n; k++)
      if (memcmp(s + k, ws, w) == 0 && !(k >= w && memcmp(s + k - w, ws, w) == 0)) return 0;
  }
  return 1;
}

int kg_tok_finish(kg_tokenizer *t) {
  if (t->n_vocab <= 0) return kg_error(KG_ERR_FORMAT, "%s: empty vocabulary", t->name);
  KG_TRY(build_map(t));
  KG_TRY(build_decode(t));
  KG_TRY(build_literals(t));
  int32_t *specials[] = {&t->bos_id, &t->eos_id, &t->unk_id};
  for (int k = 0; k < 3; k++)
    if (*specials[k] >= t->n_vocab || (*specials[k] >= 0 && t->type[*specials[k]] == KG_PIECE_NONE))
      return kg_error(KG_ERR_FORMAT, "%s: special token id %d is not in the vocabulary", t->name, *specials[k]);
  if (t->kind == KG_TOK_SPM) {
    for (int32_t i = 0; i < t->n_vocab; i++) {
      if (t->type[i] == KG_PIECE_UNUSED) t->has_unused = 1;
      if (t->type[i] != KG_PIECE_BYTE) continue;
      int b = byte_piece_value(t->blob.data + t->off[i], t->len[i]);
      if (b < 0)
        return kg_error(KG_ERR_FORMAT, "%s: byte piece %d is not of the form <0xXX>", t->name, i);
      t->byte_id[b] = i;
    }
    for (int b = 0; t->byte_fallback && b < 256; b++)
      if (t->byte_id[b] < 0) return kg_error(KG_ERR_FORMAT, "%s: byte fallback without piece <0x%02X>", t->name, b);
    t->per_word = !t->ws_as_suffix && !t->has_unused && spm_word_cut_safe(t);
  } else {
    for (int b = 0; b < 256; b++) {
      unsigned char u[4];
      size_t k = kg_utf8_encode(kg_bytelevel_char((unsigned char)b), u);
      memcpy(t->bl_utf8[b], u, 2);
      t->bl_len[b] = (uint8_t)k;
      t->char_id[b] = kg_tok_lookup(t, (const char *)u, k);
      char name[8];
      snprintf(name, sizeof name, "<0x%02X>", b);
      t->byte_id[b] = kg_tok_lookup(t, name, 6);
    }
  }
  return KG_OK;
}

/* ---- literal tokens ---- */
int kg_tok_split_literals(const kg_tokenizer *t, const unsigned char *s, size_t n, kg_ids *out, kg_tok_stretch_fn fn,
                          void *ctx) {
  const kg_matcher *m = &t->literal;
  size_t start = 0;
  for (size_t i = 0; m->n && i < n; i++) {
    uint32_t a = m->first[s[i]], b = m->first[s[i] + 1];
    for (uint32_t k = a; k < b; k++) {
      int32_t id = m->ids[k];
      size_t len = t->len[id];
      if (len > n - i || memcmp(s + i, t->blob.data + t->off[id], len) != 0) continue;
      if (i > start) KG_TRY(fn(t, s + start, i - start, out, ctx));
      KG_TRY(kg_ids_push(out, id));
      start = i + len;
      i = start - 1;
      break;
    }
  }
  if (n > start) KG_TRY(fn(t, s + start, n - start, out, ctx));
  return KG_OK;
}

/* ---- word cache ---- */
struct kg_wcache_entry {
  uint64_t h;
  uint32_t koff, klen, ioff, ilen;
};

#define WCACHE_MAX_ENTRIES (1u << 20)
#define WCACHE_MAX_KEY 256

int kg_wcache_get(const kg_wcache *c, const unsigned char *w, size_t n, uint64_t h, kg_ids *out) {
  if (!c->e || n > WCACHE_MAX_KEY) return 0;
  for (uint32_t j = (uint32_t)h & c->mask; c->e[j].klen; j = (j + 1) & c->mask) {
    const struct kg_wcache_entry *e = &c->e[j];
    if (e->h == h && e->klen == n + 1 && memcmp(c->keys.data + e->koff, w, n) == 0) {
      int rc = kg_ids_append(out, c->ids.v + e->ioff, e->ilen);
      return rc < 0 ? rc : 1;
    }
  }
  return 0;
}

static int wcache_grow(kg_wcache *c) {
  uint32_t cap = c->e ? (c->mask + 1) * 2 : 4096;
  struct kg_wcache_entry *e = calloc(cap, sizeof *e);
  if (!e) return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory for the word cache");
  for (uint32_t i = 0; c->e && i <= c->mask; i++) {
    if (!c->e[i].klen) continue;
    uint32_t j = (uint32_t)c->e[i].h & (cap - 1);
    while (e[j].klen) j = (j + 1) & (cap - 1);
    e[j] = c->e[i];
  }
  free(c->e);
  c->e = e;
  c->mask = cap - 1;
  return KG_OK;
}

int kg_wcache_put(kg_wcache *c, const unsigned char *w, size_t n, uint64_t h, const kg_ids *out, size_t from) {
  if (n > WCACHE_MAX_KEY || c->count >= WCACHE_MAX_ENTRIES) return KG_OK;
  if (!c->e || (c->count + 1) * 2 > c->mask + 1) KG_TRY(wcache_grow(c));
  uint32_t j = (uint32_t)h & c->mask;
  while (c->e[j].klen) j = (j + 1) & c->mask;
  struct kg_wcache_entry e = {h, (uint32_t)c->keys.len, (uint32_t)(n + 1), (uint32_t)c->ids.n,
                              (uint32_t)(out->n - from)};
  /* An empty word (or one that encoded to no ids) may come with a NULL
   * pointer, and NULL + 0 is undefined: append only what exists. */
  if (n) KG_TRY(kg_buf_append(&c->keys, w, n));
  if (out->n > from) KG_TRY(kg_ids_append(&c->ids, out->v + from, out->n - from));
  c->e[j] = e; /* klen stores n + 1 so that the empty word is a valid key */
  c->count++;
  return KG_OK;
}

void kg_wcache_free(kg_wcache *c) {
  free(c->e);
  kg_buf_free(&c->keys);
  kg_ids_free(&c->ids);
  memset(c, 0, sizeof *c);
}
