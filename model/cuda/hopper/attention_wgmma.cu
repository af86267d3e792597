/* Causal attention with GQA on Hopper's warpgroup tensor cores (wgmma,
 * sm_90a), for bf16 q/k/v/out. wgmma issues a 64 x N x 16 product per
 * warpgroup straight from shared memory, which mma.sync (../cuda_attention.cu,
 * about 280 TFLOP/s on an H100 at 4096 tokens, head_dim 128) has no way to.
 *
 * One CTA of two warpgroups per (sequence, head, 128 query rows); each
 * warpgroup owns 64 rows. Q and the K/V tiles of BN keys sit in shared
 * memory in the 128-byte swizzled layout wgmma reads (panels of 64 columns,
 * 16-byte chunk c of row r stored at chunk c ^ (r % 8)), filled with
 * cp.async. S = Q K^T reads both from shared memory; the online softmax runs
 * on S in registers, whose layout is that of wgmma's register A operand, so
 * P feeds O += P V without leaving registers (V is read transposed,
 * N-major). Three kernels: lock-step warpgroups (k_flash_wgmma), decoupled
 * ones behind mbarrier stages (k_flash_wgmma_async), and the default, which
 * overlaps each softmax with the products (k_flash_wgmma_overlap, variant
 * 21: 0.333 ms a 7B layer, bench/NOTES.md run G). Validated against the CPU
 * backend like every kernel (tests/unit/test_cuda_kernels.c).
 *
 * Compiled for sm_90a only (its own object library, model/CMakeLists.txt);
 * kg_cuda_attention_wgmma reports KG_ERR_UNSUPPORTED where it cannot run,
 * and the caller takes the mma.sync kernel. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/cuda/cuda_internal.h"
#include "model/cuda/cuda_types.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KG_HAVE_WGMMA_DEVICE 1
#endif

/* NWG warpgroups of 64 query rows per CTA. */
template <int D, int BN, int NWG = 2> struct wg_cfg {
  static constexpr int BM = 64 * NWG, THREADS = 128 * NWG, PANELS = D / 64;
  static constexpr int Q_PANEL = BM * 128, KV_PANEL = BN * 128; /* bytes: rows of 128 B */
  static constexpr int Q_BYTES = PANELS * Q_PANEL, KV_BYTES = PANELS * KV_PANEL;
  static constexpr int SMEM = Q_BYTES + 4 * KV_BYTES + 1024; /* K and V double-buffered; 1024 B alignment slack */
};

__global__ void k_wgmma_probe(int *flag) {
#ifdef KG_HAVE_WGMMA_DEVICE
  *flag = 1;
#else
  *flag = 0;
#endif
}

#ifdef KG_HAVE_WGMMA_DEVICE
/* Generated wrappers: wgmma m64nNk16, bf16 operands, float32 accumulators;
 * ss: A and B from shared memory, scale-d 0 overwrites d; rs_tb: A from
 * registers, B transposed (N-major in shared memory), accumulating. */
template <int N> __device__ __forceinline__ void wgmma_ss(float *d, uint64_t da, uint64_t db, int scale_d);
template <int N> __device__ __forceinline__ void wgmma_rs_tb(float *d, const uint32_t *a, uint64_t db);
template <> __device__ __forceinline__ void wgmma_ss<64>(float *d, uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_ss<128>(float *d, uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_rs_tb<64>(float *d, const uint32_t *a, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
template <> __device__ __forceinline__ void wgmma_rs_tb<128>(float *d, const uint32_t *a, uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

__device__ __forceinline__ uint32_t smem_u32addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Shared-memory matrix descriptor, 128-byte swizzle: start address, leading
 * and stride byte offsets (16-byte units). */
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
         (1ull << 62);
}

template <int N> __device__ __forceinline__ void zero_regs(float *r) {
#pragma unroll
  for (int i = 0; i < N; i++) r[i] = 0.0f;
}

/* Keeps the compiler from moving reads or writes of accumulator registers
 * across the asynchronous wgmma that owns them. */
template <int N> __device__ __forceinline__ void fence_regs(float *r) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}

/* Rows [row0, row0 + ROWS) of a [*, D] bf16 matrix (row stride `stride`
 * elements) into swizzled panels at dst; rows from n_valid on are zeros.
 * A thread copies the same 16-byte column chunk of every RSTEP-th row, and
 * RSTEP is a multiple of the swizzle's 8-row period, so its shared-memory
 * offsets and its source pointer only advance by constants: the address
 * work is done once per call, not once per copy (ncu showed integer
 * arithmetic as over half the instructions when it was per copy). */
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_sw128(uint32_t dst, const __nv_bfloat16 *src, size_t stride, int row0,
                                           int n_valid) {
  constexpr int CH = D / 8; /* 16-byte chunks per row */
  constexpr int RSTEP = NT / CH;
  static_assert(NT % CH == 0 && RSTEP % 8 == 0 && ROWS % RSTEP == 0, "copy layout");
  const unsigned tid = threadIdx.x % NT;
  const unsigned r0 = tid / CH, ch = tid % CH;
  const uint32_t d = dst + (ch >> 3) * (ROWS * 128) + r0 * 128 + (((ch & 7) ^ (r0 & 7)) << 4);
  const __nv_bfloat16 *g = src + (size_t)(row0 + (int)r0) * stride + ch * 8;
  const size_t gstep = (size_t)RSTEP * stride;
  if (n_valid >= ROWS) {
#pragma unroll
    for (int i = 0; i < ROWS / RSTEP; i++)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d + i * RSTEP * 128), "l"(g + i * gstep));
  } else {
#pragma unroll
    for (int i = 0; i < ROWS / RSTEP; i++) {
      const bool ok = (int)r0 + i * RSTEP < n_valid;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d + i * RSTEP * 128),
                   "l"(ok ? g + i * gstep : src), "r"(ok ? 16 : 0));
    }
  }
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* Everything a warpgroup needs to know about its tile. */
struct wg_tile {
  uint32_t sQ, sK, sV;   /* shared-memory bases (1024-aligned) */
  int wg, warp, g, t4;
  int m0, wrow0, q_pos0; /* CTA's first row; warp's first row; this thread's first query position */
  int wg_last_pos;       /* the warpgroup's last query position */
  int kv_total;
};

