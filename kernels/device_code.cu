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
  // No code for this GPU: no SASS for it, and no PTX it can compile (none, too new for the
  // driver, or JIT compilation unavailable).
  if (err != cudaErrorNoKernelImageForDevice && err != cudaErrorInvalidDeviceFunction &&
      err != cudaErrorUnsupportedPtxVersion && err != cudaErrorInvalidPtx &&
      err != cudaErrorJitCompilerNotFound && err != cudaErrorJitCompilationDisabled) {
    return CudaStatus(err, "cudaFuncGetAttributes");
  }
  int device = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  TP_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  // The kernels need sm_90 (programmatic dependent launch, wgmma, TMA); a newer GPU may run a
  // build for its own architecture, which compiles but has been tested on Hopper only.
  std::string remedy;
  if (err == cudaErrorUnsupportedPtxVersion) {
    remedy = "its PTX needs a newer driver";
  } else if (prop.major < 9) {
    remedy = "the kernels need compute capability 9.0 (Hopper) or newer";
  } else if (prop.major == 9) {
    remedy = "rebuild with -DCMAKE_CUDA_ARCHITECTURES=90a (the default)";
  } else {
    remedy = absl::StrCat("rebuild with -DCMAKE_CUDA_ARCHITECTURES=", prop.major, prop.minor,
                          "a (compiles; untested off Hopper)");
  }
  return absl::FailedPreconditionError(absl::StrCat(
      prop.name, " (compute capability ", prop.major, ".", prop.minor,
      ") cannot run this build's kernels, built for CUDA architectures ", BuiltCudaArchitectures(),
      " [", cudaGetErrorName(err), "]: ", remedy));
}

absl::Status CheckDeviceCode() {
  return CheckDeviceCodeOf(reinterpret_cast<const void*>(&DeviceCodeProbe));
}

}  // namespace truthput
