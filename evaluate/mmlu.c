/* MMLU: 5-shot from dev, per-subject accuracy, micro (the harness's group
 * score, weighted by subject size) and macro averages.
 *  loglik:   the harness prompt; the answer is the argmax of the
 *            log-likelihoods of " A", " B", " C", " D".
 *  generate: LLM-KICK's prompt (hendrycks' original, tokenizer BOS, shots
 *            dropped while it exceeds 2048 tokens); one greedy token whose
 *            decoded last character must be the answer letter. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/eval_internal.h"
#include "evaluate/scoring.h"
#include "io/error.h"

#define LLMKICK_MAX_TOKENS 2048

typedef struct subject_reqs {
  int32_t **owned;
  size_t n_owned;
  kg_loglik_request *reqs;
  size_t n_reqs;
} subject_reqs;

static void subject_reqs_free(subject_reqs *s) {
  for (size_t i = 0; i < s->n_owned; i++) free(s->owned[i]);
  free(s->owned);
  free(s->reqs);
  memset(s, 0, sizeof(*s));
}

/* One subject's requests: four per question (loglik) or one (generate). */
static int build_subject(kg_tokenizer *tok, const kg_task_data *d, const size_t *docs, size_t n, int k,
                         const kg_task_spec *spec, int max_tokens, subject_reqs *s) {
  int generate = spec->mmlu_mode == KG_MMLU_GENERATE;
  int add_bos = kg_eval_add_bos(tok, spec, generate);
  size_t per = generate ? 1 : 4;
  int rc = KG_OK;
  s->reqs = calloc(n * per + 1, sizeof(*s->reqs));
  s->owned = calloc(n * 5 + 1, sizeof(*s->owned));
  if (!s->reqs || !s->owned) return kg_error(KG_ERR_NOMEM, "MMLU requests");
  for (size_t i = 0; i < n; i++) {
    kg_task_prompt p;
    if (generate) {
      /* LLM-KICK: while the prompt is over 2048 tokens, one shot fewer */
      int32_t *ids = NULL;
      size_t nid = 0;
      for (int kk = k; kk >= 0; kk--) {
        free(ids);
        ids = NULL;
        if ((rc = kg_task_prompt_build(d, docs[i], kk, KG_PROMPT_LLMKICK, NULL, &p)) < 0) return rc;
        rc = kg_tokenizer_encode(tok, p.contexts[0], strlen(p.contexts[0]), add_bos, &ids, &nid);
        kg_task_prompt_free(&p);
        if (rc < 0) return rc;
        if (nid <= (size_t)max_tokens) break;
      }
      s->owned[s->n_owned++] = ids;
      s->reqs[s->n_reqs++] = (kg_loglik_request){.context = ids, .n_context = (int)nid, .want_next = 1};
      continue;
    }
    if ((rc = kg_task_prompt_build(d, docs[i], k, KG_PROMPT_HARNESS, NULL, &p)) < 0) return rc;
    int32_t *ctx = NULL, *cont[4];
    int nctx = 0, ncont[4];
    rc = kg_eval_encode_choices(tok, p.contexts[0], p.continuations, 4, add_bos, &ctx, &nctx, cont, ncont);
    kg_task_prompt_free(&p);
    if (rc < 0) return rc;
    s->owned[s->n_owned++] = ctx;
    for (int j = 0; j < 4; j++) {
      s->owned[s->n_owned++] = cont[j];
      s->reqs[s->n_reqs++] = (kg_loglik_request){.context = ctx, .n_context = nctx, .continuation = cont[j],
                                                 .n_continuation = ncont[j]};
    }
  }
  return KG_OK;
}

