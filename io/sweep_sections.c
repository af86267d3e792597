/* Sweep config sections that set options rather than axes (pruning,
 * evaluation, grid) and the checks that need several sections at once:
 * combinations that would only fail hours into a job. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/error.h"
#include "io/sweep_internal.h"

static const char *const k_pruning_keys[] = {"true_sequential", "propagate", "percdamp", "blocksize", "calib_batch",
                                             "recon_samples", "wanda_use_variant", "owl_m", "owl_lambda", NULL};
static const char *const k_propagate_names[] = {"pruned", "dense", NULL};
static const char *const k_eval_keys[] = {"perplexity", "js_divergence", "tasks", NULL};
static const char *const k_ppl_keys[] = {"dataset", "seqlen", "max_windows", NULL};
static const char *const k_js_keys[] = {"enabled", "dataset", "seqlen", "max_windows", "tasks", NULL};
static const char *const k_task_keys[] = {"name", "limit", "num_fewshot", "seed", "mode", NULL};
static const char *const k_mode_names[] = {"loglik", "generate", NULL};
static const char *const k_grid_keys[] = {"team_size", "retries", "output", "backend", "threads",
                                          "gpu_memory_gb", "log_dir", NULL};
static const char *const k_backend_names[] = {"cpu", "cuda", NULL};

/* MMLU's dev split holds five questions per subject: the only few-shot pool. */
enum { KG_MMLU_MAX_FEWSHOT = 5, KG_MAX_FEWSHOT = 25 };

static int want_group(kg_sv *v, const config_setting_t *s, const char *key) {
  char got[128];
  if (config_setting_is_group(s)) return 1;
  kg_sv_error(v, s, "%s: expected a group { ... }, got %s", key, kg_sv_describe(s, got, sizeof got));
  return 0;
}

/* ---- pruning -------------------------------------------------------------- */

void kg_sv_pruning(kg_sv *v, const config_setting_t *root) {
  kg_sweep_pruning *p = &v->sw->pruning;
  p->true_sequential = 0;
  p->propagate = KG_PROPAGATE_PRUNED;
  p->percdamp = 0.01;
  p->blocksize = 128;
  p->calib_batch = 0;
  p->recon_samples = 16;
  p->wanda_use_variant = 0;
  p->owl_m = 5.0;
  p->owl_lambda = 0.08;
  const config_setting_t *g = config_setting_get_member(root, "pruning");
  v->s_pruning = g;
  if (!g || !want_group(v, g, "pruning")) return;
  kg_sv_check_keys(v, g, "pruning", k_pruning_keys);
  int b = 0;
  long long x = 0;
  double f = 0;
  if (kg_sv_bool(v, g, "pruning", "true_sequential", &b) == KG_SV_OK) p->true_sequential = b;
  if (kg_sv_enum(v, g, "pruning", "propagate", "propagate mode", k_propagate_names, &b) == KG_SV_OK)
    p->propagate = b ? KG_PROPAGATE_DENSE : KG_PROPAGATE_PRUNED;
  if (kg_sv_float(v, g, "pruning", "percdamp", 0.0, 1, 1.0, 0, &f) == KG_SV_OK) p->percdamp = f;
  if (kg_sv_int(v, g, "pruning", "blocksize", 1, 1 << 16, &x) == KG_SV_OK) p->blocksize = (int)x;
  if (kg_sv_int(v, g, "pruning", "calib_batch", 0, 4096, &x) == KG_SV_OK) p->calib_batch = (int)x;
  if (kg_sv_int(v, g, "pruning", "recon_samples", 0, 1 << 20, &x) == KG_SV_OK) p->recon_samples = (int)x;
  if (kg_sv_bool(v, g, "pruning", "wanda_use_variant", &b) == KG_SV_OK) p->wanda_use_variant = b;
  if (kg_sv_float(v, g, "pruning", "owl_m", 0.0, 1, INFINITY, 0, &f) == KG_SV_OK) p->owl_m = f;
  if (kg_sv_float(v, g, "pruning", "owl_lambda", 0.0, 0, 0.5, 1, &f) == KG_SV_OK) p->owl_lambda = f;
  v->s_blocksize = config_setting_get_member(g, "blocksize");
  v->s_owl_lambda = config_setting_get_member(g, "owl_lambda");
}

