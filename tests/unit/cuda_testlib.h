/* Helpers shared by the CUDA tests (test_cuda_*.c): backend creation with a
 * clean skip, seeded random data, 16-bit rounding, device buffers poisoned
 * with NaN, and relative-error checks that print one PASS/FAIL line each. */
#ifndef KG_TESTS_CUDA_TESTLIB_H
#define KG_TESTS_CUDA_TESTLIB_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/dtype.h"
#include "io/error.h"
#include "kgtest.h"
#include "model/backend.h"

static uint64_t ct_state;

/* Fresh inputs on every run; KG_TEST_SEED replays one. */
static inline uint64_t ct_seed(void) {
  const char *s = getenv("KG_TEST_SEED");
  uint64_t seed = s && *s ? strtoull(s, NULL, 10) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
  ct_state = seed ? seed : 1;
  fprintf(stderr, "seed %llu (KG_TEST_SEED=%llu replays this run)\n", (unsigned long long)seed,
          (unsigned long long)seed);
  return seed;
}

static inline uint64_t ct_next(void) {
  uint64_t z = (ct_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline double ct_uniform(void) { return (double)(ct_next() >> 11) * (1.0 / 9007199254740992.0); }

/* Roughly normal: sum of four uniforms, scaled. */
static inline float ct_normal(float sd) {
  double s = ct_uniform() + ct_uniform() + ct_uniform() + ct_uniform() - 2.0;
  return (float)(s * 1.7320508 * sd);
}

static inline float *ct_randn(size_t n, float sd) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  if (!x) abort();
  for (size_t i = 0; i < n; i++) x[i] = ct_normal(sd);
  return x;
}

/* The values a 16-bit type keeps (round to nearest even), in place. */
static inline void ct_round16(kg_dtype t, float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    x[i] = t == KG_DT_F16 ? kg_f16_to_f32(kg_f32_to_f16(x[i])) : kg_bf16_to_f32(kg_f32_to_bf16(x[i]));
}

/* Device copies: float32, or 16-bit of type t. */
static inline float *ct_dev(kg_backend *be, const float *h, size_t n) {
  float *d = be->ops->alloc(be, (n ? n : 1) * sizeof(float));
  if (!d || be->ops->to_device(be, d, h, n * sizeof(float)) < 0) {
    fprintf(stderr, "device upload failed: %s\n", kg_error_message());
    abort();
  }
  return d;
}

static inline void *ct_dev16(kg_backend *be, const float *h, size_t n) {
  uint16_t *tmp = malloc((n ? n : 1) * 2);
  void *d = be->ops->alloc(be, (n ? n : 1) * 2);
  if (!tmp || !d || kg_convert_from_f32(be->act16, h, tmp, (int64_t)n) < 0 || be->ops->to_device(be, d, tmp, n * 2) < 0) {
    fprintf(stderr, "device upload failed: %s\n", kg_error_message());
    abort();
  }
  free(tmp);
  return d;
}

/* A device buffer of n float32 NaNs (bytes for 16-bit buffers: all-ones is NaN in both types). */
static inline void ct_poison(kg_backend *be, void *d, size_t bytes) {
  unsigned char *h = malloc(bytes ? bytes : 1);
  if (!h) abort();
  memset(h, 0xff, bytes);
  if (be->ops->to_device(be, d, h, bytes) < 0) abort();
  free(h);
}

static inline float *ct_host(kg_backend *be, const float *d, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof(float));
  if (!h || be->ops->to_host(be, h, d, n * sizeof(float)) < 0) {
    fprintf(stderr, "device download failed: %s\n", kg_error_message());
    abort();
  }
  return h;
}

static inline float *ct_host16(kg_backend *be, const void *d, size_t n) {
  uint16_t *tmp = malloc((n ? n : 1) * 2);
  float *h = malloc((n ? n : 1) * sizeof(float));
  if (!tmp || !h || be->ops->to_host(be, tmp, d, n * 2) < 0 || kg_dequantize(be->act16, tmp, h, (int64_t)n) < 0) {
    fprintf(stderr, "device download failed: %s\n", kg_error_message());
    abort();
  }
  free(tmp);
  return h;
}

/* ||out - ref|| / ||ref||, or +inf when out holds a non-finite value
 * (an element never written keeps its NaN poison). */
static inline double ct_rel(const float *out, const float *ref, size_t n, size_t *bad) {
  double num = 0.0, den = 0.0;
  size_t nonfinite = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i])) {
      nonfinite++;
      continue;
    }
    const double d = (double)out[i] - (double)ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  if (bad) *bad = nonfinite;
  if (nonfinite) return INFINITY;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int ct_pass, ct_fail;

/* One line per check: PASS/FAIL, the name, the error and its tolerance. */
static inline void ct_report(const char *name, double rel, double tol, size_t bad) {
  const int ok = rel <= tol;
  kgtest_checks++;
  if (ok) ct_pass++;
  else {
    ct_fail++;
    kgtest_failures++;
  }
  if (bad)
    printf("%s %-58s rel=inf (%zu elements unwritten or non-finite) tol=%.1e\n", ok ? "PASS" : "FAIL", name, bad, tol);
  else
    printf("%s %-58s rel=%.3e tol=%.1e\n", ok ? "PASS" : "FAIL", name, rel, tol);
  fflush(stdout);
}

static inline void ct_check(const char *name, const float *out, const float *ref, size_t n, double tol) {
  size_t bad = 0;
  double rel = ct_rel(out, ref, n, &bad);
  ct_report(name, rel, tol, bad);
}

/* The CUDA backend, or NULL after printing the skip line (no device / no CUDA build). */
static inline kg_backend *ct_cuda_or_skip(void) {
  kg_backend *be = NULL;
  if (kg_cuda_backend_create(0, &be) < 0) {
    printf("SKIP: no CUDA device (%s)\n", kg_error_message());
    return NULL;
  }
  return be;
}

static inline int ct_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, ct_pass, ct_fail);
  return kgtest_finish(name);
}

#endif
