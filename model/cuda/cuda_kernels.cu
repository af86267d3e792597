/* Element-wise and row-wise kernels of the CUDA backend: conversions,
 * embedding gather, norms, RoPE, SwiGLU, residual add, column sums. All
 * arithmetic is float32 (16-bit values are widened on load). */
#include "model/cuda/cuda_internal.h"
#include "model/cuda/cuda_types.cuh"

static unsigned grid_for(const kg_cuda_impl *c, size_t work, int threads) {
  size_t blocks = (work + threads - 1) / threads;
  size_t cap = (size_t)(c->sm_count > 0 ? c->sm_count : 132) * 16;
  if (blocks > cap) blocks = cap;
  return blocks ? (unsigned)blocks : 1u;
}

/* ---- float32 -> 16-bit, four at a time when aligned ---- */

template <typename T>
__global__ void k_f32_to_16(const float *__restrict__ x, T *__restrict__ y, size_t n, int vec) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (vec) {
    const size_t n4 = n / 4;
    for (size_t j = i; j < n4; j += stride) {
      float4 v = reinterpret_cast<const float4 *>(x)[j];
      uint2 o;
      o.x = kg_pack2<T>(v.x, v.y);
      o.y = kg_pack2<T>(v.z, v.w);
      reinterpret_cast<uint2 *>(y)[j] = o;
    }
    for (size_t j = n4 * 4 + i; j < n; j += stride) y[j] = kg_from_f<T>(x[j]);
  } else {
    for (size_t j = i; j < n; j += stride) y[j] = kg_from_f<T>(x[j]);
  }
}

int kg_cuda_f32_to_16(kg_cuda_impl *c, const float *x, void *y, size_t n) {
  if (!n) return KG_OK;
  const int vec = ((uintptr_t)x % 16 == 0) && ((uintptr_t)y % 8 == 0);
  KG_CUDA_DISPATCH16(c->wdtype, (k_f32_to_16<T16><<<grid_for(c, vec ? n / 4 + 1 : n, 256), 256, 0, c->ctx.stream>>>(
                                    x, (T16 *)y, n, vec)));
  KG_CUDA_LAUNCHED("f32_to_16");
  return KG_OK;
}

template <typename T>
__global__ void k_check_exact16(const float *__restrict__ x, const T *__restrict__ y, size_t n, int *flag) {
  int bad = 0;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    bad |= __float_as_uint(kg_to_f<T>(y[i])) != __float_as_uint(x[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

int kg_cuda_check_exact16(kg_cuda_impl *c, const float *x, const void *y, size_t n, int *dflag) {
  if (!n) return KG_OK;
  KG_CUDA_DISPATCH16(c->wdtype, (k_check_exact16<T16><<<grid_for(c, n, 256), 256, 0, c->ctx.stream>>>(
                                    x, (const T16 *)y, n, dflag)));
  KG_CUDA_LAUNCHED("check_exact16");
  return KG_OK;
}

template <typename T>
__global__ void k_16_to_f32(const T *__restrict__ y, float *__restrict__ x, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    x[i] = kg_to_f<T>(y[i]);
}

int kg_cuda_16_to_f32(kg_cuda_impl *c, const void *y, float *x, size_t n) {
  if (!n) return KG_OK;
  KG_CUDA_DISPATCH16(c->wdtype, (k_16_to_f32<T16><<<grid_for(c, n, 256), 256, 0, c->ctx.stream>>>((const T16 *)y, x, n)));
  KG_CUDA_LAUNCHED("16_to_f32");
  return KG_OK;
}

__global__ void k_f32_to_f64(const float *__restrict__ x, double *__restrict__ y, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = (double)x[i];
}

int kg_cuda_f32_to_f64(kg_cuda_impl *c, const float *x, double *y, size_t n) {
  if (!n) return KG_OK;
  k_f32_to_f64<<<grid_for(c, n, 256), 256, 0, c->ctx.stream>>>(x, y, n);
  KG_CUDA_LAUNCHED("f32_to_f64");
  return KG_OK;
}

/* ---- embedding gather: one block per token row ---- */

template <typename T>
__global__ void k_embed(const T *__restrict__ table, int dim, const int32_t *__restrict__ tokens, float *__restrict__ out) {
  const int64_t row = blockIdx.x;
  const T *src = table + (size_t)tokens[row] * dim;
  float *dst = out + (size_t)row * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = kg_to_f<T>(src[i]);
}

int kg_cuda_embed(kg_cuda_impl *c, const void *table, int dim, const int32_t *dtokens, int64_t n, float *out) {
  if (n <= 0) return KG_OK;
  if (n > INT32_MAX) return kg_error(KG_ERR_ARG, "embedding of %lld rows is too large", (long long)n);
  KG_CUDA_DISPATCH16(c->wdtype, (k_embed<T16><<<(unsigned)n, 256, 0, c->ctx.stream>>>((const T16 *)table, dim, dtokens, out)));
  KG_CUDA_LAUNCHED("embed");
  return KG_OK;
}

/* ---- norms: one block per row ---- */

__device__ __forceinline__ float block_sum(float v, float *red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  __syncthreads(); /* red may still be read from a previous call */
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = 0.0f;
  for (int w = 0; w < n_warps; w++) t += red[w];
  return t;
}

/* y = norm(x) * gain with the CPU's order of operations: (x * inv) * gain
 * for RMS, ((x - mean) * inv) * gain for gain-only LayerNorm. */
template <typename TOut, bool LAYER>
__global__ void k_norm(const float *__restrict__ x, const float *__restrict__ gain, int d, float eps,
                       float *__restrict__ y32, TOut *__restrict__ y16) {
  __shared__ float red[32];
  const float *xr = x + (size_t)blockIdx.x * d;
  float mean = 0.0f;
  if (LAYER) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
    mean = block_sum(s, red) / (float)d;
  }
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = xr[i] - mean;
    ss += v * v;
  }
  const float var = block_sum(ss, red) / (float)d;
  const float inv = 1.0f / sqrtf(var + eps);
  /* All reads of the row are done (block_sum synchronized), so y may alias x. */
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = (xr[i] - mean) * inv * gain[i];
    if (y32) y32[(size_t)blockIdx.x * d + i] = v;
    if (y16) y16[(size_t)blockIdx.x * d + i] = kg_from_f<TOut>(v);
  }
}

