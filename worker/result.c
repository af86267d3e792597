#include "worker/result.h"

#include <stdlib.h>
#include <string.h>

#include "io/error.h"

void kg_cell_result_init(kg_cell_result *r, int64_t cell) {
  memset(r, 0, sizeof(*r));
  r->cell = cell;
  r->ok = 1;
}

void kg_cell_result_free(kg_cell_result *r) {
  for (size_t i = 0; i < r->n; i++) free(r->values[i].str);
  free(r->values);
  r->values = NULL;
  r->n = r->cap = 0;
}

static int push(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, kg_cube_type type,
                kg_cell_value **out) {
  if (var < 0) return kg_error(KG_ERR_ARG, "result for a variable the cube does not have");
  if (kg_cube_var_type(cube, var) != type)
    return kg_error(KG_ERR_ARG, "result type does not match variable %s", kg_cube_var_name(cube, var));
  int64_t flat;
  KG_TRY(kg_cube_flat_index(cube, var, index, &flat));
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 64;
    kg_cell_value *grown = realloc(r->values, cap * sizeof(*grown));
    if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory");
    r->values = grown;
    r->cap = cap;
  }
  kg_cell_value *v = &r->values[r->n++];
  memset(v, 0, sizeof(*v));
  v->var = var;
  v->flat = flat;
  v->type = type;
  *out = v;
  return KG_OK;
}

int kg_cell_result_f64(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, double value) {
  kg_cell_value *v;
  KG_TRY(push(r, cube, var, index, KG_CUBE_F64, &v));
  v->f64 = value;
  return KG_OK;
}

int kg_cell_result_i32(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, int32_t value) {
  kg_cell_value *v;
  KG_TRY(push(r, cube, var, index, KG_CUBE_I32, &v));
  v->i32 = value;
  return KG_OK;
}

int kg_cell_result_str(kg_cell_result *r, const kg_cube *cube, int var, const int64_t *index, const char *value) {
  kg_cell_value *v;
  KG_TRY(push(r, cube, var, index, KG_CUBE_STR, &v));
  if (!(v->str = strdup(value ? value : ""))) {
    r->n--;
    return kg_error(KG_ERR_NOMEM, "out of memory");
  }
  return KG_OK;
}

/* ---- packing: a flat little-endian-agnostic (same binary on every rank) byte stream ---- */

typedef struct writer {
  unsigned char *buf;
  size_t len, cap;
  int failed;
} writer;

static void put(writer *w, const void *p, size_t n) {
  if (w->failed) return;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n) cap *= 2;
    unsigned char *grown = realloc(w->buf, cap);
    if (!grown) {
      w->failed = 1;
      return;
    }
    w->buf = grown;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void put_str(writer *w, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  put(w, &n, sizeof(n));
  put(w, s, n);
}

int kg_cell_result_pack(const kg_cell_result *r, unsigned char **buf, size_t *len) {
  writer w = {0};
  uint64_t n = r->n;
  int32_t ok = r->ok;
  put(&w, &r->cell, sizeof(r->cell));
  put(&w, &ok, sizeof(ok));
  put(&w, &r->wall_s, sizeof(r->wall_s));
  put_str(&w, r->error);
  put_str(&w, r->host);
  put(&w, &n, sizeof(n));
  for (size_t i = 0; i < r->n; i++) {
    const kg_cell_value *v = &r->values[i];
    int32_t var = v->var, type = v->type;
    put(&w, &var, sizeof(var));
    put(&w, &v->flat, sizeof(v->flat));
    put(&w, &type, sizeof(type));
    if (v->type == KG_CUBE_F64) put(&w, &v->f64, sizeof(v->f64));
    else if (v->type == KG_CUBE_I32) put(&w, &v->i32, sizeof(v->i32));
    else put_str(&w, v->str ? v->str : "");
  }
  if (w.failed) {
    free(w.buf);
    return kg_error(KG_ERR_NOMEM, "out of memory packing a cell result");
  }
  *buf = w.buf;
  *len = w.len;
  return KG_OK;
}

typedef struct reader {
  const unsigned char *p, *end;
} reader;

static int get(reader *rd, void *out, size_t n) {
  if ((size_t)(rd->end - rd->p) < n) return kg_error(KG_ERR_FORMAT, "truncated cell result message");
  memcpy(out, rd->p, n);
  rd->p += n;
  return KG_OK;
}

static int get_str(reader *rd, char *out, size_t cap, char **owned) {
  uint32_t n = 0;
  KG_TRY(get(rd, &n, sizeof(n)));
  if ((size_t)(rd->end - rd->p) < n) return kg_error(KG_ERR_FORMAT, "truncated cell result message");
  if (owned) {
    if (!(*owned = malloc((size_t)n + 1))) return kg_error(KG_ERR_NOMEM, "out of memory");
    memcpy(*owned, rd->p, n);
    (*owned)[n] = '\0';
  } else {
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(out, rd->p, k);
    out[k] = '\0';
  }
  rd->p += n;
  return KG_OK;
}

