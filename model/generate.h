/* Autoregressive generation with a KV cache, for `kickgrid generate`,
 * self-generated calibration data and generative evaluations. */
#ifndef KG_MODEL_GENERATE_H
#define KG_MODEL_GENERATE_H

#include <stdint.h>

#include "model/model.h"
#include "model/sampling.h"

typedef struct kg_generation {
  int32_t *tokens; /* new tokens only, malloc'd, owned by the caller */
  int n_tokens;
  int stopped_at_eos;
} kg_generation;

/* Generates up to max_new tokens after each of n_seq prompts, advancing all
 * sequences in one batch (the weights are read once per step for all of
 * them). Prompts may differ in length: they are fed one position at a time
 * until each prompt is consumed (so results match single-sequence runs).
 * Stops a sequence at eos_id (< 0: never). out[n_seq] receives the results;
 * free each out[i].tokens. rng_seed seeds sequence i with rng_seed + i. */
int kg_generate_batch(kg_model *m, const int32_t *const *prompts, const int *prompt_lens, int n_seq, int max_new,
                      int eos_id, const kg_sampling *sampling, uint64_t rng_seed, kg_generation *out);

/* Single-sequence convenience. */
int kg_generate(kg_model *m, const int32_t *prompt, int n_prompt, int max_new, int eos_id, const kg_sampling *s,
                uint64_t rng_seed, kg_generation *out);

#endif