int kg_eval_mmlu(kg_model *m, kg_tokenizer *tok, const kg_task_data *d, const kg_task_spec *spec, int k,
                 kg_task_result *res) {
  int rc = KG_OK, S = d->n_subjects;
  int generate = spec->mmlu_mode == KG_MMLU_GENERATE;
  size_t *all = NULL, *sel = NULL, n_sel = 0;
  double *correct = NULL, *se = NULL, *accs = NULL;
  size_t *sizes = NULL;
  kg_loglik_result *out = NULL;
  subject_reqs sr = {0};
  int max_tokens = LLMKICK_MAX_TOKENS;
  if (m->cfg.max_seq_len > 0 && m->cfg.max_seq_len < max_tokens) max_tokens = m->cfg.max_seq_len;
  if (!(res->subjects = calloc((size_t)S, sizeof(*res->subjects))) || !(all = malloc(d->n_docs * sizeof(*all))) ||
      !(correct = malloc(d->n_docs * sizeof(*correct))) || !(se = calloc((size_t)S, sizeof(*se))) ||
      !(accs = calloc((size_t)S, sizeof(*accs))) || !(sizes = calloc((size_t)S, sizeof(*sizes)))) {
    rc = kg_error(KG_ERR_NOMEM, "MMLU results");
    goto done;
  }
  res->n_subjects = S;
  size_t n_total = 0;
  for (int s = 0; s < S; s++) {
    /* this subject's documents, then the spec's limit within them */
    size_t n_sub = 0;
    for (size_t i = 0; i < d->n_docs; i++)
      if (d->docs[i].subject == s) all[n_sub++] = i;
    free(sel);
    sel = NULL;
    if ((rc = kg_task_select_docs(n_sub, spec->limit, spec->limit_random, spec->seed + (uint64_t)s, &sel, &n_sel)) < 0)
      goto done;
    for (size_t i = 0; i < n_sel; i++) sel[i] = all[sel[i]];
    subject_reqs_free(&sr);
    if ((rc = build_subject(tok, d, sel, n_sel, k, spec, max_tokens, &sr)) < 0) goto done;
    free(out);
    if (!(out = calloc(sr.n_reqs + 1, sizeof(*out)))) {
      rc = kg_error(KG_ERR_NOMEM, "MMLU results");
      goto done;
    }
    kg_loglik_options lo;
    char label[80];
    snprintf(label, sizeof(label), "mmlu %s", d->subjects[s]);
    kg_eval_loglik_options(spec, label, &lo);
    if ((rc = kg_loglik_run(m, sr.reqs, sr.n_reqs, &lo, out)) < 0) goto done;
    double *c = correct + n_total;
    for (size_t i = 0; i < n_sel; i++) {
      int gold = d->docs[sel[i]].gold;
      if (generate) {
        char *text = NULL;
        int32_t t = out[i].next_token;
        if (t >= 0 && (rc = kg_tokenizer_decode(tok, &t, 1, &text)) < 0) goto done;
        c[i] = kg_llmkick_letter_match(text, (char)('A' + gold)) ? 1.0 : 0.0;
        free(text);
      } else {
        double lls[4] = {out[4 * i].logprob, out[4 * i + 1].logprob, out[4 * i + 2].logprob, out[4 * i + 3].logprob};
        c[i] = kg_argmax_first(lls, 4) == gold ? 1.0 : 0.0;
      }
    }
    kg_subject_result *sub = &res->subjects[s];
    snprintf(sub->name, sizeof(sub->name), "%s", d->subjects[s]);
    sub->n = (int64_t)n_sel;
    sub->acc = accs[s] = kg_mean(c, n_sel);
    sub->stderr = se[s] = kg_mean_stderr(c, n_sel);
    sizes[s] = n_sel;
    n_total += n_sel;
  }
  res->n = (int64_t)n_total;
  kg_eval_add_metric(res, "acc", kg_mean(correct, n_total), kg_pooled_stderr(se, sizes, (size_t)S));
  double var = 0.0;
  for (int s = 0; s < S; s++) var += se[s] * se[s];
  kg_eval_add_metric(res, "acc_macro", kg_mean(accs, (size_t)S), sqrt(var) / S);
done:
  subject_reqs_free(&sr);
  free(out);
  free(all);
  free(sel);
  free(correct);
  free(se);
  free(accs);
  free(sizes);
  return rc;
}
