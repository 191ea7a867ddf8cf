// CublasGemm: the linear-layer GEMM y[m,n] = x[m,k] · W[n,k]^T as most code first writes it: one
// cublasGemmEx call with CUBLAS_GEMM_DEFAULT, cuBLAS choosing the algorithm itself (no heuristic
// query, no tuning). bench_kernels reports it beside the project's own kernels and the tuned and
// heuristic cuBLASLt plans, as the baseline a user would compare against.
//
// Layout as CublasLtGemm (nn.Linear: W row-major [n,k], x row-major [m,k], y row-major [m,n]);
// bf16 in and out, fp32 compute (CUBLAS_COMPUTE_32F), alpha 1, beta 0.
//
// Requirements (InvalidArgument otherwise): m, n, k positive and within int32; x, w, y non-null.
//
// Run allocates nothing and never synchronizes: cuBLAS works in a workspace this object owns
// (set again whenever the stream changes, since cublasSetStream drops it). Not thread-safe; don't
// run one CublasGemm on two streams at once.
#ifndef TRUTHPUT_KERNELS_CUBLAS_GEMM_H_
#define TRUTHPUT_KERNELS_CUBLAS_GEMM_H_

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

class CublasGemm {
 public:
  // Creates the cuBLAS handle and a workspace of workspace_bytes on the current device.
  static absl::StatusOr<std::unique_ptr<CublasGemm>> Create(size_t workspace_bytes = 32 << 20);

  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // Enqueues y = x · w^T on stream.
  absl::Status Run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int64_t m,
                   int64_t n, int64_t k, cudaStream_t stream);

 private:
  CublasGemm(cublasHandle_t handle, void* workspace, size_t workspace_bytes)
      : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}

  cublasHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  bool stream_set_ = false;
  cudaStream_t stream_ = nullptr;
};

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_CUBLAS_GEMM_H_
