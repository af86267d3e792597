/* The in-memory cube: schema, values and attributes (see io/cube.h).
 * Files are in cube_hdf5.c, merging in cube_merge.c. */
#include "io/cube.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/cube_internal.h"
#include "io/error.h"

/* ---------- helpers ---------- */

int kg_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    if (c < 0x80) { i++; continue; }
    int extra;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { extra = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { extra = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { extra = 3; cp = c & 0x07; }
    else return 0; /* stray continuation byte, overlong 2-byte lead, or > U+10FFFF */
    if (len - i <= (size_t)extra) return 0;
    for (int k = 1; k <= extra; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    i += (size_t)extra + 1;
  }
  return 1;
}

void kg_format_f64(double v, char *out, size_t cap) {
  char buf[64];
  if (!cap) return;
  if (isnan(v)) snprintf(buf, sizeof(buf), "nan");
  else if (isinf(v)) snprintf(buf, sizeof(buf), v > 0 ? "inf" : "-inf");
  else
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, sizeof(buf), "%.*g", prec, v);
      if (strtod(buf, NULL) == v) break;
    }
  snprintf(out, cap, "%s", buf);
}

/* Names netCDF or the HDF5 dimension-scale API keep for themselves. */
static int reserved_attr_key(const char *key) {
  static const char *const reserved[] = {"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "coordinates"};
  if (key[0] == '_') return 1;
  for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
    if (!strcmp(key, reserved[i])) return 1;
  return 0;
}

int kg_cube_check_name(const char *what, const char *name) {
  if (!name || !name[0]) return kg_error(KG_ERR_ARG, "cube: empty %s name", what);
  size_t n = strlen(name);
  if (n > 255) return kg_error(KG_ERR_ARG, "cube: %s name '%.40s...' is longer than 255 bytes", what, name);
  char c0 = name[0];
  if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')))
    return kg_error(KG_ERR_ARG, "cube: %s name '%s' must start with a letter", what, name);
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
             c == '.' || c == '+';
    if (!ok) return kg_error(KG_ERR_ARG, "cube: %s name '%s' has character '%c' (use letters, digits, _-.+)", what, name, c);
  }
  return KG_OK;
}

static char *dup_or_error(const char *s) {
  char *d = strdup(s ? s : "");
  if (!d) kg_error(KG_ERR_NOMEM, "cube: out of memory copying a string of %zu bytes", strlen(s ? s : ""));
  return d;
}

int kg_cube_mul_cells(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0 || (b && a > INT64_MAX / b)) return kg_error(KG_ERR_ARG, "cube: cell count overflows");
  *out = a * b;
  return KG_OK;
}

/* ---------- lifetime ---------- */

kg_cube *kg_cube_create(void) {
  kg_cube *c = calloc(1, sizeof(*c));
  if (!c) kg_error(KG_ERR_NOMEM, "cube: out of memory");
  return c;
}

static void attrs_free(kg_cube_attrs *a) {
  for (int i = 0; i < a->n; i++) {
    free(a->items[i].key);
    free(a->items[i].value);
  }
  free(a->items);
  memset(a, 0, sizeof(*a));
}