/* ---- evaluation ----------------------------------------------------------- */

static void perplexity(kg_sv *v, const config_setting_t *list) {
  kg_sweep *sw = v->sw;
  if (!kg_sv_group_list(v, list, "evaluation.perplexity", "{ dataset = \"wikitext2\"; seqlen = 2048; }")) return;
  int n = config_setting_length(list);
  sw->ppl = kg_sv_alloc(v, (size_t)n, sizeof(kg_sweep_ppl));
  v->ppl_kp = kg_sv_alloc(v, (size_t)n, sizeof(*v->ppl_kp));
  v->ppl_seqlen_set = kg_sv_alloc(v, (size_t)n, sizeof(*v->ppl_seqlen_set));
  if (!sw->ppl || !v->ppl_kp || !v->ppl_seqlen_set) return;
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    char prefix[64], kp[128];
    snprintf(prefix, sizeof prefix, "evaluation.perplexity[%d]", i);
    if (!kg_sv_element_group(v, e, prefix, "{ dataset = ...; }")) continue;
    kg_sv_check_keys(v, e, prefix, k_ppl_keys);
    kg_sweep_ppl p = {.seqlen = 2048, .max_windows = 0};
    const char *s = NULL;
    long long x = 0;
    int ok = 1, rc;
    if (kg_sv_required_string(v, e, prefix, "dataset", &s) == KG_SV_OK) {
      kg_sv_keypath(kp, sizeof kp, prefix, "dataset");
      ok = kg_sv_text_dataset(v, config_setting_get_member(e, "dataset"), kp, s, &p.kind, &p.path) == KG_SV_OK;
      p.dataset = kg_sv_strdup(v, s);
    } else ok = 0;
    if ((rc = kg_sv_int(v, e, prefix, "seqlen", 1, 1 << 20, &x)) == KG_SV_OK) p.seqlen = (int)x;
    ok &= rc != KG_SV_BAD;
    if ((rc = kg_sv_int(v, e, prefix, "max_windows", 0, 1 << 24, &x)) == KG_SV_OK) p.max_windows = (int)x;
    ok &= rc != KG_SV_BAD;
    if (!ok) continue;
    for (size_t j = 0; j < sw->n_ppl; j++)
      if (!strcmp(sw->ppl[j].dataset, p.dataset) && sw->ppl[j].seqlen == p.seqlen) {
        kg_sv_error(v, e, "%s: duplicate perplexity evaluation (%s at seqlen %d)", prefix, p.dataset, p.seqlen);
        ok = 0;
      }
    if (!ok) continue;
    const config_setting_t *sl = config_setting_get_member(e, "seqlen");
    v->ppl_kp[sw->n_ppl] = kg_sv_strdup(v, prefix);
    v->ppl_seqlen_set[sw->n_ppl] = sl ? sl : e;
    sw->ppl[sw->n_ppl++] = p;
  }
}

/* A task name at `at`; reports unknown names with a suggestion. */
static int task_name(kg_sv *v, const config_setting_t *at, const char *kp, const char *name) {
  if (kg_sv_task_index(name) >= 0) return 1;
  const char *hint = kg_sv_suggest(name, kg_sweep_task_names());
  if (hint) kg_sv_error(v, at, "%s: unknown task \"%s\" (did you mean \"%s\"?)", kp, name, hint);
  else kg_sv_error(v, at, "%s: unknown task \"%s\"", kp, name);
  return 0;
}

