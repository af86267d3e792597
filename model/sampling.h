/* Token sampling with the Hugging Face generate() processor order:
 * repetition penalty, then temperature, top-k, top-p, then a draw from the
 * softmax. A seeded integer PRNG makes draws identical on every machine for
 * identical logits. */
#ifndef KG_MODEL_SAMPLING_H
#define KG_MODEL_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

typedef struct kg_rng {
  uint64_t s[4];
} kg_rng;

void kg_rng_seed(kg_rng *r, uint64_t seed);
uint64_t kg_rng_next(kg_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double kg_rng_uniform(kg_rng *r);
/* Uniform integer in [0, n), unbiased. */
uint64_t kg_rng_below(kg_rng *r, uint64_t n);

typedef struct kg_sampling {
  float temperature;        /* <= 0: greedy (argmax, lowest id on ties) */
  int top_k;                /* <= 0: off */
  float top_p;              /* >= 1: off */
  float repetition_penalty; /* 1: off */
} kg_sampling;

/* Picks the next token from logits[vocab] (modified in place). `history`
 * holds the ids the repetition penalty applies to (prompt and generated).
 * `scratch` must hold 2 * vocab floats' worth of space (see
 * kg_sampling_scratch_bytes). */
size_t kg_sampling_scratch_bytes(int vocab);
int32_t kg_sample(const kg_sampling *s, kg_rng *rng, float *logits, int vocab, const int32_t *history,
                  int n_history, void *scratch);
/* Index of the largest value, lowest index on ties. */
int32_t kg_argmax(const float *x, int n);

#endif
