/* Sweep config sections that define the grid's axes: models, methods
 * (prune_method and quantization), sparsity and calibration. Each records
 * every problem it finds and goes on, so one run reports all of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/error.h"
#include "io/manifest.h"
#include "io/paths.h"
#include "io/sweep_internal.h"

static const char *const k_model_keys[] = {"name", "path", "synthetic", "seed", "dtype", NULL};
static const char *const k_dtype_names[] = {"f32", "f16", "bf16", NULL};
static const kg_dtype k_dtypes[] = {KG_DT_F32, KG_DT_F16, KG_DT_BF16};
static const char *const k_quant_keys[] = {"method", "bits", "group_size", "sym", "act_order", NULL};
static const char *const k_quant_names[] = {"rtn", "gptq", NULL};
static const char *const k_calib_keys[] = {"name", "source", "nsamples", "seqlen", "seed", "sampling", NULL};
static const char *const k_sampling_names[] = {"random", "sequential", NULL};
static const char *const k_calib_plain[] = {"c4", "wikitext2", "self", NULL};
static const char *const k_text_names[] = {"wikitext2", "c4", "tinystories", NULL};

/* Scalars and one-type arrays are accepted where a list of values is meant,
 * so `prune_method = "wanda";` and `sparsity = [0.5, 0.6];` both work. */
static int value_count(const config_setting_t *s) {
  return config_setting_is_aggregate(s) && !config_setting_is_group(s) ? config_setting_length(s) : 1;
}

static const config_setting_t *value_at(const config_setting_t *s, int i) {
  return config_setting_is_aggregate(s) && !config_setting_is_group(s) ? config_setting_get_elem(s, (unsigned)i) : s;
}

static void value_path(char *buf, size_t cap, const config_setting_t *s, const char *key, int i) {
  if (config_setting_is_aggregate(s)) snprintf(buf, cap, "%s[%d]", key, i);
  else snprintf(buf, cap, "%s", key);
}

/* ---- models --------------------------------------------------------------- */

/* `synthetic` is an io/synthetic.h spec ("llama-2-7b" or
 * "llama-2-7b,layers=2"); seed and dtype come from their own keys so a
 * model's entry reads the same for every source. */
static void synthetic_model(kg_sv *v, const config_setting_t *at, const char *prefix, long long seed,
                            const char *dtype, kg_sweep_model *m) {
  char kp[128], spec[640], got[128];
  kg_sv_keypath(kp, sizeof kp, prefix, "synthetic");
  if (config_setting_type(at) != CONFIG_TYPE_STRING) {
    kg_sv_error(v, at, "%s: expected a string, got %s", kp, kg_sv_describe(at, got, sizeof got));
    return;
  }
  const char *syn = config_setting_get_string(at);
  if (!strncmp(syn, "synthetic:", 10)) syn += 10;
  if (strstr(syn, "seed=") || strstr(syn, "dtype=")) {
    kg_sv_error(v, at, "%s: give seed and dtype as the model's own keys, not inside \"%s\"", kp, syn);
    return;
  }
  snprintf(spec, sizeof spec, "synthetic:%s,seed=%lld,dtype=%s", syn, seed, dtype);
  kg_model_config shape;
  if (kg_sweep_known_shape(spec, &shape) < 0) {
    char first[64];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(syn, ","), syn);
    const char *hint = strchr(first, '=') ? NULL : kg_sv_suggest(first, kg_sweep_synthetic_names());
    if (hint) kg_sv_error(v, at, "%s: unknown synthetic spec \"%s\" (did you mean \"%s\"?)", kp, first, hint);
    else kg_sv_error(v, at, "%s: %s", kp, kg_error_message());
    kg_error_clear();
    return;
  }
  m->source = KG_MODEL_SYNTHETIC;
  m->synthetic = kg_sv_strdup(v, syn);
  m->open_spec = kg_sv_strdup(v, spec);
  m->seed = (uint64_t)seed;
  m->shape = shape;
  m->shape_known = 1;
  m->n_params = kg_model_config_params(&shape);
}

