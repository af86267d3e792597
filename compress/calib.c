#include "compress/calib.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pyrandom.h"
#include "io/datasets.h"
#include "io/error.h"
#include "io/log.h"
#include "io/paths.h"
#include "io/tasks.h"
#include "model/generate.h"

#define WIKITEXT2_TRAIN_FILE "text/wikitext-2-raw/wiki.train.raw"

void kg_calib_spec_defaults(kg_calib_spec *s) {
  memset(s, 0, sizeof(*s));
  s->source = "c4";
  s->nsamples = 128;
  s->seqlen = 2048;
  s->self_temperature = 0.6f;
  s->self_top_p = 0.95f;
  s->self_top_k = 50;
  s->self_repetition_penalty = 1.2f;
  s->self_drop_fraction = 0.2;
  s->self_batch = 16;
}

void kg_calib_free(kg_calib_set *set) {
  if (!set) return;
  free(set->tokens);
  free(set);
}

static int new_set(const kg_calib_spec *spec, kg_calib_set **out) {
  kg_calib_set *set = calloc(1, sizeof(*set));
  if (!set || !(set->tokens = malloc((size_t)spec->nsamples * spec->seqlen * sizeof(int32_t)))) {
    free(set);
    return kg_error(KG_ERR_NOMEM, "out of memory for %d calibration samples of %d tokens", spec->nsamples, spec->seqlen);
  }
  set->nsamples = spec->nsamples;
  set->seqlen = spec->seqlen;
  set->seed = spec->seed;
  set->sequential = spec->sequential;
  snprintf(set->source, sizeof(set->source), "%s", spec->source);
  *out = set;
  return KG_OK;
}

/* Windows from one token stream: the first non-overlapping ones, or random
 * starts drawn as random.randint(0, n - seqlen - 1) like get_wikitext2. */
static int windows_from_stream(const kg_calib_spec *spec, const int32_t *ids, size_t n, kg_calib_set *set) {
  const size_t L = (size_t)spec->seqlen;
  if (spec->sequential) {
    if (n / L < (size_t)spec->nsamples)
      return kg_error(KG_ERR_ARG, "calibration source '%s' has %zu tokens: %zu windows of %d, fewer than the %d asked for",
                      spec->source, n, n / L, spec->seqlen, spec->nsamples);
    for (int s = 0; s < spec->nsamples; s++) memcpy(set->tokens + s * L, ids + s * L, L * sizeof(int32_t));
    return KG_OK;
  }
  if (n <= L)
    return kg_error(KG_ERR_ARG, "calibration source '%s' has %zu tokens, not more than one window of %d", spec->source, n,
                    spec->seqlen);
  kg_pyrand rng;
  kg_pyrand_seed(&rng, spec->seed);
  for (int s = 0; s < spec->nsamples; s++) {
    int64_t start = kg_pyrand_randint(&rng, 0, (int64_t)(n - L - 1));
    memcpy(set->tokens + s * L, ids + start, L * sizeof(int32_t));
  }
  return KG_OK;
}

static int stream_from_text(const kg_calib_spec *spec, kg_tokenizer *tok, const char *text, size_t len,
                            kg_calib_set *set) {
  int32_t *ids = NULL;
  size_t n = 0;
  KG_TRY(kg_tokenizer_encode(tok, text, len, kg_tokenizer_adds_bos(tok), &ids, &n));
  int rc = windows_from_stream(spec, ids, n, set);
  free(ids);
  return rc;
}

