/* kickgrid inspect: what a checkpoint holds, after checking it is complete. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/checkpoint.h"
#include "io/error.h"
#include "io/json_util.h"
#include "io/manifest.h"
#include "io/synthetic.h"

static const char *const usage_text =
    "usage: kickgrid inspect MODEL [--tensors] [--json]\n\n"
    "Opens a checkpoint (a GGUF file, a Hugging Face directory, a llama2.c .bin,\n"
    "an alias such as stories260K or smollm2, or synthetic:<spec>), checks that\n"
    "every tensor its architecture needs is present with the right shape and a\n"
    "convertible dtype, and prints the format, the architecture numbers, the\n"
    "parameter count and a summary of the tensors. Exits 1 with a one-line\n"
    "message when the checkpoint is malformed or incomplete.\n\n"
    "  --tensors  list every tensor: name, dtype, shape, bytes\n"
    "  --json     print one JSON object instead (with --tensors: the tensor list too)\n";

static const char *format_name(kg_ckpt_format f) {
  switch (f) {
  case KG_CKPT_LLAMA2C: return "llama2c";
  case KG_CKPT_HF: return "hf";
  case KG_CKPT_GGUF: return "gguf";
  case KG_CKPT_SYNTHETIC: return "synthetic";
  }
  return "unknown";
}

static const char *scaling_name(kg_rope_scaling s) {
  return s == KG_ROPE_SCALING_LLAMA3 ? "llama3" : s == KG_ROPE_SCALING_LINEAR ? "linear" : "none";
}

typedef struct dtype_tally {
  long long count[KG_DT_COUNT];
  double bytes;
} dtype_tally;

static void tally(const kg_checkpoint *ck, dtype_tally *t) {
  memset(t, 0, sizeof(*t));
  for (size_t i = 0; i < ck->n_tensors; i++) {
    if ((int)ck->tensors[i].dtype >= 0 && ck->tensors[i].dtype < KG_DT_COUNT) t->count[ck->tensors[i].dtype]++;
    t->bytes += (double)ck->tensors[i].nbytes;
  }
}

static void shape_text(const kg_tensor_ref *t, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "[");
  for (int d = 0; d < t->ndim && n < cap; d++)
    n += (size_t)snprintf(out + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  if (n < cap) snprintf(out + n, cap - n, "]");
}

static void print_text(const kg_checkpoint *ck, int tensors) {
  const kg_model_config *c = &ck->config;
  dtype_tally t;
  tally(ck, &t);
  long long params = kg_model_config_params(c);
  printf("path          %s\n", ck->path);
  printf("format        %s\n", format_name(ck->format));
  printf("architecture  %s\n", c->arch == KG_ARCH_DCLM ? "dclm (OpenLM)" : "llama");
  printf("name          %s\n", c->name);
  printf("dim           %d\n", c->dim);
  printf("hidden_dim    %d\n", c->hidden_dim);
  printf("layers        %d\n", c->n_layers);
  printf("heads         %d (kv %d, head_dim %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
  printf("vocab         %d\n", c->vocab_size);
  printf("context       %d\n", c->max_seq_len);
  printf("norm          %s, eps %g%s\n", c->norm == KG_NORM_RMS ? "rms" : "layer (gain only)", (double)c->norm_eps,
         c->qk_norm ? ", qk-norm" : "");
  printf("rope          theta %g, scaling %s", (double)c->rope_theta, scaling_name(c->rope_scaling));
  if (c->rope_scaling == KG_ROPE_SCALING_LLAMA3)
    printf(" (factor %g, low %g, high %g, original %d)", (double)c->rope_factor, (double)c->rope_low_freq_factor,
           (double)c->rope_high_freq_factor, c->rope_original_max_pos);
  else if (c->rope_scaling == KG_ROPE_SCALING_LINEAR) printf(" (factor %g)", (double)c->rope_factor);
  printf(", q/k rows %s\n", ck->rope_interleaved ? "interleaved (Meta order)" : "rotate-half (HF order)");
  printf("embeddings    %s\n", c->tied_embeddings ? "tied" : "separate lm_head");
  printf("bos/eos       %d / %d\n", c->bos_id, c->eos_id);
  printf("parameters    %lld (%.3f %s)\n", params, params >= 1e9 ? params / 1e9 : params / 1e6, params >= 1e9 ? "B" : "M");
  printf("tensors       %zu, %.1f MB:", ck->n_tensors, t.bytes / 1e6);
  for (int d = 0; d < KG_DT_COUNT; d++)
    if (t.count[d]) printf(" %s %lld", kg_dtype_name((kg_dtype)d), t.count[d]);
  printf("\n");
  if (!tensors) return;
  printf("\n%-56s %-6s %-16s %s\n", "tensor", "dtype", "shape", "bytes");
  for (size_t i = 0; i < ck->n_tensors; i++) {
    char shape[64];
    shape_text(&ck->tensors[i], shape, sizeof(shape));
    printf("%-56s %-6s %-16s %zu\n", ck->tensors[i].name, kg_dtype_name(ck->tensors[i].dtype), shape,
           ck->tensors[i].nbytes);
  }
}

static int print_json(const kg_checkpoint *ck, int tensors) {
  const kg_model_config *c = &ck->config;
  dtype_tally t;
  tally(ck, &t);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "path", ck->path);
  cJSON_AddStringToObject(root, "format", format_name(ck->format));
  cJSON *cfg = cJSON_AddObjectToObject(root, "config");
  cJSON_AddStringToObject(cfg, "arch", c->arch == KG_ARCH_DCLM ? "dclm" : "llama");
  cJSON_AddStringToObject(cfg, "name", c->name);
  cJSON_AddNumberToObject(cfg, "dim", c->dim);
  cJSON_AddNumberToObject(cfg, "hidden_dim", c->hidden_dim);
  cJSON_AddNumberToObject(cfg, "n_layers", c->n_layers);
  cJSON_AddNumberToObject(cfg, "n_heads", c->n_heads);
  cJSON_AddNumberToObject(cfg, "n_kv_heads", c->n_kv_heads);
  cJSON_AddNumberToObject(cfg, "head_dim", c->head_dim);
  cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab_size);
  cJSON_AddNumberToObject(cfg, "max_seq_len", c->max_seq_len);
  cJSON_AddStringToObject(cfg, "norm", c->norm == KG_NORM_RMS ? "rms" : "layer_gain");
  cJSON_AddItemToObject(cfg, "norm_eps", kg_json_float(c->norm_eps));
  cJSON_AddBoolToObject(cfg, "qk_norm", c->qk_norm);
  cJSON_AddItemToObject(cfg, "rope_theta", kg_json_float(c->rope_theta));
  cJSON_AddStringToObject(cfg, "rope_scaling", scaling_name(c->rope_scaling));
  cJSON_AddItemToObject(cfg, "rope_factor", kg_json_float(c->rope_factor));
  cJSON_AddItemToObject(cfg, "rope_low_freq_factor", kg_json_float(c->rope_low_freq_factor));
  cJSON_AddItemToObject(cfg, "rope_high_freq_factor", kg_json_float(c->rope_high_freq_factor));
  cJSON_AddNumberToObject(cfg, "rope_original_max_pos", c->rope_original_max_pos);
  cJSON_AddBoolToObject(cfg, "tied_embeddings", c->tied_embeddings);
  cJSON_AddNumberToObject(cfg, "bos_id", c->bos_id);
  cJSON_AddNumberToObject(cfg, "eos_id", c->eos_id);
  cJSON_AddBoolToObject(root, "rope_interleaved", ck->rope_interleaved);
  cJSON_AddNumberToObject(root, "parameters", (double)kg_model_config_params(c));
  cJSON_AddNumberToObject(root, "n_tensors", (double)ck->n_tensors);
  cJSON_AddNumberToObject(root, "bytes", t.bytes);
  cJSON *dts = cJSON_AddObjectToObject(root, "dtypes");
  for (int d = 0; d < KG_DT_COUNT; d++)
    if (t.count[d]) cJSON_AddNumberToObject(dts, kg_dtype_name((kg_dtype)d), (double)t.count[d]);
  if (tensors) {
    cJSON *list = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < ck->n_tensors; i++) {
      const kg_tensor_ref *tr = &ck->tensors[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", tr->name);
      cJSON_AddStringToObject(o, "dtype", kg_dtype_name(tr->dtype));
      cJSON *shape = cJSON_AddArrayToObject(o, "shape");
      for (int d = 0; d < tr->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tr->shape[d]));
      cJSON_AddNumberToObject(o, "nbytes", (double)tr->nbytes);
      cJSON_AddItemToArray(list, o);
    }
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return kg_error(KG_ERR_NOMEM, "out of memory printing JSON");
  printf("%s\n", text);
  free(text);
  return KG_OK;
}

static int open_model(const char *spec, kg_checkpoint **ck) {
  if (!strncmp(spec, "synthetic:", 10)) {
    kg_synthetic_spec syn;
    KG_TRY(kg_synthetic_spec_parse(spec, &syn));
    return kg_synthetic_checkpoint(&syn, ck);
  }
  char path[PATH_MAX];
  KG_TRY(kg_resolve_model(spec, path, sizeof(path)));
  return kg_checkpoint_open(path, ck);
}

int kg_cmd_inspect(int argc, char **argv) {
  const char *model = NULL;
  int tensors = 0, json = 0;
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage_text, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--tensors")) tensors = 1;
    else if (!strcmp(argv[i], "--json")) json = 1;
    else if (argv[i][0] == '-' && argv[i][1]) return kg_cli_usage_error("inspect", "unknown option '%s'", argv[i]);
    else if (model) return kg_cli_usage_error("inspect", "one MODEL only ('%s' and '%s')", model, argv[i]);
    else model = argv[i];
  }
  if (!model) return kg_cli_usage_error("inspect", "MODEL is required");
  kg_checkpoint *ck = NULL;
  int rc = open_model(model, &ck);
  if (rc == KG_OK) rc = kg_checkpoint_check_shapes(ck);
  if (rc == KG_OK) {
    if (json) rc = print_json(ck, tensors);
    else print_text(ck, tensors);
  }
  kg_checkpoint_close(ck);
  return rc < 0 ? kg_cli_fail("inspect") : 0;
}