/* A file or directory on disk (whose header must read), or an alias the data
 * manifest resolves (which may still need `kickgrid data fetch`). */
static void path_model(kg_sv *v, const config_setting_t *at, const char *prefix, const char *path, kg_sweep_model *m) {
  char kp[128], resolved[4096];
  kg_sv_keypath(kp, sizeof kp, prefix, "path");
  m->path = kg_sv_strdup(v, path);
  m->open_spec = m->path;
  m->source = KG_MODEL_PATH;
  if (kg_path_exists(path)) {
    kg_checkpoint *ck = NULL;
    if (kg_checkpoint_open(path, &ck) < 0) {
      kg_sv_error(v, at, "%s: %s", kp, kg_error_message());
      kg_error_clear();
      return;
    }
    m->shape = ck->config;
    m->shape_known = 1;
    m->n_params = kg_model_config_params(&ck->config);
    kg_checkpoint_close(ck);
    return;
  }
  int rc = kg_resolve_model(path, resolved, sizeof resolved);
  if (rc < 0 || strcmp(resolved, path) != 0) {
    m->source = KG_MODEL_ALIAS;
    if (rc < 0) kg_sv_warning(v, at, "%s: %s", kp, kg_error_message());
    kg_error_clear();
    if (kg_sweep_known_shape(path, &m->shape) == KG_OK) {
      m->shape_known = 1;
      m->n_params = kg_model_config_params(&m->shape);
    }
    kg_error_clear();
    return;
  }
  if (v->opts->missing_models_are_warnings)
    kg_sv_warning(v, at, "%s: \"%s\" does not exist and is not a model alias (smollm2, stories260K)", kp, path);
  else kg_sv_error(v, at, "%s: \"%s\" does not exist and is not a model alias (smollm2, stories260K)", kp, path);
}

static void one_model(kg_sv *v, const config_setting_t *e, int i, kg_sweep_model *m) {
  char prefix[64], kp[128];
  snprintf(prefix, sizeof prefix, "models[%d]", i);
  if (!kg_sv_element_group(v, e, prefix, "{ name = ...; path = ...; }")) return;
  kg_sv_check_keys(v, e, prefix, k_model_keys);
  m->file = kg_sv_strdup(v, config_setting_source_file(e) ? config_setting_source_file(e) : v->path);
  m->line = (int)config_setting_source_line(e);
  const char *s = NULL;
  if (kg_sv_string(v, e, prefix, "name", &s) == KG_SV_OK) {
    kg_sv_keypath(kp, sizeof kp, prefix, "name");
    if (kg_sv_check_name(v, config_setting_get_member(e, "name"), kp, s) == KG_SV_OK) {
      for (int j = 0; j < i; j++)
        if (v->sw->models[j].name && !strcmp(v->sw->models[j].name, s))
          kg_sv_error(v, config_setting_get_member(e, "name"), "%s: duplicate model name \"%s\" (first at line %d)", kp,
                      s, v->sw->models[j].line);
      m->name = kg_sv_strdup(v, s);
    }
  } else if (!config_setting_get_member(e, "name")) {
    kg_sv_missing(v, e, prefix, "name");
  }

  const config_setting_t *sp = config_setting_get_member(e, "path");
  const config_setting_t *ss = config_setting_get_member(e, "synthetic");
  if (sp && ss) kg_sv_error(v, e, "%s: give exactly one of path and synthetic, not both", prefix);
  else if (!sp && !ss) kg_sv_error(v, e, "%s: give exactly one of path and synthetic", prefix);

  long long seed = 0;
  int seed_rc = kg_sv_int(v, e, prefix, "seed", 0, INT64_MAX, &seed);
  int dtype = 0;
  kg_sv_enum(v, e, prefix, "dtype", "dtype", k_dtype_names, &dtype);
  m->dtype = k_dtypes[dtype];

  if (ss && !sp) synthetic_model(v, ss, prefix, seed, k_dtype_names[dtype], m);
  else if (sp && !ss && kg_sv_string(v, e, prefix, "path", &s) == KG_SV_OK) path_model(v, sp, prefix, s, m);
  if (sp && seed_rc == KG_SV_OK)
    kg_sv_error(v, config_setting_get_member(e, "seed"), "%s: applies to synthetic models only",
                kg_sv_keypath(kp, sizeof kp, prefix, "seed"));
}

