/* A grid worker: runs cells on its team of ranks, keeping the last model,
 * its dense copy, its tokenizer and its calibration sets in memory so cells
 * that share them do not pay for them again. */
#ifndef KG_WORKER_WORKER_H
#define KG_WORKER_WORKER_H

#include <mpi.h>
#include <stdint.h>

#include "io/sweep_config.h"
#include "worker/result.h"
#include "worker/schema.h"

typedef struct kg_worker_env {
  MPI_Comm team;     /* ranks computing one cell together; MPI_COMM_NULL alone */
  const char *backend; /* "cpu", "cuda", "cuda:N" */
  int threads;       /* CPU threads per rank (0: all) */
  const char *log_dir; /* per-cell logs (NULL: none) */
  const char *host;  /* recorded with each result */
} kg_worker_env;

typedef struct kg_worker kg_worker;

/* sweep, cells and schema must outlive the worker. *out owned by the caller. */
int kg_worker_create(const kg_sweep *sweep, const kg_sweep_cells *cells, const kg_grid_schema *schema,
                     const kg_worker_env *env, kg_worker **out);
void kg_worker_free(kg_worker *w);

/* Runs cell `cell` (an index into cells->cells) on every rank of the team;
 * all team ranks call it. A failure inside the cell is not an error of this
 * function: it is reported in res (ok = 0, error = message). res is filled
 * on the team's rank 0. Returns < 0 only when the team itself is broken. */
int kg_worker_run_cell(kg_worker *w, int64_t cell, int attempt, kg_cell_result *res);

/* What the worker holds in memory: model index and calibration index (-1 none). */
void kg_worker_affinity(const kg_worker *w, int64_t *model, int64_t *calib);

#endif
