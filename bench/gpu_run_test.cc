#include "bench/gpu_run.h"

#include <cuda_runtime_api.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/bench_request.h"
#include "bench/stats.h"
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
// K and V are batch x 131072 x 8 heads x 128 x 2 x 2 B, 275 GB at batch 512 and 550 GB at 1024,
// and a rotation needs two layer buffers: more than any GPU has (batch 128 fits an H200).
TEST(RunOnGpuTest, MarksABatchThatDoesNotFitSkippedAndGoesOn) {
  absl::StatusOr<BenchRequest> request = Decode8b("512,1024", 131071);
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
  // Rated against its own datasheet: no note says otherwise.
  for (const std::string& note : run->result.config().notes()) {
    EXPECT_THAT(note, Not(HasSubstr("another GPU's peaks"))) << note;
  }
}

// Out of memory after a point's buffers were made (a graph, cuBLASLt's workspace, another process
// taking memory meanwhile) skips that point with the reason, as one that does not fit, and the
// sweep goes on to measure the next.
TEST(RunOnGpuTest, MarksAPointThatRunsOutOfMemoryLaterSkippedAndGoesOn) {
  absl::StatusOr<BenchRequest> request = Decode8b("1,2", 512);
  ASSERT_TRUE(request.ok()) << request.status();
  SetAfterRunnerMadeHookForTesting([](const StepConfig& step) {
    return step.batch == 1 ? absl::ResourceExhaustedError("cudaGraphInstantiate: out of memory")
                           : absl::OkStatus();
  });
  std::ostringstream log;
  const absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  SetAfterRunnerMadeHookForTesting(nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->stopped.ok()) << run->stopped;
  ASSERT_EQ(run->result.points_size(), 2);
  const BatchPoint& oom = run->result.points(0);
  EXPECT_TRUE(oom.skipped());
  EXPECT_THAT(oom.skip_reason(), ::testing::StartsWith("cudaGraphInstantiate: out of memory"));
  EXPECT_GT(oom.bound_ms(), 0);
  EXPECT_FALSE(oom.has_step_ms_p50());
  const BatchPoint& next = run->result.points(1);
  EXPECT_FALSE(next.skipped());
  EXPECT_GT(next.step_ms_p50(), 0);
  EXPECT_THAT(log.str(), HasSubstr("batch 1: skipped: cudaGraphInstantiate: out of memory"));
}

// The same, with the memory really gone: once batch 1's buffers are made, this process takes all
// the memory left (as another process might), so whatever the point allocates next (the graph,
// a workspace) fails in CUDA itself. The point is skipped as out of memory, not blamed on a
// later call or ended as a fault; with the memory back, the same point is measured.
TEST(RunOnGpuTest, SkipsAPointWhoseMemoryIsTakenAfterItsBuffersWereMade) {
  absl::StatusOr<BenchRequest> request = Decode8b("1", 512);
  ASSERT_TRUE(request.ok()) << request.status();
  std::vector<void*> taken;
  auto give_back = [&taken] {
    for (void* p : taken) cudaFree(p);
    taken.clear();
  };
  absl::Cleanup on_exit = [&] {
    SetAfterRunnerMadeHookForTesting(nullptr);
    give_back();
  };
  size_t taken_bytes = 0;
  SetAfterRunnerMadeHookForTesting([&](const StepConfig&) {
    // Whole chunks while they come, then halves down to 1 MiB: what is left is less than that.
    for (size_t chunk = size_t{1} << 34; chunk >= (size_t{1} << 20);) {
      void* p = nullptr;
      if (cudaMalloc(&p, chunk) == cudaSuccess) {
        taken.push_back(p);
        taken_bytes += chunk;
      } else {
        cudaGetLastError();  // the refusal is this test's, not the run's
        chunk /= 2;
      }
    }
    return absl::OkStatus();
  });
  std::ostringstream log;
  absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  std::cout << "took " << taken_bytes / 1e9 << " GB after the runner was made\n" << log.str();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->stopped.ok()) << run->stopped;
  ASSERT_EQ(run->result.points_size(), 1);
  const BatchPoint& starved = run->result.points(0);
  EXPECT_TRUE(starved.skipped());
  EXPECT_THAT(starved.skip_reason(), HasSubstr("out of memory"));
  EXPECT_FALSE(starved.has_step_ms_p50());

  SetAfterRunnerMadeHookForTesting(nullptr);
  give_back();
  run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->stopped.ok()) << run->stopped;
  ASSERT_EQ(run->result.points_size(), 1);
  EXPECT_FALSE(run->result.points(0).skipped()) << run->result.points(0).skip_reason();
  EXPECT_GT(run->result.points(0).step_ms_p50(), 0);
}

