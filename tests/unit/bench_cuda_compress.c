/* Device compression steps timed at LLaMA-2-7B shapes (not a test: run by
 * bench/gpu/bench.sh's solver section, prints BENCH lines): the SparseGPT
 * sweep with and without a cached factorization, and Wanda's row select
 * (both kernels), zero bitmask with its download, and recon error. Exits 77
 * without a CUDA device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kgtest.h"

#ifndef KG_HAVE_CUDA
int main(void) {
  printf("SKIP: this build has no CUDA\n");
  return 77;
}
#else

#include "compress/cuda/cc.h"
#include "compress/masks.h"
#include "io/log.h"

#include "cc_testlib.h"

/* Device sweep timings at LLaMA-2-7B shapes (random Gram, 50% unstructured). */
static void bench(kg_cc *cc) {
  const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  const char *names[] = {"q/k/v/o 4096x4096", "gate/up 11008x4096", "down 4096x11008"};
  const int per_block[] = {4, 2, 1};
  double block_total = 0;
  for (int s = 0; s < 3; s++) {
    const int64_t rows = shapes[s][0], cols = shapes[s][1];
    float *G = NULL, *W = NULL;
    kg_cc_alloc((void **)&G, (size_t)(cols * cols) * sizeof(float), "G");
    kg_cc_alloc((void **)&W, (size_t)(rows * cols) * sizeof(float), "W");
    /* G = diagonal-dominant random-ish: built on the host in float32 rows */
    float *row = xmalloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++) {
      /* off-diagonal row sums below 1 < diagonal: positive definite */
      for (int64_t j = 0; j < cols; j++) row[j] = (float)(sin((double)(i * 31 + j * 17)) / (double)cols);
      row[i] = 10.0f + (float)(i % 5);
      test_memcpy(G + i * cols, row, (size_t)cols * sizeof(float), cudaMemcpyHostToDevice);
    }
    float *hw = xmalloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) hw[i] = 0.02f * gauss();
    kg_cc_obs_job job = {.W = W, .rows = rows, .cols = cols, .G = G, .n_samples = 128, .blocksize = 128,
                         .percdamp = 0.01, .max_damp_retries = 3, .sparsity = 0.5};
    kg_cc_factor f;
    memset(&f, 0, sizeof(f));
    kg_obs_result r;
    double t_first = 0, t_cached = 0;
    for (int rep = 0; rep < 3; rep++) {
      test_memcpy(W, hw, (size_t)(rows * cols) * sizeof(float), cudaMemcpyHostToDevice);
      const double t0 = kg_now();
      CHECK_OK(kg_cc_obs_sweep(cc, &job, rep == 1 ? NULL : &f, &r));
      const double t = kg_now() - t0;
      if (rep == 1) t_first = t;
      if (rep == 2) t_cached = t;
    }
    printf("BENCH sparsegpt %-20s factor+sweep %.1f ms, sweep with cached factor %.1f ms\n", names[s], 1e3 * t_first,
           1e3 * t_cached);
    block_total += per_block[s] * t_cached + (s == 1 ? 0 : t_first - t_cached);
    kg_cc_factor_free(&f);
    kg_cc_free(G);
    kg_cc_free(W);
    free(row);
    free(hw);
  }
  printf("BENCH sparsegpt one LLaMA-2-7B block (7 linears, factor per input) %.1f ms, x32 blocks %.2f s\n",
         1e3 * block_total, 32 * block_total);
}

/* Wanda's device steps at LLaMA-2-7B shapes: the row select (both kernels),
 * the zero bitmask with its download, and the recon error of the result. */
