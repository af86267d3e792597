#include "evaluate/tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/eval_internal.h"
#include "evaluate/scoring.h"
#include "io/error.h"
#include "io/log.h"

void kg_task_spec_default(kg_task_spec *s) {
  memset(s, 0, sizeof(*s));
  s->num_fewshot = -1;
  s->fewshot_seed = 1234;
  s->batch = 8;
  s->add_bos = -1;
  s->bootstrap_iters = 100000;
}

void kg_task_result_free(kg_task_result *r) {
  if (!r) return;
  free(r->subjects);
  r->subjects = NULL;
  r->n_subjects = 0;
}

const kg_metric *kg_task_result_metric(const kg_task_result *r, const char *name) {
  for (int i = 0; i < r->n_metrics; i++)
    if (!strcmp(r->metrics[i].name, name)) return &r->metrics[i];
  return NULL;
}

void kg_eval_add_metric(kg_task_result *r, const char *name, double value, double stderr) {
  if (r->n_metrics >= KG_MAX_METRICS) return;
  kg_metric *mt = &r->metrics[r->n_metrics++];
  snprintf(mt->name, sizeof(mt->name), "%s", name);
  mt->value = value;
  mt->stderr = stderr;
}

int kg_eval_add_bos(const kg_tokenizer *tok, const kg_task_spec *spec, int llmkick) {
  if (spec->add_bos >= 0) return spec->add_bos != 0;
  return llmkick ? kg_tokenizer_adds_bos(tok) : 0;
}

void kg_eval_loglik_options(const kg_task_spec *spec, const char *label, kg_loglik_options *o) {
  kg_loglik_options_default(o);
  if (spec->batch > 0) o->batch = spec->batch;
  if (spec->max_len > 0) o->max_len = spec->max_len;
  if (spec->cache_bytes > 0) o->cache_bytes = spec->cache_bytes;
  o->progress = spec->progress;
  o->label = label;
  o->reuse_prefix = !spec->no_prefix_reuse;
}

int kg_task_select_docs(size_t n, int64_t limit, int limit_random, uint64_t seed, size_t **idx, size_t *n_idx) {
  size_t k = limit > 0 && (uint64_t)limit < n ? (size_t)limit : n;
  size_t *v = malloc((k ? k : 1) * sizeof(*v));
  if (!v) return kg_error(KG_ERR_NOMEM, "document selection (%zu)", k);
  if (limit_random && k < n) {
    kg_pyrand r;
    kg_pyrand_seed(&r, seed);
    if (kg_pyrand_sample(&r, n, k, v) < 0) {
      free(v);
      return kg_error_context("document selection: ");
    }
    /* ascending, so few-shot draws happen in document order */
    for (size_t i = 1; i < k; i++)
      for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
        size_t t = v[j];
        v[j] = v[j - 1];
        v[j - 1] = t;
      }
  } else {
    for (size_t i = 0; i < k; i++) v[i] = i;
  }
  *idx = v;
  *n_idx = k;
  return KG_OK;
}

int kg_eval_encode_choices(const kg_tokenizer *tok, const char *context, char *const *conts, int n, int add_bos,
                           int32_t **ctx, int *n_ctx, int32_t **cont_ids, int *n_cont) {
  int rc = KG_OK;
  *ctx = NULL;
  for (int i = 0; i < n; i++) cont_ids[i] = NULL;
  size_t clen = strlen(context), keep = kg_py_rstrip_len(context, clen);
  if (keep == 0) { /* the empty-context rule applies per continuation */
    for (int i = 0; i < n && rc == KG_OK; i++) {
      int32_t *c = NULL;
      int nc = 0;
      rc = kg_loglik_encode_pair(tok, context, conts[i], add_bos, &c, &nc, &cont_ids[i], &n_cont[i]);
      if (i == 0) {
        *ctx = c;
        *n_ctx = nc;
      } else {
        free(c);
      }
    }
    goto done;
  }
  size_t nc = 0;
  if ((rc = kg_tokenizer_encode(tok, context, keep, add_bos, ctx, &nc)) < 0) goto done;
  if (nc == 0) {
    rc = kg_error(KG_ERR_ARG, "context \"%.40s\" encodes to no tokens", context);
    goto done;
  }
  *n_ctx = (int)nc;
  for (int i = 0; i < n; i++) {
    size_t tl = strlen(conts[i]), nw = 0;
    char *joined = malloc(clen + tl + 1);
    int32_t *whole = NULL;
    if (!joined) {
      rc = kg_error(KG_ERR_NOMEM, "continuation text");
      goto done;
    }
    memcpy(joined, context, clen);
    memcpy(joined + clen, conts[i], tl + 1);
    rc = kg_tokenizer_encode(tok, joined, clen + tl, add_bos, &whole, &nw);
    free(joined);
    if (rc < 0) goto done;
    size_t rest = nw > nc ? nw - nc : 0;
    cont_ids[i] = malloc((rest ? rest : 1) * sizeof(int32_t));
    if (!cont_ids[i]) {
      free(whole);
      rc = kg_error(KG_ERR_NOMEM, "continuation tokens");
      goto done;
    }
    if (rest) memcpy(cont_ids[i], whole + nc, rest * sizeof(int32_t));
    n_cont[i] = (int)rest;
    free(whole);
  }
done:
  if (rc < 0) {
    free(*ctx);
    *ctx = NULL;
    for (int i = 0; i < n; i++) {
      free(cont_ids[i]);
      cont_ids[i] = NULL;
    }
  }
  return rc;
}

