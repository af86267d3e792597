/* Downstream-task evaluation scored like lm-evaluation-harness (zero-shot
 * multiple choice, LAMBADA, MMLU log-likelihood) and LLM-KICK (MMLU
 * one-token generation, FreebaseQA, TriviaQA closed-book).
 *
 * kg_eval_task is the entry point the CLI and the grid worker call: it loads
 * the task (io/tasks.h) unless the spec hands data in, builds each
 * document's prompt, tokenizes it the harness's way, scores it with the
 * log-likelihood engine (evaluate/loglik.h) or greedy generation, and
 * aggregates with the harness's metrics and standard errors.
 *
 * Metrics (values are fractions, as lm-eval prints them):
 *   MC tasks     acc, acc_norm (where the harness reports it); stderr = mean_stderr
 *   lambada      acc (the continuation is the greedy one), perplexity
 *                (exp of minus the mean per-document log-likelihood, stderr
 *                bootstrapped as the harness does)
 *   mmlu         acc (micro: all questions; the harness's group score, pooled
 *                stderr), acc_macro (mean of subject accuracies), per subject
 *   freebaseqa   acc (an answer occurs in the generated text), acc_llmkick
 *                (LLM-KICK's check, which also searches the prompt)
 *   triviaqa     em, f1 (SQuAD normalization, max over answer and aliases)
 *
 * Ownership: kg_task_result owns its subject array (kg_task_result_free). */
#ifndef KG_EVALUATE_TASKS_H
#define KG_EVALUATE_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "io/tasks.h"
#include "io/tokenizer.h"
#include "model/model.h"

typedef enum kg_mmlu_mode {
  KG_MMLU_LOGLIK = 0,   /* harness: log-likelihood of " A".." D" after the 5-shot prompt */
  KG_MMLU_GENERATE = 1, /* LLM-KICK: one greedy token, its last character against the letter */
} kg_mmlu_mode;

typedef struct kg_task_spec {
  const char *task;           /* "boolq", "piqa", ..., "mmlu", "freebaseqa", "triviaqa" */
  int64_t limit;              /* documents (MMLU: per subject); <= 0: all */
  int limit_random;           /* 0: the first `limit` (harness --limit); 1: a random subset drawn with `seed` */
  uint64_t seed;              /* random subset seed */
  int num_fewshot;            /* < 0: the task default (MMLU 5, others 0) */
  uint64_t fewshot_seed;      /* the harness's fewshot_random_seed (default 1234) */
  kg_mmlu_mode mmlu_mode;
  int batch;                  /* sequences per forward pass (default 8) */
  int add_bos;                /* < 0: each protocol's own (harness: none; LLM-KICK: the tokenizer's); 0/1 force */
  int bootstrap_iters;        /* perplexity stderr resamples (harness default 100000; 0 skips) */
  int max_len;                /* longest model input (<= 0: the model's context length) */
  size_t cache_bytes;         /* KV cache budget of the log-likelihood engine (0: 512 MiB) */
  int progress;               /* progress lines on stderr */
  const kg_task_data *data;   /* preloaded task data (borrowed), or NULL to load from the data directory */
  /* 1: never reuse KV-cache prefixes. On the CUDA backend cached passes run
   * with float32 activations and uncached ones with 16-bit activations, so
   * reuse moves scores by bf16 round-off (docs/tasks.md); 0 (default) reuses. */
  int no_prefix_reuse;
} kg_task_spec;

void kg_task_spec_default(kg_task_spec *s);

#define KG_MAX_METRICS 6

typedef struct kg_metric {
  char name[24];  /* "acc", "acc_norm", "perplexity", "em", "f1", ... */
  double value;
  double stderr;  /* NaN when not defined */
} kg_metric;

typedef struct kg_subject_result {
  char name[64];
  int64_t n;
  double acc;
  double stderr;
} kg_subject_result;

typedef struct kg_task_result {
  char task[32];
  int64_t n;                  /* documents scored */
  int num_fewshot;
  kg_metric metrics[KG_MAX_METRICS];
  int n_metrics;
  kg_subject_result *subjects; /* MMLU only */
  int n_subjects;
  double seconds;
} kg_task_result;

int kg_eval_task(kg_model *m, kg_tokenizer *tok, const kg_task_spec *spec, kg_task_result *res);
void kg_task_result_free(kg_task_result *r);
/* The metric called `name`, or NULL. */
const kg_metric *kg_task_result_metric(const kg_task_result *r, const char *name);

/* The documents a spec selects from n: ascending indices into *idx
 * (malloc'd, caller frees), *n_idx of them. */
int kg_task_select_docs(size_t n, int64_t limit, int limit_random, uint64_t seed, size_t **idx, size_t *n_idx);

#endif
