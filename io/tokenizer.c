/* Public tokenizer API: loading by file name and contents, encode, decode. */
#ifndef _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/gguf.h"
#include "io/mapfile.h"
#include "io/paths.h"
#include "io/tokenizer.h"
#include "io/tokenizer_internal.h"

void kg_tokenizer_free(kg_tokenizer *t) {
  if (!t) return;
  free(t->name);
  kg_buf_free(&t->blob);
  free(t->off);
  free(t->len);
  free(t->score);
  free(t->type);
  free(t->in_map);
  free(t->map);
  kg_buf_free(&t->dec);
  free(t->dec_off);
  free(t->dec_len);
  free(t->literal.ids);
  free(t->unk_surface);
  kg_pairmap_free(&t->merges);
  kg_pretok_free(t->pretok);
  free(t);
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* A sibling file of `path` (same directory). */
static int sibling(const char *path, const char *name, char *out, size_t cap) {
  const char *base = base_name(path);
  size_t dir = (size_t)(base - path);
  if (dir + strlen(name) + 1 > cap) return kg_error(KG_ERR_ARG, "%s: path too long", path);
  memcpy(out, path, dir);
  strcpy(out + dir, name);
  return KG_OK;
}

/* Whether a JSON text is GPT-2's vocab.json (a flat string -> id object)
 * rather than a tokenizer.json, which has a "model": { ... } object. */
static int json_is_flat_vocab(const unsigned char *s, size_t n) {
  static const char key[] = "\"model\"";
  const unsigned char *p = s, *end = s + n;
  while (p < end && (p = memmem(p, (size_t)(end - p), key, sizeof key - 1)) != NULL) {
    p += sizeof key - 1;
    const unsigned char *q = p;
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
    if (q == end || *q++ != ':') continue;
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
    if (q < end && *q == '{') return 0;
  }
  return 1;
}

static int load_json_file(const char *path, const kg_mapped_file *f, kg_tokenizer **out) {
  int rc = KG_OK;
  char side[4096];
  char *extra = NULL;
  size_t extra_size = 0;
  const char *text = f->data ? (const char *)f->data : "";
  if (strcmp(base_name(path), "vocab.json") == 0 || json_is_flat_vocab(f->data, f->size)) {
    if ((rc = sibling(path, "merges.txt", side, sizeof side)) < 0) goto done;
    if ((rc = kg_read_file(side, &extra, &extra_size)) < 0) {
      rc = kg_error_context("%s: GPT-2 vocabulary needs merges.txt beside it: ", path);
      goto done;
    }
    rc = kg_tok_load_gpt2(text, f->size, extra, extra_size, path, out);
    goto done;
  }
  if ((rc = sibling(path, "tokenizer_config.json", side, sizeof side)) < 0) goto done;
  if (kg_path_exists(side) && (rc = kg_read_file(side, &extra, &extra_size)) < 0) goto done;
  rc = kg_tok_load_hf_json(text, f->size, extra, extra_size, path, out);
done:
  free(extra);
  return rc;
}

static int load_gguf_file(const char *path, kg_tokenizer **out) {
  kg_gguf *g = NULL;
  int rc = kg_gguf_open(path, &g);
  if (rc >= 0) rc = kg_tokenizer_from_gguf(g, path, out);
  kg_gguf_free(g);
  return rc;
}

int kg_tokenizer_load(const char *path, kg_tokenizer **out) {
  int rc = KG_OK;
  kg_mapped_file *f = NULL;
  *out = NULL;
  if (!path || !*path) return kg_error(KG_ERR_ARG, "tokenizer: no path given");
  if (has_suffix(path, ".gguf")) return load_gguf_file(path, out);
  if ((rc = kg_mapped_file_open(path, &f)) < 0) goto done;
  const unsigned char *d = f->data;
  size_t n = f->size;
  size_t first = 0;
  while (first < n && (d[first] == ' ' || d[first] == '\n' || d[first] == '\r' || d[first] == '\t')) first++;
  if (has_suffix(path, ".json") || (first < n && d[first] == '{')) {
    rc = load_json_file(path, f, out);
  } else if (has_suffix(path, ".model")) {
    rc = kg_tok_load_spm_model(d, n, path, out);
  } else if (has_suffix(path, ".bin")) {
    rc = kg_tok_load_llama2c(d, n, path, out);
  } else if (n >= 4 && memcmp(d, "GGUF", 4) == 0) {
    kg_mapped_file_close(f);
    f = NULL;
    rc = load_gguf_file(path, out);
  } else if (n > 0 && d[0] == 0x0A) {
    /* field 1 (pieces), length-delimited: a SentencePiece ModelProto */
    rc = kg_tok_load_spm_model(d, n, path, out);
  } else {
    rc = kg_tok_load_llama2c(d, n, path, out);
  }
done:
  kg_mapped_file_close(f);
  return rc;
}

int kg_tokenizer_load_memory(kg_tokenizer_format format, const void *data, size_t size, const char *name,
                             kg_tokenizer **out) {
  *out = NULL;
  if (!name) name = "tokenizer";
  if (!data && size) return kg_error(KG_ERR_ARG, "%s: no data", name);
  static const unsigned char empty[1];
  const unsigned char *d = data ? data : empty;
  switch (format) {
  case KG_TOKFMT_LLAMA2C: return kg_tok_load_llama2c(d, size, name, out);
  case KG_TOKFMT_SPM_MODEL: return kg_tok_load_spm_model(d, size, name, out);
  case KG_TOKFMT_HF_JSON: return kg_tok_load_hf_json((const char *)d, size, NULL, 0, name, out);
  case KG_TOKFMT_GGUF: {
    kg_gguf *g = NULL;
    int rc = kg_gguf_parse(d, size, name, &g);
    if (rc >= 0) rc = kg_tokenizer_from_gguf(g, name, out);
    kg_gguf_free(g);
    return rc;
  }
  }
  return kg_error(KG_ERR_ARG, "%s: unknown tokenizer format %d", name, (int)format);
}

int kg_tokenizer_load_gpt2_memory(const void *vocab_json, size_t vocab_size, const void *merges_txt,
                                  size_t merges_size, const char *name, kg_tokenizer **out) {
  *out = NULL;
  if (!name) name = "tokenizer";
  if ((!vocab_json && vocab_size) || (!merges_txt && merges_size)) return kg_error(KG_ERR_ARG, "%s: no data", name);
  return kg_tok_load_gpt2(vocab_json ? vocab_json : "", vocab_size, merges_txt ? merges_txt : "", merges_size, name,
                          out);
}

kg_tokenizer_kind kg_tokenizer_kind_of(const kg_tokenizer *t) { return t->kind; }
int kg_tokenizer_vocab_size(const kg_tokenizer *t) { return t->n_vocab; }
int kg_tokenizer_bos_id(const kg_tokenizer *t) { return t->bos_id; }
int kg_tokenizer_eos_id(const kg_tokenizer *t) { return t->eos_id; }
int kg_tokenizer_unk_id(const kg_tokenizer *t) { return t->unk_id; }
int kg_tokenizer_adds_bos(const kg_tokenizer *t) { return t->adds_bos && t->bos_id >= 0; }
const char *kg_tokenizer_describe(const kg_tokenizer *t) { return t->desc; }

int kg_tokenizer_encode(const kg_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                        size_t *n_ids) {
  int rc = KG_OK;
  kg_ids out = {0};
  *ids = NULL;
  *n_ids = 0;
  if (!text && len) return kg_error(KG_ERR_ARG, "%s: encode of NULL text", t->name);
  if (add_bos) {
    if (t->bos_id < 0) return kg_error(KG_ERR_ARG, "%s: the vocabulary has no BOS token", t->name);
    if ((rc = kg_ids_push(&out, t->bos_id)) < 0) goto done;
  }
  if (len) {
    rc = t->kind == KG_TOK_SPM ? kg_tok_encode_spm(t, text, len, &out) : kg_tok_encode_bpe(t, text, len, &out);
    if (rc < 0) goto done;
  }
  if (!out.v && !(out.v = malloc(sizeof *out.v))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", t->name);
    goto done;
  }
  *ids = out.v;
  *n_ids = out.n;
  out.v = NULL;
done:
  kg_ids_free(&out);
  return rc;
}

static int check_id(const kg_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->type[id] == KG_PIECE_NONE)
    return kg_error(KG_ERR_ARG, "%s: token id %d is not in the vocabulary (size %d)", t->name, id, t->n_vocab);
  return KG_OK;
}

