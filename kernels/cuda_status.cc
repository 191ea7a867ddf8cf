#include "kernels/cuda_status.h"

#include "absl/strings/str_cat.h"

namespace truthput {

absl::Status CudaStatus(cudaError_t err, const char* call) {
  if (err == cudaSuccess) return absl::OkStatus();
  // Clear a sticky-free error so later calls do not report it again.
  cudaGetLastError();
  const std::string msg =
      absl::StrCat(call, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
    return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

absl::Status CublasStatus(cublasStatus_t err, const char* call) {
  if (err == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string msg = absl::StrCat(call, ": cuBLAS status ", static_cast<int>(err));
  if (err == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(msg);
  if (err == CUBLAS_STATUS_NOT_SUPPORTED) return absl::UnimplementedError(msg);
  return absl::InternalError(msg);
}

}  // namespace truthput
