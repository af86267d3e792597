/* SentencePiece ModelProto (tokenizer.model) reader: a small protobuf wire
 * decoder for the fields the BPE encoder needs. Everything is bounds-checked
 * against the buffer; unknown fields are skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer_internal.h"

typedef struct pb {
  const unsigned char *p, *end;
  const char *name;
} pb;

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

static int pb_varint(pb *r, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return kg_error(KG_ERR_FORMAT, "%s: truncated protobuf varint", r->name);
    unsigned char b = *r->p++;
    v |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return KG_OK;
    }
  }
  return kg_error(KG_ERR_FORMAT, "%s: protobuf varint longer than 10 bytes", r->name);
}

/* Reads a field key; returns 1 with field/wire type, 0 at the end. */
static int pb_key(pb *r, uint32_t *field, int *wt) {
  if (r->p >= r->end) return 0;
  uint64_t k;
  KG_TRY(pb_varint(r, &k));
  *field = (uint32_t)(k >> 3);
  *wt = (int)(k & 7);
  if (*field == 0 || k >> 32) return kg_error(KG_ERR_FORMAT, "%s: bad protobuf field key", r->name);
  return 1;
}

static int pb_bytes(pb *r, pb *sub) {
  uint64_t n;
  KG_TRY(pb_varint(r, &n));
  if (n > (uint64_t)(r->end - r->p)) return kg_error(KG_ERR_FORMAT, "%s: protobuf field runs past the end", r->name);
  sub->p = r->p;
  sub->end = r->p + n;
  sub->name = r->name;
  r->p += n;
  return KG_OK;
}

static int pb_skip(pb *r, int wt) {
  uint64_t v;
  pb sub;
  switch (wt) {
  case WT_VARINT: return pb_varint(r, &v);
  case WT_LEN: return pb_bytes(r, &sub);
  case WT_FIXED64:
  case WT_FIXED32: {
    size_t n = wt == WT_FIXED64 ? 8 : 4;
    if ((size_t)(r->end - r->p) < n) return kg_error(KG_ERR_FORMAT, "%s: truncated protobuf field", r->name);
    r->p += n;
    return KG_OK;
  }
  }
  return kg_error(KG_ERR_FORMAT, "%s: unsupported protobuf wire type %d", r->name, wt);
}

static int pb_int(pb *r, int wt, int64_t *out) {
  if (wt != WT_VARINT) return kg_error(KG_ERR_FORMAT, "%s: expected an integer protobuf field", r->name);
  uint64_t v;
  KG_TRY(pb_varint(r, &v));
  *out = (int64_t)v;
  return KG_OK;
}

static int pb_float(pb *r, int wt, float *out) {
  if (wt != WT_FIXED32 || r->end - r->p < 4) return kg_error(KG_ERR_FORMAT, "%s: bad protobuf float field", r->name);
  uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
  memcpy(out, &u, 4);
  r->p += 4;
  return KG_OK;
}

typedef struct spm_spec {
  int64_t model_type, byte_fallback, unk_id, bos_id, eos_id, ws_suffix;
  int64_t add_dummy_prefix, remove_extra_ws, escape_ws;
  pb unk_surface, norm_name, charsmap;
} spm_spec;

static int parse_trainer(pb r, spm_spec *sp) {
  uint32_t f;
  int wt, more;
  while ((more = pb_key(&r, &f, &wt)) > 0) {
    if (f == 3) KG_TRY(pb_int(&r, wt, &sp->model_type));
    else if (f == 35) KG_TRY(pb_int(&r, wt, &sp->byte_fallback));
    else if (f == 24) KG_TRY(pb_int(&r, wt, &sp->ws_suffix));
    else if (f == 40) KG_TRY(pb_int(&r, wt, &sp->unk_id));
    else if (f == 41) KG_TRY(pb_int(&r, wt, &sp->bos_id));
    else if (f == 42) KG_TRY(pb_int(&r, wt, &sp->eos_id));
    else if (f == 44 && wt == WT_LEN) KG_TRY(pb_bytes(&r, &sp->unk_surface));
    else KG_TRY(pb_skip(&r, wt));
  }
  return more;
}

static int parse_normalizer(pb r, spm_spec *sp) {
  uint32_t f;
  int wt, more;
  while ((more = pb_key(&r, &f, &wt)) > 0) {
    if (f == 1 && wt == WT_LEN) KG_TRY(pb_bytes(&r, &sp->norm_name));
    else if (f == 2 && wt == WT_LEN) KG_TRY(pb_bytes(&r, &sp->charsmap));
    else if (f == 3) KG_TRY(pb_int(&r, wt, &sp->add_dummy_prefix));
    else if (f == 4) KG_TRY(pb_int(&r, wt, &sp->remove_extra_ws));
    else if (f == 5) KG_TRY(pb_int(&r, wt, &sp->escape_ws));
    else KG_TRY(pb_skip(&r, wt));
  }
  return more;
}

