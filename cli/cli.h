/* Commands of the kickgrid CLI. Each lives in cli/cmd_<name>.c and returns a
 * process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef KG_CLI_CLI_H
#define KG_CLI_CLI_H

#include <stdio.h>

typedef int (*kg_command_fn)(int argc, char **argv);

/* Prints the error recorded by kg_error() as "kickgrid <cmd>: message". */
int kg_cli_fail(const char *command);
/* True when argv holds -h or --help. */
int kg_cli_wants_help(int argc, char **argv);
/* Prints a usage error and returns 2. */
int kg_cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive integer / float option value; prints a usage error on failure. */
int kg_cli_parse_int(const char *command, const char *opt, const char *value, long long min, long long max, long long *out);
int kg_cli_parse_double(const char *command, const char *opt, const char *value, double *out);

#endif

#include "model/model.h"

/* Options every model-running command shares. */
typedef struct kg_cli_model_opts {
  const char *model;     /* --model */
  const char *tokenizer; /* --tokenizer (overrides the model's own) */
  const char *backend;   /* --backend cpu|cuda|cuda:N */
  int threads;           /* --threads */
  double gpu_memory_gb;  /* --gpu-memory-gb (0: the whole device) */
} kg_cli_model_opts;

#define KG_CLI_MODEL_HELP                                                                        \
  "  --model M         a GGUF file, Hugging Face directory, llama2.c .bin, an alias\n"          \
  "                    (smollm2, stories260K) or synthetic:<spec>\n"                             \
  "  --tokenizer PATH  use this tokenizer instead of the model's own\n"                         \
  "  --backend B       cpu (default), cuda or cuda:N\n"                                          \
  "  --threads N       CPU threads (default: all cores)\n"                                       \
  "  --gpu-memory-gb G GPU memory budget; larger models stream block by block\n"               \
  "  --data-dir DIR    data directory (default $KG_DATA_DIR or ../shared/data)\n"

/* Handles --model/--tokenizer/--backend/--threads/--data-dir at argv[*i]
 * (advancing *i past the value). Returns 1 when consumed, 0 when not a model
 * option, 2 on a usage error (already printed). */
int kg_cli_model_option(const char *command, int argc, char **argv, int *i, kg_cli_model_opts *o);
/* Creates the backend and loads model (+ tokenizer when tok != NULL). */
int kg_cli_open_model(const kg_cli_model_opts *o, kg_backend **be, kg_model **m, kg_tokenizer **tok);
