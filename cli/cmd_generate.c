/* kickgrid generate: text from a prompt, greedy or sampled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/log.h"
#include "model/generate.h"

static const char usage[] =
    "usage: kickgrid generate --model M --prompt TEXT [options]\n\n"
    "Generates a continuation of TEXT and prints prompt and continuation.\n\n"
    "options:\n" KG_CLI_MODEL_HELP
    "  --prompt TEXT          the prompt (default: empty, i.e. BOS only)\n"
    "  --steps N              new tokens at most (default 256)\n"
    "  --temperature T        0 = greedy (default 0)\n"
    "  --top-k K              keep the K most likely tokens (default 0 = off)\n"
    "  --top-p P              nucleus sampling threshold (default 1 = off)\n"
    "  --repetition-penalty R HF-style repetition penalty (default 1 = off)\n"
    "  --seed S               sampling seed (default 0)\n"
    "  --bos | --no-bos       force BOS on or off (default: the tokenizer's own setting)\n"
    "  --ids                  also print the generated token ids on stderr\n";

int kg_cmd_generate(int argc, char **argv) {
  kg_cli_model_opts mo = {0};
  const char *prompt = "";
  long long steps = 256, top_k = 0, seed = 0;
  double temperature = 0.0, top_p = 1.0, rep = 1.0;
  int bos = -1, show_ids = 0;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    int used = kg_cli_model_option("generate", argc, argv, &i, &mo);
    if (used == 2) return 2;
    if (used) continue;
    const char *a = argv[i];
    if (!strcmp(a, "--bos")) { bos = 1; continue; }
    if (!strcmp(a, "--no-bos")) { bos = 0; continue; }
    if (!strcmp(a, "--ids")) { show_ids = 1; continue; }
    if (i + 1 >= argc) return kg_cli_usage_error("generate", "unknown option or missing value: %s", a);
    const char *v = argv[++i];
    if (!strcmp(a, "--prompt")) prompt = v;
    else if (!strcmp(a, "--steps")) { if (kg_cli_parse_int("generate", a, v, 0, 1 << 20, &steps)) return 2; }
    else if (!strcmp(a, "--top-k")) { if (kg_cli_parse_int("generate", a, v, 0, 1 << 24, &top_k)) return 2; }
    else if (!strcmp(a, "--seed")) { if (kg_cli_parse_int("generate", a, v, 0, (1LL << 62), &seed)) return 2; }
    else if (!strcmp(a, "--temperature")) { if (kg_cli_parse_double("generate", a, v, &temperature)) return 2; }
    else if (!strcmp(a, "--top-p")) { if (kg_cli_parse_double("generate", a, v, &top_p)) return 2; }
    else if (!strcmp(a, "--repetition-penalty")) { if (kg_cli_parse_double("generate", a, v, &rep)) return 2; }
    else return kg_cli_usage_error("generate", "unknown option %s", a);
  }
  if (!mo.model) return kg_cli_usage_error("generate", "--model is required");
  if (temperature < 0 || top_p <= 0 || top_p > 1 || rep <= 0)
    return kg_cli_usage_error("generate", "need temperature >= 0, 0 < top-p <= 1, repetition penalty > 0");

  kg_backend *be = NULL;
  kg_model *m = NULL;
  kg_tokenizer *tok = NULL;
  int32_t *ids = NULL, *all = NULL;
  size_t n_ids = 0;
  char *text = NULL;
  kg_generation gen = {0};
  int status = 0;
  if (kg_cli_open_model(&mo, &be, &m, &tok) < 0) {
    status = kg_cli_fail("generate");
    goto done;
  }
  int add_bos = bos >= 0 ? bos : kg_tokenizer_adds_bos(tok);
  if (kg_tokenizer_encode(tok, prompt, strlen(prompt), add_bos, &ids, &n_ids) < 0) {
    status = kg_cli_fail("generate");
    goto done;
  }
  if (n_ids == 0) {
    /* Generation needs at least one token to condition on. */
    if (kg_tokenizer_bos_id(tok) < 0) {
      kg_error(KG_ERR_ARG, "empty prompt and the tokenizer has no BOS token");
      status = kg_cli_fail("generate");
      goto done;
    }
    free(ids);
    ids = malloc(sizeof(int32_t));
    ids[0] = kg_tokenizer_bos_id(tok);
    n_ids = 1;
  }
  kg_sampling s = {(float)temperature, (int)top_k, (float)top_p, (float)rep};
  if (kg_generate(m, ids, (int)n_ids, (int)steps, kg_tokenizer_eos_id(tok), &s, (uint64_t)seed, &gen) < 0) {
    status = kg_cli_fail("generate");
    goto done;
  }
  all = malloc((n_ids + (size_t)gen.n_tokens) * sizeof(int32_t));
  if (!all) {
    kg_error(KG_ERR_NOMEM, "out of memory");
    status = kg_cli_fail("generate");
    goto done;
  }
  memcpy(all, ids, n_ids * sizeof(int32_t));
  memcpy(all + n_ids, gen.tokens, (size_t)gen.n_tokens * sizeof(int32_t));
  if (kg_tokenizer_decode(tok, all, n_ids + (size_t)gen.n_tokens, &text) < 0) {
    status = kg_cli_fail("generate");
    goto done;
  }
  printf("%s\n", text);
  if (show_ids) {
    for (int i = 0; i < gen.n_tokens; i++) fprintf(stderr, "%s%d", i ? " " : "", gen.tokens[i]);
    fprintf(stderr, "\n");
  }
done:
  free(text);
  free(all);
  free(gen.tokens);
  free(ids);
  kg_tokenizer_free(tok);
  kg_model_free(m);
  kg_backend_destroy(be);
  return status;
}
