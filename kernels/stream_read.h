// StreamRead: reads a buffer once with 16-byte loads and does nothing else, the ceiling that any
// kernel streaming the same bytes (weights in a decode GEMM, a KV cache in attention) can hope
// to approach. Benchmarks report kernels as a percentage of it at the same byte count.
//
// Launch: 2 CTAs of 1024 threads per SM, a grid-stride loop with 4 independent 16-byte loads in
// flight per thread (ld.global.nc, no L1 allocation), folded into an xor that only a
// practically impossible value writes out (no atomics), so the loads cannot be optimized away.
//
// No allocation, no synchronization: capturable into a CUDA graph.
#ifndef TRUTHPUT_KERNELS_STREAM_READ_H_
#define TRUTHPUT_KERNELS_STREAM_READ_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

// Each thread folds what it read into an xor of 32-bit words (tail bytes into the low 8 bits)
// and writes that value's bits to the sink only where it equals this one. A buffer of zeros
// with this word at one place therefore writes the sink exactly when that place was read, which
// is how stream_read_test shows the kernel skips nothing.
inline constexpr uint32_t kStreamReadSinkTrigger = 0x9E3779B9u;

// Reads bytes [p, p + bytes). p must be 16-byte aligned; bytes >= 0 (a tail of bytes % 16 is read
// byte-wise). sink: a device float the kernel may write (see kStreamReadSinkTrigger).
absl::Status StreamRead(const void* p, int64_t bytes, float* sink, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_STREAM_READ_H_
