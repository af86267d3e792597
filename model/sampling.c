#include "model/sampling.h"

#include "model/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void kg_rng_seed(kg_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
uint64_t kg_rng_next(kg_rng *r) {
  uint64_t *s = r->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double kg_rng_uniform(kg_rng *r) { return (double)(kg_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t kg_rng_below(kg_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  /* Rejection sampling keeps the result unbiased for any n. */
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = kg_rng_next(r);
  while (x >= limit);
  return x % n;
}

int32_t kg_argmax(const float *x, int n) { return kg_row_argmax(x, n); }

size_t kg_sampling_scratch_bytes(int vocab) { return (size_t)vocab * (sizeof(float) + sizeof(int32_t)); }

typedef struct scored {
  float v;
  int32_t id;
} scored;

/* Descending by value, then ascending id, so equal logits order identically everywhere. */
static int cmp_desc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? 1 : -1;
  return x->id - y->id;
}

int32_t kg_sample(const kg_sampling *s, kg_rng *rng, float *logits, int vocab, const int32_t *history,
                  int n_history, void *scratch) {
  if (s->repetition_penalty != 1.0f) {
    /* Each distinct token is penalized once, as HF gathers/scatters by id. */
    unsigned char *seen = scratch;
    memset(seen, 0, (size_t)vocab);
    for (int i = 0; i < n_history; i++) {
      int32_t id = history[i];
      if (id < 0 || id >= vocab || seen[id]) continue;
      seen[id] = 1;
      float v = logits[id];
      logits[id] = v < 0 ? v * s->repetition_penalty : v / s->repetition_penalty;
    }
  }
  if (s->temperature <= 0.0f) return kg_argmax(logits, vocab);

  scored *cand = scratch;
  for (int i = 0; i < vocab; i++) cand[i] = (scored){logits[i] / s->temperature, i};
  int n = vocab;
  if (s->top_k > 0 && s->top_k < vocab) {
    /* HF keeps every token whose logit is >= the k-th largest (ties kept). */
    qsort(cand, (size_t)n, sizeof(scored), cmp_desc);
    float kth = cand[s->top_k - 1].v;
    int keep = s->top_k;
    while (keep < n && cand[keep].v >= kth) keep++;
    n = keep;
  } else {
    qsort(cand, (size_t)n, sizeof(scored), cmp_desc);
  }
  float mx = cand[0].v;
  double total = 0.0;
  for (int i = 0; i < n; i++) total += exp((double)cand[i].v - mx);
  if (s->top_p < 1.0f) {
    /* HF removes tokens whose ascending cumulative probability is <= 1 - top_p,
     * which keeps the smallest high-probability set reaching top_p. */
    double cum_from_top = 0.0;
    int keep = 0;
    for (; keep < n; keep++) {
      double p = exp((double)cand[keep].v - mx) / total;
      double tail_before = 1.0 - cum_from_top; /* ascending cumsum up to and including this token */
      if (tail_before <= 1.0 - s->top_p && keep > 0) break;
      cum_from_top += p;
    }
    n = keep > 0 ? keep : 1;
    total = 0.0;
    for (int i = 0; i < n; i++) total += exp((double)cand[i].v - mx);
  }
  double u = kg_rng_uniform(rng) * total, acc = 0.0;
  for (int i = 0; i < n; i++) {
    acc += exp((double)cand[i].v - mx);
    if (u < acc) return cand[i].id;
  }
  return cand[n - 1].id;
}
