// For device_code_test only: a kernel built for sm_100 alone (CUDA_ARCHITECTURES 100-real), which
// no other GPU can run.
#ifndef TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_
#define TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_

namespace truthput {

const void* ForeignArchitectureProbe();

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_DEVICE_CODE_FOREIGN_PROBE_H_