/* ---- zero-shot multiple choice, WinoGrande, LAMBADA ---- */

typedef struct doc_reqs {
  size_t first; /* index of its first request */
  int count;
} doc_reqs;

static int eval_loglik_task(kg_model *m, kg_tokenizer *tok, const kg_task_data *d, const size_t *docs, size_t n,
                            const kg_task_spec *spec, int k, kg_task_result *res) {
  int rc = KG_OK;
  kg_task_kind kind = d->info->kind;
  int add_bos = kg_eval_add_bos(tok, spec, 0);
  size_t cap = 0, n_req = 0;
  kg_loglik_request *reqs = NULL;
  kg_loglik_result *out = NULL;
  int32_t **owned = NULL; /* token arrays to free */
  size_t n_owned = 0;
  doc_reqs *dr = calloc(n ? n : 1, sizeof(*dr));
  double *acc = calloc(n ? n : 1, sizeof(*acc)), *accn = calloc(n ? n : 1, sizeof(*accn));
  double *ll = calloc(n ? n : 1, sizeof(*ll));
  if (!dr || !acc || !accn || !ll) {
    rc = kg_error(KG_ERR_NOMEM, "%s: per-document scores", d->info->name);
    goto done;
  }
  kg_fewshot_state fs;
  kg_fewshot_init(&fs, spec->fewshot_seed);
  for (size_t i = 0; i < n; i++) {
    kg_task_prompt p;
    if ((rc = kg_task_prompt_build(d, docs[i], k, KG_PROMPT_HARNESS, &fs, &p)) < 0) goto done;
    int nr = kind == KG_TASK_MULTIPLE_INPUT ? p.n_contexts : p.n_continuations;
    if (n_req + (size_t)nr > cap) {
      size_t ncap = cap ? cap * 2 : 1024;
      while (ncap < n_req + (size_t)nr) ncap *= 2;
      kg_loglik_request *g = realloc(reqs, ncap * sizeof(*g));
      int32_t **go = g ? realloc(owned, ncap * 2 * sizeof(*go)) : NULL;
      if (g) reqs = g;
      if (!g || !go) {
        kg_task_prompt_free(&p);
        rc = kg_error(KG_ERR_NOMEM, "%s: requests", d->info->name);
        goto done;
      }
      owned = go;
      cap = ncap;
    }
    dr[i].first = n_req;
    dr[i].count = nr;
    int32_t *cids[64];
    int ncs[64];
    if (nr > 64) {
      kg_task_prompt_free(&p);
      rc = kg_error(KG_ERR_ARG, "%s: document %zu has %d choices", d->info->name, docs[i], nr);
      goto done;
    }
    if (kind == KG_TASK_MULTIPLE_INPUT) {
      for (int j = 0; j < nr && rc == KG_OK; j++) {
        int32_t *c = NULL, *t = NULL;
        int nc = 0, nt = 0;
        rc = kg_loglik_encode_pair(tok, p.contexts[j], p.continuations[0], add_bos, &c, &nc, &t, &nt);
        if (rc == KG_OK) {
          owned[n_owned++] = c;
          owned[n_owned++] = t;
          reqs[n_req++] = (kg_loglik_request){.context = c, .n_context = nc, .continuation = t, .n_continuation = nt};
        }
      }
    } else {
      int32_t *c = NULL;
      int nc = 0;
      rc = kg_eval_encode_choices(tok, p.contexts[0], p.continuations, nr, add_bos, &c, &nc, cids, ncs);
      if (rc == KG_OK) {
        owned[n_owned++] = c;
        for (int j = 0; j < nr; j++) {
          owned[n_owned++] = cids[j];
          reqs[n_req++] =
              (kg_loglik_request){.context = c, .n_context = nc, .continuation = cids[j], .n_continuation = ncs[j]};
        }
      }
    }
    kg_task_prompt_free(&p);
    if (rc < 0) {
      kg_error_context("%s document %zu: ", d->info->name, docs[i]);
      goto done;
    }
  }
  if (!(out = calloc(n_req ? n_req : 1, sizeof(*out)))) {
    rc = kg_error(KG_ERR_NOMEM, "%s: results", d->info->name);
    goto done;
  }
  kg_loglik_options lo;
  kg_eval_loglik_options(spec, d->info->name, &lo);
  if ((rc = kg_loglik_run(m, reqs, n_req, &lo, out)) < 0) goto done;

  for (size_t i = 0; i < n; i++) {
    const kg_task_doc *doc = &d->docs[docs[i]];
    const kg_loglik_result *o = out + dr[i].first;
    if (kind == KG_TASK_LOGLIKELIHOOD) {
      acc[i] = o[0].is_greedy ? 1.0 : 0.0;
      ll[i] = o[0].logprob;
      continue;
    }
    double lls[64];
    size_t chars[64];
    for (int j = 0; j < dr[i].count; j++) {
      lls[j] = o[j].logprob;
      chars[j] = kg_utf8_length(doc->choices[j]);
    }
    kg_score_multiple_choice(lls, chars, dr[i].count, doc->gold, &acc[i], &accn[i]);
  }
  kg_eval_add_metric(res, "acc", kg_mean(acc, n), kg_mean_stderr(acc, n));
  if (kind == KG_TASK_MULTIPLE_CHOICE && d->info->has_acc_norm)
    kg_eval_add_metric(res, "acc_norm", kg_mean(accn, n), kg_mean_stderr(accn, n));
  if (kind == KG_TASK_LOGLIKELIHOOD)
    kg_eval_add_metric(res, "perplexity", kg_perplexity_of_loglik(ll, n),
                       spec->bootstrap_iters > 0 ? kg_bootstrap_stderr_perplexity(ll, n, spec->bootstrap_iters) : NAN);
done:
  for (size_t i = 0; i < n_owned; i++) free(owned[i]);
  free(owned);
  free(reqs);
  free(out);
  free(dr);
  free(acc);
  free(accn);
  free(ll);
  return rc;
}

