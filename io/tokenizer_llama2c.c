/* llama2.c tokenizer.bin: int32 max_token_length, then per token float32
 * score, int32 length, bytes; ids 0/1/2 are <unk>/<s>/</s>, byte tokens are
 * spelled <0xXX>, and the export wrote SentencePiece's ▁ as a plain space
 * (kept so: the vocabulary works on text whose spaces are not escaped).
 * The vocabulary size is not stored: the file is read to its end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer_internal.h"

static int32_t rd_i32(const unsigned char *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t v;
  memcpy(&v, &u, 4);
  return v;
}

static int is_byte_piece(const unsigned char *s, int32_t n) {
  return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

int kg_tok_load_llama2c(const unsigned char *data, size_t size, const char *name, kg_tokenizer **out) {
  int rc = KG_OK;
  kg_tokenizer *t = NULL;
  *out = NULL;
  if (size < 4) return kg_error(KG_ERR_FORMAT, "%s: too short for a llama2.c tokenizer (%zu bytes)", name, size);
  int32_t max_len = rd_i32(data);
  if (max_len <= 0 || max_len > (1 << 16))
    return kg_error(KG_ERR_FORMAT, "%s: bad max_token_length %d (not a llama2.c tokenizer.bin?)", name, max_len);
  /* Pass 1: count and check the records. */
  int32_t n = 0;
  for (size_t off = 4; off < size; n++) {
    if (size - off < 8) return kg_error(KG_ERR_FORMAT, "%s: truncated record for token %d", name, n);
    int32_t len = rd_i32(data + off + 4);
    if (len < 0 || len > max_len)
      return kg_error(KG_ERR_FORMAT, "%s: token %d has length %d (max_token_length %d)", name, n, len, max_len);
    if ((size_t)len > size - off - 8) return kg_error(KG_ERR_FORMAT, "%s: token %d runs past the end", name, n);
    off += 8 + (size_t)len;
    if (n >= KG_TOK_MAX_VOCAB) return kg_error(KG_ERR_FORMAT, "%s: too many tokens", name);
  }
  if (n < 3) return kg_error(KG_ERR_FORMAT, "%s: %d tokens; a llama2.c vocabulary starts with <unk>, <s>, </s>", name, n);
  if ((rc = kg_tok_alloc(KG_TOK_SPM, name, n, &t)) < 0) goto done;
  int n_bytes = 0;
  size_t off = 4;
  for (int32_t id = 0; id < n; id++) {
    float score;
    memcpy(&score, data + off, 4);
    int32_t len = rd_i32(data + off + 4);
    const unsigned char *s = data + off + 8;
    off += 8 + (size_t)len;
    int type = KG_PIECE_NORMAL;
    if (id == 0) type = KG_PIECE_UNKNOWN;
    else if (id <= 2) type = KG_PIECE_CONTROL;
    else if (is_byte_piece(s, len)) type = KG_PIECE_BYTE, n_bytes++;
    if ((rc = kg_tok_set_piece(t, id, (const char *)s, (size_t)len, score, type, 1)) < 0) goto done;
  }
  t->unk_id = 0;
  t->bos_id = 1;
  t->eos_id = 2;
  t->adds_bos = 1;
  t->add_dummy_prefix = 1;
  /* The pieces spell ▁ as a space, so the text keeps its spaces too (a
   * literal ▁ in the text is then no piece, as in llama2.c's encode). */
  t->escape_ws = 0;
  t->char_mode = KG_CHARS_LLAMA2C;
  t->byte_fallback = n_bytes == 256;
  if ((rc = kg_tok_finish(t)) < 0) goto done;
  snprintf(t->desc, sizeof t->desc, "sentencepiece-bpe (llama2.c export)%s dummy_prefix",
           t->byte_fallback ? " byte_fallback" : "");
  *out = t;
  t = NULL;
done:
  kg_tokenizer_free(t);
  return rc;
}
