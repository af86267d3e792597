/* libFuzzer harness for the GGUF parser: parse arbitrary bytes from memory,
 * then use every accessor on what parsed (typed getters, string iteration,
 * numeric arrays, tensor bytes and the first block's dequantization); any
 * crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned char sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kg_gguf *g = NULL;
  if (kg_gguf_parse(data, size, "fuzz.gguf", &g) == KG_OK) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
      const kg_gguf_kv *kv = &g->kv[i];
      char key[256];
      snprintf(key, sizeof(key), "%.*s", (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.data);
      int64_t iv;
      double dv;
      int bv;
      char *sv = NULL;
      kg_gguf_get_int(g, key, &iv);
      kg_gguf_get_float(g, key, &dv);
      kg_gguf_get_bool(g, key, &bv);
      if (kg_gguf_get_string(g, key, &sv) == KG_OK) free(sv);
      if (kv->type == KG_GGUF_ARRAY) {
        kg_gguf_string s;
        kg_gguf_string_iter it;
        kg_gguf_string_iter_init(&it, kv);
        while (kg_gguf_string_iter_next(&it, &s))
          if (s.len) sink ^= (unsigned char)(s.data[0] ^ s.data[s.len - 1]);
        if (kv->array_len) {
          kg_gguf_array_string(kv, kv->array_len - 1, &s);
          kg_gguf_array_number(kv, kv->array_len - 1, &dv);
        }
      }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
      const kg_gguf_tensor_info *t = &g->tensors[i];
      if (!t->nbytes) continue;
      const unsigned char *p = t->data;
      sink ^= (unsigned char)(p[0] ^ p[t->nbytes - 1]);
      int64_t be = kg_dtype_block_elems(t->dtype);
      float block[256];
      if (kg_dtype_is_float_convertible(t->dtype) && be > 0 && t->ne[0] >= be && be <= 256)
        kg_dequantize(t->dtype, t->data, block, be);
    }
    kg_gguf_free(g);
  }
  kg_error_clear();
  return 0;
}
