/* Merging cubes of split sweeps (see kg_cube_merge in io/cube.h).
 *
 * Cells are resolved per grid cell when the cubes carry a `status` string
 * variable: for a variable laid over all of status's dimensions, only the
 * inputs whose status ranks highest at that cell contribute (a finished run
 * beats a failed or pending one, and a failed run's error message does not
 * leak into a cell another input finished). Contributing inputs are united;
 * two of them disagreeing is an error when the cell is done (or has no
 * status at all) and resolved in favour of the first input otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/cube.h"
#include "io/cube_internal.h"
#include "io/error.h"
#include "io/log.h"

enum { RANK_NONE = 0, RANK_OTHER = 1, RANK_PENDING = 2, RANK_FAILED = 3, RANK_DONE = 4 };

static int status_rank(const char *s) {
  if (!s || !s[0]) return RANK_NONE;
  if (!strcmp(s, "done")) return RANK_DONE;
  if (!strcmp(s, "failed")) return RANK_FAILED;
  if (!strcmp(s, "pending")) return RANK_PENDING;
  return RANK_OTHER; /* "n/a" and anything the coordinator adds later */
}

static const char *type_name(kg_cube_type t) {
  return t == KG_CUBE_F64 ? "float64" : t == KG_CUBE_I32 ? "int32" : "string";
}

/* ---- schema ---- */

