/* Knowledge-intensive QA with LLM-KICK's generation settings: greedy
 * decoding with the tokenizer's own BOS, stopping at EOS.
 *  FreebaseQA: "Please give answer to this question: {q}\nThe answer is ",
 *    up to 3x the prompt's token count in total (HF max_length), scored by
 *    normalized answer containment (acc: in the generated text; acc_llmkick:
 *    in prompt + generated text, which is what LLM-KICK's decode checks).
 *  TriviaQA closed-book: the file's "Question: ...\nAnswer:", 32 new tokens,
 *    the prediction is the first line of the stripped generation, scored by
 *    SQuAD exact match and F1 (max over answer and aliases).
 * Generation stops early once the outcome can no longer change (a FreebaseQA
 * answer found, a TriviaQA line complete); that never changes a score. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/eval_internal.h"
#include "evaluate/scoring.h"
#include "io/error.h"
#include "io/log.h"
#include "model/sampling.h"

#define TRIVIAQA_MAX_NEW 32

typedef struct gen_seq {
  int32_t *prompt;
  int len;
  int max_new;
  int32_t *gen;
  int n_gen;
  int done;
  size_t doc; /* position in the selection */
} gen_seq;

typedef struct gen_batch {
  gen_seq **seq;
  int nb;
  int pos0; /* position of the first token fed this step */
  int T;
  int eos;
  int freebase;
  const kg_task_data *d;
  const size_t *docs;
  const kg_tokenizer *tok;
} gen_batch;

/* Decoded generated text (special tokens dropped); malloc'd. */
static char *gen_text(const kg_tokenizer *tok, const gen_seq *s) {
  char *text = NULL;
  if (kg_tokenizer_decode(tok, s->gen, (size_t)s->n_gen, &text) < 0) return NULL;
  return text;
}

/* Whether more tokens can still change this sequence's score. */
static int outcome_settled(const gen_batch *b, const gen_seq *s) {
  char *text = gen_text(b->tok, s);
  if (!text) return 0;
  int settled = 0;
  if (b->freebase) {
    const kg_task_doc *doc = &b->d->docs[b->docs[s->doc]];
    settled = kg_llmkick_answer_match(text, doc->answers, doc->n_answers);
  } else {
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v') p++;
    settled = strchr(p, '\n') != NULL;
  }
  free(text);
  return settled;
}

static int on_gen_logits(void *ctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  gen_batch *b = ctx;
  for (int64_t i = 0; i < n_rows; i++) {
    int s = (int)(rows[i] / b->T), pos = b->pos0 + (int)(rows[i] % b->T);
    if (s < 0 || s >= b->nb) continue;
    gen_seq *q = b->seq[s];
    if (q->done || pos != q->len - 1 + q->n_gen) continue;
    int32_t next = kg_argmax(logits + (size_t)i * (size_t)vocab, vocab);
    q->gen[q->n_gen++] = next;
    if ((b->eos >= 0 && next == b->eos) || q->n_gen >= q->max_new || outcome_settled(b, q)) q->done = 1;
  }
  return KG_OK;
}

