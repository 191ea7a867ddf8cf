#include "kernels/reference_gemm.h"

#include <cuda_fp8.h>

#include <climits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

__device__ __forceinline__ float Value(const bf16* p, int64_t t) { return __bfloat162float(p[t]); }
__device__ __forceinline__ float Value(const __nv_fp8_e4m3* p, int64_t t) {
  return static_cast<float>(p[t]);
}

// One warp per output y[i,j]. Warps are ordered j-major (consecutive warps share a row of W and
// walk the rows of x), so each W row is read from DRAM about once and x stays in L2.
template <typename X, typename W>
__global__ void ReferenceGemmKernel(const X* __restrict__ x, const float* __restrict__ x_scales,
                                    const W* __restrict__ w, const float* __restrict__ w_scales,
                                    float* __restrict__ y, int64_t m, int64_t n, int64_t k) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= m * n) return;  // Uniform across the warp: blockDim is a multiple of 32.
  const int64_t j = warp / m;
  const int64_t i = warp % m;
  const X* xr = x + i * k;
  const W* wr = w + j * k;
  float acc = 0.0f;
  for (int64_t t = lane; t < k; t += 32) acc = fmaf(Value(xr, t), Value(wr, t), acc);
  for (int offset = 16; offset > 0; offset /= 2) {
    acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  }
  if (lane != 0) return;
  if (x_scales != nullptr) acc *= x_scales[i];
  if (w_scales != nullptr) acc *= w_scales[j];
  y[i * n + j] = acc;
}

template <typename X, typename W>
absl::Status Launch(const ReferenceOperand& x, const ReferenceOperand& w, float* y, int64_t m,
                    int64_t n, int64_t k, cudaStream_t stream) {
  const int64_t blocks = (m * n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReferenceGemm: m*n=", m * n, " needs more blocks than a grid holds"));
  }
  ReferenceGemmKernel<X, W><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const X*>(x.data), x.row_scales, static_cast<const W*>(w.data), w.row_scales, y,
      m, n, k);
  return CudaStatus(cudaGetLastError(), "ReferenceGemmKernel<<<>>>");
}

}  // namespace

absl::Status ReferenceGemm(const bf16* x, const bf16* w, float* y, int64_t m, int64_t n,
                           int64_t k, cudaStream_t stream) {
  return ReferenceGemmScaled({.data = x}, {.data = w}, y, m, n, k, stream);
}

absl::Status ReferenceGemmScaled(const ReferenceOperand& x, const ReferenceOperand& w, float* y,
                                 int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReferenceGemm: non-positive shape m=", m, " n=", n, " k=", k));
  }
  using e4m3 = __nv_fp8_e4m3;
  const bool x8 = x.row_scales != nullptr, w8 = w.row_scales != nullptr;
  if (x8 && w8) return Launch<e4m3, e4m3>(x, w, y, m, n, k, stream);
  if (w8) return Launch<bf16, e4m3>(x, w, y, m, n, k, stream);
  if (x8) return Launch<e4m3, bf16>(x, w, y, m, n, k, stream);
  return Launch<bf16, bf16>(x, w, y, m, n, k, stream);
}

}  // namespace truthput
