#include "coordinator/provenance.h"

#include <H5public.h>
#include <cJSON.h>
#include <cblas.h>
#include <libconfig.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/error.h"
#include "io/paths.h"

static int set(kg_cube *c, const char *key, const char *value) {
  return kg_cube_set_attr(c, KG_CUBE_GLOBAL, key, value ? value : "");
}

int kg_provenance_attach(kg_cube *c, const kg_sweep *sweep, int world_size, int argc, char **argv) {
  char buf[4096];
  KG_TRY(set(c, "title", sweep->name));
  KG_TRY(set(c, "Conventions", "kickgrid-cube-1"));
  KG_TRY(set(c, "kickgrid_version", KG_VERSION));
  KG_TRY(set(c, "git_commit", KG_GIT_COMMIT));
  KG_TRY(set(c, "config_path", sweep->path));
  KG_TRY(set(c, "config_text", sweep->text));
  /* Included files hold part of the grid: record each one. */
  for (size_t i = 1; i < sweep->n_sources; i++) {
    char key[64];
    snprintf(key, sizeof(key), "config_include%zu_path", i);
    KG_TRY(set(c, key, sweep->source_paths[i]));
    snprintf(key, sizeof(key), "config_include%zu_text", i);
    KG_TRY(set(c, key, sweep->source_texts[i]));
  }
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < argc && n < sizeof(buf) - 1; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", argv[i]);
  KG_TRY(set(c, "command_line", buf));
  snprintf(buf, sizeof(buf), "%d", world_size);
  KG_TRY(set(c, "mpi_world_size", buf));
  snprintf(buf, sizeof(buf), "%d", sweep->grid.team_size);
  KG_TRY(set(c, "team_size", buf));
  KG_TRY(set(c, "backend", sweep->grid.backend == KG_BACKEND_CUDA ? "cuda" : "cpu"));
  KG_TRY(set(c, "data_dir", kg_data_dir()));
  const char *job = getenv("SLURM_JOB_ID");
  KG_TRY(set(c, "slurm_job_id", job));
  const char *restarts = getenv("SLURM_RESTART_COUNT");
  KG_TRY(set(c, "slurm_restart_count", restarts));

  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  snprintf(buf, sizeof(buf), "%u.%u.%u", maj, min, rel);
  KG_TRY(set(c, "hdf5_version", buf));
  int len = 0;
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Get_library_version(mpi, &len);
  char *nl = strchr(mpi, '\n');
  if (nl) *nl = '\0';
  KG_TRY(set(c, "mpi_library", mpi));
  KG_TRY(set(c, "openblas", openblas_get_config()));
  snprintf(buf, sizeof(buf), "%d.%d.%d", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION);
  KG_TRY(set(c, "libconfig_version", buf));
  KG_TRY(set(c, "cjson_version", cJSON_Version()));
  snprintf(buf, sizeof(buf), "%d.%d", PCRE2_MAJOR, PCRE2_MINOR);
  KG_TRY(set(c, "pcre2_version", buf));
  return KG_OK;
}
