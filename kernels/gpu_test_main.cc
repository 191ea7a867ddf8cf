// main() for GPU tests. Where no CUDA GPU is usable, print why and exit 77, which ctest reports
// as "Skipped" (SKIP_RETURN_CODE), so a machine without a GPU never shows GPU tests as passed.
#include <cuda_runtime_api.h>

#include <cstdio>

#include "gtest/gtest.h"

int main(int argc, char** argv) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no usable CUDA GPU (%s); GPU tests run on the GPU machine.\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
