// For device_code_test only: a kernel built for sm_80 alone (CUDA_ARCHITECTURES 80-real: SASS,
// no PTX), which runs on compute capability 8.x only, so not on the Hopper GPUs the build is for.
#ifndef TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_
#define TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_

namespace truthput {

const void* ForeignArchitectureProbe();

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_
