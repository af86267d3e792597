/* kickgrid ppl: perplexity with the SparseGPT/Wanda protocol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "evaluate/ppl.h"
#include "io/error.h"

static const char usage[] =
    "usage: kickgrid ppl --model M [--dataset D] [--seqlen N] [options]\n\n"
    "Perplexity as the SparseGPT/Wanda reference computes it: the dataset is\n"
    "tokenized once, cut into non-overlapping windows of --seqlen tokens (tail\n"
    "dropped), and PPL = exp(mean next-token NLL).\n\n"
    "options:\n" KG_CLI_MODEL_HELP
    "  --dataset D       wikitext2 (default), c4, tinystories, or file:PATH (.txt or .jsonl)\n"
    "  --seqlen N        window length (default 2048)\n"
    "  --max-windows N   score only the first N windows\n"
    "  --batch N         windows per forward pass (default: the backend's choice,\n"
    "                    8192 tokens on a GPU, 1 window on the CPU)\n"
    "  --json            print the result as JSON\n";

int kg_cmd_ppl(int argc, char **argv) {
  kg_cli_model_opts mo = {0};
  const char *dataset = "wikitext2";
  long long seqlen = 2048, max_windows = 0, batch = 0;
  int json = 0;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    int used = kg_cli_model_option("ppl", argc, argv, &i, &mo);
    if (used == 2) return 2;
    if (used) continue;
    const char *a = argv[i];
    if (!strcmp(a, "--json")) {
      json = 1;
      continue;
    }
    if (i + 1 >= argc) return kg_cli_usage_error("ppl", "unknown option or missing value: %s", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--dataset")) dataset = v;
    else if (!strcmp(a, "--seqlen")) { if (kg_cli_parse_int("ppl", a, v, 2, 1 << 20, &seqlen)) return 2; }
    else if (!strcmp(a, "--max-windows")) { if (kg_cli_parse_int("ppl", a, v, 0, 1 << 30, &max_windows)) return 2; }
    else if (!strcmp(a, "--batch")) { if (kg_cli_parse_int("ppl", a, v, 0, 4096, &batch)) return 2; }
    else return kg_cli_usage_error("ppl", "unknown option %s", a);
  }
  if (!mo.model) return kg_cli_usage_error("ppl", "--model is required");

  kg_backend *be = NULL;
  kg_model *m = NULL;
  kg_tokenizer *tok = NULL;
  kg_ppl_result res;
  int status = 0;
  if (kg_cli_open_model(&mo, &be, &m, &tok) < 0 ||
      kg_perplexity_dataset(m, tok, dataset, (int)seqlen, (int)max_windows, (int)batch, &res) < 0) {
    status = kg_cli_fail("ppl");
    goto done;
  }
  if (json) {
    printf("{\"model\": \"%s\", \"dataset\": \"%s\", \"seqlen\": %d, \"ppl\": %.6f, \"mean_nll\": %.8f, "
           "\"windows\": %lld, \"tokens_total\": %lld, \"seconds\": %.3f, \"tokens_per_s\": %.1f, \"backend\": \"%s\"}\n",
           mo.model, dataset, res.seqlen, res.ppl, res.mean_nll, (long long)res.windows, (long long)res.tokens_total,
           res.seconds, res.tokens_per_s, be->ops->name);
  } else {
    printf("model      %s\ndataset    %s\nseqlen     %d\nwindows    %lld (of %lld tokens)\nperplexity %.4f\n"
           "time       %.1f s (%.0f tokens/s, %s backend)\n",
           mo.model, dataset, res.seqlen, (long long)res.windows, (long long)res.tokens_total, res.ppl, res.seconds,
           res.tokens_per_s, be->ops->name);
  }
done:
  kg_tokenizer_free(tok);
  kg_model_free(m);
  kg_backend_destroy(be);
  return status;
}
