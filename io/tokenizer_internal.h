/* Shared internals of the tokenizers (io/tokenizer*.c, io/sentencepiece_model.c).
 * Not a public header: other layers use io/tokenizer.h only. */
#ifndef KG_IO_TOKENIZER_INTERNAL_H
#define KG_IO_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"

/* Piece types, numbered as in SentencePiece's ModelProto and GGUF's
 * tokenizer.ggml.token_type. KG_PIECE_NONE marks an id no file defined. */
enum {
  KG_PIECE_NONE = 0,
  KG_PIECE_NORMAL = 1,
  KG_PIECE_UNKNOWN = 2,
  KG_PIECE_CONTROL = 3,
  KG_PIECE_USER = 4,
  KG_PIECE_UNUSED = 5,
  KG_PIECE_BYTE = 6,
};

enum { KG_CHARS_STRICT = 0, KG_CHARS_LLAMA2C = 1, KG_CHARS_LEAD_LENGTH = 2 };

/* Upper bound on vocabulary ids read from files (a bad file must not make us
 * allocate gigabytes). The largest real vocabularies are ~260k. */
#define KG_TOK_MAX_VOCAB (1 << 22)

/* ---- growable buffers ---- */
typedef struct kg_buf {
  char *data;
  size_t len, cap;
} kg_buf;
int kg_buf_append(kg_buf *b, const void *p, size_t n);
void kg_buf_free(kg_buf *b);

typedef struct kg_ids {
  int32_t *v;
  size_t n, cap;
} kg_ids;
int kg_ids_push(kg_ids *a, int32_t id);
int kg_ids_append(kg_ids *a, const int32_t *ids, size_t n);
void kg_ids_free(kg_ids *a);

uint64_t kg_tok_hash(const void *s, size_t n);

