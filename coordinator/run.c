/* kg_run: setting up the grid on every rank, the coordinator's message
 * loop on rank 0, and the team loop on the working ranks. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/coordinator.h"
#include "coordinator/provenance.h"
#include "coordinator/schedule.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/log.h"
#include "io/paths.h"
#include "worker/worker.h"

enum { TAG_REQUEST = 11, TAG_ASSIGN = 12, TAG_STOP = 13, TAG_RESULT = 14 };

static volatile sig_atomic_t drain_requested;
static void on_drain_signal(int sig) { drain_requested = sig; }

/* Writes rank 0's exit status to $KG_OUTCOME_FILE. srun can exit 0 for a step
 * whose tasks never started (Slurm aborts a launch that overlaps the previous
 * run's step cleanup), so the batch script trusts this file, not srun's
 * status, to know that kickgrid ran; it must be written before MPI_Abort. */
static void report_outcome(int status) {
  const char *path = getenv("KG_OUTCOME_FILE");
  if (!path || !path[0]) return;
  FILE *f = fopen(path, "w");
  if (!f) {
    kg_warn("cannot write the outcome file %s: %s", path, strerror(errno));
    return;
  }
  fprintf(f, "%d\n", status);
  if (fclose(f) != 0) kg_warn("cannot write the outcome file %s: %s", path, strerror(errno));
}

typedef struct grid {
  const kg_run_opts *opts;
  int world_rank, world_size;
  kg_sweep *sweep;
  kg_sweep_cells *cells;
  kg_grid_schema schema;
  MPI_Comm team;        /* working ranks only; MPI_COMM_NULL on the coordinator */
  int team_rank, team_size;
  int is_leader;
  int node_workers;     /* working ranks on this rank's node (they share its cores) */
  int node_worker_index; /* this rank's position among them (picks its GPU) */
  char backend_name[32];  /* "cpu" or "cuda:<node_worker_index>" */
  char host[128];
} grid;

static int mpi_fail(int mrc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(mrc, msg, &len);
  return kg_error(KG_ERR_COMM, "%s: %s", what, msg);
}

/* Layer counts of the models, for the per-layer variables: rank 0 reads
 * them (cheap header reads) and every rank gets the same numbers. */
static int model_layers(grid *g, int *layers) {
  int rc = KG_OK;
  if (g->world_rank == 0) {
    for (size_t i = 0; i < g->sweep->n_models; i++) {
      const kg_sweep_model *m = &g->sweep->models[i];
      layers[i] = m->shape_known ? m->shape.n_layers : 0;
    }
  }
  int mrc = MPI_Bcast(layers, (int)g->sweep->n_models, MPI_INT, 0, MPI_COMM_WORLD);
  if (mrc != MPI_SUCCESS) rc = mpi_fail(mrc, "MPI_Bcast of model shapes");
  return rc;
}

/* Working ranks are grouped into teams of team_size ranks on one node:
 * node-local communicator first, then consecutive node-local workers. */
static int make_teams(grid *g) {
  const int team_size = g->sweep->grid.team_size > 0 ? g->sweep->grid.team_size : 1;
  MPI_Comm node = MPI_COMM_NULL;
  int mrc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g->world_rank, MPI_INFO_NULL, &node);
  if (mrc != MPI_SUCCESS) return mpi_fail(mrc, "MPI_Comm_split_type");
  int node_rank = 0, node_size = 1;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);

  /* Which node this is: the world rank of its first rank. */
  int node_id = g->world_rank;
  MPI_Allreduce(&g->world_rank, &node_id, 1, MPI_INT, MPI_MIN, node);
  /* Position among this node's working ranks (the coordinator does not work). */
  int is_worker = g->world_size == 1 || g->world_rank != 0;
  int before = 0;
  MPI_Exscan(&is_worker, &before, 1, MPI_INT, MPI_SUM, node);
  if (node_rank == 0) before = 0;
  int node_workers = 0;
  MPI_Allreduce(&is_worker, &node_workers, 1, MPI_INT, MPI_SUM, node);
  g->node_workers = node_workers;
  g->node_worker_index = before;
  MPI_Comm_free(&node);
  int team_index = before / team_size;
  int complete = (team_index + 1) * team_size <= node_workers;
  int color = is_worker && complete ? node_id * 4096 + team_index : MPI_UNDEFINED;
  if (is_worker && !complete)
    kg_warn("rank %d is left over: %d working ranks on this node do not fill teams of %d", g->world_rank,
            node_workers, team_size);
  mrc = MPI_Comm_split(MPI_COMM_WORLD, color, g->world_rank, &g->team);
  if (mrc != MPI_SUCCESS) return mpi_fail(mrc, "MPI_Comm_split (teams)");
  if (g->team != MPI_COMM_NULL) {
    MPI_Comm_rank(g->team, &g->team_rank);
    MPI_Comm_size(g->team, &g->team_size);
    g->is_leader = g->team_rank == 0;
  }
  return KG_OK;
}