static void js_divergence(kg_sv *v, const config_setting_t *g) {
  kg_sweep_js *js = &v->sw->js;
  const char *pre = "evaluation.js_divergence";
  v->s_js = g;
  if (!want_group(v, g, pre)) return;
  kg_sv_check_keys(v, g, pre, k_js_keys);
  js->enabled = 1; /* writing the group asks for it unless enabled = false */
  kg_sv_bool(v, g, pre, "enabled", &js->enabled);
  v->s_js_enabled = config_setting_get_member(g, "enabled");
  const char *s = NULL;
  char kp[128];
  if (kg_sv_string(v, g, pre, "dataset", &s) == KG_SV_OK) {
    kg_sv_text_dataset(v, config_setting_get_member(g, "dataset"), kg_sv_keypath(kp, sizeof kp, pre, "dataset"), s,
                       &js->kind, &js->path);
    js->dataset = kg_sv_strdup(v, s);
  }
  long long x = 0;
  if (kg_sv_int(v, g, pre, "seqlen", 1, 1 << 20, &x) == KG_SV_OK) js->seqlen = (int)x;
  v->s_js_seqlen = config_setting_get_member(g, "seqlen") ? config_setting_get_member(g, "seqlen") : g;
  if (kg_sv_int(v, g, pre, "max_windows", 0, 1 << 24, &x) == KG_SV_OK) js->max_windows = (int)x;
  const config_setting_t *t = config_setting_get_member(g, "tasks");
  if (!t) return;
  char got[128];
  if (!config_setting_is_array(t) && !config_setting_is_list(t)) {
    kg_sv_error(v, t, "%s.tasks: expected an array of task names, got %s", pre, kg_sv_describe(t, got, sizeof got));
    return;
  }
  int n = config_setting_length(t);
  js->tasks = kg_sv_alloc(v, (size_t)n, sizeof(char *));
  if (!js->tasks) return;
  for (int i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(t, (unsigned)i);
    snprintf(kp, sizeof kp, "%s.tasks[%d]", pre, i);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
      kg_sv_error(v, e, "%s: expected a task name (a string), got %s", kp, kg_sv_describe(e, got, sizeof got));
      continue;
    }
    const char *name = config_setting_get_string(e);
    if (!task_name(v, e, kp, name)) continue;
    int dup = 0;
    for (size_t j = 0; j < js->n_tasks; j++) dup |= !strcmp(js->tasks[j], name);
    if (dup) kg_sv_error(v, e, "%s: duplicate task \"%s\"", kp, name);
    else js->tasks[js->n_tasks++] = kg_sv_strdup(v, name);
  }
}

static void one_task(kg_sv *v, const config_setting_t *e, int i) {
  kg_sweep *sw = v->sw;
  char prefix[64], kp[128];
  snprintf(prefix, sizeof prefix, "evaluation.tasks[%d]", i);
  if (!kg_sv_element_group(v, e, prefix, "{ name = ...; }")) return;
  kg_sv_check_keys(v, e, prefix, k_task_keys);
  kg_sweep_task t = {.limit = 0, .num_fewshot = 0, .seed = 1234, .mode = KG_TASK_MODE_DEFAULT};
  const char *s = NULL;
  long long x = 0;
  int ok = 1, rc;
  if (kg_sv_required_string(v, e, prefix, "name", &s) == KG_SV_OK) {
    const config_setting_t *at = config_setting_get_member(e, "name");
    ok = task_name(v, at, kg_sv_keypath(kp, sizeof kp, prefix, "name"), s);
    for (size_t j = 0; ok && j < sw->n_tasks; j++)
      if (!strcmp(sw->tasks[j].name, s)) {
        kg_sv_error(v, at, "%s: duplicate task \"%s\"", kp, s);
        ok = 0;
      }
    t.name = kg_sv_strdup(v, s);
  } else ok = 0;
  if ((rc = kg_sv_int(v, e, prefix, "limit", 0, INT32_MAX, &x)) == KG_SV_OK) t.limit = (int)x;
  ok &= rc != KG_SV_BAD;
  if ((rc = kg_sv_int(v, e, prefix, "num_fewshot", 0, KG_MAX_FEWSHOT, &x)) == KG_SV_OK) t.num_fewshot = (int)x;
  ok &= rc != KG_SV_BAD;
  if ((rc = kg_sv_int(v, e, prefix, "seed", 0, INT64_MAX, &x)) == KG_SV_OK) t.seed = (uint64_t)x;
  ok &= rc != KG_SV_BAD;
  int mode = 0;
  const config_setting_t *ms = config_setting_get_member(e, "mode");
  if ((rc = kg_sv_enum(v, e, prefix, "mode", "mode", k_mode_names, &mode)) == KG_SV_OK)
    t.mode = mode ? KG_TASK_MODE_GENERATE : KG_TASK_MODE_LOGLIK;
  ok &= rc != KG_SV_BAD;
  if (!ok) return;
  int is_mmlu = !strcmp(t.name, "mmlu");
  if (ms && !is_mmlu) {
    kg_sv_error(v, ms, "%s: applies to mmlu only", kg_sv_keypath(kp, sizeof kp, prefix, "mode"));
    return;
  }
  if (is_mmlu && t.mode == KG_TASK_MODE_DEFAULT) t.mode = KG_TASK_MODE_LOGLIK;
  if (is_mmlu && t.num_fewshot > KG_MMLU_MAX_FEWSHOT) {
    kg_sv_error(v, config_setting_get_member(e, "num_fewshot"),
                "%s: mmlu %s mode has only %d dev examples per subject for few-shot prompts, got num_fewshot = %d",
                kg_sv_keypath(kp, sizeof kp, prefix, "num_fewshot"), k_mode_names[t.mode - 1], KG_MMLU_MAX_FEWSHOT,
                t.num_fewshot);
    return;
  }
  sw->tasks[sw->n_tasks++] = t;
}

