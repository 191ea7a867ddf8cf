// Streaming kernels: the plainest ways to write and copy a large device buffer, and an empty
// kernel. bench_ceilings uses them, with StreamRead (kernels/stream_read.h) for reading, to
// measure what DRAM bandwidth a kernel actually reaches on this GPU and what a launch costs, so
// runs can be held against measured ceilings as well as datasheet ones.
//
// Shape (StreamRead's, kernels/stream_read.h): 2 CTAs of 1024 threads per SM, so the grid is one
// full wave; each thread walks the buffer grid-strided in 16-byte vectors with 4 independent
// accesses in flight per iteration, and a plain tail loop for the rest.
//
// Requirements (checked, InvalidArgument): pointers 16-byte aligned, bytes >= 0 and a multiple of
// 16. No allocation, no synchronization: every function here is capturable into a CUDA graph.
// Caches are not bypassed: for a bandwidth figure, use buffers many times the L2 size.
#ifndef TRUTHPUT_KERNELS_STREAM_KERNELS_H_
#define TRUTHPUT_KERNELS_STREAM_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

// Writes `pattern` to every 32-bit word of dst[0, bytes).
absl::Status StreamWriteKernel(void* dst, int64_t bytes, uint32_t pattern, cudaStream_t stream);

// dst[0, bytes) = src[0, bytes). The ranges must not overlap (not checked).
absl::Status StreamCopyKernel(const void* src, void* dst, int64_t bytes, cudaStream_t stream);

// Launches an empty kernel (1 block of 1 thread) `count` times back to back on stream, with
// nothing between the launches; the launch error, if any, is checked once after the last. For
// measuring launch costs. count >= 0.
absl::Status StreamEmptyKernels(int count, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_STREAM_KERNELS_H_
