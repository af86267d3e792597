#include "io/gguf.h"

#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/mapfile.h"

/* ggml type ids as written in GGUF tensor infos, with their block geometry so
 * that tensors of types we cannot convert are still bounds-checked. */
typedef struct ggml_type_info {
  const char *name;
  int64_t block_elems;
  size_t block_bytes;
  kg_dtype dtype; /* KG_DT_COUNT: known layout, no converter */
} ggml_type_info;

static const ggml_type_info ggml_types[] = {
    [0] = {"f32", 1, 4, KG_DT_F32},          [1] = {"f16", 1, 2, KG_DT_F16},
    [2] = {"q4_0", 32, 18, KG_DT_Q4_0},      [3] = {"q4_1", 32, 20, KG_DT_Q4_1},
    [6] = {"q5_0", 32, 22, KG_DT_Q5_0},      [7] = {"q5_1", 32, 24, KG_DT_Q5_1},
    [8] = {"q8_0", 32, 34, KG_DT_Q8_0},      [9] = {"q8_1", 32, 40, KG_DT_COUNT},
    [10] = {"q2_k", 256, 84, KG_DT_Q2_K},    [11] = {"q3_k", 256, 110, KG_DT_Q3_K},
    [12] = {"q4_k", 256, 144, KG_DT_Q4_K},   [13] = {"q5_k", 256, 176, KG_DT_Q5_K},
    [14] = {"q6_k", 256, 210, KG_DT_Q6_K},   [15] = {"q8_k", 256, 292, KG_DT_Q8_K},
    [16] = {"iq2_xxs", 256, 66, KG_DT_COUNT}, [17] = {"iq2_xs", 256, 74, KG_DT_COUNT},
    [18] = {"iq3_xxs", 256, 98, KG_DT_COUNT}, [19] = {"iq1_s", 256, 50, KG_DT_COUNT},
    [20] = {"iq4_nl", 32, 18, KG_DT_COUNT},  [21] = {"iq3_s", 256, 110, KG_DT_COUNT},
    [22] = {"iq2_s", 256, 82, KG_DT_COUNT},  [23] = {"iq4_xs", 256, 136, KG_DT_COUNT},
    [24] = {"i8", 1, 1, KG_DT_I8},           [25] = {"i16", 1, 2, KG_DT_I16},
    [26] = {"i32", 1, 4, KG_DT_I32},         [27] = {"i64", 1, 8, KG_DT_I64},
    [28] = {"f64", 1, 8, KG_DT_F64},         [29] = {"iq1_m", 256, 56, KG_DT_COUNT},
    [30] = {"bf16", 1, 2, KG_DT_BF16},       [34] = {"tq1_0", 256, 54, KG_DT_COUNT},
    [35] = {"tq2_0", 256, 66, KG_DT_COUNT},  [39] = {"mxfp4", 32, 17, KG_DT_COUNT},
};
#define N_GGML_TYPES (sizeof(ggml_types) / sizeof(ggml_types[0]))

static const ggml_type_info *ggml_type_lookup(uint32_t id) {
  if (id >= N_GGML_TYPES || !ggml_types[id].name) return NULL;
  return &ggml_types[id];
}

const char *kg_gguf_ggml_type_name(uint32_t id) {
  const ggml_type_info *ti = ggml_type_lookup(id);
  return ti ? ti->name : "unknown";
}

const char *kg_gguf_type_name(kg_gguf_type t) {
  static const char *names[] = {"uint8", "int8",  "uint16", "int16", "uint32", "int32", "float32",
                                "bool",  "string", "array", "uint64", "int64", "float64"};
  return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "invalid";
}

/* Size of a fixed-width value type, 0 for string/array/invalid. */
static size_t scalar_size(uint32_t t) {
  switch (t) {
  case KG_GGUF_UINT8: case KG_GGUF_INT8: case KG_GGUF_BOOL: return 1;
  case KG_GGUF_UINT16: case KG_GGUF_INT16: return 2;
  case KG_GGUF_UINT32: case KG_GGUF_INT32: case KG_GGUF_FLOAT32: return 4;
  case KG_GGUF_UINT64: case KG_GGUF_INT64: case KG_GGUF_FLOAT64: return 8;
  default: return 0;
  }
}