/* The same four values at a time (d % 4 == 0, 16-byte aligned rows), the
 * row held in registers between the passes (d <= 4 * NORM_VEC_MAX * threads). */
#define NORM_VEC_MAX 8
template <typename TOut, bool LAYER>
__global__ void k_norm4(const float *__restrict__ x, const float *__restrict__ gain, int d, float eps,
                        float *__restrict__ y32, TOut *__restrict__ y16) {
  __shared__ float red[32];
  const int d4 = d / 4;
  const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)blockIdx.x * d);
  float4 v[NORM_VEC_MAX];
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < NORM_VEC_MAX; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = i < d4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    s += v[j].x + v[j].y + v[j].z + v[j].w;
  }
  const float mean = LAYER ? block_sum(s, red) / (float)d : 0.0f;
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < NORM_VEC_MAX; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < d4) {
      const float a = v[j].x - mean, b = v[j].y - mean, e = v[j].z - mean, f = v[j].w - mean;
      ss += a * a + b * b + e * e + f * f;
    }
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, red) / (float)d + eps);
  const float4 *g4 = reinterpret_cast<const float4 *>(gain);
#pragma unroll
  for (int j = 0; j < NORM_VEC_MAX; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < d4) {
      const float4 g = g4[i];
      float4 o;
      o.x = (v[j].x - mean) * inv * g.x;
      o.y = (v[j].y - mean) * inv * g.y;
      o.z = (v[j].z - mean) * inv * g.z;
      o.w = (v[j].w - mean) * inv * g.w;
      if (y32) reinterpret_cast<float4 *>(y32 + (size_t)blockIdx.x * d)[i] = o;
      if (y16) {
        uint2 h;
        h.x = kg_pack2<TOut>(o.x, o.y);
        h.y = kg_pack2<TOut>(o.z, o.w);
        reinterpret_cast<uint2 *>(y16 + (size_t)blockIdx.x * d)[i] = h;
      }
    }
  }
}

int kg_cuda_norm(kg_cuda_impl *c, kg_norm_kind kind, const float *x, const float *gain, int64_t n, int d, float eps,
                 float *y32, void *y16) {
  if (n <= 0) return KG_OK;
  if (n > INT32_MAX) return kg_error(KG_ERR_ARG, "norm over %lld rows is too large", (long long)n);
  const int layer = kind != KG_NORM_RMS;
  const int vec = d % 4 == 0 && d <= 4 * NORM_VEC_MAX * 256 && (uintptr_t)x % 16 == 0 && (uintptr_t)gain % 16 == 0 &&
                  (uintptr_t)y32 % 16 == 0 && (uintptr_t)y16 % 8 == 0;
  if (vec) {
    /* enough threads that NORM_VEC_MAX float4 each cover the row */
    int threads = 32;
    while (threads < 256 && threads * 4 * NORM_VEC_MAX < d) threads *= 2;
    if (threads < 128 && d >= 512) threads = 128;
    KG_CUDA_DISPATCH16(c->wdtype, {
      if (layer) k_norm4<T16, true><<<(unsigned)n, threads, 0, c->ctx.stream>>>(x, gain, d, eps, y32, (T16 *)y16);
      else k_norm4<T16, false><<<(unsigned)n, threads, 0, c->ctx.stream>>>(x, gain, d, eps, y32, (T16 *)y16);
    });
    KG_CUDA_LAUNCHED("norm");
    return KG_OK;
  }
  const int threads = d >= 1024 ? 256 : d >= 256 ? 128 : 64;
  KG_CUDA_DISPATCH16(c->wdtype, {
    if (layer) k_norm<T16, true><<<(unsigned)n, threads, 0, c->ctx.stream>>>(x, gain, d, eps, y32, (T16 *)y16);
    else k_norm<T16, false><<<(unsigned)n, threads, 0, c->ctx.stream>>>(x, gain, d, eps, y32, (T16 *)y16);
  });
  KG_CUDA_LAUNCHED("norm");
  return KG_OK;
}

