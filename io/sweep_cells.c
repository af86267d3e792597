/* The cube a sweep fills and the cells that fill it.
 *
 * Dimensions, in order: model, prune_method, sparsity (float64), structure
 * ("unstructured" or "N:M"), calibration. An N:M pattern sits at sparsity
 * N/M with its own structure label, so "2:4" and "4:8" share sparsity 0.5.
 * Dense and quantization cells sit at (0.0, unstructured). Methods that do
 * not read calibration data (dense, magnitude, rtn) are computed once per
 * (model, method, sparsity, structure) at the first calibration set; their
 * cells at the other sets are replicas whose values the coordinator copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/sweep_internal.h"

void kg_sv_ratio_label(double x, char *buf, size_t cap) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, x);
    if (strtod(buf, NULL) == x) return;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int kg_sv_build_dims(kg_sv *v) {
  kg_sweep *sw = v->sw;
  kg_sweep_axes *d = &sw->dims;
  static const char *const names[KG_SWEEP_NDIMS] = {"model", "prune_method", "sparsity", "structure", "calibration"};
  for (int i = 0; i < KG_SWEEP_NDIMS; i++) d->dim[i].name = names[i];

  kg_sweep_dim *dm = &d->dim[KG_DIM_MODEL];
  dm->labels = kg_sv_alloc(v, sw->n_models, sizeof(char *));
  kg_sweep_dim *dp = &d->dim[KG_DIM_METHOD];
  dp->labels = kg_sv_alloc(v, sw->n_methods, sizeof(char *));
  kg_sweep_dim *ds = &d->dim[KG_DIM_SPARSITY];
  double *values = kg_sv_alloc(v, sw->n_sparsities + 1, sizeof(double));
  ds->labels = kg_sv_alloc(v, sw->n_sparsities + 1, sizeof(char *));
  kg_sweep_dim *dt = &d->dim[KG_DIM_STRUCTURE];
  dt->labels = kg_sv_alloc(v, sw->n_sparsities + 1, sizeof(char *));
  kg_sweep_dim *dc = &d->dim[KG_DIM_CALIBRATION];
  dc->labels = kg_sv_alloc(v, sw->n_calibs + 1, sizeof(char *));
  if (v->nomem) return KG_ERR_NOMEM;

  for (size_t i = 0; i < sw->n_models; i++) dm->labels[dm->len++] = sw->models[i].name;
  for (size_t i = 0; i < sw->n_methods; i++) dp->labels[dp->len++] = sw->methods[i].label;

  /* Sparsity: dense's 0 plus every distinct ratio, ascending. */
  size_t nv = 0;
  values[nv++] = 0.0;
  for (size_t i = 0; i < sw->n_sparsities; i++) {
    int seen = 0;
    for (size_t j = 0; j < nv; j++) seen |= values[j] == sw->sparsities[i].ratio;
    if (!seen) values[nv++] = sw->sparsities[i].ratio;
  }
  qsort(values, nv, sizeof(double), cmp_double);
  for (size_t i = 0; i < nv; i++) {
    char buf[32];
    kg_sv_ratio_label(values[i], buf, sizeof buf);
    ds->labels[i] = kg_sv_strdup(v, buf);
  }
  ds->values = values;
  ds->len = nv;

  dt->labels[dt->len++] = "unstructured";
  for (size_t i = 0; i < sw->n_sparsities; i++) {
    if (!sw->sparsities[i].m) continue;
    int seen = 0;
    for (size_t j = 1; j < dt->len; j++) seen |= !strcmp(dt->labels[j], sw->sparsities[i].label);
    if (!seen) dt->labels[dt->len++] = sw->sparsities[i].label;
  }

  /* A sweep without calibration sets still has the dimension, with one
   * label, so every cube has the same five axes. */
  if (sw->n_calibs == 0) dc->labels[dc->len++] = "none";
  for (size_t i = 0; i < sw->n_calibs; i++) dc->labels[dc->len++] = sw->calibs[i].name;
  return v->nomem ? KG_ERR_NOMEM : KG_OK;
}

/* The sparsity entry a pruning method uses at (sparsity s, structure t), or NULL. */
static const kg_sweep_sparsity *entry_at(const kg_sweep *sw, size_t s, size_t t) {
  const kg_sweep_axes *d = &sw->dims;
  double ratio = d->dim[KG_DIM_SPARSITY].values[s];
  const char *structure = d->dim[KG_DIM_STRUCTURE].labels[t];
  for (size_t i = 0; i < sw->n_sparsities; i++) {
    const kg_sweep_sparsity *sp = &sw->sparsities[i];
    if (sp->ratio != ratio) continue;
    if (t == 0 ? sp->m == 0 : (sp->m != 0 && !strcmp(sp->label, structure))) return sp;
  }
  return NULL;
}

/* Whether (method, sparsity, structure) exists; *entry gets the sparsity
 * entry for pruning methods (NULL for dense and quantization). */
static int slot_exists(const kg_sweep *sw, size_t p, size_t s, size_t t, const kg_sweep_sparsity **entry) {
  const kg_sweep_method *m = &sw->methods[p];
  *entry = NULL;
  if (m->kind == KG_METHOD_DENSE || m->is_quantization)
    return sw->dims.dim[KG_DIM_SPARSITY].values[s] == 0.0 && t == 0;
  const kg_sweep_sparsity *sp = entry_at(sw, s, t);
  if (!sp) return 0;
  if (sp->m && (m->kind == KG_METHOD_OWL_WANDA || m->kind == KG_METHOD_OWL_SPARSEGPT)) return 0;
  *entry = sp;
  return 1;
}