/* S = Q K^T for the warpgroup's 64 rows and the BN keys at kbuf: issued and
 * committed, not waited for. */
template <int D, int BN, int NWG>
__device__ __forceinline__ void issue_qk(float *sc, const wg_tile &w, uint32_t kbuf) {
  using C = wg_cfg<D, BN, NWG>;
  fence_regs<BN / 2>(sc);
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  /* The descriptors' address field holds (address >> 4) in its low 14 bits
   * and shared addresses stay below 256 KB, so stepping a descriptor is
   * adding (offset >> 4) to it. */
  const uint64_t da0 = sw128_desc(w.sQ + w.wg * 64 * 128, 16, 1024), db0 = sw128_desc(kbuf, 16, 1024);
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    const uint32_t koff = (uint32_t)(kk & 3) * 32; /* 16 columns = 32 bytes of a 128-byte row */
    wgmma_ss<BN>(sc, da0 + (((kk >> 2) * C::Q_PANEL + koff) >> 4), db0 + (((kk >> 2) * C::KV_PANEL + koff) >> 4),
                 kk > 0);
  }
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

/* Masks the scores of keys n0.. (causality, the end of the keys), updates
 * the running max and sum and turns sc into probabilities; alpha gets the
 * factor the rows' earlier output must be scaled by (rescale_o), which the
 * caller may apply later, before the next O += P V.
 * sc[j*4 + e]: row g (+8 for e >= 2), key n0 + 8j + 2*t4 + (e & 1). */
/* In-register tree over n values (n a power of two): depth log2(n)
 * instead of a chain of n dependent operations. */
template <int N, typename Op> __device__ __forceinline__ float tree_reduce(float *t, Op op) {
  if constexpr (N == 1) {
    return t[0];
  } else {
#pragma unroll
    for (int j = 0; j < N / 2; j++) t[j] = op(t[j], t[j + N / 2]);
    return tree_reduce<N / 2>(t, op);
  }
}

/* LAZY: a row keeps its running max until a tile's max exceeds it by more
 * than 8 (log2 units), so O is rescaled only then; the probabilities stay
 * below 2^8, well inside float and bf16, and the result is the same up to
 * rounding because O and the sum are scaled alike. */
template <int BN, bool LAZY = false>
__device__ __forceinline__ void softmax_scores(float *sc, float *alpha, float *m_run, float *l_run, const wg_tile &w,
                                               int n0, int pos0, float scale_log2) {
  if (n0 + BN - 1 > pos0 + w.wrow0 || n0 + BN > w.kv_total) {
#pragma unroll
    for (int j = 0; j < BN / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = n0 + j * 8 + 2 * w.t4 + (e & 1);
        const int qpos = w.q_pos0 + (e >= 2 ? 8 : 0);
        if (key > qpos || key >= w.kv_total) sc[j * 4 + e] = -INFINITY;
      }
  }
  const auto fmax2 = [](float a, float b) { return fmaxf(a, b); };
  const auto add2 = [](float a, float b) { return a + b; };
  float mx[2], t0[BN / 8], t1[BN / 8];
#pragma unroll
  for (int j = 0; j < BN / 8; j++) {
    t0[j] = fmaxf(sc[j * 4], sc[j * 4 + 1]);
    t1[j] = fmaxf(sc[j * 4 + 2], sc[j * 4 + 3]);
  }
  mx[0] = tree_reduce<BN / 8>(t0, fmax2);
  mx[1] = tree_reduce<BN / 8>(t1, fmax2);
  float mneg[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    float m_new = fmaxf(m_run[r], mx[r] * scale_log2);
    if (LAZY && m_new - m_run[r] <= 8.0f) m_new = m_run[r]; /* false while m_run is -inf */
    const float mb = m_new == -INFINITY ? 0.0f : m_new; /* a row with only masked keys so far */
    alpha[r] = exp2_approx(m_run[r] - mb);
    m_run[r] = m_new;
    mneg[r] = -mb;
  }
#pragma unroll
  for (int j = 0; j < BN / 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) sc[j * 4 + e] = exp2_approx(fmaf(sc[j * 4 + e], scale_log2, mneg[e >> 1]));
#pragma unroll
  for (int j = 0; j < BN / 8; j++) {
    t0[j] = sc[j * 4] + sc[j * 4 + 1];
    t1[j] = sc[j * 4 + 2] + sc[j * 4 + 3];
  }
  l_run[0] = l_run[0] * alpha[0] + tree_reduce<BN / 8>(t0, add2);
  l_run[1] = l_run[1] * alpha[1] + tree_reduce<BN / 8>(t1, add2);
}