/* ---- rotate-half RoPE in place: one thread per (row, head, pair) ---- */

template <typename T>
__global__ void k_rope(T *__restrict__ x, int T_len, int pos0, int n_heads, int head_dim, kg_rope_freq f) {
  const int half = head_dim / 2;
  const int64_t row = blockIdx.x;
  /* The angle is a float32 product, as Hugging Face (and the CPU) compute it;
   * one sincos per (row, frequency), shared by every head. */
  const float pos = (float)(pos0 + (int)(row % T_len));
  T *base = x + (size_t)row * n_heads * head_dim;
  for (int k = threadIdx.x; k < half; k += blockDim.x) {
    float sn, cs;
    sincosf(pos * f.f[k], &sn, &cs);
    for (int h = threadIdx.y; h < n_heads; h += blockDim.y) {
      T *v = base + (size_t)h * head_dim;
      const float a = kg_to_f<T>(v[k]), b = kg_to_f<T>(v[k + half]);
      v[k] = kg_from_f<T>(a * cs - b * sn);
      v[k + half] = kg_from_f<T>(b * cs + a * sn);
    }
  }
}

/* The 16-bit path's RoPE: 8 values per 16-byte access, so each thread keeps
 * two loads of 16 bytes in flight (the one-value kernel above waits on
 * 2-byte loads and ran at half the copy bandwidth on a 7B layer). One block
 * per row; the row's angles are computed once into shared memory, with the
 * same float32 product and sincosf as the kernel above. */
#define ROPE_VEC_THREADS 256
template <typename T>
__global__ void __launch_bounds__(ROPE_VEC_THREADS)
    k_rope_vec8(T *__restrict__ x, int T_len, int pos0, int n_heads, int head_dim, kg_rope_freq f) {
  __shared__ float cs[KG_CUDA_MAX_HALF], sn[KG_CUDA_MAX_HALF];
  const int half = head_dim / 2, chunks = half / 8;
  const int64_t row = blockIdx.x;
  const float pos = (float)(pos0 + (int)(row % T_len));
  for (int k = threadIdx.x; k < half; k += blockDim.x) sincosf(pos * f.f[k], &sn[k], &cs[k]);
  __syncthreads();
  T *base = x + (size_t)row * n_heads * head_dim;
  for (int item = threadIdx.x; item < n_heads * chunks; item += blockDim.x) {
    const int h = item / chunks, k0 = (item % chunks) * 8;
    uint4 *pa = reinterpret_cast<uint4 *>(base + (size_t)h * head_dim + k0);
    uint4 *pb = reinterpret_cast<uint4 *>(base + (size_t)h * head_dim + k0 + half);
    uint4 va = *pa, vb = *pb;
    T *a = reinterpret_cast<T *>(&va), *b = reinterpret_cast<T *>(&vb);
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const float xa = kg_to_f<T>(a[i]), xb = kg_to_f<T>(b[i]), c = cs[k0 + i], s = sn[k0 + i];
      a[i] = kg_from_f<T>(xa * c - xb * s);
      b[i] = kg_from_f<T>(xb * c + xa * s);
    }
    *pa = va;
    *pb = vb;
  }
}

