/* libFuzzer harness for the tokenizer file parsers. The first input byte
 * picks the format (0 llama2.c tokenizer.bin, 1 SentencePiece ModelProto,
 * 2 HF tokenizer.json, 3 GGUF); the rest is parsed from memory. When a
 * tokenizer loads, a fixed text is encoded and decoded and every id checked
 * against the vocabulary. Seeds: tests/fuzz/corpus/tokenizer/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer.h"

/* Formats tried (data[0] % KG_FUZZ_TOKENIZER_FORMATS); 3 leaves GGUF out. */
#ifndef KG_FUZZ_TOKENIZER_FORMATS
#define KG_FUZZ_TOKENIZER_FORMATS 4
#endif

static const char TEXT[] = "Hello world!  The 12345 <tag> the\tthe\nend \xC3\xA9t\xC3\xA9 \xF0\x9F\xA6\x99 \xFF\xC3( "
                           "and the 3.14 the the theory <|bos|>";

static void exercise(const kg_tokenizer *t) {
  int32_t *ids = NULL;
  size_t n = 0;
  int vocab = kg_tokenizer_vocab_size(t);
  if (kg_tokenizer_encode(t, TEXT, sizeof TEXT - 1, kg_tokenizer_adds_bos(t), &ids, &n) == 0) {
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= vocab) __builtin_trap();
    char *text = NULL;
    if (kg_tokenizer_decode(t, ids, n, &text) == 0) free(text);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
      kg_tokenizer_token_bytes(t, ids[i], buf, sizeof buf);
      kg_tokenizer_stream_bytes(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf);
    }
    free(ids);
  }
  int32_t probe[] = {0, 1, vocab - 1, vocab, -1};
  char *text = NULL;
  if (kg_tokenizer_decode(t, probe, 3, &text) == 0) free(text);
  text = NULL;
  if (kg_tokenizer_decode(t, probe + 3, 2, &text) == 0) __builtin_trap(); /* out-of-range ids must fail */
  size_t len = 0;
  kg_tokenizer_piece(t, vocab - 1, &len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  kg_tokenizer *t = NULL;
  if (kg_tokenizer_load_memory((kg_tokenizer_format)(data[0] % KG_FUZZ_TOKENIZER_FORMATS), data + 1, size - 1, "fuzz-input", &t) == 0) {
    exercise(t);
    kg_tokenizer_free(t);
  }
  kg_error_clear();
  return 0;
}