/* o *= alpha per row, skipped when no row of the warp needs it. */
template <int D> __device__ __forceinline__ void rescale_o(float *o, const float *alpha) {
  if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      o[j * 4] *= alpha[0];
      o[j * 4 + 1] *= alpha[0];
      o[j * 4 + 2] *= alpha[1];
      o[j * 4 + 3] *= alpha[1];
    }
  }
}

template <int D, int BN>
__device__ __forceinline__ void online_softmax(float *sc, float *o, float *m_run, float *l_run, const wg_tile &w,
                                               int n0, int pos0, float scale_log2) {
  float alpha[2];
  softmax_scores<BN>(sc, alpha, m_run, l_run, w, n0, pos0, scale_log2);
  rescale_o<D>(o, alpha);
}

/* The probabilities as bf16 pairs: their layout is wgmma's register A
 * operand's, so P feeds O += P V without leaving registers. */
template <int BN> __device__ __forceinline__ void pack_p(uint32_t (*pa)[4], const float *sc) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; kk++) {
    pa[kk][0] = kg_pack2<__nv_bfloat16>(sc[8 * kk], sc[8 * kk + 1]);
    pa[kk][1] = kg_pack2<__nv_bfloat16>(sc[8 * kk + 2], sc[8 * kk + 3]);
    pa[kk][2] = kg_pack2<__nv_bfloat16>(sc[8 * kk + 4], sc[8 * kk + 5]);
    pa[kk][3] = kg_pack2<__nv_bfloat16>(sc[8 * kk + 6], sc[8 * kk + 7]);
  }
}

/* O += P V from packed P, V N-major; issued and committed, not waited for. */
template <int D, int BN>
__device__ __forceinline__ void issue_pv_packed(float *o, const uint32_t (*pa)[4], uint32_t vbuf) {
  using C = wg_cfg<D, BN>;
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  const uint64_t db0 = sw128_desc(vbuf, C::KV_PANEL, 1024);
#pragma unroll
  for (int kk = 0; kk < BN / 16; kk++) wgmma_rs_tb<D>(o, pa[kk], db0 + (uint64_t)(kk * 16 * 128 >> 4));
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int D, int BN> __device__ __forceinline__ void issue_pv(float *o, const float *sc, uint32_t vbuf) {
  uint32_t pa[BN / 16][4];
  pack_p<BN>(pa, sc);
  issue_pv_packed<D, BN>(o, pa, vbuf);
}

template <int D>
__device__ __forceinline__ void store_rows(const float *o, const float *l_run, const wg_tile &w, int T, int q_stride,
                                           __nv_bfloat16 *ob) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.0f / l;
    const int t = w.wrow0 + w.g + 8 * r;
    if (t < T) {
      __nv_bfloat16 *row = ob + (size_t)t * q_stride;
#pragma unroll
      for (int j = 0; j < D / 8; j++)
        *reinterpret_cast<uint32_t *>(row + j * 8 + 2 * w.t4) =
            kg_pack2<__nv_bfloat16>(o[j * 4 + 2 * r] * inv, o[j * 4 + 2 * r + 1] * inv);
    }
  }
}

__device__ __forceinline__ void cp_async_commit_wg() { asm volatile("cp.async.commit_group;\n" ::); }
/* Waits for this thread's copies, publishes them to the async proxy (wgmma
 * reads through it), then for everyone's. */
__device__ __forceinline__ void tiles_ready() {
  asm volatile("cp.async.wait_group 0;\n" ::);
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
}
/* The CTA's place in the grid (longest query tiles first), this thread's in its warpgroup, Q's shared
 * tile 1024-byte aligned (the swizzle's period) with K after it; Q/K/V/O at the sequence and head. */