// A step bounded at 200 ms or less is timed often enough for a 99th percentile; a long prefill
// step is timed a few times, and its p99 is left empty with the reason rather than filled with
// the maximum of those few.
TEST(RunOnGpuTest, GivesAP99OnlyWhereEnoughStepsWereTimed) {
  absl::StatusOr<BenchRequest> request = Decode8b("1", 512);
  ASSERT_TRUE(request.ok()) << request.status();
  std::ostringstream log;
  absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->result.points_size(), 1);
  {
    const BatchPoint& decode = run->result.points(0);
    EXPECT_GE(decode.reps(), 100u);
    ASSERT_TRUE(decode.has_step_ms_p99());
    EXPECT_GE(decode.step_ms_p99(), decode.step_ms_p50());
    // Every timed step is kept, in order, and summarizes to the point's columns (to 0.1 us).
    ASSERT_EQ(decode.step_ms_samples_size(), static_cast<int>(decode.reps()));
    const std::vector<double> samples(decode.step_ms_samples().begin(),
                                      decode.step_ms_samples().end());
    const SampleSummary summary = Summarize(samples);
    EXPECT_NEAR(summary.p50, decode.step_ms_p50(), 1e-4);
    ASSERT_TRUE(summary.p99.has_value());
    EXPECT_NEAR(*summary.p99, decode.step_ms_p99(), 1e-4);
    // The median's interval: there, and within the 0.5% target unless the point says it is not.
    ASSERT_TRUE(decode.has_step_ms_p50_rel_ci());
    EXPECT_GE(decode.step_ms_p50_rel_ci(), 0);
    if (!absl::c_any_of(decode.notes(), [](const std::string& n) {
          return absl::StartsWith(n, "step median not settled");
        })) {
      EXPECT_LE(decode.step_ms_p50_rel_ci(), 0.005);
    }
  }
  EXPECT_THAT(run->result.unavailable(), Not(::testing::Contains(HasSubstr("step_ms_p99"))));

  BenchFlagValues flags;
  flags.model = "8b";
  flags.batch = "8";
  flags.seq = "4096";  // 32768 tokens: bounded at 530 ms on an H100, 233 ms on a B200
  flags.ceilings = "none";
  flags.profile = "off";
  request = MakeBenchRequest("bench_prefill", Phase::kPrefill, flags);
  ASSERT_TRUE(request.ok()) << request.status();
  run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->result.points_size(), 1);
  const BatchPoint& prefill = run->result.points(0);
  EXPECT_GT(prefill.bound_ms(), 200);
  EXPECT_LT(prefill.reps(), 100u);
  EXPECT_EQ(prefill.step_ms_samples_size(), static_cast<int>(prefill.reps()));
  EXPECT_GT(prefill.step_ms_p50(), 0);
  EXPECT_FALSE(prefill.has_step_ms_p99());
  EXPECT_THAT(run->result.unavailable(),
              ::testing::Contains(HasSubstr("step_ms_p99: empty where fewer than 100 steps")));
  // Its FFN projections, timed alone over 32 layers, take a few hundred ms a rep: the half-second
  // op timing gets too few for a median's interval, and the point says so.
  EXPECT_THAT(prefill.notes(), ::testing::Contains(::testing::AllOf(
                                   HasSubstr("ops timed alone: "), HasSubstr("medians not settled"),
                                   HasSubstr("too few for an interval"))));
}

