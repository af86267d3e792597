/* Pure scoring functions with the reference harnesses' definitions:
 * lm-evaluation-harness (acc, acc_norm, perplexity, mean_stderr, bootstrap
 * stderr, pooled stderr), the SQuAD v1.1 evaluation script (normalization,
 * exact match, F1) and LLM-KICK (FreebaseQA answer matching, the MMLU
 * one-token letter rule). No model, no I/O; strings are UTF-8.
 *
 * Tie rule: every argmax here is numpy's np.argmax: the first index holding
 * the maximum (a NaN counts as the maximum, first NaN wins), so on a tie the
 * choice listed first is predicted. */
#ifndef KG_EVALUATE_SCORING_H
#define KG_EVALUATE_SCORING_H

#include <stddef.h>
#include <stdint.h>

/* np.argmax over x[n] (n >= 1). */
int kg_argmax_first(const double *x, int n);

/* Python len(): code points of UTF-8 text (an invalid byte counts as one). */
size_t kg_utf8_length(const char *s);

/* lm-eval multiple_choice scoring: pred = argmax(lls), pred_norm =
 * argmax(lls / completion_len) with completion_len the choice length in
 * characters (without the leading target delimiter). A zero length divides
 * as numpy does (ll/0 = -inf, 0/0 = NaN). Writes 1.0/0.0 to *acc and
 * *acc_norm (either may be NULL); returns pred. */
int kg_score_multiple_choice(const double *lls, const size_t *choice_chars, int n_choices, int gold, double *acc,
                             double *acc_norm);

/* lm-eval aggregations. mean of x[n]; mean_stderr = sample stddev / sqrt(n)
 * (NaN when n < 2); perplexity = exp(-mean(ll)) of per-document summed
 * log-likelihoods. */
double kg_mean(const double *x, size_t n);
double kg_mean_stderr(const double *x, size_t n);
double kg_perplexity_of_loglik(const double *ll, size_t n);
/* lm-eval bootstrap_stderr(perplexity, ll, iters): iters/1000 chunks, chunk
 * i resampling with random.Random(i).choices(ll, k=n) 1000 times, then the
 * sample stddev of the perplexities. Bit-for-bit the harness's value for
 * iters a multiple of 1000 (it uses 100000). NaN when n == 0 or iters < 1000. */
double kg_bootstrap_stderr_perplexity(const double *ll, size_t n, int iters);
/* lm-eval pooled_sample_stderr over subtasks (MMLU's group stderr). */
double kg_pooled_stderr(const double *stderrs, const size_t *sizes, size_t k);

/* ---- SQuAD v1.1 ---- */

/* normalize_answer: lower case, drop ASCII punctuation, drop the words
 * a/an/the, collapse whitespace. malloc'd result (NULL on allocation
 * failure). Lower-casing covers ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic; word characters for the article rule are letters and digits
 * (non-ASCII letters included). */
char *kg_squad_normalize(const char *s);
/* 1 when the normalized strings are equal. */
int kg_squad_exact_match(const char *prediction, const char *truth);
/* Token F1 of the normalized strings (0 when nothing overlaps). */
double kg_squad_f1(const char *prediction, const char *truth);
/* metric_max_over_ground_truths for both metrics. */
void kg_squad_max_over(const char *prediction, const char *const *truths, int n, double *em, double *f1);

/* ---- LLM-KICK ---- */

/* validate_response of LLM-KICK's FreebaseQA: output.strip().replace(" ",
 * "").lower() contains some answer normalized the same way. */
int kg_llmkick_answer_match(const char *output, const char *const *answers, int n);
/* LLM-KICK MMLU generate mode: the prompt plus the greedy token is decoded
 * and its last character compared with the answer letter; with a non-empty
 * token text that is the token's last code point. */
int kg_llmkick_letter_match(const char *token_text, char letter);

#endif