struct wg_bases {
  const __nv_bfloat16 *q, *k, *v;
  __nv_bfloat16 *o;
};
template <int D, int BM>
__device__ __forceinline__ wg_bases wg_setup(wg_tile &w, const unsigned char *smem, uint32_t q_bytes,
                                             const __nv_bfloat16 *Q, const __nv_bfloat16 *K, const __nv_bfloat16 *V,
                                             __nv_bfloat16 *O, const kg_attn_params &p) {
  w.sQ = (smem_u32addr(smem) + 1023u) & ~1023u;
  w.sK = w.sQ + q_bytes;
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, s = blockIdx.z;
  const int kvh = h / (p.n_heads / p.n_kv_heads);
  const int lane = threadIdx.x % 32;
  w.wg = threadIdx.x / 128;
  w.warp = (threadIdx.x / 32) % 4;
  w.g = lane / 4;
  w.t4 = lane % 4;
  w.m0 = tile * BM;
  w.wrow0 = w.m0 + w.wg * 64 + w.warp * 16;
  w.q_pos0 = p.pos0 + w.wrow0 + w.g;
  w.wg_last_pos = p.pos0 + w.m0 + w.wg * 64 + 63;
  w.kv_total = p.pos0 + p.T;
  wg_bases b;
  b.q = Q + (size_t)s * p.T * p.q_stride + (size_t)h * D;
  b.k = K + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  b.v = V + (size_t)s * p.kv_stride * p.kv_width + (size_t)kvh * D;
  b.o = O + (size_t)s * p.T * p.q_stride + (size_t)h * D;
  return b;
}

/* Key tiles: the CTA's (n), this warpgroup's
 * (mine) and warpgroup 0's, which are a prefix of warpgroup 1's (wg0). */
struct wg_key_tiles {
  int n, mine, wg0;
};
template <int BN, int BM>
__device__ __forceinline__ wg_key_tiles key_tiles(const wg_tile &w, const kg_attn_params &p) {
  wg_key_tiles k;
  k.n = (min(p.pos0 + w.m0 + BM, w.kv_total) + BN - 1) / BN;
  k.mine = min(k.n, w.wg_last_pos / BN + 1);
  k.wg0 = min(k.n, (p.pos0 + w.m0 + 63) / BN + 1);
  return k;
}
#endif

/* PIPE: the warpgroup issues S for the next key tile before it runs the
 * softmax of the current one, so the tensor cores work through the softmax
 * (K runs one tile ahead of V in the double buffers). Without PIPE each
 * product is waited for before the softmax. MINB CTAs per SM: independent
 * CTAs drift apart, so one's softmax can overlap another's products. */