static uint64_t rd_le(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Decodes a fixed-width scalar into the kv union. */
static void decode_scalar(uint32_t t, const unsigned char *p, kg_gguf_kv *kv) {
  uint64_t raw = rd_le(p, scalar_size(t));
  switch (t) {
  case KG_GGUF_INT8: kv->scalar.i = (int8_t)raw; break;
  case KG_GGUF_INT16: kv->scalar.i = (int16_t)raw; break;
  case KG_GGUF_INT32: kv->scalar.i = (int32_t)raw; break;
  case KG_GGUF_INT64: kv->scalar.i = (int64_t)raw; break;
  case KG_GGUF_FLOAT32: {
    uint32_t b = (uint32_t)raw;
    float f;
    memcpy(&f, &b, 4);
    kv->scalar.f = f;
    break;
  }
  case KG_GGUF_FLOAT64: memcpy(&kv->scalar.f, &raw, 8); break;
  default: kv->scalar.u = raw; break;
  }
}

typedef struct cursor {
  const unsigned char *base;
  size_t size;
  size_t pos;
  const char *name;
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, size_t n, const char *what) {
  if (remaining(c) < n)
    return kg_error(KG_ERR_FORMAT, "%s: truncated GGUF file (%s at byte %zu needs %zu bytes, %zu left)", c->name,
                    what, c->pos, n, remaining(c));
  return KG_OK;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) {
  KG_TRY(need(c, 4, what));
  *v = (uint32_t)rd_le(c->base + c->pos, 4);
  c->pos += 4;
  return KG_OK;
}

static int read_u64(cursor *c, uint64_t *v, const char *what) {
  KG_TRY(need(c, 8, what));
  *v = rd_le(c->base + c->pos, 8);
  c->pos += 8;
  return KG_OK;
}

static int read_string(cursor *c, kg_gguf_string *s, const char *what) {
  uint64_t len;
  KG_TRY(read_u64(c, &len, what));
  if (len > remaining(c))
    return kg_error(KG_ERR_FORMAT, "%s: %s at byte %zu has length %llu beyond the end of the file", c->name, what,
                    c->pos - 8, (unsigned long long)len);
  s->data = (const char *)(c->base + c->pos);
  s->len = len;
  c->pos += (size_t)len;
  return KG_OK;
}

/* Skips (and validates) the value of an array element or scalar of type t. */
static int skip_values(cursor *c, uint32_t t, uint64_t count, const char *key) {
  size_t sz = scalar_size(t);
  if (sz) {
    if (count > remaining(c) / sz)
      return kg_error(KG_ERR_FORMAT, "%s: array '%s' of %llu %s values runs past the end of the file", c->name, key,
                      (unsigned long long)count, kg_gguf_type_name((kg_gguf_type)t));
    c->pos += (size_t)count * sz;
    return KG_OK;
  }
  if (t == KG_GGUF_STRING) {
    /* every string needs at least its 8-byte length */
    if (count > remaining(c) / 8)
      return kg_error(KG_ERR_FORMAT, "%s: array '%s' of %llu strings runs past the end of the file", c->name, key,
                      (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) {
      kg_gguf_string s;
      KG_TRY(read_string(c, &s, "string array element"));
    }
    return KG_OK;
  }
  if (t == KG_GGUF_ARRAY)
    return kg_error(KG_ERR_UNSUPPORTED, "%s: key '%s' is an array of arrays (not supported)", c->name, key);
  return kg_error(KG_ERR_FORMAT, "%s: key '%s' has unknown value type %u", c->name, key, t);
}

static int parse_kv(cursor *c, kg_gguf_kv *kv, uint64_t index) {
  char what[64];
  snprintf(what, sizeof(what), "key %llu", (unsigned long long)index);
  KG_TRY(read_string(c, &kv->key, what));
  char key[128];
  snprintf(key, sizeof(key), "%.*s", (int)(kv->key.len < 120 ? kv->key.len : 120), kv->key.data);
  uint32_t type;
  KG_TRY(read_u32(c, &type, "value type"));
  kv->type = (kg_gguf_type)type;
  kv->value = c->base + c->pos;
  if (type == KG_GGUF_ARRAY) {
    uint32_t et;
    uint64_t n;
    KG_TRY(read_u32(c, &et, "array element type"));
    KG_TRY(read_u64(c, &n, "array length"));
    kv->array_type = (kg_gguf_type)et;
    kv->array_len = n;
    kv->value = c->base + c->pos;
    return skip_values(c, et, n, key);
  }
  if (type == KG_GGUF_STRING) {
    kg_gguf_string s;
    return read_string(c, &s, key);
  }
  size_t sz = scalar_size(type);
  if (!sz) return kg_error(KG_ERR_FORMAT, "%s: key '%s' has unknown value type %u", c->name, key, type);
  KG_TRY(need(c, sz, key));
  decode_scalar(type, c->base + c->pos, kv);
  c->pos += sz;
  return KG_OK;
}

static int parse_tensor_info(cursor *c, kg_gguf_tensor_info *ti, uint64_t index) {
  char what[64];
  snprintf(what, sizeof(what), "tensor %llu name", (unsigned long long)index);
  KG_TRY(read_string(c, &ti->name, what));
  int nl = (int)(ti->name.len < 120 ? ti->name.len : 120);
  KG_TRY(read_u32(c, &ti->n_dims, "tensor dimension count"));
  if (ti->n_dims < 1 || ti->n_dims > 4)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' has %u dimensions (1 to 4 allowed)", c->name, nl, ti->name.data,
                    ti->n_dims);
  for (int d = 0; d < 4; d++) ti->ne[d] = 1;
  for (uint32_t d = 0; d < ti->n_dims; d++) {
    uint64_t ne;
    KG_TRY(read_u64(c, &ne, "tensor dimension"));
    if (ne > (uint64_t)INT64_MAX)
      return kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' dimension %u is %llu", c->name, nl, ti->name.data, d,
                      (unsigned long long)ne);
    ti->ne[d] = (int64_t)ne;
  }
  KG_TRY(read_u32(c, &ti->ggml_type, "tensor type"));
  KG_TRY(read_u64(c, &ti->offset, "tensor offset"));
  const ggml_type_info *tt = ggml_type_lookup(ti->ggml_type);
  if (!tt)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' has unknown ggml type %u", c->name, nl, ti->name.data,
                    ti->ggml_type);
  ti->dtype = tt->dtype;
  if (ti->ne[0] % tt->block_elems != 0)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' row of %lld values is not a whole number of %s blocks", c->name,
                    nl, ti->name.data, (long long)ti->ne[0], tt->name);
  /* rows = ne1*ne2*ne3, bytes = rows * row_bytes, both without overflow */
  uint64_t blocks = (uint64_t)(ti->ne[0] / tt->block_elems);
  uint64_t bytes = blocks * tt->block_bytes; /* blocks < 2^63, block_bytes < 300: fits when checked below */
  if (blocks && tt->block_bytes > UINT64_MAX / blocks) goto too_big;
  for (int d = 1; d < 4; d++) {
    uint64_t n = (uint64_t)ti->ne[d];
    if (n && bytes > UINT64_MAX / n) goto too_big;
    bytes *= n;
  }
  if (bytes > SIZE_MAX) goto too_big;
  ti->nbytes = (size_t)bytes;
  return KG_OK;
