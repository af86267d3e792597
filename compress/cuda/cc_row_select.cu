/* Wanda's per-row rule with each row's keys held in shared memory: prune the
 * k smallest (score, column) pairs of every row, the same set as the host's
 * kg_wanda_prune and as the radix kernel in cc_select.cu.
 *
 * Why not the radix select: it makes eight passes over a row and puts every
 * key through a shared-memory atomic, and scores bunch into a few exponents,
 * so most of those atomics hit one bin and serialize. Here a row is read from
 * global memory once. Keys are the bit patterns of non-negative doubles, so
 * their unsigned order is the scores' order, and a histogram of
 * (key - min) >> shift over 2048 bins spreads a row's keys evenly over
 * the bit patterns between its smallest and largest score. The bin that holds
 * rank k-1 then has a few dozen keys; they are sorted by (key, column) and the
 * first ones go. A bin that is still too full is histogrammed again on its own
 * range, down to a single value, whose lowest columns go first. */
#include "compress/cuda/cc_select.cuh"

#define RS_THREADS 256
#define RS_BINS 2048
#define RS_BIN_BITS 11
#define RS_CAP 1024 /* candidates sorted in shared memory; a power of two */

__device__ __forceinline__ unsigned long long rs_key(const float *w, const double *ss, int j) {
  return (unsigned long long)__double_as_longlong(fabs((double)w[j]) * ss[j]);
}

__device__ __forceinline__ int rs_bitlen(unsigned long long x) { return x ? 64 - __clzll(x) : 0; }

/* One block a row; dynamic shared memory: cols keys, then RS_CAP candidate
 * keys and RS_CAP candidate columns. */