template <int D, int BN, bool PIPE, int NWG, int MINB>
__global__ void __launch_bounds__(128 * NWG, MINB)
    k_flash_wgmma(const __nv_bfloat16 *__restrict__ Q, const __nv_bfloat16 *__restrict__ K,
                  const __nv_bfloat16 *__restrict__ V, __nv_bfloat16 *__restrict__ O, kg_attn_params p,
                  float scale_log2) {
#ifdef KG_HAVE_WGMMA_DEVICE
  using C = wg_cfg<D, BN, NWG>;
  extern __shared__ unsigned char smem_raw[];
  wg_tile w;
  const wg_bases b = wg_setup<D, C::BM>(w, smem_raw, C::Q_BYTES, Q, K, V, O, p);
  w.sV = w.sK + 2 * C::KV_BYTES;
  const __nv_bfloat16 *qb = b.q, *kb = b.k, *vb = b.v;
  __nv_bfloat16 *ob = b.o;
  const int n_tiles = key_tiles<BN, C::BM>(w, p).n;
  auto kbuf = [&](int t) { return w.sK + (t & 1) * C::KV_BYTES; };
  auto vbuf = [&](int t) { return w.sV + (t & 1) * C::KV_BYTES; };
  auto load_k = [&](int t) { load_sw128<D, BN, C::THREADS>(kbuf(t), kb, p.kv_width, t * BN, min(BN, w.kv_total - t * BN)); };
  auto load_v = [&](int t) { load_sw128<D, BN, C::THREADS>(vbuf(t), vb, p.kv_width, t * BN, min(BN, w.kv_total - t * BN)); };
  auto wg_needs = [&](int t) { return t < n_tiles && t * BN <= w.wg_last_pos; }; /* warpgroup-uniform */

  load_sw128<D, C::BM, C::THREADS>(w.sQ, qb, p.q_stride, w.m0, min(C::BM, p.T - w.m0));
  load_k(0);
  load_v(0);
  cp_async_commit_wg();

  float o[D / 2], sc[BN / 2];
  zero_regs<D / 2>(o);
  zero_regs<BN / 2>(sc);
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  if constexpr (PIPE) {
    if (n_tiles > 1) load_k(1);
    cp_async_commit_wg();
    tiles_ready();
    issue_qk<D, BN, NWG>(sc, w, kbuf(0)); /* every warpgroup sees key 0 */
    wgmma_wait_all();
    fence_regs<BN / 2>(sc);
    float sn[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; i++) sn[i] = 0.0f;
    for (int kt = 0; kt < n_tiles; kt++) {
      /* ready: K of kt + 1 and V of kt; free: K of kt (S done) and V of kt - 1 */
      tiles_ready();
      if (kt + 2 < n_tiles) load_k(kt + 2);
      if (kt + 1 < n_tiles) load_v(kt + 1);
      cp_async_commit_wg();
      if (!wg_needs(kt)) continue;
      const bool next = wg_needs(kt + 1);
      if (next) issue_qk<D, BN, NWG>(sn, w, kbuf(kt + 1));
      online_softmax<D, BN>(sc, o, m_run, l_run, w, kt * BN, p.pos0, scale_log2);
      issue_pv<D, BN>(o, sc, vbuf(kt));
      wgmma_wait_all();
      fence_regs<D / 2>(o);
      if (next) {
        fence_regs<BN / 2>(sn);
#pragma unroll
        for (int i = 0; i < BN / 2; i++) sc[i] = sn[i];
      }
    }
  } else {
    for (int kt = 0; kt < n_tiles; kt++) {
      tiles_ready();
      if (kt + 1 < n_tiles) {
        load_k(kt + 1);
        load_v(kt + 1);
      }
      cp_async_commit_wg();
      if (!wg_needs(kt)) continue;
      issue_qk<D, BN, NWG>(sc, w, kbuf(kt));
      wgmma_wait_all();
      fence_regs<BN / 2>(sc);
      online_softmax<D, BN>(sc, o, m_run, l_run, w, kt * BN, p.pos0, scale_log2);
      issue_pv<D, BN>(o, sc, vbuf(kt));
      wgmma_wait_all();
      fence_regs<D / 2>(o);
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  store_rows<D>(o, l_run, w, p.T, p.q_stride, ob);
#endif
}

#ifdef KG_HAVE_WGMMA_DEVICE
/* mbarrier and named-barrier wrappers for the decoupled kernel below. */
__device__ __forceinline__ void mbar_init(uint32_t bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
/* Spins until the phase of the given parity has completed. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, unsigned parity) {
  asm volatile(
      "{\n.reg .pred ready;\n"
      "mbar_wait_retry:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 ready, [%0], %1;\n"
      "@!ready bra mbar_wait_retry;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
/* Arrives on bar once this thread's earlier cp.async copies have landed. */
__device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }
#endif

/* The two warpgroups decoupled: K/V tiles go through STAGES buffers whose
 * "full" mbarriers complete when every thread's cp.async copies have landed
 * and whose "empty" mbarriers complete when both warpgroups are done with
 * them, so a warpgroup may run up to STAGES - 1 tiles ahead of the other
 * instead of meeting it at a __syncthreads every tile. With PP the
 * warpgroups also take turns issuing S = Q K^T (named barriers 1 and 2,
 * FlashAttention-3's ping-pong), so one's softmax runs while the other's
 * products do. Each thread refills the stage of tile t - 1 after finishing
 * tile t, so the refill never waits on the warpgroup behind for long. */
template <int D, int BN, int STAGES, bool PP>
__global__ void __launch_bounds__(256, 1)
    k_flash_wgmma_async(const __nv_bfloat16 *__restrict__ Q, const __nv_bfloat16 *__restrict__ K,
                        const __nv_bfloat16 *__restrict__ V, __nv_bfloat16 *__restrict__ O, kg_attn_params p,
                        float scale_log2) {
#ifdef KG_HAVE_WGMMA_DEVICE
  using C = wg_cfg<D, BN, 2>;
  extern __shared__ unsigned char smem_raw[];
  wg_tile w;
  const wg_bases b = wg_setup<D, C::BM>(w, smem_raw, C::Q_BYTES, Q, K, V, O, p);
  const uint32_t bars = w.sK + STAGES * 2 * C::KV_BYTES;
  const __nv_bfloat16 *qb = b.q, *kb = b.k, *vb = b.v;
  __nv_bfloat16 *ob = b.o;
  const wg_key_tiles kt = key_tiles<BN, C::BM>(w, p);
  const int n_tiles = kt.n, my_tiles = kt.mine, shared_tiles = kt.wg0;
  auto kst = [&](int t) { return w.sK + (uint32_t)(t % STAGES) * 2 * C::KV_BYTES; };
  auto full = [&](int t) { return bars + 8u * (uint32_t)(t % STAGES); };
  auto empty = [&](int t) { return bars + 8u * (uint32_t)(STAGES + t % STAGES); };
  auto load_tile = [&](int t) {
    const int valid = min(BN, w.kv_total - t * BN);
    load_sw128<D, BN, C::THREADS>(kst(t), kb, p.kv_width, t * BN, valid);
    load_sw128<D, BN, C::THREADS>(kst(t) + C::KV_BYTES, vb, p.kv_width, t * BN, valid);
    cp_async_arrive(full(t));
  };

  if (threadIdx.x == 0)
    for (int st = 0; st < STAGES; st++) {
      mbar_init(full(st), C::THREADS);
      mbar_init(empty(st), C::THREADS);
    }
  load_sw128<D, C::BM, C::THREADS>(w.sQ, qb, p.q_stride, w.m0, min(C::BM, p.T - w.m0));
  cp_async_commit_wg();
  tiles_ready(); /* Q, and the barriers' initialization, seen by all */
  for (int t = 0; t < STAGES && t < n_tiles; t++) load_tile(t);

  float o[D / 2], sc[BN / 2];
  zero_regs<D / 2>(o);
  zero_regs<BN / 2>(sc);
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  if (PP && w.wg == 1) named_arrive(1); /* warpgroup 0 issues first */
  for (int t = 0; t < n_tiles; t++) {
    if (t < my_tiles) {
      mbar_wait(full(t), (unsigned)(t / STAGES) & 1u);
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      const bool turns = PP && t < shared_tiles;
      if (turns) named_sync(1 + w.wg);
      issue_qk<D, BN, 2>(sc, w, kst(t));
      if (turns && !(w.wg == 1 && t == shared_tiles - 1)) named_arrive(2 - w.wg);
      wgmma_wait_all();
      fence_regs<BN / 2>(sc);
      online_softmax<D, BN>(sc, o, m_run, l_run, w, t * BN, p.pos0, scale_log2);
      issue_pv<D, BN>(o, sc, kst(t) + C::KV_BYTES);
      wgmma_wait_all();
      fence_regs<D / 2>(o);
    }
    mbar_arrive(empty(t));
    if (t >= 1 && t - 1 + STAGES < n_tiles) {
      mbar_wait(empty(t - 1), (unsigned)((t - 1) / STAGES) & 1u);
      load_tile(t - 1 + STAGES);
    }
  }
  store_rows<D>(o, l_run, w, p.T, p.q_stride, ob);
#endif
}

#ifdef KG_HAVE_WGMMA_DEVICE
__device__ __forceinline__ void wgmma_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void fence_regs_u(uint32_t (*r)[4]) {
#pragma unroll
  for (int i = 0; i < N; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) asm volatile("" : "+r"(r[i][j])::"memory");
}
#endif

/* FlashAttention-3's intra-warpgroup overlap on top of the decoupled
 * warpgroups: in step t a warpgroup issues S = Q K^T for tile t + 1 and
 * O += P V for tile t back to back, then runs the softmax of tile t + 1
 * while both products are on the tensor cores; O is rescaled just before
 * the next P V. K and V have separate rings of STAGES tiles, because K is
 * read one step before V: each thread refills K's stage of tile t and V's
 * of tile t - 1 at the end of step t (both released a step earlier by
 * both warpgroups), so every tile lands a step before it is read. With PP
 * the warpgroups take turns issuing their pair of products. */
template <int D, int BN, int STAGES, bool PP, bool LAZY>
__global__ void __launch_bounds__(256, 1)
    k_flash_wgmma_overlap(const __nv_bfloat16 *__restrict__ Q, const __nv_bfloat16 *__restrict__ K,
                          const __nv_bfloat16 *__restrict__ V, __nv_bfloat16 *__restrict__ O, kg_attn_params p,
                          float scale_log2) {
#ifdef KG_HAVE_WGMMA_DEVICE
  using C = wg_cfg<D, BN, 2>;
  extern __shared__ unsigned char smem_raw[];
  wg_tile w;
  const wg_bases b = wg_setup<D, C::BM>(w, smem_raw, C::Q_BYTES, Q, K, V, O, p);
  w.sV = w.sK + STAGES * C::KV_BYTES;
  const uint32_t bars = w.sV + STAGES * C::KV_BYTES; /* full K, full V, empty K, empty V: STAGES each */
  const wg_key_tiles kt = key_tiles<BN, C::BM>(w, p);
  const int n_tiles = kt.n, my_tiles = kt.mine, shared_turns = kt.wg0 + 1; /* warpgroup 0's turns */
  auto bar = [&](int kind, int t) { return bars + 8u * (uint32_t)(kind * STAGES + t % STAGES); };
  enum { FULL_K, FULL_V, EMPTY_K, EMPTY_V };
  auto kbuf = [&](int t) { return w.sK + (uint32_t)(t % STAGES) * C::KV_BYTES; };
  auto vbuf = [&](int t) { return w.sV + (uint32_t)(t % STAGES) * C::KV_BYTES; };
  auto load = [&](bool is_v, int t) {
    load_sw128<D, BN, C::THREADS>(is_v ? vbuf(t) : kbuf(t), is_v ? b.v : b.k, p.kv_width, t * BN,
                                  min(BN, w.kv_total - t * BN));
    cp_async_arrive(bar(is_v ? FULL_V : FULL_K, t));
  };
  auto wait_full = [&](int kind, int t) {
    mbar_wait(bar(kind, t), (unsigned)(t / STAGES) & 1u);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  };
  auto turn_begin = [&](int k) {
    if (PP && k < shared_turns) named_sync(1 + w.wg);
  };
  auto turn_end = [&](int k) {
    if (PP && k < shared_turns && !(w.wg == 1 && k == shared_turns - 1)) named_arrive(2 - w.wg);
  };

  if (threadIdx.x == 0)
    for (int i = 0; i < 4 * STAGES; i++) mbar_init(bars + 8u * (uint32_t)i, C::THREADS);
  load_sw128<D, C::BM, C::THREADS>(w.sQ, b.q, p.q_stride, w.m0, min(C::BM, p.T - w.m0));
  cp_async_commit_wg();
  tiles_ready(); /* Q, and the barriers' initialization, seen by all */
  for (int t = 0; t < STAGES && t < n_tiles; t++) {
    load(false, t);
    load(true, t);
  }

  float o[D / 2], sc[BN / 2], alpha[2] = {1.0f, 1.0f};
  uint32_t pa[BN / 16][4];
  zero_regs<D / 2>(o);
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  /* step -1: S of tile 0 (every warpgroup sees key 0) */
  if (PP && w.wg == 1) named_arrive(1); /* warpgroup 0 issues first */
  wait_full(FULL_K, 0);
  turn_begin(0);
  issue_qk<D, BN, 2>(sc, w, kbuf(0));
  turn_end(0);
  wgmma_wait_all();
  fence_regs<BN / 2>(sc);
  softmax_scores<BN, LAZY>(sc, alpha, m_run, l_run, w, 0, p.pos0, scale_log2);
  pack_p<BN>(pa, sc);
  mbar_arrive(bar(EMPTY_K, 0));

  /* Every thread releases each tile and refills the stages released a
   * step before, also for tiles only the other warpgroup reads. */
  auto release_refill = [&](int t) {
    if (t + 1 < n_tiles) mbar_arrive(bar(EMPTY_K, t + 1));
    mbar_arrive(bar(EMPTY_V, t));
    if (t + STAGES < n_tiles) {
      mbar_wait(bar(EMPTY_K, t), (unsigned)(t / STAGES) & 1u);
      load(false, t + STAGES);
    }
    if (t >= 1 && t - 1 + STAGES < n_tiles) {
      mbar_wait(bar(EMPTY_V, t - 1), (unsigned)((t - 1) / STAGES) & 1u);
      load(true, t - 1 + STAGES);
    }
  };
  /* Steps with both products: the same two commit groups every time, so
   * ptxas can see that waiting for all but one leaves S complete (inside a
   * branch it could not, and serialized the products). */
  int t = 0;
  for (; t + 1 < my_tiles; t++) {
    rescale_o<D>(o, alpha);
    wait_full(FULL_K, t + 1);
    wait_full(FULL_V, t);
    turn_begin(t + 1);
    issue_qk<D, BN, 2>(sc, w, kbuf(t + 1));
    issue_pv_packed<D, BN>(o, pa, vbuf(t));
    turn_end(t + 1);
    wgmma_wait_one();
    fence_regs<BN / 2>(sc);
    softmax_scores<BN, LAZY>(sc, alpha, m_run, l_run, w, (t + 1) * BN, p.pos0, scale_log2);
    wgmma_wait_all();
    fence_regs<D / 2>(o);
    fence_regs_u<BN / 16>(pa); /* P V read these until now */
    pack_p<BN>(pa, sc);
    release_refill(t);
  }
  /* the warpgroup's last tile: P V only */
  rescale_o<D>(o, alpha);
  wait_full(FULL_V, t);
  turn_begin(t + 1);
  issue_pv_packed<D, BN>(o, pa, vbuf(t));
  turn_end(t + 1);
  wgmma_wait_all();
  fence_regs<D / 2>(o);
  fence_regs_u<BN / 16>(pa);
  for (; t < n_tiles; t++) release_refill(t);
  store_rows<D>(o, l_run, w, p.T, p.q_stride, b.o);
#endif
}

/* 1: the device runs this file's sm_90a code; 2: it does not. */
static int wgmma_available(kg_cuda_impl *c) {
  if (c->wgmma_state) return c->wgmma_state == 1;
  c->wgmma_state = 2;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->ctx.device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c->ctx.device) != cudaSuccess ||
      major != 9 || minor != 0) {
    cudaGetLastError();
    return 0;
  }
  int *dflag = NULL, flag = 0;
  if (cudaMalloc(&dflag, sizeof(int)) == cudaSuccess) {
    k_wgmma_probe<<<1, 1, 0, c->ctx.stream>>>(dflag);
    if (cudaGetLastError() == cudaSuccess &&
        cudaMemcpyAsync(&flag, dflag, sizeof(int), cudaMemcpyDeviceToHost, c->ctx.stream) == cudaSuccess &&
        cudaStreamSynchronize(c->ctx.stream) == cudaSuccess && flag == 1)
      c->wgmma_state = 1;
    cudaFree(dflag);
  }
  cudaGetLastError();
  if (c->wgmma_state != 1) kg_debug("CUDA attention: no sm_90a code for this device; using the mma.sync kernel");
  return c->wgmma_state == 1;
}

