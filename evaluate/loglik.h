/* Batched log-likelihood engine: for (context, continuation) token
 * requests, the summed log-probability of the continuation and whether
 * greedy decoding would produce it (lm-evaluation-harness's
 * loglikelihood()). Inputs longer than max_len are cut from the left as the
 * harness does: the model sees (context + continuation)[-(max_len + 1):][:-1].
 *
 * Speed without changing any score: requests whose model inputs are
 * identical run once (the harness's one-token-continuation cache); items
 * sharing a context run the shared part once into a KV cache and extend it
 * per continuation; a shared few-shot prefix (MMLU) stays in the cache
 * across questions; sequences are grouped by length to limit padding.
 * Scores agree with batch 1 and no prefix reuse to float tolerance
 * (tests/unit/test_eval_loglik.c).
 *
 * Log-softmax is taken per scored row in double precision from the fp32
 * logits; argmax ties go to the lowest token id (torch.argmax). */
#ifndef KG_EVALUATE_LOGLIK_H
#define KG_EVALUATE_LOGLIK_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "model/model.h"

typedef struct kg_loglik_request {
  const int32_t *context;      /* n_context >= 1 tokens (borrowed) */
  int n_context;
  const int32_t *continuation; /* n_continuation >= 0 tokens (borrowed) */
  int n_continuation;
  int want_next;               /* report the greedy token after the whole context (needs n_continuation == 0) */
} kg_loglik_request;

typedef struct kg_loglik_result {
  double logprob;     /* natural log; 0 for an empty continuation */
  int is_greedy;      /* every continuation token is its position's argmax (1 when empty) */
  int32_t next_token; /* want_next: argmax after the context; else -1 */
  int truncated;      /* tokens were dropped on the left to fit max_len */
} kg_loglik_result;

/* Work done by one kg_loglik_run (for tests and speed reports). */
typedef struct kg_loglik_stats {
  int64_t items;          /* distinct model inputs after merging identical ones */
  int64_t forward_calls;
  int64_t tokens_fed;     /* token positions run through the model, padding included */
  int64_t tokens_reused;  /* positions taken from the KV cache instead of recomputed */
} kg_loglik_stats;

typedef struct kg_loglik_options {
  int batch;          /* sequences per forward pass (default 8) */
  int max_len;        /* longest model input (default: the model's max_seq_len) */
  int reuse_prefix;   /* share common prefixes through the KV cache (default 1) */
  size_t cache_bytes; /* KV cache budget; lowers the batch for long inputs (default 512 MiB) */
  int progress;       /* print progress lines on stderr */
  const char *label;  /* progress label */
  kg_loglik_stats *stats; /* optional: filled with the work done */
} kg_loglik_options;

void kg_loglik_options_default(kg_loglik_options *o);

/* Scores n requests into out[n]. o may be NULL (defaults). */
int kg_loglik_run(kg_model *m, const kg_loglik_request *reqs, size_t n, const kg_loglik_options *o,
                  kg_loglik_result *out);

/* Tokenization of a (context, continuation) text pair as the harness's
 * _encode_pair: trailing whitespace of the context moves to the front of
 * the continuation, context + continuation is encoded whole and split after
 * as many tokens as the context alone encodes to. An empty context becomes
 * the prefix token (BOS, else EOS). add_bos prepends BOS to the context
 * (the harness default for LLaMA-family tokenizers is no BOS). *ctx and
 * *cont are malloc'd and owned by the caller. */
int kg_loglik_encode_pair(const kg_tokenizer *tok, const char *context, const char *continuation, int add_bos,
                          int32_t **ctx, int *n_ctx, int32_t **cont, int *n_cont);

#endif
