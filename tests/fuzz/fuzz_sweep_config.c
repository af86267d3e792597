/* libFuzzer harness for sweep configs: parse, validate and expand arbitrary
 * text; any crash, leak or sanitizer report is a bug. The loader reads a
 * path (libconfig reports file:line from it), so the input goes through a
 * temporary file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/error.h"
#include "io/sweep_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* @include could name /dev/zero and read forever: not the parser's problem. */
  if (size > 1 << 16 || memmem(data, size, "@include", 8)) return 0;
  char path[] = "/tmp/kg_fuzz_sweep_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    unlink(path);
    return 0;
  }
  fwrite(data, 1, size, f);
  fclose(f);
  kg_diag_list diags;
  kg_diag_list_init(&diags);
  kg_sweep *sw = NULL;
  kg_sweep_options opts = {.missing_models_are_warnings = (size & 1) != 0};
  if (kg_sweep_load_opts(path, &opts, &sw, &diags) == KG_OK) {
    kg_sweep_cells *cells = NULL;
    if (kg_sweep_expand(sw, &cells) == KG_OK) kg_sweep_cells_free(cells);
  }
  kg_sweep_free(sw);
  kg_diag_list_free(&diags);
  kg_error_clear();
  unlink(path);
  return 0;
}
