/* Tokenizers: SentencePiece BPE with byte fallback (LLaMA-2 tokenizer.model,
 * llama2.c tokenizer.bin), byte-level BPE (tokenizer.json of LLaMA-3,
 * GPT-NeoX/DCLM, SmolLM2; GPT-2 vocab.json + merges.txt) with the model's own
 * pre-tokenizer regex (PCRE2), and the tokenizer embedded in a GGUF file. */
#ifndef KG_IO_TOKENIZER_H
#define KG_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct kg_gguf;

typedef struct kg_tokenizer kg_tokenizer;

typedef enum kg_tokenizer_kind { KG_TOK_SPM = 0, KG_TOK_BPE = 1 } kg_tokenizer_kind;

/* Loads from a file, chosen by name and contents: *.model (SentencePiece
 * protobuf), *.bin (llama2.c export), *.json (HF tokenizer.json, or GPT-2
 * vocab.json with merges.txt beside it), *.gguf (embedded tokenizer).
 * On success *out is owned by the caller (kg_tokenizer_free). */
int kg_tokenizer_load(const char *path, kg_tokenizer **out);
int kg_tokenizer_from_gguf(const struct kg_gguf *gguf, const char *path, kg_tokenizer **out);
void kg_tokenizer_free(kg_tokenizer *tok);

kg_tokenizer_kind kg_tokenizer_kind_of(const kg_tokenizer *tok);
int kg_tokenizer_vocab_size(const kg_tokenizer *tok);
int kg_tokenizer_bos_id(const kg_tokenizer *tok); /* -1 when none */
int kg_tokenizer_eos_id(const kg_tokenizer *tok); /* -1 when none */
/* Whether the model's own tokenizer config adds BOS when encoding a text
 * (LLaMA-2, LLaMA-3: yes; SmolLM2, GPT-2: no). */
int kg_tokenizer_adds_bos(const kg_tokenizer *tok);

/* Encodes UTF-8 text of `len` bytes, as the reference tokenizer does with
 * special tokens not parsed (plain text). Prepends BOS when add_bos is set.
 * *ids is malloc'd and owned by the caller. Invalid UTF-8 is encoded as bytes
 * (byte fallback / byte-level), never rejected. */
int kg_tokenizer_encode(const kg_tokenizer *tok, const char *text, size_t len, int add_bos,
                        int32_t **ids, size_t *n_ids);

/* Decodes ids to UTF-8 text; *text is malloc'd, NUL-terminated, owned by the
 * caller. Ids outside the vocabulary are an error (KG_ERR_ARG). Special tokens
 * (BOS/EOS) decode to nothing. */
int kg_tokenizer_decode(const kg_tokenizer *tok, const int32_t *ids, size_t n, char **text);

/* The raw bytes one token stands for (after byte-level/▁ mapping), for
 * streaming output; returns the number of bytes written (<= cap), or < 0. */
int kg_tokenizer_token_bytes(const kg_tokenizer *tok, int32_t id, char *buf, size_t cap);

#endif