void kg_sv_models(kg_sv *v, const config_setting_t *root) {
  const config_setting_t *list = config_setting_get_member(root, "models");
  if (!list) {
    kg_sv_missing(v, root, "", "models");
    return;
  }
  if (!kg_sv_group_list(v, list, "models", "{ name = ...; path = ...; }")) return;
  int n = config_setting_length(list);
  if (n == 0) {
    kg_sv_error(v, list, "models: at least one model is required");
    return;
  }
  v->sw->models = kg_sv_alloc(v, (size_t)n, sizeof(kg_sweep_model));
  v->model_set = kg_sv_alloc(v, (size_t)n, sizeof(*v->model_set));
  if (!v->sw->models || !v->model_set) return;
  v->sw->n_models = (size_t)n;
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    v->model_set[i] = e;
    one_model(v, e, i, &v->sw->models[i]);
  }
}

/* ---- methods -------------------------------------------------------------- */

static const kg_method_kind k_prune_kinds[] = {KG_METHOD_MAGNITUDE, KG_METHOD_WANDA, KG_METHOD_SPARSEGPT,
                                               KG_METHOD_OWL_WANDA, KG_METHOD_OWL_SPARSEGPT};

static void prune_methods(kg_sv *v, const config_setting_t *s) {
  kg_sweep *sw = v->sw;
  char kp[64], got[128];
  for (int i = 0; i < value_count(s); i++) {
    const config_setting_t *e = value_at(s, i);
    value_path(kp, sizeof kp, s, "prune_method", i);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
      kg_sv_error(v, e, "%s: expected a method name (a string), got %s", kp, kg_sv_describe(e, got, sizeof got));
      continue;
    }
    const char *name = config_setting_get_string(e);
    if (!strcmp(name, "dense")) {
      kg_sv_warning(v, e, "%s: \"dense\" is implied for every model; drop it from prune_method", kp);
      continue;
    }
    if (!strcmp(name, "rtn") || !strcmp(name, "gptq")) {
      kg_sv_error(v, e, "%s: \"%s\" is a quantization method; list it as quantization = ( { method = \"%s\"; bits = 4; } )",
                  kp, name, name);
      continue;
    }
    int idx = -1;
    for (int k = 0; kg_sweep_method_names()[k]; k++)
      if (!strcmp(kg_sweep_method_names()[k], name)) idx = k;
    if (idx < 0) {
      const char *hint = kg_sv_suggest(name, kg_sweep_method_names());
      if (hint) kg_sv_error(v, e, "%s: unknown method \"%s\" (did you mean \"%s\"?)", kp, name, hint);
      else
        kg_sv_error(v, e, "%s: unknown method \"%s\" (expected one of: magnitude, wanda, sparsegpt, owl-wanda, owl-sparsegpt)",
                    kp, name);
      continue;
    }
    int dup = 0;
    for (size_t j = 1; j < sw->n_methods; j++) dup |= !strcmp(sw->methods[j].label, name);
    if (dup) {
      kg_sv_error(v, e, "%s: duplicate method \"%s\"", kp, name);
      continue;
    }
    kg_sweep_method *m = &sw->methods[sw->n_methods];
    v->method_set[sw->n_methods++] = e;
    m->label = kg_sv_strdup(v, name);
    m->kind = k_prune_kinds[idx];
    m->uses_calibration = m->kind != KG_METHOD_MAGNITUDE;
  }
}