/* Launches kernel over (query tiles of BM rows, heads, sequences) with smem
 * bytes of dynamic shared memory; *configured tells whether this kernel's
 * shared-memory limit was raised already. */
template <typename Kernel>
static int launch_kernel(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p, Kernel kernel, int BM,
                         int threads, int smem, bool *configured, const char *what) {
  if (!*configured) {
    KG_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    *configured = true;
  }
  dim3 grid((unsigned)((a->T + BM - 1) / BM), (unsigned)a->n_heads, (unsigned)a->n_seq);
  const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)a->head_dim));
  kernel<<<grid, threads, smem, c->ctx.stream>>>((const __nv_bfloat16 *)a->q, (const __nv_bfloat16 *)a->k_cache,
                                                (const __nv_bfloat16 *)a->v_cache, (__nv_bfloat16 *)a->out, *p,
                                                scale_log2);
  KG_CUDA_LAUNCHED(what);
  return KG_OK;
}

template <int D, int BN, bool PIPE, int NWG, int MINB>
static int launch(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p) {
  using C = wg_cfg<D, BN, NWG>;
  static bool configured = false; /* per instantiation */
  return launch_kernel(c, a, p, k_flash_wgmma<D, BN, PIPE, NWG, MINB>, C::BM, C::THREADS, C::SMEM, &configured,
                       "wgmma attention");
}

