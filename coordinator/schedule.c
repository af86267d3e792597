#include "coordinator/schedule.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/error.h"
#include "io/log.h"
#include "io/paths.h"

static int is_computed(const kg_sweep_cells *cells, int64_t i) { return cells->cells[i].replica_of < 0; }

typedef struct replay_ctx {
  kg_schedule *s;
  int64_t applied;
} replay_ctx;

static int replay_record(const kg_journal_record *rec, void *user) {
  replay_ctx *ctx = user;
  kg_schedule *s = ctx->s;
  long i = kg_sweep_find_cell(s->cells, rec->cell);
  if (i < 0) return kg_error(KG_ERR_FORMAT, "journal names cell '%s', which this config does not have: the config "
                             "changed since the journal was written (use --fresh to start over)", rec->cell);
  KG_TRY(kg_journal_apply(s->schema->cube, rec));
  if (is_computed(s->cells, i)) {
    s->attempts[i] = rec->attempts;
    s->state[i] = rec->status == KG_JOURNAL_DONE ? KG_CELL_DONE : KG_CELL_FAILED;
  }
  ctx->applied++;
  return KG_OK;
}

int kg_schedule_open(kg_schedule *s, const kg_sweep *sweep, const kg_sweep_cells *cells, kg_grid_schema *schema,
                     const char *cube_path, int resume, int fresh, double publish_every) {
  memset(s, 0, sizeof(*s));
  s->sweep = sweep;
  s->cells = cells;
  s->schema = schema;
  s->max_attempts = 1 + (sweep->grid.retries > 0 ? sweep->grid.retries : 0);
  s->publish_every = publish_every;
  s->start_time = kg_now();
  /* A log file (Slurm, nohup) would fill with a line every two seconds, so
   * without a terminal (mpirun's pipes count as none) it gets one every 30 s,
   * plus one at every finished cell. */
  s->progress_every = isatty(STDERR_FILENO) ? 2.0 : 30.0;
  const size_t n = cells->n_cells;
  s->state = calloc(n ? n : 1, sizeof(*s->state));
  s->attempts = calloc(n ? n : 1, sizeof(*s->attempts));
  s->started = calloc(n ? n : 1, sizeof(*s->started));
  s->cube_path = strdup(cube_path);
  size_t jl = strlen(cube_path) + 9;
  s->journal_path = malloc(jl);
  if (!s->state || !s->attempts || !s->started || !s->cube_path || !s->journal_path) {
    kg_schedule_close(s);
    return kg_error(KG_ERR_NOMEM, "out of memory");
  }
  snprintf(s->journal_path, jl, "%s.journal", cube_path);
  /* The output directory may not exist yet. */
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", cube_path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    int rc = kg_mkdir_p(dir);
    if (rc < 0) {
      kg_schedule_close(s);
      return rc;
    }
  }
  const int have_journal = kg_path_exists(s->journal_path), have_cube = kg_path_exists(cube_path);
  if (fresh) {
    if ((have_journal && unlink(s->journal_path) != 0) || (have_cube && unlink(cube_path) != 0)) {
      kg_schedule_close(s);
      return kg_error(KG_ERR_IO, "cannot remove the previous results of %s: %s", cube_path, strerror(errno));
    }
  } else if ((have_journal || have_cube) && !resume) {
    kg_schedule_close(s);
    return kg_error(KG_ERR_ARG, "%s already has results (%s): pass --resume to continue them or --fresh to start over",
                    cube_path, have_journal ? s->journal_path : cube_path);
  }
  if (resume && have_journal) {
    replay_ctx ctx = {s, 0};
    kg_journal_stats st;
    int rc = kg_journal_replay(s->journal_path, 0, replay_record, &ctx, &st);
    if (rc < 0) {
      kg_error_context("resuming from %s: ", s->journal_path);
      kg_schedule_close(s);
      return rc;
    }
    kg_info("resumed from %s: %lld records%s", s->journal_path, (long long)st.records,
            st.torn ? " (a torn last line from a crash was skipped)" : "");
  } else if (resume && have_cube) {
    kg_warn("%s has no journal: starting the grid from the beginning", cube_path);
  }
  for (size_t i = 0; i < n; i++) {
    if (!is_computed(cells, (int64_t)i)) continue;
    s->n_computed++;
    /* A cell that failed before is tried again on resume, with fresh attempts. */
    if (s->state[i] == KG_CELL_FAILED) {
      s->state[i] = KG_CELL_PENDING;
      s->attempts[i] = 0;
    }
    if (s->state[i] == KG_CELL_DONE) s->n_done++;
  }
  int rc = kg_journal_open(s->journal_path, &s->journal);
  if (rc >= 0) rc = kg_schedule_publish(s, 1);
  if (rc < 0) kg_schedule_close(s);
  return rc;
}