/* get_c4: draw documents until one is longer than seqlen, then a window of it. */
static int windows_from_documents(const kg_calib_spec *spec, kg_tokenizer *tok, const kg_text_list *docs,
                                  kg_calib_set *set) {
  if (docs->count == 0) return kg_error(KG_ERR_ARG, "calibration source '%s' has no documents", spec->source);
  if (spec->sequential) {
    char *joined = NULL;
    size_t len = 0;
    KG_TRY(kg_text_list_join(docs, 0, docs->count, "\n\n", &joined, &len));
    int rc = stream_from_text(spec, tok, joined, len, set);
    free(joined);
    return rc;
  }
  const size_t L = (size_t)spec->seqlen;
  const int add_bos = kg_tokenizer_adds_bos(tok);
  kg_pyrand rng;
  kg_pyrand_seed(&rng, spec->seed);
  /* Give up after a bounded number of draws when no document is long enough. */
  const int64_t max_draws = 64 * (int64_t)docs->count + 1000;
  int64_t draws = 0;
  for (int s = 0; s < spec->nsamples; s++) {
    for (;;) {
      if (++draws > max_draws)
        return kg_error(KG_ERR_ARG, "calibration source '%s': no document is longer than %d tokens", spec->source,
                        spec->seqlen);
      int64_t d = kg_pyrand_randint(&rng, 0, (int64_t)docs->count - 1);
      int32_t *ids = NULL;
      size_t n = 0;
      KG_TRY(kg_tokenizer_encode(tok, docs->texts[d], docs->lens[d], add_bos, &ids, &n));
      if (n > L) {
        int64_t start = kg_pyrand_randint(&rng, 0, (int64_t)(n - L - 1));
        memcpy(set->tokens + s * L, ids + start, L * sizeof(int32_t));
        free(ids);
        break;
      }
      free(ids);
    }
  }
  return KG_OK;
}

static int is_jsonl(const char *path) {
  size_t n = strlen(path);
  return n > 6 && !strcmp(path + n - 6, ".jsonl");
}

static int build_wikitext2(const kg_calib_spec *spec, kg_tokenizer *tok, kg_calib_set *set) {
  char path[PATH_MAX];
  kg_text_list rows = {0};
  char *text = NULL;
  size_t len = 0;
  int rc = kg_data_path(path, sizeof(path), WIKITEXT2_TRAIN_FILE);
  if (rc < 0) return rc;
  if (!kg_path_exists(path)) {
    kg_warn("%s is absent: WikiText-2 calibration uses the test split, which overlaps the perplexity evaluation", path);
    if ((rc = kg_data_path(path, sizeof(path), KG_WIKITEXT2_TEST_FILE)) < 0) return rc;
  }
  /* get_wikitext2 tokenizes " ".join(traindata['text']) for calibration. */
  if ((rc = kg_wikitext_rows(path, &rows)) < 0) goto done;
  if ((rc = kg_text_list_join(&rows, 0, rows.count, " ", &text, &len)) < 0) goto done;
  rc = stream_from_text(spec, tok, text, len, set);
done:
  free(text);
  kg_text_list_free(&rows);
  return rc;
}

typedef struct scored_text {
  double nll;
  int index;
} scored_text;

static int cmp_scored(const void *a, const void *b) {
  const scored_text *x = a, *y = b;
  if (x->nll != y->nll) return x->nll < y->nll ? -1 : 1;
  return x->index - y->index;
}

typedef struct text_nll_ctx {
  const int32_t *tokens;
  double nll;
} text_nll_ctx;

static double row_logsumexp(const float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  double s = 0.0;
  for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
  return mx + log(s);
}

static int add_text_nll(void *vctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  text_nll_ctx *ctx = vctx;
  for (int64_t i = 0; i < n_rows; i++)
    ctx->nll += row_logsumexp(logits + i * vocab, vocab) - logits[i * vocab + ctx->tokens[rows[i] + 1]];
  return 0;
}

/* Mean next-token NLL of one text under the model (its own perplexity, in log). */
static int text_mean_nll(kg_model *m, const int32_t *ids, int n, double *out) {
  if (n < 2) {
    *out = INFINITY;
    return KG_OK;
  }
  uint8_t *want = malloc((size_t)n);
  if (!want) return kg_error(KG_ERR_NOMEM, "out of memory");
  for (int t = 0; t < n; t++) want[t] = t < n - 1;
  text_nll_ctx ctx = {ids, 0.0};
  kg_forward_request r = {.tokens = ids, .n_seq = 1, .T = n, .want_logits = want, .on_logits = add_text_nll, .ctx = &ctx};
  int rc = kg_model_forward(m, &r);
  free(want);
  *out = ctx.nll / (n - 1);
  return rc;
}