void kg_sv_evaluation(kg_sv *v, const config_setting_t *root) {
  kg_sweep *sw = v->sw;
  sw->js.dataset = "wikitext2";
  sw->js.kind = KG_TEXT_WIKITEXT2;
  sw->js.seqlen = 2048;
  sw->js.max_windows = 16;
  const config_setting_t *g = config_setting_get_member(root, "evaluation");
  v->s_evaluation = g;
  if (!g || !want_group(v, g, "evaluation")) return;
  kg_sv_check_keys(v, g, "evaluation", k_eval_keys);
  const config_setting_t *s = config_setting_get_member(g, "perplexity");
  if (s) perplexity(v, s);
  if ((s = config_setting_get_member(g, "js_divergence"))) js_divergence(v, s);
  if ((s = config_setting_get_member(g, "tasks")) &&
      kg_sv_group_list(v, s, "evaluation.tasks", "{ name = \"boolq\"; limit = 200; }")) {
    int n = config_setting_length(s);
    if (!(sw->tasks = kg_sv_alloc(v, (size_t)n, sizeof(kg_sweep_task)))) return;
    for (int i = 0; i < n; i++) one_task(v, config_setting_get_elem(s, (unsigned)i), i);
  }
}

/* ---- grid ------------------------------------------------------------------ */

void kg_sv_grid(kg_sv *v, const config_setting_t *root) {
  kg_sweep_grid *gr = &v->sw->grid;
  gr->team_size = 1;
  gr->retries = 1;
  gr->backend = KG_BACKEND_CPU;
  gr->team_size_line = 1;
  const config_setting_t *g = config_setting_get_member(root, "grid");
  v->s_grid = g;
  const char *out = NULL, *logs = NULL;
  if (g && want_group(v, g, "grid")) {
    kg_sv_check_keys(v, g, "grid", k_grid_keys);
    long long x = 0;
    double f = 0;
    int b = 0;
    if (kg_sv_int(v, g, "grid", "team_size", 1, 4096, &x) == KG_SV_OK) gr->team_size = (int)x;
    v->s_team_size = config_setting_get_member(g, "team_size");
    gr->team_size_line = (int)config_setting_source_line(v->s_team_size ? v->s_team_size : g);
    if (kg_sv_int(v, g, "grid", "retries", 0, 100, &x) == KG_SV_OK) gr->retries = (int)x;
    kg_sv_string(v, g, "grid", "output", &out);
    if (kg_sv_enum(v, g, "grid", "backend", "backend", k_backend_names, &b) == KG_SV_OK)
      gr->backend = b ? KG_BACKEND_CUDA : KG_BACKEND_CPU;
    if (kg_sv_int(v, g, "grid", "threads", 0, 4096, &x) == KG_SV_OK) gr->threads = (int)x;
    if (kg_sv_float(v, g, "grid", "gpu_memory_gb", 0.0, 0, INFINITY, 0, &f) == KG_SV_OK) gr->gpu_memory_gb = f;
    kg_sv_string(v, g, "grid", "log_dir", &logs);
    if (gr->backend == KG_BACKEND_CPU && gr->gpu_memory_gb > 0)
      kg_sv_warning(v, config_setting_get_member(g, "gpu_memory_gb"), "grid.gpu_memory_gb: ignored with backend \"cpu\"");
  }
  char buf[512];
  const char *name = v->sw->name ? v->sw->name : "sweep";
  if (!out) snprintf(buf, sizeof buf, "out/%s.h5", name);
  gr->output = kg_sv_strdup(v, out ? out : buf);
  if (!logs) snprintf(buf, sizeof buf, "out/%s.logs", name);
  gr->log_dir = kg_sv_strdup(v, logs ? logs : buf);
}

