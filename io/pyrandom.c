#include "io/pyrandom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"

enum { MT_N = 624, MT_M = 397 };

static void init_genrand(kg_pyrand *r, uint32_t s) {
  r->mt[0] = s;
  for (int i = 1; i < MT_N; i++) r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
  r->index = MT_N;
}

static void init_by_array(kg_pyrand *r, const uint32_t *key, int len) {
  init_genrand(r, 19650218u);
  int i = 1, j = 0;
  for (int k = MT_N > len ? MT_N : len; k; k--) {
    r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
    i++;
    j++;
    if (i >= MT_N) {
      r->mt[0] = r->mt[MT_N - 1];
      i = 1;
    }
    if (j >= len) j = 0;
  }
  for (int k = MT_N - 1; k; k--) {
    r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
    i++;
    if (i >= MT_N) {
      r->mt[0] = r->mt[MT_N - 1];
      i = 1;
    }
  }
  r->mt[0] = 0x80000000u; /* guarantees a non-zero state */
  r->index = MT_N;
}

void kg_pyrand_seed(kg_pyrand *r, uint64_t seed) {
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  init_by_array(r, key, key[1] ? 2 : 1);
}

uint32_t kg_pyrand_u32(kg_pyrand *r) {
  static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
  uint32_t y;
  if (r->index >= MT_N) {
    int kk;
    for (kk = 0; kk < MT_N - MT_M; kk++) {
      y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
      r->mt[kk] = r->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < MT_N - 1; kk++) {
      y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
      r->mt[kk] = r->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    y = (r->mt[MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
    r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    r->index = 0;
  }
  y = r->mt[r->index++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double kg_pyrand_random(kg_pyrand *r) {
  uint32_t a = kg_pyrand_u32(r) >> 5, b = kg_pyrand_u32(r) >> 6;
  return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

uint64_t kg_pyrand_getrandbits(kg_pyrand *r, int k) {
  if (k <= 0) return 0;
  if (k <= 32) return kg_pyrand_u32(r) >> (32 - k);
  uint64_t lo = kg_pyrand_u32(r); /* CPython fills 32-bit words least significant first */
  uint64_t hi = kg_pyrand_u32(r) >> (64 - (k > 64 ? 64 : k));
  return lo | (hi << 32);
}

static int bit_length(uint64_t n) {
  int k = 0;
  while (n) {
    k++;
    n >>= 1;
  }
  return k;
}

uint64_t kg_pyrand_randbelow(kg_pyrand *r, uint64_t n) {
  if (n == 0) return 0; /* undefined in CPython; never asked for */
  int k = bit_length(n);
  uint64_t v = kg_pyrand_getrandbits(r, k);
  while (v >= n) v = kg_pyrand_getrandbits(r, k);
  return v;
}

int kg_pyrand_sample(kg_pyrand *r, size_t n, size_t k, size_t *out) {
  if (k > n) return (kg_error(KG_ERR_ARG, "sample of %zu from a population of %zu", k, n), -1);
  /* CPython: a list pool when the population is small relative to k,
   * otherwise rejection against a set of chosen indices. */
  double setsize = 21.0;
  if (k > 5) setsize += pow(4.0, ceil(log((double)k * 3.0) / log(4.0)));
  if ((double)n <= setsize) {
    size_t *pool = malloc((n ? n : 1) * sizeof(*pool));
    if (!pool) return (kg_error(KG_ERR_NOMEM, "sample pool of %zu", n), -1);
    for (size_t i = 0; i < n; i++) pool[i] = i;
    for (size_t i = 0; i < k; i++) {
      size_t j = (size_t)kg_pyrand_randbelow(r, n - i);
      out[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
    free(pool);
    return 0;
  }
  for (size_t i = 0; i < k; i++) {
    size_t j;
    int seen;
    do {
      j = (size_t)kg_pyrand_randbelow(r, n);
      seen = 0;
      for (size_t q = 0; q < i && !seen; q++) seen = out[q] == j; /* k is small (few-shot counts) */
    } while (seen);
    out[i] = j;
  }
  return 0;
}

int64_t kg_pyrand_randint(kg_pyrand *r, int64_t a, int64_t b) {
  return a + (int64_t)kg_pyrand_randbelow(r, (uint64_t)(b - a) + 1u);
}

void kg_pyrand_choices(kg_pyrand *r, size_t n, size_t k, size_t *out) {
  double dn = (double)n;
  for (size_t i = 0; i < k; i++) out[i] = (size_t)floor(kg_pyrand_random(r) * dn);
}