static int cmp_len(const void *a, const void *b) {
  const gen_seq *x = *(gen_seq *const *)a, *y = *(gen_seq *const *)b;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* Greedy generation for every sequence, batches of similar prompt length:
 * the common prompt length is prefilled at once, then one position per step
 * (prompt tokens first, generated ones after), as kg_generate_batch does. */
static int generate_all(kg_model *m, gen_seq *seqs, size_t n, int batch, gen_batch *proto, int progress) {
  int rc = KG_OK;
  gen_seq **order = malloc((n ? n : 1) * sizeof(*order));
  int32_t *tokens = NULL;
  uint8_t *want = NULL;
  kg_kv_cache *cache = NULL;
  if (!order) return kg_error(KG_ERR_NOMEM, "generation order");
  int Lmax = 1;
  for (size_t i = 0; i < n; i++) {
    order[i] = &seqs[i];
    if (seqs[i].len + seqs[i].max_new > Lmax) Lmax = seqs[i].len + seqs[i].max_new;
  }
  qsort(order, n, sizeof(*order), cmp_len);
  if ((rc = kg_kv_cache_create(m, batch, Lmax, &cache)) < 0) goto done;
  if (!(tokens = malloc((size_t)batch * (size_t)Lmax * sizeof(*tokens))) ||
      !(want = malloc((size_t)batch * (size_t)Lmax))) {
    rc = kg_error(KG_ERR_NOMEM, "generation batch");
    goto done;
  }
  kg_progress prog;
  if (progress) kg_progress_begin(&prog, "generate", (int64_t)n);
  for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
    int nb = (int)(n - i0 < (size_t)batch ? n - i0 : (size_t)batch);
    gen_batch b = *proto;
    b.seq = order + i0;
    b.nb = nb;
    int Lmin = b.seq[0]->len;
    for (int s = 0; s < nb; s++)
      if (b.seq[s]->len < Lmin) Lmin = b.seq[s]->len;
    kg_kv_cache view = *cache; /* the first nb slots, same per-slot layout */
    view.n_seq = nb;
    view.len = 0;
    int pos = 0;
    for (int step = 0;; step++) {
      int T = step == 0 ? Lmin : 1, active = 0;
      for (int s = 0; s < nb; s++) {
        gen_seq *q = b.seq[s];
        active |= !q->done;
        for (int t = 0; t < T; t++) {
          int p = pos + t;
          int32_t tk = p < q->len ? q->prompt[p] : q->n_gen > p - q->len ? q->gen[p - q->len] : q->prompt[q->len - 1];
          tokens[(size_t)s * (size_t)T + (size_t)t] = tk;
          want[(size_t)s * (size_t)T + (size_t)t] = !q->done && p == q->len - 1 + q->n_gen;
        }
      }
      if (!active || pos + T > Lmax) break;
      b.pos0 = pos;
      b.T = T;
      kg_forward_request fr = {.tokens = tokens, .n_seq = nb, .T = T, .cache = &view, .want_logits = want,
                               .on_logits = on_gen_logits, .ctx = &b};
      if ((rc = kg_model_forward(m, &fr)) < 0) goto done;
      pos += T;
    }
    if (progress) kg_progress_update(&prog, (int64_t)(i0 + (size_t)nb));
  }
  if (progress) kg_progress_end(&prog);
done:
  free(order);
  free(tokens);
  free(want);
  kg_kv_cache_free(cache);
  return rc;
}

