/* kickgrid prune: compress one model and write it as safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "compress/calib.h"
#include "compress/compress.h"
#include "evaluate/ppl.h"
#include "io/error.h"
#include "io/log.h"

static const char usage[] =
    "usage: kickgrid prune --model M --method NAME [--sparsity S | --pattern N:M] [options]\n\n"
    "Prunes or quantizes a model with the sequential layer-wise pipeline of the\n"
    "SparseGPT/Wanda reference code and writes it as a Hugging Face directory.\n\n"
    "options:\n" KG_CLI_MODEL_HELP
    "  --method NAME        magnitude, wanda, sparsegpt, owl-wanda, owl-sparsegpt, rtn, gptq\n"
    "  --sparsity S         unstructured sparsity in [0, 1) (default 0.5)\n"
    "  --pattern N:M        N:M structured sparsity (e.g. 2:4, 4:8)\n"
    "  --calib SOURCE       c4 (default), wikitext2, file:PATH, task:NAME, self, tokens:PATH.npy;\n"
    "                       magnitude and rtn use it only for reconstruction errors\n"
    "  --nsamples N         calibration samples (default 128)\n"
    "  --seqlen N           calibration sample length (default 2048)\n"
    "  --seed N             calibration seed (default 0)\n"
    "  --sampling MODE      random (default) or sequential\n"
    "  --export-calib PATH  write the calibration token ids as .npy\n"
    "  --true-sequential    calibrate q,k,v / o / gate,up / down one after another\n"
    "  --propagate MODE     pruned (default) or dense inputs for the next block\n"
    "  --percdamp X         SparseGPT/GPTQ damping (default 0.01)\n"
    "  --blocksize N        SparseGPT/GPTQ block size (default 128)\n"
    "  --calib-batch N      calibration samples per block forward (default 0: the\n"
    "                       engine's choice, 8192-16384 tokens a forward on a GPU, 1 on the CPU)\n"
    "  --recon-samples N    samples for reconstruction errors of methods without a\n"
    "                       Hessian (default 16); 0: no reconstruction errors at all\n"
    "  --use-variant        Wanda's alpha-bisection variant\n"
    "  --owl-m X            OWL outlier threshold M (default 5)\n"
    "  --owl-lambda X       OWL sparsity range lambda (default 0.08)\n"
    "  --bits N             RTN/GPTQ bits, 2..8 (default 4)\n"
    "  --group-size N       quantization group size (default -1: per row)\n"
    "  --sym                symmetric quantization\n"
    "  --act-order          GPTQ activation order\n"
    "  --out DIR            write the compressed model here\n"
    "  --dtype T            f32 (default, exact round trip), bf16 or f16\n"
    "  --ppl DATASET        evaluate perplexity afterwards (e.g. wikitext2)\n"
    "  --ppl-seqlen N       perplexity window (default: --seqlen)\n"
    "  --layers             print the per-linear table\n"
    "  --json PATH          also write the report (timings, per-linear table, perplexity) as JSON\n";

static int parse_pattern(const char *v, int *n, int *m) {
  char extra;
  return sscanf(v, "%d:%d%c", n, m, &extra) == 2 && *n > 0 && *m > *n && *m <= 64;
}

static void print_report(const kg_compress_report *r, int layers) {
  if (layers) {
    printf("%5s %-10s %12s %9s %13s %11s %8s\n", "layer", "linear", "shape", "sparsity", "recon_error", "recon_rel",
           "damp");
    for (int i = 0; i < r->n_linears; i++) {
      const kg_linear_report *l = &r->linears[i];
      char shape[32];
      snprintf(shape, sizeof(shape), "%lldx%lld", (long long)l->rows, (long long)l->cols);
      printf("%5d %-10s %12s %9.4f %13.5g %11.5g %8.4g\n", l->layer, kg_linear_name(l->linear), shape, l->sparsity,
             l->recon_error, l->recon_relative, l->percdamp);
    }
  }
  double rel = 0;
  int counted = 0;
  for (int i = 0; i < r->n_linears; i++)
    if (r->linears[i].recon_relative == r->linears[i].recon_relative) {
      rel += r->linears[i].recon_relative;
      counted++;
    }
  printf("overall sparsity   %.4f\n", r->overall_sparsity);
  if (counted) printf("mean recon_rel     %.5g (over %d linears, %lld tokens)\n", rel / counted, counted, (long long)r->recon_tokens);
  printf("compress time      %.1f s (forward %.1f s, statistics %.1f s, solve %.1f s)\n", r->seconds,
         r->calib_forward_seconds, r->stats_seconds, r->solve_seconds);
}

static int write_json(const char *path, const kg_cli_model_opts *mo, const char *method, const kg_compress_opts *co,
                      const kg_calib_set *calib, const kg_compress_report *r, double ppl, double wall_s,
                      double peak_mib) {
  FILE *f = fopen(path, "w");
  if (!f) return kg_error(KG_ERR_IO, "%s: cannot write", path);
  fprintf(f, "{\"model\": \"%s\", \"method\": \"%s\", \"sparsity\": %.6g, \"prune_n\": %d, \"prune_m\": %d,\n",
          mo->model, method, co->sparsity, co->prune_n, co->prune_m);
  fprintf(f, " \"calibration\": {\"source\": \"%s\", \"nsamples\": %d, \"seqlen\": %d},\n", calib ? calib->source : "",
          calib ? calib->nsamples : 0, calib ? calib->seqlen : 0);
  fprintf(f, " \"overall_sparsity\": %.9g, \"seconds\": %.6f, \"calib_forward_seconds\": %.6f, \"stats_seconds\": %.6f,"
             " \"solve_seconds\": %.6f, \"wall_seconds\": %.6f, \"peak_host_mib\": %.1f,\n",
          r->overall_sparsity, r->seconds, r->calib_forward_seconds, r->stats_seconds, r->solve_seconds, wall_s, peak_mib);
  fprintf(f, " \"recon_tokens\": %lld,\n", (long long)r->recon_tokens);
  if (ppl == ppl) fprintf(f, " \"ppl\": %.9g,\n", ppl);
  fprintf(f, " \"linears\": [");
  for (int i = 0; i < r->n_linears; i++) {
    const kg_linear_report *l = &r->linears[i];
    fprintf(f, "%s\n  {\"layer\": %d, \"linear\": \"%s\", \"sparsity\": %.9g", i ? "," : "", l->layer,
            kg_linear_name(l->linear), l->sparsity);
    if (l->recon_error == l->recon_error)
      fprintf(f, ", \"recon_error\": %.9g, \"recon_relative\": %.9g", l->recon_error, l->recon_relative);
    if (l->percdamp == l->percdamp) fprintf(f, ", \"percdamp\": %.9g", l->percdamp);
    fprintf(f, "}");
  }
  fprintf(f, "]}\n");
  if (fclose(f) != 0) return kg_error(KG_ERR_IO, "%s: cannot write", path);
  return KG_OK;
}

int kg_cmd_prune(int argc, char **argv) {
  kg_cli_model_opts mo = {0};
  kg_compress_opts co;
  kg_calib_spec cs;
  kg_compress_opts_defaults(&co);
  kg_calib_spec_defaults(&cs);
  const char *method = NULL, *out_dir = NULL, *export_calib = NULL, *ppl_dataset = NULL, *dtype_name = "f32";
  long long v = 0, ppl_seqlen = 0;
  int layers = 0, calib_given = 0;
  const char *json_path = NULL;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    int used = kg_cli_model_option("prune", argc, argv, &i, &mo);
    if (used == 2) return 2;
    if (used) continue;
    const char *a = argv[i];
    if (!strcmp(a, "--true-sequential")) { co.true_sequential = 1; continue; }
    if (!strcmp(a, "--use-variant")) { co.use_variant = 1; continue; }
    if (!strcmp(a, "--sym")) { co.quant.sym = 1; continue; }
    if (!strcmp(a, "--act-order")) { co.act_order = 1; continue; }
    if (!strcmp(a, "--layers")) { layers = 1; continue; }
    if (i + 1 >= argc) return kg_cli_usage_error("prune", "unknown option or missing value: %s", a);
    const char *val = argv[++i];
    if (!strcmp(a, "--method")) method = val;
    else if (!strcmp(a, "--sparsity")) { if (kg_cli_parse_double("prune", a, val, &co.sparsity)) return 2; }
    else if (!strcmp(a, "--pattern")) { if (!parse_pattern(val, &co.prune_n, &co.prune_m)) return kg_cli_usage_error("prune", "--pattern expects N:M with 0 < N < M <= 64, got '%s'", val); }
    else if (!strcmp(a, "--calib")) { cs.source = val; calib_given = 1; }
    else if (!strcmp(a, "--nsamples")) { if (kg_cli_parse_int("prune", a, val, 1, 1 << 20, &v)) return 2; cs.nsamples = (int)v; }
    else if (!strcmp(a, "--seqlen")) { if (kg_cli_parse_int("prune", a, val, 2, 1 << 20, &v)) return 2; cs.seqlen = (int)v; }
    else if (!strcmp(a, "--seed")) { if (kg_cli_parse_int("prune", a, val, 0, 1LL << 62, &v)) return 2; cs.seed = (uint64_t)v; }
    else if (!strcmp(a, "--sampling")) {
      if (!strcmp(val, "random")) cs.sequential = 0;
      else if (!strcmp(val, "sequential")) cs.sequential = 1;
      else return kg_cli_usage_error("prune", "--sampling is random or sequential, got '%s'", val);
    }
    else if (!strcmp(a, "--export-calib")) export_calib = val;
    else if (!strcmp(a, "--propagate")) {
      if (!strcmp(val, "pruned")) co.propagate_dense = 0;
      else if (!strcmp(val, "dense")) co.propagate_dense = 1;
      else return kg_cli_usage_error("prune", "--propagate is pruned or dense, got '%s'", val);
    }
    else if (!strcmp(a, "--percdamp")) { if (kg_cli_parse_double("prune", a, val, &co.percdamp)) return 2; }
    else if (!strcmp(a, "--calib-batch")) { if (kg_cli_parse_int("prune", a, val, 0, 4096, &v)) return 2; co.calib_batch = (int)v; }
    else if (!strcmp(a, "--recon-samples")) { if (kg_cli_parse_int("prune", a, val, 0, 1 << 20, &v)) return 2; co.recon_samples = (int)v; }
    else if (!strcmp(a, "--blocksize")) { if (kg_cli_parse_int("prune", a, val, 1, 1 << 16, &v)) return 2; co.blocksize = (int)v; }
    else if (!strcmp(a, "--owl-m")) { if (kg_cli_parse_double("prune", a, val, &co.owl_m)) return 2; }
    else if (!strcmp(a, "--owl-lambda")) { if (kg_cli_parse_double("prune", a, val, &co.owl_lambda)) return 2; }
    else if (!strcmp(a, "--bits")) { if (kg_cli_parse_int("prune", a, val, 2, 8, &v)) return 2; co.quant.bits = (int)v; }
    else if (!strcmp(a, "--group-size")) { if (kg_cli_parse_int("prune", a, val, -1, 1 << 20, &v)) return 2; co.quant.group_size = (int)v; }
    else if (!strcmp(a, "--out")) out_dir = val;
    else if (!strcmp(a, "--json")) json_path = val;
    else if (!strcmp(a, "--dtype")) dtype_name = val;
    else if (!strcmp(a, "--ppl")) ppl_dataset = val;
    else if (!strcmp(a, "--ppl-seqlen")) { if (kg_cli_parse_int("prune", a, val, 2, 1 << 20, &ppl_seqlen)) return 2; }
    else return kg_cli_usage_error("prune", "unknown option %s", a);
  }
  if (!mo.model) return kg_cli_usage_error("prune", "--model is required");
  if (!method) return kg_cli_usage_error("prune", "--method is required");
  if (kg_method_parse(method, &co.method) < 0) return kg_cli_usage_error("prune", "%s", kg_error_message());
  kg_dtype out_dtype;
  if (!strcmp(dtype_name, "f32")) out_dtype = KG_DT_F32;
  else if (!strcmp(dtype_name, "bf16")) out_dtype = KG_DT_BF16;
  else if (!strcmp(dtype_name, "f16")) out_dtype = KG_DT_F16;
  else return kg_cli_usage_error("prune", "--dtype is f32, bf16 or f16, got '%s'", dtype_name);

  kg_backend *be = NULL;
  kg_model *m = NULL;
  kg_tokenizer *tok = NULL;
  kg_calib_set *calib = NULL;
  kg_compress_report rep = {0};
  int status = 0;
  double ppl_value = NAN;
  const double t0 = kg_now();
  if (kg_cli_open_model(&mo, &be, &m, &tok) < 0) goto fail;
  /* Magnitude and RTN need data only to report reconstruction errors: build
   * a calibration set for them only when one was asked for. */
  if (kg_method_uses_calibration(co.method) || calib_given) {
    if (kg_calib_build(&cs, tok, m, &calib) < 0) goto fail;
    if (export_calib && kg_calib_export(calib, export_calib) < 0) goto fail;
    kg_info("calibration: %d x %d tokens from %s (%s, seed %llu)", calib->nsamples, calib->seqlen, calib->source,
            cs.sequential ? "sequential" : "random", (unsigned long long)cs.seed);
  }
  if (kg_compress_model(m, calib, &co, &rep) < 0) goto fail;
  print_report(&rep, layers);
  if (out_dir) {
    if (kg_model_save_hf(m, out_dir, out_dtype) < 0 || kg_model_save_tokenizer(m, out_dir) < 0) goto fail;
    printf("wrote              %s (%s)\n", out_dir, dtype_name);
  }
  if (ppl_dataset) {
    kg_ppl_result pr;
    if (kg_perplexity_dataset(m, tok, ppl_dataset, (int)(ppl_seqlen ? ppl_seqlen : cs.seqlen), 0, 0, &pr) < 0) goto fail;
    ppl_value = pr.ppl;
    printf("perplexity         %.4f (%s, seqlen %d, %lld windows)\n", pr.ppl, ppl_dataset, pr.seqlen,
           (long long)pr.windows);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("wall time          %.1f s, peak memory %.0f MiB\n", kg_now() - t0, (double)ru.ru_maxrss / 1024.0);
  if (json_path && write_json(json_path, &mo, method, &co, calib, &rep, ppl_dataset ? ppl_value : NAN,
                              kg_now() - t0, (double)ru.ru_maxrss / 1024.0) < 0)
    goto fail;
  goto done;
fail:
  status = kg_cli_fail("prune");
done:
  kg_compress_report_free(&rep);
  kg_calib_free(calib);
  kg_tokenizer_free(tok);
  kg_model_free(m);
  kg_backend_destroy(be);
  return status;
}
