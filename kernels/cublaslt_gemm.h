// CublasLtGemm: the linear-layer GEMM y[m,n] = x[m,k] · W[n,k]^T through cuBLASLt.
//
// Layout is PyTorch's nn.Linear: W row-major [n,k], x row-major [m,k], y row-major [m,n]; bf16
// inputs and outputs, fp32 accumulation (CUBLAS_COMPUTE_32F), alpha 1, beta 0, no bias.
//
// Requirements (checked; violations are InvalidArgument, never a silent slow path):
//   * x, w and y 16-byte aligned, and n and k multiples of 8, so every row starts 16-byte aligned
//     (the heuristic is told 16 bytes is the alignment it may rely on);
//   * m, n, k positive.
//
// Usage: Create once, Prepare each shape up front (the heuristic query runs on the host, once per
// shape), then Run as often as wanted. Run allocates nothing, never synchronizes and is
// capturable into a CUDA graph, provided the shape was prepared before capture began: a Run on an
// unprepared shape prepares it when the stream is not capturing and returns FailedPrecondition
// when it is. A captured graph bakes in this object's workspace, so the object must outlive it.
//
// Not thread-safe. All Runs share one workspace: don't run one CublasLtGemm on two streams at once.
#ifndef TRUTHPUT_KERNELS_CUBLASLT_GEMM_H_
#define TRUTHPUT_KERNELS_CUBLASLT_GEMM_H_

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

using bf16 = __nv_bfloat16;

class CublasLtGemm {
 public:
  // Creates the cuBLASLt handle and allocates a workspace of workspace_bytes on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtGemm>> Create(size_t workspace_bytes = 64 << 20);

  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Builds the descriptors for this shape and asks cublasLtMatmulAlgoGetHeuristic for the best
  // algorithm that fits the workspace. Idempotent: a prepared shape returns OK at once.
  absl::Status Prepare(int64_t m, int64_t n, int64_t k);

  // Times every usable heuristic candidate of a shape (preparing it if needed) on `operands`,
  // rotated so that distinct weight buffers keep runs from finding their weights in L2, and
  // keeps the fastest for later Runs; a shape is tuned once. Synchronizes `stream`: call it
  // before capture, not in it. Unlike CublasLtFp8Gemm, no variants beyond the heuristic's
  // (CublasLtCandidates): for bf16 the 70B decode steps ran no faster with 32 candidates per
  // shape, and start-up took ~6 s longer per batch (results/h100-sxm/gemv_load_experiment.txt,
  // section 25).
  struct Operands {
    const bf16* x;
    const bf16* w;
    bf16* y;
  };
  absl::Status Autotune(int64_t m, int64_t n, int64_t k, const std::vector<Operands>& operands,
                        cudaStream_t stream);

  // Enqueues y = x · w^T on stream. See the header comment for alignment and capture rules.
  absl::Status Run(const bf16* x, const bf16* w, bf16* y, int64_t m, int64_t n, int64_t k,
                   cudaStream_t stream);

  // The algorithm chosen for a prepared shape, e.g. "cublasLt algo=66 tile=128x256 stages=64xAUTO
  // splitk=1 reduction=none swizzle=0 custom=0 inner=undefined cluster=2x1x1 workspace=0
  // waves=0.62"; "not prepared" for a shape never prepared.
  std::string AlgoDescription(int64_t m, int64_t n, int64_t k) const;

  // The cuBLASLt library version actually loaded, e.g. "13.1.0" (cublasLtGetVersion).
  static std::string Version();

  size_t workspace_bytes() const { return workspace_bytes_; }
  int device() const { return device_; }  // The device current at Create; Run on streams of it.

 private:
  struct Plan;  // Descriptors, layouts and algorithm for one shape.
  using Shape = std::tuple<int64_t, int64_t, int64_t>;

  CublasLtGemm(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes, int device);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  int device_;
  absl::flat_hash_map<Shape, std::unique_ptr<Plan>> plans_;
};

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLASLT_GEMM_H_
