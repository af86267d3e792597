/* libFuzzer harness for the llama2.c reader: build a checkpoint from
 * arbitrary bytes in memory, then touch every tensor's first and last byte;
 * any crash, leak or sanitizer report is a bug. */
#include <stdint.h>

#include "io/checkpoint.h"
#include "io/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned char sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kg_checkpoint *ck = NULL;
  if (kg_llama2c_open_memory(data, size, "fuzz.bin", &ck) == KG_OK) {
    for (size_t i = 0; i < ck->n_tensors; i++) {
      const kg_tensor_ref *t = &ck->tensors[i];
      const unsigned char *p = t->data;
      if (t->nbytes) sink ^= (unsigned char)(p[0] ^ p[t->nbytes - 1]);
    }
    kg_checkpoint_check_shapes(ck);
    kg_checkpoint_close(ck);
  }
  kg_error_clear();
  return 0;
}
