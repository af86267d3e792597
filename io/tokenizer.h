/* Tokenizers: SentencePiece BPE with byte fallback (LLaMA-2 tokenizer.model,
 * llama2.c tokenizer.bin), byte-level BPE (tokenizer.json of LLaMA-3,
 * GPT-NeoX/DCLM, SmolLM2; GPT-2 vocab.json + merges.txt) with the model's own
 * pre-tokenizer regex (PCRE2), and the tokenizer embedded in a GGUF file.
 *
 * Encoding is exact with respect to the references (sentencepiece, HF
 * tokenizers, llama2.c, llama.cpp) for what is supported; anything else is
 * refused with KG_ERR_UNSUPPORTED rather than approximated: SentencePiece
 * unigram models and precompiled normalization maps; tokenizer.json models
 * other than BPE, pre-tokenizers other than Sequence/Split (Isolated,
 * Removed)/Digits/ByteLevel, normalizers other than NFC, and NFC itself on
 * text that fails the NFC quick check. Added tokens' lstrip/rstrip/
 * single_word flags are not applied. A loaded tokenizer is read-only: any
 * number of threads may encode and decode with it at once. */
#ifndef KG_IO_TOKENIZER_H
#define KG_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct kg_gguf;

typedef struct kg_tokenizer kg_tokenizer;

typedef enum kg_tokenizer_kind { KG_TOK_SPM = 0, KG_TOK_BPE = 1 } kg_tokenizer_kind;

/* Loads from a file, chosen by name and contents: *.model (SentencePiece
 * protobuf), *.bin (llama2.c export), *.json (HF tokenizer.json, with
 * tokenizer_config.json beside it read for bos/eos/add_bos_token when
 * present; or GPT-2 vocab.json with merges.txt beside it), *.gguf (embedded
 * tokenizer). Other names are recognized by their contents.
 * On success *out is owned by the caller (kg_tokenizer_free). Errors are one
 * line naming the file. */
int kg_tokenizer_load(const char *path, kg_tokenizer **out);
/* The tokenizer stored in GGUF metadata (tokenizer.ggml.*); `path` names the
 * file in messages. The result does not reference `gguf` afterwards. */
int kg_tokenizer_from_gguf(const struct kg_gguf *gguf, const char *path, kg_tokenizer **out);

/* Parses a tokenizer file held in memory (bounds-checked against `size`;
 * used by the fuzzer and by callers that fetched the bytes themselves).
 * `name` is used in messages. The buffer is not referenced afterwards. */
typedef enum kg_tokenizer_format {
  KG_TOKFMT_LLAMA2C = 0,   /* llama2.c tokenizer.bin */
  KG_TOKFMT_SPM_MODEL = 1, /* SentencePiece ModelProto (tokenizer.model) */
  KG_TOKFMT_HF_JSON = 2,   /* Hugging Face tokenizer.json */
  KG_TOKFMT_GGUF = 3,      /* a GGUF file (its tokenizer.ggml.* metadata) */
} kg_tokenizer_format;
int kg_tokenizer_load_memory(kg_tokenizer_format format, const void *data, size_t size, const char *name,
                             kg_tokenizer **out);
/* GPT-2 style vocab.json + merges.txt held in memory. */
int kg_tokenizer_load_gpt2_memory(const void *vocab_json, size_t vocab_size, const void *merges_txt,
                                  size_t merges_size, const char *name, kg_tokenizer **out);
void kg_tokenizer_free(kg_tokenizer *tok);

kg_tokenizer_kind kg_tokenizer_kind_of(const kg_tokenizer *tok);
int kg_tokenizer_vocab_size(const kg_tokenizer *tok);
int kg_tokenizer_bos_id(const kg_tokenizer *tok); /* -1 when none */
int kg_tokenizer_eos_id(const kg_tokenizer *tok); /* -1 when none */
int kg_tokenizer_unk_id(const kg_tokenizer *tok); /* -1 when none */
/* Whether the model's own tokenizer config adds BOS when encoding a text
 * (LLaMA-2, LLaMA-3: yes; SmolLM2, GPT-2: no). */
int kg_tokenizer_adds_bos(const kg_tokenizer *tok);

/* Encodes UTF-8 text of `len` bytes, as the reference tokenizer does with
 * special tokens not parsed (plain text; non-special added tokens and
 * SentencePiece user-defined pieces are matched, as the references do).
 * Prepends BOS when add_bos is set (an error when the vocabulary has none).
 * *ids is malloc'd (never NULL on success) and owned by the caller.
 * Invalid UTF-8 is never rejected: byte-level BPE, llama2.c .bin and GGUF
 * SentencePiece vocabularies encode the bad bytes as byte tokens; a
 * SentencePiece .model turns each bad byte into U+FFFD first, as the
 * sentencepiece library does. */
int kg_tokenizer_encode(const kg_tokenizer *tok, const char *text, size_t len, int add_bos,
                        int32_t **ids, size_t *n_ids);

/* Decodes ids to text; *text is malloc'd, NUL-terminated, owned by the
 * caller (byte fallback and byte-level tokens can yield bytes that are not
 * UTF-8 on their own; they are returned as they are). Ids outside the
 * vocabulary are an error (KG_ERR_ARG). Control tokens (BOS/EOS and other
 * special tokens) decode to nothing. SentencePiece vocabularies with a dummy
 * prefix drop the leading space of the first piece that has text, as
 * sentencepiece's DecodeIds and HF's Llama decoder do (so encode then decode
 * gives the text back, with or without a BOS). */
int kg_tokenizer_decode(const kg_tokenizer *tok, const int32_t *ids, size_t n, char **text);

/* The raw bytes one token stands for (after byte-level/▁ mapping; nothing
 * for control tokens), for streaming output; returns the number of bytes
 * written, KG_ERR_ARG for a bad id or when cap is too small. */
int kg_tokenizer_token_bytes(const kg_tokenizer *tok, int32_t id, char *buf, size_t cap);
/* Streaming variant of decode: the bytes of `id` when it follows `prev_id`
 * (-1 at the start of the sequence). SentencePiece vocabularies with a dummy
 * prefix drop the leading space after BOS or at the start, as llama2.c's
 * decode does. Same return convention as kg_tokenizer_token_bytes. */
int kg_tokenizer_stream_bytes(const kg_tokenizer *tok, int32_t prev_id, int32_t id, char *buf, size_t cap);
/* Longest byte string any single token decodes to (buffer size for the two
 * functions above). */
size_t kg_tokenizer_max_token_bytes(const kg_tokenizer *tok);

/* The vocabulary's own spelling of a token (SentencePiece "▁the", byte-level
 * "Ġthe", "<0x0A>"), not NUL-terminated, pointing into the tokenizer; NULL
 * for a bad or undefined id. */
const char *kg_tokenizer_piece(const kg_tokenizer *tok, int32_t id, size_t *len);
/* Id of the token spelled exactly `piece` (any token type), or -1. */
int32_t kg_tokenizer_find_piece(const kg_tokenizer *tok, const char *piece, size_t len);
/* Whether id is a control/special token (BOS, EOS, chat markers). */
int kg_tokenizer_is_control(const kg_tokenizer *tok, int32_t id);
/* Short description of how the tokenizer works, e.g. "spm-bpe byte_fallback"
 * or "byte-level-bpe pre=llama3"; owned by the tokenizer. */
const char *kg_tokenizer_describe(const kg_tokenizer *tok);

#endif
