// The parts of NvmlSampler that need no GPU: clock event reason names, id classification, the
// summary's text and Create's argument checks (with or without NVML installed).
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "bench/nvml_sampler.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(ClockEventReasonsTextTest, NoneForZero) { EXPECT_EQ(ClockEventReasonsText(0), "none"); }

TEST(ClockEventReasonsTextTest, EachNamedBit) {
  EXPECT_EQ(ClockEventReasonsText(0x1), "gpu_idle");
  EXPECT_EQ(ClockEventReasonsText(0x2), "app_clocks");
  EXPECT_EQ(ClockEventReasonsText(0x4), "sw_power_cap");
  EXPECT_EQ(ClockEventReasonsText(0x8), "hw_slowdown");
  EXPECT_EQ(ClockEventReasonsText(0x10), "sync_boost");
  EXPECT_EQ(ClockEventReasonsText(0x20), "sw_thermal");
  EXPECT_EQ(ClockEventReasonsText(0x40), "hw_thermal");
  EXPECT_EQ(ClockEventReasonsText(0x80), "hw_power_brake");
  EXPECT_EQ(ClockEventReasonsText(0x100), "display_clocks");
}

TEST(ClockEventReasonsTextTest, SeveralBitsLowestFirst) {
  EXPECT_EQ(ClockEventReasonsText(0x8 | 0x4), "sw_power_cap|hw_slowdown");
  EXPECT_EQ(ClockEventReasonsText(0x1ff),
            "gpu_idle|app_clocks|sw_power_cap|hw_slowdown|sync_boost|sw_thermal|hw_thermal|"
            "hw_power_brake|display_clocks");
}

TEST(ClockEventReasonsTextTest, UnnamedBitsAsHex) {
  EXPECT_EQ(ClockEventReasonsText(0x200), "0x200");
  EXPECT_EQ(ClockEventReasonsText(0x4 | 0x1000), "sw_power_cap|0x1000");
  EXPECT_EQ(ClockEventReasonsText(uint64_t{1} << 63), "0x8000000000000000");
}

TEST(NvmlSummaryTest, ReasonsTextSaysUnavailableWhenNeverRead) {
  NvmlSummary s;
  EXPECT_EQ(s.ClockEventReasonsText(), "unavailable");
  s.clock_event_reasons_read = true;
  EXPECT_EQ(s.ClockEventReasonsText(), "none");
  s.clock_event_reasons = 0x4;
  EXPECT_EQ(s.ClockEventReasonsText(), "sw_power_cap");
}

TEST(PartialReadNoteTest, OnlyWhereSomeButNotAllSamplesFailed) {
  EXPECT_EQ(PartialReadNote("utilization", 3, 52, "NVML_ERROR_UNKNOWN"),
            "utilization: read in 49 of 52 samples, the value is over those "
            "(NVML_ERROR_UNKNOWN)");
  EXPECT_EQ(PartialReadNote("power", 0, 52, "x"), "");
  EXPECT_EQ(PartialReadNote("power", 52, 52, "x"), "");  // unset, and said so elsewhere
}

TEST(OtherProcessesNoteTest, NothingWhereThisProcessIsAlone) {
  EXPECT_EQ(OtherProcessesNote({}, 7), "");
  EXPECT_EQ(OtherProcessesNote({{.pid = 7, .used_bytes = 5}, {.pid = 7}}, 7), "");
  // Not listed by its own pid (a container's PID namespace): the one process is this one.
  EXPECT_EQ(OtherProcessesNote({{.pid = 31000, .used_bytes = 5}}, 7), "");
}

TEST(OtherProcessesNoteTest, ListsEachOtherProcessOnceWithTheMostMemorySeen) {
  // This process and one other: the other is noted.
  EXPECT_EQ(OtherProcessesNote(
                {{.pid = 7, .used_bytes = 1}, {.pid = 4242, .used_bytes = 2000000000}}, 7),
            "other processes had a compute context on this GPU while it was measured: pid 4242 "
            "(2.0 GB); their kernels would take bandwidth and SMs from what was measured");
  EXPECT_EQ(OtherProcessesNote({{.pid = 7, .used_bytes = 1},
                                {.pid = 4242, .used_bytes = 1500000000},
                                {.pid = 99},
                                {.pid = 4242, .used_bytes = 20500000000},
                                {.pid = 4242, .used_bytes = 3}},
                               7),
            "other processes had a compute context on this GPU while it was measured: pid 99 "
            "(memory n/a), pid 4242 (20.5 GB); their kernels would take bandwidth and SMs from "
            "what was measured");
  // Without this process among them, one of two is presumably it: both are named.
  const std::string two = OtherProcessesNote({{.pid = 31000}, {.pid = 31001}}, 7);
  EXPECT_EQ(two,
            "other processes may have had a compute context on this GPU while it was measured: "
            "pid 31000 (memory n/a), pid 31001 (memory n/a), of which one is presumably this one "
            "(not listed by its own pid, as in a container); their kernels would take bandwidth "
            "and SMs from what was measured");
}

TEST(NvmlSamplerCreateTest, RejectsBadArgumentsBeforeLoadingNvml) {
  EXPECT_EQ(NvmlSampler::Create("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NvmlSampler::Create("GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", absl::ZeroDuration())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Without NVML (a CPU machine): Unavailable, which callers treat as "run without NVML". With NVML
// (the GPU machine): no GPU has this UUID.
TEST(NvmlSamplerCreateTest, UnknownGpuIsUnavailableOrNotFound) {
  const absl::Status st =
      NvmlSampler::Create("GPU-00000000-0000-0000-0000-000000000000").status();
  std::printf("Create(all-zero UUID): %s\n", st.ToString().c_str());
  if (absl::IsUnavailable(st)) {
    EXPECT_TRUE(absl::StartsWith(st.message(), "NVML not available: ")) << st;
  } else {
    EXPECT_TRUE(absl::IsNotFound(st) || absl::IsInvalidArgument(st)) << st;
  }
}

}  // namespace
}  // namespace truthput