int kg_cell_result_unpack(const unsigned char *buf, size_t len, kg_cell_result *r) {
  reader rd = {buf, buf + len};
  int32_t ok = 0;
  uint64_t n = 0;
  int rc;
  kg_cell_result_init(r, -1);
  if ((rc = get(&rd, &r->cell, sizeof(r->cell))) < 0 || (rc = get(&rd, &ok, sizeof(ok))) < 0 ||
      (rc = get(&rd, &r->wall_s, sizeof(r->wall_s))) < 0 || (rc = get_str(&rd, r->error, sizeof(r->error), NULL)) < 0 ||
      (rc = get_str(&rd, r->host, sizeof(r->host), NULL)) < 0 || (rc = get(&rd, &n, sizeof(n))) < 0)
    return rc;
  r->ok = ok;
  if (n > len) return kg_error(KG_ERR_FORMAT, "corrupt cell result message");
  if (n && !(r->values = calloc((size_t)n, sizeof(kg_cell_value)))) return kg_error(KG_ERR_NOMEM, "out of memory");
  r->cap = (size_t)n;
  for (uint64_t i = 0; i < n; i++) {
    kg_cell_value *v = &r->values[i];
    int32_t var = 0, type = 0;
    if ((rc = get(&rd, &var, sizeof(var))) < 0 || (rc = get(&rd, &v->flat, sizeof(v->flat))) < 0 ||
        (rc = get(&rd, &type, sizeof(type))) < 0)
      goto fail;
    v->var = var;
    v->type = (kg_cube_type)type;
    r->n++;
    if (v->type == KG_CUBE_F64) rc = get(&rd, &v->f64, sizeof(v->f64));
    else if (v->type == KG_CUBE_I32) rc = get(&rd, &v->i32, sizeof(v->i32));
    else if (v->type == KG_CUBE_STR) rc = get_str(&rd, NULL, 0, &v->str);
    else rc = kg_error(KG_ERR_FORMAT, "corrupt cell result message (type %d)", type);
    if (rc < 0) goto fail;
  }
  return KG_OK;
fail:
  kg_cell_result_free(r);
  return rc;
}

int kg_cell_result_retarget(const kg_cell_result *src, const kg_cube *cube, const int64_t *target,
                            kg_cell_result *dst) {
  int64_t index[KG_CUBE_MAX_RANK];
  kg_cell_result_init(dst, src->cell);
  dst->ok = src->ok;
  dst->wall_s = src->wall_s;
  memcpy(dst->error, src->error, sizeof(dst->error));
  memcpy(dst->host, src->host, sizeof(dst->host));
  for (size_t i = 0; i < src->n; i++) {
    const kg_cell_value *v = &src->values[i];
    kg_cube_unflatten(cube, v->var, v->flat, index);
    for (int d = 0; d < KG_GRID_CELL_DIMS; d++) index[d] = target[d];
    int rc = v->type == KG_CUBE_F64   ? kg_cell_result_f64(dst, cube, v->var, index, v->f64)
             : v->type == KG_CUBE_I32 ? kg_cell_result_i32(dst, cube, v->var, index, v->i32)
                                      : kg_cell_result_str(dst, cube, v->var, index, v->str);
    if (rc < 0) {
      kg_cell_result_free(dst);
      return rc;
    }
  }
  return KG_OK;
}

int kg_cell_result_to_record(const kg_cell_result *r, const kg_cube *cube, const char *key, int attempts,
                             kg_cell_record *out) {
  memset(out, 0, sizeof(*out));
  if (r->n) {
    out->entries = calloc(r->n, sizeof(*out->entries));
    out->indices = calloc(r->n * KG_CUBE_MAX_RANK, sizeof(int64_t));
    if (!out->entries || !out->indices) {
      kg_cell_record_free(out);
      return kg_error(KG_ERR_NOMEM, "out of memory");
    }
  }
  for (size_t i = 0; i < r->n; i++) {
    const kg_cell_value *v = &r->values[i];
    int64_t *index = out->indices + i * KG_CUBE_MAX_RANK;
    kg_cube_unflatten(cube, v->var, v->flat, index);
    kg_journal_entry *e = &out->entries[i];
    e->var = kg_cube_var_name(cube, v->var);
    e->ndims = kg_cube_var_ndims(cube, v->var);
    e->index = index;
    e->type = v->type;
    e->f64 = v->f64;
    e->i32 = v->i32;
    e->str = v->str;
  }
  out->rec.cell = key;
  out->rec.status = r->ok ? KG_JOURNAL_DONE : KG_JOURNAL_FAILED;
  out->rec.attempts = attempts;
  out->rec.wall_s = r->wall_s;
  out->rec.host = r->host;
  out->rec.error = r->error;
  out->rec.n_entries = (int)r->n;
  out->rec.entries = out->entries;
  return KG_OK;
}

void kg_cell_record_free(kg_cell_record *out) {
  free(out->entries);
  free(out->indices);
  memset(out, 0, sizeof(*out));
}
