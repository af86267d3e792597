#include "evaluate/jsd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/eval_internal.h"
#include "io/error.h"
#include "io/log.h"

/* The row math lives in the backend (model/backend.h) so that the CPU and
 * CUDA paths share one definition; these wrappers expose it here. */
double kg_js_logits_lse(const float *a, double lse_a, const float *b, double lse_b, int vocab) {
  return kg_row_js_lse(a, lse_a, b, lse_b, vocab);
}

double kg_js_logits(const float *p, const float *q, int vocab) {
  return kg_row_js_lse(p, kg_row_logsumexp(p, vocab), q, kg_row_logsumexp(q, vocab), vocab);
}

/* ---- accumulation ---- */

typedef struct js_acc {
  double *v;
  size_t n, cap;
  int64_t agree;
} js_acc;

static int acc_reserve(js_acc *a, size_t more) {
  if (a->n + more <= a->cap) return KG_OK;
  size_t cap = a->cap ? a->cap : 4096;
  while (cap < a->n + more) cap *= 2;
  double *g = realloc(a->v, cap * sizeof(*g));
  if (!g) return kg_error(KG_ERR_NOMEM, "JS values (%zu)", cap);
  a->v = g;
  a->cap = cap;
  return KG_OK;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static double percentile(const double *sorted, size_t n, double q) {
  double idx = q * (double)(n - 1);
  size_t lo = (size_t)floor(idx), hi = (size_t)ceil(idx);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - (double)lo);
}

static void acc_finish(js_acc *a, kg_js_result *res) {
  res->n_tokens = (int64_t)a->n;
  if (a->n == 0) {
    res->mean = res->median = res->p95 = res->max = res->top1_agree = NAN;
    return;
  }
  double s = 0.0;
  for (size_t i = 0; i < a->n; i++) s += a->v[i];
  res->mean = s / (double)a->n;
  qsort(a->v, a->n, sizeof(*a->v), cmp_double);
  res->median = percentile(a->v, a->n, 0.5);
  res->p95 = percentile(a->v, a->n, 0.95);
  res->max = a->v[a->n - 1];
  res->top1_agree = (double)a->agree / (double)a->n;
}

/* ---- one batch ---- */

/* Runs both models over tokens [n_seq, T] and appends the JS of every row
 * with want != 0 (all when want is NULL). kg_model_forward_js keeps at most
 * one chunk of logits per model alive, on the backend. */
static int js_run_batch(kg_model *dense, kg_model *test, const int32_t *tokens, int n_seq, int T, const uint8_t *want,
                        js_acc *acc) {
  int rc = KG_OK;
  int64_t n_rows = (int64_t)n_seq * T;
  double *js = malloc((size_t)n_rows * sizeof(*js));
  int32_t *ap = malloc((size_t)n_rows * sizeof(*ap)), *aq = malloc((size_t)n_rows * sizeof(*aq));
  if (!js || !ap || !aq) {
    rc = kg_error(KG_ERR_NOMEM, "JS rows (%lld)", (long long)n_rows);
    goto done;
  }
  if ((rc = kg_model_forward_js(dense, test, tokens, n_seq, T, want, js, ap, aq)) < 0) goto done;
  if ((rc = acc_reserve(acc, (size_t)n_rows)) < 0) goto done;
  for (int64_t r = 0; r < n_rows; r++) {
    if (want && !want[r]) continue;
    if (isnan(js[r])) {
      rc = kg_error(KG_ERR_NUMERIC, "JS divergence is NaN at row %lld (non-finite logits)", (long long)r);
      goto done;
    }
    acc->v[acc->n++] = js[r];
    acc->agree += ap[r] == aq[r];
  }
done:
  free(js);
  free(ap);
  free(aq);
  return rc;
}

int kg_js_divergence(kg_model *dense, kg_model *test, const int32_t *tokens, int64_t n, int seqlen, int max_windows,
                     kg_js_result *res) {
  memset(res, 0, sizeof(*res));
  if (seqlen < 1) return kg_error(KG_ERR_ARG, "JS divergence: seqlen %d", seqlen);
  int64_t windows = n / seqlen;
  if (max_windows > 0 && windows > max_windows) windows = max_windows;
  if (windows < 1) return kg_error(KG_ERR_ARG, "JS divergence: %lld tokens make no window of %d", (long long)n, seqlen);
  double t0 = kg_now();
  js_acc acc = {0};
  int rc = KG_OK;
  for (int64_t w = 0; w < windows && rc == KG_OK; w++)
    rc = js_run_batch(dense, test, tokens + w * seqlen, 1, seqlen, NULL, &acc);
  if (rc == KG_OK) {
    res->n_windows = windows;
    acc_finish(&acc, res);
  }
  res->seconds = kg_now() - t0;
  free(acc.v);
  return rc;
}

