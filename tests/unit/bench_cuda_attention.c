/* Device attention kernels timed at one shape (not a test: bench/gpu runs
 * it, alone or under ncu). Each variant (KG_CUDA_ATTN_VARIANT) runs on the
 * same random bf16 q/k/v, is timed over `reps` calls after one warm-up, and
 * its output is compared with the first variant's, so a new kernel shows a
 * wrong result at the real shape before anyone reads its time (the CPU
 * comparisons are in test_cuda_kernels).
 *
 *   bench_cuda_attention [T [heads [kv_heads [head_dim [reps [variants]]]]]]
 *   defaults: 4096 32 32 128 20 5,10,18   (variants: comma list)
 *
 * Prints one "BENCH attention" line per variant. Exits 77 without a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_testlib.h"
#include "io/log.h"

static int arg_int(int argc, char **argv, int i, int dflt) { return argc > i ? atoi(argv[i]) : dflt; }

int main(int argc, char **argv) {
  const int T = arg_int(argc, argv, 1, 4096), heads = arg_int(argc, argv, 2, 32);
  const int kv_heads = arg_int(argc, argv, 3, heads), head_dim = arg_int(argc, argv, 4, 128);
  const int reps = arg_int(argc, argv, 5, 20);
  const char *variants = argc > 6 ? argv[6] : "5,10,18";
  if (T < 1 || heads < 1 || kv_heads < 1 || heads % kv_heads || head_dim < 1 || reps < 1) {
    fprintf(stderr, "usage: %s [T [heads [kv_heads [head_dim [reps [variants]]]]]] (heads a multiple of kv_heads)\n",
            argv[0]);
    return 2;
  }
  kg_backend *be = ct_cuda_or_skip();
  if (!be) return 77;
  if (!be->ops->attention_h) {
    printf("SKIP: this backend has no 16-bit attention\n");
    return 77;
  }
  ct_seed();
  const size_t nq = (size_t)T * heads * head_dim, nkv = (size_t)T * kv_heads * head_dim;
  float *hq = ct_randn(nq, 1.0f), *hk = ct_randn(nkv, 1.0f), *hv = ct_randn(nkv, 1.0f);
  void *q = ct_dev16(be, hq, nq), *k = ct_dev16(be, hk, nkv), *v = ct_dev16(be, hv, nkv);
  void *out = be->ops->alloc(be, nq * 2);
  if (!out) {
    fprintf(stderr, "device allocation failed: %s\n", kg_error_message());
    return 1;
  }
  kg_attention_args at = {.q = q, .k_cache = k, .v_cache = v, .out = out, .n_seq = 1, .T = T, .pos0 = 0,
                          .kv_stride = T, .n_heads = heads, .n_kv_heads = kv_heads, .head_dim = head_dim};
  /* QK^T and PV over the causal half of the T x T scores */
  const double gflop = 2.0 * 2.0 * ((double)T * T / 2) * heads * head_dim / 1e9;
  float *first = NULL;
  int rc = 0;
  char *list = strdup(variants);
  for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    setenv("KG_CUDA_ATTN_VARIANT", tok, 1);
    ct_poison(be, out, nq * 2);
    if (be->ops->attention_h(be, &at) < 0 || be->ops->synchronize(be) < 0) {
      printf("BENCH attention v%s failed: %s\n", tok, kg_error_message());
      rc = 1;
      continue;
    }
    float *got = ct_host16(be, out, nq);
    size_t bad = 0;
    const double rel = first ? ct_rel(got, first, nq, &bad) : 0.0;
    const double t0 = kg_now();
    for (int r = 0; r < reps; r++)
      if (be->ops->attention_h(be, &at) < 0) break;
    be->ops->synchronize(be);
    const double ms = (kg_now() - t0) * 1e3 / reps;
    printf("BENCH attention v%-3s T=%d heads=%d/%d d=%d  %8.3f ms  %6.0f TFLOP/s  rel. to first %.2e%s\n", tok, T,
           heads, kv_heads, head_dim, ms, gflop / ms, rel, bad ? " (non-finite outputs)" : "");
    if (bad || rel > 2e-2) rc = 1;
    if (!first) first = got;
    else free(got);
  }
  free(list);
  free(first), free(hq), free(hk), free(hv);
  be->ops->release(be, q), be->ops->release(be, k), be->ops->release(be, v), be->ops->release(be, out);
  be->ops->destroy(be);
  return rc;
}
