/* Element types of checkpoint tensors, including GGUF block quantizations. */
#ifndef KG_IO_DTYPE_H
#define KG_IO_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum kg_dtype {
  KG_DT_F32 = 0,
  KG_DT_F16,
  KG_DT_BF16,
  KG_DT_F64,
  KG_DT_I8,
  KG_DT_I16,
  KG_DT_I32,
  KG_DT_I64,
  KG_DT_Q4_0,
  KG_DT_Q4_1,
  KG_DT_Q5_0,
  KG_DT_Q5_1,
  KG_DT_Q8_0,
  KG_DT_Q2_K,
  KG_DT_Q3_K,
  KG_DT_Q4_K,
  KG_DT_Q5_K,
  KG_DT_Q6_K,
  KG_DT_Q8_K,
  KG_DT_COUNT
} kg_dtype;

const char *kg_dtype_name(kg_dtype t);
/* Elements per block (1 for plain types, 32 or 256 for quantized ones). */
int64_t kg_dtype_block_elems(kg_dtype t);
/* Bytes per block. */
size_t kg_dtype_block_bytes(kg_dtype t);
/* Bytes for `n` elements, or 0 when n is not a whole number of blocks. */
size_t kg_dtype_row_bytes(kg_dtype t, int64_t n);
/* Whether kg_dequantize handles this type (floating and quantized types). */
int kg_dtype_is_float_convertible(kg_dtype t);

/* Converts `n` elements of type `t` at `src` to float32. `n` must be a whole
 * number of blocks. Returns KG_OK or KG_ERR_UNSUPPORTED/KG_ERR_ARG. */
int kg_dequantize(kg_dtype t, const void *src, float *dst, int64_t n);

float kg_f16_to_f32(uint16_t h);
uint16_t kg_f32_to_f16(float f);   /* round to nearest even */
float kg_bf16_to_f32(uint16_t h);
uint16_t kg_f32_to_bf16(float f);  /* round to nearest even, NaN preserved */

#endif
