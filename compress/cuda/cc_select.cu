/* Magnitude and Wanda masks on the device, with masks.h's rules and tie
 * breaks: the threshold rule prunes every score <= the score of rank
 * floor(n*s); the per-row rule prunes floor(cols*s) weights per row, lower
 * column first among equal scores; N:M prunes the N smallest (score, column)
 * pairs of each group. Scores are float64 computed exactly as the host does
 * (|w| as double, times sqrt(scaler_row)), so the masks equal the host's bit
 * for bit given the same scaler_row. */
#include <stdlib.h>
#include <string.h>

#include "compress/cuda/cc_select.cuh"

struct mag_key {
  const float *W;
  __device__ unsigned operator()(int64_t i) const { return __float_as_uint(W[i]) & 0x7fffffffu; }
};

__global__ void k_zero_le(float *W, int64_t n, const cc_select_state *st) {
  const unsigned thresh = st->prefix;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    if ((__float_as_uint(W[i]) & 0x7fffffffu) <= thresh) W[i] = 0.0f;
}

/* One thread per group of m columns: kg_nm_select's N rounds of "smallest
 * remaining, lowest index on ties". m <= 64. */
__global__ void k_nm(float *W, int64_t rows, int64_t cols, int n, int m, const double *ss) {
  const int64_t groups = cols / m;
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * groups) return;
  const int64_t r = idx / groups, g = idx % groups;
  float *w = W + r * cols + g * m;
  const double *sg = ss ? ss + g * m : NULL;
  unsigned long long pruned = 0;
  for (int t = 0; t < n; t++) {
    int best = -1;
    double bs = 0.0;
    for (int j = 0; j < m; j++) {
      if ((pruned >> j) & 1ull) continue;
      const double s = sg ? fabs((double)w[j]) * sg[j] : fabs((double)w[j]);
      if (best < 0 || s < bs) {
        best = j;
        bs = s;
      }
    }
    pruned |= 1ull << best;
  }
  for (int j = 0; j < m; j++)
    if ((pruned >> j) & 1ull) w[j] = 0.0f;
}

#define ROW_THREADS 256

__device__ __forceinline__ unsigned long long wanda_key(const float *w, const double *ss, int64_t j) {
  return (unsigned long long)__double_as_longlong(fabs((double)w[j]) * ss[j]);
}

/* Per-row rule, one block per row: radix select of the score of rank k-1
 * over 64-bit keys (8 passes of 8 bits), then every key below it and the
 * lowest-column keys equal to it, k in all. */
__global__ void __launch_bounds__(ROW_THREADS) k_wanda_rows(float *W, int64_t cols, const double *ss, int64_t k) {
  float *w = W + (int64_t)blockIdx.x * cols;
  __shared__ unsigned h[256];
  __shared__ unsigned long long s_prefix;
  __shared__ long long s_kk, s_less, warp_tot[ROW_THREADS / 32];
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_kk = k - 1;
    s_less = 0;
  }
  for (int pass = 0; pass < 8; pass++) {
    const int shift = 56 - 8 * pass;
    for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
    __syncthreads();
    const unsigned long long prefix = s_prefix;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const unsigned long long key = wanda_key(w, ss, j);
      if (pass == 0 || (key >> (shift + 8)) == prefix) atomicAdd(&h[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      /* lane l owns bins 8l .. 8l+7. Every lane reads s_kk before the
       * owning lane may rewrite it: lanes of a warp need not run in step. */
      const int lane = threadIdx.x;
      const long long kk = s_kk;
      __syncwarp();
      long long own = 0;
      for (int b = 0; b < 8; b++) own += h[lane * 8 + b];
      long long x = own;
      for (int o = 1; o < 32; o <<= 1) {
        const long long y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
      }
      long long cum = x - own;
      if (kk >= cum && kk < cum + own) {
        int b = 0;
        for (; b < 7; b++) {
          if (kk < cum + (long long)h[lane * 8 + b]) break;
          cum += h[lane * 8 + b];
        }
        s_prefix = (prefix << 8) | (unsigned long long)(lane * 8 + b);
        s_kk = kk - cum;
        s_less += cum;
      }
    }
    __syncthreads();
  }
  const unsigned long long v = s_prefix;
  const long long need = k - s_less; /* keys equal to v that go, lowest columns first */
  const int64_t chunk = (cols + blockDim.x - 1) / blockDim.x;
  const int64_t j0 = threadIdx.x * chunk, j1 = j0 + chunk < cols ? j0 + chunk : cols;
  long long eq = 0;
  for (int64_t j = j0; j < j1; j++) eq += wanda_key(w, ss, j) == v;
  long long tot = 0;
  long long before = cc_block_exclusive_scan<ROW_THREADS>(eq, warp_tot, &tot);
  for (int64_t j = j0; j < j1; j++) {
    const unsigned long long key = wanda_key(w, ss, j);
    if (key < v) {
      w[j] = 0.0f;
    } else if (key == v && before < need) {
      w[j] = 0.0f;
      before++;
    }
  }
}

__global__ void k_count_zeros(const float *W, int64_t n, unsigned long long *count) {
  unsigned long long c = 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) c += W[i] == 0.0f;
  for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
  if ((threadIdx.x & 31) == 0 && c) atomicAdd(count, c);
}

__global__ void k_flag_nonfinite(const float *W, int64_t n, int *flags) {
  int bad = 0;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    if (!(fabsf(W[i]) <= FLT_MAX)) bad = 1;
  if (bad) flags[0] = 1;
}

/* bit (i % 32) of bits[i / 32] = (W[i] == 0), and the zeros counted into
 * *count; the loop bound is warp-uniform for the ballot. */
