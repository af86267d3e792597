/* Hugging Face byte-level BPE vocabularies: tokenizer.json (model BPE with a
 * ByteLevel pre-tokenizer: GPT-2, GPT-NeoX, LLaMA-3, SmolLM2, ...) and
 * GPT-2's vocab.json + merges.txt. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"

static int parse_json(const char *text, size_t size, const char *name, cJSON **out) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(text, size, &end, 0);
  if (!*out) {
    size_t at = end && end >= text && end <= text + size ? (size_t)(end - text) : 0;
    return kg_error(KG_ERR_FORMAT, "%s: malformed JSON near byte %zu", name, at);
  }
  return KG_OK;
}

static int json_id(const cJSON *v, int32_t *id) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d < KG_TOK_MAX_VOCAB) || d != (double)(int32_t)d) return 0;
  *id = (int32_t)d;
  return 1;
}

static int json_flag(const cJSON *obj, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Entries of a {"piece": id} object: the largest id (for sizing), then the
 * pieces themselves. */
static int vocab_max_id(const cJSON *vocab, const char *name, int32_t *max_id) {
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    int32_t id;
    if (!e->string || !json_id(e, &id))
      return kg_error(KG_ERR_FORMAT, "%s: vocabulary entry '%.40s' has no valid id", name, e->string ? e->string : "");
    if (id > *max_id) *max_id = id;
  }
  return KG_OK;
}

static int vocab_set(kg_tokenizer *t, const cJSON *vocab) {
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    int32_t id = 0;
    json_id(e, &id);
    KG_TRY(kg_tok_set_piece(t, id, e->string, strlen(e->string), 0.0f, KG_PIECE_NORMAL, 1));
  }
  return KG_OK;
}

static int add_merge(kg_tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int32_t rank, kg_buf *tmp) {
  int32_t ia = kg_tok_lookup(t, a, na), ib = kg_tok_lookup(t, b, nb);
  tmp->len = 0;
  KG_TRY(kg_buf_append(tmp, a, na));
  KG_TRY(kg_buf_append(tmp, b, nb));
  int32_t im = kg_tok_lookup(t, tmp->data, tmp->len);
  if (ia < 0 || ib < 0 || im < 0)
    return kg_error(KG_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') uses a token that is not in the vocabulary", t->name,
                    rank, (int)(na > 40 ? 40 : na), a, (int)(nb > 40 ? 40 : nb), b);
  return kg_pairmap_put(&t->merges, ia, ib, rank, im);
}

static int json_merges(kg_tokenizer *t, const cJSON *merges) {
  int rc = KG_OK;
  kg_buf tmp = {0};
  int32_t rank = 0;
  const cJSON *m;
  if (!cJSON_IsArray(merges)) return kg_error(KG_ERR_FORMAT, "%s: model.merges is not an array", t->name);
  cJSON_ArrayForEach(m, merges) {
    if (cJSON_IsString(m)) {
      const char *s = m->valuestring, *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        rc = kg_error(KG_ERR_FORMAT, "%s: merge %d ('%.40s') is not two tokens separated by a space", t->name, rank, s);
        goto done;
      }
      rc = add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank, &tmp);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) {
      const char *a = m->child->valuestring, *b = m->child->next->valuestring;
      rc = add_merge(t, a, strlen(a), b, strlen(b), rank, &tmp);
    } else {
      rc = kg_error(KG_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [a, b]", t->name, rank);
    }
    if (rc < 0) goto done;
    rank++;
  }
done:
  kg_buf_free(&tmp);
  return rc;
}

