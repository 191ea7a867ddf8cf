#include "bench/gpu_run.h"

#include <cuda_runtime_api.h>

#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/bench_request.h"
#include "bench/step_runner.h"
#include "bench/step_verifier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A run checks each GEMM implementation it may use on a reduced step before it times anything,
// and stops at the first that fails: no point measured, the error naming the op, the layer and
// the projections. With bf16 weights --gemm=auto checks "own" and then "cublaslt"; corrupting
// only the second shows the check reaches it.
TEST(RunOnGpuTest, StopsWhenTheCorrectnessCheckFails) {
  BenchFlagValues flags;
  flags.model = "8b";
  flags.batch = "1";
  flags.context = 512;
  flags.ceilings = "none";
  flags.profile = "off";
  absl::StatusOr<BenchRequest> request = MakeBenchRequest("bench_decode", Phase::kDecode, flags);
  ASSERT_TRUE(request.ok()) << request.status();

  for (const auto& [variant, kernel] : {std::pair<std::string, std::string>{"own", "skinny_gemm"},
                                        {"cublaslt", "cublasLt"}}) {
    SCOPED_TRACE(variant);
    int corrupted = 0;
    // down_proj's output in layer 1, element 5, set to 1000 after the kernel wrote it.
    SetVerifyStepHookForTesting([&, kernel = kernel](const StepRunner& r, size_t op,
                                                     int64_t layer, cudaStream_t s) {
      const Op& o = r.workload().ops().at(op);
      if (o.name != "down_proj" || layer != 1 ||
          r.Implementation(op).find(kernel) == std::string::npos) {
        return absl::OkStatus();
      }
      absl::StatusOr<StepRunner::GemmBuffers> b = r.GemmBuffersOf(o, layer);
      if (!b.ok()) return b.status();
      ++corrupted;
      return FillBf16(b->y + 5, 1, 1000.0f, s);
    });
    std::ostringstream log;
    const absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
    SetVerifyStepHookForTesting(nullptr);
    EXPECT_EQ(corrupted, 1);
    EXPECT_EQ(run.status().code(), absl::StatusCode::kInternal) << run.status();
    EXPECT_THAT(run.status().message(), HasSubstr("verification failed: op down_proj (layer 1)"));
    EXPECT_THAT(run.status().message(), HasSubstr("got 1000"));
    EXPECT_THAT(run.status().message(), HasSubstr("(projections: " + variant + ")"));
    EXPECT_THAT(log.str(), Not(HasSubstr("verify: ok")));
  }
}

}  // namespace
}  // namespace truthput
