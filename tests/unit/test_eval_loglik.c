/* The log-likelihood engine on stories260K with real task prompts: every
 * batching/caching configuration (batch 1 without the KV cache, batch 8
 * without, batch 8 with prefix reuse, batch 3 under a tiny cache budget,
 * shuffled order) must give the same summed log-probabilities (max abs diff
 * < 1e-4), greedy flags and next tokens, and all must match a direct
 * computation from kg_model_logits over each full input. Also checks the
 * harness's _encode_pair split and left truncation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate/loglik.h"
#include "evaluate/ppl.h"
#include "io/error.h"
#include "io/tasks.h"
#include "kgtest.h"

#define MAXREQ 512

typedef struct reqset {
  kg_loglik_request r[MAXREQ];
  int32_t *owned[2 * MAXREQ];
  int n, n_owned;
} reqset;

static void add_pair(reqset *s, kg_tokenizer *tok, const char *ctx, const char *cont) {
  int32_t *c = NULL, *t = NULL;
  int nc = 0, nt = 0;
  CHECK_OK(kg_loglik_encode_pair(tok, ctx, cont, 0, &c, &nc, &t, &nt));
  if (!c || s->n >= MAXREQ) return;
  s->owned[s->n_owned++] = c;
  s->owned[s->n_owned++] = t;
  s->r[s->n++] = (kg_loglik_request){.context = c, .n_context = nc, .continuation = t, .n_continuation = nt};
}

static void add_task(reqset *s, kg_tokenizer *tok, const char *task, size_t n_docs, int k) {
  kg_task_data *d = NULL;
  CHECK_OK(kg_task_load(task, &d));
  if (!d) return;
  kg_fewshot_state fs;
  kg_fewshot_init(&fs, 1234);
  for (size_t i = 0; i < n_docs && i < d->n_docs; i++) {
    kg_task_prompt p;
    CHECK_OK(kg_task_prompt_build(d, i, k, KG_PROMPT_HARNESS, &fs, &p));
    for (int c = 0; c < p.n_contexts; c++)
      for (int j = 0; j < p.n_continuations; j++) add_pair(s, tok, p.contexts[c], p.continuations[j]);
    kg_task_prompt_free(&p);
  }
  kg_task_free(d);
}

/* Reference: logits of the whole (truncated) input at once. */
static void reference(kg_model *m, const kg_loglik_request *q, int max_len, kg_loglik_result *out) {
  int L = q->n_context + q->n_continuation, V = m->cfg.vocab_size;
  int32_t *full = malloc((size_t)L * sizeof(*full));
  memcpy(full, q->context, (size_t)q->n_context * sizeof(*full));
  if (q->n_continuation) memcpy(full + q->n_context, q->continuation, (size_t)q->n_continuation * sizeof(*full));
  int off, len, first;
  if (q->want_next) {
    off = L > max_len ? L - max_len : 0;
    len = L - off;
    first = len - 1;
  } else {
    off = L - 1 > max_len ? L - 1 - max_len : 0;
    len = L - 1 - off;
    first = len - q->n_continuation;
  }
  float *lg = malloc((size_t)len * (size_t)V * sizeof(*lg));
  CHECK_OK(kg_model_logits(m, full + off, len, lg));
  out->logprob = 0.0;
  out->is_greedy = 1;
  out->next_token = -1;
  for (int p = first; p < len; p++) {
    const float *row = lg + (size_t)p * (size_t)V;
    int best = 0;
    for (int v = 1; v < V; v++)
      if (row[v] > row[best]) best = v;
    if (q->want_next) {
      out->next_token = best;
      continue;
    }
    int32_t t = full[off + p + 1];
    out->logprob += (double)row[t] - kg_logsumexp(row, V);
    if (best != t) out->is_greedy = 0;
  }
  free(lg);
  free(full);
}

/* CPU: float tolerance; other backends (KG_TEST_BACKEND=cuda) compute in
 * 16-bit with shape-dependent kernels, so batching moves scores more. */
static double tolerance = 1e-4;
static int exact_flags = 1;

