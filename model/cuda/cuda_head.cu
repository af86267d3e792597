/* Row reductions of logits on the device: next-token NLL and Jensen-Shannon
 * divergence per row, with float64 accumulation (the CPU reference math of
 * model/cpu_backend.c; only the summation order differs). One block per row. */
#include <math.h>

#include "model/cuda/cuda_internal.h"

#define HEAD_THREADS 256
#define LN2_D 0.69314718055994530942

__device__ __forceinline__ float block_max(float v, float *red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float t = red[0];
  for (int w = 1; w < HEAD_THREADS / 32; w++) t = fmaxf(t, red[w]);
  return t;
}

__device__ __forceinline__ double block_sum_d(double v, double *red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double t = 0.0;
  for (int w = 0; w < HEAD_THREADS / 32; w++) t += red[w];
  return t;
}

/* (value, index) maximum with ties to the lower index; NaN never wins. */
__device__ __forceinline__ void arg_better(float &v, int &i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i) || (v != v && v2 == v2)) {
    v = v2;
    i = i2;
  }
}

__device__ __forceinline__ void block_argmax(float &v, int &i, float *redv, int *redi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
    arg_better(v, i, v2, i2);
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    redv[threadIdx.x / 32] = v;
    redi[threadIdx.x / 32] = i;
  }
  __syncthreads();
  v = redv[0];
  i = redi[0];
  for (int w = 1; w < HEAD_THREADS / 32; w++) arg_better(v, i, redv[w], redi[w]);
}

__device__ __forceinline__ double row_lse(const float *x, int n, float mx, double *red) {
  double s = 0.0;
  for (int i = threadIdx.x; i < n; i += HEAD_THREADS) s += exp((double)x[i] - (double)mx);
  return (double)mx + log(block_sum_d(s, red));
}

__global__ void __launch_bounds__(HEAD_THREADS) k_row_nll(const float *__restrict__ logits, int vocab,
                                                         const int32_t *__restrict__ targets, double *__restrict__ out) {
  __shared__ float redf[HEAD_THREADS / 32];
  __shared__ double redd[HEAD_THREADS / 32];
  const float *x = logits + (size_t)blockIdx.x * vocab;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += HEAD_THREADS) mx = fmaxf(mx, x[i]);
  mx = block_max(mx, redf);
  const double lse = row_lse(x, vocab, mx, redd);
  if (threadIdx.x == 0) out[blockIdx.x] = lse - (double)x[targets[blockIdx.x]];
}

__global__ void __launch_bounds__(HEAD_THREADS) k_row_js(const float *__restrict__ P, const float *__restrict__ Q, int vocab,
                                                        double *__restrict__ js, int32_t *__restrict__ argp,
                                                        int32_t *__restrict__ argq) {
  __shared__ float redf[HEAD_THREADS / 32];
  __shared__ int redi[HEAD_THREADS / 32];
  __shared__ double redd[HEAD_THREADS / 32];
  const float *p = P + (size_t)blockIdx.x * vocab, *q = Q + (size_t)blockIdx.x * vocab;
  float vp = -INFINITY, vq = -INFINITY;
  int ip = INT32_MAX, iq = INT32_MAX;
  for (int i = threadIdx.x; i < vocab; i += HEAD_THREADS) {
    arg_better(vp, ip, p[i], i);
    arg_better(vq, iq, q[i], i);
  }
  block_argmax(vp, ip, redf, redi);
  block_argmax(vq, iq, redf, redi);
  const double lse_p = row_lse(p, vocab, vp, redd);
  const double lse_q = row_lse(q, vocab, vq, redd);
  double acc = 0.0;
  for (int i = threadIdx.x; i < vocab; i += HEAD_THREADS) {
    const double lp = (double)p[i] - lse_p, lq = (double)q[i] - lse_q;
    if (lp == lq) continue;
    const double hi = lp > lq ? lp : lq, lo = lp > lq ? lq : lp;
    if (hi == -INFINITY || isnan(hi)) continue;
    /* log M = hi + log1p(e^(lo-hi)) - ln 2, as on the CPU */
    const double d = lo - hi, t = exp(d), L = log1p(t), e = exp(hi);
    double term = LN2_D - L;
    if (t > 0.0) term += t * (d + LN2_D - L);
    acc += e * term;
  }
  acc = 0.5 * block_sum_d(acc, redd);
  if (threadIdx.x == 0) {
    js[blockIdx.x] = acc < 0.0 ? 0.0 : acc > LN2_D ? LN2_D : acc;
    argp[blockIdx.x] = ip;
    argq[blockIdx.x] = iq;
  }
}

int kg_cuda_row_nll(kg_cuda_impl *c, const float *logits, int64_t n, int vocab, const int32_t *dtargets, double *dnll) {
  if (n <= 0) return KG_OK;
  if (n > INT32_MAX) return kg_error(KG_ERR_ARG, "row_nll over %lld rows is too large", (long long)n);
  k_row_nll<<<(unsigned)n, HEAD_THREADS, 0, c->ctx.stream>>>(logits, vocab, dtargets, dnll);
  KG_CUDA_LAUNCHED("row_nll");
  return KG_OK;
}

int kg_cuda_row_js(kg_cuda_impl *c, const float *p, const float *q, int64_t n, int vocab, double *djs, int32_t *dargp,
                   int32_t *dargq) {
  if (n <= 0) return KG_OK;
  if (n > INT32_MAX) return kg_error(KG_ERR_ARG, "row_js over %lld rows is too large", (long long)n);
  k_row_js<<<(unsigned)n, HEAD_THREADS, 0, c->ctx.stream>>>(p, q, vocab, djs, dargp, dargq);
  KG_CUDA_LAUNCHED("row_js");
  return KG_OK;
}
