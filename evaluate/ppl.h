/* Perplexity with the SparseGPT/Wanda reference protocol: the text is
 * tokenized once, cut into non-overlapping windows of `seqlen` tokens (the
 * tail is dropped), each window's mean next-token NLL is taken over its
 * seqlen-1 predictions, and PPL = exp(mean over windows of those means). */
#ifndef KG_EVALUATE_PPL_H
#define KG_EVALUATE_PPL_H

#include <stdint.h>

#include "io/tokenizer.h"
#include "model/model.h"

typedef struct kg_ppl_result {
  double ppl;
  double mean_nll;        /* natural log */
  int64_t windows;        /* windows scored */
  int seqlen;
  int64_t tokens_total;   /* tokens in the dataset after tokenization */
  int64_t tokens_scored;  /* windows * (seqlen - 1) */
  double seconds;         /* wall time of the forward passes */
  double tokens_per_s;    /* windows * seqlen / seconds */
} kg_ppl_result;

/* Scores tokens[n] in windows of seqlen, at most max_windows (<= 0: all),
 * `batch` windows per forward pass (<= 0: kg_model_preferred_batch). */
int kg_perplexity_tokens(kg_model *m, const int32_t *tokens, int64_t n, int seqlen, int max_windows, int batch,
                         kg_ppl_result *res);

/* Dataset names: "wikitext2" (test split, rows joined with "\n\n"), "c4"
 * (validation head: documents joined with ' ', truncated to 256 * seqlen
 * tokens), "tinystories" (the TinyStories sample), or "file:PATH" (plain
 * text, or JSON Lines with a "text" field when PATH ends in .jsonl). */
int kg_ppl_dataset_tokens(kg_tokenizer *tok, const char *dataset, int seqlen, int32_t **tokens, int64_t *n);
int kg_perplexity_dataset(kg_model *m, kg_tokenizer *tok, const char *dataset, int seqlen, int max_windows,
                          int batch, kg_ppl_result *res);

/* log-softmax helper shared by the evaluations: returns log(sum(exp(x))) in
 * double precision for one row of `n` logits. */
double kg_logsumexp(const float *x, int n);

#endif
