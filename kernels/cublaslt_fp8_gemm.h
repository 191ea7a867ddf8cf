// CublasLtFp8Gemm: the linear-layer GEMM y[m,n] = x[m,k] · W[n,k]^T with fp8 e4m3 inputs through
// cuBLASLt: the GPU's fp8 tensor-core rate (bench_ceilings) and the W8A8 projections of an fp8
// decode step (per-row scales, below).
//
// Layout is CublasLtGemm's (nn.Linear: W row-major [n,k], x row-major [m,k], y row-major [m,n]),
// which in cuBLASLt's column-major terms is A = W transposed, B = x not transposed: the "TN" form
// that fp8 GEMMs on Hopper require. x and W are e4m3, y is bf16; fp32 compute and scale type,
// alpha 1, beta 0, no bias. The A and B scale pointers point at a device float 1.0 this object
// owns (per-tensor dequantization scales of 1: the inputs are taken at face value).
//
// Per-row scales (W8A8 decode). Run's second form takes x_scales[m] (per token) and w_scales[n]
// (per output channel), device fp32, and computes y[i,j] = x_scales[i] * w_scales[j] *
// sum_k x[i,k] * W[j,k] with cuBLASLt's OUTER_VEC_32F scale mode (A's vector is w_scales, B's
// is x_scales). Each scaling has its own plans: prepare a shape for the one it will run with.
//
// Accumulation. With fast_accum (CUBLASLT_MATMUL_DESC_FAST_ACCUM), partial sums stay in the
// tensor core's reduced-precision accumulator for the whole k loop: the peak rate, and what most
// fp8 inference uses. Without it, cuBLASLt promotes partials to fp32 periodically: slower, closer
// to an fp32 sum.
//
// Requirements (checked, InvalidArgument): m, n, k positive; n and k multiples of 16 (fp8 rows
// and the output's rows 16-byte aligned); x, w, y (and x_scales, w_scales) 16-byte aligned.
//
// Usage as CublasLtGemm: Create once, Prepare (or Autotune) each shape before capture, then Run
// as often as wanted. Run allocates nothing, never synchronizes and is capturable into a CUDA
// graph when the shape was prepared before capture began. A captured graph bakes in this
// object's workspace and scale, so the object must outlive it, and the scale vectors' addresses:
// refresh the vectors in place. Not thread-safe.
#ifndef TRUTHPUT_KERNELS_CUBLASLT_FP8_GEMM_H_
#define TRUTHPUT_KERNELS_CUBLASLT_FP8_GEMM_H_

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
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

using fp8_e4m3 = __nv_fp8_e4m3;

class CublasLtFp8Gemm {
 public:
  struct Options {
    size_t workspace_bytes = size_t{64} << 20;
    bool fast_accum = true;
  };
  // Creates the cuBLASLt handle, the workspace and the device scale on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> Create(const Options& options);
  static absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> Create() { return Create(Options{}); }

  ~CublasLtFp8Gemm();
  CublasLtFp8Gemm(const CublasLtFp8Gemm&) = delete;
  CublasLtFp8Gemm& operator=(const CublasLtFp8Gemm&) = delete;

  // How x and W are dequantized; part of a plan's identity.
  enum class Scaling {
    kUnit,    // Per-tensor scales of 1: Run(x, w, y, ...).
    kPerRow,  // x_scales[m] and w_scales[n]: Run(x, x_scales, w, w_scales, y, ...).
  };

  // Builds the descriptors of a shape and asks the heuristic for the best algorithm that fits
  // the workspace. Idempotent. NotFound where cuBLASLt offers none (e.g. a GPU without fp8, or
  // no per-row-scaled kernel for this GPU and cuBLASLt).
  absl::Status Prepare(int64_t m, int64_t n, int64_t k, Scaling scaling = Scaling::kUnit);

  // Times the candidates of a shape (CublasLtCandidates in cublaslt_algo.h: the heuristic's,
  // then variants of their algorithms) on `operands` (each round runs every set once, up to 8,
  // so distinct weight buffers keep weights out of L2) and keeps the fastest. A shape is tuned
  // once, per scaling: the ScaledOperands form tunes the kPerRow plan.
  // Synchronizes `stream`: call it before capture.
  struct Operands {
    const fp8_e4m3* x;
    const fp8_e4m3* w;
    __nv_bfloat16* y;
  };
  struct ScaledOperands {
    const fp8_e4m3* x;
    const float* x_scales;
    const fp8_e4m3* w;
    const float* w_scales;
    __nv_bfloat16* y;
  };
  absl::Status Autotune(int64_t m, int64_t n, int64_t k, const std::vector<Operands>& operands,
                        cudaStream_t stream);
  absl::Status Autotune(int64_t m, int64_t n, int64_t k,
                        const std::vector<ScaledOperands>& operands, cudaStream_t stream);

  // The number of candidates Autotune times for a shape (preparing it if needed), and a choice of
  // one of them for later Runs (index < that number), so tests can check each one.
  absl::StatusOr<size_t> CandidateCount(int64_t m, int64_t n, int64_t k, Scaling scaling);
  absl::Status UseCandidate(int64_t m, int64_t n, int64_t k, Scaling scaling, size_t index);

  // Enqueues y = x · w^T on stream (see the header comment).
  absl::Status Run(const fp8_e4m3* x, const fp8_e4m3* w, __nv_bfloat16* y, int64_t m, int64_t n,
                   int64_t k, cudaStream_t stream);
  // Enqueues y[i,j] = x_scales[i] * w_scales[j] * (x · w^T)[i,j] on stream (kPerRow).
  absl::Status Run(const fp8_e4m3* x, const float* x_scales, const fp8_e4m3* w,
                   const float* w_scales, __nv_bfloat16* y, int64_t m, int64_t n, int64_t k,
                   cudaStream_t stream);

  // The algorithm of a prepared shape, e.g. "cublasLt fp8 fast_accum algo=66 tile=128x256
  // stages=... workspace=0 waves=0.62 autotuned=2/8" ("cublasLt fp8 per_row ..." for kPerRow);
  // "not prepared" otherwise.
  std::string AlgoDescription(int64_t m, int64_t n, int64_t k,
                              Scaling scaling = Scaling::kUnit) const;

  bool fast_accum() const { return fast_accum_; }
  int device() const { return device_; }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, Scaling>;  // m, n, k, scaling.

  CublasLtFp8Gemm(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes, float* scale,
                  bool fast_accum, int device);

  // Sets the descriptors of a new plan for `scaling`: the one place the two modes differ.
  absl::Status BuildDescriptors(Plan& plan, int64_t m, int64_t n, int64_t k,
                                Scaling scaling) const;
  // The prepared plan of a key with its candidates expanded beyond the heuristic's.
  absl::StatusOr<Plan*> ExpandedPlan(const Key& key);
  // The plan of a key, prepared now where missing (FailedPrecondition during capture).
  absl::StatusOr<Plan*> FindOrPrepare(const Key& key, cudaStream_t stream);
  // One cublasLtMatmul of plan with algo; x_scales and w_scales are used (and required) for
  // kPerRow plans only.
  absl::Status Enqueue(Plan& plan, const cublasLtMatmulAlgo_t& algo,
                       const ScaledOperands& o, cudaStream_t stream);
  absl::Status AutotuneImpl(const Key& key, const std::vector<ScaledOperands>& operands,
                            cudaStream_t stream);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  float* scale_;  // Device float 1.0: the kUnit A and B scales (kPerRow's placeholder).
  bool fast_accum_;
  int device_;
  absl::flat_hash_map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLASLT_FP8_GEMM_H_