too_big:
  return kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' is too large (shape overflows)", c->name, nl, ti->name.data);
}

static int cmp_string(const kg_gguf_string *a, const kg_gguf_string *b) {
  uint64_t n = a->len < b->len ? a->len : b->len;
  int r = n ? memcmp(a->data, b->data, (size_t)n) : 0;
  if (r) return r;
  return a->len < b->len ? -1 : a->len > b->len;
}

static int cmp_kv_ptr(const void *a, const void *b) {
  return cmp_string(&(*(const kg_gguf_kv *const *)a)->key, &(*(const kg_gguf_kv *const *)b)->key);
}

static int cmp_tensor_ptr(const void *a, const void *b) {
  return cmp_string(&(*(const kg_gguf_tensor_info *const *)a)->name, &(*(const kg_gguf_tensor_info *const *)b)->name);
}

/* Rejects duplicate keys and tensor names (sorting pointers keeps it n log n). */
static int check_duplicates(const kg_gguf *g, const char *name) {
  int rc = KG_OK;
  size_t n = g->n_kv > g->n_tensors ? (size_t)g->n_kv : (size_t)g->n_tensors;
  const void **ptrs = n ? malloc(n * sizeof(*ptrs)) : NULL;
  if (n && !ptrs) return kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
  for (uint64_t i = 0; i < g->n_kv; i++) ptrs[i] = &g->kv[i];
  if (g->n_kv > 1) qsort(ptrs, (size_t)g->n_kv, sizeof(*ptrs), cmp_kv_ptr);
  for (uint64_t i = 1; i < g->n_kv; i++) {
    const kg_gguf_kv *a = ptrs[i - 1], *b = ptrs[i];
    if (cmp_string(&a->key, &b->key) == 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: duplicate key '%.*s'", name, (int)(a->key.len < 120 ? a->key.len : 120),
                    a->key.data);
      goto done;
    }
  }
  for (uint64_t i = 0; i < g->n_tensors; i++) ptrs[i] = &g->tensors[i];
  if (g->n_tensors > 1) qsort(ptrs, (size_t)g->n_tensors, sizeof(*ptrs), cmp_tensor_ptr);
  for (uint64_t i = 1; i < g->n_tensors; i++) {
    const kg_gguf_tensor_info *a = ptrs[i - 1], *b = ptrs[i];
    if (cmp_string(&a->name, &b->name) == 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: duplicate tensor '%.*s'", name, (int)(a->name.len < 120 ? a->name.len : 120),
                    a->name.data);
      goto done;
    }
  }
