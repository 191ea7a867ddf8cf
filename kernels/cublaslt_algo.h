// What CublasLtGemm and CublasLtFp8Gemm share about cuBLASLt algorithms: how one is described in
// a result file, which configurations are worth timing, and how the fastest of them is found on
// real buffers.
#ifndef TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_
#define TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

// " algo=66 tile=128x256 stages=64xAUTO splitk=1 reduction=none swizzle=0 custom=0
// inner=... cluster=2x1x1 workspace=4 waves=0.62": each field cuBLASLt will not say reads "?".
std::string CublasLtAlgoAttributes(const cublasLtMatmulHeuristicResult_t& result);

// The candidates Autotune times for one matmul: the heuristic's usable results (best first), then
// variants of their algorithms that the heuristic does not offer: each of the algorithm's tile
// sizes, with split-K over 1..8 parts (reduced in workspace) and, where the heuristic's cluster
// shape does not fit the tile, clusters of one CTA, each accepted by cublasLtMatmulAlgoCheck
// within `max_workspace`. Why: for decode's skinny GEMMs the heuristic offers few
// configurations (a single one for fp8 with per-row scales), and one that leaves SMs idle (0.5
// waves at 64 tokens on an H100) can still be the first. The variants come ordered by how well
// their last wave fills the GPU (cuBLASLt's own wave count), duplicates dropped, `limit`
// candidates in all at most.
std::vector<cublasLtMatmulHeuristicResult_t> CublasLtCandidates(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
    const std::vector<cublasLtMatmulHeuristicResult_t>& heuristic, size_t max_workspace,
    size_t limit);

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
