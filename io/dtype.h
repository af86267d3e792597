/* Element types of checkpoint tensors, including GGUF block quantizations.
 *
 * Block layouts follow ggml (llama.cpp) exactly: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0
 * hold 32 values per block with f16 scales; the K-quants Q2_K..Q8_K hold 256
 * values per super-block. Conversions never allocate. */
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

/* "f32", "bf16", "q4_1", ...; "invalid" for values outside the enum. */
const char *kg_dtype_name(kg_dtype t);
/* Parses a name as kg_dtype_name writes it (case-insensitive). Returns KG_OK
 * or KG_ERR_ARG (no message recorded). */
int kg_dtype_from_name(const char *name, kg_dtype *out);
/* Elements per block (1 for plain types, 32 or 256 for quantized ones); 0 for invalid. */
int64_t kg_dtype_block_elems(kg_dtype t);
/* Bytes per block; 0 for invalid. */
size_t kg_dtype_block_bytes(kg_dtype t);
/* Bytes for `n` elements, or 0 when n is not a whole number of blocks or
 * the byte count would overflow. */
size_t kg_dtype_row_bytes(kg_dtype t, int64_t n);
/* Whether kg_dequantize handles this type (floating and quantized types). */
int kg_dtype_is_float_convertible(kg_dtype t);

/* Converts `n` elements of type `t` at `src` to float32. `n` must be a whole
 * number of blocks. `src` needs no particular alignment. Returns KG_OK or
 * KG_ERR_UNSUPPORTED/KG_ERR_ARG. */
int kg_dequantize(kg_dtype t, const void *src, float *dst, int64_t n);
/* Converts `n` float32 values to F32, F16, BF16 or F64 at `dst` (no
 * alignment needed), rounding to nearest even. Returns KG_OK or
 * KG_ERR_UNSUPPORTED for other types. */
int kg_convert_from_f32(kg_dtype t, const float *src, void *dst, int64_t n);

float kg_f16_to_f32(uint16_t h);
uint16_t kg_f32_to_f16(float f);   /* round to nearest even */
float kg_bf16_to_f32(uint16_t h);
uint16_t kg_f32_to_bf16(float f);  /* round to nearest even, NaN preserved */

#endif
