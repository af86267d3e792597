/* kickgrid: one binary, one command per study step. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/log.h"

/* Commands are linked in when their cmd_<name>.c exists; the weak
 * declarations let the table list every command without a link error for
 * one that this build does not contain. */
#define KG_DECLARE_COMMAND(name) extern int kg_cmd_##name(int argc, char **argv) __attribute__((weak));
KG_DECLARE_COMMAND(ppl)
KG_DECLARE_COMMAND(eval)
KG_DECLARE_COMMAND(prune)
KG_DECLARE_COMMAND(generate)
KG_DECLARE_COMMAND(tokenize)
KG_DECLARE_COMMAND(inspect)
KG_DECLARE_COMMAND(calib)
KG_DECLARE_COMMAND(synth)
KG_DECLARE_COMMAND(run)
KG_DECLARE_COMMAND(plan)
KG_DECLARE_COMMAND(status)
KG_DECLARE_COMMAND(merge)
KG_DECLARE_COMMAND(submit)
KG_DECLARE_COMMAND(report)
KG_DECLARE_COMMAND(data)

typedef struct {
  const char *name;
  kg_command_fn *fn;
  const char *summary;
} command_entry;

static kg_command_fn fn_ppl, fn_eval, fn_prune, fn_generate, fn_tokenize, fn_inspect, fn_calib, fn_synth,
    fn_run, fn_plan, fn_status, fn_merge, fn_submit, fn_report, fn_data;

static const command_entry commands[] = {
    {"ppl", &fn_ppl, "perplexity of a model on WikiText-2, C4 or a text file"},
    {"eval", &fn_eval, "JS divergence, zero-shot tasks, MMLU and factoid QA"},
    {"prune", &fn_prune, "prune or quantize a model and write it as safetensors"},
    {"generate", &fn_generate, "generate text from a prompt (greedy or sampled)"},
    {"tokenize", &fn_tokenize, "encode text to token ids or decode ids to text"},
    {"inspect", &fn_inspect, "print a checkpoint's architecture and tensors"},
    {"calib", &fn_calib, "build, export and import calibration sets"},
    {"synth", &fn_synth, "write a synthetic model with real shapes as a Hugging Face directory"},
    {"run", &fn_run, "run a sweep (under mpirun): the whole grid into one HDF5 cube"},
    {"plan", &fn_plan, "validate a sweep config and print its cells and cost"},
    {"status", &fn_status, "summarize a result cube"},
    {"merge", &fn_merge, "merge result cubes of split sweeps"},
    {"submit", &fn_submit, "write and submit a Slurm batch script for a sweep"},
    {"report", &fn_report, "write plots, an HTML page and CSV/JSON exports of a cube"},
    {"data", &fn_data, "list, fetch and verify datasets and models"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void bind_commands(void) {
  fn_ppl = kg_cmd_ppl; fn_eval = kg_cmd_eval; fn_prune = kg_cmd_prune; fn_generate = kg_cmd_generate;
  fn_tokenize = kg_cmd_tokenize; fn_inspect = kg_cmd_inspect; fn_calib = kg_cmd_calib; fn_synth = kg_cmd_synth;
  fn_run = kg_cmd_run; fn_plan = kg_cmd_plan; fn_status = kg_cmd_status; fn_merge = kg_cmd_merge;
  fn_submit = kg_cmd_submit; fn_report = kg_cmd_report; fn_data = kg_cmd_data;
}

static void print_usage(FILE *out) {
  fprintf(out,
          "usage: kickgrid <command> [options]\n"
          "       kickgrid <command> --help\n\n"
          "kickgrid %s: LLM-compression studies as one distributed experiment grid.\n\ncommands:\n",
          KG_VERSION);
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (*commands[i].fn) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\nenvironment:\n"
          "  KG_DATA_DIR   datasets and tokenizers (default ../shared/data beside the checkout)\n"
          "  KG_CACHE_DIR  downloaded models (default ~/.cache/kickgrid)\n"
          "  KG_MANIFEST   data manifest (default configs/data-manifest.json)\n"
          "  KG_DATA_MIRROR fetch from MIRROR/HOST/PATH instead of upstream\n"
          "  KG_LOG        error|warn|info|debug (default info)\n");
}

int kg_cli_fail(const char *command) {
  const char *msg = kg_error_message();
  fprintf(stderr, "kickgrid %s: %s\n", command, msg[0] ? msg : "failed");
  if (getenv("KG_DEBUG") && kg_error_origin()[0]) fprintf(stderr, "  (raised at %s)\n", kg_error_origin());
  return 1;
}

int kg_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
  return 0;
}

int kg_cli_usage_error(const char *command, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "kickgrid %s: ", command);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see 'kickgrid %s --help')\n", command);
  return 2;
}

int kg_cli_parse_int(const char *command, const char *opt, const char *value, long long min, long long max,
                     long long *out) {
  char *end = NULL;
  long long v = strtoll(value, &end, 10);
  if (!value[0] || *end || v < min || v > max)
    return kg_cli_usage_error(command, "%s expects an integer in [%lld, %lld], got '%s'", opt, min, max, value);
  *out = v;
  return 0;
}

int kg_cli_parse_double(const char *command, const char *opt, const char *value, double *out) {
  char *end = NULL;
  double v = strtod(value, &end);
  if (!value[0] || *end) return kg_cli_usage_error(command, "%s expects a number, got '%s'", opt, value);
  *out = v;
  return 0;
}

static void apply_log_env(void) {
  const char *lvl = getenv("KG_LOG");
  if (!lvl) return;
  if (!strcmp(lvl, "error")) kg_log_set_level(KG_LOG_ERROR);
  else if (!strcmp(lvl, "warn")) kg_log_set_level(KG_LOG_WARN);
  else if (!strcmp(lvl, "debug")) kg_log_set_level(KG_LOG_DEBUG);
}

int main(int argc, char **argv) {
  bind_commands();
  apply_log_env();
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const char *name = argv[1];
  if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
    print_usage(stdout);
    return 0;
  }
  if (!strcmp(name, "--version") || !strcmp(name, "version")) {
    printf("kickgrid %s\n", KG_VERSION);
    return 0;
  }
  for (size_t i = 0; i < N_COMMANDS; i++) {
    if (strcmp(commands[i].name, name) != 0) continue;
    if (!*commands[i].fn) {
      fprintf(stderr, "kickgrid: command '%s' is not part of this build\n", name);
      return 2;
    }
    optind = 1;
    return (*commands[i].fn)(argc - 1, argv + 1);
  }
  fprintf(stderr, "kickgrid: unknown command '%s'\n\n", name);
  print_usage(stderr);
  return 2;
}