static int cmp_f64(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Adds dimension `name` to out with the union of its labels over all inputs. */
static int merge_dimension(kg_cube *out, const kg_cube *const *in, const char *const *names, int n, const char *name) {
  int rc = KG_OK, first = -1, first_d = -1;
  int64_t total = 0, m = 0;
  double *nums = NULL;
  const char **strs = NULL;
  for (int i = 0; i < n; i++) {
    for (int d = 0; d < in[i]->n_dims; d++) {
      if (strcmp(in[i]->dims[d].name, name)) continue;
      if (first < 0) {
        first = i;
        first_d = d;
      } else if (in[i]->dims[d].type != in[first]->dims[first_d].type) {
        return kg_error(KG_ERR_FORMAT, "merge: dimension '%s' is %s in %s but %s in %s", name,
                        type_name(in[first]->dims[first_d].type), names[first], type_name(in[i]->dims[d].type),
                        names[i]);
      }
      total += in[i]->dims[d].n;
    }
  }
  kg_cube_type type = in[first]->dims[first_d].type;
  if (type == KG_CUBE_STR) strs = malloc((size_t)total * sizeof(*strs));
  else nums = malloc((size_t)total * sizeof(*nums));
  if (!strs && !nums) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
  for (int i = 0; i < n; i++)
    for (int d = 0; d < in[i]->n_dims; d++) {
      const kg_cube_dim *dim = &in[i]->dims[d];
      if (strcmp(dim->name, name)) continue;
      for (int64_t j = 0; j < dim->n; j++) {
        if (type == KG_CUBE_STR) {
          int64_t k = 0;
          while (k < m && strcmp(strs[k], dim->str[j])) k++;
          if (k == m) strs[m++] = dim->str[j];
        } else {
          nums[m++] = type == KG_CUBE_F64 ? dim->f64[j] : (double)dim->i32[j];
        }
      }
    }
  int nd;
  if (type == KG_CUBE_STR) {
    nd = kg_cube_add_dim_str(out, name, strs, m);
  } else {
    qsort(nums, (size_t)m, sizeof(double), cmp_f64);
    int64_t u = 0;
    for (int64_t j = 0; j < m; j++)
      if (u == 0 || nums[j] != nums[u - 1]) nums[u++] = nums[j];
    if (type == KG_CUBE_F64) {
      nd = kg_cube_add_dim_f64(out, name, nums, u);
    } else {
      int32_t *ints = malloc((size_t)u * sizeof(int32_t));
      if (!ints) {
        rc = kg_error(KG_ERR_NOMEM, "merge: out of memory");
        goto done;
      }
      for (int64_t j = 0; j < u; j++) ints[j] = (int32_t)nums[j];
      nd = kg_cube_add_dim_i32(out, name, ints, u);
      free(ints);
    }
  }
  if (nd < 0) {
    rc = nd;
    goto done;
  }
  const kg_cube_attrs *a = &in[first]->dims[first_d].attrs;
  for (int j = 0; j < a->n && rc >= 0; j++) rc = kg_cube_set_attr(out, KG_CUBE_DIM(nd), a->items[j].key, a->items[j].value);
done:
  free(nums);
  free(strs);
  return rc;
}

/* Adds every variable in first-seen order, checking that inputs agree on
 * type, dimensions and int fill. */
static int merge_variables(kg_cube *out, const kg_cube *const *in, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    for (int v = 0; v < in[i]->n_vars; v++) {
      const kg_cube_var *var = &in[i]->vars[v];
      int ov = -1;
      for (int j = 0; j < out->n_vars; j++)
        if (!strcmp(out->vars[j].name, var->name)) ov = j;
      if (ov < 0) {
        const char *dims[KG_CUBE_MAX_RANK];
        for (int k = 0; k < var->ndims; k++) dims[k] = in[i]->dims[var->dims[k]].name;
        ov = kg_cube_add_var(out, var->name, var->type, dims, var->ndims);
        if (ov < 0) return ov;
        out->vars[ov].fill_i32 = var->fill_i32;
        for (int64_t f = 0; var->type == KG_CUBE_I32 && f < out->vars[ov].cells; f++) out->vars[ov].i32[f] = var->fill_i32;
        for (int j = 0; j < var->attrs.n; j++)
          KG_TRY(kg_cube_set_attr(out, ov, var->attrs.items[j].key, var->attrs.items[j].value));
        continue;
      }
      const kg_cube_var *o = &out->vars[ov];
      int same = o->type == var->type && o->ndims == var->ndims;
      for (int k = 0; same && k < var->ndims; k++)
        same = !strcmp(out->dims[o->dims[k]].name, in[i]->dims[var->dims[k]].name);
      if (!same)
        return kg_error(KG_ERR_FORMAT, "merge: variable '%s' has a different type or dimensions in %s than in an earlier input",
                        var->name, names[i]);
      if (var->type == KG_CUBE_I32 && var->fill_i32 != o->fill_i32)
        return kg_error(KG_ERR_FORMAT, "merge: variable '%s' has fill %d in %s but %d in an earlier input", var->name,
                        var->fill_i32, names[i], o->fill_i32);
    }
  return KG_OK;
}

/* ---- values ---- */

typedef struct {
  const kg_cube *const *in;
  const char *const *names;
  int n;
  kg_cube *out;
  int64_t ***label_map; /* [input][input dim][input label] -> out label index */
  int status;           /* out index of `status`, or -1 */
  uint8_t *best;        /* best status rank per out status cell */
} merge_ctx;

static int find_status(const kg_cube *c) {
  for (int v = 0; v < c->n_vars; v++)
    if (!strcmp(c->vars[v].name, "status") && c->vars[v].type == KG_CUBE_STR) return v;
  return -1;
}

/* For a variable over all of status's dimensions, the position of each
 * status axis among the variable's axes; returns 0 when it does not cover
 * them. */
static int status_axes(const kg_cube *c, int status, const kg_cube_var *var, int *pos) {
  const kg_cube_var *s = &c->vars[status];
  for (int k = 0; k < s->ndims; k++) {
    pos[k] = -1;
    for (int a = 0; a < var->ndims; a++)
      if (!strcmp(c->dims[var->dims[a]].name, c->dims[s->dims[k]].name)) pos[k] = a;
    if (pos[k] < 0) return 0;
  }
  return 1;
}

static int64_t status_flat(const kg_cube *c, int status, const int *pos, const int64_t *idx) {
  int64_t sidx[KG_CUBE_MAX_RANK], f = 0;
  for (int k = 0; k < c->vars[status].ndims; k++) sidx[k] = idx[pos[k]];
  kg_cube_flat_index(c, status, sidx, &f);
  return f;
}

/* Status rank of input c at cell idx (its coordinates) of variable var;
 * -1 when c has no status over var's dimensions, so ranking does not apply
 * to it (its values are united like those of a cube without status). */
static int input_rank(const kg_cube *c, const kg_cube_var *var, const int64_t *idx) {
  int s = find_status(c), pos[KG_CUBE_MAX_RANK];
  if (s < 0 || !status_axes(c, s, var, pos)) return -1;
  return status_rank(c->vars[s].str[status_flat(c, s, pos, idx)]);
}

static int values_equal(const kg_cube_var *a, int64_t fa, const kg_cube_var *b, int64_t fb) {
  if (a->type == KG_CUBE_F64) return a->f64[fa] == b->f64[fb];
  if (a->type == KG_CUBE_I32) return a->i32[fa] == b->i32[fb];
  return !strcmp(a->str[fa] ? a->str[fa] : "", b->str[fb] ? b->str[fb] : "");
}

static void value_text(const kg_cube_var *v, int64_t f, char *out, size_t cap) {
  if (v->type == KG_CUBE_F64) kg_format_f64(v->f64[f], out, cap);
  else if (v->type == KG_CUBE_I32) snprintf(out, cap, "%d", v->i32[f]);
  else snprintf(out, cap, "'%.200s'", v->str[f] ? v->str[f] : "");
}

static int copy_value(kg_cube *out, int ov, int64_t fo, const kg_cube_var *src, int64_t fi) {
  kg_cube_var *o = &out->vars[ov];
  if (o->type == KG_CUBE_F64) o->f64[fo] = src->f64[fi];
  else if (o->type == KG_CUBE_I32) o->i32[fo] = src->i32[fi];
  else return kg_cube_set_str_flat(out, ov, fo, src->str[fi]);
  return KG_OK;
}

/* Copies every input's non-fill cells of out variable ov (see the rules at
 * the top of this file). `src` records which input set each cell. */
static int merge_var_values(merge_ctx *m, int ov, int32_t *src) {
  kg_cube *out = m->out;
  kg_cube_var *o = &out->vars[ov];
  int pos[KG_CUBE_MAX_RANK];
  int covers = m->status >= 0 && status_axes(out, m->status, o, pos);
  for (int i = 0; i < m->n; i++) {
    const kg_cube *c = m->in[i];
    int v = -1;
    for (int j = 0; j < c->n_vars; j++)
      if (!strcmp(c->vars[j].name, o->name)) v = j;
    if (v < 0) continue;
    const kg_cube_var *var = &c->vars[v];
    int64_t idx[KG_CUBE_MAX_RANK], oidx[KG_CUBE_MAX_RANK], fo;
    for (int64_t f = 0; f < var->cells; f++) {
      if (kg_cube_flat_is_fill(c, v, f)) continue;
      kg_cube_unflatten(c, v, f, idx);
      for (int k = 0; k < var->ndims; k++) oidx[k] = m->label_map[i][var->dims[k]][idx[k]];
      kg_cube_flat_index(out, ov, oidx, &fo);
      int best = RANK_NONE, mine = -1;
      if (covers) {
        best = m->best[status_flat(out, m->status, pos, oidx)];
        mine = input_rank(c, var, idx);
        if (mine >= 0 && mine < best) continue; /* a better-ranked input owns this cell */
      }
      if (kg_cube_flat_is_fill(out, ov, fo)) {
        KG_TRY(copy_value(out, ov, fo, var, f));
        src[fo] = i;
        continue;
      }
      if (values_equal(o, fo, var, f)) continue;
      char cell[1024], a[256], b[256];
      kg_cube_cell_text(out, ov, oidx, cell, sizeof(cell));
      value_text(o, fo, a, sizeof(a));
      value_text(var, f, b, sizeof(b));
      if (mine >= 0 && best != RANK_DONE && best != RANK_NONE) {
        kg_debug("merge: '%s' at %s: keeping %s from %s over %s from %s", o->name, cell, a, m->names[src[fo]], b,
                 m->names[i]);
        continue;
      }
      return kg_error(KG_ERR_FORMAT, "merge: '%s' at %s is %s in %s but %s in %s", o->name, cell, a,
                      m->names[src[fo]], b, m->names[i]);
    }
  }
  return KG_OK;
}

/* Best status rank per out status cell over all inputs. */
static int rank_cells(merge_ctx *m) {
  kg_cube_var *s = &m->out->vars[m->status];
  if (!(m->best = calloc((size_t)s->cells, 1))) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
  for (int i = 0; i < m->n; i++) {
    const kg_cube *c = m->in[i];
    int v = find_status(c);
    if (v < 0) continue;
    const kg_cube_var *var = &c->vars[v];
    int64_t idx[KG_CUBE_MAX_RANK], oidx[KG_CUBE_MAX_RANK], fo;
    for (int64_t f = 0; f < var->cells; f++) {
      int r = status_rank(var->str[f]);
      kg_cube_unflatten(c, v, f, idx);
      for (int k = 0; k < var->ndims; k++) oidx[k] = m->label_map[i][var->dims[k]][idx[k]];
      kg_cube_flat_index(m->out, m->status, oidx, &fo);
      if (r > m->best[fo]) m->best[fo] = (uint8_t)r;
    }
  }
  return KG_OK;
}

static int build_label_maps(merge_ctx *m) {
  if (!(m->label_map = calloc((size_t)m->n, sizeof(*m->label_map)))) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
  for (int i = 0; i < m->n; i++) {
    const kg_cube *c = m->in[i];
    if (!(m->label_map[i] = calloc((size_t)c->n_dims + 1, sizeof(int64_t *)))) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
    for (int d = 0; d < c->n_dims; d++) {
      const kg_cube_dim *dim = &c->dims[d];
      int od = kg_cube_find_dim(m->out, dim->name);
      KG_ASSERT(od >= 0);
      if (!(m->label_map[i][d] = malloc((size_t)dim->n * sizeof(int64_t)))) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
      for (int64_t j = 0; j < dim->n; j++) {
        int64_t k = dim->type == KG_CUBE_STR ? kg_cube_label_index_str(m->out, od, dim->str[j])
                    : kg_cube_label_index_num(m->out, od, dim->type == KG_CUBE_F64 ? dim->f64[j] : dim->i32[j]);
        KG_ASSERT(k >= 0);
        m->label_map[i][d][j] = k;
      }
    }
  }
  return KG_OK;
}

/* ---- attributes ---- */

static int merge_global_attrs(kg_cube *out, const kg_cube *const *in, const char *const *names, int n) {
  int rc = KG_OK;
  size_t joined_len = 1;
  char *joined = NULL;
  for (int i = 0; i < n; i++)
    for (int a = 0; a < in[i]->attrs.n; a++) {
      const char *key = in[i]->attrs.items[a].key;
      int seen = 0;
      for (int j = 0; j < i && !seen; j++) seen = kg_cube_get_attr(in[j], KG_CUBE_GLOBAL, key) != NULL;
      if (seen) continue;
      int same = 1;
      for (int j = 0; j < n && same; j++) {
        const char *vj = kg_cube_get_attr(in[j], KG_CUBE_GLOBAL, key);
        same = vj && !strcmp(vj, in[i]->attrs.items[a].value);
      }
      if (same) {
        KG_TRY(kg_cube_set_attr(out, KG_CUBE_GLOBAL, key, in[i]->attrs.items[a].value));
        continue;
      }
      for (int j = 0; j < n; j++) {
        const char *vj = kg_cube_get_attr(in[j], KG_CUBE_GLOBAL, key);
        char suffixed[300];
        if (!vj) continue;
        snprintf(suffixed, sizeof(suffixed), "%s_input%d", key, j);
        for (int k = 0; k < n; k++)
          if (kg_cube_get_attr(in[k], KG_CUBE_GLOBAL, suffixed))
            return kg_error(KG_ERR_FORMAT, "merge: attribute '%s' differs between inputs and '%s' is taken (%s)", key,
                            suffixed, names[k]);
        KG_TRY(kg_cube_set_attr(out, KG_CUBE_GLOBAL, suffixed, vj));
      }
    }
  for (int i = 0; i < n; i++) joined_len += strlen(names[i]) + 1;
  if (!(joined = calloc(joined_len, 1))) return kg_error(KG_ERR_NOMEM, "merge: out of memory");
  for (int i = 0; i < n; i++) {
    if (i) strcat(joined, "\n");
    strcat(joined, names[i]);
  }
  rc = kg_cube_set_attr(out, KG_CUBE_GLOBAL, "merged_from", joined);
  free(joined);
  return rc;
}

/* ---- entry point ---- */

int kg_cube_merge(const kg_cube *const *in, const char *const *names, int n, kg_cube **result) {
  int rc = KG_OK;
  merge_ctx m = {in, names, n, NULL, NULL, -1, NULL};
  int32_t *src = NULL;
  *result = NULL;
  if (n < 1) return kg_error(KG_ERR_ARG, "merge: no inputs");
  if (!(m.out = kg_cube_create())) return KG_ERR_NOMEM;
  for (int i = 0; i < n; i++)
    for (int d = 0; d < in[i]->n_dims; d++)
      if (kg_cube_find_dim(m.out, in[i]->dims[d].name) < 0) {
        kg_error_clear();
        if ((rc = merge_dimension(m.out, in, names, n, in[i]->dims[d].name)) < 0) goto done;
      }
  if ((rc = merge_variables(m.out, in, names, n)) < 0) goto done;
  if ((rc = build_label_maps(&m)) < 0) goto done;
  m.status = find_status(m.out);
  if (m.status >= 0 && (rc = rank_cells(&m)) < 0) goto done;
  for (int v = 0; v < m.out->n_vars; v++) {
    free(src);
    if (!(src = malloc((size_t)m.out->vars[v].cells * sizeof(int32_t)))) {
      rc = kg_error(KG_ERR_NOMEM, "merge: out of memory");
      goto done;
    }
    if ((rc = merge_var_values(&m, v, src)) < 0) goto done;
  }
  if ((rc = merge_global_attrs(m.out, in, names, n)) < 0) goto done;
  *result = m.out;
  m.out = NULL;
done:
  free(src);
  if (m.label_map) {
    for (int i = 0; i < n; i++) {
      for (int d = 0; m.label_map[i] && d < in[i]->n_dims; d++) free(m.label_map[i][d]);
      free(m.label_map[i]);
    }
    free(m.label_map);
  }
  free(m.best);
  kg_cube_free(m.out);
  return rc < 0 ? rc : KG_OK;
}