static int build_self(const kg_calib_spec *spec, kg_tokenizer *tok, kg_model *m, kg_calib_set *set) {
  int rc = KG_OK;
  kg_text_list docs = {0};
  kg_generation *gens = NULL;
  scored_text *scores = NULL;
  int32_t *stream = NULL, **prompts = NULL;
  int *prompt_lens = NULL;
  if (!m) return kg_error(KG_ERR_ARG, "self-generated calibration needs the model");
  const int keep_share_num = (int)ceil((double)spec->nsamples / (1.0 - spec->self_drop_fraction));
  const int n_texts = keep_share_num > spec->nsamples ? keep_share_num : spec->nsamples + 1;
  const int bos = kg_tokenizer_bos_id(tok);
  const int add_bos = kg_tokenizer_adds_bos(tok) && bos >= 0;
  if ((rc = kg_c4_train_texts(&docs)) < 0) goto done;
  gens = calloc((size_t)n_texts, sizeof(*gens));
  scores = calloc((size_t)n_texts, sizeof(*scores));
  prompts = calloc((size_t)n_texts, sizeof(*prompts));
  prompt_lens = calloc((size_t)n_texts, sizeof(int));
  if (!gens || !scores || !prompts || !prompt_lens) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory for self-generated calibration");
    goto done;
  }
  /* Prefixes: the first two tokens of randomly drawn C4 documents. */
  kg_pyrand rng;
  kg_pyrand_seed(&rng, spec->seed);
  int short_docs = 0;
  for (int i = 0; i < n_texts; i++) {
    int32_t *ids = NULL;
    size_t n = 0;
    int64_t d = kg_pyrand_randint(&rng, 0, (int64_t)docs.count - 1);
    if ((rc = kg_tokenizer_encode(tok, docs.texts[d], docs.lens[d], 0, &ids, &n)) < 0) goto done;
    if (n < 2) {
      free(ids);
      if (++short_docs > 1000) {
        rc = kg_error(KG_ERR_ARG, "C4 documents too short to take 2-token prefixes from");
        goto done;
      }
      i--;
      continue;
    }
    prompts[i] = malloc(3 * sizeof(int32_t));
    if (!prompts[i]) {
      free(ids);
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
    int k = 0;
    if (add_bos) prompts[i][k++] = bos;
    prompts[i][k++] = ids[0];
    prompts[i][k++] = ids[1];
    prompt_lens[i] = k;
    free(ids);
  }
  kg_sampling sampling = {spec->self_temperature, spec->self_top_k, spec->self_top_p, spec->self_repetition_penalty};
  const int batch = spec->self_batch > 0 ? spec->self_batch : 16;
  kg_progress prog;
  kg_progress_begin(&prog, "self-generating calibration texts", n_texts);
  for (int i0 = 0; i0 < n_texts; i0 += batch) {
    int nb = n_texts - i0 < batch ? n_texts - i0 : batch;
    if ((rc = kg_generate_batch(m, (const int32_t *const *)prompts + i0, prompt_lens + i0, nb, spec->seqlen,
                                kg_tokenizer_eos_id(tok), &sampling, spec->seed * 1000003ULL + (uint64_t)i0,
                                gens + i0)) < 0)
      goto done;
    kg_progress_update(&prog, i0 + nb);
  }
  kg_progress_end(&prog);
  /* Rank by the model's own perplexity of prefix + continuation; drop the worst share. */
  size_t total = 0;
  for (int i = 0; i < n_texts; i++) {
    int32_t *full = malloc((size_t)(prompt_lens[i] + gens[i].n_tokens) * sizeof(int32_t));
    if (!full) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory");
      goto done;
    }
    memcpy(full, prompts[i], (size_t)prompt_lens[i] * sizeof(int32_t));
    memcpy(full + prompt_lens[i], gens[i].tokens, (size_t)gens[i].n_tokens * sizeof(int32_t));
    rc = text_mean_nll(m, full, prompt_lens[i] + gens[i].n_tokens, &scores[i].nll);
    free(full);
    if (rc < 0) goto done;
    scores[i].index = i;
  }
  qsort(scores, (size_t)n_texts, sizeof(*scores), cmp_scored);
  int kept = n_texts - (int)floor(spec->self_drop_fraction * n_texts);
  if (kept < 1) kept = 1;
  for (int r = 0; r < kept; r++) total += (size_t)(prompt_lens[scores[r].index] + gens[scores[r].index].n_tokens);
  if (!(stream = malloc(total * sizeof(int32_t)))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  /* Kept texts in generation order form the stream windows are drawn from. */
  size_t pos = 0;
  for (int i = 0; i < n_texts; i++) {
    int keep = 0;
    for (int r = 0; r < kept && !keep; r++) keep = scores[r].index == i;
    if (!keep) continue;
    memcpy(stream + pos, prompts[i], (size_t)prompt_lens[i] * sizeof(int32_t));
    pos += (size_t)prompt_lens[i];
    memcpy(stream + pos, gens[i].tokens, (size_t)gens[i].n_tokens * sizeof(int32_t));
    pos += (size_t)gens[i].n_tokens;
  }
  kg_info("self-generated calibration: %d texts, kept %d (%zu tokens)", n_texts, kept, total);
  rc = windows_from_stream(spec, stream, total, set);
done:
  for (int i = 0; gens && i < n_texts; i++) free(gens[i].tokens);
  for (int i = 0; prompts && i < n_texts; i++) free(prompts[i]);
  free(gens);
  free(scores);
  free(prompts);
  free(prompt_lens);
  free(stream);
  kg_text_list_free(&docs);
  return rc;
}