static void one_quantization(kg_sv *v, const config_setting_t *e, int i) {
  kg_sweep *sw = v->sw;
  char prefix[64], kp[128], label[64];
  snprintf(prefix, sizeof prefix, "quantization[%d]", i);
  if (!kg_sv_element_group(v, e, prefix, "{ method = \"gptq\"; bits = 4; }")) return;
  kg_sv_check_keys(v, e, prefix, k_quant_keys);
  int method = -1, ok = 1, sym = 0, act_order = 0;
  long long bits = 0, group = -1;
  int rc = kg_sv_enum(v, e, prefix, "method", "quantization method", k_quant_names, &method);
  if (rc == KG_SV_ABSENT) kg_sv_missing(v, e, prefix, "method");
  ok &= rc == KG_SV_OK;
  rc = kg_sv_int(v, e, prefix, "bits", 2, 8, &bits);
  if (rc == KG_SV_ABSENT) kg_sv_missing(v, e, prefix, "bits");
  ok &= rc == KG_SV_OK;
  const config_setting_t *gs = config_setting_get_member(e, "group_size");
  if (kg_sv_int(v, e, prefix, "group_size", -1, 1 << 20, &group) == KG_SV_BAD) ok = 0;
  else if (group == 0) {
    kg_sv_error(v, gs, "%s: 0 is out of range (-1 for one group per row, or a positive group size)",
                kg_sv_keypath(kp, sizeof kp, prefix, "group_size"));
    ok = 0;
  }
  ok &= kg_sv_bool(v, e, prefix, "sym", &sym) != KG_SV_BAD;
  ok &= kg_sv_bool(v, e, prefix, "act_order", &act_order) != KG_SV_BAD;
  if (method == 0 && act_order) {
    kg_sv_error(v, config_setting_get_member(e, "act_order"), "%s: applies to gptq only",
                kg_sv_keypath(kp, sizeof kp, prefix, "act_order"));
    ok = 0;
  }
  if (!ok) return;
  /* Every option that changes the result shows in the label, so one sweep
   * can hold e.g. GPTQ with and without act_order. */
  char group_part[32] = "";
  if (group > 0) snprintf(group_part, sizeof group_part, "g%lld", group);
  snprintf(label, sizeof label, "%s-w%lld%s%s%s", k_quant_names[method], bits, group_part, sym ? "-sym" : "",
           act_order ? "-ao" : "");
  for (size_t j = 1; j < sw->n_methods; j++)
    if (!strcmp(sw->methods[j].label, label)) {
      kg_sv_error(v, e, "%s: duplicate method label \"%s\" (two entries with the same method, bits, group_size, "
                  "sym and act_order)", prefix, label);
      return;
    }
  kg_sweep_method *m = &sw->methods[sw->n_methods];
  v->method_set[sw->n_methods++] = e;
  m->label = kg_sv_strdup(v, label);
  m->kind = method == 0 ? KG_METHOD_RTN : KG_METHOD_GPTQ;
  m->uses_calibration = m->kind == KG_METHOD_GPTQ;
  m->is_quantization = 1;
  m->bits = (int)bits;
  m->group_size = (int)group;
  m->sym = sym;
  m->act_order = act_order;
}

void kg_sv_methods(kg_sv *v, const config_setting_t *root) {
  kg_sweep *sw = v->sw;
  const config_setting_t *pm = config_setting_get_member(root, "prune_method");
  const config_setting_t *q = config_setting_get_member(root, "quantization");
  v->s_prune_method = pm;
  v->s_quant = q;
  size_t cap = 1 + (pm ? (size_t)value_count(pm) : 0) + (q && config_setting_is_aggregate(q) ? (size_t)config_setting_length(q) : 0);
  sw->methods = kg_sv_alloc(v, cap, sizeof(kg_sweep_method));
  v->method_set = kg_sv_alloc(v, cap, sizeof(*v->method_set));
  if (!sw->methods || !v->method_set) return;
  sw->methods[0].label = kg_sv_strdup(v, "dense");
  sw->methods[0].kind = KG_METHOD_DENSE;
  sw->n_methods = 1;
  if (pm) {
    char got[128];
    if (config_setting_is_group(pm))
      kg_sv_error(v, pm, "prune_method: expected an array of method names, got %s", kg_sv_describe(pm, got, sizeof got));
    else prune_methods(v, pm);
  }
  if (q && kg_sv_group_list(v, q, "quantization", "{ method = \"gptq\"; bits = 4; }"))
    for (int i = 0; i < config_setting_length(q); i++) one_quantization(v, config_setting_get_elem(q, (unsigned)i), i);
}

