/* `kickgrid run`: rank 0 coordinates the grid, the other ranks work in teams.
 * With one rank, the same process coordinates and works. */
#ifndef KG_COORDINATOR_COORDINATOR_H
#define KG_COORDINATOR_COORDINATOR_H

typedef struct kg_run_opts {
  const char *config;     /* sweep config path */
  int resume;             /* continue from the journal and cube */
  int fresh;              /* discard an existing journal and cube */
  const char *output;     /* overrides grid.output */
  double drain_timeout_s; /* after SIGUSR1/SIGTERM, wait this long for running cells (default 60) */
  double publish_every_s; /* cube publish interval (default 5) */
  int strict;             /* exit non-zero when a cell failed */
  int argc;               /* command line, recorded as provenance */
  char **argv;
} kg_run_opts;

/* Exit statuses of kg_run. */
enum {
  KG_RUN_OK = 0,
  KG_RUN_FAILED = 1,      /* could not run (bad config, I/O) */
  KG_RUN_USAGE = 2,
  KG_RUN_CELLS_FAILED = 3, /* with strict: finished, some cells failed */
  KG_RUN_DRAINED = 75,    /* stopped on a signal with cells left: requeue and resume */
};

/* Call after MPI_Init on every rank. Returns the process exit status. */
int kg_run(const kg_run_opts *opts);

#endif