void kg_schedule_close(kg_schedule *s) {
  if (s->journal) kg_journal_close(s->journal);
  free(s->state);
  free(s->attempts);
  free(s->started);
  free(s->cube_path);
  free(s->journal_path);
  memset(s, 0, sizeof(*s));
}

int64_t kg_schedule_next(kg_schedule *s, int64_t model, int64_t calib, int *attempt) {
  const kg_sweep_cells *cells = s->cells;
  int64_t best = -1;
  int best_score = -1;
  for (size_t i = 0; i < cells->n_cells; i++) {
    if (!is_computed(cells, (int64_t)i) || s->state[i] != KG_CELL_PENDING) continue;
    const kg_sweep_cell *c = &cells->cells[i];
    /* Reusing the loaded model saves a load; reusing its calibration set too saves building it. */
    int score = (c->index[KG_DIM_MODEL] == model) * 2 + (c->index[KG_DIM_MODEL] == model && c->index[KG_DIM_CALIBRATION] == calib);
    if (score > best_score) {
      best = (int64_t)i;
      best_score = score;
      if (score == 3) break;
    }
  }
  if (best < 0) return -1;
  s->state[best] = KG_CELL_RUNNING;
  s->attempts[best]++;
  s->started[best] = kg_now();
  s->n_running++;
  *attempt = s->attempts[best];
  return best;
}

static int journal_and_apply(kg_schedule *s, const kg_cell_result *r, const char *key, int attempts) {
  kg_cell_record cr;
  KG_TRY(kg_cell_result_to_record(r, s->schema->cube, key, attempts, &cr));
  int rc = kg_journal_append(s->journal, &cr.rec);
  if (rc >= 0) rc = kg_journal_apply(s->schema->cube, &cr.rec);
  kg_cell_record_free(&cr);
  return rc;
}

/* Adds the bookkeeping variables of an attempt to the worker's values. */
static int add_status(kg_schedule *s, kg_cell_result *r, const int64_t *index, int attempts, int final) {
  const kg_grid_schema *sc = s->schema;
  const kg_cube *cube = sc->cube;
  const char *status = r->ok ? "done" : final ? "failed" : "pending";
  KG_TRY(kg_cell_result_str(r, cube, sc->var[KG_VAR_STATUS], index, status));
  KG_TRY(kg_cell_result_str(r, cube, sc->var[KG_VAR_ERROR], index, r->ok ? "" : r->error));
  KG_TRY(kg_cell_result_str(r, cube, sc->var[KG_VAR_HOST], index, r->host));
  KG_TRY(kg_cell_result_i32(r, cube, sc->var[KG_VAR_ATTEMPTS], index, attempts));
  return kg_cell_result_f64(r, cube, sc->var[KG_VAR_WALL_S], index, r->wall_s);
}