static void strs_free(char **s, int64_t n) {
  if (!s) return;
  for (int64_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

void kg_cube_free(kg_cube *c) {
  if (!c) return;
  for (int d = 0; d < c->n_dims; d++) {
    kg_cube_dim *dim = &c->dims[d];
    free(dim->name);
    free(dim->f64);
    free(dim->i32);
    strs_free(dim->str, dim->n);
    attrs_free(&dim->attrs);
  }
  for (int v = 0; v < c->n_vars; v++) {
    kg_cube_var *var = &c->vars[v];
    free(var->name);
    free(var->f64);
    free(var->i32);
    strs_free(var->str, var->cells);
    attrs_free(&var->attrs);
  }
  free(c->dims);
  free(c->vars);
  attrs_free(&c->attrs);
  free(c);
}

/* ---------- dimensions ---------- */

static int name_taken(const kg_cube *c, const char *name) {
  for (int d = 0; d < c->n_dims; d++)
    if (!strcmp(c->dims[d].name, name)) return 1;
  for (int v = 0; v < c->n_vars; v++)
    if (!strcmp(c->vars[v].name, name)) return 1;
  return 0;
}

/* Validates and reserves a slot; the caller fills labels. */
static int new_dim(kg_cube *c, const char *name, kg_cube_type type, int64_t n, kg_cube_dim **out) {
  KG_TRY(kg_cube_check_name("dimension", name));
  if (!strcmp(name, "method"))
    return kg_error(KG_ERR_ARG, "cube: dimension name 'method' collides with xarray's .sel(method=...); pick another");
  if (name_taken(c, name)) return kg_error(KG_ERR_ARG, "cube: name '%s' is already used", name);
  if (n < 1) return kg_error(KG_ERR_ARG, "cube: dimension '%s' needs at least one label", name);
  if (n > (int64_t)1 << 40) return kg_error(KG_ERR_ARG, "cube: dimension '%s' has too many labels", name);
  if (c->n_dims == c->cap_dims) {
    int cap = c->cap_dims ? 2 * c->cap_dims : 8;
    kg_cube_dim *dims = realloc(c->dims, (size_t)cap * sizeof(*dims));
    if (!dims) return kg_error(KG_ERR_NOMEM, "cube: out of memory adding dimension '%s'", name);
    c->dims = dims;
    c->cap_dims = cap;
  }
  kg_cube_dim *dim = &c->dims[c->n_dims];
  memset(dim, 0, sizeof(*dim));
  dim->type = type;
  dim->n = n;
  *out = dim;
  return KG_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int kg_cube_add_dim_f64(kg_cube *c, const char *name, const double *labels, int64_t n) {
  kg_cube_dim *dim;
  double *sorted = NULL;
  int rc = new_dim(c, name, KG_CUBE_F64, n, &dim);
  if (rc < 0) return rc;
  if (!(sorted = malloc((size_t)n * sizeof(double)))) return kg_error(KG_ERR_NOMEM, "cube: out of memory");
  for (int64_t i = 0; i < n; i++) {
    if (isnan(labels[i])) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' label %lld is NaN", name, (long long)i);
      goto done;
    }
    sorted[i] = labels[i];
  }
  qsort(sorted, (size_t)n, sizeof(double), cmp_double);
  for (int64_t i = 1; i < n; i++)
    if (sorted[i] == sorted[i - 1]) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' has label %g twice", name, sorted[i]);
      goto done;
    }
  if (!(dim->name = dup_or_error(name)) || !(dim->f64 = malloc((size_t)n * sizeof(double)))) {
    free(dim->name);
    rc = kg_error(KG_ERR_NOMEM, "cube: out of memory adding dimension '%s'", name);
    goto done;
  }
  memcpy(dim->f64, labels, (size_t)n * sizeof(double));
  rc = c->n_dims++;
done:
  free(sorted);
  return rc;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int kg_cube_add_dim_i32(kg_cube *c, const char *name, const int32_t *labels, int64_t n) {
  kg_cube_dim *dim;
  int32_t *sorted = NULL;
  int rc = new_dim(c, name, KG_CUBE_I32, n, &dim);
  if (rc < 0) return rc;
  if (!(sorted = malloc((size_t)n * sizeof(int32_t)))) return kg_error(KG_ERR_NOMEM, "cube: out of memory");
  memcpy(sorted, labels, (size_t)n * sizeof(int32_t));
  qsort(sorted, (size_t)n, sizeof(int32_t), cmp_i32);
  for (int64_t i = 1; i < n; i++)
    if (sorted[i] == sorted[i - 1]) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' has label %d twice", name, sorted[i]);
      goto done;
    }
  if (!(dim->name = dup_or_error(name)) || !(dim->i32 = malloc((size_t)n * sizeof(int32_t)))) {
    free(dim->name);
    rc = kg_error(KG_ERR_NOMEM, "cube: out of memory adding dimension '%s'", name);
    goto done;
  }
  memcpy(dim->i32, labels, (size_t)n * sizeof(int32_t));
  rc = c->n_dims++;
done:
  free(sorted);
  return rc;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int kg_cube_add_dim_str(kg_cube *c, const char *name, const char *const *labels, int64_t n) {
  kg_cube_dim *dim;
  const char **sorted = NULL;
  int rc = new_dim(c, name, KG_CUBE_STR, n, &dim);
  if (rc < 0) return rc;
  if (!(sorted = malloc((size_t)n * sizeof(*sorted)))) return kg_error(KG_ERR_NOMEM, "cube: out of memory");
  for (int64_t i = 0; i < n; i++) {
    if (!labels[i] || !labels[i][0]) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' label %lld is empty", name, (long long)i);
      goto done;
    }
    if (!kg_utf8_valid(labels[i], strlen(labels[i]))) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' label %lld is not valid UTF-8", name, (long long)i);
      goto done;
    }
    sorted[i] = labels[i];
  }
  qsort(sorted, (size_t)n, sizeof(*sorted), cmp_str_ptr);
  for (int64_t i = 1; i < n; i++)
    if (!strcmp(sorted[i], sorted[i - 1])) {
      rc = kg_error(KG_ERR_ARG, "cube: dimension '%s' has label '%s' twice", name, sorted[i]);
      goto done;
    }
  if (!(dim->name = dup_or_error(name)) || !(dim->str = calloc((size_t)n, sizeof(char *)))) {
    free(dim->name);
    rc = kg_error(KG_ERR_NOMEM, "cube: out of memory adding dimension '%s'", name);
    goto done;
  }
  for (int64_t i = 0; i < n; i++)
    if (!(dim->str[i] = dup_or_error(labels[i]))) {
      strs_free(dim->str, n);
      free(dim->name);
      rc = KG_ERR_NOMEM;
      goto done;
    }
  rc = c->n_dims++;
done:
  free(sorted);
  return rc;
}

