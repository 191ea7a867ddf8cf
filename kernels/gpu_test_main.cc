// main() for GPU tests. Where no CUDA GPU is usable, or the GPU cannot run this build's kernels,
// print why and exit 77, which ctest reports as "Skipped" (SKIP_RETURN_CODE), so a machine
// without a GPU never shows GPU tests as passed.
// Each test's random data comes from a seed base printed as it starts (gpu_test_util.h's
// FreshSeed); TRUTHPUT_TEST_SEED=N sets it, to replay a failure.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "kernels/device_code.h"
#include "kernels/gpu_test_util.h"

namespace {

// Gives each test its seed base and says which, so that a failure can be replayed.
class SeedPrinter : public testing::EmptyTestEventListener {
 public:
  explicit SeedPrinter(std::optional<uint64_t> replay) : replay_(replay) {}
  void OnTestStart(const testing::TestInfo&) override {
    std::random_device rd;
    truthput::test_seeds = {
        .base = replay_.value_or((static_cast<uint64_t>(rd()) << 32) ^ rd()), .drawn = 0};
    std::printf("TRUTHPUT_TEST_SEED=%llu\n",
                static_cast<unsigned long long>(truthput::test_seeds.base));
  }

 private:
  std::optional<uint64_t> replay_;
};

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no usable CUDA GPU (%s); GPU tests run on the GPU machine.\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 77;
  }
  // A GPU this build has no code for (an A100 under the sm_90a build) could only fail every test
  // with "no kernel image": a skip that says why, as without a GPU. Tests that launch nothing of
  // ours (NVML's, CUPTI's) skip with them: the build, and so its tests, are for Hopper.
  if (const absl::Status st = truthput::CheckDeviceCode(); !st.ok()) {
    std::printf("SKIPPED: %s\n", std::string(st.message()).c_str());
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  std::optional<uint64_t> replay;
  if (const char* env = std::getenv("TRUTHPUT_TEST_SEED"); env != nullptr && *env != '\0') {
    uint64_t seed = 0;
    if (!absl::SimpleAtoi(env, &seed)) {
      std::fprintf(stderr, "TRUTHPUT_TEST_SEED=%s: not a seed (an unsigned 64-bit number)\n", env);
      return 2;
    }
    replay = seed;
  }
  testing::UnitTest::GetInstance()->listeners().Append(new SeedPrinter(replay));
  const int rc = RUN_ALL_TESTS();
  // A binary whose every test skipped itself (no NVML, no counter permission) is a skip too, not
  // a pass: ctest would otherwise count it as a GPU test that ran.
  const testing::UnitTest& unit = *testing::UnitTest::GetInstance();
  if (rc == 0 && unit.successful_test_count() == 0 && unit.skipped_test_count() > 0) {
    std::printf("SKIPPED: all %d tests skipped themselves (reasons above).\n",
                unit.skipped_test_count());
    return 77;
  }
  return rc;
}
