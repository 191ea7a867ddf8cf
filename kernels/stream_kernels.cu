#include "kernels/stream_kernels.h"

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int kThreads = 1024;
constexpr int kBlocksPerSm = 2;  // 2 x 1024 = 2048 threads: an H100/H200 SM's maximum.
constexpr int kInFlight = 4;     // Independent 16-byte accesses per thread per iteration.

// Each thread handles vectors i, i + stride, ..., kInFlight of them per iteration, so every
// warp access is 512 contiguous bytes and a thread has kInFlight accesses outstanding at once.
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    WriteKernel(uint4* __restrict__ dst, int64_t n, uint32_t pattern) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint4 v = make_uint4(pattern, pattern, pattern, pattern);
  for (; i + (kInFlight - 1) * stride < n; i += kInFlight * stride) {
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) dst[i + u * stride] = v;
  }
  for (; i < n; i += stride) dst[i] = v;
}

__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    CopyKernel(const uint4* __restrict__ src, uint4* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kInFlight - 1) * stride < n; i += kInFlight * stride) {
    uint4 v[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) dst[i + u * stride] = v[u];
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

__global__ void EmptyKernel() {}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

absl::Status CheckBuffer(const void* p, int64_t bytes, const char* api, const char* what) {
  if (bytes < 0 || bytes % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(api, ": bytes must be a non-negative multiple of 16, got ", bytes));
  }
  if (bytes > 0 && p == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": ", what, " is null"));
  }
  if (!Aligned16(p)) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": ", what, " not 16-byte aligned"));
  }
  return absl::OkStatus();
}

// One full wave: kBlocksPerSm CTAs on every SM of the current device.
absl::StatusOr<unsigned> GridSize() {
  absl::StatusOr<int> sms = CurrentSmCount();
  if (!sms.ok()) return sms.status();
  return static_cast<unsigned>(*sms * kBlocksPerSm);
}

}  // namespace

absl::Status StreamWriteKernel(void* dst, int64_t bytes, uint32_t pattern, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckBuffer(dst, bytes, "StreamWriteKernel", "dst"));
  absl::StatusOr<unsigned> grid = GridSize();
  if (!grid.ok()) return grid.status();
  WriteKernel<<<*grid, kThreads, 0, stream>>>(static_cast<uint4*>(dst), bytes / 16, pattern);
  return CudaStatus(cudaGetLastError(), "WriteKernel<<<>>>");
}

absl::Status StreamCopyKernel(const void* src, void* dst, int64_t bytes, cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckBuffer(src, bytes, "StreamCopyKernel", "src"));
  TP_RETURN_IF_ERROR(CheckBuffer(dst, bytes, "StreamCopyKernel", "dst"));
  absl::StatusOr<unsigned> grid = GridSize();
  if (!grid.ok()) return grid.status();
  CopyKernel<<<*grid, kThreads, 0, stream>>>(static_cast<const uint4*>(src),
                                             static_cast<uint4*>(dst), bytes / 16);
  return CudaStatus(cudaGetLastError(), "CopyKernel<<<>>>");
}

absl::Status StreamEmptyKernels(int count, cudaStream_t stream) {
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("StreamEmptyKernels: count ", count, " < 0"));
  }
  for (int i = 0; i < count; ++i) EmptyKernel<<<1, 1, 0, stream>>>();
  return CudaStatus(cudaGetLastError(), "EmptyKernel<<<>>>");
}

}  // namespace truthput
