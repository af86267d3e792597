/* The tokenizer embedded in GGUF metadata (tokenizer.ggml.*), read the way
 * llama.cpp's llama-vocab.cpp reads it: model "llama" is SentencePiece BPE
 * (tokens, scores, token_type), model "gpt2" is byte-level BPE (tokens,
 * merges) whose pre-tokenizer is chosen by tokenizer.ggml.pre. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/gguf.h"
#include "io/tokenizer_internal.h"

/* Pre-tokenizers by tokenizer.ggml.pre, as llama.cpp maps them, written as
 * HF pre-tokenizer steps. */
enum pre_shape { PRE_GPT2, PRE_LLAMA3, PRE_DIGITS_GPT2, PRE_LLAMACPP_DEFAULT };

static const struct {
  const char *name;
  enum pre_shape shape;
  int ignore_merges, add_bos;
} PRE_TYPES[] = {
    {"default", PRE_LLAMACPP_DEFAULT, 0, 0},
    {"gpt-2", PRE_GPT2, 0, 0},
    {"gpt2", PRE_GPT2, 0, 0},
    {"gpt-neox", PRE_GPT2, 0, 0},
    {"olmo", PRE_GPT2, 0, 0},
    {"mpt", PRE_GPT2, 0, 0},
    {"jais", PRE_GPT2, 0, 0},
    {"llama3", PRE_LLAMA3, 1, 1},
    {"llama-v3", PRE_LLAMA3, 1, 1},
    {"llama-bpe", PRE_LLAMA3, 1, 1},
    {"falcon3", PRE_LLAMA3, 1, 1},
    {"dbrx", PRE_LLAMA3, 0, 0},
    {"smaug-bpe", PRE_LLAMA3, 0, 0},
    {"smollm", PRE_DIGITS_GPT2, 0, 0},
    {"starcoder", PRE_DIGITS_GPT2, 0, 0},
    {"refact", PRE_DIGITS_GPT2, 0, 0},
    {"command-r", PRE_DIGITS_GPT2, 0, 0},
    {"codeshell", PRE_DIGITS_GPT2, 0, 0},
    {"exaone", PRE_DIGITS_GPT2, 0, 0},
};