static int worker_env(grid *g, kg_worker **w) {
  kg_worker_env env = {0};
  env.team = g->team_size > 1 ? g->team : MPI_COMM_NULL;
  /* One GPU per working rank of a node: the backend wraps the index around the device count. */
  if (g->sweep->grid.backend == KG_BACKEND_CUDA)
    snprintf(g->backend_name, sizeof(g->backend_name), "cuda:%d", g->node_worker_index);
  else
    snprintf(g->backend_name, sizeof(g->backend_name), "cpu");
  env.backend = g->backend_name;
  env.threads = g->sweep->grid.threads;
  env.log_dir = g->sweep->grid.log_dir;
  env.host = g->host;
  if (env.threads <= 0 && g->world_size > 1) {
    /* Ranks share their node's cores instead of each taking all of them. */
    /* The cores this process may run on (Slurm's --cpus-per-task, cpusets), not the machine's. */
    cpu_set_t set;
    long cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    int local = g->node_workers > 0 ? g->node_workers : 1;
    env.threads = (int)(cores / local > 0 ? cores / local : 1);
  }
  return kg_worker_create(g->sweep, g->cells, &g->schema, &env, w);
}

/* ---- working ranks ---- */

static int team_loop(grid *g) {
  kg_worker *w = NULL;
  int rc = worker_env(g, &w);
  /* A worker that cannot even start (out of memory) ends the job: the next
   * run resumes from the journal. */
  if (rc < 0) return rc;
  for (;;) {
    int64_t job[2] = {-1, 0};
    if (g->is_leader) {
      int64_t affinity[2] = {-1, -1};
      kg_worker_affinity(w, &affinity[0], &affinity[1]);
      MPI_Send(affinity, 2, MPI_INT64_T, 0, TAG_REQUEST, MPI_COMM_WORLD);
      MPI_Status st;
      MPI_Recv(job, 2, MPI_INT64_T, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
      if (st.MPI_TAG == TAG_STOP) job[0] = -1;
    }
    MPI_Bcast(job, 2, MPI_INT64_T, 0, g->team);
    if (job[0] < 0) break;
    kg_cell_result r;
    kg_cell_result_init(&r, job[0]);
    if ((rc = kg_worker_run_cell(w, job[0], (int)job[1], &r)) < 0) {
      kg_cell_result_free(&r);
      break;
    }
    if (g->is_leader) {
      unsigned char *buf = NULL;
      size_t len = 0;
      if ((rc = kg_cell_result_pack(&r, &buf, &len)) < 0) {
        kg_cell_result_free(&r);
        break;
      }
      MPI_Send(buf, (int)len, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
      free(buf);
    }
    kg_cell_result_free(&r);
  }
  kg_worker_free(w);
  return rc;
}

/* ---- the coordinator ---- */

static void send_stop(int dest) {
  int64_t none[2] = {-1, 0};
  MPI_Send(none, 2, MPI_INT64_T, dest, TAG_STOP, MPI_COMM_WORLD);
}

static int receive_result(kg_schedule *s, int source) {
  MPI_Status st;
  int count = 0;
  MPI_Probe(source, TAG_RESULT, MPI_COMM_WORLD, &st);
  MPI_Get_count(&st, MPI_BYTE, &count);
  unsigned char *buf = malloc(count > 0 ? (size_t)count : 1);
  if (!buf) return kg_error(KG_ERR_NOMEM, "out of memory receiving a result");
  MPI_Recv(buf, count, MPI_BYTE, source, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  kg_cell_result r;
  int rc = kg_cell_result_unpack(buf, (size_t)count, &r);
  free(buf);
  if (rc < 0) return rc;
  rc = kg_schedule_finish(s, &r);
  kg_cell_result_free(&r);
  return rc;
}

static int coordinate(grid *g, kg_schedule *s) {
  int rc = KG_OK;
  /* Count team leaders: each sends requests until told to stop. */
  int leaders = 0, mine = 0;
  MPI_Reduce(&mine, &leaders, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  int active = leaders, running = 0;
  double drain_started = -1;
  if (active == 0) return kg_error(KG_ERR_ARG, "no complete team of %d ranks: start more ranks", g->sweep->grid.team_size);
  while (active > 0) {
    if (drain_requested && drain_started < 0) {
      drain_started = kg_now();
      kg_warn("signal %d: draining (no new cells; waiting up to %.0f s for %d running)", (int)drain_requested,
              g->opts->drain_timeout_s, running);
    }
    if (drain_started >= 0 && kg_now() - drain_started > g->opts->drain_timeout_s) {
      kg_warn("drain timeout: %d cells still running are abandoned (they will be rerun on resume)", running);
      kg_schedule_publish(s, 1);
      return KG_ERR_CANCELLED;
    }
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
    if (!flag) {
      kg_schedule_progress(s, 0);
      if ((rc = kg_schedule_publish(s, 0)) < 0) return rc;
      usleep(2000);
      continue;
    }
    if (st.MPI_TAG == TAG_RESULT) {
      running--;
      if ((rc = receive_result(s, st.MPI_SOURCE)) < 0) return rc;
      kg_schedule_progress(s, 1);
      continue;
    }
    if (st.MPI_TAG != TAG_REQUEST) return kg_error(KG_ERR_COMM, "unexpected message tag %d from rank %d", st.MPI_TAG, st.MPI_SOURCE);
    int64_t affinity[2];
    MPI_Recv(affinity, 2, MPI_INT64_T, st.MPI_SOURCE, TAG_REQUEST, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    int attempt = 0;
    int64_t cell = drain_started >= 0 ? -1 : kg_schedule_next(s, affinity[0], affinity[1], &attempt);
    if (cell < 0) {
      /* Nothing pending: this team stops. A running cell that fails is
       * retried by its own team, which asks again when it reports. */
      send_stop(st.MPI_SOURCE);
      active--;
      continue;
    }
    int64_t job[2] = {cell, attempt};
    MPI_Send(job, 2, MPI_INT64_T, st.MPI_SOURCE, TAG_ASSIGN, MPI_COMM_WORLD);
    running++;
    kg_debug("cell %s -> rank %d (attempt %d)", g->cells->cells[cell].key, st.MPI_SOURCE, attempt);
  }
  return drain_started >= 0 && !kg_schedule_all_resolved(s) ? KG_ERR_CANCELLED : KG_OK;
}

/* One rank: the coordinator runs the cells itself. */
static int coordinate_alone(grid *g, kg_schedule *s) {
  kg_worker *w = NULL;
  int rc = worker_env(g, &w);
  if (rc < 0) return rc;
  for (;;) {
    if (drain_requested) {
      kg_warn("signal %d: stopping before the next cell", (int)drain_requested);
      rc = kg_schedule_all_resolved(s) ? KG_OK : KG_ERR_CANCELLED;
      break;
    }
    int64_t model, calib;
    int attempt = 0;
    kg_worker_affinity(w, &model, &calib);
    int64_t cell = kg_schedule_next(s, model, calib, &attempt);
    if (cell < 0) break;
    kg_cell_result r;
    kg_cell_result_init(&r, cell);
    rc = kg_worker_run_cell(w, cell, attempt, &r);
    if (rc >= 0) rc = kg_schedule_finish(s, &r);
    kg_cell_result_free(&r);
    if (rc < 0) break;
    kg_schedule_progress(s, 1);
    if ((rc = kg_schedule_publish(s, 0)) < 0) break;
  }
  kg_worker_free(w);
  return rc;
}

int kg_run(const kg_run_opts *opts) {
  grid g = {0};
  kg_schedule sched = {0};
  int status = KG_RUN_OK, rc = KG_OK;
  int *layers = NULL;
  g.opts = opts;
  g.team = MPI_COMM_NULL;
  MPI_Comm_rank(MPI_COMM_WORLD, &g.world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g.world_size);
  gethostname(g.host, sizeof(g.host) - 1);
  if (g.world_size > 1) {
    char tag[32];
    snprintf(tag, sizeof(tag), g.world_rank == 0 ? "coordinator" : "rank %d", g.world_rank);
    kg_log_set_tag(tag);
  }
  /* Slurm signals every task; only the coordinator acts on it. */
  struct sigaction sa = {0};
  sa.sa_handler = on_drain_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  if (g.world_rank == 0) sigaction(SIGTERM, &sa, NULL);

  kg_diag_list diags;
  kg_diag_list_init(&diags);
  rc = kg_sweep_load(opts->config, &g.sweep, &diags);
  if (g.world_rank == 0) kg_diag_list_print(&diags, stderr);
  if (rc >= 0 && (rc = kg_sweep_check_world(g.sweep, g.world_size > 1 ? g.world_size - 1 : 1, &diags)) < 0 &&
      g.world_rank == 0)
    kg_diag_list_print(&diags, stderr);
  kg_diag_list_free(&diags);
  if (rc < 0) {
    if (g.world_rank == 0) fprintf(stderr, "kickgrid run: %s\n", kg_error_message());
    status = KG_RUN_FAILED;
    goto done;
  }
  if (g.sweep->data_dir) kg_paths_set_data_dir(g.sweep->data_dir);
  if ((rc = kg_sweep_expand(g.sweep, &g.cells)) < 0) goto fail;
  if (!(layers = calloc(g.sweep->n_models, sizeof(int)))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto fail;
  }
  if ((rc = model_layers(&g, layers)) < 0) goto fail;
  if ((rc = kg_grid_schema_create(g.sweep, g.cells, layers, &g.schema)) < 0) goto fail;
  if ((rc = make_teams(&g)) < 0) goto fail;

  if (g.world_rank == 0) {
    const char *out = opts->output ? opts->output : g.sweep->grid.output;
    if ((rc = kg_provenance_attach(g.schema.cube, g.sweep, g.world_size, opts->argc, opts->argv)) < 0) goto coord_fail;
    if ((rc = kg_schedule_open(&sched, g.sweep, g.cells, &g.schema, out, opts->resume, opts->fresh,
                               opts->publish_every_s > 0 ? opts->publish_every_s : 5.0)) < 0)
      goto coord_fail;
    kg_info("grid %s: %zu cells (%zu computed, %zu replicas), %lld already done; %d ranks, teams of %d; cube %s",
            g.sweep->name, g.cells->n_cells, g.cells->n_computed, g.cells->n_replicas, (long long)sched.n_done,
            g.world_size, g.sweep->grid.team_size, out);
    rc = g.world_size == 1 ? coordinate_alone(&g, &sched) : coordinate(&g, &sched);
    int prc = kg_schedule_publish(&sched, 1);
    kg_schedule_progress(&sched, 1);
    if (rc == KG_ERR_CANCELLED) {
      status = KG_RUN_DRAINED;
      kg_warn("stopped early: resume with `kickgrid run %s --resume`", opts->config);
    } else if (rc < 0 || prc < 0) {
      goto coord_fail;
    } else {
      kg_info("grid finished: %lld done, %lld failed; cube %s", (long long)sched.n_done, (long long)sched.n_failed, out);
      if (sched.n_failed && opts->strict) status = KG_RUN_CELLS_FAILED;
    }
    kg_schedule_close(&sched);
    if (status == KG_RUN_DRAINED && g.world_size > 1) {
      /* Running cells cannot be interrupted cleanly: end the job; the journal is consistent. */
      report_outcome(status);
      fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, KG_RUN_DRAINED);
    }
    goto done;
  coord_fail:
    fprintf(stderr, "kickgrid run: %s\n", kg_error_message());
    kg_schedule_close(&sched);
    status = KG_RUN_FAILED;
    if (g.world_size > 1) {
      report_outcome(status);
      MPI_Abort(MPI_COMM_WORLD, KG_RUN_FAILED);
    }
    goto done;
  }
  {
    int mine = g.is_leader, unused = 0;
    MPI_Reduce(&mine, &unused, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  }
  if (g.team != MPI_COMM_NULL && (rc = team_loop(&g)) < 0) {
    fprintf(stderr, "kickgrid run (rank %d): %s\n", g.world_rank, kg_error_message());
    MPI_Abort(MPI_COMM_WORLD, KG_RUN_FAILED);
  }
  goto done;
fail:
  fprintf(stderr, "kickgrid run: %s\n", kg_error_message());
  status = KG_RUN_FAILED;
done:
  if (g.world_rank == 0) report_outcome(status);
  if (g.team != MPI_COMM_NULL) MPI_Comm_free(&g.team);
  kg_grid_schema_free(&g.schema);
  kg_sweep_cells_free(g.cells);
  kg_sweep_free(g.sweep);
  free(layers);
  return status;
}