/* ---- sparsity ------------------------------------------------------------- */

static int parse_nm(const char *s, int *n, int *m) {
  char *end = NULL;
  if (*s < '0' || *s > '9') return 0;
  long a = strtol(s, &end, 10);
  if (*end != ':' || end[1] < '0' || end[1] > '9') return 0;
  long b = strtol(end + 1, &end, 10);
  if (*end) return 0;
  if (a > 1000 || b > 1000) return 0;
  *n = (int)a;
  *m = (int)b;
  return 1;
}

static void one_sparsity(kg_sv *v, const config_setting_t *e, const char *kp) {
  kg_sweep *sw = v->sw;
  kg_sweep_sparsity sp = {0};
  char label[32], got[128];
  int t = config_setting_type(e);
  if (t == CONFIG_TYPE_FLOAT || t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
    double x = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(e) : (double)config_setting_get_int64(e);
    if (!(x > 0.0 && x < 1.0)) {
      kg_sv_error(v, e, "%s: %g is out of range (0, 1) (a sparsity is the fraction of weights removed)", kp, x);
      return;
    }
    sp.ratio = x;
    kg_sv_ratio_label(x, label, sizeof label);
  } else if (t == CONFIG_TYPE_STRING) {
    const char *s = config_setting_get_string(e);
    char *end = NULL;
    double as_number = strtod(s, &end);
    if (s[0] && !*end) {
      kg_sv_error(v, e, "%s: \"%s\" is a string; write a fraction as a number (%g) and a pattern as \"N:M\"", kp, s,
                  as_number);
      return;
    }
    int n = 0, m = 0;
    if (!parse_nm(s, &n, &m) || !(n > 0 && n < m && m <= 64)) {
      kg_sv_error(v, e, "%s: bad N:M pattern \"%s\" (expected \"N:M\" with 0 < N < M <= 64, N pruned of every M)", kp, s);
      return;
    }
    sp.n = n;
    sp.m = m;
    sp.ratio = (double)n / (double)m;
    snprintf(label, sizeof label, "%d:%d", n, m);
  } else {
    kg_sv_error(v, e, "%s: expected a fraction (0.5) or an N:M pattern (\"2:4\"), got %s", kp,
                kg_sv_describe(e, got, sizeof got));
    return;
  }
  for (size_t j = 0; j < sw->n_sparsities; j++)
    if (!strcmp(sw->sparsities[j].label, label)) {
      kg_sv_error(v, e, "%s: duplicate sparsity %s", kp, label);
      return;
    }
  sp.label = kg_sv_strdup(v, label);
  v->sparsity_set[sw->n_sparsities] = e;
  v->sparsity_kp[sw->n_sparsities] = kg_sv_strdup(v, kp);
  sw->sparsities[sw->n_sparsities++] = sp;
}

void kg_sv_sparsity(kg_sv *v, const config_setting_t *root) {
  const config_setting_t *s = config_setting_get_member(root, "sparsity");
  v->s_sparsity = s;
  if (!s) return;
  char got[128], kp[64];
  if (config_setting_is_group(s)) {
    kg_sv_error(v, s, "sparsity: expected a list of fractions and \"N:M\" patterns, got %s",
                kg_sv_describe(s, got, sizeof got));
    return;
  }
  int n = value_count(s);
  v->sw->sparsities = kg_sv_alloc(v, (size_t)n, sizeof(kg_sweep_sparsity));
  v->sparsity_set = kg_sv_alloc(v, (size_t)n, sizeof(*v->sparsity_set));
  v->sparsity_kp = kg_sv_alloc(v, (size_t)n, sizeof(*v->sparsity_kp));
  if (!v->sw->sparsities || !v->sparsity_set || !v->sparsity_kp) return;
  for (int i = 0; i < n; i++) {
    value_path(kp, sizeof kp, s, "sparsity", i);
    one_sparsity(v, value_at(s, i), kp);
  }
}