int kg_cube_n_dims(const kg_cube *c) { return c->n_dims; }

int kg_cube_find_dim(const kg_cube *c, const char *name) {
  for (int d = 0; d < c->n_dims; d++)
    if (!strcmp(c->dims[d].name, name)) return d;
  return kg_error(KG_ERR_NOT_FOUND, "cube: no dimension '%s'", name);
}

const char *kg_cube_dim_name(const kg_cube *c, int d) {
  KG_ASSERT(d >= 0 && d < c->n_dims);
  return c->dims[d].name;
}
kg_cube_type kg_cube_dim_type(const kg_cube *c, int d) {
  KG_ASSERT(d >= 0 && d < c->n_dims);
  return c->dims[d].type;
}
int64_t kg_cube_dim_size(const kg_cube *c, int d) {
  KG_ASSERT(d >= 0 && d < c->n_dims);
  return c->dims[d].n;
}
double kg_cube_label_f64(const kg_cube *c, int d, int64_t i) {
  KG_ASSERT(d >= 0 && d < c->n_dims && c->dims[d].type == KG_CUBE_F64 && i >= 0 && i < c->dims[d].n);
  return c->dims[d].f64[i];
}
int32_t kg_cube_label_i32(const kg_cube *c, int d, int64_t i) {
  KG_ASSERT(d >= 0 && d < c->n_dims && c->dims[d].type == KG_CUBE_I32 && i >= 0 && i < c->dims[d].n);
  return c->dims[d].i32[i];
}
const char *kg_cube_label_str(const kg_cube *c, int d, int64_t i) {
  KG_ASSERT(d >= 0 && d < c->n_dims && c->dims[d].type == KG_CUBE_STR && i >= 0 && i < c->dims[d].n);
  return c->dims[d].str[i];
}

int64_t kg_cube_label_index_num(const kg_cube *c, int d, double label) {
  KG_ASSERT(d >= 0 && d < c->n_dims);
  const kg_cube_dim *dim = &c->dims[d];
  for (int64_t i = 0; i < dim->n; i++) {
    if (dim->type == KG_CUBE_F64 && dim->f64[i] == label) return i;
    if (dim->type == KG_CUBE_I32 && (double)dim->i32[i] == label) return i;
  }
  return -1;
}

int64_t kg_cube_label_index_str(const kg_cube *c, int d, const char *label) {
  KG_ASSERT(d >= 0 && d < c->n_dims);
  const kg_cube_dim *dim = &c->dims[d];
  if (dim->type != KG_CUBE_STR) return -1;
  for (int64_t i = 0; i < dim->n; i++)
    if (!strcmp(dim->str[i], label)) return i;
  return -1;
}

