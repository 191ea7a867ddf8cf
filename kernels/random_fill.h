// Filling device buffers: deterministic pseudo-random values (weights, activations, KV caches
// for benchmarks and tests) and constants (e.g. NaN, to poison outputs before a kernel runs).
//
// The random values are a pure function of (seed, index), so a buffer's contents do not depend on
// the launch configuration, the pointer's alignment or the GPU:
//   z   = splitmix64 output number i+1 of a generator started at state `seed`, i.e.
//         z = Mix(seed + (i + 1) * 0x9E3779B97F4A7C15)   (Mix: the splitmix64 finalizer)
//   k   = z >> 41                                       (23 bits)
//   u   = (2k + 1 - 2^23) / 2^23                        (odd multiple of 2^-23 in (-1, 1))
//   out = u * scale                                     (rounded to bf16 for the bf16 fill)
// u is never 0, so for any scale > 0 no element is zero (tests rely on that to catch unwritten
// outputs and all-zero inputs).
//
// No allocation, no synchronization: safe to capture in a CUDA graph.
#ifndef TRUTHPUT_KERNELS_RANDOM_FILL_H_
#define TRUTHPUT_KERNELS_RANDOM_FILL_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace truthput {

// p[i] = bf16(u_i * scale) for i in [0, n), u_i as above. Requires n >= 0, scale finite and > 0.
absl::Status FillRandomBf16(__nv_bfloat16* p, int64_t n, uint64_t seed, float scale,
                            cudaStream_t stream);

// p[i] = bf16(value) for i in [0, n). NaN stays NaN (use it to poison outputs).
absl::Status FillBf16(__nv_bfloat16* p, int64_t n, float value, cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_RANDOM_FILL_H_