/* ---- calibration ----------------------------------------------------------- */

static void calib_source(kg_sv *v, const config_setting_t *at, const char *kp, const char *src, kg_sweep_calib *c) {
  c->source = kg_sv_strdup(v, src);
  for (int k = 0; k_calib_plain[k]; k++)
    if (!strcmp(src, k_calib_plain[k])) {
      c->kind = k == 0 ? KG_CALIB_C4 : k == 1 ? KG_CALIB_WIKITEXT2 : KG_CALIB_SELF;
      return;
    }
  if (!strncmp(src, "task:", 5)) {
    const char *task = src + 5;
    if (kg_sv_task_is_calibration_source(task)) {
      c->kind = KG_CALIB_TASK;
      c->arg = kg_sv_strdup(v, task);
    } else if (kg_sv_task_index(task) >= 0) {
      kg_sv_error(v, at, "%s: task \"%s\" cannot be a calibration source (mmlu and lambada have no free text to sample)",
                  kp, task);
    } else {
      const char *hint = kg_sv_suggest(task, kg_sweep_task_names());
      if (hint) kg_sv_error(v, at, "%s: unknown task \"%s\" (did you mean \"%s\"?)", kp, task, hint);
      else kg_sv_error(v, at, "%s: unknown task \"%s\"", kp, task);
    }
    return;
  }
  int is_file = !strncmp(src, "file:", 5), is_tokens = !strncmp(src, "tokens:", 7);
  if (is_file || is_tokens) {
    const char *path = src + (is_file ? 5 : 7);
    if (!path[0]) kg_sv_error(v, at, "%s: \"%s\" needs a path", kp, is_file ? "file:" : "tokens:");
    else if (!kg_path_exists(path) || kg_path_is_dir(path)) kg_sv_error(v, at, "%s: file \"%s\" does not exist", kp, path);
    else {
      c->kind = is_file ? KG_CALIB_FILE : KG_CALIB_TOKENS;
      c->arg = kg_sv_strdup(v, path);
    }
    return;
  }
  const char *hint = kg_sv_suggest(src, k_calib_plain);
  if (hint) kg_sv_error(v, at, "%s: unknown calibration source \"%s\" (did you mean \"%s\"?)", kp, src, hint);
  else
    kg_sv_error(v, at, "%s: unknown calibration source \"%s\" (expected c4, wikitext2, self, task:<task>, file:<path> or tokens:<path>)",
                kp, src);
}

