#include "kernels/device_code.h"

#include <cuda_runtime_api.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

// Compiled like every kernel of the build, for the same architectures.
__global__ void DeviceCodeProbe() {}

}  // namespace

absl::string_view BuiltCudaArchitectures() { return TRUTHPUT_CUDA_ARCHITECTURES; }

absl::Status CheckDeviceCodeOf(const void* kernel) {
  cudaFuncAttributes attributes{};
  const cudaError_t err = cudaFuncGetAttributes(&attributes, kernel);
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();  // not sticky: consumed here, so no later call reports it as its own
  if (err != cudaErrorNoKernelImageForDevice && err != cudaErrorInvalidDeviceFunction &&
      err != cudaErrorUnsupportedPtxVersion) {
    return CudaStatus(err, "cudaFuncGetAttributes");
  }
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  TP_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  // The kernels need sm_90 (programmatic dependent launch; fp8 mma needs sm_89); newer GPUs may
  // run a build for their own architecture, which only Hopper has been tested on.
  const std::string remedy =
      prop.major < 9 ? "they need compute capability 9.0 or newer"
                     : absl::StrCat("a build with -DCMAKE_CUDA_ARCHITECTURES=", prop.major,
                                    prop.minor, "a may (tested on Hopper only)");
  return absl::FailedPreconditionError(absl::StrCat(
      prop.name, " (compute capability ", prop.major, ".", prop.minor,
      ") cannot run this build's kernels, built for CUDA architectures ", BuiltCudaArchitectures(),
      " [", cudaGetErrorName(err), "]: ", remedy));
}

absl::Status CheckDeviceCode() {
  return CheckDeviceCodeOf(reinterpret_cast<const void*>(&DeviceCodeProbe));
}

}  // namespace truthput
