/* Causal attention with GQA on the CUDA backend.
 *
 * Long sequences run a flash-style kernel on the tensor cores (mma.sync
 * m16n8k16, 16-bit operands, float32 accumulation): one CTA of 4 warps per
 * (sequence, head, 64 query rows), key/value tiles of 64 positions through
 * shared memory, online softmax in registers, so the score matrix never
 * exists in memory. 16-bit inputs are copied with cp.async, double-buffered;
 * float32 inputs are converted on load. Short query blocks (decode) and
 * head sizes the tensor-core kernel does not cover run a float32 kernel with
 * one warp per (query row, head). */
#include <math.h>

#include "model/cuda/cuda_internal.h"
#include "model/cuda/cuda_types.cuh"


/* ---- PTX wrappers ---- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

template <typename T16> __device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<__half>(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* ---- tile loads: rows [row0, row0 + 64) of a strided matrix, zero past n_valid ---- */

template <typename T16, int D, int ROWS, int NT>
__device__ __forceinline__ void tile_async(T16 *dst, const T16 *src, size_t stride, int row0, int n_valid) {
  constexpr int LD = D + 8, CH = D / 8; /* 16-byte chunks per row */
  for (int c = threadIdx.x; c < ROWS * CH; c += NT) {
    const int r = c / CH, col = (c % CH) * 8;
    const bool ok = r < n_valid;
    const T16 *g = ok ? src + (size_t)(row0 + r) * stride + col : src;
    cp_async16(dst + r * LD + col, g, ok ? 16 : 0);
  }
}

template <typename T16, int D, int ROWS, int NT>
__device__ __forceinline__ void tile_convert(T16 *dst, const float *src, size_t stride, int row0, int n_valid) {
  constexpr int LD = D + 8, CH = D / 8;
  for (int c = threadIdx.x; c < ROWS * CH; c += NT) {
    const int r = c / CH, col = (c % CH) * 8;
    uint4 o = make_uint4(0, 0, 0, 0);
    if (r < n_valid) {
      const float4 *g = reinterpret_cast<const float4 *>(src + (size_t)(row0 + r) * stride + col);
      const float4 a = g[0], b = g[1];
      o.x = kg_pack2<T16>(a.x, a.y);
      o.y = kg_pack2<T16>(a.z, a.w);
      o.z = kg_pack2<T16>(b.x, b.y);
      o.w = kg_pack2<T16>(b.z, b.w);
    }
    *reinterpret_cast<uint4 *>(dst + r * LD + col) = o;
  }
}

/* When the threads cover whole rows (NT a multiple of the row's chunks),
 * thread t always copies chunk t % CH of rows t / CH + i * (NT / CH): the
 * index arithmetic is done once, not per chunk and tile. */
template <typename T16, int D, int ROWS, int NT, typename TIn>
__device__ __forceinline__ void tile_load(T16 *dst, const TIn *src, size_t stride, int row0, int n_valid) {
  constexpr int LD = D + 8, CH = D / 8;
  if constexpr (NT % CH == 0 && ROWS % (NT / CH) == 0) {
    constexpr int RPI = NT / CH, ITERS = ROWS / RPI;
    const int r0 = threadIdx.x / CH, col = (threadIdx.x % CH) * 8;
    const TIn *g = src + (size_t)(row0 + r0) * stride + col;
    const size_t step = (size_t)RPI * stride;
    T16 *d = dst + r0 * LD + col;
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      const bool ok = r0 + i * RPI < n_valid;
      if constexpr (sizeof(TIn) == 2) {
        cp_async16(d + i * RPI * LD, ok ? (const T16 *)g + i * step : (const T16 *)src, ok ? 16 : 0);
      } else {
        uint4 o = make_uint4(0, 0, 0, 0);
        if (ok) {
          const float4 *f = reinterpret_cast<const float4 *>((const float *)g + i * step);
          const float4 a = f[0], b = f[1];
          o.x = kg_pack2<T16>(a.x, a.y);
          o.y = kg_pack2<T16>(a.z, a.w);
          o.z = kg_pack2<T16>(b.x, b.y);
          o.w = kg_pack2<T16>(b.z, b.w);
        }
        *reinterpret_cast<uint4 *>(d + i * RPI * LD) = o;
      }
    }
  } else if constexpr (sizeof(TIn) == 2) {
    tile_async<T16, D, ROWS, NT>(dst, (const T16 *)src, stride, row0, n_valid);
  } else {
    tile_convert<T16, D, ROWS, NT>(dst, (const float *)src, stride, row0, n_valid);
  }
}

