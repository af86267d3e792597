/* The layout of a sweep's result cube, shared by the coordinator (which
 * creates and writes the cube) and the workers (which address its cells).
 *
 * Cell dimensions, in order: model, prune_method, sparsity, structure,
 * calibration. Variables over them: status, error, host, attempts, wall_s,
 * compress_s, eval_s, sparsity_actual, recon_rel_mean. Metric variables add
 * one dimension: ppl (ppl_dataset); js_mean, js_median, js_p95, js_top1
 * (js_source); acc, acc_stderr, acc_norm, acc_norm_stderr, em, f1, match,
 * task_ppl, n_examples (task); layer_sparsity, recon_error, recon_rel,
 * percdamp (layer, linear). */
#ifndef KG_WORKER_SCHEMA_H
#define KG_WORKER_SCHEMA_H

#include "io/cube.h"
#include "io/sweep_config.h"

typedef enum kg_grid_var {
  KG_VAR_STATUS = 0,
  KG_VAR_ERROR,
  KG_VAR_HOST,
  KG_VAR_ATTEMPTS,
  KG_VAR_WALL_S,
  KG_VAR_COMPRESS_S,
  KG_VAR_EVAL_S,
  KG_VAR_SPARSITY_ACTUAL,
  KG_VAR_RECON_REL_MEAN,
  KG_VAR_PEAK_RSS_MB,
  KG_VAR_PPL,
  KG_VAR_JS_MEAN,
  KG_VAR_JS_MEDIAN,
  KG_VAR_JS_P95,
  KG_VAR_JS_TOP1,
  KG_VAR_ACC,
  KG_VAR_ACC_STDERR,
  KG_VAR_ACC_NORM,
  KG_VAR_ACC_NORM_STDERR,
  KG_VAR_EM,
  KG_VAR_F1,
  KG_VAR_MATCH,
  KG_VAR_TASK_PPL,
  KG_VAR_N_EXAMPLES,
  KG_VAR_LAYER_SPARSITY,
  KG_VAR_RECON_ERROR,
  KG_VAR_RECON_REL,
  KG_VAR_PERCDAMP,
  KG_GRID_VAR_COUNT
} kg_grid_var;

/* Number of cell dimensions (model .. calibration). */
#define KG_GRID_CELL_DIMS 5

typedef struct kg_grid_schema {
  kg_cube *cube;                  /* owned; holds dims, variables and attributes */
  int var[KG_GRID_VAR_COUNT];     /* cube variable index, -1 when absent */
  int max_layers;                 /* size of the layer dimension (0: no per-layer variables) */
} kg_grid_schema;

const char *kg_grid_var_name(kg_grid_var v);

/* Builds the empty cube for a sweep: dimensions, variables with units and
 * descriptions, status "pending" for every cell the plan computes or
 * replicates and "n/a" elsewhere. layers[i] is the layer count of model i
 * (0 when unknown: no per-layer variables). *out is owned by the caller. */
int kg_grid_schema_create(const kg_sweep *sweep, const kg_sweep_cells *cells, const int *layers,
                          kg_grid_schema *out);
void kg_grid_schema_free(kg_grid_schema *s);

/* Index vector of a cell (KG_GRID_CELL_DIMS entries) plus `extra` for
 * variables with a sixth/seventh dimension. */
void kg_grid_index(const kg_sweep_cell *cell, int64_t *index);

/* Position of a label on the ppl_dataset / js_source / task dimension, -1 if absent. */
int64_t kg_grid_label(const kg_grid_schema *s, const char *dim, const char *label);

#endif
