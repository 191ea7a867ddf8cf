// Per-channel e4m3 quantization of weights and its inverse (fp8_weights.h). SkinnyGemmFp8 lives
// in gemv.cu, next to the bf16 kernel it shares.
#include "kernels/fp8_weights.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/e4m3_rows.cuh"

namespace truthput {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;
constexpr int64_t kFewRows = 128;

// Quantizes rows [blockIdx.x, n) with a stride of gridDim.x, one CTA of kT threads per row at a
// time: the row's max |w| (16-byte loads), then its e4m3 codes (fp8_weights.h) in 8-weight
// (8-byte) stores. A thread keeps its first kCached 16-byte chunks in registers between the two
// passes and loads them all before using any, so a row of activations (a few rows of up to 28672
// in a decode step, W8A8) costs one round trip to L2 rather than one per chunk and pass; rows
// longer than kT * kCached * 8 read the rest twice.
constexpr int kCached = 4;

template <int kT>
__global__ void __launch_bounds__(kT)
    QuantizeKernel(const bf16* __restrict__ w, __nv_fp8_e4m3* __restrict__ wq,
                   float* __restrict__ scales, int64_t n, int64_t k) {
  __shared__ float s_warp_max[kT / 32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const auto store = [&](const uint4& v, e4m3::RowMultiplier m, int64_t row, int64_t i) {
    *reinterpret_cast<uint2*>(reinterpret_cast<uint8_t*>(wq) + row * k + i) =
        e4m3::Quantize8(v, m);
  };
  constexpr int64_t kStride = int64_t{kT} * 8;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * 8;
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const bf16* wr = w + row * k;
    uint4 cached[kCached];
#pragma unroll
    for (int c = 0; c < kCached; ++c) {
      const int64_t i = first + c * kStride;
      cached[c] = i < k ? *reinterpret_cast<const uint4*>(wr + i) : make_uint4(0, 0, 0, 0);
    }
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < kCached; ++c) amax = e4m3::Amax8(cached[c], amax);
    for (int64_t i = first + kCached * kStride; i < k; i += kStride) {
      amax = e4m3::Amax8(*reinterpret_cast<const uint4*>(wr + i), amax);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    }
    if (lane == 0) s_warp_max[warp] = amax;
    __syncthreads();
    amax = s_warp_max[0];
#pragma unroll
    for (int i = 1; i < kT / 32; ++i) amax = fmaxf(amax, s_warp_max[i]);
    __syncthreads();  // s_warp_max is reused by the next row
    if (threadIdx.x == 0) scales[row] = e4m3::RowScale(amax);
    const e4m3::RowMultiplier m = e4m3::RowMultiplierFor(amax);
#pragma unroll
    for (int c = 0; c < kCached; ++c) {
      const int64_t i = first + c * kStride;
      if (i < k) store(cached[c], m, row, i);
    }
    for (int64_t i = first + kCached * kStride; i < k; i += kStride) {
      store(*reinterpret_cast<const uint4*>(wr + i), m, row, i);
    }
  }
}

// w = bf16(float(wq) * scale[row]), 8 weights per thread step (8-byte loads, 16-byte stores).
__global__ void __launch_bounds__(kThreads)
    DequantizeKernel(const __nv_fp8_e4m3* __restrict__ wq, const float* __restrict__ scales,
                     bf16* __restrict__ w, int64_t n, int64_t k) {
  const int64_t chunks = n * k / 8;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    const int64_t i = c * 8;
    const float scale = scales[i / k];
    const uint2 q = *reinterpret_cast<const uint2*>(reinterpret_cast<const uint8_t*>(wq) + i);
    const uint32_t words[2] = {q.x, q.y};
    uint4 out;
    uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) {
        const __nv_fp8x2_storage_t two = static_cast<__nv_fp8x2_storage_t>(words[j] >> (16 * pair));
        const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(two, __NV_E4M3)));
        const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * scale, f.y * scale);
        o[2 * j + pair] = *reinterpret_cast<const uint32_t*>(&b);
      }
    }
    *reinterpret_cast<uint4*>(w + i) = out;
  }
}

bool AlignedTo(const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

absl::Status CheckShape(const char* api, int64_t n, int64_t k) {
  if (n < 1 || k < 1 || k % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": need n >= 1 and k a positive multiple of 8; got n=", n, " k=", k));
  }
  if (n > std::numeric_limits<int64_t>::max() / k) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": n * k overflows"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status QuantizeWeightsFp8(const bf16* w, __nv_fp8_e4m3* wq, float* scales, int64_t n,
                                int64_t k, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckShape("QuantizeWeightsFp8", n, k));
  if (w == nullptr || wq == nullptr || scales == nullptr || !AlignedTo(w, 16) ||
      !AlignedTo(wq, 8) || !AlignedTo(scales, 4)) {
    return absl::InvalidArgumentError(
        "QuantizeWeightsFp8: w must be 16-byte, wq 8-byte and scales 4-byte aligned (non-null)");
  }
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(n, kMaxBlocks));
  // Few rows (a decode step's activations, per GEMM) get 1024 threads each: all of a 28672-long
  // row in flight at once. Many rows (weights) fill the GPU with 256-thread CTAs; so do 256 rows
  // of activations, where 1024-thread CTAs no longer fit one per SM (70B fp8 decode step at
  // batch 256 on an H100: 92.07 ms with 256 threads, 92.82 with 1024; batch 64 and 128 0.15 ms
  // faster with 1024).
  if (n <= kFewRows) {
    QuantizeKernel<1024><<<blocks, 1024, 0, stream>>>(w, wq, scales, n, k);
  } else {
    QuantizeKernel<kThreads><<<blocks, kThreads, 0, stream>>>(w, wq, scales, n, k);
  }
  return CudaStatus(cudaGetLastError(), "QuantizeKernel<<<>>>");
}

absl::Status DequantizeWeightsFp8(const __nv_fp8_e4m3* wq, const float* scales, bf16* w, int64_t n,
                                  int64_t k, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckShape("DequantizeWeightsFp8", n, k));
  if (w == nullptr || wq == nullptr || scales == nullptr || !AlignedTo(w, 16) ||
      !AlignedTo(wq, 8) || !AlignedTo(scales, 4)) {
    return absl::InvalidArgumentError(
        "DequantizeWeightsFp8: w must be 16-byte, wq 8-byte and scales 4-byte aligned "
        "(non-null)");
  }
  const int64_t chunks = n * k / 8;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((chunks + kThreads - 1) / kThreads, 4096));
  DequantizeKernel<<<blocks, kThreads, 0, stream>>>(wq, scales, w, n, k);
  return CudaStatus(cudaGetLastError(), "DequantizeKernel<<<>>>");
}

}  // namespace truthput