/* 2^x on the special-function unit (inputs here are <= 0 or -inf). */
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <typename TOut> __device__ __forceinline__ void store2(TOut *p, float a, float b);
template <> __device__ __forceinline__ void store2<float>(float *p, float a, float b) {
  *reinterpret_cast<float2 *>(p) = make_float2(a, b);
}
template <> __device__ __forceinline__ void store2<__nv_bfloat16>(__nv_bfloat16 *p, float a, float b) {
  *reinterpret_cast<uint32_t *>(p) = kg_pack2<__nv_bfloat16>(a, b);
}
template <> __device__ __forceinline__ void store2<__half>(__half *p, float a, float b) {
  *reinterpret_cast<uint32_t *>(p) = kg_pack2<__half>(a, b);
}

/* ---- the tensor-core kernel ---- */

/* NW warps; each warp owns MT tiles of 16 query rows, so every K and V
 * fragment read from shared memory feeds MT tensor-core products (shared
 * memory reads, not the tensor cores, bound the MT = 1 kernel). QREG keeps
 * the query fragments in registers for the whole key loop (else they are
 * reloaded from shared memory per tile, freeing registers). */
template <int NW, int MT, bool QREG, int BN> struct flash_cfg {
  static constexpr int threads = 32 * NW;
  static constexpr int min_blocks = NW >= 8 ? 1 : MT > 1 ? 2 : QREG ? 2 : BN <= 32 ? 4 : 3;
};

