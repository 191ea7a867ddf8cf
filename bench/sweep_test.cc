#include "bench/sweep.h"

#include <csignal>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

std::vector<StepConfig> DecodeSteps(std::vector<int64_t> batches) {
  std::vector<StepConfig> steps;
  for (int64_t b : batches) steps.push_back({.phase = Phase::kDecode, .batch = b, .context = 2048});
  return steps;
}

// Marks each point with its batch; fails at `fail_at` (0: never).
auto PointsUntil(int64_t fail_at) {
  return [fail_at](const StepConfig& step, BatchPoint* p) {
    p->set_batch(step.batch);
    p->set_step_ms_p50(1.0);
    if (step.batch == fail_at) return absl::InternalError("cudaGraphLaunch: an illegal address");
    return absl::OkStatus();
  };
}

TEST(RunSweep, EveryPointWhenNothingGoesWrong) {
  RunResult r;
  EXPECT_TRUE(RunSweep(DecodeSteps({1, 2, 4}), PointsUntil(0), [] { return 0; }, r).ok());
  ASSERT_EQ(r.points_size(), 3);
  EXPECT_EQ(r.points(2).batch(), 4);
  EXPECT_EQ(r.config().notes_size(), 0);
}

TEST(RunSweep, AFailedPointKeepsThePointsBeforeIt) {
  RunResult r;
  absl::Status st = RunSweep(DecodeSteps({1, 2, 4, 8}), PointsUntil(4), [] { return 0; }, r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(st.message(), HasSubstr("stopped at batch 4, context 2048: cudaGraphLaunch"));
  ASSERT_EQ(r.points_size(), 2);  // 1 and 2; the failed point is not left half-filled
  EXPECT_EQ(r.points(1).batch(), 2);
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_THAT(r.config().notes(0), HasSubstr("incomplete: stopped at batch 4, context 2048"));
}

TEST(RunSweep, AFailedFirstPointLeavesNothingAndNoNote) {
  RunResult r;
  absl::Status st = RunSweep(DecodeSteps({1, 2}), PointsUntil(1), [] { return 0; }, r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.points_size(), 0);
  EXPECT_EQ(r.config().notes_size(), 0);
}

TEST(RunSweep, AnInterruptStopsBeforeTheNextPoint) {
  RunResult r;
  int asked = 0;
  absl::Status st = RunSweep(DecodeSteps({1, 2, 4, 8}), PointsUntil(0),
                             [&asked] { return ++asked > 2 ? SIGTERM : 0; }, r);
  EXPECT_TRUE(absl::IsCancelled(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("interrupted (SIGTERM) before batch 4, context 2048"));
  EXPECT_EQ(r.points_size(), 2);
  ASSERT_EQ(r.config().notes_size(), 1);
  EXPECT_THAT(r.config().notes(0), HasSubstr("incomplete: interrupted"));
}

TEST(RunSweep, PrefillStepsAreNamedByTheirPrompt) {
  RunResult r;
  std::vector<StepConfig> steps = {{.phase = Phase::kPrefill, .batch = 8, .seq_len = 2048}};
  absl::Status st = RunSweep(steps, PointsUntil(8), [] { return 0; }, r);
  EXPECT_THAT(st.message(), HasSubstr("batch 8, prompt 2048"));
}

int g_outer_calls = 0;
void OuterHandler(int) { ++g_outer_calls; }

TEST(SweepInterrupt, FirstCtrlCIsARequestAndTheSecondTheDefault) {
  std::signal(SIGINT, OuterHandler);
  {
    SweepInterrupt interrupt;
    EXPECT_EQ(interrupt.signal(), 0);
    ASSERT_EQ(std::raise(SIGINT), 0);
    EXPECT_EQ(interrupt.signal(), SIGINT);
    EXPECT_EQ(g_outer_calls, 0);  // ours ran, not the handler installed before
    struct sigaction now;
    ASSERT_EQ(sigaction(SIGINT, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, SIG_DFL);  // a second Ctrl-C would end the process
  }
  // Gone with the object: the handler found is back, and a new object starts with none.
  struct sigaction now;
  ASSERT_EQ(sigaction(SIGINT, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, OuterHandler);
  SweepInterrupt again;
  EXPECT_EQ(again.signal(), 0);
  std::signal(SIGINT, SIG_DFL);
}

TEST(SweepInterrupt, AnIgnoredSigintStaysIgnored) {
  std::signal(SIGINT, SIG_IGN);
  {
    SweepInterrupt interrupt;
    struct sigaction now;
    ASSERT_EQ(sigaction(SIGINT, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, SIG_IGN);
    ASSERT_EQ(std::raise(SIGINT), 0);
    EXPECT_EQ(interrupt.signal(), 0);
  }
  std::signal(SIGINT, SIG_DFL);
}

// SIGTERM (timeout, a scheduler's time limit) and SIGHUP (a closed terminal) stop the sweep as
// Ctrl-C does, but a second one is a request too: timeout(1) sends SIGTERM to the child and
// then to its whole process group. An ignored one (nohup) stays ignored.
TEST(SweepInterrupt, SigtermAndSighupAreRequestsEveryTime) {
  for (const int sig : {SIGTERM, SIGHUP}) {
    SCOPED_TRACE(sig);
    std::signal(sig, OuterHandler);
    g_outer_calls = 0;
    {
      SweepInterrupt interrupt;
      ASSERT_EQ(std::raise(sig), 0);
      EXPECT_EQ(interrupt.signal(), sig);
      ASSERT_EQ(std::raise(sig), 0);  // still caught: the test goes on
      EXPECT_EQ(interrupt.signal(), sig);
      EXPECT_EQ(g_outer_calls, 0);
    }
    struct sigaction now;
    ASSERT_EQ(sigaction(sig, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, OuterHandler);
    std::signal(sig, SIG_IGN);
    {
      SweepInterrupt interrupt;
      ASSERT_EQ(std::raise(sig), 0);
      EXPECT_EQ(interrupt.signal(), 0);
    }
    std::signal(sig, SIG_DFL);
  }
}

// Of two signals, the first is the one the stop names.
TEST(SweepInterrupt, TheFirstSignalIsTheOneNamed) {
  SweepInterrupt interrupt;
  ASSERT_EQ(std::raise(SIGTERM), 0);
  ASSERT_EQ(std::raise(SIGHUP), 0);
  EXPECT_EQ(interrupt.signal(), SIGTERM);
}

// The failed point's status code is kept (a caller tells out-of-memory from a crash by it).
TEST(RunSweep, AFailedPointKeepsItsStatusCode) {
  RunResult r;
  auto oom = [](const StepConfig& step, BatchPoint* p) {
    p->set_batch(step.batch);
    return step.batch == 2 ? absl::ResourceExhaustedError("out of memory") : absl::OkStatus();
  };
  absl::Status st = RunSweep(DecodeSteps({1, 2}), oom, [] { return 0; }, r);
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("stopped at batch 2, context 2048: out of memory"));
}

}  // namespace
}  // namespace truthput
