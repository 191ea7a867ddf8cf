#include "bench/gpu_timer.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "bench/stats.h"
#include "bench/stream_gate.h"
#include "gtest/gtest.h"
#include "kernels/cuda_status.h"

namespace truthput {
namespace {

constexpr int64_t kSpinNs = 200'000;  // 0.2 ms.

class TimeGpuWorkTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) {
      EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
      cudaStreamDestroy(stream_);
    }
  }
  static absl::Status Spin(cudaStream_t s) { return LaunchSpinKernel(kSpinNs, s); }

  cudaStream_t stream_ = nullptr;
};

void Print(const char* what, const TimingStats& s) {
  std::printf(
      "%s: p50 %.4f ms p99 %.4f spread %.4f rel_ci %.5f (steps %.5f) reps %d stable %d graph %d "
      "gated %d round %d\n",
      what, s.p50_ms, s.p99_ms.value_or(NAN), s.rel_spread, s.rel_ci, s.rel_ci_steps, s.reps,
      s.stable, s.graph, s.gated, s.round_reps);
}

void ExpectSaneSpin(const TimingStats& s) {
  // The kernel waits 0.2 ms on the GPU's global timer; the interval adds only the kernel's start.
  EXPECT_GE(s.p50_ms, 0.19);
  EXPECT_LE(s.p50_ms, 0.35);
  EXPECT_EQ(s.p99_ms.has_value(), s.reps >= kMinSamplesForP99);
  if (s.p99_ms) EXPECT_GE(*s.p99_ms, s.p50_ms);
  EXPECT_GE(s.rel_spread, 0);
  EXPECT_GE(s.rel_ci, s.rel_ci_steps);
  EXPECT_GE(s.rel_ci_steps, 0);
  EXPECT_GE(s.reps, 20);
  // The samples are the reps summarized: each spin's own time, none of a dropped round.
  ASSERT_EQ(s.samples_ms.size(), static_cast<size_t>(s.reps));
  EXPECT_EQ(Summarize(s.samples_ms).p50, s.p50_ms);
  for (double ms : s.samples_ms) EXPECT_GE(ms, 0.19);
}

TEST_F(TimeGpuWorkTest, GraphTimesSpinKernel) {
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, TimingOptions{});
  ASSERT_TRUE(s.ok()) << s.status();
  Print("graph spin 0.2ms", *s);
  ExpectSaneSpin(*s);
  EXPECT_TRUE(s->graph);
  EXPECT_TRUE(s->gated);
  EXPECT_EQ(s->graph_memset_nodes, 0);
  EXPECT_EQ(s->round_reps, TimingOptions{}.reps_per_round);  // A round of 10 spins fits.
}