static int pretok_from_json(kg_tokenizer *t, const cJSON *pt, int depth) {
  const char *name = t->name;
  if (depth > 8) return kg_error(KG_ERR_FORMAT, "%s: pre_tokenizer nested too deeply", name);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
  if (!cJSON_IsString(type)) return kg_error(KG_ERR_FORMAT, "%s: pre_tokenizer without a type", name);
  const char *ty = type->valuestring;
  if (!strcmp(ty, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers"), *e;
    if (!cJSON_IsArray(list)) return kg_error(KG_ERR_FORMAT, "%s: Sequence pre_tokenizer without a list", name);
    cJSON_ArrayForEach(e, list) KG_TRY(pretok_from_json(t, e, depth + 1));
    return KG_OK;
  }
  if (!strcmp(ty, "ByteLevel"))
    return kg_pretok_add_bytelevel(t->pretok, json_flag(pt, "add_prefix_space", 1), json_flag(pt, "use_regex", 1), name);
  if (!strcmp(ty, "Digits")) return kg_pretok_add_digits(t->pretok, json_flag(pt, "individual_digits", 0), name);
  if (!strcmp(ty, "Split")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pt, "behavior");
    const char *b = cJSON_IsString(beh) ? beh->valuestring : "";
    if (json_flag(pt, "invert", 0)) return kg_error(KG_ERR_UNSUPPORTED, "%s: Split with invert=true is not supported", name);
    if (strcmp(b, "Isolated") && strcmp(b, "Removed"))
      return kg_error(KG_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported (Isolated, Removed)", name, b);
    const cJSON *p = cJSON_IsString(re) ? re : lit;
    if (!cJSON_IsString(p)) return kg_error(KG_ERR_FORMAT, "%s: Split pre_tokenizer without a pattern", name);
    return kg_pretok_add_split(t->pretok, p->valuestring, strlen(p->valuestring), p == lit, !strcmp(b, "Removed"), name);
  }
  return kg_error(KG_ERR_UNSUPPORTED, "%s: pre_tokenizer type '%s' is not supported", name, ty);
}

static int normalizer_from_json(kg_tokenizer *t, const cJSON *n) {
  if (!n || cJSON_IsNull(n)) return KG_OK;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
  const char *ty = cJSON_IsString(type) ? type->valuestring : "";
  if (!strcmp(ty, "NFC")) {
    t->nfc = 1;
    return KG_OK;
  }
  if (!strcmp(ty, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
    cJSON_ArrayForEach(e, list) KG_TRY(normalizer_from_json(t, e));
    return KG_OK;
  }
  return kg_error(KG_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported", t->name, ty);
}

static int32_t named_token(const kg_tokenizer *t, const cJSON *v) {
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  if (!cJSON_IsString(v)) return -1;
  return kg_tok_find_any(t, v->valuestring, strlen(v->valuestring));
}

static int32_t first_named(const kg_tokenizer *t, const char *const *names) {
  for (; *names; names++) {
    int32_t id = kg_tok_find_any(t, *names, strlen(*names));
    if (id >= 0) return id;
  }
  return -1;
}

/* BOS added by a TemplateProcessing post-processor ("single": [SpecialToken, A]). */
static int32_t template_bos(const kg_tokenizer *t, const cJSON *pp, int depth) {
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(pp, "type");
  if (!cJSON_IsString(type) || depth > 8) return -1;
  if (!strcmp(type->valuestring, "Sequence")) {
    const cJSON *e, *list = cJSON_GetObjectItemCaseSensitive(pp, "processors");
    cJSON_ArrayForEach(e, list) {
      int32_t id = template_bos(t, e, depth + 1);
      if (id >= 0) return id;
    }
    return -1;
  }
  if (strcmp(type->valuestring, "TemplateProcessing")) return -1;
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
  const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
  const cJSON *sid = cJSON_GetObjectItemCaseSensitive(st, "id");
  if (!cJSON_IsString(sid)) return -1;
  return kg_tok_find_any(t, sid->valuestring, strlen(sid->valuestring));
}

static int model_options(kg_tokenizer *t, const cJSON *model) {
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: BPE dropout is not supported", t->name);
  const char *fixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, fixes[i]);
    if (cJSON_IsString(v) && v->valuestring[0])
      return kg_error(KG_ERR_UNSUPPORTED, "%s: BPE %s is not supported", t->name, fixes[i]);
  }
  t->ignore_merges = json_flag(model, "ignore_merges", 0);
  t->fuse_unk = json_flag(model, "fuse_unk", 0);
  t->byte_fallback = json_flag(model, "byte_fallback", 0);
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (cJSON_IsString(unk)) {
    t->unk_id = kg_tok_lookup(t, unk->valuestring, strlen(unk->valuestring));
    if (t->unk_id < 0) return kg_error(KG_ERR_FORMAT, "%s: unk_token '%.40s' is not in the vocabulary", t->name, unk->valuestring);
    t->bpe_unk_id = t->unk_id;
  }
  return KG_OK;
}

/* pass 0 only finds the largest id (t may be NULL); pass 1 sets the tokens. */
static int added_tokens(kg_tokenizer *t, const char *name, const cJSON *added, int pass, int32_t *max_id) {
  const cJSON *a;
  cJSON_ArrayForEach(a, added) {
    int32_t id;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id) || !cJSON_IsString(content) || !content->valuestring[0])
      return kg_error(KG_ERR_FORMAT, "%s: added token without a valid id and content", name);
    if (pass == 0) {
      if (id > *max_id) *max_id = id;
      continue;
    }
    int type = json_flag(a, "special", 0) ? KG_PIECE_CONTROL : KG_PIECE_USER;
    const char *s = content->valuestring;
    size_t n = strlen(s);
    if (t->type[id] != KG_PIECE_NONE && t->len[id] == n && memcmp(t->blob.data + t->off[id], s, n) == 0) t->type[id] = (uint8_t)type;
    else KG_TRY(kg_tok_set_piece(t, id, s, n, 0.0f, type, 0));
  }
  return KG_OK;
}

