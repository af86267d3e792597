/* kickgrid synth: a synthetic model with real shapes, written as a Hugging
 * Face directory (so every reader and transformers can load it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/log.h"
#include "io/synthetic.h"

static const char *const usage_text =
    "usage: kickgrid synth SPEC --out DIR [--dtype bf16] [--shard-gb N] [--seed N]\n\n"
    "Generates seeded random weights (normal(0, 0.02) matrices, unit norm gains)\n"
    "with the shapes SPEC describes and writes them as a Hugging Face directory:\n"
    "config.json plus model.safetensors or shards with an index. The same SPEC\n"
    "and seed give the same bytes on every machine.\n\n"
    "SPEC: a preset (llama-2-7b, llama-3-8b, llama-3.1-8b, dclm-7b, smollm2-135m,\n"
    "stories260k) and/or key=value items separated by commas: dim, hidden, layers,\n"
    "heads, kv_heads, vocab, head_dim, ctx, theta, eps, tied, seed, dtype.\n"
    "Example: llama-2-7b,layers=2,seed=3\n\n"
    "  --out DIR     output directory (created when missing)\n"
    "  --dtype T     bf16 (default), f16 or f32\n"
    "  --shard-gb N  largest shard in GB (default 5; 0: one file)\n"
    "  --seed N      overrides the spec's seed\n";

int kg_cmd_synth(int argc, char **argv) {
  const char *spec_text = NULL, *out = NULL, *dtype_text = "bf16";
  double shard_gb = 5.0;
  long long seed = -1;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage_text, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = !strcmp(a, "--out") || !strcmp(a, "--dtype") || !strcmp(a, "--shard-gb") || !strcmp(a, "--seed");
    if (has_value && i + 1 >= argc) return kg_cli_usage_error("synth", "%s needs a value", a);
    if (!strcmp(a, "--out")) out = argv[++i];
    else if (!strcmp(a, "--dtype")) dtype_text = argv[++i];
    else if (!strcmp(a, "--shard-gb")) {
      if (kg_cli_parse_double("synth", a, argv[++i], &shard_gb) != 0) return 2;
      if (!(shard_gb >= 0) || shard_gb > 1e6) return kg_cli_usage_error("synth", "--shard-gb must be >= 0");
    } else if (!strcmp(a, "--seed")) {
      if (kg_cli_parse_int("synth", a, argv[++i], 0, (1LL << 62), &seed) != 0) return 2;
    } else if (a[0] == '-' && a[1]) return kg_cli_usage_error("synth", "unknown option '%s'", a);
    else if (spec_text) return kg_cli_usage_error("synth", "one SPEC only ('%s' and '%s')", spec_text, a);
    else spec_text = a;
  }
  if (!spec_text) return kg_cli_usage_error("synth", "SPEC is required");
  if (!out) return kg_cli_usage_error("synth", "--out DIR is required");
  kg_dtype dtype;
  if (kg_dtype_from_name(dtype_text, &dtype) < 0 || (dtype != KG_DT_BF16 && dtype != KG_DT_F16 && dtype != KG_DT_F32))
    return kg_cli_usage_error("synth", "--dtype must be bf16, f16 or f32, got '%s'", dtype_text);

  kg_synthetic_spec spec;
  kg_checkpoint *ck = NULL;
  int rc = kg_synthetic_spec_parse(spec_text, &spec);
  if (rc == KG_OK) {
    spec.dtype = dtype; /* generated directly in the output type: no conversion pass */
    if (seed >= 0) spec.seed = (uint64_t)seed;
    rc = kg_synthetic_checkpoint(&spec, &ck);
  }
  if (rc == KG_OK) {
    double gen_s, bytes;
    kg_synthetic_last_timing(&gen_s, &bytes);
    long long params = kg_model_config_params(&ck->config);
    kg_info("synth %s: %.3f B parameters, %.2f GB %s generated in %.2f s (%.2f GB/s)", spec_text, params / 1e9,
            bytes / 1e9, kg_dtype_name(dtype), gen_s, bytes / 1e9 / (gen_s > 0 ? gen_s : 1e-9));
    double t0 = kg_now();
    rc = kg_hf_write(out, &ck->config, ck->tensors, ck->n_tensors, dtype, (size_t)(shard_gb * 1e9));
    double w = kg_now() - t0;
    if (rc == KG_OK)
      kg_info("synth %s: wrote %s in %.2f s (%.2f GB/s)", spec_text, out, w, bytes / 1e9 / (w > 0 ? w : 1e-9));
  }
  kg_checkpoint_close(ck);
  return rc < 0 ? kg_cli_fail("synth") : 0;
}
