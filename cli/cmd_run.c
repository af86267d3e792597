/* kickgrid run: the whole grid, under mpirun/srun or alone. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/coordinator.h"

static const char usage[] =
    "usage: [mpirun -np N] kickgrid run SWEEP.cfg [--resume | --fresh] [options]\n\n"
    "Runs every cell of a sweep and writes one HDF5 result cube. Rank 0\n"
    "coordinates; the other ranks work in teams of grid.team_size. With one\n"
    "rank the process coordinates and works. Finished cells are journaled\n"
    "(fsync) as they arrive, so a crash loses nothing that finished.\n\n"
    "options:\n"
    "  --resume            continue from the journal: finished cells are kept\n"
    "  --fresh             discard previous results of this cube\n"
    "  --output PATH       cube path (default: grid.output)\n"
    "  --drain-timeout S   after SIGUSR1/SIGTERM, wait S seconds for running cells (default 60)\n"
    "  --publish-every S   rewrite the cube at most every S seconds (default 5)\n"
    "  --strict            exit 3 when any cell failed\n\n"
    "exit status: 0 finished, 1 could not run, 2 usage, 3 cells failed (--strict),\n"
    "75 stopped on a signal before finishing (requeue and run with --resume)\n\n"
    "environment: KG_OUTCOME_FILE=PATH  rank 0 writes its exit status there (the\n"
    "Slurm batch script uses it to tell a step that never started from a finished run)\n";

int kg_cmd_run(int argc, char **argv) {
  kg_run_opts o = {0};
  o.drain_timeout_s = 60;
  o.publish_every_s = 5;
  o.argc = argc;
  o.argv = argv;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--resume")) o.resume = 1;
    else if (!strcmp(a, "--fresh")) o.fresh = 1;
    else if (!strcmp(a, "--strict")) o.strict = 1;
    else if (!strcmp(a, "--output") && i + 1 < argc) o.output = argv[++i];
    else if (!strcmp(a, "--drain-timeout") && i + 1 < argc) {
      if (kg_cli_parse_double("run", a, argv[++i], &o.drain_timeout_s)) return 2;
    } else if (!strcmp(a, "--publish-every") && i + 1 < argc) {
      if (kg_cli_parse_double("run", a, argv[++i], &o.publish_every_s)) return 2;
    } else if (a[0] == '-') {
      return kg_cli_usage_error("run", "unknown option %s", a);
    } else if (!o.config) {
      o.config = a;
    } else {
      return kg_cli_usage_error("run", "more than one config given");
    }
  }
  if (!o.config) return kg_cli_usage_error("run", "a sweep config is required");
  if (o.resume && o.fresh) return kg_cli_usage_error("run", "--resume and --fresh exclude each other");
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int status = kg_run(&o);
  MPI_Finalize();
  return status;
}