// Graph mode runs the enqueue once eagerly before capturing it, even with no warm-up asked for:
// first-call setup that capture forbids (here a stream synchronize) must not reach the capture.
TEST_F(TimeGpuWorkTest, GraphModeRunsEnqueueOnceBeforeCaptureWithoutWarmup) {
  int calls = 0;
  const auto enqueue = [&calls](cudaStream_t s) -> absl::Status {
    if (calls++ == 0) TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
    return Spin(s);
  };
  TimingOptions options;
  options.warmup = 0;
  options.min_reps = 20;
  options.max_reps = 20;
  absl::StatusOr<TimingStats> s = TimeGpuWork(enqueue, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(calls, 2);  // the eager run and the capture; replays do not call it
  EXPECT_TRUE(s->graph);
  EXPECT_EQ(s->reps, 20);
}

// Asked for kMinSamplesForP99 reps, as bench_decode's steps are, the timing has a p99.
TEST_F(TimeGpuWorkTest, HasAP99FromAHundredReps) {
  TimingOptions options;
  options.min_reps = kMinSamplesForP99;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("graph spin 0.2ms, 100 reps", *s);
  ExpectSaneSpin(*s);
  EXPECT_GE(s->reps, kMinSamplesForP99);
  EXPECT_TRUE(s->p99_ms.has_value());
}

// min_reps outlasts the time cap (up to 3x it): a step's p99 and median CI are promised on it.
// 30 spins of 0.2 ms take about 6.5 ms: past a 4 ms cap after the second round, within 12 ms.
TEST_F(TimeGpuWorkTest, TimesMinRepsPastMaxSeconds) {
  TimingOptions options;
  options.min_reps = 30;
  options.max_seconds = 0.004;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GE(s->reps, 30);
}

// ... but not past 3x the cap: 1000 spins of 0.2 ms would take 200 ms; the cap ends them near 6.
TEST_F(TimeGpuWorkTest, StopsShortOfMinRepsAtThreeTimesMaxSeconds) {
  TimingOptions options;
  options.min_reps = 1000;
  options.max_reps = 1000;
  options.max_seconds = 0.002;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_LT(s->reps, 1000);
  EXPECT_FALSE(s->stable);
}

// Gated rounds that time out are halved and, where one launch does not fit, timing goes on
// ungated: with a gate that gives up after 1 us either may happen (the host races the gate
// kernel's start), but the timing ends with its reps, and round_reps says which it was.
TEST_F(TimeGpuWorkTest, GateTimeoutsEndInSmallerRoundsOrUngated) {
  TimingOptions options;
  options.gate_timeout_ms = 1e-3;
  options.min_reps = 40;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("graph spin 0.2ms, 1 us gate", *s);
  EXPECT_GE(s->reps, 40);
  if (s->gated) {
    EXPECT_GE(s->round_reps, 1);
    EXPECT_LE(s->round_reps, options.reps_per_round);
  } else {
    EXPECT_EQ(s->round_reps, 0);
  }
  ExpectSaneSpin(*s);
}

// Launch-queue overflow, forced. A graph's memset nodes take launch-queue space at every launch
// of the graph: on H200s 10 launches of a graph holding 80 of them among 400 cuBLASLt kernels (a
// 70B decode step from batch 32 has 82) fill the queue, so the host blocks in cudaGraphLaunch
// behind the closed gate, where 5 do not, and graphs of kernels alone took none measurable (40
// launches of 2560 fit; results/h200/decode_runs.log, stop 47). A graph of `memsets` memset
// nodes (4 bytes each).
class LaunchQueueOverflowTest : public TimeGpuWorkTest {
 protected:
  void SetUp() override {
    TimeGpuWorkTest::SetUp();
    ASSERT_EQ(cudaMalloc(&word_, 4), cudaSuccess);
  }
  void TearDown() override {
    EXPECT_EQ(cudaFree(word_), cudaSuccess);  // synchronizes the device first
    TimeGpuWorkTest::TearDown();
  }
  std::function<absl::Status(cudaStream_t)> Memsets(int memsets) {
    return [this, memsets](cudaStream_t s) -> absl::Status {
      for (int i = 0; i < memsets; ++i) {
        TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(word_, i & 0xff, 4, s));
      }
      return absl::OkStatus();
    };
  }
  // Whether a round of `launches` launches of the graph, each between two events as TimeGpuWork
  // records them, behind a gate closed for TimeGpuWork's default timeout, blocks the host until
  // the gate gives up: the precondition of each test, which skips where this driver's queue
  // holds the round.
  bool Overflows(int memsets, int launches) {
    absl::StatusOr<GraphExecPtr> graph = CaptureGraph(Memsets(memsets), stream_);
    EXPECT_TRUE(graph.ok()) << graph.status();
    absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
    EXPECT_TRUE(gate.ok()) << gate.status();
    if (!graph.ok() || !gate.ok()) return false;
    std::vector<cudaEvent_t> events(2 * launches);
    for (cudaEvent_t& e : events) EXPECT_EQ(cudaEventCreate(&e), cudaSuccess);
    EXPECT_EQ(cudaGraphLaunch(graph->get(), stream_), cudaSuccess);  // loaded and uploaded
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const auto timeout_ns = static_cast<int64_t>(TimingOptions{}.gate_timeout_ms * 1e6);
    EXPECT_TRUE((*gate)->Close(stream_, timeout_ns).ok());
    for (int i = 0; i < launches; ++i) {
      EXPECT_EQ(cudaEventRecord(events[2 * i], stream_), cudaSuccess);
      EXPECT_EQ(cudaGraphLaunch(graph->get(), stream_), cudaSuccess);
      EXPECT_EQ(cudaEventRecord(events[2 * i + 1], stream_), cudaSuccess);
    }
    (*gate)->Open();
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    return (*gate)->TimedOut();
  }

  void* word_ = nullptr;
};

