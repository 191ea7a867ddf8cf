#include "kernels/stream_read.h"

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int kThreads = 1024;
constexpr int kCtasPerSm = 2;
constexpr int kInFlight = 4;

__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__global__ void __launch_bounds__(kThreads, kCtasPerSm)
    StreamRead16Kernel(const uint4* __restrict__ p, int64_t vecs, const uint8_t* __restrict__ tail,
                       int tail_bytes, float* sink) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (kInFlight - 1) * stride < vecs; i += kInFlight * stride) {
    uint4 v[kInFlight];
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) v[j] = LoadStreaming(p + i + j * stride);
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  for (; i < vecs; i += stride) {
    const uint4 v = LoadStreaming(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (blockIdx.x == 0 && threadIdx.x < tail_bytes) acc ^= tail[threadIdx.x];
  if (acc == kStreamReadSinkTrigger) *sink = __uint_as_float(acc);
}

}  // namespace

absl::Status StreamRead(const void* p, int64_t bytes, float* sink, cudaStream_t stream) {
  if (bytes < 0) return absl::InvalidArgumentError(absl::StrCat("StreamRead: bytes=", bytes));
  if (bytes == 0) return absl::OkStatus();
  if (p == nullptr || sink == nullptr || reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    return absl::InvalidArgumentError("StreamRead: p must be non-null and 16-byte aligned");
  }
  absl::StatusOr<int> sms = CurrentSmCount();
  if (!sms.ok()) return sms.status();
  const int64_t vecs = bytes / 16;
  const int tail_bytes = static_cast<int>(bytes % 16);
  const uint8_t* tail = static_cast<const uint8_t*>(p) + vecs * 16;
  StreamRead16Kernel<<<kCtasPerSm* * sms, kThreads, 0, stream>>>(static_cast<const uint4*>(p), vecs,
                                                                 tail, tail_bytes, sink);
  return CudaStatus(cudaGetLastError(), "StreamRead16Kernel<<<>>>");
}

}  // namespace truthput