static double compare(const kg_loglik_result *a, const kg_loglik_result *b, int n, const char *what) {
  double worst = 0.0;
  int flags = 0;
  for (int i = 0; i < n; i++) {
    double d = fabs(a[i].logprob - b[i].logprob);
    if (d > worst) worst = d;
    flags += a[i].is_greedy != b[i].is_greedy || a[i].next_token != b[i].next_token;
  }
  fprintf(stderr, "%-28s max |dlogprob| %.3g over %d requests, %d flag mismatches\n", what, worst, n, flags);
  CHECK_MSG(worst < tolerance, "%s: max abs diff %.3g", what, worst);
  if (exact_flags) CHECK_MSG(flags == 0, "%s: %d greedy/next-token mismatches", what, flags);
  return worst;
}

static void test_encode_pair(kg_tokenizer *tok) {
  int32_t *c = NULL, *t = NULL, *whole = NULL;
  int nc = 0, nt = 0;
  size_t nw = 0;
  /* the context's trailing space moves to the continuation */
  CHECK_OK(kg_loglik_encode_pair(tok, "Once upon a time ", "there was", 0, &c, &nc, &t, &nt));
  CHECK_OK(kg_tokenizer_encode(tok, "Once upon a time there was", 26, 0, &whole, &nw));
  CHECK((size_t)(nc + nt) == nw && !memcmp(whole, c, (size_t)nc * 4) && !memcmp(whole + nc, t, (size_t)nt * 4));
  int32_t *c2 = NULL;
  size_t nc2 = 0;
  CHECK_OK(kg_tokenizer_encode(tok, "Once upon a time", 16, 0, &c2, &nc2));
  CHECK((size_t)nc == nc2 && !memcmp(c, c2, nc2 * 4));
  free(c);
  free(t);
  free(whole);
  free(c2);
  /* add_bos puts BOS in front of the context only */
  CHECK_OK(kg_loglik_encode_pair(tok, "The cat", " sat", 1, &c, &nc, &t, &nt));
  CHECK(nc >= 2 && c[0] == kg_tokenizer_bos_id(tok) && nt >= 1 && t[0] != kg_tokenizer_bos_id(tok));
  free(c);
  free(t);
  /* an empty context is the prefix token (BOS here) */
  CHECK_OK(kg_loglik_encode_pair(tok, "", "The cat", 0, &c, &nc, &t, &nt));
  CHECK(nc == 1 && c[0] == kg_tokenizer_bos_id(tok) && nt >= 1);
  free(c);
  free(t);
}

