/* Running grid cells: model and calibration caches, compression on the team,
 * evaluation on the team's first rank, results addressed into the cube. */
#include "worker/worker.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/calib.h"
#include "compress/compress.h"
#include "compress/engine.h"
#include "evaluate/jsd.h"
#include "evaluate/ppl.h"
#include "evaluate/tasks.h"
#include "io/error.h"
#include "io/log.h"
#include "io/paths.h"
#include "model/model.h"

typedef struct token_cache {
  int32_t *tokens;
  int64_t n;
  int seqlen; /* the C4 protocol truncates by seqlen */
} token_cache;

struct kg_worker {
  const kg_sweep *sweep;
  const kg_sweep_cells *cells;
  const kg_grid_schema *schema;
  kg_worker_env env;
  int team_rank, team_size;
  kg_backend *be;
  int64_t model_index;   /* -1: none loaded */
  int64_t last_calib;
  kg_model *dense;
  kg_model *work;        /* compressed copy, reset from dense per cell */
  kg_tokenizer *tok;
  kg_calib_set **calib;  /* [n_calibs] for the loaded model */
  token_cache *ppl_tokens; /* [n_ppl] */
  token_cache js_tokens;
};

static void drop_model(kg_worker *w) {
  for (size_t i = 0; w->calib && i < w->sweep->n_calibs; i++) {
    kg_calib_free(w->calib[i]);
    w->calib[i] = NULL;
  }
  for (size_t i = 0; w->ppl_tokens && i < w->sweep->n_ppl; i++) {
    free(w->ppl_tokens[i].tokens);
    memset(&w->ppl_tokens[i], 0, sizeof(token_cache));
  }
  free(w->js_tokens.tokens);
  memset(&w->js_tokens, 0, sizeof(token_cache));
  kg_model_free(w->work);
  kg_model_free(w->dense);
  kg_tokenizer_free(w->tok);
  w->work = w->dense = NULL;
  w->tok = NULL;
  w->model_index = -1;
  w->last_calib = -1;
}

int kg_worker_create(const kg_sweep *sweep, const kg_sweep_cells *cells, const kg_grid_schema *schema,
                     const kg_worker_env *env, kg_worker **out) {
  *out = NULL;
  kg_worker *w = calloc(1, sizeof(*w));
  if (!w) return kg_error(KG_ERR_NOMEM, "out of memory");
  w->sweep = sweep;
  w->cells = cells;
  w->schema = schema;
  w->env = *env;
  w->model_index = w->last_calib = -1;
  w->team_size = 1;
  if (env->team != MPI_COMM_NULL) {
    MPI_Comm_rank(env->team, &w->team_rank);
    MPI_Comm_size(env->team, &w->team_size);
  }
  w->calib = calloc(sweep->n_calibs ? sweep->n_calibs : 1, sizeof(*w->calib));
  w->ppl_tokens = calloc(sweep->n_ppl ? sweep->n_ppl : 1, sizeof(*w->ppl_tokens));
  int rc = (!w->calib || !w->ppl_tokens) ? kg_error(KG_ERR_NOMEM, "out of memory")
                                         : kg_backend_create(env->backend, env->threads, &w->be);
  if (rc >= 0 && sweep->grid.gpu_memory_gb > 0)
    rc = kg_backend_set_memory_budget(w->be, (size_t)(sweep->grid.gpu_memory_gb * 1073741824.0));
  if (rc < 0) {
    kg_worker_free(w);
    return rc;
  }
  *out = w;
  return KG_OK;
}

void kg_worker_free(kg_worker *w) {
  if (!w) return;
  drop_model(w);
  /* NCCL communicators cached by the compression engine end with the worker, before MPI does. */
  kg_engine_shutdown();
  free(w->calib);
  free(w->ppl_tokens);
  kg_backend_destroy(w->be);
  free(w);
}

void kg_worker_affinity(const kg_worker *w, int64_t *model, int64_t *calib) {
  *model = w->model_index;
  *calib = w->last_calib;
}

