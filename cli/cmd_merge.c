/* kickgrid merge: one cube from the cubes of a sweep split over several jobs. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "io/cube.h"
#include "io/error.h"

static const char *const usage_text =
    "usage: kickgrid merge A.h5 B.h5 ... -o OUT.h5\n\n"
    "Merges result cubes: labels are united per dimension (numbers sorted,\n"
    "strings in first-seen order) and values copied. A cell set to different\n"
    "values in two inputs is an error naming the cell, unless the `status`\n"
    "variable shows one input finished it and the other did not (done beats\n"
    "failed beats pending). Provenance attributes that differ are kept per\n"
    "input as <name>_input<i>; `merged_from` lists the inputs.\n\n"
    "  -o, --output OUT.h5   the merged cube (written atomically)\n";

int kg_cmd_merge(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
  const char *output = NULL;
  int c, rc = 1, n = 0;
  kg_cube **cubes = NULL, *merged = NULL;
  while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage_text, stdout);
      return 0;
    }
    if (c == 'o') output = optarg;
    else return kg_cli_usage_error("merge", "unknown option");
  }
  if (!output) return kg_cli_usage_error("merge", "missing -o OUT.h5");
  int n_in = argc - optind;
  if (n_in < 1) return kg_cli_usage_error("merge", "expected at least one input cube");
  const char *const *names = (const char *const *)(argv + optind);
  if (!(cubes = calloc((size_t)n_in, sizeof(*cubes)))) {
    kg_error(KG_ERR_NOMEM, "out of memory");
    return kg_cli_fail("merge");
  }
  for (; n < n_in; n++)
    if (kg_cube_read(names[n], &cubes[n]) < 0) goto done;
  if (kg_cube_merge((const kg_cube *const *)cubes, names, n_in, &merged) < 0) goto done;
  if (kg_cube_write(merged, output) < 0) goto done;
  printf("merged %d cube%s into %s:", n_in, n_in == 1 ? "" : "s", output);
  for (int d = 0; d < kg_cube_n_dims(merged); d++)
    printf("%s %s=%lld", d ? "," : "", kg_cube_dim_name(merged, d), (long long)kg_cube_dim_size(merged, d));
  printf("\n");
  rc = 0;
done:
  if (rc) kg_cli_fail("merge");
  for (int i = 0; i < n; i++) kg_cube_free(cubes[i]);
  free(cubes);
  kg_cube_free(merged);
  return rc;
}