/* ---- (left id, right id) -> (rank, merged id) for byte-level BPE ---- */
typedef struct kg_pairmap {
  uint64_t mask;
  uint64_t *key; /* (left << 32 | right) + 1; 0 = empty slot */
  int32_t *rank;
  int32_t *merged;
  uint64_t count;
} kg_pairmap;
/* A pair already present is overwritten, as HF tokenizers' merges map does. */
int kg_pairmap_put(kg_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
/* Returns 1 and fills rank/merged when the pair merges. */
int kg_pairmap_get(const kg_pairmap *m, int32_t left, int32_t right, int32_t *rank, int32_t *merged);
void kg_pairmap_free(kg_pairmap *m);

/* ---- literal tokens found in text before anything else (SentencePiece
 * user-defined pieces, HF non-special added tokens, GGUF user-defined
 * tokens): longest match at a position, positions scanned left to right. */
typedef struct kg_matcher {
  int32_t *ids;      /* sorted by first byte, then by length descending */
  size_t n;
  uint32_t first[257]; /* ids[first[b] .. first[b+1]) start with byte b */
} kg_matcher;

typedef struct kg_pretok kg_pretok;

struct kg_tokenizer {
  kg_tokenizer_kind kind;
  char *name; /* file name used in messages */
  int32_t n_vocab;
  kg_buf blob;    /* piece strings, as the vocabulary spells them */
  uint32_t *off;  /* piece i is blob.data[off[i] .. off[i] + len[i]) */
  uint32_t *len;
  float *score;
  uint8_t *type;
  uint8_t *in_map; /* found by looking its text up (merges, whole pieces) */
  uint32_t map_mask;
  int32_t *map; /* open addressing over ids with in_map set; -1 = empty */
  kg_buf dec;   /* decoded bytes of every id (after ▁ / byte-level mapping) */
  uint32_t *dec_off, *dec_len;
  int32_t bos_id, eos_id, unk_id;
  int adds_bos;
  int strict_duplicates; /* a piece spelled twice is an error (SentencePiece), else the last wins */
  kg_matcher literal;

  /* SentencePiece BPE */
  int add_dummy_prefix, remove_extra_ws, escape_ws, ws_as_suffix;
  int byte_fallback;
  int replace_invalid_utf8; /* SentencePiece turns each bad byte into U+FFFD */
  /* How malformed UTF-8 is cut into symbols (it then falls back to bytes):
   * KG_CHARS_STRICT one bad byte at a time; KG_CHARS_LLAMA2C a byte and the
   * continuation bytes after it (llama2.c encode); KG_CHARS_LEAD_LENGTH as
   * many bytes as the lead byte announces (llama.cpp). */
  int char_mode;
  int per_word;   /* proven at load: no mergeable piece spans a word start */
  int has_unused; /* UNUSED pieces need SentencePiece's reverse merges */
  int32_t byte_id[256];
  char *unk_surface;

  /* byte-level BPE */
  kg_pairmap merges;
  int32_t char_id[256]; /* id of each byte's byte-level character, -1 if absent */
  unsigned char bl_utf8[256][2]; /* UTF-8 of each byte's byte-level character */
  uint8_t bl_len[256];
  int ignore_merges, fuse_unk;
  /* <unk> for characters missing from a byte-level vocabulary (HF
   * model.unk_token); -1 drops them, as tokenizers and llama.cpp do */
  int32_t bpe_unk_id;
  int nfc; /* the tokenizer.json asks for NFC normalization */
  kg_pretok *pretok;
  char desc[160];
};

/* ---- building a tokenizer (loaders) ---- */
int kg_tok_alloc(kg_tokenizer_kind kind, const char *name, int32_t n_vocab, kg_tokenizer **out);
/* Grows the id space to n_vocab (new ids are KG_PIECE_NONE). */
int kg_tok_resize(kg_tokenizer *t, int32_t n_vocab);
int kg_tok_set_piece(kg_tokenizer *t, int32_t id, const char *s, size_t len, float score, int type, int in_map);
/* Builds the lookup map, the decode table, byte ids and the literal matcher;
 * checks ids. Call once after every piece is set. */
int kg_tok_finish(kg_tokenizer *t);
/* Id of the in-map piece spelled s[0..n), or -1. */
int32_t kg_tok_lookup(const kg_tokenizer *t, const char *s, size_t n);
/* Any id whose piece is spelled s[0..n), map or not (used for special
 * token names); -1 when none. Linear: only for loading. */
int32_t kg_tok_find_any(const kg_tokenizer *t, const char *s, size_t n);

/* ---- format loaders (tokenizer_*.c, sentencepiece_model.c) ---- */
int kg_tok_load_spm_model(const unsigned char *data, size_t size, const char *name, kg_tokenizer **out);
int kg_tok_load_llama2c(const unsigned char *data, size_t size, const char *name, kg_tokenizer **out);
/* `config` (tokenizer_config.json text) may be NULL. */
int kg_tok_load_hf_json(const char *json, size_t size, const char *config, size_t config_size, const char *name,
                        kg_tokenizer **out);
int kg_tok_load_gpt2(const char *vocab_json, size_t vocab_size, const char *merges, size_t merges_size,
                     const char *name, kg_tokenizer **out);

/* ---- encoders ---- */
int kg_tok_encode_spm(const kg_tokenizer *t, const char *text, size_t len, kg_ids *out);
int kg_tok_encode_bpe(const kg_tokenizer *t, const char *text, size_t len, kg_ids *out);
/* Checks that NFC normalization leaves the text unchanged (so skipping it
 * is exact); KG_ERR_UNSUPPORTED naming the character otherwise. */
int kg_tok_nfc_check(const kg_tokenizer *t, const unsigned char *s, size_t n);
/* Appends the ids of text outside literal tokens: calls fn on each stretch
 * between matches and appends the literal ids in between. */
typedef int (*kg_tok_stretch_fn)(const kg_tokenizer *t, const unsigned char *s, size_t n, kg_ids *out, void *ctx);
int kg_tok_split_literals(const kg_tokenizer *t, const unsigned char *s, size_t n, kg_ids *out, kg_tok_stretch_fn fn,
                          void *ctx);

/* ---- per-call cache of word -> ids ---- */
typedef struct kg_wcache {
  uint32_t mask, count;
  struct kg_wcache_entry *e;
  kg_buf keys;
  kg_ids ids;
} kg_wcache;
/* Returns 1 and appends the cached ids for the word, 0 when absent. */
int kg_wcache_get(const kg_wcache *c, const unsigned char *w, size_t n, uint64_t h, kg_ids *out);
/* Remembers ids[from..] of `out` for the word; a full cache just stops growing. */
int kg_wcache_put(kg_wcache *c, const unsigned char *w, size_t n, uint64_t h, const kg_ids *out, size_t from);
void kg_wcache_free(kg_wcache *c);

/* ---- pre-tokenizers (tokenizer_pretok.c) ---- */
typedef struct kg_span {
  size_t off, len;
} kg_span;
kg_pretok *kg_pretok_new(void);
void kg_pretok_free(kg_pretok *p);
/* Split on a regex (PCRE2, UTF + UCP), keeping matches as their own pieces
 * (HF "Isolated") or dropping them ("Removed"); literal=1 escapes the pattern. */
int kg_pretok_add_split(kg_pretok *p, const char *pattern, size_t len, int literal, int removed, const char *name);
int kg_pretok_add_digits(kg_pretok *p, int individual, const char *name);
/* HF ByteLevel: optional prefix space, optional GPT-2 regex; must come last. */
int kg_pretok_add_bytelevel(kg_pretok *p, int add_prefix_space, int use_regex, const char *name);
int kg_pretok_is_bytelevel(const kg_pretok *p);
/* Splits text into pieces; spans index *base, which is text or a buffer the
 * caller frees (*owned, NULL when none). */
int kg_pretok_run(const kg_pretok *p, const unsigned char *text, size_t len, const unsigned char **base,
                  unsigned char **owned, kg_span **spans, size_t *n_spans);

/* The GPT-2 pre-tokenizer regex (HF ByteLevel use_regex) and LLaMA-3's. */
extern const char kg_regex_gpt2[];
extern const char kg_regex_llama3[];

#endif