int kg_eval_qa(kg_model *m, kg_tokenizer *tok, const kg_task_data *d, const size_t *docs, size_t n,
               const kg_task_spec *spec, int k, kg_task_result *res) {
  int rc = KG_OK;
  int freebase = !strcmp(d->info->name, "freebaseqa");
  int add_bos = kg_eval_add_bos(tok, spec, 1);
  gen_seq *seqs = calloc(n ? n : 1, sizeof(*seqs));
  char **prompts = calloc(n ? n : 1, sizeof(*prompts));
  double *m1 = calloc(n ? n : 1, sizeof(*m1)), *m2 = calloc(n ? n : 1, sizeof(*m2));
  if (!seqs || !prompts || !m1 || !m2) {
    rc = kg_error(KG_ERR_NOMEM, "%s: sequences", d->info->name);
    goto done;
  }
  kg_fewshot_state fs;
  kg_fewshot_init(&fs, spec->fewshot_seed);
  int max_len = spec->max_len > 0 ? spec->max_len : m->cfg.max_seq_len;
  for (size_t i = 0; i < n; i++) {
    kg_task_prompt p;
    if ((rc = kg_task_prompt_build(d, docs[i], k, KG_PROMPT_LLMKICK, &fs, &p)) < 0) goto done;
    prompts[i] = p.contexts[0];
    p.contexts[0] = NULL;
    kg_task_prompt_free(&p);
    /* LLM-KICK tokenizes prompt.strip() for TriviaQA, the raw prompt for FreebaseQA */
    size_t plen = strlen(prompts[i]);
    if (!freebase) plen = kg_py_rstrip_len(prompts[i], plen);
    size_t nid = 0;
    if ((rc = kg_tokenizer_encode(tok, prompts[i], plen, add_bos, &seqs[i].prompt, &nid)) < 0) goto done;
    if (nid == 0) {
      rc = kg_error(KG_ERR_ARG, "%s document %zu: empty prompt", d->info->name, docs[i]);
      goto done;
    }
    seqs[i].len = (int)nid;
    seqs[i].max_new = freebase ? 2 * (int)nid : TRIVIAQA_MAX_NEW;
    if (max_len > 0 && seqs[i].len + seqs[i].max_new > max_len) {
      if (seqs[i].len >= max_len) {
        rc = kg_error(KG_ERR_ARG, "%s document %zu: prompt of %d tokens does not fit the context of %d",
                      d->info->name, docs[i], seqs[i].len, max_len);
        goto done;
      }
      seqs[i].max_new = max_len - seqs[i].len;
    }
    seqs[i].doc = i;
    if (!(seqs[i].gen = malloc((size_t)seqs[i].max_new * sizeof(int32_t)))) {
      rc = kg_error(KG_ERR_NOMEM, "%s: generated tokens", d->info->name);
      goto done;
    }
  }
  gen_batch proto = {.eos = kg_tokenizer_eos_id(tok), .freebase = freebase, .d = d, .docs = docs, .tok = tok};
  if ((rc = generate_all(m, seqs, n, spec->batch > 0 ? spec->batch : 8, &proto, spec->progress)) < 0) goto done;

  for (size_t i = 0; i < n; i++) {
    const kg_task_doc *doc = &d->docs[docs[i]];
    char *text = gen_text(tok, &seqs[i]);
    if (!text) {
      rc = kg_error_context("%s document %zu: ", d->info->name, docs[i]);
      goto done;
    }
    kg_debug("%s %zu: %s -> \"%s\" (answer \"%s\")", d->info->name, docs[i], doc->raw, text, doc->answers[0]);
    if (freebase) {
      m1[i] = kg_llmkick_answer_match(text, doc->answers, doc->n_answers);
      size_t lp = strlen(prompts[i]), lt = strlen(text);
      char *both = malloc(lp + lt + 1);
      if (both) {
        memcpy(both, prompts[i], lp);
        memcpy(both + lp, text, lt + 1);
        m2[i] = kg_llmkick_answer_match(both, doc->answers, doc->n_answers);
      }
      free(both);
      if (!both) {
        free(text);
        rc = kg_error(KG_ERR_NOMEM, "FreebaseQA output");
        goto done;
      }
    } else {
      /* output.split(prompt)[1].strip().split("\n")[0] */
      size_t L = strlen(text), off = kg_py_lstrip_off(text, L), end = kg_py_rstrip_len(text, L);
      if (end < off) end = off;
      text[end] = '\0';
      char *line = text + off, *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      kg_squad_max_over(line, doc->answers, doc->n_answers, &m1[i], &m2[i]);
    }
    free(text);
  }
  if (freebase) {
    kg_eval_add_metric(res, "acc", kg_mean(m1, n), kg_mean_stderr(m1, n));
    kg_eval_add_metric(res, "acc_llmkick", kg_mean(m2, n), kg_mean_stderr(m2, n));
  } else {
    kg_eval_add_metric(res, "em", kg_mean(m1, n), kg_mean_stderr(m1, n));
    kg_eval_add_metric(res, "f1", kg_mean(m2, n), kg_mean_stderr(m2, n));
  }
done:
  for (size_t i = 0; seqs && i < n; i++) {
    free(seqs[i].prompt);
    free(seqs[i].gen);
  }
  for (size_t i = 0; prompts && i < n; i++) free(prompts[i]);
  free(seqs);
  free(prompts);
  free(m1);
  free(m2);
  return rc;
}
