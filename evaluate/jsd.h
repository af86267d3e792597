/* Jensen-Shannon divergence between a dense and a compressed model's
 * next-token distributions, per token over the full vocabulary:
 *   JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M),  M = (P + Q) / 2,
 * natural log, so 0 <= JS <= ln 2. Computed from fp32 logits: both rows are
 * log-softmaxed in double precision and the sum runs on log-probabilities
 * (log M by log-add-exp), in double; p = 0 or q = 0 terms contribute 0.
 *
 * Both models are resident on one backend. Each window (or batch of
 * prompts) goes through kg_model_forward_js (model/model.h): both models'
 * hidden states, then the head in row chunks with the JS reduced on the
 * backend, so at most one chunk of logits per model is alive — on a GPU they
 * never reach the host — and memory never holds the dataset's logits. The
 * row formula is the backend's kg_row_js_lse (model/backend.h).
 *
 * Statistics over all compared positions: mean, median and 95th percentile
 * (numpy's linear interpolation), maximum, and top-1 agreement (both argmaxes
 * equal, ties to the lowest id). */
#ifndef KG_EVALUATE_JSD_H
#define KG_EVALUATE_JSD_H

#include <stddef.h>
#include <stdint.h>

#include "evaluate/tasks.h"
#include "io/tokenizer.h"
#include "model/model.h"

typedef struct kg_js_result {
  double mean;       /* nats */
  double median;
  double p95;
  double max;
  double top1_agree; /* fraction of positions whose argmax tokens agree */
  int64_t n_tokens;  /* positions compared */
  int64_t n_windows; /* windows or prompts */
  double seconds;
} kg_js_result;

/* JS of one pair of logit rows (vocab entries each). */
double kg_js_logits(const float *p_logits, const float *q_logits, int vocab);
/* The same with the rows' log-sum-exps known. */
double kg_js_logits_lse(const float *p_logits, double p_lse, const float *q_logits, double q_lse, int vocab);

/* Over tokens[n] cut into non-overlapping windows of seqlen (tail dropped,
 * at most max_windows; <= 0: all); every position of a window is compared.
 * dense and test must share the vocabulary. */
int kg_js_divergence(kg_model *dense, kg_model *test, const int32_t *tokens, int64_t n, int seqlen, int max_windows,
                     kg_js_result *res);

/* Over token sequences (every position of each), `batch` per forward pass. */
int kg_js_divergence_seqs(kg_model *dense, kg_model *test, const int32_t *const *seqs, const int *lens, size_t n_seqs,
                          int batch, kg_js_result *res);

/* Over the prompts (contexts) of a task's selected documents, tokenized as
 * the task's evaluation tokenizes them (spec as for kg_eval_task). */
int kg_js_task(kg_model *dense, kg_model *test, kg_tokenizer *tok, const kg_task_spec *spec, kg_js_result *res);

#endif