static void bench_wanda(kg_cc *cc) {
  const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  const char *names[] = {"q/k/v/o 4096x4096", "gate/up 11008x4096", "down 4096x11008"};
  const int per_block[] = {4, 2, 1};
  double total[3] = {0, 0, 0};
  for (int s = 0; s < 3; s++) {
    const int64_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
    const size_t bytes = (size_t)n * sizeof(float);
    float *hw = xmalloc(bytes), *W0 = NULL, *W = NULL, *G = NULL;
    double *ss = xmalloc((size_t)cols * sizeof(double)), *dss = NULL;
    uint32_t *bits = NULL, *hbits = xmalloc((size_t)(n / 32 + 4) * sizeof(uint32_t));
    for (int64_t i = 0; i < n; i++) hw[i] = 0.02f * gauss();
    for (int64_t j = 0; j < cols; j++) ss[j] = sqrt(0.5 + 4.0 * uni());
    W0 = dev_copy(hw, bytes);
    dss = (double *)dev_copy(ss, (size_t)cols * sizeof(double));
    kg_cc_alloc((void **)&W, bytes, "W");
    kg_cc_alloc((void **)&bits, (size_t)(n / 32 + 4) * sizeof(uint32_t), "bits");
    kg_cc_alloc((void **)&G, (size_t)(cols * cols) * sizeof(float), "G");
    cudaMemset(G, 0, (size_t)(cols * cols) * sizeof(float));
    const kg_prune_opts opts = {0.5, 0, 0, 0};
    double t_sel[2] = {0, 0}, t_bits = 0, t_recon = 0;
    for (int rep = 0; rep < 3; rep++)
      for (int radix = 0; radix < 2; radix++) {
        if (radix) setenv("KG_CC_WANDA_SELECT", "radix", 1);
        test_memcpy(W, W0, bytes, cudaMemcpyDeviceToDevice);
        CHECK_OK(kg_cc_sync(cc));
        double t0 = kg_now();
        CHECK_OK(kg_cc_wanda_prune(cc, W, rows, cols, dss, &opts));
        CHECK_OK(kg_cc_sync(cc));
        if (rep) t_sel[radix] += (kg_now() - t0) / 2;
        unsetenv("KG_CC_WANDA_SELECT");
        if (radix) continue;
        t0 = kg_now();
        CHECK_OK(kg_cc_zero_bitmask(cc, W, n, bits, (unsigned long long *)(bits + n / 32 + 2)));
        CHECK_OK(kg_cc_download(cc, hbits, bits, (size_t)(n / 32 + 4) * sizeof(uint32_t)));
        if (rep) t_bits += (kg_now() - t0) / 2;
        double err = 0, base = 0;
        t0 = kg_now();
        CHECK_OK(kg_cc_recon_error(cc, W0, W, rows, cols, G, &err, &base));
        if (rep) t_recon += (kg_now() - t0) / 2;
      }
    printf("BENCH wanda %-20s select %.2f ms (radix kernel %.2f ms), bitmask + download %.2f ms, recon error %.2f ms\n",
           names[s], 1e3 * t_sel[0], 1e3 * t_sel[1], 1e3 * t_bits, 1e3 * t_recon);
    total[0] += per_block[s] * t_sel[0];
    total[1] += per_block[s] * (t_bits + t_recon);
    total[2] += per_block[s] * t_sel[1];
    kg_cc_free(W0);
    kg_cc_free(W);
    kg_cc_free(G);
    kg_cc_free(bits);
    kg_cc_free(dss);
    free(hw);
    free(ss);
    free(hbits);
  }
  printf("BENCH wanda x32 LLaMA-2-7B blocks: select %.3f s (radix kernel %.3f s), bitmask + download + recon %.3f s\n",
         32 * total[0], 32 * total[2], 32 * total[1]);
}

/* Column norms of a forward's hook input (2 samples of 2048 tokens, bf16)
 * at the 7B widths, with each of the two kernels (KG_CC_STATS_VEC). */
static void bench_stats(kg_cc *cc) {
  const int64_t rows = 4096, widths[] = {4096, 11008};
  for (int w = 0; w < 2; w++) {
    const int64_t d = widths[w], n = rows * d;
    uint16_t *bits = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) bits[i] = kg_f32_to_bf16(gauss());
    void *dx = dev_copy(bits, (size_t)n * 2);
    double ms[2] = {0, 0};
    for (int vec = 0; vec < 2; vec++) {
      setenv("KG_CC_STATS_VEC", vec ? "1" : "0", 1);
      kg_cc_stats st;
      CHECK_OK(kg_cc_stats_init(cc, &st, d, 0));
      const int reps = 20;
      for (int r = 0; r <= reps; r++) {
        CHECK_OK(kg_cc_sync(cc));
        const double t0 = kg_now();
        CHECK_OK(kg_cc_stats_add16(cc, &st, NULL, dx, KG_DT_BF16, rows, 2));
        CHECK_OK(kg_cc_sync(cc));
        if (r) ms[vec] += 1e3 * (kg_now() - t0) / reps;
      }
      kg_cc_stats_free(&st);
    }
    unsetenv("KG_CC_STATS_VEC");
    printf("BENCH stats column norms %lld x %lld bf16: one column a thread %.3f ms (%.0f GB/s), 8 columns %.3f ms "
           "(%.0f GB/s)\n",
           (long long)rows, (long long)d, ms[0], 2e-6 * n / ms[0], ms[1], 2e-6 * n / ms[1]);
    kg_cc_free(dx);
    free(bits);
  }
}

int main(void) {
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    printf("SKIP: no CUDA device\n");
    return 77;
  }
  kg_cc *cc = NULL;
  CHECK_OK(kg_cc_create(-1, NULL, &cc));
  if (!cc) return 1;
  bench_stats(cc);
  bench(cc);
  bench_wanda(cc);
  kg_cc_destroy(cc);
  return kgtest_failures ? 1 : 0;
}
#endif