int kg_sweep_expand(const kg_sweep *sw, kg_sweep_cells **out) {
  int rc = KG_OK;
  kg_sweep_cells *c = NULL;
  *out = NULL;
  const kg_sweep_axes *d = &sw->dims;
  size_t len[KG_SWEEP_NDIMS];
  size_t cube = 1;
  for (int i = 0; i < KG_SWEEP_NDIMS; i++) {
    len[i] = d->dim[i].len;
    if (len[i] && cube > SIZE_MAX / 4 / len[i]) return kg_error(KG_ERR_ARG, "%s: the cube is too large", sw->path);
    cube *= len[i];
  }
  if (!(c = calloc(1, sizeof(*c)))) return kg_error(KG_ERR_NOMEM, "%s: out of memory expanding cells", sw->path);
  if (!(c->arena = kg_arena_create())) { rc = KG_ERR_NOMEM; goto done; }
  c->cube_size = cube;
  c->n_slots = len[KG_DIM_METHOD] * len[KG_DIM_SPARSITY] * len[KG_DIM_STRUCTURE];
  c->slot_na = kg_arena_alloc(c->arena, c->n_slots ? c->n_slots : 1);
  c->cells = kg_arena_alloc(c->arena, (cube ? cube : 1) * sizeof(kg_sweep_cell));
  if (!c->slot_na || !c->cells) { rc = kg_error(KG_ERR_NOMEM, "%s: out of memory expanding cells", sw->path); goto done; }

  for (size_t p = 0; p < len[KG_DIM_METHOD]; p++)
    for (size_t s = 0; s < len[KG_DIM_SPARSITY]; s++)
      for (size_t t = 0; t < len[KG_DIM_STRUCTURE]; t++) {
        const kg_sweep_sparsity *entry;
        int na = !slot_exists(sw, p, s, t, &entry);
        c->slot_na[(p * len[KG_DIM_SPARSITY] + s) * len[KG_DIM_STRUCTURE] + t] = (unsigned char)na;
        c->n_slots_na += (size_t)na;
      }

  for (size_t mi = 0; mi < len[KG_DIM_MODEL]; mi++)
    for (size_t p = 0; p < len[KG_DIM_METHOD]; p++)
      for (size_t s = 0; s < len[KG_DIM_SPARSITY]; s++)
        for (size_t t = 0; t < len[KG_DIM_STRUCTURE]; t++) {
          const kg_sweep_sparsity *entry;
          if (!slot_exists(sw, p, s, t, &entry)) continue;
          const kg_sweep_method *m = &sw->methods[p];
          for (size_t ci = 0; ci < len[KG_DIM_CALIBRATION]; ci++) {
            kg_sweep_cell *cell = &c->cells[c->n_cells];
            cell->index[KG_DIM_MODEL] = (int)mi;
            cell->index[KG_DIM_METHOD] = (int)p;
            cell->index[KG_DIM_SPARSITY] = (int)s;
            cell->index[KG_DIM_STRUCTURE] = (int)t;
            cell->index[KG_DIM_CALIBRATION] = (int)ci;
            cell->model = &sw->models[mi];
            cell->method = m;
            cell->sparsity = entry;
            cell->calib = sw->n_calibs ? &sw->calibs[ci] : NULL;
            /* Calibration is the innermost loop, so the computed twin of a
             * replica is exactly ci cells back. */
            cell->replica_of = (!m->uses_calibration && ci > 0) ? (long)(c->n_cells - ci) : -1;
            char key[512];
            snprintf(key, sizeof key, "%s|%s|%s|%s|%s", d->dim[KG_DIM_MODEL].labels[mi], m->label,
                     d->dim[KG_DIM_SPARSITY].labels[s], d->dim[KG_DIM_STRUCTURE].labels[t],
                     d->dim[KG_DIM_CALIBRATION].labels[ci]);
            if (!(cell->key = kg_arena_strdup(c->arena, key))) { rc = KG_ERR_NOMEM; goto done; }
            if (cell->replica_of < 0) c->n_computed++;
            else c->n_replicas++;
            c->n_cells++;
          }
        }
  c->n_na = cube - c->n_cells;
  *out = c;
  c = NULL;
done:
  kg_sweep_cells_free(c);
  return rc;
}

void kg_sweep_cells_free(kg_sweep_cells *cells) {
  if (!cells) return;
  kg_arena_destroy(cells->arena);
  free(cells);
}

int kg_sweep_slot_na(const kg_sweep *sweep, const kg_sweep_cells *cells, int method, int sparsity, int structure) {
  const kg_sweep_axes *d = &sweep->dims;
  if (method < 0 || sparsity < 0 || structure < 0 || (size_t)method >= d->dim[KG_DIM_METHOD].len ||
      (size_t)sparsity >= d->dim[KG_DIM_SPARSITY].len || (size_t)structure >= d->dim[KG_DIM_STRUCTURE].len)
    return 1;
  size_t i = ((size_t)method * d->dim[KG_DIM_SPARSITY].len + (size_t)sparsity) * d->dim[KG_DIM_STRUCTURE].len +
             (size_t)structure;
  return cells->slot_na[i];
}

long kg_sweep_find_cell(const kg_sweep_cells *cells, const char *key) {
  for (size_t i = 0; i < cells->n_cells; i++)
    if (!strcmp(cells->cells[i].key, key)) return (long)i;
  return -1;
}
