#include "kernels/embedding.h"

#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// One block per row; 16-byte copies when the row is a multiple of 8 elements.
__global__ void EmbeddingGatherKernel(const __nv_bfloat16* __restrict__ table,
                                      const int32_t* __restrict__ ids,
                                      __nv_bfloat16* __restrict__ out, int cols, int vocab) {
  const int r = blockIdx.x;
  const int id = ids[r];
  const bool valid = id >= 0 && id < vocab;
  __nv_bfloat16* dst = out + static_cast<int64_t>(r) * cols;
  const __nv_bfloat16* src = table + static_cast<int64_t>(valid ? id : 0) * cols;
  if (cols % 8 == 0) {
    const int n16 = cols / 8;
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int i = threadIdx.x; i < n16; i += blockDim.x) d[i] = valid ? s[i] : make_uint4(0, 0, 0, 0);
  } else {
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
      dst[i] = valid ? src[i] : __float2bfloat16(0.f);
    }
  }
}

__global__ void FillTokenIdsKernel(int32_t* ids, int n, int vocab, uint64_t seed) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint64_t z = seed + (static_cast<uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  ids[i] = static_cast<int32_t>(z % static_cast<uint64_t>(vocab));
}

}  // namespace

absl::Status EmbeddingGather(const __nv_bfloat16* table, const int32_t* ids, __nv_bfloat16* out,
                             int rows, int cols, int vocab, cudaStream_t stream) {
  if (rows < 0 || cols < 1 || vocab < 1) {
    return absl::InvalidArgumentError("EmbeddingGather: bad shape");
  }
  if (rows == 0) return absl::OkStatus();
  const bool aligned = (reinterpret_cast<uintptr_t>(table) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (cols % 8 == 0 && !aligned) {
    return absl::InvalidArgumentError("EmbeddingGather: table and out must be 16-byte aligned");
  }
  EmbeddingGatherKernel<<<rows, 256, 0, stream>>>(table, ids, out, cols, vocab);
  return CudaStatus(cudaGetLastError(), "EmbeddingGatherKernel<<<>>>");
}

absl::Status FillRandomTokenIds(int32_t* ids, int n, int vocab, uint64_t seed, cudaStream_t stream) {
  if (n < 0 || vocab < 1) return absl::InvalidArgumentError("FillRandomTokenIds: bad shape");
  if (n == 0) return absl::OkStatus();
  FillTokenIdsKernel<<<(n + 255) / 256, 256, 0, stream>>>(ids, n, vocab, seed);
  return CudaStatus(cudaGetLastError(), "FillTokenIdsKernel<<<>>>");
}

}  // namespace truthput
