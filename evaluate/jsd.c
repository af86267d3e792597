#include "evaluate/jsd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/eval_internal.h"
#include "evaluate/ppl.h"
#include "io/error.h"
#include "io/log.h"
#include "model/sampling.h"

#define LN2 0.69314718055994530942

double kg_js_logits_lse(const float *a, double lse_a, const float *b, double lse_b, int vocab) {
  double js = 0.0;
  for (int i = 0; i < vocab; i++) {
    double lp = (double)a[i] - lse_a, lq = (double)b[i] - lse_b;
    if (lp == lq) continue; /* equal probabilities contribute exactly 0 */
    double hi = lp > lq ? lp : lq, lo = lp > lq ? lq : lp;
    if (hi == -INFINITY || isnan(hi)) continue; /* p = q = 0 */
    /* with t = exp(lo - hi) and L = log1p(t): log M = hi + L - ln2, and the
     * larger term contributes e^hi (ln2 - L), the smaller e^hi t (lo - hi + ln2 - L) */
    double d = lo - hi, t = exp(d), L = log1p(t), e = exp(hi);
    double term = LN2 - L;
    if (t > 0.0) term += t * (d + LN2 - L);
    js += e * term;
  }
  js *= 0.5;
  if (js < 0.0) js = 0.0;
  if (js > LN2) js = LN2;
  return js;
}

double kg_js_logits(const float *p, const float *q, int vocab) {
  return kg_js_logits_lse(p, kg_logsumexp(p, vocab), q, kg_logsumexp(q, vocab), vocab);
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

/* ---- one batch: dense rows kept, test rows compared as they arrive ---- */

typedef struct js_batch {
  int vocab;
  int64_t n_rows;      /* rows of the forward (n_seq * T) */
  int64_t *slot;       /* row -> compact index of a compared row, or -1 */
  float *dense;        /* [compared rows, vocab] */
  double *dense_lse;
  int32_t *dense_top;
  js_acc *acc;
  int64_t base;        /* acc index of compact row 0 */
} js_batch;

static int keep_dense(void *ctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  js_batch *b = ctx;
  if (vocab != b->vocab) return kg_error(KG_ERR_ARG, "dense model has %d logits per row, expected %d", vocab, b->vocab);
  for (int64_t i = 0; i < n_rows; i++) {
    if (rows[i] < 0 || rows[i] >= b->n_rows || b->slot[rows[i]] < 0) continue;
    int64_t k = b->slot[rows[i]];
    const float *row = logits + (size_t)i * (size_t)vocab;
    memcpy(b->dense + (size_t)k * (size_t)vocab, row, (size_t)vocab * sizeof(float));
    b->dense_lse[k] = kg_logsumexp(row, vocab);
    b->dense_top[k] = kg_argmax(row, vocab);
  }
  return KG_OK;
}

static int compare_test(void *ctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  js_batch *b = ctx;
  if (vocab != b->vocab)
    return kg_error(KG_ERR_ARG, "test model has %d logits per row, the dense model %d", vocab, b->vocab);
  int64_t agree = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : agree)
  for (int64_t i = 0; i < n_rows; i++) {
    if (rows[i] < 0 || rows[i] >= b->n_rows || b->slot[rows[i]] < 0) continue;
    int64_t k = b->slot[rows[i]];
    const float *row = logits + (size_t)i * (size_t)vocab;
    double lse = kg_logsumexp(row, vocab);
    b->acc->v[b->base + k] = kg_js_logits_lse(b->dense + (size_t)k * (size_t)vocab, b->dense_lse[k], row, lse, vocab);
    agree += kg_argmax(row, vocab) == b->dense_top[k];
  }
  b->acc->agree += agree;
  return KG_OK;
}

/* Runs both models over tokens [n_seq, T]; compares rows with want != 0
 * (all when want is NULL). */
static int js_run_batch(kg_model *dense, kg_model *test, const int32_t *tokens, int n_seq, int T, const uint8_t *want,
                        js_acc *acc) {
  int rc = KG_OK;
  int vocab = dense->cfg.vocab_size;
  if (test->cfg.vocab_size != vocab)
    return kg_error(KG_ERR_ARG, "JS divergence needs one vocabulary: dense %d, test %d", vocab, test->cfg.vocab_size);
  int64_t n_rows = (int64_t)n_seq * T, n_cmp = 0;
  js_batch b = {.vocab = vocab, .n_rows = n_rows, .acc = acc};
  if (!(b.slot = malloc((size_t)n_rows * sizeof(*b.slot)))) return kg_error(KG_ERR_NOMEM, "JS rows");
  for (int64_t r = 0; r < n_rows; r++) b.slot[r] = !want || want[r] ? n_cmp++ : -1;
  b.dense = malloc((size_t)n_cmp * (size_t)vocab * sizeof(float));
  b.dense_lse = malloc((size_t)n_cmp * sizeof(double));
  b.dense_top = malloc((size_t)n_cmp * sizeof(int32_t));
  if (!b.dense || !b.dense_lse || !b.dense_top) {
    rc = kg_error(KG_ERR_NOMEM, "dense logits of %lld rows x %d", (long long)n_cmp, vocab);
    goto done;
  }
  if ((rc = acc_reserve(acc, (size_t)n_cmp)) < 0) goto done;
  b.base = (int64_t)acc->n;
  for (int64_t k = 0; k < n_cmp; k++) acc->v[acc->n + (size_t)k] = NAN;
  kg_forward_request fr = {.tokens = tokens, .n_seq = n_seq, .T = T, .want_logits = want, .on_logits = keep_dense,
                           .ctx = &b};
  if ((rc = kg_model_forward(dense, &fr)) < 0) goto done;
  fr.on_logits = compare_test;
  if ((rc = kg_model_forward(test, &fr)) < 0) goto done;
  for (int64_t k = 0; k < n_cmp; k++)
    if (isnan(acc->v[acc->n + (size_t)k])) {
      rc = kg_error(KG_ERR_NUMERIC, "JS divergence: a compared row got no logits (or NaN logits)");
      goto done;
    }
  acc->n += (size_t)n_cmp;
done:
  free(b.slot);
  free(b.dense);
  free(b.dense_lse);
  free(b.dense_top);
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
