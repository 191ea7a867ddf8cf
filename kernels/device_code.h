// Whether a GPU can run this build's kernels. They use Hopper's features (programmatic dependent
// launch, fp8 mma, wgmma and TMA) and are built for sm_90a, the H100 and H200 (CMakeLists.txt);
// another GPU (an A100, an L40S, a B200) has no code to run, and every launch there would fail
// with "no kernel image". Binaries check first, to say so once, with what to do instead.
#ifndef TRUTHPUT_KERNELS_DEVICE_CODE_H_
#define TRUTHPUT_KERNELS_DEVICE_CODE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace truthput {

// OK where the current device can run this build's kernels; FailedPrecondition naming the GPU,
// its compute capability and the architectures built for where it cannot.
absl::Status CheckDeviceCode();

// The same for one kernel, `kernel` being a __global__ function's address (for tests).
absl::Status CheckDeviceCodeOf(const void* kernel);

// CMAKE_CUDA_ARCHITECTURES of this build, comma-separated ("90a").
absl::string_view BuiltCudaArchitectures();

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_DEVICE_CODE_H_