// Where one launch overflows the queue, no round can be gated: the timing goes on ungated, with
// its reps, and says so.
TEST_F(LaunchQueueOverflowTest, AGraphThatOverflowsAloneIsTimedUngated) {
  constexpr int kMemsets = 8192;
  if (!Overflows(kMemsets, 1)) {
    GTEST_SKIP() << "one launch of " << kMemsets << " memset nodes fits this driver's queue";
  }
  TimingOptions options;
  options.min_reps = 20;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Memsets(kMemsets), stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("graph of 8192 memsets", *s);
  EXPECT_TRUE(s->graph);
  EXPECT_FALSE(s->gated);
  EXPECT_EQ(s->round_reps, 0);
  EXPECT_EQ(s->graph_memset_nodes, kMemsets);
  EXPECT_GE(s->reps, 20);
  EXPECT_EQ(s->samples_ms.size(), static_cast<size_t>(s->reps));  // none of a dropped round
  EXPECT_GT(s->p50_ms, 0);
}

// Where a round of 10 overflows and one launch does not, the rounds are halved until one fits and
// every kept sample is gated.
TEST_F(LaunchQueueOverflowTest, RoundsThatOverflowAreHalvedUntilTheyFit) {
  constexpr int kMemsets = 200;
  const int round = TimingOptions{}.reps_per_round;
  if (!Overflows(kMemsets, round) || Overflows(kMemsets, 1)) {
    GTEST_SKIP() << "this driver's queue does not hold 1 launch of " << kMemsets
                 << " memset nodes but not " << round;
  }
  TimingOptions options;
  options.min_reps = 40;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Memsets(kMemsets), stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("graph of 200 memsets", *s);
  EXPECT_TRUE(s->graph);
  EXPECT_TRUE(s->gated);
  EXPECT_GE(s->round_reps, 1);
  EXPECT_LT(s->round_reps, round);
  EXPECT_EQ(s->graph_memset_nodes, kMemsets);
  EXPECT_GE(s->reps, 40);
  EXPECT_EQ(s->samples_ms.size(), static_cast<size_t>(s->reps));  // none of a dropped round
}

TEST_F(TimeGpuWorkTest, EagerTimesSpinKernel) {
  TimingOptions options;
  options.use_graph = false;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("eager spin 0.2ms", *s);
  ExpectSaneSpin(*s);
  EXPECT_FALSE(s->graph);
  EXPECT_FALSE(s->gated);  // Eager rounds are never gated.
}

TEST_F(TimeGpuWorkTest, UngatedTimesSpinKernel) {
  TimingOptions options;
  options.gate_graph_rounds = false;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("ungated graph spin 0.2ms", *s);
  EXPECT_EQ(s->round_reps, 0);
  ExpectSaneSpin(*s);
  EXPECT_FALSE(s->gated);
}