__global__ void k_zero_bits(const float *W, int64_t n, uint32_t *bits, unsigned long long *count) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  unsigned long long zeros = 0;
  for (int64_t base = (int64_t)blockIdx.x * blockDim.x; base < n; base += stride) {
    const int64_t i = base + threadIdx.x;
    const unsigned b = __ballot_sync(0xffffffffu, i < n && W[i] == 0.0f);
    if ((threadIdx.x & 31) == 0 && i < n) {
      bits[i >> 5] = b;
      zeros += (unsigned)__popc(b);
    }
  }
  if ((threadIdx.x & 31) == 0 && zeros) atomicAdd(count, zeros);
}

static int check_shape(int64_t rows, int64_t cols, const char *what) {
  if (rows <= 0 || cols <= 0 || rows * cols > (int64_t)INT32_MAX * 2)
    return kg_error(KG_ERR_ARG, "%s: bad shape %lldx%lld", what, (long long)rows, (long long)cols);
  return KG_OK;
}

extern "C" int kg_cc_magnitude_prune(kg_cc *cc, float *W, int64_t rows, int64_t cols, const kg_prune_opts *opts) {
  int rc = KG_OK;
  const int64_t n = rows * cols;
  CC_TRY(kg_prune_opts_check(opts, rows, cols, "magnitude"));
  CC_TRY(check_shape(rows, cols, "magnitude"));
  if (opts->prune_n != 0) {
    if (opts->prune_m > 64) return kg_error(KG_ERR_UNSUPPORTED, "device N:M needs M <= 64 (got %d)", opts->prune_m);
    k_nm<<<cc_blocks(rows * (cols / opts->prune_m), 256, 1u << 30), 256, 0, cc->stream>>>(W, rows, cols, opts->prune_n,
                                                                                          opts->prune_m, NULL);
    CC_LAUNCHED();
  } else if (opts->sparsity > 0.0) {
    cc_select_state *st = NULL;
    CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&st));
    CC_TRY(cc_select_kth(cc, mag_key{W}, n, (unsigned long long)(int64_t)((double)n * opts->sparsity), st));
    k_zero_le<<<cc_blocks(n, 256, 4096), 256, 0, cc->stream>>>(W, n, st);
    CC_LAUNCHED();
  }
done:
  return rc;
}

extern "C" int kg_cc_wanda_prune(kg_cc *cc, float *W, int64_t rows, int64_t cols, const double *sqrt_scaler,
                                 const kg_prune_opts *opts) {
  int rc = KG_OK;
  CC_TRY(kg_prune_opts_check(opts, rows, cols, "wanda"));
  CC_TRY(check_shape(rows, cols, "wanda"));
  if (opts->use_variant && opts->prune_n == 0)
    return kg_error(KG_ERR_UNSUPPORTED, "the Wanda variant runs on the host");
  if (opts->prune_n != 0) {
    if (opts->prune_m > 64) return kg_error(KG_ERR_UNSUPPORTED, "device N:M needs M <= 64 (got %d)", opts->prune_m);
    k_nm<<<cc_blocks(rows * (cols / opts->prune_m), 256, 1u << 30), 256, 0, cc->stream>>>(W, rows, cols, opts->prune_n,
                                                                                          opts->prune_m, sqrt_scaler);
    CC_LAUNCHED();
  } else {
    const int64_t k = (int64_t)((double)cols * opts->sparsity);
    /* KG_CC_WANDA_SELECT=radix keeps the older kernel (comparisons, tests) */
    const char *sel = getenv("KG_CC_WANDA_SELECT");
    const int radix = sel && !strcmp(sel, "radix");
    int shared_rc = KG_ERR_UNSUPPORTED;
    if (k > 0 && !radix) {
      shared_rc = cc_wanda_rows_shared(cc, W, rows, cols, sqrt_scaler, k);
      if (shared_rc < 0 && shared_rc != KG_ERR_UNSUPPORTED) return shared_rc;
    }
    if (k > 0 && shared_rc == KG_ERR_UNSUPPORTED) {
      k_wanda_rows<<<(unsigned)rows, ROW_THREADS, 0, cc->stream>>>(W, cols, sqrt_scaler, k);
      CC_LAUNCHED();
    }
  }
done:
  return rc;
}

extern "C" int kg_cc_count_zeros(kg_cc *cc, const float *W, int64_t n, int64_t *zeros) {
  int rc = KG_OK;
  unsigned long long *count = NULL, host = 0;
  CC_TRY(cc_scratch(cc, CC_SCRATCH_SMALL, 4096, (void **)&count));
  CC_CUDA(cudaMemsetAsync(count, 0, sizeof(*count), cc->stream));
  k_count_zeros<<<cc_blocks(n, 256, 2048), 256, 0, cc->stream>>>(W, n, count);
  CC_LAUNCHED();
  CC_TRY(kg_cc_download(cc, &host, count, sizeof(host)));
  *zeros = (int64_t)host;
done:
  return rc;
}

extern "C" int kg_cc_flag_nonfinite(kg_cc *cc, const float *W, int64_t n) {
  int rc = KG_OK;
  k_flag_nonfinite<<<cc_blocks(n, 256, 2048), 256, 0, cc->stream>>>(W, n, cc->flags);
  CC_LAUNCHED();
done:
  return rc;
}

extern "C" int kg_cc_zero_bitmask(kg_cc *cc, const float *W, int64_t n, uint32_t *bits, unsigned long long *count) {
  int rc = KG_OK;
  CC_CUDA(cudaMemsetAsync(count, 0, sizeof(*count), cc->stream));
  k_zero_bits<<<cc_blocks(n, 256, 4096), 256, 0, cc->stream>>>(W, n, bits, count);
  CC_LAUNCHED();
done:
  return rc;
}