static int ensure_model(kg_worker *w, int64_t index) {
  if (w->model_index == index) return KG_OK;
  drop_model(w);
  const kg_sweep_model *sm = &w->sweep->models[index];
  const double t0 = kg_now();
  KG_TRY(kg_model_load(sm->open_spec, w->be, &w->dense, &w->tok));
  int rc = kg_model_clone(w->dense, w->be, &w->work);
  if (rc < 0) {
    drop_model(w);
    return rc;
  }
  w->model_index = index;
  kg_info("loaded model %s (%s) in %.1f s", sm->name, sm->open_spec, kg_now() - t0);
  return KG_OK;
}

static int ensure_calib(kg_worker *w, int64_t index, kg_calib_set **out) {
  if (!w->calib[index]) {
    const kg_sweep_calib *c = &w->sweep->calibs[index];
    kg_calib_spec spec;
    kg_calib_spec_defaults(&spec);
    spec.source = c->source;
    spec.nsamples = c->nsamples;
    spec.seqlen = c->seqlen;
    spec.seed = c->seed;
    spec.sequential = c->sampling == KG_SAMPLING_SEQUENTIAL;
    const double t0 = kg_now();
    KG_TRY(kg_calib_build(&spec, w->tok, w->dense, &w->calib[index]));
    kg_info("calibration set %s: %d x %d tokens in %.1f s", c->name, spec.nsamples, spec.seqlen, kg_now() - t0);
  }
  w->last_calib = index;
  *out = w->calib[index];
  return KG_OK;
}

static int dataset_tokens(kg_worker *w, token_cache *tc, const char *dataset, int seqlen) {
  if (tc->tokens && tc->seqlen == seqlen) return KG_OK;
  free(tc->tokens);
  memset(tc, 0, sizeof(*tc));
  KG_TRY(kg_ppl_dataset_tokens(w->tok, dataset, seqlen, &tc->tokens, &tc->n));
  tc->seqlen = seqlen;
  return KG_OK;
}

static void compress_opts(const kg_worker *w, const kg_sweep_cell *cell, kg_compress_opts *o) {
  const kg_sweep_pruning *p = &w->sweep->pruning;
  const kg_sweep_method *m = cell->method;
  kg_compress_opts_defaults(o);
  o->method = m->kind;
  if (cell->sparsity) {
    o->sparsity = cell->sparsity->ratio;
    o->prune_n = cell->sparsity->n;
    o->prune_m = cell->sparsity->m;
  } else {
    o->sparsity = 0.0;
  }
  if (m->is_quantization) {
    o->quant.bits = m->bits;
    o->quant.group_size = m->group_size;
    o->quant.sym = m->sym;
    o->act_order = m->act_order;
  }
  o->true_sequential = p->true_sequential;
  o->propagate_dense = p->propagate == KG_PROPAGATE_DENSE;
  o->percdamp = p->percdamp;
  o->blocksize = p->blocksize;
  o->calib_batch = p->calib_batch;
  o->recon_samples = p->recon_samples;
  o->use_variant = p->wanda_use_variant;
  o->owl_m = p->owl_m;
  o->owl_lambda = p->owl_lambda;
  o->team = w->env.team;
}

static double zero_fraction(const kg_model *m) {
  double z = 0, n = 0;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      const kg_linear *lin = &m->blocks[l].lin[id];
      const int64_t k = (int64_t)lin->rows * lin->cols;
      for (int64_t i = 0; i < k; i++) z += lin->w[i] == 0.0f;
      n += (double)k;
    }
  return n > 0 ? z / n : 0.0;
}

/* ---- writing results ---- */

typedef struct cell_out {
  kg_worker *w;
  kg_cell_result *res;
  int64_t index[KG_CUBE_MAX_RANK];
} cell_out;

static int put(cell_out *o, kg_grid_var v, int extra_axes, const int64_t *extra, double value) {
  const int var = o->w->schema->var[v];
  if (var < 0 || isnan(value)) return KG_OK;
  for (int i = 0; i < extra_axes; i++) o->index[KG_GRID_CELL_DIMS + i] = extra[i];
  return kg_cell_result_f64(o->res, o->w->schema->cube, var, o->index, value);
}

static int put_i32(cell_out *o, kg_grid_var v, int extra_axes, const int64_t *extra, int32_t value) {
  const int var = o->w->schema->var[v];
  if (var < 0) return KG_OK;
  for (int i = 0; i < extra_axes; i++) o->index[KG_GRID_CELL_DIMS + i] = extra[i];
  return kg_cell_result_i32(o->res, o->w->schema->cube, var, o->index, value);
}

