// What CublasLtGemm and CublasLtFp8Gemm share about cuBLASLt algorithms: how one is described in
// a result file, and how the fastest of a heuristic's candidates is found on real buffers.
#ifndef TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_
#define TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

// " algo=66 tile=128x256 stages=64xAUTO splitk=1 reduction=none swizzle=0 custom=0
// inner=... cluster=2x1x1 workspace=4 waves=0.62": each field cuBLASLt will not say reads "?".
std::string CublasLtAlgoAttributes(const cublasLtMatmulHeuristicResult_t& result);

// The index of the fastest of `candidates` algorithms. enqueue(c, i) enqueues candidate c on
// operand set i (of `operand_sets`) on `stream`. Each round runs up to 8 sets once, so distinct
// weight buffers keep every run out of L2; after a warm-up round (which also checks that the
// candidate runs at all) the best of several timed rounds counts. Synchronizes `stream`.
absl::StatusOr<size_t> FastestCublasLtCandidate(
    size_t candidates, size_t operand_sets,
    const std::function<absl::Status(size_t candidate, size_t set)>& enqueue,
    cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_
