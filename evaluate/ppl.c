#include "evaluate/ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/datasets.h"
#include "io/error.h"
#include "io/log.h"
#include "io/manifest.h"
#include "io/paths.h"

double kg_logsumexp(const float *x, int n) { return kg_row_logsumexp(x, n); }

int kg_perplexity_tokens(kg_model *m, const int32_t *tokens, int64_t n, int seqlen, int max_windows, int batch,
                         kg_ppl_result *res) {
  int rc = KG_OK;
  double *nll = NULL;
  memset(res, 0, sizeof(*res));
  if (seqlen < 2) return kg_error(KG_ERR_ARG, "perplexity needs seqlen >= 2, got %d", seqlen);
  int64_t windows = n / seqlen;
  if (max_windows > 0 && windows > max_windows) windows = max_windows;
  if (windows == 0)
    return kg_error(KG_ERR_ARG, "the text has %lld tokens, fewer than one window of %d", (long long)n, seqlen);
  if (batch <= 0) batch = kg_model_preferred_batch(m, seqlen);
  if (batch > windows) batch = (int)windows;
  if (!(nll = malloc((size_t)batch * seqlen * sizeof(double)))) return kg_error(KG_ERR_NOMEM, "out of memory");
  double sum_of_means = 0.0;
  kg_progress prog;
  kg_progress_begin(&prog, "perplexity windows", windows);
  const double t0 = kg_now();
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int nb = (int)(windows - w0 < batch ? windows - w0 : batch);
    /* Every row but each window's last predicts a token inside the window;
     * the head runs on the backend and only per-row NLLs come back. */
    if ((rc = kg_model_forward_nll(m, tokens + w0 * seqlen, nb, seqlen, NULL, nll)) < 0) goto done;
    for (int s = 0; s < nb; s++) {
      double window = 0.0;
      for (int t = 0; t < seqlen - 1; t++) window += nll[(size_t)s * seqlen + t];
      if (!isfinite(window)) {
        rc = kg_error(KG_ERR_NUMERIC, "non-finite log-likelihood in window %lld", (long long)(w0 + s));
        goto done;
      }
      sum_of_means += window / (seqlen - 1);
    }
    kg_progress_update(&prog, w0 + nb);
  }
  kg_progress_end(&prog);
  res->seconds = kg_now() - t0;
  res->windows = windows;
  res->seqlen = seqlen;
  res->tokens_total = n;
  res->tokens_scored = windows * (seqlen - 1);
  res->mean_nll = sum_of_means / (double)windows;
  res->ppl = exp(res->mean_nll);
  res->tokens_per_s = res->seconds > 0 ? (double)(windows * seqlen) / res->seconds : 0.0;
done:
  free(nll);
  return rc;
}

static int is_jsonl(const char *path) {
  size_t n = strlen(path);
  return n > 6 && !strcmp(path + n - 6, ".jsonl");
}

/* Tokens of each text, concatenated, with BOS before each when add_bos
 * (llama2.c's pretokenization of TinyStories encodes each story with BOS). */
static int encode_each(kg_tokenizer *tok, const kg_text_list *texts, int add_bos, int32_t **tokens, size_t *n) {
  int32_t *all = NULL;
  size_t count = 0, cap = 0;
  for (size_t i = 0; i < texts->count; i++) {
    int32_t *ids = NULL;
    size_t k = 0;
    KG_TRY(kg_tokenizer_encode(tok, texts->texts[i], texts->lens[i], add_bos, &ids, &k));
    if (count + k > cap) {
      size_t grown_cap = (count + k) * 2;
      int32_t *grown = realloc(all, grown_cap * sizeof(int32_t));
      if (!grown) {
        free(ids);
        free(all);
        return kg_error(KG_ERR_NOMEM, "out of memory tokenizing");
      }
      all = grown;
      cap = grown_cap;
    }
    memcpy(all + count, ids, k * sizeof(int32_t));
    count += k;
    free(ids);
  }
  *tokens = all;
  *n = count;
  return KG_OK;
}

int kg_ppl_dataset_tokens(kg_tokenizer *tok, const char *dataset, int seqlen, int32_t **tokens, int64_t *n) {
  int rc = KG_OK;
  char *text = NULL;
  size_t len = 0, count = 0;
  kg_text_list docs = {0};
  const int add_bos = kg_tokenizer_adds_bos(tok);
  *tokens = NULL;
  *n = 0;
  if (!strcmp(dataset, "wikitext2")) {
    rc = kg_wikitext2_test_text(&text, &len);
  } else if (!strcmp(dataset, "c4")) {
    size_t used = 0;
    rc = kg_c4_validation_text(KG_C4_VALIDATION_REFERENCE_DOCS, &text, &len, &used);
    if (rc >= 0 && used < KG_C4_VALIDATION_REFERENCE_DOCS)
      kg_debug("C4 validation: the data file holds %zu documents, the reference joins %d", used,
               KG_C4_VALIDATION_REFERENCE_DOCS);
  } else if (!strcmp(dataset, "tinystories")) {
    char path[4096];
    if ((rc = kg_resolve_data_file(KG_TINYSTORIES_VALID_FILE, path, sizeof(path))) < 0) goto done;
    if ((rc = kg_tinystories_texts(path, &docs)) < 0) goto done;
    rc = encode_each(tok, &docs, add_bos, tokens, &count);
    goto counted;
  } else if (!strncmp(dataset, "file:", 5)) {
    const char *path = dataset + 5;
    if (is_jsonl(path)) {
      if ((rc = kg_jsonl_texts(path, "text", &docs)) < 0) goto done;
      rc = kg_text_list_join(&docs, 0, docs.count, "\n\n", &text, &len);
    } else {
      rc = kg_text_file(path, &text, &len);
    }
  } else {
    rc = kg_error(KG_ERR_ARG, "unknown perplexity dataset '%s' (wikitext2, c4, tinystories or file:PATH)", dataset);
  }
  if (rc < 0) goto done;
  rc = kg_tokenizer_encode(tok, text, len, add_bos, tokens, &count);
counted:
  if (rc < 0) goto done;
  /* The C4 protocol keeps the first 256 windows' worth of tokens. */
  if (!strcmp(dataset, "c4") && count > (size_t)256 * seqlen) count = (size_t)256 * seqlen;
  *n = (int64_t)count;
done:
  free(text);
  kg_text_list_free(&docs);
  return rc;
}

int kg_perplexity_dataset(kg_model *m, kg_tokenizer *tok, const char *dataset, int seqlen, int max_windows,
                          int batch, kg_ppl_result *res) {
  int32_t *tokens = NULL;
  int64_t n = 0;
  KG_TRY(kg_ppl_dataset_tokens(tok, dataset, seqlen, &tokens, &n));
  int rc = kg_perplexity_tokens(m, tokens, n, seqlen, max_windows, batch, res);
  free(tokens);
  return rc;
}