/* SentencePiece removes the dummy-prefix space from the first piece with
 * text (control pieces do not count). */
static int strips_first_space(const kg_tokenizer *t) {
  return t->kind == KG_TOK_SPM && (t->add_dummy_prefix || t->remove_extra_ws) && !t->ws_as_suffix;
}

int kg_tokenizer_decode(const kg_tokenizer *t, const int32_t *ids, size_t n, char **text) {
  int rc = KG_OK;
  kg_buf out = {0};
  int at_start = 1;
  *text = NULL;
  for (size_t i = 0; i < n; i++) {
    if ((rc = check_id(t, ids[i])) < 0) goto done;
    const char *s = t->dec.data + t->dec_off[ids[i]];
    size_t len = t->dec_len[ids[i]];
    if (!len) continue;
    int type = t->type[ids[i]];
    if (at_start && strips_first_space(t) && type != KG_PIECE_BYTE && type != KG_PIECE_UNKNOWN && s[0] == ' ') {
      s++;
      len--;
    }
    /* with whitespace squeezing, pieces that were only that space keep the start open */
    at_start = at_start && t->remove_extra_ws && len == 0;
    if ((rc = kg_buf_append(&out, s, len)) < 0) goto done;
  }
  if (!out.data && (rc = kg_buf_append(&out, "", 0)) < 0) goto done;
  *text = out.data;
  out.data = NULL;
done:
  kg_buf_free(&out);
  return rc;
}

