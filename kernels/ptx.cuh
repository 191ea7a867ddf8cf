// Thin wrappers over the PTX instructions the project's kernels share (device code only):
// shared-memory addresses, cp.async copies into shared memory, the swizzled bf16 tile layout,
// ldmatrix, and the m16n8k16 bf16 tensor-core mma with its A fragments loaded from global rows.
// One definition each, so a fix or a tuning of one reaches every kernel.
#ifndef TRUTHPUT_KERNELS_PTX_CUH_
#define TRUTHPUT_KERNELS_PTX_CUH_

#include <cstdint>

namespace truthput {
namespace ptx {

// The 32-bit shared-state-space address of a pointer into shared memory.
__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy that bypasses L1; with valid == false it reads nothing and writes
// 16 zeros (so rows past the end are 0, never stale NaNs that 0 * NaN would propagate).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed cp.async groups are still in flight.
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void Ldmatrix4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void Ldmatrix4Trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a shared-memory tile of D bf16 per row,
// with chunk c of row r stored at chunk c ^ (r & 7): the 8 rows an ldmatrix reads (and the 8
// chunks 8 lanes of a cp.async write) hit 8 different bank groups.
template <int D>
__device__ __forceinline__ uint32_t SwizzledOffset(int row, int chunk) {
  return static_cast<uint32_t>((row * D + ((chunk ^ (row & 7)) << 3)) * 2);  // 2 bytes a bf16
}

// c += a * b for one m16n8k16 bf16 tile, fp32 accumulators (c: 4 consecutive floats).
__device__ __forceinline__ void MmaBf16(float* c, const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The A fragments of kKSteps m16n8k16 mmas (k = 16 * kKSteps) straight from global memory: the
// lane's rows g and g + 8 of A, `lo` and `hi`, each already offset by 2 * t elements of 2 bytes
// (lane = 4 * g + t). A row that does not exist (has_lo / has_hi false) reads nothing and gives
// zeros. Read through the read-only cache: the attention kernels load Q this way, once.
template <int kKSteps, typename T>
__device__ __forceinline__ void LoadMmaARows(const T* lo, const T* hi, bool has_lo, bool has_hi,
                                             uint32_t (&a)[kKSteps][4]) {
  static_assert(sizeof(T) == 2, "A is 16-bit");
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk) {
    const int c = kk * 16;
    a[kk][0] = has_lo ? __ldg(reinterpret_cast<const unsigned int*>(lo + c)) : 0u;
    a[kk][1] = has_hi ? __ldg(reinterpret_cast<const unsigned int*>(hi + c)) : 0u;
    a[kk][2] = has_lo ? __ldg(reinterpret_cast<const unsigned int*>(lo + c + 8)) : 0u;
    a[kk][3] = has_hi ? __ldg(reinterpret_cast<const unsigned int*>(hi + c + 8)) : 0u;
  }
}

}  // namespace ptx
}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_PTX_CUH_
