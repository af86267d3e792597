/* CPython's `random` module, bit for bit: MT19937 seeded the way
 * random.Random(int) seeds it, random(), getrandbits-based randbelow, and the
 * two algorithms random.sample switches between, plus random.choices without
 * weights. lm-evaluation-harness draws few-shot examples with
 * random.Random(1234).sample(docs, k) and bootstraps perplexity stderrs with
 * random.Random(i).choices(xs, k=len(xs)); reproducing the generator makes
 * our few-shot prompts and stderrs the harness's own.
 *
 * Pure functions over caller-owned state; nothing allocates except
 * kg_pyrand_sample (see there). */
#ifndef KG_IO_TASKS_PYRANDOM_H
#define KG_IO_TASKS_PYRANDOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct kg_pyrand {
  uint32_t mt[624];
  int index;
} kg_pyrand;

/* random.Random(seed) for a non-negative integer seed (CPython hashes the
 * absolute value into 32-bit words, least significant first). */
void kg_pyrand_seed(kg_pyrand *r, uint64_t seed);
/* One 32-bit output of the generator (genrand_uint32). */
uint32_t kg_pyrand_u32(kg_pyrand *r);
/* random.random(): 53-bit float in [0, 1). */
double kg_pyrand_random(kg_pyrand *r);
/* random.getrandbits(k) for 0 <= k <= 64. */
uint64_t kg_pyrand_getrandbits(kg_pyrand *r, int k);
/* random._randbelow(n) for n >= 1 (rejection sampling on bit_length(n) bits). */
uint64_t kg_pyrand_randbelow(kg_pyrand *r, uint64_t n);
/* random.sample(range(n), k) into out[k]: the selected indices in draw order.
 * Uses CPython's pool algorithm or its set algorithm by the same size rule.
 * Returns 0, or -1 when k > n or scratch memory cannot be allocated (with
 * kg_error set). */
int kg_pyrand_sample(kg_pyrand *r, size_t n, size_t k, size_t *out);
/* random.randint(a, b), a <= b. */
int64_t kg_pyrand_randint(kg_pyrand *r, int64_t a, int64_t b);
/* random.choices(range(n), k=k) into out[k] (n >= 1). */
void kg_pyrand_choices(kg_pyrand *r, size_t n, size_t k, size_t *out);

#endif