void kg_cube_label_text(const kg_cube *c, int d, int64_t i, char *out, size_t cap) {
  KG_ASSERT(d >= 0 && d < c->n_dims && i >= 0 && i < c->dims[d].n);
  const kg_cube_dim *dim = &c->dims[d];
  if (!cap) return;
  if (dim->type == KG_CUBE_I32) {
    snprintf(out, cap, "%d", dim->i32[i]);
  } else if (dim->type == KG_CUBE_STR) {
    snprintf(out, cap, "%s", dim->str[i]);
  } else {
    kg_format_f64(dim->f64[i], out, cap);
  }
}

/* ---------- variables ---------- */

int kg_cube_add_var(kg_cube *c, const char *name, kg_cube_type type, const char *const *dims, int ndims) {
  KG_TRY(kg_cube_check_name("variable", name));
  if (name_taken(c, name)) return kg_error(KG_ERR_ARG, "cube: name '%s' is already used", name);
  if (type != KG_CUBE_F64 && type != KG_CUBE_I32 && type != KG_CUBE_STR)
    return kg_error(KG_ERR_ARG, "cube: variable '%s' has unknown type %d", name, (int)type);
  if (ndims < 0 || ndims > KG_CUBE_MAX_RANK)
    return kg_error(KG_ERR_ARG, "cube: variable '%s' has %d dimensions (at most %d)", name, ndims, KG_CUBE_MAX_RANK);
  kg_cube_var var;
  memset(&var, 0, sizeof(var));
  var.type = type;
  var.ndims = ndims;
  var.fill_i32 = KG_CUBE_I32_FILL;
  var.cells = 1;
  for (int k = 0; k < ndims; k++) {
    int d = -1;
    for (int j = 0; j < c->n_dims; j++)
      if (dims[k] && !strcmp(c->dims[j].name, dims[k])) d = j;
    if (d < 0) return kg_error(KG_ERR_NOT_FOUND, "cube: variable '%s' uses unknown dimension '%s'", name, dims[k] ? dims[k] : "(null)");
    for (int j = 0; j < k; j++)
      if (var.dims[j] == d) return kg_error(KG_ERR_ARG, "cube: variable '%s' uses dimension '%s' twice", name, dims[k]);
    var.dims[k] = d;
    KG_TRY(kg_cube_mul_cells(var.cells, c->dims[d].n, &var.cells));
  }
  if ((uint64_t)var.cells > SIZE_MAX / sizeof(double))
    return kg_error(KG_ERR_NOMEM, "cube: variable '%s' has too many cells", name);
  if (c->n_vars == c->cap_vars) {
    int cap = c->cap_vars ? 2 * c->cap_vars : 8;
    kg_cube_var *vars = realloc(c->vars, (size_t)cap * sizeof(*vars));
    if (!vars) return kg_error(KG_ERR_NOMEM, "cube: out of memory adding variable '%s'", name);
    c->vars = vars;
    c->cap_vars = cap;
  }
  size_t n = (size_t)var.cells;
  if (type == KG_CUBE_F64) {
    if ((var.f64 = malloc(n * sizeof(double))))
      for (size_t i = 0; i < n; i++) var.f64[i] = NAN;
  } else if (type == KG_CUBE_I32) {
    if ((var.i32 = malloc(n * sizeof(int32_t))))
      for (size_t i = 0; i < n; i++) var.i32[i] = KG_CUBE_I32_FILL;
  } else {
    var.str = calloc(n ? n : 1, sizeof(char *));
  }
  if ((!var.f64 && !var.i32 && !var.str) || !(var.name = strdup(name))) {
    free(var.f64);
    free(var.i32);
    free(var.str);
    return kg_error(KG_ERR_NOMEM, "cube: out of memory for variable '%s' (%lld cells)", name, (long long)var.cells);
  }
  c->vars[c->n_vars] = var;
  return c->n_vars++;
}

static const kg_cube_var *get_var(const kg_cube *c, int v) {
  KG_ASSERT(v >= 0 && v < c->n_vars);
  return &c->vars[v];
}