static int put_report(cell_out *o, const kg_compress_report *rep) {
  double rel = 0;
  int counted = 0;
  for (int i = 0; i < rep->n_linears; i++) {
    const kg_linear_report *lr = &rep->linears[i];
    if (isfinite(lr->recon_relative)) {
      rel += lr->recon_relative;
      counted++;
    }
    if (o->w->schema->max_layers <= 0 || lr->layer >= o->w->schema->max_layers) continue;
    int64_t at[2] = {lr->layer, lr->linear};
    KG_TRY(put(o, KG_VAR_LAYER_SPARSITY, 2, at, lr->sparsity));
    KG_TRY(put(o, KG_VAR_RECON_ERROR, 2, at, lr->recon_error));
    KG_TRY(put(o, KG_VAR_RECON_REL, 2, at, lr->recon_relative));
    KG_TRY(put(o, KG_VAR_PERCDAMP, 2, at, lr->percdamp));
  }
  if (counted) KG_TRY(put(o, KG_VAR_RECON_REL_MEAN, 0, NULL, rel / counted));
  return put(o, KG_VAR_SPARSITY_ACTUAL, 0, NULL, rep->overall_sparsity);
}

static int put_task(cell_out *o, int64_t t, const kg_task_result *tr) {
  KG_TRY(put_i32(o, KG_VAR_N_EXAMPLES, 1, &t, (int32_t)tr->n));
  for (int i = 0; i < tr->n_metrics; i++) {
    const kg_metric *mt = &tr->metrics[i];
    if (!strcmp(mt->name, "acc")) {
      KG_TRY(put(o, KG_VAR_ACC, 1, &t, mt->value));
      KG_TRY(put(o, KG_VAR_ACC_STDERR, 1, &t, mt->stderr));
    } else if (!strcmp(mt->name, "acc_norm")) {
      KG_TRY(put(o, KG_VAR_ACC_NORM, 1, &t, mt->value));
      KG_TRY(put(o, KG_VAR_ACC_NORM_STDERR, 1, &t, mt->stderr));
    } else if (!strcmp(mt->name, "perplexity")) {
      KG_TRY(put(o, KG_VAR_TASK_PPL, 1, &t, mt->value));
    } else if (!strcmp(mt->name, "em")) {
      KG_TRY(put(o, KG_VAR_EM, 1, &t, mt->value));
    } else if (!strcmp(mt->name, "f1")) {
      KG_TRY(put(o, KG_VAR_F1, 1, &t, mt->value));
    } else if (!strcmp(mt->name, "acc_llmkick")) {
      KG_TRY(put(o, KG_VAR_MATCH, 1, &t, mt->value));
    }
  }
  return KG_OK;
}

static void task_spec(const kg_sweep_task *st, kg_task_spec *spec) {
  kg_task_spec_default(spec);
  spec->task = st->name;
  spec->limit = st->limit;
  spec->num_fewshot = st->num_fewshot;
  /* The sweep's task seed drives both the few-shot draw and a random subset. */
  spec->seed = st->seed;
  spec->fewshot_seed = st->seed;
  spec->mmlu_mode = st->mode == KG_TASK_MODE_GENERATE ? KG_MMLU_GENERATE : KG_MMLU_LOGLIK;
}

