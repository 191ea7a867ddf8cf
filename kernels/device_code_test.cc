#include "kernels/device_code.h"

#include <cuda_runtime_api.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/device_code_foreign_probe.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

TEST(DeviceCodeTest, ThisGpuRunsThisBuildsKernels) {
  const absl::Status st = CheckDeviceCode();
  EXPECT_TRUE(st.ok()) << st;
}

// A kernel built only for sm_80 (SASS, no PTX to compile again): a Hopper GPU has nothing to
// run, as an A100 has nothing in an sm_90a build. The check says so once, naming the GPU, and
// leaves no error behind for the next call.
TEST(DeviceCodeTest, AKernelWithNoCodeForThisGpuIsAFailedPreconditionNamingIt) {
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  if (prop.major == 8) GTEST_SKIP() << "compute capability 8.x runs the probe's sm_80 code";
  const absl::Status st = CheckDeviceCodeOf(ForeignArchitectureProbe());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr(prop.name));
  EXPECT_THAT(st.message(), HasSubstr("cannot run this build's kernels, built for CUDA "
                                      "architectures " + std::string(BuiltCudaArchitectures())));
  EXPECT_THAT(st.message(), HasSubstr("[cudaErrorNoKernelImageForDevice]: "));
  EXPECT_THAT(st.message(),
              HasSubstr(prop.major < 9    ? "need compute capability 9.0 (Hopper) or newer"
                        : prop.major == 9 ? "rebuild with -DCMAKE_CUDA_ARCHITECTURES=90a"
                                          : "untested off Hopper"));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(CheckDeviceCode().ok());
}

}  // namespace
}  // namespace truthput