int kg_cube_set_fill_i32(kg_cube *c, int v, int32_t fill) {
  kg_cube_var *var = (kg_cube_var *)get_var(c, v);
  if (var->type != KG_CUBE_I32) return kg_error(KG_ERR_ARG, "cube: variable '%s' is not int32", var->name);
  for (int64_t i = 0; i < var->cells; i++)
    if (var->i32[i] == var->fill_i32) var->i32[i] = fill;
  var->fill_i32 = fill;
  return KG_OK;
}

int kg_cube_n_vars(const kg_cube *c) { return c->n_vars; }

int kg_cube_find_var(const kg_cube *c, const char *name) {
  for (int v = 0; v < c->n_vars; v++)
    if (!strcmp(c->vars[v].name, name)) return v;
  return kg_error(KG_ERR_NOT_FOUND, "cube: no variable '%s'", name);
}

const char *kg_cube_var_name(const kg_cube *c, int v) { return get_var(c, v)->name; }
kg_cube_type kg_cube_var_type(const kg_cube *c, int v) { return get_var(c, v)->type; }
int kg_cube_var_ndims(const kg_cube *c, int v) { return get_var(c, v)->ndims; }
int kg_cube_var_dim(const kg_cube *c, int v, int axis) {
  const kg_cube_var *var = get_var(c, v);
  KG_ASSERT(axis >= 0 && axis < var->ndims);
  return var->dims[axis];
}
int64_t kg_cube_var_cells(const kg_cube *c, int v) { return get_var(c, v)->cells; }
int32_t kg_cube_var_fill_i32(const kg_cube *c, int v) { return get_var(c, v)->fill_i32; }

int kg_cube_flat_index(const kg_cube *c, int v, const int64_t *index, int64_t *flat) {
  const kg_cube_var *var = get_var(c, v);
  int64_t f = 0;
  for (int k = 0; k < var->ndims; k++) {
    int64_t n = c->dims[var->dims[k]].n;
    if (!index || index[k] < 0 || index[k] >= n)
      return kg_error(KG_ERR_ARG, "cube: variable '%s' axis %d (%s): index %lld outside [0, %lld)", var->name, k,
                      c->dims[var->dims[k]].name, index ? (long long)index[k] : -1LL, (long long)n);
    f = f * n + index[k];
  }
  *flat = f;
  return KG_OK;
}

void kg_cube_unflatten(const kg_cube *c, int v, int64_t flat, int64_t *index) {
  const kg_cube_var *var = get_var(c, v);
  KG_ASSERT(flat >= 0 && flat < var->cells);
  for (int k = var->ndims - 1; k >= 0; k--) {
    int64_t n = c->dims[var->dims[k]].n;
    index[k] = flat % n;
    flat /= n;
  }
}

static int typed_cell(const kg_cube *c, int v, kg_cube_type want, const int64_t *index, int64_t *flat) {
  const kg_cube_var *var = get_var(c, v);
  static const char *const names[] = {"float64", "int32", "string"};
  if (var->type != want)
    return kg_error(KG_ERR_ARG, "cube: variable '%s' is %s, not %s", var->name, names[var->type], names[want]);
  return kg_cube_flat_index(c, v, index, flat);
}

int kg_cube_set_f64(kg_cube *c, int v, const int64_t *index, double value) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_F64, index, &f));
  c->vars[v].f64[f] = value;
  return KG_OK;
}

int kg_cube_set_i32(kg_cube *c, int v, const int64_t *index, int32_t value) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_I32, index, &f));
  c->vars[v].i32[f] = value;
  return KG_OK;
}

int kg_cube_set_str_flat(kg_cube *c, int v, int64_t f, const char *value) {
  kg_cube_var *var = &c->vars[v];
  char *copy = NULL;
  if (value && value[0]) {
    if (!kg_utf8_valid(value, strlen(value)))
      return kg_error(KG_ERR_ARG, "cube: value for variable '%s' is not valid UTF-8", var->name);
    if (!(copy = dup_or_error(value))) return KG_ERR_NOMEM;
  }
  free(var->str[f]);
  var->str[f] = copy;
  return KG_OK;
}