int kg_calib_build(const kg_calib_spec *spec, kg_tokenizer *tok, kg_model *model, kg_calib_set **out) {
  int rc = KG_OK;
  kg_calib_set *set = NULL;
  kg_text_list docs = {0};
  char *text = NULL;
  size_t len = 0;
  *out = NULL;
  const char *src = spec->source ? spec->source : "c4";
  if (!strncmp(src, "tokens:", 7)) return kg_calib_import(src + 7, out);
  if (spec->nsamples <= 0 || spec->seqlen < 2)
    return kg_error(KG_ERR_ARG, "calibration needs nsamples > 0 and seqlen >= 2 (got %d, %d)", spec->nsamples, spec->seqlen);
  if ((rc = new_set(spec, &set)) < 0) return rc;
  if (!strcmp(src, "c4")) {
    if ((rc = kg_c4_train_texts(&docs)) >= 0) rc = windows_from_documents(spec, tok, &docs, set);
  } else if (!strcmp(src, "wikitext2")) {
    rc = build_wikitext2(spec, tok, set);
  } else if (!strncmp(src, "file:", 5)) {
    if (is_jsonl(src + 5)) {
      if ((rc = kg_jsonl_texts(src + 5, "text", &docs)) >= 0) rc = windows_from_documents(spec, tok, &docs, set);
    } else if ((rc = kg_text_file(src + 5, &text, &len)) >= 0) {
      rc = stream_from_text(spec, tok, text, len, set);
    }
  } else if (!strncmp(src, "task:", 5)) {
    if ((rc = kg_task_calibration_texts(src + 5, &docs)) >= 0 &&
        (rc = kg_text_list_join(&docs, 0, docs.count, "\n\n", &text, &len)) >= 0)
      rc = stream_from_text(spec, tok, text, len, set);
  } else if (!strcmp(src, "self")) {
    rc = build_self(spec, tok, model, set);
  } else {
    rc = kg_error(KG_ERR_ARG, "unknown calibration source '%s' (c4, wikitext2, file:PATH, task:NAME, self, tokens:PATH)", src);
  }
  if (rc < 0) goto done;
  *out = set;
  set = NULL;
done:
  if (rc < 0) kg_error_context("calibration set '%s': ", src);
  free(text);
  kg_text_list_free(&docs);
  kg_calib_free(set);
  return rc;
}
