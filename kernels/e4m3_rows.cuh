// The arithmetic of the per-row e4m3 quantizer (fp8_weights.h's format), shared by
// QuantizeWeightsFp8 and the element-wise kernels that also write their output quantized
// (elementwise.h), so that both give the same bytes.
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

// The scale of a row whose largest magnitude is amax (what the GEMM multiplies back by).
__device__ __forceinline__ float RowScale(float amax) { return amax / kMax; }

// How a row's values are brought to e4m3's range: x * lift * mult, two multiplies rather than
// a division per element (which made the quantized copy of a 70B FFN row issue-bound:
// results/h100-sxm/gemv_load_experiment.txt, section 27). mult = 448 / (amax * lift), 0 for an
// all-zero row; lift is 2^100 for rows below 2^-100 (exact: every value of such a row is that
// small), where 448 / amax alone could overflow, else 1.
struct RowMultiplier {
  float lift;
  float mult;
};
__device__ __forceinline__ RowMultiplier RowMultiplierFor(float amax) {
  const float lift = amax < 0x1p-100f ? 0x1p100f : 1.0f;
  return {lift, amax > 0.0f ? kMax / (amax * lift) : 0.0f};
}

// 8 packed bf16 to e4m3: RN_satfinite(x * lift * mult), multiplied in that order. Byte j of the
// result (little-endian) is element j.
__device__ __forceinline__ uint2 Quantize8(const uint4& bf16x8, RowMultiplier m) {
  float f[8];
  Unpack(bf16x8, f);
  uint16_t q[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float2 v;
    v.x = f[2 * j] * m.lift * m.mult;
    v.y = f[2 * j + 1] * m.lift * m.mult;
    q[j] = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
  }
  uint2 out;
  out.x = static_cast<uint32_t>(q[0]) | (static_cast<uint32_t>(q[1]) << 16);
  out.y = static_cast<uint32_t>(q[2]) | (static_cast<uint32_t>(q[3]) << 16);
  return out;
}

}  // namespace truthput::e4m3

#endif  // TRUTHPUT_KERNELS_E4M3_ROWS_CUH_
