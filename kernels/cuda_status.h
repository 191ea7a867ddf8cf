// Turning CUDA runtime and cuBLAS(Lt) error codes into absl::Status, with the failing call named;
// and the current device's SM count, which kernel launchers size their grids by.
#ifndef TRUTHPUT_KERNELS_CUDA_STATUS_H_
#define TRUTHPUT_KERNELS_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace truthput {

// OK for cudaSuccess; otherwise an Internal error "CALL: cudaErrorName (description)".
absl::Status CudaStatus(cudaError_t err, const char* call);
absl::Status CublasStatus(cublasStatus_t err, const char* call);

// SM count of the current device, cached per device (the attribute query would otherwise be
// host work on every launch, e.g. on every decode GEMM).
absl::StatusOr<int> CurrentSmCount();

}  // namespace truthput

#define TP_CUDA_RETURN_IF_ERROR(expr)                                         \
  do {                                                                        \
    if (absl::Status _st = ::truthput::CudaStatus((expr), #expr); !_st.ok()) \
      return _st;                                                             \
  } while (0)

#define TP_CUBLAS_RETURN_IF_ERROR(expr)                                         \
  do {                                                                          \
    if (absl::Status _st = ::truthput::CublasStatus((expr), #expr); !_st.ok()) \
      return _st;                                                               \
  } while (0)

#define TP_RETURN_IF_ERROR(expr)                   \
  do {                                             \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

#endif  // TRUTHPUT_KERNELS_CUDA_STATUS_H_
