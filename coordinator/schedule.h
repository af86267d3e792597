/* The coordinator's state: which cells are pending, running, done or failed,
 * the journal, and the published cube. */
#ifndef KG_COORDINATOR_SCHEDULE_H
#define KG_COORDINATOR_SCHEDULE_H

#include <stdint.h>

#include "io/journal.h"
#include "io/sweep_config.h"
#include "worker/result.h"
#include "worker/schema.h"

typedef enum kg_cell_state { KG_CELL_PENDING = 0, KG_CELL_RUNNING, KG_CELL_DONE, KG_CELL_FAILED } kg_cell_state;

typedef struct kg_schedule {
  const kg_sweep *sweep;
  const kg_sweep_cells *cells;
  kg_grid_schema *schema;
  kg_cell_state *state;  /* [n_cells] (replicas follow their computed cell) */
  int *attempts;         /* [n_cells] */
  double *started;       /* [n_cells] start time of the running attempt */
  int max_attempts;      /* 1 + retries */
  char *cube_path;
  char *journal_path;
  kg_journal *journal;
  double last_publish;
  double publish_every;
  int dirty;             /* results since the last publish */
  /* progress */
  int64_t n_computed, n_done, n_failed, n_running, done_this_run;
  double start_time, last_progress;
  double progress_every; /* seconds between unforced progress lines */
} kg_schedule;

/* Opens the schedule: replays an existing journal when resume is set (an
 * existing journal or cube without resume or fresh is an error), publishes
 * the initial cube. */
int kg_schedule_open(kg_schedule *s, const kg_sweep *sweep, const kg_sweep_cells *cells, kg_grid_schema *schema,
                     const char *cube_path, int resume, int fresh, double publish_every);
void kg_schedule_close(kg_schedule *s);

/* Next cell to run, preferring the given model and calibration (affinity);
 * -1 when nothing is pending. Marks it running and counts the attempt. */
int64_t kg_schedule_next(kg_schedule *s, int64_t model, int64_t calib, int *attempt);
/* Records a finished attempt: journal (fsync), cube, replicas, retry or final failure. */
int kg_schedule_finish(kg_schedule *s, const kg_cell_result *r);
/* Writes the cube when results arrived and publish_every passed (or force). */
int kg_schedule_publish(kg_schedule *s, int force);
/* Prints the live progress line (rate-limited unless force). */
void kg_schedule_progress(kg_schedule *s, int force);
int kg_schedule_all_resolved(const kg_schedule *s);

#endif