__global__ void __launch_bounds__(RS_THREADS) k_wanda_rows_shared(float *W, int cols, const double *ss, int k) {
  extern __shared__ unsigned long long rs_mem[];
  unsigned long long *keys = rs_mem, *ckey = rs_mem + cols;
  int *ccol = (int *)(ckey + RS_CAP);
  __shared__ unsigned hist[RS_BINS];
  __shared__ unsigned long long red_lo[RS_THREADS / 32], red_hi[RS_THREADS / 32], s_lo, s_hi;
  __shared__ long long warp_tot[RS_THREADS / 32], s_less, s_r, s_cnt;
  __shared__ int s_n;
  float *w = W + (int64_t)blockIdx.x * cols;

  unsigned long long lo = ~0ull, hi = 0;
  for (int j = threadIdx.x; j < cols; j += RS_THREADS) {
    const unsigned long long key = rs_key(w, ss, j);
    keys[j] = key;
    lo = key < lo ? key : lo;
    hi = key > hi ? key : hi;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long a = __shfl_xor_sync(0xffffffffu, lo, o), b = __shfl_xor_sync(0xffffffffu, hi, o);
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
  if ((threadIdx.x & 31) == 0) {
    red_lo[threadIdx.x >> 5] = lo;
    red_hi[threadIdx.x >> 5] = hi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w8 = 1; w8 < RS_THREADS / 32; w8++) {
      lo = red_lo[w8] < lo ? red_lo[w8] : lo;
      hi = red_hi[w8] > hi ? red_hi[w8] : hi;
    }
    s_lo = red_lo[0] < lo ? red_lo[0] : lo;
    s_hi = red_hi[0] > hi ? red_hi[0] : hi;
    s_less = 0;
    s_r = k - 1;
    s_cnt = cols;
  }
  __syncthreads();

  /* Narrow [s_lo, s_hi] to the keys around rank s_r among those in it. */
  while (s_lo != s_hi && s_cnt > RS_CAP) {
    lo = s_lo;
    hi = s_hi;
    const int bits = rs_bitlen(hi - lo), shift = bits > RS_BIN_BITS ? bits - RS_BIN_BITS : 0;
    for (int b = threadIdx.x; b < RS_BINS; b += RS_THREADS) hist[b] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < cols; j += RS_THREADS) {
      const unsigned long long key = keys[j];
      if (key >= lo && key <= hi) atomicAdd(&hist[(key - lo) >> shift], 1u);
    }
    __syncthreads();
    const int per = RS_BINS / RS_THREADS, b0 = threadIdx.x * per;
    long long own = 0, tot = 0;
    for (int b = 0; b < per; b++) own += hist[b0 + b];
    long long cum = cc_block_exclusive_scan<RS_THREADS>(own, warp_tot, &tot);
    const long long r = s_r;
    __syncthreads();
    if (r >= cum && r < cum + own) {
      int b = 0;
      for (; b < per - 1; b++) {
        if (r < cum + (long long)hist[b0 + b]) break;
        cum += hist[b0 + b];
      }
      const unsigned long long nlo = lo + ((unsigned long long)(b0 + b) << shift);
      const unsigned long long width = (1ull << shift) - 1;
      s_lo = nlo;
      s_hi = hi - nlo < width ? hi : nlo + width;
      s_r = r - cum;
      s_less += cum;
      s_cnt = hist[b0 + b];
    }
    __syncthreads();
  }
  lo = s_lo;
  hi = s_hi;
  const long long need = k - s_less; /* keys in [lo, hi] that go, in (key, column) order */

  if (lo == hi) {
    /* One value: keys below it go, then its lowest columns. */
    const int chunk = (cols + RS_THREADS - 1) / RS_THREADS;
    const int j0 = threadIdx.x * chunk, j1 = j0 + chunk < cols ? j0 + chunk : cols;
    long long eq = 0, tot = 0;
    for (int j = j0; j < j1; j++) eq += keys[j] == lo;
    long long before = cc_block_exclusive_scan<RS_THREADS>(eq, warp_tot, &tot);
    for (int j = j0; j < j1; j++) {
      const unsigned long long key = keys[j];
      if (key < lo) {
        w[j] = 0.0f;
      } else if (key == lo && before < need) {
        w[j] = 0.0f;
        before++;
      }
    }
    return;
  }

  if (threadIdx.x == 0) s_n = 0;
  __syncthreads();
  for (int j = threadIdx.x; j < cols; j += RS_THREADS) {
    const unsigned long long key = keys[j];
    if (key < lo) {
      w[j] = 0.0f;
    } else if (key <= hi) {
      const int p = atomicAdd(&s_n, 1);
      ckey[p] = key;
      ccol[p] = j;
    }
  }
  __syncthreads();
  const int n = s_n;
  int size = 2;
  while (size < n) size <<= 1;
  for (int p = n + threadIdx.x; p < size; p += RS_THREADS) {
    ckey[p] = ~0ull;
    ccol[p] = 0x7fffffff;
  }
  __syncthreads();
  /* Bitonic sort of (key, column) ascending. */
  for (int span = 2; span <= size; span <<= 1)
    for (int half = span >> 1; half > 0; half >>= 1) {
      for (int t = threadIdx.x; t < size / 2; t += RS_THREADS) {
        const int i = (t / half) * 2 * half + (t % half), j = i + half;
        const int up = (i & span) == 0;
        const unsigned long long ki = ckey[i], kj = ckey[j];
        const int ci = ccol[i], cj = ccol[j];
        const int i_after = ki > kj || (ki == kj && ci > cj);
        if (i_after == up) {
          ckey[i] = kj;
          ckey[j] = ki;
          ccol[i] = cj;
          ccol[j] = ci;
        }
      }
      __syncthreads();
    }
  for (int p = threadIdx.x; p < need; p += RS_THREADS) w[ccol[p]] = 0.0f;
}

/* Shared memory a row of `cols` needs, beyond the kernel's static arrays. */
static size_t rs_shared_bytes(int64_t cols) {
  return (size_t)cols * sizeof(unsigned long long) + RS_CAP * (sizeof(unsigned long long) + sizeof(int));
}

int cc_wanda_rows_shared(kg_cc *cc, float *W, int64_t rows, int64_t cols, const double *sqrt_scaler, int64_t k) {
  int rc = KG_OK;
  int dev = 0, optin = 0;
  const size_t bytes = rs_shared_bytes(cols);
  CC_CUDA(cudaGetDevice(&dev));
  CC_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  /* the static arrays take about 19 KiB */
  if (cols > INT32_MAX || rows > INT32_MAX || bytes + 20 * 1024 > (size_t)optin) return KG_ERR_UNSUPPORTED;
  CC_CUDA(cudaFuncSetAttribute(k_wanda_rows_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  k_wanda_rows_shared<<<(unsigned)rows, RS_THREADS, bytes, cc->stream>>>(W, (int)cols, sqrt_scaler, (int)k);
  CC_LAUNCHED();
done:
  return rc;
}
