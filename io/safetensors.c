#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/json_util.h"
#include "io/mapfile.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define MAX_HEADER_BYTES ((uint64_t)100000000)

typedef struct st_dtype {
  const char *name;
  size_t size;
  kg_dtype dtype;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F64", 8, KG_DT_F64},       {"F32", 4, KG_DT_F32},       {"F16", 2, KG_DT_F16},
    {"BF16", 2, KG_DT_BF16},     {"I64", 8, KG_DT_I64},       {"I32", 4, KG_DT_I32},
    {"I16", 2, KG_DT_I16},       {"I8", 1, KG_DT_I8},         {"U64", 8, KG_DT_COUNT},
    {"U32", 4, KG_DT_COUNT},     {"U16", 2, KG_DT_COUNT},     {"U8", 1, KG_DT_COUNT},
    {"BOOL", 1, KG_DT_COUNT},    {"F8_E4M3", 1, KG_DT_COUNT}, {"F8_E5M2", 1, KG_DT_COUNT},
};

static const st_dtype *st_dtype_lookup(const char *name) {
  for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
    if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
  return NULL;
}

static int parse_entry(const cJSON *e, kg_st_tensor *t, const unsigned char *data_base, size_t data_len,
                       const char *src) {
  const char *nm = t->name;
  if (!cJSON_IsObject(e)) return kg_error(KG_ERR_FORMAT, "%s: header entry '%s' is not an object", src, nm);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' needs \"dtype\", \"shape\" and \"data_offsets\"", src, nm);
  const st_dtype *sd = st_dtype_lookup(dt->valuestring);
  if (!sd) return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%.16s'", src, nm, dt->valuestring);
  snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", sd->name);
  t->dtype = sd->dtype;
  int nd = cJSON_GetArraySize(shape);
  if (nd > KG_ST_MAX_DIMS) return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' has %d dimensions", src, nm, nd);
  t->ndim = nd;
  uint64_t elems = 1;
  int d = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, shape) {
    uint64_t v;
    if (kg_json_exact_uint(it, &v) < 0)
      return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' has a shape entry that is not a non-negative integer", src, nm);
    if (v && elems > UINT64_MAX / v) return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' shape overflows", src, nm);
    elems *= v;
    t->shape[d++] = (int64_t)v;
  }
  uint64_t begin, end;
  if (cJSON_GetArraySize(offs) != 2 || kg_json_exact_uint(cJSON_GetArrayItem(offs, 0), &begin) < 0 ||
      kg_json_exact_uint(cJSON_GetArrayItem(offs, 1), &end) < 0 || end < begin)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' has invalid data_offsets", src, nm);
  if (end > data_len)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' data [%llu, %llu) lies past the end of the file (%zu data bytes)",
                    src, nm, (unsigned long long)begin, (unsigned long long)end, data_len);
  if (elems > UINT64_MAX / sd->size || elems * sd->size != end - begin)
    return kg_error(KG_ERR_FORMAT, "%s: tensor '%s' spans %llu bytes but its shape and dtype %s need %llu", src, nm,
                    (unsigned long long)(end - begin), sd->name,
                    (unsigned long long)(elems <= UINT64_MAX / sd->size ? elems * sd->size : UINT64_MAX));
  t->data = data_base + begin;
  t->nbytes = (size_t)(end - begin);
  return KG_OK;
}

typedef struct span {
  uint64_t begin, end;
  size_t index;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rejects overlapping byte ranges and repeated names. */
static int check_layout(const kg_safetensors *st, const char *src) {
  int rc = KG_OK;
  size_t n = st->n_tensors;
  span *spans = n ? malloc(n * sizeof(*spans)) : NULL;
  const char **names = n ? malloc(n * sizeof(*names)) : NULL;
  if (n && (!spans || !names)) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", src);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    /* all data pointers are into one buffer, so their addresses order them */
    spans[i].index = i;
    spans[i].begin = (uint64_t)(uintptr_t)st->tensors[i].data;
    spans[i].end = spans[i].begin + st->tensors[i].nbytes;
    names[i] = st->tensors[i].name;
  }
  if (n > 1) qsort(spans, n, sizeof(*spans), cmp_span);
  for (size_t i = 1; i < n; i++) {
    /* empty tensors occupy no bytes and cannot overlap */
    if (spans[i].begin < spans[i - 1].end && spans[i].begin != spans[i].end) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", src, st->tensors[spans[i - 1].index].name,
                    st->tensors[spans[i].index].name);
      goto done;
    }
  }
  if (n > 1) qsort(names, n, sizeof(*names), cmp_name_ptr);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(names[i - 1], names[i]) == 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", src, names[i]);
      goto done;
    }
  }
