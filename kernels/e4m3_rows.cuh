// The arithmetic of the per-row e4m3 quantizer (fp8_weights.h's format: scale = max |x| / 448,
// q = RN_satfinite(x / scale)), shared by QuantizeWeightsFp8 and the element-wise kernels that
// also write their output quantized (elementwise.h), so that both give the same bytes.
#ifndef TRUTHPUT_KERNELS_E4M3_ROWS_CUH_
#define TRUTHPUT_KERNELS_E4M3_ROWS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace truthput::e4m3 {

constexpr float kMax = 448.0f;  // largest finite e4m3

// 8 packed bf16 (one 16-byte load) as floats.
__device__ __forceinline__ void Unpack(const uint4& bf16x8, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&bf16x8);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 p = __bfloat1622float2(h[j]);
    f[2 * j] = p.x;
    f[2 * j + 1] = p.y;
  }
}

// max(amax, |x[0..7]|) for 8 packed bf16.
__device__ __forceinline__ float Amax8(const uint4& bf16x8, float amax) {
  float f[8];
  Unpack(bf16x8, f);
#pragma unroll
  for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(f[j]));
  return amax;
}

// The scale of a row whose largest magnitude is amax.
__device__ __forceinline__ float RowScale(float amax) { return amax / kMax; }

// 8 packed bf16 / scale to e4m3, round to nearest, saturating; all zero for a zero scale. Byte j
// of the result (little-endian) is element j.
__device__ __forceinline__ uint2 Quantize8(const uint4& bf16x8, float scale) {
  float f[8];
  Unpack(bf16x8, f);
  uint16_t q[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float2 v;
    v.x = scale > 0.0f ? f[2 * j] / scale : 0.0f;
    v.y = scale > 0.0f ? f[2 * j + 1] / scale : 0.0f;
    q[j] = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
  }
  uint2 out;
  out.x = static_cast<uint32_t>(q[0]) | (static_cast<uint32_t>(q[1]) << 16);
  out.y = static_cast<uint32_t>(q[2]) | (static_cast<uint32_t>(q[3]) << 16);
  return out;
}

}  // namespace truthput::e4m3

#endif  // TRUTHPUT_KERNELS_E4M3_ROWS_CUH_