TEST_F(TimeGpuWorkTest, TimesMemsetWithinPhysicalBandwidth) {
  constexpr size_t kBytes = size_t{256} << 20;
  void* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, kBytes), cudaSuccess);
  const std::unique_ptr<void, cudaError_t (*)(void*)> owner(buf, cudaFree);
  absl::StatusOr<TimingStats> s = TimeGpuWork(
      [buf](cudaStream_t st) {
        return CudaStatus(cudaMemsetAsync(buf, 0, kBytes, st), "cudaMemsetAsync");
      },
      stream_, TimingOptions{});
  ASSERT_TRUE(s.ok()) << s.status();
  Print("memset 256MiB", *s);
  EXPECT_EQ(s->graph_memset_nodes, 1);
  std::printf("memset bandwidth %.0f GB/s\n", kBytes / (s->p50_ms * 1e-3) / 1e9);
  EXPECT_GT(s->p50_ms, 0);
  // No GPU writes 256 MiB faster than 10 TB/s (H100 HBM3: ~3.35 TB/s peak).
  EXPECT_GT(s->p50_ms, kBytes / 10e12 * 1e3);
}

TEST_F(TimeGpuWorkTest, StopsAtMaxReps) {
  TimingOptions options;
  options.min_reps = 5;
  options.max_reps = 7;
  options.target_rel_ci = 0;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reps, 7);
}