static int parse_piece(pb r, pb *text, float *score, int64_t *type) {
  uint32_t f;
  int wt, more;
  text->p = text->end = NULL;
  *score = 0.0f;
  *type = KG_PIECE_NORMAL;
  while ((more = pb_key(&r, &f, &wt)) > 0) {
    if (f == 1 && wt == WT_LEN) KG_TRY(pb_bytes(&r, text));
    else if (f == 2) KG_TRY(pb_float(&r, wt, score));
    else if (f == 3) KG_TRY(pb_int(&r, wt, type));
    else KG_TRY(pb_skip(&r, wt));
  }
  return more;
}

static int special_id(const kg_tokenizer *t, int64_t id) {
  return id >= 0 && id < t->n_vocab && t->type[id] == KG_PIECE_CONTROL ? (int)id : -1;
}

int kg_tok_load_spm_model(const unsigned char *data, size_t size, const char *name, kg_tokenizer **out) {
  int rc = KG_OK;
  kg_tokenizer *t = NULL;
  spm_spec sp = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                 .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
  pb top = {data, data + size, name};
  uint32_t f;
  int wt, more;
  int64_t n_pieces = 0;
  *out = NULL;
  /* Pass 1: count pieces and read the specs. */
  while ((more = pb_key(&top, &f, &wt)) > 0) {
    pb sub;
    if (wt != WT_LEN) {
      if ((rc = pb_skip(&top, wt)) < 0) goto done;
      continue;
    }
    if ((rc = pb_bytes(&top, &sub)) < 0) goto done;
    if (f == 1) n_pieces++;
    else if (f == 2 && (rc = parse_trainer(sub, &sp)) < 0) goto done;
    else if (f == 3 && (rc = parse_normalizer(sub, &sp)) < 0) goto done;
  }
  if ((rc = more) < 0) goto done;
  if (n_pieces == 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a SentencePiece model (no pieces)", name);
    goto done;
  }
  if (sp.model_type != 2) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: SentencePiece model type %lld is not BPE (only BPE is supported)", name,
                  (long long)sp.model_type);
    goto done;
  }
  if (sp.charsmap.end > sp.charsmap.p) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: normalizer '%.*s' with a precompiled character map is not supported", name,
                  (int)(sp.norm_name.end - sp.norm_name.p), sp.norm_name.p ? (const char *)sp.norm_name.p : "");
    goto done;
  }
  if ((rc = kg_tok_alloc(KG_TOK_SPM, name, (int32_t)(n_pieces > KG_TOK_MAX_VOCAB ? -1 : n_pieces), &t)) < 0) goto done;
  t->strict_duplicates = 1;
  /* Pass 2: the pieces. */
  top.p = data;
  int32_t id = 0;
  while ((more = pb_key(&top, &f, &wt)) > 0) {
    pb sub, text;
    float score;
    int64_t type;
    if (wt != WT_LEN) {
      if ((rc = pb_skip(&top, wt)) < 0) goto done;
      continue;
    }
    if ((rc = pb_bytes(&top, &sub)) < 0) goto done;
    if (f != 1) continue;
    if ((rc = parse_piece(sub, &text, &score, &type)) < 0) goto done;
    if (!text.p || text.end == text.p) {
      rc = kg_error(KG_ERR_FORMAT, "%s: piece %d is empty", name, id);
      goto done;
    }
    if (type < KG_PIECE_NORMAL || type > KG_PIECE_BYTE) {
      rc = kg_error(KG_ERR_FORMAT, "%s: piece %d has unknown type %lld", name, id, (long long)type);
      goto done;
    }
    if (type == KG_PIECE_UNKNOWN && t->unk_id < 0) t->unk_id = id;
    rc = kg_tok_set_piece(t, id, (const char *)text.p, (size_t)(text.end - text.p), score, (int)type, 1);
    if (rc < 0) goto done;
    id++;
  }
  if ((rc = more) < 0) goto done;
  if (t->unk_id < 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: no <unk> piece (type UNKNOWN)", name);
    goto done;
  }
  t->bos_id = special_id(t, sp.bos_id);
  t->eos_id = special_id(t, sp.eos_id);
  t->adds_bos = t->bos_id >= 0;
  t->add_dummy_prefix = sp.add_dummy_prefix != 0;
  t->remove_extra_ws = sp.remove_extra_ws != 0;
  t->escape_ws = sp.escape_ws != 0;
  t->ws_as_suffix = sp.ws_suffix != 0;
  t->byte_fallback = sp.byte_fallback != 0;
  t->replace_invalid_utf8 = 1;
  if (sp.unk_surface.p) {
    size_t n = (size_t)(sp.unk_surface.end - sp.unk_surface.p);
    if (!(t->unk_surface = malloc(n + 1))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
      goto done;
    }
    memcpy(t->unk_surface, sp.unk_surface.p, n);
    t->unk_surface[n] = '\0';
  }
  if ((rc = kg_tok_finish(t)) < 0) goto done;
  snprintf(t->desc, sizeof t->desc, "sentencepiece-bpe%s%s%s", t->byte_fallback ? " byte_fallback" : "",
           t->add_dummy_prefix ? " dummy_prefix" : "", t->remove_extra_ws ? " squeeze_spaces" : "");
  *out = t;
  t = NULL;
done:
  kg_tokenizer_free(t);
  return rc;
}
