#include "kernels/cublas_gemm.h"

#include <cublas_v2.h>

#include <cstdint>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {

absl::StatusOr<std::unique_ptr<CublasGemm>> CublasGemm::Create(size_t workspace_bytes) {
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    TP_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, workspace_bytes));
  }
  cublasHandle_t handle = nullptr;
  if (absl::Status st = CublasStatus(cublasCreate(&handle), "cublasCreate"); !st.ok()) {
    cudaFree(workspace);
    return st;
  }
  return std::unique_ptr<CublasGemm>(new CublasGemm(handle, workspace, workspace_bytes));
}

CublasGemm::~CublasGemm() {
  cublasDestroy(handle_);
  cudaFree(workspace_);
}

absl::Status CublasGemm::Run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y,
                             int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (m < 1 || n < 1 || k < 1 || m > kMax || n > kMax || k > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("CublasGemm: need 1 <= m, n, k < 2^31; got m=", m, " n=", n, " k=", k));
  }
  if (x == nullptr || w == nullptr || y == nullptr) {
    return absl::InvalidArgumentError("CublasGemm: null pointer");
  }
  if (!stream_set_ || stream != stream_) {
    TP_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle_, stream));
    TP_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(handle_, workspace_, workspace_bytes_));
    stream_ = stream;
    stream_set_ = true;
  }
  // Column-major view: y^T [n, m] = (W as k x n)^T · (x as k x m).
  const float alpha = 1.0f, beta = 0.0f;
  return CublasStatus(
      cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                   static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(k), x,
                   CUDA_R_16BF, static_cast<int>(k), &beta, y, CUDA_R_16BF, static_cast<int>(n),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

}  // namespace truthput
