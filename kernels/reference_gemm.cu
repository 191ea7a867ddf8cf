#include "kernels/reference_gemm.h"

#include <climits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// One warp per output y[i,j]. Warps are ordered j-major (consecutive warps share a row of W and
// walk the rows of x), so each W row is read from DRAM about once and x stays in L2.
__global__ void ReferenceGemmKernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                    float* __restrict__ y, int64_t m, int64_t n, int64_t k) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= m * n) return;  // Uniform across the warp: blockDim is a multiple of 32.
  const int64_t j = warp / m;
  const int64_t i = warp % m;
  const bf16* xr = x + i * k;
  const bf16* wr = w + j * k;
  float acc = 0.0f;
  for (int64_t t = lane; t < k; t += 32) {
    acc = fmaf(__bfloat162float(xr[t]), __bfloat162float(wr[t]), acc);
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  }
  if (lane == 0) y[i * n + j] = acc;
}

}  // namespace

absl::Status ReferenceGemm(const bf16* x, const bf16* w, float* y, int64_t m, int64_t n,
                           int64_t k, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReferenceGemm: non-positive shape m=", m, " n=", n, " k=", k));
  }
  const int64_t blocks = (m * n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReferenceGemm: m*n=", m * n, " needs more blocks than a grid holds"));
  }
  ReferenceGemmKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, w, y, m, n, k);
  return CudaStatus(cudaGetLastError(), "ReferenceGemmKernel<<<>>>");
}

}  // namespace truthput
