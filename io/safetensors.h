/* safetensors files: an 8-byte little-endian header length N, N bytes of
 * JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}), then the tensor bytes, offsets relative to 8 + N.
 *
 * The parser checks the header length against the file, that the header is a
 * JSON object of well-formed entries, that every dtype is known, that shapes
 * and offsets are exact non-negative integers, that each tensor's byte range
 * matches its shape and dtype, lies inside the file and overlaps no other, and
 * that no name repeats. Tensor data pointers need not be aligned. */
#ifndef KG_IO_SAFETENSORS_H
#define KG_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/arena.h"
#include "io/dtype.h"

#define KG_ST_MAX_DIMS 8

typedef struct kg_st_tensor {
  const char *name;   /* owned by the arena */
  char dtype_name[12]; /* as written: "F32", "BF16", "U8", ... */
  kg_dtype dtype;     /* KG_DT_COUNT for dtypes kickgrid has no type for (U8, BOOL, F8_*, U16..U64) */
  int ndim;
  int64_t shape[KG_ST_MAX_DIMS];
  const unsigned char *data; /* inside the parsed buffer */
  size_t nbytes;
} kg_st_tensor;

typedef struct kg_safetensors {
  const char *path;      /* owned by the arena */
  kg_st_tensor *tensors; /* owned by the arena, in header order */
  size_t n_tensors;
  size_t data_offset;    /* 8 + header length */
} kg_safetensors;

/* Parses a safetensors file held in memory. Everything is allocated in
 * `arena`; the buffer must outlive the result. `name` labels errors. */
int kg_safetensors_parse(kg_arena *arena, const unsigned char *data, size_t size, const char *name,
                         kg_safetensors **out);
/* Maps and parses `path`; the mapping is handed to `arena`. */
int kg_safetensors_open(kg_arena *arena, const char *path, kg_safetensors **out);
/* NULL when absent. */
const kg_st_tensor *kg_safetensors_find(const kg_safetensors *st, const char *name);

#endif
