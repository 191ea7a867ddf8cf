#include "kernels/random_fill.h"

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops: enough blocks to fill an H100 several times over, few enough to amortize.
constexpr int64_t kMaxBlocks = 4096;

__device__ __forceinline__ uint64_t SplitMix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Odd multiple of 2^-23 in (-1, 1): exact in fp32 and never zero.
__device__ __forceinline__ float UniformSigned(uint64_t seed, uint64_t i) {
  const int32_t k = static_cast<int32_t>(SplitMix64(seed, i) >> 41);
  return static_cast<float>(2 * k + 1 - (1 << 23)) * (1.0f / 8388608.0f);
}

struct RandomBf16Gen {
  uint64_t seed;
  float scale;
  __device__ __nv_bfloat16 operator()(int64_t i) const {
    return __float2bfloat16_rn(UniformSigned(seed, static_cast<uint64_t>(i)) * scale);
  }
};

struct ConstBf16Gen {
  __nv_bfloat16 value;
  __device__ __nv_bfloat16 operator()(int64_t) const { return value; }
};

// p[i] = gen(i). Elements [head, head + nvec * kVec) are written with 16-byte stores (p + head is
// 16-byte aligned); the unaligned head and the tail element-wise.
template <typename T, typename Gen>
__global__ void __launch_bounds__(kThreads)
    FillKernel(T* __restrict__ p, int64_t n, int64_t head, int64_t nvec, Gen gen) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t i0 = head + v * kVec;
    union {
      uint4 u;
      T t[kVec];
    } pack;
#pragma unroll
    for (int k = 0; k < kVec; ++k) pack.t[k] = gen(i0 + k);
    *reinterpret_cast<uint4*>(p + i0) = pack.u;
  }
  const int64_t tail_start = head + nvec * kVec;
  const int64_t nscalar = head + (n - tail_start);
  for (int64_t s = tid; s < nscalar; s += stride) {
    const int64_t i = s < head ? s : tail_start + (s - head);
    p[i] = gen(i);
  }
}

template <typename T, typename Gen>
absl::Status LaunchFill(T* p, int64_t n, Gen gen, cudaStream_t stream, const char* api,
                        const char* kernel) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat(api, ": n = ", n, " < 0"));
  if (n == 0) return absl::OkStatus();
  if (p == nullptr) return absl::InvalidArgumentError(absl::StrCat(api, ": null pointer"));
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  if (addr % sizeof(T) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(api, ": pointer not aligned to its type"));
  }
  constexpr int64_t kVec = 16 / sizeof(T);
  int64_t head = static_cast<int64_t>(((16 - addr % 16) % 16) / sizeof(T));
  if (head > n) head = n;
  const int64_t nvec = (n - head) / kVec;
  const int64_t nscalar = n - nvec * kVec;
  const int64_t work = nvec > nscalar ? nvec : nscalar;
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  if (blocks < 1) blocks = 1;
  FillKernel<T, Gen><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n, head, nvec, gen);
  return CudaStatus(cudaGetLastError(), kernel);
}

absl::Status CheckScale(float scale, const char* name) {
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": scale must be finite and > 0, got ", scale));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FillRandomBf16(__nv_bfloat16* p, int64_t n, uint64_t seed, float scale,
                            cudaStream_t stream) {
  TP_RETURN_IF_ERROR(CheckScale(scale, "FillRandomBf16"));
  return LaunchFill(p, n, RandomBf16Gen{seed, scale}, stream, "FillRandomBf16",
                    "FillKernel<RandomBf16>");
}

absl::Status FillBf16(__nv_bfloat16* p, int64_t n, float value, cudaStream_t stream) {
  return LaunchFill(p, n, ConstBf16Gen{__float2bfloat16_rn(value)}, stream, "FillBf16",
                    "FillKernel<ConstBf16>");
}

}  // namespace truthput
