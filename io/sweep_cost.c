/* Rough FLOP counts per sweep cell; the model is described in io/sweep_cost.h. */
#include "io/sweep_cost.h"

#include <string.h>
#include <sys/stat.h>

/* Assumed size of each task's scoring work, per example, in tokens with a
 * LLaMA-style tokenizer: every choice is scored as context + continuation,
 * few-shot examples repeat the context, generative tasks add the answer. */
typedef struct task_cost {
  const char *name;
  double rows; /* examples in the data file (tests/../shared/data SOURCES.md) */
  double choices, context, continuation, generated;
} task_cost;

static const task_cost k_task_costs[] = {
    {"boolq", 3270, 2, 150, 2, 0},     {"piqa", 1838, 2, 30, 20, 0},        {"hellaswag", 10042, 4, 60, 30, 0},
    {"winogrande", 1267, 2, 25, 10, 0}, {"arc_easy", 2376, 4, 35, 8, 0},    {"arc_challenge", 1172, 4, 40, 10, 0},
    {"openbookqa", 500, 4, 20, 8, 0},  {"lambada", 5153, 1, 80, 2, 0},      {"mmlu", 14042, 1, 120, 1, 0},
    {"freebaseqa", 19520, 1, 30, 0, 16}, {"triviaqa", 3000, 1, 35, 0, 16},
};

void kg_cost_default_assumptions(kg_cost_assumptions *a) {
  /* 0.1 TFLOP/s: 40% of the 0.24 TFLOP/s fp32 SGEMM (2048^3, NumPy/OpenBLAS)
   * measured on a 2-core EPYC VM; transformer layers reach less than a big GEMM. */
  a->cpu_flops_per_s = 1e11;
  /* ~10% of the H100's dense BF16 peak: evaluation runs one window at a
   * time and the layer-wise pipeline alternates small kernels with host work. */
  a->gpu_flops_per_s = 1e14;
  a->wikitext2_tokens = 340e3;
  a->c4_eval_windows = 256; /* the SparseGPT/Wanda C4 protocol */
  a->tinystories_tokens = 50e3; /* the 207 kB TinyStories sample */
  a->bytes_per_token = 4.0;
}

static const task_cost *find_task(const char *name) {
  for (size_t i = 0; i < sizeof k_task_costs / sizeof k_task_costs[0]; i++)
    if (!strcmp(k_task_costs[i].name, name)) return &k_task_costs[i];
  return NULL;
}

static double text_tokens(kg_text_kind kind, const char *path, int seqlen, int max_windows,
                          const kg_cost_assumptions *a) {
  double tokens;
  if (kind == KG_TEXT_WIKITEXT2) tokens = a->wikitext2_tokens;
  else if (kind == KG_TEXT_C4) tokens = a->c4_eval_windows * seqlen;
  else if (kind == KG_TEXT_TINYSTORIES) tokens = a->tinystories_tokens;
  else {
    struct stat st;
    tokens = path && stat(path, &st) == 0 ? (double)st.st_size / a->bytes_per_token : 0.0;
  }
  double windows = (double)(long long)(tokens / seqlen); /* whole windows only, as perplexity uses */
  if (max_windows > 0 && windows > max_windows) windows = max_windows;
  return windows * seqlen;
}

static double task_tokens(const kg_sweep_task *t, const char *name) {
  const task_cost *c = find_task(name);
  if (!c) return 0.0;
  double rows = c->rows;
  int fewshot = 0;
  if (t) {
    if (t->limit > 0 && t->limit < rows) rows = t->limit;
    fewshot = t->num_fewshot;
  }
  double per = c->choices * (c->context * (1 + fewshot) + c->continuation) + c->generated;
  return rows * per;
}

/* Work of SparseGPT/GPTQ over one block's seven linears. */
static double hessian_per_layer(const kg_model_config *s, double tokens, double blocksize) {
  double d = s->dim, q = (double)s->n_heads * s->head_dim, kv = (double)s->n_kv_heads * s->head_dim,
         h = s->hidden_dim;
  const double lin[7][2] = {{q, d}, {kv, d}, {kv, d}, {d, q}, {h, d}, {h, d}, {d, h}}; /* d_out, d_in */
  double f = 0;
  for (int i = 0; i < 7; i++) {
    double out = lin[i][0], in = lin[i][1];
    f += 2.0 * tokens * in * in + 4.0 / 3.0 * in * in * in + out * in * (in + blocksize);
  }
  return f;
}

void kg_sweep_cell_cost(const kg_sweep *sw, const kg_sweep_cell *cell, const kg_cost_assumptions *a,
                        kg_cell_cost *out) {
  memset(out, 0, sizeof(*out));
  const kg_sweep_model *m = cell->model;
  double P = (double)m->n_params;
  if (P <= 0) return;
  out->params_known = 1;
  out->hessian_known = 1;
  const kg_sweep_method *me = cell->method;
  if (me->uses_calibration && cell->calib) {
    double tokens = (double)cell->calib->nsamples * cell->calib->seqlen;
    double passes = 1.0 + (sw->pruning.propagate == KG_PROPAGATE_PRUNED) + (sw->pruning.true_sequential ? 1.0 : 0.0);
    if (me->kind == KG_METHOD_OWL_WANDA || me->kind == KG_METHOD_OWL_SPARSEGPT) passes += 1.0;
    if (cell->calib->kind == KG_CALIB_SELF) passes += 1.0;
    out->calib_flops = passes * 2.0 * P * tokens;
    if (me->kind == KG_METHOD_SPARSEGPT || me->kind == KG_METHOD_OWL_SPARSEGPT || me->kind == KG_METHOD_GPTQ) {
      if (m->shape_known) out->hessian_flops = m->shape.n_layers * hessian_per_layer(&m->shape, tokens, sw->pruning.blocksize);
      else out->hessian_known = 0;
    }
  }
  double tokens = 0;
  for (size_t i = 0; i < sw->n_ppl; i++)
    tokens += text_tokens(sw->ppl[i].kind, sw->ppl[i].path, sw->ppl[i].seqlen, sw->ppl[i].max_windows, a);
  if (sw->js.enabled) {
    tokens += text_tokens(sw->js.kind, sw->js.path, sw->js.seqlen, sw->js.max_windows, a);
    for (size_t i = 0; i < sw->js.n_tasks; i++) {
      const kg_sweep_task *same = NULL;
      for (size_t j = 0; j < sw->n_tasks; j++)
        if (!strcmp(sw->tasks[j].name, sw->js.tasks[i])) same = &sw->tasks[j];
      tokens += task_tokens(same, sw->js.tasks[i]);
    }
  }
  for (size_t i = 0; i < sw->n_tasks; i++) tokens += task_tokens(&sw->tasks[i], sw->tasks[i].name);
  out->eval_tokens = tokens;
  out->eval_flops = 2.0 * P * tokens;
  out->total_flops = out->calib_flops + out->hessian_flops + out->eval_flops;
}