/* ---- checks across sections ------------------------------------------------- */

static int is_owl(kg_method_kind k) { return k == KG_METHOD_OWL_WANDA || k == KG_METHOD_OWL_SPARSEGPT; }
static int uses_blocks(kg_method_kind k) { return k == KG_METHOD_SPARSEGPT || k == KG_METHOD_OWL_SPARSEGPT; }

/* Every sequence length must fit the context of every model whose shape is known. */
static void seqlen_fits(kg_sv *v, const config_setting_t *at, const char *what, int seqlen) {
  for (size_t i = 0; i < v->sw->n_models; i++) {
    const kg_sweep_model *m = &v->sw->models[i];
    if (m->shape_known && seqlen > m->shape.max_seq_len)
      kg_sv_error(v, at, "%s.seqlen: %d exceeds the %d-token context of model \"%s\"", what, seqlen,
                  m->shape.max_seq_len, m->name);
  }
}

/* N:M groups run along each linear layer's input width; a width that M does
 * not divide would leave a partial group with fewer than N weights to prune. */
static void nm_fits(kg_sv *v, size_t si) {
  const kg_sweep_sparsity *sp = &v->sw->sparsities[si];
  for (size_t i = 0; i < v->sw->n_models; i++) {
    const kg_sweep_model *m = &v->sw->models[i];
    if (!m->shape_known) continue;
    int widths[3] = {m->shape.dim, m->shape.n_heads * m->shape.head_dim, m->shape.hidden_dim};
    for (int w = 0; w < 3; w++)
      if (widths[w] % sp->m) {
        kg_sv_error(v, v->sparsity_set[si], "%s: \"%s\" needs M = %d to divide every layer's input width; model \"%s\" has a width of %d",
                    v->sparsity_kp[si], sp->label, sp->m, m->name, widths[w]);
        break;
      }
  }
}