/* BN: keys per tile. */
template <typename T16, int D, int NW, int MT, bool QREG, int BN, typename TIn, typename TOut>
__global__ void __launch_bounds__(flash_cfg<NW, MT, QREG, BN>::threads, flash_cfg<NW, MT, QREG, BN>::min_blocks)
    k_flash(const TIn *__restrict__ Q, const TIn *__restrict__ K, const TIn *__restrict__ V, TOut *__restrict__ O,
            kg_attn_params p, float scale_log2) {
  constexpr int WR = 16 * MT, BM = WR * NW, NT = 32 * NW; /* WR: query rows per warp */
  constexpr bool ASYNC = sizeof(TIn) == 2;
  constexpr int LD = D + 8;       /* padded rows: ldmatrix row addresses fall in distinct banks */
  constexpr int NBUF = ASYNC ? 2 : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T16 *Qs = reinterpret_cast<T16 *>(smem_raw);
  T16 *Ks = Qs + BM * LD;         /* [NBUF][BN][LD] */
  T16 *Vs = Ks + NBUF * BN * LD;  /* [NBUF][BN][LD] */

  const int tile = gridDim.x - 1 - blockIdx.x; /* the longest tiles start first */
  const int h = blockIdx.y, s = blockIdx.z;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int m0 = tile * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int kv_total = p.pos0 + p.T;

  const TIn *qb = Q + (size_t)s * p.T * p.q_stride + (size_t)h * D;
  const TIn *kb = K + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  const TIn *vb = V + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  TOut *ob = O + (size_t)s * p.T * p.q_stride + (size_t)h * D;

  const int q_rows = min(BM, p.T - m0);
  const int kv_end = min(p.pos0 + m0 + BM, kv_total); /* keys the tile's last row can see */
  const int n_tiles = (kv_end + BN - 1) / BN;

  tile_load<T16, D, BM, NT>(Qs, qb, p.q_stride, m0, q_rows);
  tile_load<T16, D, BN, NT>(Ks, kb, p.kv_width, 0, min(BN, kv_total));
  tile_load<T16, D, BN, NT>(Vs, vb, p.kv_width, 0, min(BN, kv_total));
  if constexpr (ASYNC) cp_async_commit();

  uint32_t qf[QREG ? MT : 1][QREG ? D / 16 : 1][4];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
  float m_run[MT][2], l_run[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) m_run[mt][0] = m_run[mt][1] = -INFINITY, l_run[mt][0] = l_run[mt][1] = 0.0f;
  const int w_row0 = warp * WR;                  /* the warp's first row in the tile */
  const int q_pos0 = p.pos0 + m0 + w_row0 + g;   /* this thread's first row; then +8, +16, ... */

  for (int kt = 0; kt < n_tiles; kt++) {
    const int buf = ASYNC ? (kt & 1) : 0;
    const int n0 = kt * BN;
    if constexpr (ASYNC) {
      if (kt + 1 < n_tiles) {
        const int n1 = n0 + BN;
        tile_load<T16, D, BN, NT>(Ks + (buf ^ 1) * BN * LD, kb, p.kv_width, n1, min(BN, kv_total - n1));
        tile_load<T16, D, BN, NT>(Vs + (buf ^ 1) * BN * LD, vb, p.kv_width, n1, min(BN, kv_total - n1));
      }
      cp_async_commit();
      cp_async_wait<1>();
    } else if (kt > 0) {
      __syncthreads(); /* everyone is done with the previous tile */
      tile_load<T16, D, BN, NT>(Ks, kb, p.kv_width, n0, min(BN, kv_total - n0));
      tile_load<T16, D, BN, NT>(Vs, vb, p.kv_width, n0, min(BN, kv_total - n0));
    }
    __syncthreads();
    if (QREG && kt == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
          ldmatrix_x4(qf[QREG ? mt : 0][QREG ? kk : 0],
                      Qs + (w_row0 + mt * 16 + (lane % 16)) * LD + kk * 16 + (lane / 16) * 8);
    }
    const T16 *Kt = Ks + buf * BN * LD, *Vt = Vs + buf * BN * LD;

    /* S = Q K^T: WR rows x BN keys per warp */
    float sc[MT][BN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < BN / 8; j++) sc[mt][j][0] = sc[mt][j][1] = sc[mt][j][2] = sc[mt][j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t qt[QREG ? 1 : MT][4];
      if (!QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          ldmatrix_x4(qt[QREG ? 0 : mt], Qs + (w_row0 + mt * 16 + (lane % 16)) * LD + kk * 16 + (lane / 16) * 8);
      }
#pragma unroll
      for (int nn = 0; nn < BN / 16; nn++) {
        uint32_t b[4];
        ldmatrix_x4(b, Kt + (nn * 16 + (lane % 8) + (lane / 16) * 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          const uint32_t *qa = QREG ? qf[QREG ? mt : 0][QREG ? kk : 0] : qt[QREG ? 0 : mt];
          mma16816<T16>(sc[mt][2 * nn], qa, b[0], b[1]);
          mma16816<T16>(sc[mt][2 * nn + 1], qa, b[2], b[3]);
        }
      }
    }

    /* causal mask, online softmax (rows g and g + 8 of each 16-row tile) on
     * raw scores; the scale is folded into the exponent: p = 2^(s*c - m*c). */
    if (n0 + BN - 1 > p.pos0 + m0 + w_row0 || n0 + BN > kv_total) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int key = n0 + j * 8 + 2 * t4 + (e & 1);
            const int qpos = q_pos0 + mt * 16 + (e >= 2 ? 8 : 0);
            if (key > qpos || key >= kv_total) sc[mt][j][e] = -INFINITY;
          }
        }
    }
    bool rescale = false;
    float alpha[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < BN / 8; j++) {
        mx[0] = fmaxf(mx[0], fmaxf(sc[mt][j][0], sc[mt][j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(sc[mt][j][2], sc[mt][j][3]));
      }
      float mneg[2];
#pragma unroll
      for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(m_run[mt][r], mx[r] * scale_log2); /* in scaled (log2) units */
        /* A row that has seen only masked keys keeps m = -inf; subtract 0 then. */
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        alpha[mt][r] = fast_exp2(m_run[mt][r] - base);
        rescale |= alpha[mt][r] != 1.0f;
        m_run[mt][r] = m_new;
        mneg[r] = -base;
      }
      float rs[2] = {0.0f, 0.0f};
#pragma unroll
      for (int j = 0; j < BN / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const float pv = fast_exp2(fmaf(sc[mt][j][e], scale_log2, mneg[e >> 1]));
          sc[mt][j][e] = pv;
          rs[e >> 1] += pv;
        }
      }
