/* k-th smallest selection on the device, shared by the masks (cc_select.cu)
 * and the SparseGPT sweep (cc_obs.cu).
 *
 * Keys are the bit patterns of non-negative floats, whose unsigned order is
 * the order of the values. A radix select takes four 8-bit passes, each one
 * kernel: blocks histogram the digit of the keys that match the prefix found
 * so far, and the last block to finish picks the bin holding rank k (the
 * "last block" pattern: a fence, then a ticket counter). The result is the
 * exact k-th key, independent of the launch shape. */
#ifndef KG_COMPRESS_CUDA_CC_SELECT_CUH
#define KG_COMPRESS_CUDA_CC_SELECT_CUH

#include "compress/cuda/cc_internal.cuh"

typedef struct cc_select_state {
  unsigned prefix;         /* digits chosen so far; after 4 passes, the key */
  unsigned done;           /* blocks finished in the current pass */
  unsigned long long k;    /* rank still to find among keys matching prefix */
  unsigned hist[256];
} cc_select_state;

template <class Key>
__global__ void cc_k_select_pass(Key key, int64_t n, cc_select_state *st, int shift) {
  __shared__ unsigned h[256];
  __shared__ int last;
  for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
  __syncthreads();
  const unsigned prefix = st->prefix;
  const int hi = shift + 8;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  /* Scores cluster in a few exponents, so many lanes hit one bin: lanes
   * with equal bins are merged (match_any) into one shared atomic. The loop
   * bound is warp-uniform so every lane takes part in each match. */
  for (int64_t base = (int64_t)blockIdx.x * blockDim.x; base < n; base += stride) {
    const int64_t i = base + threadIdx.x;
    unsigned bin = 256u;
    if (i < n) {
      const unsigned kv = key(i);
      if (hi >= 32 || (kv >> hi) == prefix) bin = (kv >> shift) & 255u;
    }
    const unsigned peers = __match_any_sync(0xffffffffu, bin);
    if (bin < 256u && (threadIdx.x & 31) == (unsigned)(__ffs(peers) - 1)) atomicAdd(&h[bin], (unsigned)__popc(peers));
  }
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += blockDim.x)
    if (h[b]) atomicAdd(&st->hist[b], h[b]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&st->done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (last && threadIdx.x == 0) {
    volatile unsigned *hv = st->hist;
    unsigned long long k = st->k, cum = 0;
    unsigned b = 0;
    for (; b < 255; b++) {
      const unsigned c = hv[b];
      if (k < cum + c) break;
      cum += c;
    }
    st->prefix = (hi >= 32 ? 0u : prefix << 8) | b;
    st->k = k - cum;
    for (int j = 0; j < 256; j++) hv[j] = 0;
    st->done = 0;
    __threadfence();
  }
}

/* Keys already in memory. */
struct cc_array_key {
  const unsigned *keys;
  __device__ unsigned operator()(int64_t i) const { return keys[i]; }
};

static __global__ void cc_k_select_init(cc_select_state *st, unsigned long long k) {
  for (int b = threadIdx.x; b < 256; b += blockDim.x) st->hist[b] = 0;
  if (threadIdx.x == 0) {
    st->prefix = 0;
    st->done = 0;
    st->k = k;
  }
}

/* Queues the selection of the key of rank k (0-based) among key(0..n-1)
 * into st->prefix; st is device memory the caller reserved. */
template <class Key>
static int cc_select_kth(kg_cc *cc, Key key, int64_t n, unsigned long long k, cc_select_state *st) {
  int rc = KG_OK;
  /* A kernel, not a copy from the host: a pageable copy would wait for the stream. */
  cc_k_select_init<<<1, 256, 0, cc->stream>>>(st, k);
  CC_LAUNCHED();
  for (int pass = 0; pass < 4; pass++) {
    cc_k_select_pass<Key><<<cc_blocks(n, 256, 1024), 256, 0, cc->stream>>>(key, n, st, 24 - 8 * pass);
    CC_LAUNCHED();
  }
done:
  return rc;
}

/* Exclusive prefix sum of v over a block of THREADS threads (all must call);
 * warp_tot is shared scratch of THREADS / 32; *tot receives the block total. */
template <int THREADS>
__device__ long long cc_block_exclusive_scan(long long v, long long *warp_tot, long long *tot) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  long long x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const long long y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_tot[warp] = x;
  __syncthreads();
  long long before = 0, all = 0;
  for (int w = 0; w < THREADS / 32; w++) {
    if (w < warp) before += warp_tot[w];
    all += warp_tot[w];
  }
  __syncthreads();
  *tot = all;
  return before + x - v;
}

/* Wanda's per-row rule with rows held in shared memory (cc_row_select.cu):
 * KG_ERR_UNSUPPORTED, with nothing launched, where a row does not fit. */
int cc_wanda_rows_shared(kg_cc *cc, float *W, int64_t rows, int64_t cols, const double *sqrt_scaler, int64_t k);

#endif
