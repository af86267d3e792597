/* libFuzzer harness for the safetensors header parser: parse arbitrary bytes
 * from memory into an arena, then touch every tensor's first and last byte
 * and convert its first values; any crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>

#include "io/arena.h"
#include "io/error.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned char sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kg_arena *arena = kg_arena_create();
  if (!arena) return 0;
  kg_safetensors *st = NULL;
  if (kg_safetensors_parse(arena, data, size, "fuzz.safetensors", &st) == KG_OK) {
    for (size_t i = 0; i < st->n_tensors; i++) {
      const kg_st_tensor *t = &st->tensors[i];
      kg_safetensors_find(st, t->name);
      if (!t->nbytes) continue;
      sink ^= (unsigned char)(t->data[0] ^ t->data[t->nbytes - 1]);
      float v[4];
      size_t es = kg_dtype_block_bytes(t->dtype);
      if (kg_dtype_is_float_convertible(t->dtype) && es) {
        int64_t n = (int64_t)(t->nbytes / es < 4 ? t->nbytes / es : 4);
        kg_dequantize(t->dtype, t->data, v, n);
      }
    }
  }
  kg_arena_destroy(arena);
  kg_error_clear();
  return 0;
}