// --gpu=ID names the datasheet a run is rated against; where that is not the GPU's own (here
// the H200's on an H100, or the H100's on anything else), the result says so beside the figures.
TEST(RunOnGpuTest, NotesADatasheetThatIsNotTheGpusOwn) {
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  const bool h100 = std::string(prop.name) == "NVIDIA H100 80GB HBM3";
  absl::StatusOr<BenchRequest> request = Decode8b("512", 131071);  // skipped: nothing is timed
  ASSERT_TRUE(request.ok()) << request.status();
  request->gpu_arg = h100 ? "h200" : "h100-sxm";
  std::ostringstream log;
  const absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->result.datasheet().id(), request->gpu_arg);
  EXPECT_THAT(run->result.config().notes(),
              ::testing::Contains(HasSubstr(absl::StrCat(
                  "mbu, mfu and the bounds are against another GPU's peaks: ", prop.name, " (",
                  prop.multiProcessorCount, " SMs")))
                  .Times(1));
  EXPECT_THAT(run->result.config().notes(),
              ::testing::Contains(HasSubstr("is not the GPU of datasheet " + request->gpu_arg)));
}

// Run as a child of the test below (this binary, this test alone): holds a CUDA context and
// 1 GiB on GPU 0, says "ready", and keeps them until its stdin closes.
TEST(RunOnGpuTest, DISABLED_HoldsTheGpuUntilStdinCloses) {
  void* held = nullptr;
  ASSERT_EQ(cudaMalloc(&held, size_t{1} << 30), cudaSuccess);
  std::printf("ready\n");
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  cudaFree(held);
}

// Another process with a context on the GPU while a point is measured: the point says so, with
// that process's pid where NVML gives pids of this PID namespace.
TEST(RunOnGpuTest, NotesAnotherProcessOnTheGpu) {
  int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
  pid_t child = 0;
  // Closes what was opened and ends the child (its stdin closes), however this test leaves.
  absl::Cleanup end_child = [&] {
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) {
      if (fd >= 0) close(fd);
    }
    int status = 0;
    if (child > 0) waitpid(child, &status, 0);
  };
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(from_child), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&actions] { posix_spawn_file_actions_destroy(&actions); };
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, to_child[1]);
  posix_spawn_file_actions_addclose(&actions, from_child[0]);
  std::string filter = "--gtest_filter=RunOnGpuTest.DISABLED_HoldsTheGpuUntilStdinCloses";
  std::string disabled = "--gtest_also_run_disabled_tests";
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, filter.data(), disabled.data(), nullptr};
  ASSERT_EQ(posix_spawn(&child, exe, &actions, nullptr, argv, environ), 0);
  // The child's ends, closed here so that its stdin closes with ours.
  close(to_child[0]);
  close(from_child[1]);
  to_child[0] = from_child[1] = -1;
  std::string out;
  char buf[256];
  while (out.find("ready\n") == std::string::npos) {
    const ssize_t n = read(from_child[0], buf, sizeof(buf));
    ASSERT_GT(n, 0) << "the child ended before it held the GPU: " << out;
    out.append(buf, static_cast<size_t>(n));
  }

  absl::StatusOr<BenchRequest> request = Decode8b("1", 512);
  ASSERT_TRUE(request.ok()) << request.status();
  std::ostringstream log;
  const absl::StatusOr<GpuRun> run = RunOnGpu(*request, log);
  ASSERT_TRUE(run.ok()) << run.status();
  for (const std::string& u : run->result.unavailable()) {
    if (absl::StartsWith(u, "other processes on this GPU") ||
        absl::StrContains(u, "NVML not available")) {
      GTEST_SKIP() << "NVML cannot list this GPU's processes here: " << u;
    }
  }
  ASSERT_EQ(run->result.points_size(), 1);
  const std::string notes = absl::StrJoin(run->result.points(0).notes(), " | ");
  std::cout << "the point's notes: " << notes << "\n";
  EXPECT_THAT(notes, HasSubstr("a compute context on this GPU while it was measured: pid "));
  // NVML's pids are this namespace's unless the note says this process was not among them.
  if (!absl::StrContains(notes, "presumably this one")) {
    EXPECT_THAT(notes, HasSubstr(absl::StrCat("pid ", child, " (")));
  }
}

}  // namespace
}  // namespace truthput