int kg_schedule_finish(kg_schedule *s, const kg_cell_result *worker_result) {
  const int64_t i = worker_result->cell;
  if (i < 0 || (size_t)i >= s->cells->n_cells || s->state[i] != KG_CELL_RUNNING)
    return kg_error(KG_ERR_ARG, "result for cell %lld, which is not running", (long long)i);
  const kg_sweep_cell *cell = &s->cells->cells[i];
  const int attempts = s->attempts[i];
  const int final = worker_result->ok || attempts >= s->max_attempts;
  kg_cell_result r;
  int64_t index[KG_GRID_CELL_DIMS];
  kg_grid_index(cell, index);
  /* A failed attempt's partial values are dropped: only its status is kept. */
  int rc = kg_cell_result_retarget(worker_result, s->schema->cube, index, &r);
  if (rc < 0) return rc;
  if (!r.ok) kg_cell_result_free(&r);
  if ((rc = add_status(s, &r, index, attempts, final)) < 0) goto done;
  if ((rc = journal_and_apply(s, &r, cell->key, attempts)) < 0) goto done;
  s->n_running--;
  s->dirty = 1;
  if (!final) {
    s->state[i] = KG_CELL_PENDING;
    kg_warn("cell %s failed (attempt %d of %d), will retry: %s", cell->key, attempts, s->max_attempts, r.error);
    goto done;
  }
  s->state[i] = r.ok ? KG_CELL_DONE : KG_CELL_FAILED;
  if (r.ok) {
    s->n_done++;
    s->done_this_run++;
  } else {
    s->n_failed++;
    kg_warn("cell %s failed after %d attempts: %s", cell->key, attempts, r.error);
  }
  /* Replicas take the computed cell's values under their own coordinates. */
  for (size_t j = 0; j < s->cells->n_cells && rc >= 0; j++) {
    const kg_sweep_cell *rep = &s->cells->cells[j];
    if (rep->replica_of != i) continue;
    int64_t rindex[KG_GRID_CELL_DIMS];
    kg_grid_index(rep, rindex);
    kg_cell_result rr;
    if ((rc = kg_cell_result_retarget(&r, s->schema->cube, rindex, &rr)) < 0) break;
    rc = journal_and_apply(s, &rr, rep->key, attempts);
    kg_cell_result_free(&rr);
  }
done:
  kg_cell_result_free(&r);
  return rc;
}

int kg_schedule_publish(kg_schedule *s, int force) {
  double now = kg_now();
  if (!force && (!s->dirty || now - s->last_publish < s->publish_every)) return KG_OK;
  int rc = kg_cube_write(s->schema->cube, s->cube_path);
  if (rc < 0) return rc;
  s->dirty = 0;
  s->last_publish = now;
  return KG_OK;
}

static void format_eta(double s, char *out, size_t cap) {
  if (s < 0 || s > 1e8) snprintf(out, cap, "--");
  else if (s < 90) snprintf(out, cap, "%.0fs", s);
  else if (s < 5400) snprintf(out, cap, "%.0fm", s / 60);
  else snprintf(out, cap, "%.1fh", s / 3600);
}

void kg_schedule_progress(kg_schedule *s, int force) {
  double now = kg_now();
  if (!force && now - s->last_progress < s->progress_every) return;
  s->last_progress = now;
  const double elapsed = now - s->start_time;
  const int64_t left = s->n_computed - s->n_done - s->n_failed;
  const double rate = elapsed > 0 ? (double)s->done_this_run / elapsed : 0.0;
  char eta[32], took[32];
  format_eta(rate > 0 ? (double)left / rate : -1, eta, sizeof(eta));
  format_eta(elapsed, took, sizeof(took));
  kg_info("grid: %lld/%lld done, %lld failed, %lld running | %.2f cells/min | elapsed %s | ETA %s",
          (long long)s->n_done, (long long)s->n_computed, (long long)s->n_failed, (long long)s->n_running, rate * 60,
          took, eta);
}

int kg_schedule_all_resolved(const kg_schedule *s) {
  for (size_t i = 0; i < s->cells->n_cells; i++)
    if (is_computed(s->cells, (int64_t)i) && (s->state[i] == KG_CELL_PENDING || s->state[i] == KG_CELL_RUNNING))
      return 0;
  return 1;
}