template <int D, int BN, int STAGES, bool PP>
static int launch_async(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p) {
  using C = wg_cfg<D, BN, 2>;
  static bool configured = false;
  return launch_kernel(c, a, p, k_flash_wgmma_async<D, BN, STAGES, PP>, C::BM, C::THREADS,
                       C::Q_BYTES + STAGES * 2 * C::KV_BYTES + 1024 + 16 * STAGES, &configured,
                       "wgmma attention (decoupled warpgroups)");
}

template <int D, int BN, int STAGES, bool PP, bool LAZY = false>
static int launch_overlap(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p) {
  using C = wg_cfg<D, BN, 2>;
  static bool configured = false;
  return launch_kernel(c, a, p, k_flash_wgmma_overlap<D, BN, STAGES, PP, LAZY>, C::BM, C::THREADS,
                       C::Q_BYTES + STAGES * 2 * C::KV_BYTES + 1024 + 32 * STAGES, &configured,
                       "wgmma attention (overlapped softmax)");
}

/* Variants (KG_CUDA_ATTN_VARIANT): 9, 10: two warpgroups, 64- and 128-key
 * tiles; 11, 12: the same pipelined; 13: as 9 with two CTAs an SM; 14: one
 * warpgroup (64 rows), 64-key tiles, two CTAs an SM; 15: 14 pipelined;
 * 16-18: decoupled warpgroups (mbarrier stages): 16 = 64-key tiles, 3
 * stages, ping-pong; 17 = 16 without ping-pong; 18 = 128-key tiles, 2
 * stages, ping-pong; 19 = 128-key tiles, 3 stages (224 KB), ping-pong: the
 * refill after tile t brings t + 2, one tile ahead of its use, where 18's
 * brings t + 1 just before (ncu: 9% of 18's stall samples waited on it);
 * 20 = 19 without ping-pong; 21, 22: k_flash_wgmma_overlap (128-key
 * tiles, 3 stages of K and of V) with and without ping-pong; 23 = 21
 * rescaling O only when a row's max grows by more than 2^8. */