static int build_pretok(kg_tokenizer *t, enum pre_shape shape, const char *name) {
  if (!(t->pretok = kg_pretok_new())) return KG_ERR_NOMEM;
  switch (shape) {
  case PRE_GPT2: return kg_pretok_add_bytelevel(t->pretok, 0, 1, name);
  case PRE_LLAMA3:
    KG_TRY(kg_pretok_add_split(t->pretok, kg_regex_llama3, strlen(kg_regex_llama3), 0, 0, name));
    return kg_pretok_add_bytelevel(t->pretok, 0, 0, name);
  case PRE_DIGITS_GPT2:
    KG_TRY(kg_pretok_add_digits(t->pretok, 1, name));
    return kg_pretok_add_bytelevel(t->pretok, 0, 1, name);
  case PRE_LLAMACPP_DEFAULT: {
    /* llama.cpp's fallback list for pre = "default" */
    static const char *const res[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kg_regex_gpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
    for (int i = 0; i < 4; i++) KG_TRY(kg_pretok_add_split(t->pretok, res[i], strlen(res[i]), 0, 0, name));
    return kg_pretok_add_bytelevel(t->pretok, 0, 0, name);
  }
  }
  return kg_error(KG_ERR_ARG, "%s: bad pre-tokenizer shape", name);
}

static int get_id(const kg_gguf *g, const char *key, int32_t dflt, int32_t *out) {
  int64_t v;
  int rc = kg_gguf_get_int(g, key, &v);
  if (rc == KG_ERR_NOT_FOUND) {
    kg_error_clear();
    *out = dflt;
    return KG_OK;
  }
  if (rc < 0) return rc;
  /* llama.cpp writes -1 (as uint32 0xFFFFFFFF in some files) for "none" */
  *out = v < 0 || v >= KG_TOK_MAX_VOCAB ? -1 : (int32_t)v;
  return KG_OK;
}

static int get_flag(const kg_gguf *g, const char *key, int dflt, int *out) {
  int rc = kg_gguf_get_bool(g, key, out);
  if (rc == KG_ERR_NOT_FOUND) {
    kg_error_clear();
    *out = dflt;
    return KG_OK;
  }
  return rc;
}

static const kg_gguf_kv *array_kv(const kg_gguf *g, const char *key, uint64_t n, int strings, const char *name, int *rc) {
  const kg_gguf_kv *kv = kg_gguf_find(g, key);
  *rc = KG_OK;
  if (!kv) return NULL;
  if (kv->type != KG_GGUF_ARRAY || (strings != (kv->array_type == KG_GGUF_STRING)) || (n && kv->array_len != n))
    *rc = kg_error(KG_ERR_FORMAT, "%s: %s is not an array of %llu %s", name, key, (unsigned long long)n,
                   strings ? "strings" : "numbers");
  return kv;
}

static int load_tokens(kg_tokenizer *t, const kg_gguf *g, const kg_gguf_kv *tokens, int spm) {
  int rc;
  uint64_t n = tokens->array_len;
  const kg_gguf_kv *scores = array_kv(g, "tokenizer.ggml.scores", n, 0, t->name, &rc);
  if (rc < 0) return rc;
  const kg_gguf_kv *types = array_kv(g, "tokenizer.ggml.token_type", n, 0, t->name, &rc);
  if (rc < 0) return rc;
  kg_gguf_string_iter it;
  kg_gguf_string s;
  kg_gguf_string_iter_init(&it, tokens);
  for (int32_t id = 0; kg_gguf_string_iter_next(&it, &s); id++) {
    double score = 0, type = KG_PIECE_NORMAL;
    if (scores) KG_TRY(kg_gguf_array_number(scores, (uint64_t)id, &score));
    if (types) KG_TRY(kg_gguf_array_number(types, (uint64_t)id, &type));
    if (!(type >= KG_PIECE_NORMAL && type <= KG_PIECE_BYTE))
      return kg_error(KG_ERR_FORMAT, "%s: token %d has unknown token_type %g", t->name, id, type);
    if (!s.len && spm) return kg_error(KG_ERR_FORMAT, "%s: token %d is empty", t->name, id);
    KG_TRY(kg_tok_set_piece(t, id, s.data, (size_t)s.len, (float)score, (int)type, 1));
  }
  return KG_OK;
}

static int load_merges(kg_tokenizer *t, const kg_gguf *g) {
  int rc = KG_OK;
  const kg_gguf_kv *merges = array_kv(g, "tokenizer.ggml.merges", 0, 1, t->name, &rc);
  if (rc < 0) return rc;
  if (!merges) return kg_error(KG_ERR_FORMAT, "%s: gpt2 tokenizer without tokenizer.ggml.merges", t->name);
  kg_buf tmp = {0};
  kg_gguf_string_iter it;
  kg_gguf_string s;
  kg_gguf_string_iter_init(&it, merges);
  for (int32_t rank = 0; rc >= 0 && kg_gguf_string_iter_next(&it, &s); rank++) {
    /* llama.cpp looks for the separator from the second byte on */
    const char *sp = s.len > 1 ? memchr(s.data + 1, ' ', (size_t)s.len - 1) : NULL;
    if (!sp) {
      rc = kg_error(KG_ERR_FORMAT, "%s: merge %d is not two tokens separated by a space", t->name, rank);
      break;
    }
    size_t na = (size_t)(sp - s.data), nb = (size_t)s.len - na - 1;
    int32_t a = kg_tok_lookup(t, s.data, na), b = kg_tok_lookup(t, sp + 1, nb), m = -1;
    tmp.len = 0;
    if ((rc = kg_buf_append(&tmp, s.data, na)) < 0 || (rc = kg_buf_append(&tmp, sp + 1, nb)) < 0) break;
    m = kg_tok_lookup(t, tmp.data, tmp.len);
    if (a < 0 || b < 0 || m < 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: merge %d ('%.*s') uses a token that is not in the vocabulary", t->name, rank,
                    (int)(s.len > 60 ? 60 : s.len), s.data);
      break;
    }
    rc = kg_pairmap_put(&t->merges, a, b, rank, m);
  }
  kg_buf_free(&tmp);
  return rc;
}