int main(void) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/models/stories260K/stories260K.bin", kgtest_data_dir());
  kg_backend *be = NULL;
  kg_model *m = NULL;
  kg_tokenizer *tok = NULL;
  const char *backend = getenv("KG_TEST_BACKEND") ? getenv("KG_TEST_BACKEND") : "cpu";
  if (strcmp(backend, "cpu") != 0) {
    tolerance = 2e-2;
    exact_flags = 0;
  }
  fprintf(stderr, "backend %s\n", backend);
  CHECK_OK(kg_backend_create(backend, 1, &be));
  CHECK_OK(kg_model_load(path, be, &m, &tok));
  if (!m || !tok) return kgtest_finish("test_eval_loglik");
  test_encode_pair(tok);

  static reqset s;
  add_task(&s, tok, "hellaswag", 6, 0);
  add_task(&s, tok, "winogrande", 4, 0);
  add_task(&s, tok, "boolq", 3, 0);   /* two one-token continuations share one input */
  add_task(&s, tok, "piqa", 3, 1);
  add_task(&s, tok, "lambada", 3, 0);
  add_task(&s, tok, "mmlu", 6, 0);    /* the subject description is a shared prefix */
  add_pair(&s, tok, "Lily and Ben", "");    /* empty continuation: (0, greedy) */
  s.r[s.n] = s.r[0]; /* next-token query */
  s.r[s.n].n_continuation = 0;
  s.r[s.n].continuation = NULL;
  s.r[s.n++].want_next = 1;
  int n = s.n;
  fprintf(stderr, "%d requests\n", n);

  int max_len = 96; /* below some inputs' length: exercises left truncation */
  kg_loglik_result *ref = calloc((size_t)n, sizeof(*ref)), *out = calloc((size_t)n, sizeof(*out));
  struct { int batch, reuse; size_t cache; const char *name; } cfg[] = {
      {1, 0, 0, "batch 1, no cache"},
      {8, 0, 0, "batch 8, no cache"},
      {8, 1, 0, "batch 8, prefix reuse"},
      {3, 1, 0, "batch 3, prefix reuse"},
      {8, 1, 20000, "batch 8, 20 kB cache budget"},
  };
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) max_len = m->cfg.max_seq_len; /* no truncation: contexts are shared */
    fprintf(stderr, "max_len %d\n", max_len);
    for (int i = 0; i < n; i++) reference(m, &s.r[i], max_len, &ref[i]);
    int truncated = 0;
    kg_loglik_stats plain = {0};
    for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
      kg_loglik_options o;
      kg_loglik_stats st;
      kg_loglik_options_default(&o);
      o.batch = cfg[c].batch;
      o.reuse_prefix = cfg[c].reuse;
      o.max_len = max_len;
      o.stats = &st;
      if (cfg[c].cache) o.cache_bytes = cfg[c].cache;
      memset(out, 0, (size_t)n * sizeof(*out));
      CHECK_OK(kg_loglik_run(m, s.r, (size_t)n, &o, out));
      compare(out, ref, n, cfg[c].name);
      fprintf(stderr, "  %lld inputs, %lld forward calls, %lld positions fed, %lld from the cache\n",
              (long long)st.items, (long long)st.forward_calls, (long long)st.tokens_fed, (long long)st.tokens_reused);
      if (c == 1) plain = st;
      if (pass == 1 && cfg[c].reuse) {
        CHECK_MSG(st.tokens_reused > 0, "%s: no prefix was reused", cfg[c].name);
        CHECK_MSG(st.tokens_fed < plain.tokens_fed, "%s: fed %lld positions, no-cache run %lld", cfg[c].name,
                  (long long)st.tokens_fed, (long long)plain.tokens_fed);
      }
      CHECK(st.items < n); /* identical inputs (BoolQ, MMLU) are merged */
      truncated = 0;
      for (int i = 0; i < n; i++) truncated += out[i].truncated;
    }
    if (pass == 0) CHECK_MSG(truncated > 0, "no request was long enough to be truncated at max_len %d", max_len);
  }
  CHECK(out[n - 2].logprob == 0.0 && out[n - 2].is_greedy == 1);
  CHECK(out[n - 1].next_token >= 0);

  /* shuffled order gives each request the same score */
  kg_loglik_request *shuf = malloc((size_t)n * sizeof(*shuf));
  kg_loglik_result *ref2 = malloc((size_t)n * sizeof(*ref2));
  for (int i = 0; i < n; i++) {
    int j = (i * 37 + 11) % n;
    shuf[i] = s.r[j];
    ref2[i] = ref[j];
  }
  if (n % 37 != 0) {
    kg_loglik_options o;
    kg_loglik_options_default(&o);
    o.max_len = max_len;
    CHECK_OK(kg_loglik_run(m, shuf, (size_t)n, &o, out));
    compare(out, ref2, n, "shuffled, batch 8, reuse");
  }

  /* bad requests are errors, not crashes */
  kg_loglik_request bad = {.context = NULL, .n_context = 0};
  CHECK(kg_loglik_run(m, &bad, 1, NULL, out) == KG_ERR_ARG);
  kg_loglik_options tiny;
  kg_loglik_options_default(&tiny);
  tiny.max_len = 2;
  kg_loglik_request longcont = s.r[0];
  if (longcont.n_continuation > 2) CHECK(kg_loglik_run(m, &longcont, 1, &tiny, out) == KG_ERR_ARG);

  free(shuf);
  free(ref2);
  free(ref);
  free(out);
  for (int i = 0; i < s.n_owned; i++) free(s.owned[i]);
  kg_tokenizer_free(tok);
  kg_model_free(m);
  kg_backend_destroy(be);
  return kgtest_finish("test_eval_loglik");
}
