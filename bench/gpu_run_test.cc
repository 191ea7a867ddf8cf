#include "bench/gpu_run.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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

// bench_decode --model=8b --batch=BATCH --context=CONTEXT, with no ceilings and no profiler:
// what RunOnGpu does past its correctness check, and no more.
absl::StatusOr<BenchRequest> Decode8b(const char* batch, int64_t context) {
  BenchFlagValues flags;
  flags.model = "8b";
  flags.batch = batch;
  flags.context = context;
  flags.ceilings = "none";
  flags.profile = "off";
  return MakeBenchRequest("bench_decode", Phase::kDecode, flags);
}

// A run checks each GEMM implementation it may use on a reduced step before it times anything,
// and stops at the first that fails: no point measured, the error naming the op, the layer and
// the projections. With bf16 weights --gemm=auto checks "own" and then "cublaslt"; corrupting
// only the second shows the check reaches it.
TEST(RunOnGpuTest, StopsWhenTheCorrectnessCheckFails) {
  absl::StatusOr<BenchRequest> request = Decode8b("1", 512);
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

// A batch whose KV cache does not fit the GPU is marked skipped with the reason, keeps its
// predicted figures, and the sweep goes on to the next. Llama-3.1-8B at context 131071: a layer's
// K and V are batch x 131072 x 8 heads x 128 x 2 x 2 B, 68.7 GB at batch 128 and 137 GB at 256,
// and a rotation needs two layer buffers.
TEST(RunOnGpuTest, MarksABatchThatDoesNotFitSkippedAndGoesOn) {
  absl::StatusOr<BenchRequest> request = Decode8b("128,256", 131071);
  ASSERT_TRUE(request.ok()) << request.status();
  std::ostringstream log;
  const absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->stopped.ok()) << run->stopped;
  ASSERT_EQ(run->result.points_size(), 2);
  for (const BatchPoint& p : run->result.points()) {
    SCOPED_TRACE(p.batch());
    EXPECT_TRUE(p.skipped());
    EXPECT_THAT(p.skip_reason(), HasSubstr("does not fit"));
    EXPECT_FALSE(p.fits());
    EXPECT_GT(p.bound_ms(), 0);            // the prediction stays
    EXPECT_FALSE(p.has_step_ms_p50());     // nothing was timed
    EXPECT_THAT(log.str(), HasSubstr(absl::StrCat("batch ", p.batch(), ": skipped: ")));
  }
  EXPECT_THAT(log.str(), HasSubstr("verify: ok"));
}

}  // namespace
}  // namespace truthput
