/* Helpers shared by test_cuda_compress.c and bench_cuda_compress.c: a
 * seeded generator (KG_TEST_SEED sets it), PASS/FAIL lines counted by
 * kgtest.h, and device copies that abort on failure (test code only). */
#ifndef KG_TESTS_CC_TESTLIB_H
#define KG_TESTS_CC_TESTLIB_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "compress/cuda/cc.h"
#include "io/error.h"
#include "kgtest.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static inline double uni(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

static inline float gauss(void) {
  double u = uni(), v = uni();
  if (u < 1e-300) u = 1e-300;
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static inline void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static inline void report(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void report(int ok, const char *name, const char *fmt, ...) {
  va_list ap;
  printf("%s %-34s ", ok ? "PASS" : "FAIL", name);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  CHECK_MSG(ok, "%s", name);
}

/* cudaMemcpy runs on the legacy default stream, which the engine's
 * non-blocking streams do not wait for, and returns from a pageable upload
 * before its DMA has landed: a kernel launched next on the engine's stream
 * could read a reused buffer's old contents (seen: 11 of 180000 weights).
 * Synchronizing the device on both sides orders it with everything. */
static inline int test_memcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
  return cudaDeviceSynchronize() == cudaSuccess && cudaMemcpy(dst, src, bytes, kind) == cudaSuccess &&
                 cudaDeviceSynchronize() == cudaSuccess
             ? 0
             : -1;
}

static inline float *dev_copy(const void *host, size_t bytes) {
  void *d = NULL;
  if (kg_cc_alloc(&d, bytes, "test buffer") < 0 || test_memcpy(d, host, bytes, cudaMemcpyHostToDevice) < 0) {
    fprintf(stderr, "device copy failed: %s\n", kg_error_message());
    abort();
  }
  return d;
}

static inline void host_copy(void *host, const void *dev, size_t bytes) {
  if (test_memcpy(host, dev, bytes, cudaMemcpyDeviceToHost) < 0) abort();
}

#endif