static int copy_bytes(const kg_tokenizer *t, const char *s, size_t len, char *buf, size_t cap) {
  if (len > cap) return kg_error(KG_ERR_ARG, "%s: token of %zu bytes does not fit %zu", t->name, len, cap);
  if (len) memcpy(buf, s, len);
  return (int)len;
}

int kg_tokenizer_token_bytes(const kg_tokenizer *t, int32_t id, char *buf, size_t cap) {
  KG_TRY(check_id(t, id));
  return copy_bytes(t, t->dec.data + t->dec_off[id], t->dec_len[id], buf, cap);
}

int kg_tokenizer_stream_bytes(const kg_tokenizer *t, int32_t prev_id, int32_t id, char *buf, size_t cap) {
  KG_TRY(check_id(t, id));
  const char *s = t->dec.data + t->dec_off[id];
  size_t len = t->dec_len[id];
  if (len && s[0] == ' ' && strips_first_space(t) && t->type[id] != KG_PIECE_BYTE && t->type[id] != KG_PIECE_UNKNOWN &&
      (prev_id < 0 || prev_id == t->bos_id)) {
    s++;
    len--;
  }
  return copy_bytes(t, s, len, buf, cap);
}

size_t kg_tokenizer_max_token_bytes(const kg_tokenizer *t) {
  size_t m = 0;
  for (int32_t i = 0; i < t->n_vocab; i++)
    if (t->dec_len[i] > m) m = t->dec_len[i];
  return m;
}

const char *kg_tokenizer_piece(const kg_tokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->n_vocab || t->type[id] == KG_PIECE_NONE) return NULL;
  if (len) *len = t->len[id];
  return t->blob.data + t->off[id];
}

int32_t kg_tokenizer_find_piece(const kg_tokenizer *t, const char *piece, size_t len) {
  return kg_tok_find_any(t, piece, len);
}

int kg_tokenizer_is_control(const kg_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab && t->type[id] == KG_PIECE_CONTROL;
}
