/* kickgrid calib: build a calibration set and export it as token ids, or
 * show one. Exported sets are reused with --calib tokens:PATH.npy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "compress/calib.h"
#include "io/error.h"

static const char usage[] =
    "usage: kickgrid calib build --model M --out SET.npy [--source S] [--nsamples N] [--seqlen N]\n"
    "                            [--seed N] [--sampling random|sequential] [options]\n"
    "       kickgrid calib show SET.npy [--model M] [--samples K]\n\n"
    "Builds the calibration windows prune and run would draw (same source, seed\n"
    "and sampling give the same token ids on every machine) and writes them as a\n"
    "NumPy .npy int32 array [nsamples, seqlen]; `prune --calib tokens:SET.npy`\n"
    "and sweep configs (source = \"tokens:SET.npy\") re-import them. `show`\n"
    "prints the shape and, with --model, the first windows decoded.\n\n"
    "options:\n" KG_CLI_MODEL_HELP
    "  --source S        c4 (default), wikitext2, file:PATH, task:NAME, self\n"
    "  --nsamples N      windows (default 128)\n"
    "  --seqlen N        tokens per window (default 2048)\n"
    "  --seed N          sampling seed (default 0)\n"
    "  --sampling MODE   random (default) or sequential\n"
    "  --samples K       windows to decode with show (default 2)\n";

int kg_cmd_calib(int argc, char **argv) {
  if (argc < 2 || kg_cli_wants_help(argc, argv)) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "build") != 0 && strcmp(sub, "show") != 0)
    return kg_cli_usage_error("calib", "unknown subcommand '%s' (build or show)", sub);
  const int show = !strcmp(sub, "show");
  kg_cli_model_opts mo = {0};
  kg_calib_spec cs;
  kg_calib_spec_defaults(&cs);
  const char *out = NULL, *in = NULL;
  long long v, samples = 2;
  for (int i = 2; i < argc; i++) {
    int used = kg_cli_model_option("calib", argc, argv, &i, &mo);
    if (used == 2) return 2;
    if (used) continue;
    const char *a = argv[i];
    if (show && a[0] != '-' && !in) {
      in = a;
      continue;
    }
    if (i + 1 >= argc) return kg_cli_usage_error("calib", "unknown option or missing value: %s", a);
    const char *val = argv[++i];
    if (!strcmp(a, "--out")) out = val;
    else if (!strcmp(a, "--source")) cs.source = val;
    else if (!strcmp(a, "--nsamples")) { if (kg_cli_parse_int("calib", a, val, 1, 1 << 20, &v)) return 2; cs.nsamples = (int)v; }
    else if (!strcmp(a, "--seqlen")) { if (kg_cli_parse_int("calib", a, val, 2, 1 << 20, &v)) return 2; cs.seqlen = (int)v; }
    else if (!strcmp(a, "--seed")) { if (kg_cli_parse_int("calib", a, val, 0, 1LL << 62, &v)) return 2; cs.seed = (uint64_t)v; }
    else if (!strcmp(a, "--samples")) { if (kg_cli_parse_int("calib", a, val, 0, 1 << 20, &samples)) return 2; }
    else if (!strcmp(a, "--sampling")) {
      if (!strcmp(val, "random")) cs.sequential = 0;
      else if (!strcmp(val, "sequential")) cs.sequential = 1;
      else return kg_cli_usage_error("calib", "--sampling is random or sequential, got '%s'", val);
    } else {
      return kg_cli_usage_error("calib", "unknown option %s", a);
    }
  }
  if (show && !in) return kg_cli_usage_error("calib", "show needs a .npy file");
  if (!show && (!mo.model || !out)) return kg_cli_usage_error("calib", "build needs --model and --out");

  kg_backend *be = NULL;
  kg_model *m = NULL;
  kg_tokenizer *tok = NULL;
  kg_calib_set *set = NULL;
  int status = 0;
  if (mo.model && kg_cli_open_model(&mo, &be, &m, &tok) < 0) goto fail;
  if (show) {
    if (kg_calib_import(in, &set) < 0) goto fail;
  } else {
    if (kg_calib_build(&cs, tok, m, &set) < 0 || kg_calib_export(set, out) < 0) goto fail;
  }
  printf("%s: %d windows x %d tokens%s%s\n", show ? in : out, set->nsamples, set->seqlen, show ? "" : " from ",
         show ? "" : set->source);
  for (int s = 0; tok && s < set->nsamples && s < samples; s++) {
    char *text = NULL;
    if (kg_tokenizer_decode(tok, set->tokens + (size_t)s * set->seqlen, set->seqlen > 64 ? 64 : (size_t)set->seqlen,
                            &text) < 0)
      goto fail;
    printf("[%d] %s...\n", s, text);
    free(text);
  }
  goto done;
fail:
  status = kg_cli_fail("calib");
done:
  kg_calib_free(set);
  kg_tokenizer_free(tok);
  kg_model_free(m);
  kg_backend_destroy(be);
  return status;
}