#pragma unroll
      for (int r = 0; r < 2; r++) l_run[mt][r] = l_run[mt][r] * alpha[mt][r] + rs[r];
    }
    /* Late in a long row the maximum rarely moves: skip the rescale when no
     * row of the warp needs it. */
    if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
          o[mt][j][0] *= alpha[mt][0];
          o[mt][j][1] *= alpha[mt][0];
          o[mt][j][2] *= alpha[mt][1];
          o[mt][j][3] *= alpha[mt][1];
        }
    }

    /* O += P V, P from the score registers (16-bit), V through ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = kg_pack2<T16>(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
        a[mt][1] = kg_pack2<T16>(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
        a[mt][2] = kg_pack2<T16>(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
        a[mt][3] = kg_pack2<T16>(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dn = 0; dn < D / 16; dn++) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, Vt + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dn * 16 + (lane / 16) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma16816<T16>(o[mt][2 * dn], a[mt], b[0], b[1]);
          mma16816<T16>(o[mt][2 * dn + 1], a[mt], b[2], b[3]);
        }
      }
    }
    if constexpr (ASYNC) __syncthreads(); /* the next iteration's copies overwrite this buffer */
  }

#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float l = l_run[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = 1.0f / l;
      const int t = m0 + w_row0 + mt * 16 + g + 8 * r;
      if (t < p.T) {
        TOut *row = ob + (size_t)t * p.q_stride;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
          store2<TOut>(row + j * 8 + 2 * t4, o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
      }
    }
}

/* ---- float32 fallback: one warp per (query row, head) ---- */

#define WARP_MAX_D 256

template <typename TIn, typename TOut>
__global__ void k_attn_warp(const TIn *__restrict__ Q, const TIn *__restrict__ K, const TIn *__restrict__ V,
                            TOut *__restrict__ O, kg_attn_params p, float scale) {
  __shared__ float qs[4][WARP_MAX_D];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t item = (int64_t)blockIdx.x * 4 + warp; /* (row, head) */
  const int64_t rows = (int64_t)p.n_seq * p.T;
  const bool active = item < rows * p.n_heads;
  const int D = p.head_dim;
  const int64_t row = active ? item / p.n_heads : 0;
  const int h = active ? (int)(item % p.n_heads) : 0;
  const int s = (int)(row / p.T), t = (int)(row % p.T);
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const TIn *q = Q + (size_t)row * p.q_stride + (size_t)h * D;
  for (int d = lane; d < D; d += 32) qs[warp][d] = active ? kg_to_f<TIn>(q[d]) : 0.0f;
  __syncwarp();
  if (!active) return;
  const TIn *kb = K + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  const TIn *vb = V + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  const int n_keys = p.pos0 + t + 1;
  float acc[WARP_MAX_D / 32];
#pragma unroll
  for (int i = 0; i < WARP_MAX_D / 32; i++) acc[i] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;
  for (int j0 = 0; j0 < n_keys; j0 += 32) {
    const int j = j0 + lane;
    float sc = -INFINITY;
    if (j < n_keys) {
      const TIn *kr = kb + (size_t)j * p.kv_width;
      float dot = 0.0f;
      for (int d = 0; d < D; d++) dot += qs[warp][d] * kg_to_f<TIn>(kr[d]);
      sc = dot * scale;
    }
    float mx = sc;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float m_new = fmaxf(m_run, mx); /* finite: key j0 is always visible */
    const float alpha = expf(m_run - m_new);
    const float pj = j < n_keys ? expf(sc - m_new) : 0.0f;
    float ps = pj;
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l_run = l_run * alpha + ps;
    m_run = m_new;
    const int n_here = min(32, n_keys - j0);
#pragma unroll
    for (int i = 0; i < WARP_MAX_D / 32; i++) acc[i] *= alpha;
    for (int k = 0; k < n_here; k++) {
      const float pk = __shfl_sync(0xffffffffu, pj, k);
      const TIn *vr = vb + (size_t)(j0 + k) * p.kv_width;
#pragma unroll
      for (int i = 0; i < WARP_MAX_D / 32; i++) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] += pk * kg_to_f<TIn>(vr[d]);
      }
    }
  }
  TOut *out = O + (size_t)row * p.q_stride + (size_t)h * D;
  const float inv = 1.0f / l_run;