done:
  free(spans);
  free(names);
  return rc;
}

int kg_safetensors_parse(kg_arena *arena, const unsigned char *data, size_t size, const char *name,
                         kg_safetensors **out) {
  int rc = KG_OK;
  cJSON *root = NULL;
  kg_safetensors *st = NULL;
  *out = NULL;
  if (size < 8) {
    rc = kg_error(KG_ERR_FORMAT, "%s: truncated safetensors file (%zu bytes, no header length)", name, size);
    goto done;
  }
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)data[i] << (8 * i);
  if (hlen > size - 8) {
    rc = kg_error(KG_ERR_FORMAT, "%s: safetensors header length %llu runs past the end of the file (%zu bytes)", name,
                  (unsigned long long)hlen, size);
    goto done;
  }
  if (hlen > MAX_HEADER_BYTES || hlen < 2) {
    rc = kg_error(KG_ERR_FORMAT, "%s: safetensors header length %llu is out of range", name, (unsigned long long)hlen);
    goto done;
  }
  if (data[8] != '{') {
    rc = kg_error(KG_ERR_FORMAT, "%s: safetensors header does not start with '{'", name);
    goto done;
  }
  if ((rc = kg_json_parse((const char *)data + 8, (size_t)hlen, name, &root)) < 0) goto done;
  if (!cJSON_IsObject(root)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: safetensors header is not a JSON object", name);
    goto done;
  }
  if (!(st = kg_arena_alloc(arena, sizeof(*st))) || !(st->path = kg_arena_strdup(arena, name))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
    goto done;
  }
  st->data_offset = 8 + (size_t)hlen;
  size_t count = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, root) if (strcmp(e->string ? e->string : "", "__metadata__") != 0) count++;
  if (count && !(st->tensors = kg_arena_alloc(arena, count * sizeof(*st->tensors)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory for %zu tensors", name, count);
    goto done;
  }
  const unsigned char *base = data + st->data_offset;
  size_t data_len = size - st->data_offset;
  cJSON_ArrayForEach(e, root) {
    const char *key = e->string ? e->string : "";
    if (strcmp(key, "__metadata__") == 0) {
      if (!cJSON_IsObject(e)) {
        rc = kg_error(KG_ERR_FORMAT, "%s: __metadata__ is not an object", name);
        goto done;
      }
      continue;
    }
    kg_st_tensor *t = &st->tensors[st->n_tensors];
    if (!(t->name = kg_arena_strdup(arena, key))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
      goto done;
    }
    if ((rc = parse_entry(e, t, base, data_len, name)) < 0) goto done;
    st->n_tensors++;
  }
  if ((rc = check_layout(st, name)) < 0) goto done;
  *out = st;
done:
  cJSON_Delete(root);
  return rc;
}

int kg_safetensors_open(kg_arena *arena, const char *path, kg_safetensors **out) {
  kg_mapped_file *f = NULL;
  *out = NULL;
  KG_TRY(kg_mapped_file_open(path, &f));
  int rc = kg_arena_adopt_mapping(arena, f);
  if (rc < 0) {
    kg_mapped_file_close(f);
    return rc;
  }
  return kg_safetensors_parse(arena, f->data, f->size, path, out);
}

const kg_st_tensor *kg_safetensors_find(const kg_safetensors *st, const char *name) {
  for (size_t i = 0; i < st->n_tensors; i++)
    if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
  return NULL;
}
