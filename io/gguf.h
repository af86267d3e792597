/* GGUF v2/v3 files: metadata key/values, tensor infos, and tensor data
 * pointers into the memory-mapped file.
 *
 * Everything read from the file is bounds-checked when it is parsed: counts,
 * string and array lengths, the alignment (general.alignment, a power of
 * two), tensor shapes (ne[0] a whole number of blocks, no overflow) and that
 * every tensor's bytes lie inside the file. Duplicate keys or tensor names are
 * rejected. After a successful parse the accessors below cannot read outside
 * the buffer. */
#ifndef KG_IO_GGUF_H
#define KG_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"

typedef enum kg_gguf_type {
  KG_GGUF_UINT8 = 0, KG_GGUF_INT8 = 1, KG_GGUF_UINT16 = 2, KG_GGUF_INT16 = 3,
  KG_GGUF_UINT32 = 4, KG_GGUF_INT32 = 5, KG_GGUF_FLOAT32 = 6, KG_GGUF_BOOL = 7,
  KG_GGUF_STRING = 8, KG_GGUF_ARRAY = 9, KG_GGUF_UINT64 = 10, KG_GGUF_INT64 = 11,
  KG_GGUF_FLOAT64 = 12,
} kg_gguf_type;

typedef struct kg_gguf_string {
  const char *data; /* points into the mapping; NOT NUL-terminated */
  uint64_t len;
} kg_gguf_string;

typedef struct kg_gguf_kv {
  kg_gguf_string key;
  kg_gguf_type type;
  kg_gguf_type array_type; /* element type when type == KG_GGUF_ARRAY */
  uint64_t array_len;      /* element count when type == KG_GGUF_ARRAY, else 0 */
  /* Raw little-endian value bytes in the mapping: the scalar itself; for
   * STRING the uint64 length followed by the bytes; for ARRAY the first
   * element (after the element type and count). */
  const unsigned char *value;
  union { uint64_t u; int64_t i; double f; } scalar; /* decoded numeric/bool scalar */
} kg_gguf_kv;

typedef struct kg_gguf_tensor_info {
  kg_gguf_string name;
  uint32_t n_dims;
  int64_t ne[4];   /* GGUF order: ne[0] varies fastest; unused entries are 1 */
  uint32_t ggml_type;
  kg_dtype dtype;  /* KG_DT_COUNT when the ggml type is not supported */
  uint64_t offset; /* relative to the data section */
  const void *data;
  size_t nbytes;
} kg_gguf_tensor_info;

typedef struct kg_gguf {
  char *path;
  uint32_t version;
  uint64_t n_kv;
  kg_gguf_kv *kv;
  uint64_t n_tensors;
  kg_gguf_tensor_info *tensors;
  uint32_t alignment;
  struct kg_mapped_file *file; /* owned */
} kg_gguf;

/* Parses a GGUF file held in memory (bounds-checked against `size`; used by
 * the fuzzer). The buffer must outlive the result. */
int kg_gguf_parse(const unsigned char *data, size_t size, const char *name, kg_gguf **out);
/* Maps and parses a file; the result owns the mapping. Caller frees with kg_gguf_free. */
int kg_gguf_open(const char *path, kg_gguf **out);
void kg_gguf_free(kg_gguf *g);

const kg_gguf_kv *kg_gguf_find(const kg_gguf *g, const char *key);
/* NULL when absent. */
const kg_gguf_tensor_info *kg_gguf_find_tensor(const kg_gguf *g, const char *name);
/* Whether a GGUF string equals a NUL-terminated one. */
int kg_gguf_string_eq(kg_gguf_string s, const char *str);
/* Name of a ggml type id ("q4_1", "iq2_xxs"), "unknown" when not known. */
const char *kg_gguf_ggml_type_name(uint32_t ggml_type);
const char *kg_gguf_type_name(kg_gguf_type t); /* "uint32", "string", ... */

/* Typed getters: return KG_OK, KG_ERR_NOT_FOUND, or KG_ERR_FORMAT on a type mismatch.
 * Integers of any width convert (out of range: KG_ERR_FORMAT); get_float also
 * accepts integers; strings are copied NUL-terminated (caller frees). */
int kg_gguf_get_int(const kg_gguf *g, const char *key, int64_t *out);
int kg_gguf_get_float(const kg_gguf *g, const char *key, double *out);
int kg_gguf_get_bool(const kg_gguf *g, const char *key, int *out);
int kg_gguf_get_string(const kg_gguf *g, const char *key, char **out);
/* Element i of an array of strings (pointer into the mapping); walks the array. */
int kg_gguf_array_string(const kg_gguf_kv *kv, uint64_t i, kg_gguf_string *out);
/* Iterates an array of strings in order without quadratic cost. */
typedef struct kg_gguf_string_iter { const kg_gguf_kv *kv; uint64_t index; const unsigned char *pos; } kg_gguf_string_iter;
void kg_gguf_string_iter_init(kg_gguf_string_iter *it, const kg_gguf_kv *kv);
int kg_gguf_string_iter_next(kg_gguf_string_iter *it, kg_gguf_string *out); /* 1 = got one, 0 = end */
/* Element i of a numeric array as double / int64 (float32, int32, uint32, ...). */
int kg_gguf_array_number(const kg_gguf_kv *kv, uint64_t i, double *out);

#endif