int kg_eval_task(kg_model *m, kg_tokenizer *tok, const kg_task_spec *spec_in, kg_task_result *res) {
  kg_task_spec spec;
  if (spec_in) spec = *spec_in;
  else kg_task_spec_default(&spec);
  memset(res, 0, sizeof(*res));
  if (!spec.task && !spec.data) return kg_error(KG_ERR_ARG, "no task named");
  int rc = KG_OK;
  kg_task_data *owned = NULL;
  const kg_task_data *d = spec.data;
  size_t *docs = NULL, n = 0;
  double t0 = kg_now();
  if (!d) {
    if ((rc = kg_task_load(spec.task, &owned)) < 0) return rc;
    d = owned;
  } else if (spec.task && kg_task_find(spec.task) != d->info) {
    return kg_error(KG_ERR_ARG, "task %s given data of task %s", spec.task, d->info->name);
  }
  int k = spec.num_fewshot >= 0 ? spec.num_fewshot : d->info->default_fewshot;
  snprintf(res->task, sizeof(res->task), "%s", d->info->name);
  res->num_fewshot = k;
  if (d->n_subjects > 0) {
    rc = kg_eval_mmlu(m, tok, d, &spec, k, res);
  } else {
    if ((rc = kg_task_select_docs(d->n_docs, spec.limit, spec.limit_random, spec.seed, &docs, &n)) < 0) goto done;
    res->n = (int64_t)n;
    if (d->info->kind == KG_TASK_GENERATE) rc = kg_eval_qa(m, tok, d, docs, n, &spec, k, res);
    else rc = eval_loglik_task(m, tok, d, docs, n, &spec, k, res);
  }
done:
  if (rc < 0) {
    kg_error_context("task %s: ", d ? d->info->name : spec.task);
    kg_task_result_free(res);
  }
  res->seconds = kg_now() - t0;
  free(docs);
  kg_task_free(owned);
  return rc;
}
