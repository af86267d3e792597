#include "worker/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "model/model.h"

typedef struct var_def {
  const char *name;
  kg_cube_type type;
  int extra; /* 0 none, 1 ppl_dataset, 2 js_source, 3 task, 4 layer+linear */
  const char *units;
  const char *description;
} var_def;

static const var_def vars[KG_GRID_VAR_COUNT] = {
    [KG_VAR_STATUS] = {"status", KG_CUBE_STR, 0, "", "done, failed, pending (not run yet) or n/a (not part of the plan)"},
    [KG_VAR_ERROR] = {"error", KG_CUBE_STR, 0, "", "error message of a failed cell"},
    [KG_VAR_HOST] = {"host", KG_CUBE_STR, 0, "", "host that computed the cell"},
    [KG_VAR_ATTEMPTS] = {"attempts", KG_CUBE_I32, 0, "1", "attempts made (retries included)"},
    [KG_VAR_WALL_S] = {"wall_s", KG_CUBE_F64, 0, "s", "wall time of the cell's last attempt"},
    [KG_VAR_COMPRESS_S] = {"compress_s", KG_CUBE_F64, 0, "s", "time spent compressing"},
    [KG_VAR_EVAL_S] = {"eval_s", KG_CUBE_F64, 0, "s", "time spent evaluating"},
    [KG_VAR_SPARSITY_ACTUAL] = {"sparsity_actual", KG_CUBE_F64, 0, "1", "fraction of zero weights over all linear layers"},
    [KG_VAR_RECON_REL_MEAN] = {"recon_rel_mean", KG_CUBE_F64, 0, "1",
                               "mean over linears of ||XW^T - XW'^T||^2 / ||XW^T||^2 on calibration inputs"},
    [KG_VAR_PEAK_RSS_MB] = {"peak_rss_mb", KG_CUBE_F64, 0, "MiB", "peak resident memory of the cell's first rank"},
    [KG_VAR_PPL] = {"ppl", KG_CUBE_F64, 1, "1", "perplexity (SparseGPT/Wanda protocol)"},
    [KG_VAR_JS_MEAN] = {"js_mean", KG_CUBE_F64, 2, "nat", "mean per-token Jensen-Shannon divergence from the dense model"},
    [KG_VAR_JS_MEDIAN] = {"js_median", KG_CUBE_F64, 2, "nat", "median per-token JS divergence"},
    [KG_VAR_JS_P95] = {"js_p95", KG_CUBE_F64, 2, "nat", "95th percentile of per-token JS divergence"},
    [KG_VAR_JS_TOP1] = {"js_top1", KG_CUBE_F64, 2, "1", "top-1 agreement with the dense model"},
    [KG_VAR_ACC] = {"acc", KG_CUBE_F64, 3, "1", "accuracy (argmax of summed log-likelihood; MMLU: micro average)"},
    [KG_VAR_ACC_STDERR] = {"acc_stderr", KG_CUBE_F64, 3, "1", "standard error of acc"},
    [KG_VAR_ACC_NORM] = {"acc_norm", KG_CUBE_F64, 3, "1", "length-normalized accuracy (per character)"},
    [KG_VAR_ACC_NORM_STDERR] = {"acc_norm_stderr", KG_CUBE_F64, 3, "1", "standard error of acc_norm"},
    [KG_VAR_EM] = {"em", KG_CUBE_F64, 3, "1", "exact match (TriviaQA, SQuAD normalization)"},
    [KG_VAR_F1] = {"f1", KG_CUBE_F64, 3, "1", "token F1 (TriviaQA)"},
    [KG_VAR_MATCH] = {"match", KG_CUBE_F64, 3, "1", "answer-or-alias match (FreebaseQA, LLM-KICK rule)"},
    [KG_VAR_TASK_PPL] = {"task_ppl", KG_CUBE_F64, 3, "1", "perplexity of the target (LAMBADA)"},
    [KG_VAR_N_EXAMPLES] = {"n_examples", KG_CUBE_I32, 3, "1", "examples scored"},
    [KG_VAR_LAYER_SPARSITY] = {"layer_sparsity", KG_CUBE_F64, 4, "1", "fraction of zero weights per linear"},
    [KG_VAR_RECON_ERROR] = {"recon_error", KG_CUBE_F64, 4, "1", "||XW^T - XW'^T||_F^2 on calibration inputs"},
    [KG_VAR_RECON_REL] = {"recon_rel", KG_CUBE_F64, 4, "1", "recon_error / ||XW^T||_F^2"},
    [KG_VAR_PERCDAMP] = {"percdamp", KG_CUBE_F64, 4, "1", "Hessian damping used (SparseGPT/GPTQ)"},
};