int kg_cube_set_str(kg_cube *c, int v, const int64_t *index, const char *value) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_STR, index, &f));
  return kg_cube_set_str_flat(c, v, f, value);
}

int kg_cube_get_f64(const kg_cube *c, int v, const int64_t *index, double *out) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_F64, index, &f));
  *out = c->vars[v].f64[f];
  return KG_OK;
}

int kg_cube_get_i32(const kg_cube *c, int v, const int64_t *index, int32_t *out) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_I32, index, &f));
  *out = c->vars[v].i32[f];
  return KG_OK;
}

int kg_cube_get_str(const kg_cube *c, int v, const int64_t *index, const char **out) {
  int64_t f;
  KG_TRY(typed_cell(c, v, KG_CUBE_STR, index, &f));
  *out = c->vars[v].str[f] ? c->vars[v].str[f] : "";
  return KG_OK;
}

int kg_cube_flat_is_fill(const kg_cube *c, int v, int64_t f) {
  const kg_cube_var *var = get_var(c, v);
  KG_ASSERT(f >= 0 && f < var->cells);
  switch (var->type) {
  case KG_CUBE_F64: return isnan(var->f64[f]);
  case KG_CUBE_I32: return var->i32[f] == var->fill_i32;
  default: return !var->str[f] || !var->str[f][0];
  }
}

int kg_cube_is_fill(const kg_cube *c, int v, const int64_t *index) {
  int64_t f;
  KG_TRY(kg_cube_flat_index(c, v, index, &f));
  return kg_cube_flat_is_fill(c, v, f);
}

const double *kg_cube_data_f64(const kg_cube *c, int v) { return get_var(c, v)->f64; }
const int32_t *kg_cube_data_i32(const kg_cube *c, int v) { return get_var(c, v)->i32; }
const char *const *kg_cube_data_str(const kg_cube *c, int v) { return (const char *const *)get_var(c, v)->str; }

/* ---------- attributes ---------- */

kg_cube_attrs *kg_cube_attrs_of(const kg_cube *c, int target) {
  if (target >= 0) {
    KG_ASSERT(target < c->n_vars);
    return (kg_cube_attrs *)&c->vars[target].attrs;
  }
  if (target == KG_CUBE_GLOBAL) return (kg_cube_attrs *)&c->attrs;
  int d = -2 - target;
  KG_ASSERT(d >= 0 && d < c->n_dims);
  return (kg_cube_attrs *)&c->dims[d].attrs;
}

int kg_cube_set_attr(kg_cube *c, int target, const char *key, const char *value) {
  KG_TRY(kg_cube_check_name("attribute", key));
  if (reserved_attr_key(key)) return kg_error(KG_ERR_ARG, "cube: attribute name '%s' is reserved by netCDF", key);
  if (!value) value = "";
  if (!kg_utf8_valid(value, strlen(value)))
    return kg_error(KG_ERR_ARG, "cube: attribute '%s' is not valid UTF-8", key);
  kg_cube_attrs *a = kg_cube_attrs_of(c, target);
  char *v = dup_or_error(value);
  if (!v) return KG_ERR_NOMEM;
  for (int i = 0; i < a->n; i++)
    if (!strcmp(a->items[i].key, key)) {
      free(a->items[i].value);
      a->items[i].value = v;
      return KG_OK;
    }
  if (a->n == a->cap) {
    int cap = a->cap ? 2 * a->cap : 8;
    kg_cube_attr *items = realloc(a->items, (size_t)cap * sizeof(*items));
    if (!items) {
      free(v);
      return kg_error(KG_ERR_NOMEM, "cube: out of memory adding attribute '%s'", key);
    }
    a->items = items;
    a->cap = cap;
  }
  char *k = dup_or_error(key);
  if (!k) {
    free(v);
    return KG_ERR_NOMEM;
  }
  a->items[a->n].key = k;
  a->items[a->n].value = v;
  a->n++;
  return KG_OK;
}

const char *kg_cube_get_attr(const kg_cube *c, int target, const char *key) {
  const kg_cube_attrs *a = kg_cube_attrs_of(c, target);
  for (int i = 0; i < a->n; i++)
    if (!strcmp(a->items[i].key, key)) return a->items[i].value;
  return NULL;
}