void kg_sv_cross_checks(kg_sv *v) {
  kg_sweep *sw = v->sw;
  size_t n_prune = 0, n_owl = 0, n_nm = 0, n_unstructured = 0;
  int any_calib_user = 0, any_blocks = 0;
  for (size_t i = 1; i < sw->n_methods; i++) {
    const kg_sweep_method *m = &sw->methods[i];
    n_prune += !m->is_quantization;
    n_owl += is_owl(m->kind);
    any_calib_user |= m->uses_calibration;
    any_blocks |= uses_blocks(m->kind);
    if (m->uses_calibration && sw->n_calibs == 0 && !v->err_calibration)
      kg_sv_error(v, v->method_set[i], "%s: \"%s\" needs calibration data, but calibration lists no sets",
                  m->is_quantization ? "quantization" : "prune_method", m->label);
  }
  for (size_t i = 0; i < sw->n_sparsities; i++) {
    if (sw->sparsities[i].m) n_nm++;
    else n_unstructured++;
  }
  if (n_prune && !sw->n_sparsities && !v->err_sparsity) {
    if (v->s_sparsity) kg_sv_error(v, v->s_sparsity, "sparsity: empty, but prune_method lists pruning methods");
    else kg_sv_error(v, v->s_prune_method, "missing required key \"sparsity\" (prune_method lists pruning methods)");
  }
  if (!n_prune && sw->n_sparsities && !v->err_methods) kg_sv_warning(v, v->s_sparsity, "sparsity: unused, prune_method lists no pruning method");
  if (sw->n_calibs && !any_calib_user && !v->err_methods)
    kg_sv_warning(v, v->s_calibration, "calibration: unused, no listed method uses calibration data");

  for (size_t i = 0; i < sw->n_sparsities; i++) {
    const kg_sweep_sparsity *sp = &sw->sparsities[i];
    if (sp->m) {
      nm_fits(v, i);
      if (n_owl && n_unstructured)
        kg_sv_warning(v, v->sparsity_set[i], "%s: \"%s\" has no OWL cells (OWL is defined for unstructured sparsity; its reference prunes N:M like plain Wanda)",
                      v->sparsity_kp[i], sp->label);
      if (any_blocks && sw->pruning.blocksize % sp->m)
        kg_sv_error(v, v->s_blocksize ? v->s_blocksize : v->sparsity_set[i],
                    "pruning.blocksize: %d is not a multiple of M = %d of \"%s\" (SparseGPT forms N:M groups inside a column block)",
                    sw->pruning.blocksize, sp->m, sp->label);
    } else if (n_owl) {
      /* OWL's densities span [0, 2 lambda] before centring, so a block can
       * sit up to 2 lambda above the target; at 1 it would lose every weight.
       * (Below 0 the reference clamps to 0.01, which is harmless.) */
      double lam = sw->pruning.owl_lambda;
      if (sp->ratio + 2.0 * lam >= 1.0)
        kg_sv_error(v, v->sparsity_set[i], "%s: %s with pruning.owl_lambda %g lets OWL prune a block at up to %g (must stay below 1)",
                    v->sparsity_kp[i], sp->label, lam, sp->ratio + 2.0 * lam);
    }
  }
  if (n_owl && n_nm && !n_unstructured && !v->err_sparsity)
    for (size_t i = 1; i < sw->n_methods; i++)
      if (is_owl(sw->methods[i].kind))
        kg_sv_error(v, v->method_set[i], "prune_method: \"%s\" has no cells: OWL is defined for unstructured sparsity and sparsity lists only N:M patterns",
                    sw->methods[i].label);

  for (size_t i = 0; i < sw->n_calibs; i++) seqlen_fits(v, v->calib_seqlen_set[i], v->calib_kp[i], sw->calibs[i].seqlen);
  for (size_t i = 0; i < sw->n_ppl; i++) seqlen_fits(v, v->ppl_seqlen_set[i], v->ppl_kp[i], sw->ppl[i].seqlen);
  if (sw->js.enabled) {
    seqlen_fits(v, v->s_js_seqlen, "evaluation.js_divergence", sw->js.seqlen);
    if (sw->n_methods == 1 && !v->err_methods)
      kg_sv_error(v, v->s_js_enabled ? v->s_js_enabled : v->s_js,
                  "evaluation.js_divergence: enabled, but there is no compressed model to compare with dense (prune_method and quantization are empty)");
  }
  if (!sw->n_ppl && !sw->js.enabled && !sw->n_tasks && !v->err_evaluation)
    kg_sv_error(v, v->s_evaluation ? v->s_evaluation : v->root,
                "evaluation: nothing to evaluate (give perplexity, js_divergence or tasks)");

  /* A team splits each calibration set's samples across its ranks
   * (compress/compress.h); ranks beyond the sample count get none and only
   * wait. Whether the team fits at all is known at run time
   * (kg_sweep_check_world, `kickgrid plan --ranks`). */
  for (size_t i = 0; i < sw->n_calibs && any_calib_user; i++)
    if (sw->grid.team_size > sw->calibs[i].nsamples)
      kg_sv_warning(v, v->s_team_size, "grid.team_size: %d ranks share the %d samples of %s, so some get none",
                    sw->grid.team_size, sw->calibs[i].nsamples, v->calib_kp[i]);
}