/* Evaluation on the team's first rank: perplexity, JS divergence, tasks. */
static int evaluate_cell(kg_worker *w, const kg_sweep_cell *cell, kg_model *m, cell_out *o) {
  const kg_sweep *s = w->sweep;
  const int is_dense = cell->method->kind == KG_METHOD_DENSE;
  for (size_t i = 0; i < s->n_ppl; i++) {
    const kg_sweep_ppl *p = &s->ppl[i];
    token_cache *tc = &w->ppl_tokens[i];
    KG_TRY(dataset_tokens(w, tc, p->dataset, p->seqlen));
    kg_ppl_result pr;
    KG_TRY(kg_perplexity_tokens(m, tc->tokens, tc->n, p->seqlen, p->max_windows, 0, &pr));
    int64_t at = (int64_t)i;
    KG_TRY(put(o, KG_VAR_PPL, 1, &at, pr.ppl));
    kg_info("  ppl %s (seqlen %d): %.4f", p->dataset, p->seqlen, pr.ppl);
  }
  if (s->js.enabled) {
    for (size_t j = 0; j <= s->js.n_tasks; j++) {
      kg_js_result jr = {0};
      int64_t at = (int64_t)j;
      if (is_dense) {
        /* A model against itself: zero divergence, full agreement, by definition. */
        jr.mean = jr.median = jr.p95 = 0.0;
        jr.top1_agree = 1.0;
      } else if (j == 0) {
        KG_TRY(dataset_tokens(w, &w->js_tokens, s->js.dataset, s->js.seqlen));
        KG_TRY(kg_js_divergence(w->dense, m, w->js_tokens.tokens, w->js_tokens.n, s->js.seqlen, s->js.max_windows, &jr));
      } else {
        kg_task_spec spec;
        kg_task_spec_default(&spec);
        spec.task = s->js.tasks[j - 1];
        for (size_t t = 0; t < s->n_tasks; t++)
          if (!strcmp(s->tasks[t].name, spec.task)) task_spec(&s->tasks[t], &spec);
        KG_TRY(kg_js_task(w->dense, m, w->tok, &spec, &jr));
      }
      KG_TRY(put(o, KG_VAR_JS_MEAN, 1, &at, jr.mean));
      KG_TRY(put(o, KG_VAR_JS_MEDIAN, 1, &at, jr.median));
      KG_TRY(put(o, KG_VAR_JS_P95, 1, &at, jr.p95));
      KG_TRY(put(o, KG_VAR_JS_TOP1, 1, &at, jr.top1_agree));
      if (!is_dense) kg_info("  js %s: mean %.5f, top-1 agreement %.4f", j ? s->js.tasks[j - 1] : s->js.dataset, jr.mean, jr.top1_agree);
    }
  }
  for (size_t t = 0; t < s->n_tasks; t++) {
    kg_task_spec spec;
    task_spec(&s->tasks[t], &spec);
    kg_task_result tr;
    memset(&tr, 0, sizeof(tr));
    int rc = kg_eval_task(m, w->tok, &spec, &tr);
    if (rc >= 0) rc = put_task(o, (int64_t)t, &tr);
    if (rc >= 0 && tr.n_metrics) kg_info("  %s: %s %.4f (n=%lld)", tr.task, tr.metrics[0].name, tr.metrics[0].value, (long long)tr.n);
    kg_task_result_free(&tr);
    if (rc < 0) return kg_error_context("task %s: ", s->tasks[t].name);
  }
  return KG_OK;
}

/* Non-first ranks wait for the evaluation without spinning on the cores the
 * evaluation needs (MPI barriers busy-poll). */
static int team_wait(kg_worker *w) {
  if (w->env.team == MPI_COMM_NULL) return KG_OK;
  MPI_Request req;
  if (MPI_Ibarrier(w->env.team, &req) != MPI_SUCCESS) return kg_error(KG_ERR_COMM, "MPI_Ibarrier failed");
  for (;;) {
    int done = 0;
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return kg_error(KG_ERR_COMM, "MPI_Test failed");
    if (done) return KG_OK;
    usleep(1000);
  }
}

static int agree(kg_worker *w, int rc) {
  if (w->env.team == MPI_COMM_NULL) return rc;
  int mine = rc < 0 ? rc : 0, worst = 0;
  if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, w->env.team) != MPI_SUCCESS)
    return kg_error(KG_ERR_COMM, "team MPI_Allreduce failed");
  if (worst < 0 && rc >= 0) return kg_error(worst, "another rank of the team failed");
  return rc;
}