int kg_tokenizer_from_gguf(const kg_gguf *g, const char *path, kg_tokenizer **out) {
  int rc = KG_OK;
  char *model = NULL, *pre = NULL;
  kg_tokenizer *t = NULL;
  const char *name = path ? path : (g && g->path ? g->path : "gguf");
  *out = NULL;
  if ((rc = kg_gguf_get_string(g, "tokenizer.ggml.model", &model)) < 0) {
    rc = kg_error(rc == KG_ERR_NOT_FOUND ? KG_ERR_NOT_FOUND : KG_ERR_FORMAT, "%s: no tokenizer in the GGUF metadata (tokenizer.ggml.model)", name);
    goto done;
  }
  int spm = !strcmp(model, "llama");
  if (!spm && strcmp(model, "gpt2")) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (llama, gpt2)", name, model);
    goto done;
  }
  const kg_gguf_kv *tokens = array_kv(g, "tokenizer.ggml.tokens", 0, 1, name, &rc);
  if (rc < 0) goto done;
  if (!tokens || tokens->array_len == 0 || tokens->array_len > KG_TOK_MAX_VOCAB) {
    rc = kg_error(KG_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or of bad size", name);
    goto done;
  }
  if ((rc = kg_tok_alloc(spm ? KG_TOK_SPM : KG_TOK_BPE, name, (int32_t)tokens->array_len, &t)) < 0) goto done;
  if ((rc = load_tokens(t, g, tokens, spm)) < 0) goto done;
  int add_bos = 0;
  if (spm) {
    int space_prefix, squeeze;
    if ((rc = get_flag(g, "tokenizer.ggml.add_space_prefix", 1, &space_prefix)) < 0) goto done;
    if ((rc = get_flag(g, "tokenizer.ggml.remove_extra_whitespaces", 0, &squeeze)) < 0) goto done;
    t->add_dummy_prefix = space_prefix;
    t->remove_extra_ws = squeeze;
    t->escape_ws = 1;
    t->char_mode = KG_CHARS_LEAD_LENGTH;
    int n_bytes = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) n_bytes += t->type[i] == KG_PIECE_BYTE;
    t->byte_fallback = n_bytes >= 256;
    if ((rc = get_id(g, "tokenizer.ggml.unknown_token_id", 0, &t->unk_id)) < 0) goto done;
    if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", 1, &t->bos_id)) < 0) goto done;
    if ((rc = get_id(g, "tokenizer.ggml.eos_token_id", 2, &t->eos_id)) < 0) goto done;
    add_bos = 1;
    snprintf(t->desc, sizeof t->desc, "sentencepiece-bpe (gguf)%s%s", t->byte_fallback ? " byte_fallback" : "",
             space_prefix ? " dummy_prefix" : "");
  } else {
    rc = kg_gguf_get_string(g, "tokenizer.ggml.pre", &pre);
    if (rc == KG_ERR_NOT_FOUND) kg_error_clear();
    else if (rc < 0) goto done;
    const char *p = pre ? pre : "default";
    size_t k = 0, n_types = sizeof PRE_TYPES / sizeof PRE_TYPES[0];
    while (k < n_types && strcmp(PRE_TYPES[k].name, p)) k++;
    if (k == n_types) {
      rc = kg_error(KG_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported", name, p);
      goto done;
    }
    if ((rc = build_pretok(t, PRE_TYPES[k].shape, name)) < 0) goto done;
    t->ignore_merges = PRE_TYPES[k].ignore_merges;
    add_bos = PRE_TYPES[k].add_bos;
    if ((rc = get_id(g, "tokenizer.ggml.unknown_token_id", -1, &t->unk_id)) < 0) goto done;
    if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", -1, &t->bos_id)) < 0) goto done;
    if ((rc = get_id(g, "tokenizer.ggml.eos_token_id", -1, &t->eos_id)) < 0) goto done;
    snprintf(t->desc, sizeof t->desc, "byte-level-bpe (gguf) pre=%s%s", p, t->ignore_merges ? " ignore_merges" : "");
  }
  if ((rc = get_flag(g, "tokenizer.ggml.add_bos_token", add_bos, &t->adds_bos)) < 0) goto done;
  int32_t *ids[] = {&t->unk_id, &t->bos_id, &t->eos_id};
  for (int i = 0; i < 3; i++)
    if (*ids[i] >= t->n_vocab) *ids[i] = -1;
  if ((rc = kg_tok_finish(t)) < 0) goto done;
  if (!spm && (rc = load_merges(t, g)) < 0) goto done;
  *out = t;
  t = NULL;
done:
  if (rc < 0 && kg_error_message()[0] && !strstr(kg_error_message(), name)) rc = kg_error_context("%s: ", name);
  free(model);
  free(pre);
  kg_tokenizer_free(t);
  return rc;
}