int kg_cuda_rope(kg_cuda_impl *c, void *x, int x16, int n_seq, int T, int pos0, int n_heads, int head_dim,
                 const float *inv_freq) {
  const int half = head_dim / 2;
  if (half > KG_CUDA_MAX_HALF || head_dim % 2)
    return kg_error(KG_ERR_UNSUPPORTED, "CUDA RoPE supports even head_dim up to %d, got %d", 2 * KG_CUDA_MAX_HALF, head_dim);
  const int64_t rows = (int64_t)n_seq * T;
  if (rows <= 0) return KG_OK;
  if (rows > INT32_MAX) return kg_error(KG_ERR_ARG, "RoPE over %lld rows is too large", (long long)rows);
  kg_rope_freq f;
  for (int i = 0; i < half; i++) f.f[i] = inv_freq[i];
  const int tx = half < 256 ? half : 256;
  int ty = 256 / tx;
  if (ty > n_heads) ty = n_heads;
  const dim3 block((unsigned)tx, (unsigned)(ty > 0 ? ty : 1));
  if (x16 && half % 8 == 0 && (uintptr_t)x % 16 == 0) {
    KG_CUDA_DISPATCH16(c->wdtype, (k_rope_vec8<T16><<<(unsigned)rows, ROPE_VEC_THREADS, 0, c->ctx.stream>>>(
                                      (T16 *)x, T, pos0, n_heads, head_dim, f)));
  } else if (x16) {
    KG_CUDA_DISPATCH16(c->wdtype, (k_rope<T16><<<(unsigned)rows, block, 0, c->ctx.stream>>>((T16 *)x, T, pos0, n_heads,
                                                                                            head_dim, f)));
  } else {
    k_rope<float><<<(unsigned)rows, block, 0, c->ctx.stream>>>((float *)x, T, pos0, n_heads, head_dim, f);
  }
  KG_CUDA_LAUNCHED("rope");
  return KG_OK;
}

/* ---- SwiGLU and residual add ---- */

template <typename T>
__global__ void k_swiglu(const T *__restrict__ gate, const T *__restrict__ up, int64_t n, T *out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = kg_to_f<T>(gate[i]);
    out[i] = kg_from_f<T>(g / (1.0f + expf(-g)) * kg_to_f<T>(up[i]));
  }
}

/* Eight 16-bit values per 16-byte access. */
template <typename T>
__global__ void k_swiglu8(const uint4 *__restrict__ gate, const uint4 *__restrict__ up, int64_t n8, uint4 *out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    uint4 g = gate[i], u = up[i], o;
    const T *gv = reinterpret_cast<const T *>(&g), *uv = reinterpret_cast<const T *>(&u);
    T *ov = reinterpret_cast<T *>(&o);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      const float a = kg_to_f<T>(gv[k]);
      ov[k] = kg_from_f<T>(a / (1.0f + expf(-a)) * kg_to_f<T>(uv[k]));
    }
    out[i] = o;
  }
}

int kg_cuda_swiglu(kg_cuda_impl *c, const void *gate, const void *up, int64_t n, void *out, int h16) {
  if (n <= 0) return KG_OK;
  const unsigned grid = grid_for(c, (size_t)n, 256);
  if (h16 && n % 8 == 0 && (uintptr_t)gate % 16 == 0 && (uintptr_t)up % 16 == 0 && (uintptr_t)out % 16 == 0) {
    KG_CUDA_DISPATCH16(c->wdtype, (k_swiglu8<T16><<<grid_for(c, (size_t)n / 8, 256), 256, 0, c->ctx.stream>>>(
                                      (const uint4 *)gate, (const uint4 *)up, n / 8, (uint4 *)out)));
  } else if (h16) {
    KG_CUDA_DISPATCH16(c->wdtype, (k_swiglu<T16><<<grid, 256, 0, c->ctx.stream>>>((const T16 *)gate, (const T16 *)up, n,
                                                                                  (T16 *)out)));
  } else {
    k_swiglu<float><<<grid, 256, 0, c->ctx.stream>>>((const float *)gate, (const float *)up, n, (float *)out);
  }
  KG_CUDA_LAUNCHED("swiglu");
  return KG_OK;
}

__global__ void k_add(float *__restrict__ y, const float *__restrict__ x, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] += x[i];
}

int kg_cuda_add(kg_cuda_impl *c, float *y, const float *x, int64_t n) {
  if (n <= 0) return KG_OK;
  k_add<<<grid_for(c, (size_t)n, 256), 256, 0, c->ctx.stream>>>(y, x, n);
  KG_CUDA_LAUNCHED("add");
  return KG_OK;
}

/* ---- column sums of squares in float64 (thread per column, coalesced rows) ---- */

__global__ void k_colsq(const float *__restrict__ x, int64_t n, int d, double *__restrict__ out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double acc = 0.0;
  for (int64_t r = 0; r < n; r++) {
    const double v = x[(size_t)r * d + j];
    acc += v * v;
  }
  out[j] = acc;
}

int kg_cuda_colsq(kg_cuda_impl *c, const float *x, int64_t n, int d, double *dcolsq) {
  k_colsq<<<(d + 127) / 128, 128, 0, c->ctx.stream>>>(x, n, d, dcolsq);
  KG_CUDA_LAUNCHED("colsq");
  return KG_OK;
}