const char *kg_grid_var_name(kg_grid_var v) { return v < KG_GRID_VAR_COUNT ? vars[v].name : "?"; }

void kg_grid_schema_free(kg_grid_schema *s) {
  if (!s) return;
  kg_cube_free(s->cube);
  memset(s, 0, sizeof(*s));
}

void kg_grid_index(const kg_sweep_cell *cell, int64_t *index) {
  for (int d = 0; d < KG_GRID_CELL_DIMS; d++) index[d] = cell->index[d];
}

int64_t kg_grid_label(const kg_grid_schema *s, const char *dim, const char *label) {
  int d = kg_cube_find_dim(s->cube, dim);
  if (d < 0) {
    kg_error_clear();
    return -1;
  }
  return kg_cube_label_index_str(s->cube, d, label);
}

static int add_str_dim(kg_cube *c, const char *name, const char *const *labels, size_t n) {
  int rc = kg_cube_add_dim_str(c, name, labels, (int64_t)n);
  return rc < 0 ? rc : KG_OK;
}

int kg_grid_schema_create(const kg_sweep *sweep, const kg_sweep_cells *cells, const int *layers,
                          kg_grid_schema *out) {
  int rc = KG_OK;
  const char **labels = NULL;
  memset(out, 0, sizeof(*out));
  for (int v = 0; v < KG_GRID_VAR_COUNT; v++) out->var[v] = -1;
  kg_cube *c = kg_cube_create();
  if (!c) return kg_error_code();
  out->cube = c;
  const kg_sweep_axes *ax = kg_sweep_dims(sweep);
  for (int d = 0; d < KG_SWEEP_NDIMS; d++) {
    const kg_sweep_dim *dim = &ax->dim[d];
    if (dim->values) rc = kg_cube_add_dim_f64(c, dim->name, dim->values, (int64_t)dim->len);
    else rc = add_str_dim(c, dim->name, dim->labels, dim->len);
    if (rc < 0) goto done;
  }
  size_t cap = sweep->n_ppl + sweep->js.n_tasks + 1 + sweep->n_tasks + KG_LIN_COUNT + 1;
  if (!(labels = calloc(cap, sizeof(*labels)))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  int have_ppl = sweep->n_ppl > 0, have_js = sweep->js.enabled, have_task = sweep->n_tasks > 0;
  if (have_ppl) {
    for (size_t i = 0; i < sweep->n_ppl; i++) labels[i] = sweep->ppl[i].dataset;
    if ((rc = add_str_dim(c, "ppl_dataset", labels, sweep->n_ppl)) < 0) goto done;
  }
  if (have_js) {
    /* JS sources: the text dataset, then each task's prompts. */
    char **owned = calloc(sweep->js.n_tasks + 1, sizeof(char *));
    if (!owned) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
    labels[0] = sweep->js.dataset;
    for (size_t i = 0; i < sweep->js.n_tasks && rc >= 0; i++) {
      size_t len = strlen(sweep->js.tasks[i]) + 6;
      if (!(owned[i] = malloc(len))) rc = kg_error(KG_ERR_NOMEM, "out of memory");
      else snprintf(owned[i], len, "task:%s", sweep->js.tasks[i]);
      labels[i + 1] = owned[i];
    }
    if (rc >= 0) rc = add_str_dim(c, "js_source", labels, sweep->js.n_tasks + 1);
    for (size_t i = 0; i < sweep->js.n_tasks; i++) free(owned[i]);
    free(owned);
    if (rc < 0) goto done;
  }
  if (have_task) {
    for (size_t i = 0; i < sweep->n_tasks; i++) labels[i] = sweep->tasks[i].name;
    if ((rc = add_str_dim(c, "task", labels, sweep->n_tasks)) < 0) goto done;
  }
  int max_layers = 0;
  for (size_t i = 0; layers && i < sweep->n_models; i++) {
    if (layers[i] <= 0) {
      max_layers = 0;
      break;
    }
    if (layers[i] > max_layers) max_layers = layers[i];
  }
  if (max_layers > 0) {
    int32_t *ids = malloc((size_t)max_layers * sizeof(int32_t));
    if (!ids) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
    for (int l = 0; l < max_layers; l++) ids[l] = l;
    rc = kg_cube_add_dim_i32(c, "layer", ids, max_layers);
    free(ids);
    if (rc < 0) goto done;
    for (int id = 0; id < KG_LIN_COUNT; id++) labels[id] = kg_linear_name(id);
    if ((rc = add_str_dim(c, "linear", labels, KG_LIN_COUNT)) < 0) goto done;
  }
  out->max_layers = max_layers;

  const char *cell_dims[KG_GRID_CELL_DIMS + 2];
  for (int d = 0; d < KG_GRID_CELL_DIMS; d++) cell_dims[d] = ax->dim[d].name;
  for (int v = 0; v < KG_GRID_VAR_COUNT; v++) {
    const var_def *def = &vars[v];
    int nd = KG_GRID_CELL_DIMS;
    if (def->extra == 1) {
      if (!have_ppl) continue;
      cell_dims[nd++] = "ppl_dataset";
    } else if (def->extra == 2) {
      if (!have_js) continue;
      cell_dims[nd++] = "js_source";
    } else if (def->extra == 3) {
      if (!have_task) continue;
      cell_dims[nd++] = "task";
    } else if (def->extra == 4) {
      if (!max_layers) continue;
      cell_dims[nd++] = "layer";
      cell_dims[nd++] = "linear";
    }
    int idx = kg_cube_add_var(c, def->name, def->type, cell_dims, nd);
    if (idx < 0) {
      rc = idx;
      goto done;
    }
    out->var[v] = idx;
    if ((rc = kg_cube_set_attr(c, idx, "units", def->units)) < 0) goto done;
    if ((rc = kg_cube_set_attr(c, idx, "description", def->description)) < 0) goto done;
  }
  if ((rc = kg_cube_set_attr(c, KG_CUBE_DIM(KG_DIM_SPARSITY), "description",
                             "fraction of weights removed; N:M patterns sit at N/M with structure=\"N:M\"")) < 0)
    goto done;
  /* What each calibration label stands for, for analyses that group by source or seed. */
  if (sweep->n_calibs > 0) {
    const char *cdim[1] = {"calibration"};
    int v_src = kg_cube_add_var(c, "calibration_source", KG_CUBE_STR, cdim, 1);
    int v_seed = v_src >= 0 ? kg_cube_add_var(c, "calibration_seed", KG_CUBE_I32, cdim, 1) : v_src;
    int v_ns = v_seed >= 0 ? kg_cube_add_var(c, "calibration_nsamples", KG_CUBE_I32, cdim, 1) : v_seed;
    int v_sl = v_ns >= 0 ? kg_cube_add_var(c, "calibration_seqlen", KG_CUBE_I32, cdim, 1) : v_ns;
    if (v_sl < 0) {
      rc = v_sl;
      goto done;
    }
    for (size_t i = 0; i < sweep->n_calibs && rc >= 0; i++) {
      const kg_sweep_calib *cb = &sweep->calibs[i];
      int64_t at[1] = {(int64_t)i};
      if ((rc = kg_cube_set_str(c, v_src, at, cb->source)) >= 0 &&
          (rc = kg_cube_set_i32(c, v_seed, at, (int32_t)cb->seed)) >= 0 &&
          (rc = kg_cube_set_i32(c, v_ns, at, cb->nsamples)) >= 0)
        rc = kg_cube_set_i32(c, v_sl, at, cb->seqlen);
    }
    if (rc < 0) goto done;
  }
  /* Every position starts as n/a; the plan's cells become pending. */
  const int status = out->var[KG_VAR_STATUS];
  const int64_t total = kg_cube_var_cells(c, status);
  int64_t index[KG_CUBE_MAX_RANK];
  for (int64_t f = 0; f < total; f++) {
    kg_cube_unflatten(c, status, f, index);
    if ((rc = kg_cube_set_str(c, status, index, "n/a")) < 0) goto done;
  }
  for (size_t i = 0; i < cells->n_cells; i++) {
    kg_grid_index(&cells->cells[i], index);
    if ((rc = kg_cube_set_str(c, status, index, "pending")) < 0) goto done;
  }
done:
  free(labels);
  if (rc < 0) kg_grid_schema_free(out);
  return rc;
}