TEST_F(TimeGpuWorkTest, EnqueueErrorPropagates) {
  const auto fail = [](cudaStream_t) { return absl::DataLossError("boom"); };
  for (bool graph : {true, false}) {
    for (int warmup : {0, 3}) {
      SCOPED_TRACE(testing::Message() << "graph=" << graph << " warmup=" << warmup);
      TimingOptions options;
      options.use_graph = graph;
      options.warmup = warmup;
      absl::StatusOr<TimingStats> s = TimeGpuWork(fail, stream_, options);
      EXPECT_EQ(s.status(), absl::DataLossError("boom"));
      // A failed capture must have been ended: the stream is usable again.
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusActive;
      ASSERT_EQ(cudaStreamIsCapturing(stream_, &capture), cudaSuccess);
      EXPECT_EQ(capture, cudaStreamCaptureStatusNone);
    }
  }
  absl::StatusOr<TimingStats> after = TimeGpuWork(Spin, stream_, TimingOptions{});
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST_F(TimeGpuWorkTest, ErrorMidTimingPropagates) {
  int calls = 0;
  const auto fail_later = [&calls](cudaStream_t st) -> absl::Status {
    if (++calls > 5) return absl::AbortedError("late failure");
    return LaunchSpinKernel(kSpinNs, st);
  };
  TimingOptions options;
  options.use_graph = false;
  options.warmup = 2;
  absl::StatusOr<TimingStats> s = TimeGpuWork(fail_later, stream_, options);
  EXPECT_EQ(s.status(), absl::AbortedError("late failure"));
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// StreamGate tests share the fixture's stream.
class StreamGateTest : public TimeGpuWorkTest {};

TEST_F(StreamGateTest, HoldsWorkUntilOpened) {
  // Load the spin kernel first: with lazy module loading, a first launch behind a closed gate may
  // wait for the context to idle, i.e. for the gate's timeout.
  ASSERT_TRUE(LaunchSpinKernel(1000, stream_).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
  ASSERT_TRUE(gate.ok()) << gate.status();
  ASSERT_TRUE((*gate)->Close(stream_, /*timeout_ns=*/10'000'000'000).ok());
  ASSERT_TRUE(LaunchSpinKernel(1000, stream_).ok());
  // Work behind a closed gate does not run: the stream stays busy.
  const auto start = std::chrono::steady_clock::now();
  while (SecondsSince(start) < 0.05) {
  }
  EXPECT_EQ(cudaStreamQuery(stream_), cudaErrorNotReady);
  cudaGetLastError();  // Not an error, but don't leave anything for later checks to find.
  (*gate)->Open();
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_LT(SecondsSince(start), 5.0);
  EXPECT_FALSE((*gate)->TimedOut());
}

TEST_F(StreamGateTest, TimesOutRatherThanHanging) {
  // A host that synchronizes behind its own closed gate would deadlock without the timeout.
  absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
  ASSERT_TRUE(gate.ok()) << gate.status();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE((*gate)->Close(stream_, /*timeout_ns=*/20'000'000).ok());
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_GE(SecondsSince(start), 0.019);
  EXPECT_LT(SecondsSince(start), 5.0);
  EXPECT_TRUE((*gate)->TimedOut());
  // Closing again resets the timed-out flag.
  ASSERT_TRUE((*gate)->Close(stream_, 10'000'000'000).ok());
  (*gate)->Open();
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_FALSE((*gate)->TimedOut());
}

TEST_F(StreamGateTest, DestructorReleasesAClosedGate) {
  const auto start = std::chrono::steady_clock::now();
  {
    absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
    ASSERT_TRUE(gate.ok()) << gate.status();
    ASSERT_TRUE((*gate)->Close(stream_, /*timeout_ns=*/10'000'000'000).ok());
  }  // Never opened: the destructor must open it (else this waits the 10 s timeout).
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_LT(SecondsSince(start), 5.0);
}

// The timed warm-up runs the work in rounds like the timed ones: 0.2 s of it holds some 1000
// spins of 0.2 ms, and at least half as many where the GPU idles only between rounds. None of
// them is a sample.
TEST_F(TimeGpuWorkTest, WarmupSecondsRunsTheWorkInUntimedRounds) {
  int calls = 0;
  const auto counted = [&calls](cudaStream_t s) {
    ++calls;
    return Spin(s);
  };
  TimingOptions options;
  options.use_graph = false;  // every run is a call
  options.warmup = 3;
  options.warmup_seconds = 0.2;
  options.min_reps = 20;
  options.max_reps = 20;
  absl::StatusOr<TimingStats> s = TimeGpuWork(counted, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  ExpectSaneSpin(*s);
  const int warm_calls = calls - options.warmup - s->reps;
  std::printf("warm-up of 0.2 s: %d spins of 0.2 ms\n", warm_calls);
  EXPECT_GE(warm_calls, 500);
  EXPECT_EQ(s->samples_ms.size(), 20u);
}

// The time caps count the timed rounds only: after a warm-up longer than 3 x max_seconds, the
// timed rounds still get up to 3 x max_seconds (0.3 s: some 1500 spins of 0.2 ms) before an
// unreachable min_reps gives up; were the warm-up counted, one round of 10 would end it.
TEST_F(TimeGpuWorkTest, WarmupSecondsIsNotCountedInTheTimeCaps) {
  TimingOptions options;
  options.warmup_seconds = 0.5;
  options.max_seconds = 0.1;
  options.min_reps = 100000;
  options.max_reps = 100000;
  absl::StatusOr<TimingStats> s = TimeGpuWork(Spin, stream_, options);
  ASSERT_TRUE(s.ok()) << s.status();
  Print("warm-up 0.5 s, caps 0.1 s", *s);
  EXPECT_FALSE(s->stable);
  EXPECT_GE(s->reps, 200);
}

TEST_F(TimeGpuWorkTest, RejectsBadOptions) {
  TimingOptions bad;
  bad.max_reps = 1;
  bad.min_reps = 2;
  EXPECT_EQ(TimeGpuWork(Spin, stream_, bad).status().code(), absl::StatusCode::kInvalidArgument);
  for (double seconds : {-1.0, std::nan(""), 601.0}) {
    TimingOptions warm;
    warm.warmup_seconds = seconds;
    EXPECT_EQ(TimeGpuWork(Spin, stream_, warm).status().code(),
              absl::StatusCode::kInvalidArgument)
        << seconds;
  }
  TimingOptions graph;  // Graphs cannot be captured from the legacy default stream.
  EXPECT_EQ(TimeGpuWork(Spin, nullptr, graph).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace truthput