static int run_cell(kg_worker *w, const kg_sweep_cell *cell, cell_out *o) {
  int rc = KG_OK;
  const int leader = w->team_rank == 0;
  kg_compress_report rep = {0};
  kg_calib_set *calib = NULL;
  if ((rc = agree(w, ensure_model(w, cell->index[KG_DIM_MODEL]))) < 0) return rc;
  const int is_dense = cell->method->kind == KG_METHOD_DENSE;
  kg_model *m = is_dense ? w->dense : w->work;
  const double tc = kg_now();
  if (!is_dense) {
    if ((rc = agree(w, kg_model_copy_weights(w->work, w->dense))) < 0) return rc;
    if (cell->calib && cell->method->uses_calibration) {
      if ((rc = agree(w, ensure_calib(w, cell->index[KG_DIM_CALIBRATION], &calib))) < 0) return rc;
    } else if (cell->calib) {
      /* Magnitude and RTN use data only for reconstruction errors: without it they still run. */
      if (agree(w, ensure_calib(w, cell->index[KG_DIM_CALIBRATION], &calib)) < 0) {
        kg_warn("no reconstruction errors for %s: %s", cell->key, kg_error_message());
        calib = NULL;
        kg_error_clear();
      }
    }
    kg_compress_opts opts;
    compress_opts(w, cell, &opts);
    if ((rc = kg_compress_model(w->work, calib, &opts, &rep)) < 0) goto done;
  }
  const double compress_s = kg_now() - tc;
  if (leader) {
    const double te = kg_now();
    if (is_dense) rc = put(o, KG_VAR_SPARSITY_ACTUAL, 0, NULL, zero_fraction(m));
    else rc = put_report(o, &rep);
    if (rc >= 0) rc = evaluate_cell(w, cell, m, o);
    if (rc >= 0) rc = put(o, KG_VAR_COMPRESS_S, 0, NULL, compress_s);
    if (rc >= 0) rc = put(o, KG_VAR_EVAL_S, 0, NULL, kg_now() - te);
    rc = agree(w, (team_wait(w), rc));
  } else {
    rc = agree(w, team_wait(w));
  }
done:
  kg_compress_report_free(&rep);
  return rc;
}

/* Linux keeps the process's peak resident size (VmHWM); writing 5 to
 * clear_refs resets it, so each cell's peak can be read on its own. */
static void reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
}

static double peak_rss_mb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kb = NAN;
  while (f && fgets(line, sizeof(line), f))
    if (!strncmp(line, "VmHWM:", 6)) kb = strtod(line + 6, NULL);
  if (f) fclose(f);
  return kb / 1024.0;
}

static FILE *open_cell_log(const kg_worker *w, const kg_sweep_cell *cell, int attempt) {
  if (!w->env.log_dir || !w->env.log_dir[0]) return NULL;
  if (kg_mkdir_p(w->env.log_dir) < 0) return NULL;
  char name[512], path[4096];
  size_t k = 0;
  for (const char *c = cell->key; *c && k < sizeof(name) - 1; c++)
    name[k++] = isalnum((unsigned char)*c) || *c == '.' || *c == '-' ? *c : '_';
  name[k] = '\0';
  snprintf(path, sizeof(path), "%s/%s.attempt%d.log", w->env.log_dir, name, attempt);
  return fopen(path, "w");
}

int kg_worker_run_cell(kg_worker *w, int64_t index, int attempt, kg_cell_result *res) {
  const kg_sweep_cell *cell = &w->cells->cells[index];
  const double t0 = kg_now();
  FILE *log = w->team_rank == 0 ? open_cell_log(w, cell, attempt) : NULL;
  if (log) kg_log_tee(log);
  kg_info("cell %s (attempt %d) on %s", cell->key, attempt, w->env.host ? w->env.host : "?");
  kg_cell_result_init(res, index);
  cell_out o = {w, res, {0}};
  kg_grid_index(cell, o.index);
  kg_error_clear();
  reset_peak_rss();
  int rc = run_cell(w, cell, &o);
  if (rc >= 0 && w->team_rank == 0) rc = put(&o, KG_VAR_PEAK_RSS_MB, 0, NULL, peak_rss_mb());
  res->wall_s = kg_now() - t0;
  snprintf(res->host, sizeof(res->host), "%s", w->env.host ? w->env.host : "");
  if (rc < 0) {
    res->ok = 0;
    snprintf(res->error, sizeof(res->error), "%s", kg_error_message()[0] ? kg_error_message() : kg_code_name(rc));
    kg_warn("cell %s failed: %s", cell->key, res->error);
    /* A model in an unknown state is reloaded for the next cell. */
    drop_model(w);
  } else {
    kg_info("cell %s done in %.1f s", cell->key, res->wall_s);
  }
  if (log) {
    kg_log_tee(NULL);
    fclose(log);
  }
  return rc == KG_ERR_COMM ? rc : KG_OK;
}
