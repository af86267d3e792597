#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/paths.h"

int kg_cli_model_option(const char *command, int argc, char **argv, int *i, kg_cli_model_opts *o) {
  const char *a = argv[*i];
  const char **slot = NULL;
  if (!strcmp(a, "--model")) slot = &o->model;
  else if (!strcmp(a, "--tokenizer")) slot = &o->tokenizer;
  else if (!strcmp(a, "--backend")) slot = &o->backend;
  else if (strcmp(a, "--threads") != 0 && strcmp(a, "--data-dir") != 0 && strcmp(a, "--gpu-memory-gb") != 0) return 0;
  if (*i + 1 >= argc) {
    kg_cli_usage_error(command, "%s needs a value", a);
    return 2;
  }
  const char *value = argv[++*i];
  if (slot) {
    *slot = value;
  } else if (!strcmp(a, "--threads")) {
    long long t;
    if (kg_cli_parse_int(command, a, value, 0, 4096, &t) != 0) return 2;
    o->threads = (int)t;
  } else if (!strcmp(a, "--gpu-memory-gb")) {
    double gb;
    if (kg_cli_parse_double(command, a, value, &gb) != 0) return 2;
    if (gb < 0) {
      kg_cli_usage_error(command, "--gpu-memory-gb must be >= 0");
      return 2;
    }
    o->gpu_memory_gb = gb;
  } else {
    kg_paths_set_data_dir(value);
  }
  return 1;
}

int kg_cli_open_model(const kg_cli_model_opts *o, kg_backend **be, kg_model **m, kg_tokenizer **tok) {
  int rc = KG_OK;
  *be = NULL;
  *m = NULL;
  if (tok) *tok = NULL;
  if (!o->model) return kg_error(KG_ERR_ARG, "--model is required");
  if ((rc = kg_backend_create(o->backend ? o->backend : "cpu", o->threads, be)) < 0) return rc;
  if (o->gpu_memory_gb > 0 &&
      (rc = kg_backend_set_memory_budget(*be, (size_t)(o->gpu_memory_gb * 1073741824.0))) < 0)
    goto fail;
  int want_own_tokenizer = tok && !o->tokenizer;
  if ((rc = kg_model_load(o->model, *be, m, want_own_tokenizer ? tok : NULL)) < 0) goto fail;
  if (tok && o->tokenizer && (rc = kg_tokenizer_load(o->tokenizer, tok)) < 0) goto fail;
  if (tok && kg_tokenizer_vocab_size(*tok) > (*m)->cfg.vocab_size) {
    rc = kg_error(KG_ERR_ARG, "tokenizer has %d tokens but the model's vocabulary is %d",
                  kg_tokenizer_vocab_size(*tok), (*m)->cfg.vocab_size);
    goto fail;
  }
  return KG_OK;
fail:
  if (tok) {
    kg_tokenizer_free(*tok);
    *tok = NULL;
  }
  kg_model_free(*m);
  *m = NULL;
  kg_backend_destroy(*be);
  *be = NULL;
  return rc;
}
