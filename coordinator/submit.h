/* Slurm batch jobs for sweeps (`kickgrid submit`): the batch script text,
 * Slurm time limits, and splitting a sweep into per-model shards whose cubes
 * `kickgrid merge` joins.
 *
 * The script is the body of slurm/kickgrid.sbatch (everything below its
 * marker line) under a generated head: #SBATCH options and the shell
 * settings the body reads. Keeping one body means a hand-written job and a
 * generated one behave the same.
 *
 * Ownership: strings returned through `char **out` are malloc'd and freed by
 * the caller. Options are borrowed for the duration of a call. */
#ifndef KG_COORDINATOR_SUBMIT_H
#define KG_COORDINATOR_SUBMIT_H

#include "io/sweep_config.h"

/* The line in the template that separates the settings from the body. */
#define KG_SUBMIT_MARKER "# ---- kickgrid body:"

typedef struct kg_submit_opts {
  const char *sweep;       /* the config the job runs (absolute path recommended) */
  const char *workdir;     /* the job's working directory (relative config paths resolve there) */
  const char *kickgrid;    /* the kickgrid binary the job runs */
  const char *log_path;    /* Slurm's --output pattern, e.g. "out/slurm/%x-%j.out" */
  const char *job_name;
  int nodes;               /* >= 1 */
  int gpus_per_node;       /* 0: CPU-only */
  int workers_per_node;    /* working ranks per node: gpus_per_node, or the CPU ranks asked for */
  int cpus_per_task;       /* 0: Slurm's default */
  const char *time;        /* Slurm time limit text; NULL: the partition's default */
  const char *partition;   /* NULL: not set */
  const char *account;     /* NULL: not set */
  const char *mem;         /* per node, e.g. "64G"; NULL: not set */
  int signal_lead_s;       /* USR1 this many seconds before the time limit */
  double drain_timeout_s;  /* kickgrid run --drain-timeout; below the lead */
  int max_restarts;        /* the job stops requeueing itself after this many restarts */
  int fresh;               /* the first start discards earlier results */
  const char *srun_mpi;    /* srun --mpi plugin; NULL: pmix */
  const char *const *run_args; /* more `kickgrid run` arguments */
  int n_run_args;
} kg_submit_opts;

/* Seconds in a Slurm time limit ("90", "90:30", "4:00:00", "1-12",
 * "1-12:30", "1-12:30:15"); KG_ERR_ARG for anything else, including
 * "UNLIMITED" (no limit, so no lead to check against). */
int kg_slurm_time_seconds(const char *text, long *seconds);

/* Checks the options (ranks, lead against the time limit, characters Slurm
 * cannot take on an #SBATCH line) and returns the whole batch script built
 * from `template_text` (the contents of slurm/kickgrid.sbatch or a copy). */
int kg_submit_script(const kg_submit_opts *opts, const char *template_text, char **out);

/* The template kickgrid submit uses: $KG_SBATCH_TEMPLATE, else
 * slurm/kickgrid.sbatch in the source tree this binary was built from. */
const char *kg_submit_template_path(void);
/* Reads a template and checks it has the marker line. */
int kg_submit_read_template(const char *path, char **text);

/* A job running after others: `kickgrid merge` of the shard cubes. */
int kg_submit_merge_script(const kg_submit_opts *opts, const char *const *cubes, int n_cubes, const char *merged,
                           char **out);

/* Spreads the sweep's models over k shards, largest estimated cost first onto
 * the least loaded shard. shard_of_model[n_models] gets 0..k-1. KG_ERR_ARG
 * when k is not in 1..n_models. */
int kg_submit_shard_models(const kg_sweep *sweep, int k, int *shard_of_model);

/* Writes the config of shard `shard` to `path`: the sweep at `config` with
 * only that shard's models, grid.output = cube and grid.log_dir = log_dir
 * (@includes are inlined). The file is loaded back and checked to describe
 * the same grid for those models. */
int kg_submit_write_shard(const char *config, const kg_sweep *sweep, const int *shard_of_model, int shard,
                          const char *path, const char *cube, const char *log_dir);

/* "'it'\''s'": one shell word that stands for `s` exactly. */
int kg_shell_quote(const char *s, char **out);

#endif