done:
  free(ptrs);
  return rc;
}

int kg_gguf_parse(const unsigned char *data, size_t size, const char *name, kg_gguf **out) {
  int rc = KG_OK;
  kg_gguf *g = NULL;
  cursor c = {data, data ? size : 0, 0, name};
  *out = NULL;
  if (!(g = calloc(1, sizeof(*g))) || !(g->path = strdup(name))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
    goto done;
  }
  if (c.size < 4 || memcmp(data, "GGUF", 4) != 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: bad magic (not a GGUF file)", name);
    goto done;
  }
  c.pos = 4;
  if ((rc = read_u32(&c, &g->version, "version")) < 0) goto done;
  if (g->version != 2 && g->version != 3) {
    rc = kg_error(KG_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)", name, g->version);
    goto done;
  }
  if ((rc = read_u64(&c, &g->n_tensors, "tensor count")) < 0) goto done;
  if ((rc = read_u64(&c, &g->n_kv, "key/value count")) < 0) goto done;
  /* a key/value takes at least 13 bytes and a tensor info 32: larger counts cannot fit */
  if (g->n_kv > remaining(&c) / 13 || g->n_tensors > remaining(&c) / 32) {
    rc = kg_error(KG_ERR_FORMAT, "%s: %llu keys and %llu tensors cannot fit in %zu bytes", name,
                  (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, size);
    goto done;
  }
  if (g->n_kv && !(g->kv = calloc((size_t)g->n_kv, sizeof(*g->kv)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory for %llu keys", name, (unsigned long long)g->n_kv);
    goto done;
  }
  for (uint64_t i = 0; i < g->n_kv; i++)
    if ((rc = parse_kv(&c, &g->kv[i], i)) < 0) goto done;
  g->alignment = 32;
  const kg_gguf_kv *al = kg_gguf_find(g, "general.alignment");
  if (al) {
    if (al->type != KG_GGUF_UINT32 || al->scalar.u == 0 || (al->scalar.u & (al->scalar.u - 1)) != 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: general.alignment must be a power of two uint32", name);
      goto done;
    }
    g->alignment = (uint32_t)al->scalar.u;
  }
  if (g->n_tensors > remaining(&c) / 32) {
    rc = kg_error(KG_ERR_FORMAT, "%s: %llu tensor infos cannot fit in the %zu bytes left", name,
                  (unsigned long long)g->n_tensors, remaining(&c));
    goto done;
  }
  if (g->n_tensors && !(g->tensors = calloc((size_t)g->n_tensors, sizeof(*g->tensors)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory for %llu tensors", name, (unsigned long long)g->n_tensors);
    goto done;
  }
  for (uint64_t i = 0; i < g->n_tensors; i++)
    if ((rc = parse_tensor_info(&c, &g->tensors[i], i)) < 0) goto done;
  size_t data_start = c.pos + (g->alignment - c.pos % g->alignment) % g->alignment;
  if (g->n_tensors && (data_start < c.pos || data_start > c.size)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: truncated GGUF file (tensor data section starts past the end)", name);
    goto done;
  }
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    kg_gguf_tensor_info *ti = &g->tensors[i];
    int nl = (int)(ti->name.len < 120 ? ti->name.len : 120);
    if (ti->offset % g->alignment != 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' offset %llu is not a multiple of the alignment %u", name, nl,
                    ti->name.data, (unsigned long long)ti->offset, g->alignment);
      goto done;
    }
    size_t avail = c.size - data_start;
    if (ti->offset > avail || ti->nbytes > avail - ti->offset) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor '%.*s' (%zu bytes at offset %llu) lies past the end of the file", name,
                    nl, ti->name.data, ti->nbytes, (unsigned long long)ti->offset);
      goto done;
    }
    ti->data = data + data_start + ti->offset;
  }
  if ((rc = check_duplicates(g, name)) < 0) goto done;
done:
  if (rc < 0) {
    kg_gguf_free(g);
    g = NULL;
  }
  *out = g;
  return rc;
}

int kg_gguf_open(const char *path, kg_gguf **out) {
  kg_mapped_file *f = NULL;
  *out = NULL;
  KG_TRY(kg_mapped_file_open(path, &f));
  int rc = kg_gguf_parse(f->data, f->size, path, out);
  if (rc < 0) {
    kg_mapped_file_close(f);
    return rc;
  }
  (*out)->file = f;
  return KG_OK;
}

void kg_gguf_free(kg_gguf *g) {
  if (!g) return;
  free(g->kv);
  free(g->tensors);
  free(g->path);
  kg_mapped_file_close(g->file);
  free(g);
}

int kg_gguf_string_eq(kg_gguf_string s, const char *str) {
  size_t n = strlen(str);
  return s.len == n && (n == 0 || memcmp(s.data, str, n) == 0);
}

const kg_gguf_kv *kg_gguf_find(const kg_gguf *g, const char *key) {
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (kg_gguf_string_eq(g->kv[i].key, key)) return &g->kv[i];
  return NULL;
}

const kg_gguf_tensor_info *kg_gguf_find_tensor(const kg_gguf *g, const char *name) {
  for (uint64_t i = 0; i < g->n_tensors; i++)
    if (kg_gguf_string_eq(g->tensors[i].name, name)) return &g->tensors[i];
  return NULL;
}

static int is_int_type(kg_gguf_type t) {
  return t == KG_GGUF_UINT8 || t == KG_GGUF_INT8 || t == KG_GGUF_UINT16 || t == KG_GGUF_INT16 ||
         t == KG_GGUF_UINT32 || t == KG_GGUF_INT32 || t == KG_GGUF_UINT64 || t == KG_GGUF_INT64;
}
static int is_signed_type(kg_gguf_type t) {
  return t == KG_GGUF_INT8 || t == KG_GGUF_INT16 || t == KG_GGUF_INT32 || t == KG_GGUF_INT64;
}

static int find_typed(const kg_gguf *g, const char *key, const kg_gguf_kv **kv) {
  *kv = kg_gguf_find(g, key);
  if (!*kv) return kg_error(KG_ERR_NOT_FOUND, "%s: key '%s' not found", g->path, key);
  return KG_OK;
}

static int type_mismatch(const kg_gguf *g, const char *key, const kg_gguf_kv *kv, const char *want) {
  return kg_error(KG_ERR_FORMAT, "%s: key '%s' is a %s, expected %s", g->path, key, kg_gguf_type_name(kv->type), want);
}

int kg_gguf_get_int(const kg_gguf *g, const char *key, int64_t *out) {
  const kg_gguf_kv *kv;
  KG_TRY(find_typed(g, key, &kv));
  if (!is_int_type(kv->type)) return type_mismatch(g, key, kv, "an integer");
  if (is_signed_type(kv->type)) {
    *out = kv->scalar.i;
  } else {
    if (kv->scalar.u > (uint64_t)INT64_MAX)
      return kg_error(KG_ERR_FORMAT, "%s: key '%s' value %llu out of range", g->path, key,
                      (unsigned long long)kv->scalar.u);
    *out = (int64_t)kv->scalar.u;
  }
  return KG_OK;
}

int kg_gguf_get_float(const kg_gguf *g, const char *key, double *out) {
  const kg_gguf_kv *kv;
  KG_TRY(find_typed(g, key, &kv));
  if (kv->type == KG_GGUF_FLOAT32 || kv->type == KG_GGUF_FLOAT64) *out = kv->scalar.f;
  else if (is_int_type(kv->type)) *out = is_signed_type(kv->type) ? (double)kv->scalar.i : (double)kv->scalar.u;
  else return type_mismatch(g, key, kv, "a number");
  return KG_OK;
}

int kg_gguf_get_bool(const kg_gguf *g, const char *key, int *out) {
  const kg_gguf_kv *kv;
  KG_TRY(find_typed(g, key, &kv));
  if (kv->type != KG_GGUF_BOOL) return type_mismatch(g, key, kv, "a bool");
  *out = kv->scalar.u != 0;
  return KG_OK;
}

int kg_gguf_get_string(const kg_gguf *g, const char *key, char **out) {
  const kg_gguf_kv *kv;
  *out = NULL;
  KG_TRY(find_typed(g, key, &kv));
  if (kv->type != KG_GGUF_STRING) return type_mismatch(g, key, kv, "a string");
  uint64_t len = rd_le(kv->value, 8);
  char *s = malloc((size_t)len + 1);
  if (!s) return kg_error(KG_ERR_NOMEM, "%s: out of memory copying '%s'", g->path, key);
  memcpy(s, kv->value + 8, (size_t)len);
  s[len] = '\0';
  *out = s;
  return KG_OK;
}

void kg_gguf_string_iter_init(kg_gguf_string_iter *it, const kg_gguf_kv *kv) {
  it->kv = kv;
  it->index = 0;
  it->pos = kv->value;
}

int kg_gguf_string_iter_next(kg_gguf_string_iter *it, kg_gguf_string *out) {
  const kg_gguf_kv *kv = it->kv;
  if (kv->type != KG_GGUF_ARRAY || kv->array_type != KG_GGUF_STRING || it->index >= kv->array_len) return 0;
  /* lengths were validated by the parser, so walking cannot leave the buffer */
  uint64_t len = rd_le(it->pos, 8);
  out->data = (const char *)(it->pos + 8);
  out->len = len;
  it->pos += 8 + (size_t)len;
  it->index++;
  return 1;
}

int kg_gguf_array_string(const kg_gguf_kv *kv, uint64_t i, kg_gguf_string *out) {
  if (kv->type != KG_GGUF_ARRAY || kv->array_type != KG_GGUF_STRING)
    return kg_error(KG_ERR_FORMAT, "key '%.*s' is not an array of strings", (int)(kv->key.len < 120 ? kv->key.len : 120),
                    kv->key.data);
  if (i >= kv->array_len)
    return kg_error(KG_ERR_ARG, "index %llu past the end of '%.*s' (%llu strings)", (unsigned long long)i,
                    (int)(kv->key.len < 120 ? kv->key.len : 120), kv->key.data, (unsigned long long)kv->array_len);
  kg_gguf_string_iter it;
  kg_gguf_string_iter_init(&it, kv);
  for (uint64_t k = 0; k <= i; k++) kg_gguf_string_iter_next(&it, out);
  return KG_OK;
}

int kg_gguf_array_number(const kg_gguf_kv *kv, uint64_t i, double *out) {
  int kl = (int)(kv->key.len < 120 ? kv->key.len : 120);
  size_t sz = kv->type == KG_GGUF_ARRAY ? scalar_size(kv->array_type) : 0;
  if (!sz || kv->array_type == KG_GGUF_BOOL)
    return kg_error(KG_ERR_FORMAT, "key '%.*s' is not an array of numbers", kl, kv->key.data);
  if (i >= kv->array_len)
    return kg_error(KG_ERR_ARG, "index %llu past the end of '%.*s' (%llu values)", (unsigned long long)i, kl,
                    kv->key.data, (unsigned long long)kv->array_len);
  kg_gguf_kv tmp = {0};
  decode_scalar(kv->array_type, kv->value + (size_t)i * sz, &tmp);
  if (kv->array_type == KG_GGUF_FLOAT32 || kv->array_type == KG_GGUF_FLOAT64) *out = tmp.scalar.f;
  else if (is_signed_type(kv->array_type)) *out = (double)tmp.scalar.i;
  else *out = (double)tmp.scalar.u;
  return KG_OK;
}
