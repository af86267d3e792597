/* Internals shared by the compress/cuda/*.cu files: scratch slots, launch
 * helpers and the device copies of the host rules that must round the same
 * way (quantizer, fp16 scaling). */
#ifndef KG_COMPRESS_CUDA_CC_INTERNAL_CUH
#define KG_COMPRESS_CUDA_CC_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <stdint.h>

#include "compress/cuda/cc.h"

/* Grow-only scratch slots of a context. A function uses a slot only while it
 * runs; slots are never held across calls, except where noted. */
enum {
  CC_SCRATCH_HALF = 0,  /* fp16 copy of a statistics input */
  CC_SCRATCH_PARTIAL,   /* per-chunk partial sums */
  CC_SCRATCH_SMALL,     /* amax, select state, counters, alpha */
  CC_SCRATCH_SOLVER,    /* cuSOLVER device workspace */
  CC_SCRATCH_BLOCK,     /* sweep: Err block, scores; recon: product chunk */
  CC_SCRATCH_ROW,       /* per-row quantizer parameters and losses */
  CC_SCRATCH_KEYS,      /* sweep: the block's score keys; masks: bitmask */
  CC_SCRATCH_COUNT
};

/* Returns slot `which` with at least `bytes`, growing it (contents lost). */
int cc_scratch(kg_cc *cc, int which, size_t bytes, void **out);

static inline unsigned cc_blocks(int64_t n, int threads, unsigned cap) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return b > (int64_t)cap ? cap : (unsigned)b;
}

/* Power of two s with max|x| * s in [2^14, 2^15), from the bits of max|x|
 * (see cc.h). 1 for zero or unusable maxima. */
__device__ __forceinline__ float cc_pow2_scale(unsigned amax_bits) {
  const float a = __uint_as_float(amax_bits);
  if (!(a > 0.0f) || !(a <= FLT_MAX)) return 1.0f;
  int e = 0;
  frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) */
  int k = 15 - e;
  k = k < -60 ? -60 : (k > 60 ? 60 : k);
  return ldexpf(1.0f, k);
}

/* compress/quant.c's kg_quant_params and quant.h's kg_quant_value, the same
 * float32 operations in the same order (no contraction is possible in them). */
__device__ __forceinline__ void cc_quant_params(float xmin, float xmax, int bits, int sym, float *scale, float *zero) {
  const float maxq = (float)((1 << bits) - 1);
  if (xmin > 0.0f) xmin = 0.0f;
  if (xmax < 0.0f) xmax = 0.0f;
  if (sym) {
    if (-xmin > xmax) xmax = -xmin;
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  *scale = __fdiv_rn(xmax - xmin, maxq);
  *zero = sym ? (maxq + 1.0f) / 2.0f : rintf(__fdiv_rn(-xmin, *scale));
}

__device__ __forceinline__ float cc_quant_value(float x, float scale, float zero, float maxq) {
  float q = __fadd_rn(rintf(__fdiv_rn(x, scale)), zero);
  q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
  return __fmul_rn(scale, __fsub_rn(q, zero));
}

__device__ __forceinline__ float cc_widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float cc_widen(__nv_bfloat16 v) { return __bfloat162float(v); }

/* Largest |x| that still gives a finite fp32 Gram entry. */
#define CC_AMAX_LIMIT 1.8446744e19f /* 2^64 */

#endif
