/* kickgrid report: plots, one self-contained HTML page and CSV/JSON exports
 * of a result cube. The work is Python (xarray, pandas, matplotlib) in
 * analysis/kickgrid_analysis; this command finds it and hands over. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/paths.h"

static const char *const packages = "numpy pandas xarray h5netcdf matplotlib";

int kg_cmd_report(int argc, char **argv) {
  const char *python = getenv("KG_PYTHON");
  const char *analysis = getenv("KG_ANALYSIS_DIR");
  /* scripts/setup installs the Python packages into the checkout's .venv. */
  static const char venv_python[] = KG_SOURCE_DIR "/.venv/bin/python";
  if (!python || !python[0]) python = access(venv_python, X_OK) == 0 ? venv_python : "python3";
  if (!analysis || !analysis[0]) analysis = KG_SOURCE_DIR "/analysis";
  char module[PATH_MAX];
  snprintf(module, sizeof module, "%s/kickgrid_analysis/report.py", analysis);
  if (!kg_path_exists(module)) {
    fprintf(stderr,
            "kickgrid report: %s is missing: the report code lives in the source tree's analysis/ folder "
            "(set KG_ANALYSIS_DIR to it)\n",
            module);
    return 1;
  }
  /* The package goes first on the path so this tree's copy is the one used. */
  const char *old = getenv("PYTHONPATH");
  size_t len = strlen(analysis) + (old ? strlen(old) + 1 : 0) + 1;
  char *path = malloc(len);
  char **args = calloc((size_t)argc + 4, sizeof(char *));
  if (!path || !args) {
    fprintf(stderr, "kickgrid report: out of memory\n");
    free(path);
    free(args);
    return 1;
  }
  snprintf(path, len, "%s%s%s", analysis, old && old[0] ? ":" : "", old && old[0] ? old : "");
  setenv("PYTHONPATH", path, 1);
  int n = 0;
  args[n++] = (char *)python;
  args[n++] = "-m";
  args[n++] = "kickgrid_analysis.report";
  for (int i = 1; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;
  fflush(stdout);
  execvp(python, args);
  fprintf(stderr,
          "kickgrid report: cannot run %s: %s (it needs Python 3 with %s: run scripts/setup, or set KG_PYTHON "
          "to an interpreter that has them)\n",
          python, strerror(errno), packages);
  free(path);
  free(args);
  return 1;
}