#pragma unroll
  for (int i = 0; i < WARP_MAX_D / 32; i++) {
    const int d = lane + 32 * i;
    if (d < D) out[d] = kg_from_f<TOut>(acc[i] * inv);
  }
}

/* ---- dispatch ---- */

template <typename T16, int D, int NW, int MT, bool QREG, int BN, typename TIn, typename TOut>
static int launch_flash_cfg(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params &p) {
  constexpr int NBUF = sizeof(TIn) == 2 ? 2 : 1, BM = 16 * NW * MT;
  const size_t smem = (size_t)(BM + 2 * NBUF * BN) * (D + 8) * sizeof(T16);
  static bool configured = false; /* per instantiation; the attribute is per device function */
  if (!configured) {
    KG_CUDA(cudaFuncSetAttribute(k_flash<T16, D, NW, MT, QREG, BN, TIn, TOut>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem));
    configured = true;
  }
  dim3 grid((unsigned)((a->T + BM - 1) / BM), (unsigned)a->n_heads, (unsigned)a->n_seq);
  const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
  k_flash<T16, D, NW, MT, QREG, BN, TIn, TOut><<<grid, 32 * NW, smem, c->ctx.stream>>>(
      (const TIn *)a->q, (const TIn *)a->k_cache, (const TIn *)a->v_cache, (TOut *)a->out, p, scale_log2);
  KG_CUDA_LAUNCHED("flash attention");
  return KG_OK;
}

/* KG_CUDA_ATTN_VARIANT (benchmarks): 0 = 4 warps, queries in registers,
 * 64-key tiles; 1 = queries from shared memory; 2 = 8 warps; 3 = queries
 * from shared memory, 32-key tiles (4 CTAs per SM); 4 = registers, 32-key
 * tiles; 5-7 = two 16-row tiles per warp (128 query rows per CTA): 5 =
 * queries from shared memory, 64-key tiles; 6 = from shared memory, 32-key
 * tiles; 7 = registers, 32-key tiles; 8 = as 5 with 8 warps (256 query rows
 * per CTA); 9-23: the sm_90a wgmma kernels (hopper/attention_wgmma.cu),
 * 21 by default where they run. Unset elsewhere: 5 when its CTAs fill the device at least twice over,
 * else 0. On an H100, 5 takes 0.596 ms per LLaMA-2-7B layer at 4096 tokens
 * against 0.694 for 0, but 0.062 ms against 0.047 for SmolLM2's 9 heads at
 * 2048 tokens (144 CTAs of 128 rows on 132 SMs); bench/NOTES.md. */
static int env_variant(void) {
  const char *v = getenv("KG_CUDA_ATTN_VARIANT");
  return v && *v ? atoi(v) : -1;
}

static int attn_variant(const kg_cuda_impl *c, const kg_attention_args *a) {
  const int v = env_variant();
  if (v >= 0) return v;
  const int64_t ctas = (int64_t)a->n_seq * a->n_heads * ((a->T + 127) / 128);
  return ctas >= 4LL * c->sm_count ? 5 : 0; /* two CTAs of variant 5 fit an SM */
}

template <typename T16, int D, typename TIn, typename TOut>
static int launch_flash(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params &p) {
  switch (attn_variant(c, a)) {
  case 1: return launch_flash_cfg<T16, D, 4, 1, false, 64, TIn, TOut>(c, a, p);
  case 2: return launch_flash_cfg<T16, D, 8, 1, true, 64, TIn, TOut>(c, a, p);
  case 3: return launch_flash_cfg<T16, D, 4, 1, false, 32, TIn, TOut>(c, a, p);
  case 4: return launch_flash_cfg<T16, D, 4, 1, true, 32, TIn, TOut>(c, a, p);
  case 5: return launch_flash_cfg<T16, D, 4, 2, false, 64, TIn, TOut>(c, a, p);
  case 6: return launch_flash_cfg<T16, D, 4, 2, false, 32, TIn, TOut>(c, a, p);
  case 7: return launch_flash_cfg<T16, D, 4, 2, true, 32, TIn, TOut>(c, a, p);
  case 8: return launch_flash_cfg<T16, D, 8, 2, false, 64, TIn, TOut>(c, a, p);
  default: return launch_flash_cfg<T16, D, 4, 1, true, 64, TIn, TOut>(c, a, p);
  }
}