static void one_calib(kg_sv *v, const config_setting_t *e, int i) {
  kg_sweep *sw = v->sw;
  char prefix[64], kp[128];
  snprintf(prefix, sizeof prefix, "calibration[%d]", i);
  if (!kg_sv_element_group(v, e, prefix, "{ name = ...; source = ...; }")) return;
  kg_sv_check_keys(v, e, prefix, k_calib_keys);
  kg_sweep_calib c = {.nsamples = 128, .seqlen = 2048, .seed = 0, .sampling = KG_SAMPLING_RANDOM};
  const char *s = NULL;
  int ok = 1, rc;
  if (kg_sv_required_string(v, e, prefix, "name", &s) == KG_SV_OK) {
    const config_setting_t *at = config_setting_get_member(e, "name");
    kg_sv_keypath(kp, sizeof kp, prefix, "name");
    if (kg_sv_check_name(v, at, kp, s) != KG_SV_OK) ok = 0;
    for (size_t j = 0; j < sw->n_calibs; j++)
      if (!strcmp(sw->calibs[j].name, s)) {
        kg_sv_error(v, at, "%s: duplicate calibration name \"%s\"", kp, s);
        ok = 0;
      }
    c.name = kg_sv_strdup(v, s);
  } else ok = 0;
  if (kg_sv_required_string(v, e, prefix, "source", &s) == KG_SV_OK) {
    size_t before = v->diags->n_errors;
    calib_source(v, config_setting_get_member(e, "source"), kg_sv_keypath(kp, sizeof kp, prefix, "source"), s, &c);
    ok &= v->diags->n_errors == before;
  } else ok = 0;
  long long x = 0;
  if ((rc = kg_sv_int(v, e, prefix, "nsamples", 1, 1 << 20, &x)) == KG_SV_OK) c.nsamples = (int)x;
  ok &= rc != KG_SV_BAD;
  if ((rc = kg_sv_int(v, e, prefix, "seqlen", 1, 1 << 20, &x)) == KG_SV_OK) c.seqlen = (int)x;
  ok &= rc != KG_SV_BAD;
  if ((rc = kg_sv_int(v, e, prefix, "seed", 0, INT64_MAX, &x)) == KG_SV_OK) c.seed = (uint64_t)x;
  ok &= rc != KG_SV_BAD;
  int sampling = 0;
  if ((rc = kg_sv_enum(v, e, prefix, "sampling", "sampling", k_sampling_names, &sampling)) == KG_SV_OK)
    c.sampling = sampling ? KG_SAMPLING_SEQUENTIAL : KG_SAMPLING_RANDOM;
  ok &= rc != KG_SV_BAD;
  if (!ok) return;
  const config_setting_t *seqlen = config_setting_get_member(e, "seqlen");
  v->calib_kp[sw->n_calibs] = kg_sv_strdup(v, prefix);
  v->calib_seqlen_set[sw->n_calibs] = seqlen ? seqlen : e;
  sw->calibs[sw->n_calibs++] = c;
}

void kg_sv_calibration(kg_sv *v, const config_setting_t *root) {
  const config_setting_t *list = config_setting_get_member(root, "calibration");
  v->s_calibration = list;
  if (!list || !kg_sv_group_list(v, list, "calibration", "{ name = \"c4\"; source = \"c4\"; }")) return;
  int n = config_setting_length(list);
  v->sw->calibs = kg_sv_alloc(v, (size_t)n, sizeof(kg_sweep_calib));
  v->calib_kp = kg_sv_alloc(v, (size_t)n, sizeof(*v->calib_kp));
  v->calib_seqlen_set = kg_sv_alloc(v, (size_t)n, sizeof(*v->calib_seqlen_set));
  if (!v->sw->calibs || !v->calib_kp || !v->calib_seqlen_set) return;
  for (int i = 0; i < n; i++) one_calib(v, config_setting_get_elem(list, (unsigned)i), i);
}

/* ---- datasets for perplexity and JS divergence ------------------------------ */

int kg_sv_text_dataset(kg_sv *v, const config_setting_t *at, const char *keypath, const char *value,
                       kg_text_kind *kind, const char **path) {
  *path = NULL;
  if (!strcmp(value, "wikitext2")) *kind = KG_TEXT_WIKITEXT2;
  else if (!strcmp(value, "c4")) *kind = KG_TEXT_C4;
  else if (!strcmp(value, "tinystories")) *kind = KG_TEXT_TINYSTORIES;
  else if (!strncmp(value, "file:", 5)) {
    const char *p = value + 5;
    if (!p[0] || !kg_path_exists(p) || kg_path_is_dir(p)) {
      kg_sv_error(v, at, "%s: file \"%s\" does not exist", keypath, p);
      return KG_SV_BAD;
    }
    *kind = KG_TEXT_FILE;
    *path = kg_sv_strdup(v, p);
  } else {
    const char *hint = kg_sv_suggest(value, k_text_names);
    if (hint) kg_sv_error(v, at, "%s: unknown dataset \"%s\" (did you mean \"%s\"?)", keypath, value, hint);
    else kg_sv_error(v, at, "%s: unknown dataset \"%s\" (expected wikitext2, c4, tinystories or file:<path>)", keypath, value);
    return KG_SV_BAD;
  }
  return KG_SV_OK;
}