int kg_cube_n_attrs(const kg_cube *c, int target) { return kg_cube_attrs_of(c, target)->n; }

const char *kg_cube_attr_key(const kg_cube *c, int target, int i) {
  const kg_cube_attrs *a = kg_cube_attrs_of(c, target);
  KG_ASSERT(i >= 0 && i < a->n);
  return a->items[i].key;
}

const char *kg_cube_attr_value(const kg_cube *c, int target, int i) {
  const kg_cube_attrs *a = kg_cube_attrs_of(c, target);
  KG_ASSERT(i >= 0 && i < a->n);
  return a->items[i].value;
}

/* ---------- copies and text ---------- */

static int copy_attrs(kg_cube *dst, int target, const kg_cube *src, int src_target) {
  const kg_cube_attrs *a = kg_cube_attrs_of(src, src_target);
  for (int i = 0; i < a->n; i++) KG_TRY(kg_cube_set_attr(dst, target, a->items[i].key, a->items[i].value));
  return KG_OK;
}

int kg_cube_copy_dim(kg_cube *dst, const kg_cube *src, int d) {
  const kg_cube_dim *dim = &src->dims[d];
  int nd;
  if (dim->type == KG_CUBE_F64) nd = kg_cube_add_dim_f64(dst, dim->name, dim->f64, dim->n);
  else if (dim->type == KG_CUBE_I32) nd = kg_cube_add_dim_i32(dst, dim->name, dim->i32, dim->n);
  else nd = kg_cube_add_dim_str(dst, dim->name, (const char *const *)dim->str, dim->n);
  if (nd < 0) return nd;
  KG_TRY(copy_attrs(dst, KG_CUBE_DIM(nd), src, KG_CUBE_DIM(d)));
  return nd;
}

int kg_cube_clone(const kg_cube *src, kg_cube **out) {
  int rc = KG_OK;
  kg_cube *c = kg_cube_create();
  *out = NULL;
  if (!c) return KG_ERR_NOMEM;
  for (int d = 0; d < src->n_dims; d++)
    if ((rc = kg_cube_copy_dim(c, src, d)) < 0) goto done;
  for (int v = 0; v < src->n_vars; v++) {
    const kg_cube_var *sv = &src->vars[v];
    const char *dims[KG_CUBE_MAX_RANK];
    for (int k = 0; k < sv->ndims; k++) dims[k] = src->dims[sv->dims[k]].name;
    int nv = kg_cube_add_var(c, sv->name, sv->type, dims, sv->ndims);
    if (nv < 0) { rc = nv; goto done; }
    kg_cube_var *dv = &c->vars[nv];
    dv->fill_i32 = sv->fill_i32;
    if (sv->type == KG_CUBE_F64) memcpy(dv->f64, sv->f64, (size_t)sv->cells * sizeof(double));
    else if (sv->type == KG_CUBE_I32) memcpy(dv->i32, sv->i32, (size_t)sv->cells * sizeof(int32_t));
    else
      for (int64_t i = 0; i < sv->cells; i++)
        if ((rc = kg_cube_set_str_flat(c, nv, i, sv->str[i])) < 0) goto done;
    if ((rc = copy_attrs(c, nv, src, v)) < 0) goto done;
  }
  if ((rc = copy_attrs(c, KG_CUBE_GLOBAL, src, KG_CUBE_GLOBAL)) < 0) goto done;
  *out = c;
  c = NULL;
done:
  kg_cube_free(c);
  return rc < 0 ? rc : KG_OK;
}

void kg_cube_cell_text(const kg_cube *c, int v, const int64_t *index, char *out, size_t cap) {
  const kg_cube_var *var = get_var(c, v);
  size_t used = 0;
  if (!cap) return;
  out[0] = '\0';
  if (var->ndims == 0) snprintf(out, cap, "(scalar)");
  for (int k = 0; k < var->ndims && used + 1 < cap; k++) {
    char label[256];
    kg_cube_label_text(c, var->dims[k], index[k], label, sizeof(label));
    int n = snprintf(out + used, cap - used, "%s%s=%s", k ? ", " : "", c->dims[var->dims[k]].name, label);
    if (n < 0) break;
    used += (size_t)n;
  }
}