static int read_config(kg_tokenizer *t, const char *config, size_t size) {
  cJSON *c = NULL;
  char name[512];
  snprintf(name, sizeof name, "%s (tokenizer_config.json)", t->name);
  KG_TRY(parse_json(config, size, name, &c));
  int32_t id;
  if ((id = named_token(t, cJSON_GetObjectItemCaseSensitive(c, "bos_token"))) >= 0) t->bos_id = id;
  if ((id = named_token(t, cJSON_GetObjectItemCaseSensitive(c, "eos_token"))) >= 0) t->eos_id = id;
  const cJSON *add = cJSON_GetObjectItemCaseSensitive(c, "add_bos_token");
  if (cJSON_IsBool(add)) t->adds_bos = cJSON_IsTrue(add);
  cJSON_Delete(c);
  return KG_OK;
}

static const char *const BOS_NAMES[] = {"<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>", NULL};
static const char *const EOS_NAMES[] = {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", NULL};

int kg_tok_load_hf_json(const char *json, size_t size, const char *config, size_t config_size, const char *name,
                        kg_tokenizer **out) {
  int rc = KG_OK;
  cJSON *root = NULL;
  kg_tokenizer *t = NULL;
  *out = NULL;
  if ((rc = parse_json(json, size, name, &root)) < 0) goto done;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a tokenizer.json (no model.vocab object)", name);
    goto done;
  }
  if (cJSON_IsString(mtype) && strcmp(mtype->valuestring, "BPE")) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (BPE only)", name, mtype->valuestring);
    goto done;
  }
  int32_t max_id = -1;
  if ((rc = vocab_max_id(vocab, name, &max_id)) < 0) goto done;
  if ((rc = added_tokens(NULL, name, added, 0, &max_id)) < 0) goto done;
  if ((rc = kg_tok_alloc(KG_TOK_BPE, name, max_id + 1, &t)) < 0) goto done;
  if ((rc = vocab_set(t, vocab)) < 0) goto done;
  if ((rc = added_tokens(t, name, added, 1, NULL)) < 0) goto done;
  if ((rc = kg_tok_finish(t)) < 0) goto done; /* indexes the vocabulary for the merges */
  if ((rc = model_options(t, model)) < 0) goto done;
  if ((rc = json_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"))) < 0) goto done;
  if ((rc = normalizer_from_json(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) < 0) goto done;
  if (!(t->pretok = kg_pretok_new())) {
    rc = KG_ERR_NOMEM;
    goto done;
  }
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
  if (pt && !cJSON_IsNull(pt) && (rc = pretok_from_json(t, pt, 0)) < 0) goto done;
  if (!kg_pretok_is_bytelevel(t->pretok)) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: only byte-level BPE (a ByteLevel pre_tokenizer) is supported", name);
    goto done;
  }
  int32_t tbos = template_bos(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
  t->bos_id = tbos >= 0 ? tbos : first_named(t, BOS_NAMES);
  t->eos_id = first_named(t, EOS_NAMES);
  /* Llama 3's convention (Meta's encoder always starts with
   * <|begin_of_text|>), even where a tokenizer.json copy lacks the template. */
  t->adds_bos = tbos >= 0 || (t->bos_id >= 0 && t->len[t->bos_id] == 17 &&
                              !memcmp(t->blob.data + t->off[t->bos_id], "<|begin_of_text|>", 17));
  if (config && (rc = read_config(t, config, config_size)) < 0) goto done;
  snprintf(t->desc, sizeof t->desc, "byte-level-bpe (tokenizer.json)%s%s", t->ignore_merges ? " ignore_merges" : "",
           t->nfc ? " nfc" : "");
  *out = t;
  t = NULL;
done:
  cJSON_Delete(root);
  kg_tokenizer_free(t);
  return rc;
}

int kg_tok_load_gpt2(const char *vocab_json, size_t vocab_size, const char *merges, size_t merges_size,
                     const char *name, kg_tokenizer **out) {
  int rc = KG_OK;
  cJSON *root = NULL;
  kg_tokenizer *t = NULL;
  kg_buf tmp = {0};
  *out = NULL;
  if ((rc = parse_json(vocab_json, vocab_size, name, &root)) < 0) goto done;
  if (!cJSON_IsObject(root)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: vocab.json is not a JSON object", name);
    goto done;
  }
  int32_t max_id = -1;
  if ((rc = vocab_max_id(root, name, &max_id)) < 0) goto done;
  if ((rc = kg_tok_alloc(KG_TOK_BPE, name, max_id + 1, &t)) < 0) goto done;
  if ((rc = vocab_set(t, root)) < 0) goto done;
  int32_t eot = kg_tok_find_any(t, "<|endoftext|>", 13); /* before the index exists */
  if (eot >= 0) t->type[eot] = KG_PIECE_CONTROL;
  if ((rc = kg_tok_finish(t)) < 0) goto done;
  int32_t rank = 0;
  size_t line_no = 0;
  for (size_t i = 0; i < merges_size;) {
    size_t j = i;
    while (j < merges_size && merges[j] != '\n') j++;
    size_t end = j > i && merges[j - 1] == '\r' ? j - 1 : j;
    const char *line = merges + i;
    size_t n = end - i;
    line_no++;
    i = j + 1;
    if (!n || (n >= 8 && !memcmp(line, "#version", 8))) continue;
    const char *sp = memchr(line, ' ', n);
    if (!sp || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1)) || memchr(line, '\0', n)) {
      rc = kg_error(KG_ERR_FORMAT, "%s: merges.txt line %zu is not two tokens separated by a space", name, line_no);
      goto done;
    }
    if ((rc = add_merge(t, line, (size_t)(sp - line), sp + 1, (size_t)(line + n - sp - 1), rank++, &tmp)) < 0) goto done;
  }
  if (!(t->pretok = kg_pretok_new())) {
    rc = KG_ERR_NOMEM;
    goto done;
  }
  if ((rc = kg_pretok_add_bytelevel(t->pretok, 0, 1, name)) < 0) goto done;
  t->bos_id = t->eos_id = eot;
  t->adds_bos = 0;
  snprintf(t->desc, sizeof t->desc, "byte-level-bpe (gpt2 vocab.json + merges.txt)");
  *out = t;
  t = NULL;
done:
  kg_buf_free(&tmp);
  cJSON_Delete(root);
  kg_tokenizer_free(t);
  return rc;
}

int kg_tok_nfc_check(const kg_tokenizer *t, const unsigned char *s, size_t n) {
  /* Text that passes the NFC quick check is its own NFC form, so skipping
   * the normalizer is exact; full NFC composition is not implemented. */
  uint32_t cp = 0;
  size_t at = kg_utf8_nfc_quick_check(s, n, &cp);
  if (at < n)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: text is not in NFC at byte %zu (U+%04X); NFC normalization is not implemented",
                    t->name, at, cp);
  return KG_OK;
}
