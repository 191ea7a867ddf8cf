// What CublasLtGemm and CublasLtFp8Gemm share about cuBLASLt: the plan of one shape (descriptors,
// candidates, the chosen algorithm), how an algorithm is described in a result file, which
// configurations are worth timing, and how the fastest of them is found on real buffers.
#ifndef TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_
#define TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

// The alignment both wrappers check their operands for and promise the heuristic. 16 bytes is
// what the vectorized and TMA paths need; asking for more would exclude nothing useful on Hopper.
inline constexpr uint32_t kCublasLtAlignmentBytes = 16;

// Whether p is aligned as the wrappers promise the heuristic.
inline bool CublasLtAligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kCublasLtAlignmentBytes == 0;
}

// One shape's matmul as both wrappers plan it: y = x · W^T for row-major x [m, k], W [n, k] and
// bf16 y [m, n]. cuBLASLt is column-major, and read as column-major the row-major buffers are
// their transposes, so it computes y^T[n,m] = op_T(W[k,n]) · op_N(x[k,m]) ("TN"), fp32 compute
// and scale. Owns its descriptors.
struct CublasLtMatmulPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W, column-major [k, n], ld k, op T.
  cublasLtMatrixLayout_t b = nullptr;  // x, column-major [k, m], ld k, op N.
  cublasLtMatrixLayout_t c = nullptr;  // y, column-major [n, m], ld n (C and D).
  std::string label;                   // how a description starts, e.g. "cublasLt fp8 per_row"
  // The heuristic's usable results, best first; a wrapper may add variants (CublasLtCandidates).
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;
  cublasLtMatmulAlgo_t algo{};  // what Run enqueues
  std::string description;      // label, algo's attributes and how it was chosen
  bool tuned = false;

  CublasLtMatmulPlan() = default;
  CublasLtMatmulPlan(const CublasLtMatmulPlan&) = delete;
  CublasLtMatmulPlan& operator=(const CublasLtMatmulPlan&) = delete;
  ~CublasLtMatmulPlan();

  // Creates op, a, b and c for the shape, with W and x of `input_type`.
  absl::Status CreateDescriptors(cudaDataType_t input_type, int64_t m, int64_t n, int64_t k);

  // label followed by candidates[i]'s attributes.
  std::string Describe(size_t i) const;
};

// What the heuristic answered for a plan: its own status (NOT_SUPPORTED where it knows no
// algorithm, which each wrapper reports its own way) and how many results it returned.
struct CublasLtHeuristicAnswer {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  int returned = 0;
};

// Asks the heuristic for up to 8 algorithms of plan's descriptors, A, B, C and D promised
// kCublasLtAlignmentBytes, and puts those it marks usable within max_workspace bytes into
// plan.candidates, best first; where there is one, the first becomes plan.algo and its
// description plan.description. An error only where the preference cannot be built.
absl::StatusOr<CublasLtHeuristicAnswer> AskCublasLtHeuristic(cublasLtHandle_t handle,
                                                             CublasLtMatmulPlan& plan,
                                                             size_t max_workspace);

// Times plan.candidates (FastestCublasLtCandidate below; enqueue(algo, set) enqueues algo on
// operand set `set` of operand_sets) and keeps the fastest as plan.algo, with the description
// "<label><attributes> autotuned=i/n". Once per plan: a tuned plan is left alone.
absl::Status TuneCublasLtPlan(
    CublasLtMatmulPlan& plan, size_t operand_sets,
    const std::function<absl::Status(const cublasLtMatmulAlgo_t& algo, size_t set)>& enqueue,
    cudaStream_t stream);

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
// candidate runs at all) the best of several timed rounds counts. A candidate whose warm-up
// enqueue fails while the stream stays healthy (cuBLASLt refused that configuration) is passed
// over; the first such error is returned only if every candidate fails. An error of the stream
// itself (a fault) is returned at once. Synchronizes `stream`.
absl::StatusOr<size_t> FastestCublasLtCandidate(
    size_t candidates, size_t operand_sets,
    const std::function<absl::Status(size_t candidate, size_t set)>& enqueue,
    cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLASLT_ALGO_H_
