/* Calibration sets: nsamples windows of seqlen token ids, drawn from a source
 * the way the reference scripts draw them, reproducibly from a seed.
 *
 * Sources:
 *   c4          C4 train head: a random document longer than seqlen, then one
 *               random window of it (SparseGPT/Wanda get_c4, Python `random`).
 *   wikitext2   WikiText-2 train rows joined with " " (the test split when the
 *               train file is absent, with a warning); random windows.
 *   file:PATH   plain text: random windows; .jsonl ("text" field): as c4.
 *   task:NAME   a task's own examples with their gold answers, joined with
 *               blank lines; random windows.
 *   self        the model's own text: 2-token prefixes of C4 documents are
 *               continued by sampling (temperature 0.6, top-p 0.95, top-k 50,
 *               repetition penalty 1.2, up to seqlen new tokens); texts are
 *               ranked by the model's perplexity, the worst 20% dropped, and
 *               windows drawn from the rest.
 *   tokens:PATH a set exported with kg_calib_export (.npy, int32 [n, seqlen]).
 * sequential = 1 takes the first nsamples non-overlapping windows of the
 * tokenized source instead of random ones. */
#ifndef KG_COMPRESS_CALIB_H
#define KG_COMPRESS_CALIB_H

#include <stdint.h>

#include "io/tokenizer.h"
#include "model/model.h"

typedef struct kg_calib_spec {
  const char *source;
  int nsamples;   /* default 128 */
  int seqlen;     /* default 2048 */
  uint64_t seed;  /* default 0 */
  int sequential; /* default 0 (random) */
  /* self-generation */
  float self_temperature;        /* 0.6 */
  float self_top_p;              /* 0.95 */
  int self_top_k;                /* 50 */
  float self_repetition_penalty; /* 1.2 */
  double self_drop_fraction;     /* 0.2: share of highest-perplexity texts dropped */
  int self_batch;                /* sequences generated together (default 16) */
} kg_calib_spec;

typedef struct kg_calib_set {
  int nsamples;
  int seqlen;
  int32_t *tokens; /* [nsamples * seqlen], owned */
  char source[256];
  uint64_t seed;
  int sequential;
} kg_calib_set;

void kg_calib_spec_defaults(kg_calib_spec *s);
/* Builds a set; `model` is needed only for the self source (may be NULL
 * otherwise). *out is owned by the caller (kg_calib_free). */
int kg_calib_build(const kg_calib_spec *spec, kg_tokenizer *tok, kg_model *model, kg_calib_set **out);
void kg_calib_free(kg_calib_set *set);

/* NumPy .npy (int32, shape [nsamples, seqlen]); written atomically. */
int kg_calib_export(const kg_calib_set *set, const char *path);
int kg_calib_import(const char *path, kg_calib_set **out);

#endif