template <typename T16, typename TIo>
static int attention_typed(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params &p) {
  /* Tensor cores once a query tile is reasonably full; decode-sized blocks
   * would waste most of a 64-row tile. */
  if (a->T >= 16) {
#ifdef KG_HAVE_HOPPER_ATTENTION
    /* 9-23: the wgmma kernels' configurations (hopper/attention_wgmma.cu),
     * where device and shape allow; unset: 21, the overlapped kernel, which
     * an H100 runs in 0.333 ms a LLaMA-2-7B layer at 4096 tokens against
     * 0.494 for variant 5, and in 0.033 ms against 0.045 for variant 0 at
     * SmolLM2's shape (bench/NOTES.md, run G). Variants 0-8 ask for the
     * mma.sync kernels. */
    const int v = env_variant();
    if (sizeof(TIo) == 2 && (v < 0 || (v >= 9 && v <= 23))) {
      const int rc = kg_cuda_attention_wgmma(c, a, &p, v < 0 ? 21 : v);
      if (rc != KG_ERR_UNSUPPORTED) return rc;
    }
#endif
    switch (a->head_dim) {
    case 64: return launch_flash<T16, 64, TIo, TIo>(c, a, p);
    case 96: return launch_flash<T16, 96, TIo, TIo>(c, a, p);
    case 128: return launch_flash<T16, 128, TIo, TIo>(c, a, p);
    default: break;
    }
  }
  const int64_t items = (int64_t)a->n_seq * a->T * a->n_heads;
  const unsigned blocks = (unsigned)((items + 3) / 4);
  const float scale = 1.0f / sqrtf((float)a->head_dim);
  k_attn_warp<TIo, TIo><<<blocks, 128, 0, c->ctx.stream>>>((const TIo *)a->q, (const TIo *)a->k_cache,
                                                          (const TIo *)a->v_cache, (TIo *)a->out, p, scale);
  KG_CUDA_LAUNCHED("attention");
  return KG_OK;
}

int kg_cuda_attention(kg_cuda_impl *c, const kg_attention_args *a, int in16) {
  if (a->n_seq <= 0 || a->T <= 0) return KG_OK;
  if (a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads)
    return kg_error(KG_ERR_ARG, "attention: %d heads are not a multiple of %d KV heads", a->n_heads, a->n_kv_heads);
  if (a->head_dim > WARP_MAX_D || a->head_dim <= 0)
    return kg_error(KG_ERR_UNSUPPORTED, "CUDA attention supports head_dim up to %d, got %d", WARP_MAX_D, a->head_dim);
  if (a->pos0 < 0 || a->pos0 + a->T > a->kv_stride)
    return kg_error(KG_ERR_ARG, "attention: positions %d..%d exceed the cache stride %d", a->pos0, a->pos0 + a->T - 1,
                    a->kv_stride);
  if ((int64_t)a->n_seq * a->T * a->n_heads / 4 >= INT32_MAX || a->n_seq > 65535 || a->n_heads > 65535)
    return kg_error(KG_ERR_ARG, "attention batch of %d x %d rows x %d heads is too large", a->n_seq, a->T, a->n_heads);
  kg_attn_params p = {a->n_seq, a->T, a->pos0, a->kv_stride, a->n_heads, a->n_kv_heads, a->head_dim,
                      a->n_heads * a->head_dim, a->n_kv_heads * a->head_dim};
  int rc = KG_OK;
  KG_CUDA_DISPATCH16(c->wdtype, {
    rc = in16 ? attention_typed<T16, T16>(c, a, p) : attention_typed<T16, float>(c, a, p);
  });
  return rc;
}