template <int D>
static int launch_variant(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p, int variant) {
  switch (variant) {
  case 16: return launch_async<D, 64, 3, true>(c, a, p);
  case 17: return launch_async<D, 64, 3, false>(c, a, p);
  case 18: return launch_async<D, 128, 2, true>(c, a, p);
  case 19: return launch_async<D, 128, 3, true>(c, a, p);
  case 20: return launch_async<D, 128, 3, false>(c, a, p);
  case 21: return launch_overlap<D, 128, 3, true>(c, a, p);
  case 22: return launch_overlap<D, 128, 3, false>(c, a, p);
  case 23: return launch_overlap<D, 128, 3, true, true>(c, a, p);
  case 9: return launch<D, 64, false, 2, 1>(c, a, p);
  case 11: return launch<D, 64, true, 2, 1>(c, a, p);
  case 12: return launch<D, 128, true, 2, 1>(c, a, p);
  case 13: return launch<D, 64, false, 2, 2>(c, a, p);
  case 14: return launch<D, 64, false, 1, 2>(c, a, p);
  case 15: return launch<D, 64, true, 1, 2>(c, a, p);
  default: return launch<D, 128, false, 2, 1>(c, a, p);
  }
}

int kg_cuda_attention_wgmma(kg_cuda_impl *c, const kg_attention_args *a, const kg_attn_params *p, int variant) {
  const bool aligned = (uintptr_t)a->q % 16 == 0 && (uintptr_t)a->k_cache % 16 == 0 &&
                       (uintptr_t)a->v_cache % 16 == 0 && (uintptr_t)a->out % 16 == 0 && p->q_stride % 8 == 0 &&
                       p->kv_width % 8 == 0;
  if (c->wdtype != KG_DT_BF16 || !aligned || (a->head_dim != 64 && a->head_dim != 128) || a->T < 16 ||
      !wgmma_available(c))
    return KG_ERR_UNSUPPORTED;
  return a->head_dim == 128 ? launch_variant<128>(c, a, p, variant) : launch_variant<64>(c, a, p, variant);
}