int kg_js_divergence_seqs(kg_model *dense, kg_model *test, const int32_t *const *seqs, const int *lens, size_t n_seqs,
                          int batch, kg_js_result *res) {
  memset(res, 0, sizeof(*res));
  if (batch < 1) batch = 1;
  double t0 = kg_now();
  js_acc acc = {0};
  int rc = KG_OK, Lmax = 1;
  for (size_t i = 0; i < n_seqs; i++)
    if (lens[i] > Lmax) Lmax = lens[i];
  int32_t *tokens = malloc((size_t)batch * (size_t)Lmax * sizeof(*tokens));
  uint8_t *want = malloc((size_t)batch * (size_t)Lmax);
  if (!tokens || !want) {
    rc = kg_error(KG_ERR_NOMEM, "JS batch");
    goto done;
  }
  for (size_t i0 = 0; i0 < n_seqs && rc == KG_OK; i0 += (size_t)batch) {
    int nb = (int)(n_seqs - i0 < (size_t)batch ? n_seqs - i0 : (size_t)batch), T = 1;
    for (int s = 0; s < nb; s++)
      if (lens[i0 + (size_t)s] > T) T = lens[i0 + (size_t)s];
    for (int s = 0; s < nb; s++) {
      const int32_t *q = seqs[i0 + (size_t)s];
      int L = lens[i0 + (size_t)s];
      if (L < 1) {
        rc = kg_error(KG_ERR_ARG, "JS divergence: sequence %zu is empty", i0 + (size_t)s);
        goto done;
      }
      for (int t = 0; t < T; t++) {
        tokens[(size_t)s * (size_t)T + (size_t)t] = t < L ? q[t] : q[L - 1];
        want[(size_t)s * (size_t)T + (size_t)t] = t < L;
      }
    }
    rc = js_run_batch(dense, test, tokens, nb, T, want, &acc);
  }
  if (rc == KG_OK) {
    res->n_windows = (int64_t)n_seqs;
    acc_finish(&acc, res);
  }
done:
  res->seconds = kg_now() - t0;
  free(tokens);
  free(want);
  free(acc.v);
  return rc;
}

int kg_js_task(kg_model *dense, kg_model *test, kg_tokenizer *tok, const kg_task_spec *spec_in, kg_js_result *res) {
  kg_task_spec spec;
  if (spec_in) spec = *spec_in;
  else kg_task_spec_default(&spec);
  memset(res, 0, sizeof(*res));
  int rc = KG_OK;
  kg_task_data *owned = NULL;
  const kg_task_data *d = spec.data;
  size_t *docs = NULL, n = 0;
  int32_t **seqs = NULL;
  int *lens = NULL;
  if (!d) {
    KG_TRY(kg_task_load(spec.task, &owned));
    d = owned;
  }
  int k = spec.num_fewshot >= 0 ? spec.num_fewshot : d->info->default_fewshot;
  int llmkick = d->info->kind == KG_TASK_GENERATE || (d->n_subjects && spec.mmlu_mode == KG_MMLU_GENERATE);
  int add_bos = kg_eval_add_bos(tok, &spec, llmkick);
  int max_len = spec.max_len > 0 ? spec.max_len : dense->cfg.max_seq_len;
  if ((rc = kg_task_select_docs(d->n_docs, spec.limit, spec.limit_random, spec.seed, &docs, &n)) < 0) goto done;
  seqs = calloc(n ? n : 1, sizeof(*seqs));
  lens = calloc(n ? n : 1, sizeof(*lens));
  if (!seqs || !lens) {
    rc = kg_error(KG_ERR_NOMEM, "JS prompts");
    goto done;
  }
  kg_fewshot_state fs;
  kg_fewshot_init(&fs, spec.fewshot_seed);
  for (size_t i = 0; i < n; i++) {
    kg_task_prompt p;
    if ((rc = kg_task_prompt_build(d, docs[i], k, llmkick ? KG_PROMPT_LLMKICK : KG_PROMPT_HARNESS, &fs, &p)) < 0)
      goto done;
    const char *ctx = p.contexts[0];
    size_t len = kg_py_rstrip_len(ctx, strlen(ctx)), nid = 0;
    rc = kg_tokenizer_encode(tok, ctx, len ? len : strlen(ctx), add_bos, &seqs[i], &nid);
    kg_task_prompt_free(&p);
    if (rc < 0) goto done;
    if (max_len > 0 && nid > (size_t)max_len) { /* keep the end, as the evaluation does */
      memmove(seqs[i], seqs[i] + (nid - (size_t)max_len), (size_t)max_len * sizeof(int32_t));
      nid = (size_t)max_len;
    }
    lens[i] = (int)nid;
  }
  rc = kg_js_divergence_seqs(dense, test, (const int32_t *const *)seqs, lens, n, spec.batch > 0 ? spec.batch : 8, res);
done:
  if (rc < 0) kg_error_context("JS on %s prompts: ", d ? d->info->name : spec.task);
  for (size_t i = 0; seqs && i < n; i++) free(seqs[i]);
  free(seqs);
  free(lens);
  free(docs);
  kg_task_free(owned);
  return rc;
}
