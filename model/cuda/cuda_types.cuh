/* Element conversions shared by the CUDA kernels (device code, C++). */
#ifndef KG_MODEL_CUDA_CUDA_TYPES_CUH
#define KG_MODEL_CUDA_CUDA_TYPES_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <typename T> __device__ __forceinline__ float kg_to_f(T x);
template <> __device__ __forceinline__ float kg_to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float kg_to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float kg_to_f<__half>(__half x) { return __half2float(x); }

/* Round to nearest even, as the host conversions in io/dtype do. */
template <typename T> __device__ __forceinline__ T kg_from_f(float x);
template <> __device__ __forceinline__ float kg_from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 kg_from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half kg_from_f<__half>(float x) { return __float2half_rn(x); }

/* Two floats packed into one 32-bit register of 16-bit values (low = a). */
template <typename T> __device__ __forceinline__ uint32_t kg_pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t kg_pack2<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t kg_pack2<__half>(float a, float b) {
  __half2 v = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t *>(&v);
}

/* Runs `body` with T16 bound to the backend's 16-bit type. */
#define KG_CUDA_DISPATCH16(dtype, ...)    \
  do {                                    \
    if ((dtype) == KG_DT_F16) {           \
      typedef __half T16;                 \
      __VA_ARGS__;                        \
    } else {                              \
      typedef __nv_bfloat16 T16;          \
      __VA_ARGS__;                        \
    }                                     \
  } while (0)

#endif
