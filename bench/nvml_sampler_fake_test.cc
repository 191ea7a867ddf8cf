// NvmlSampler against the stand-in NVML of fake_nvml.h, on any machine: what the sampler makes
// of NVML's answers, failures included. This test links the fake, whose soname is
// libnvidia-ml.so.1, so the sampler's dlopen gets it rather than a driver's NVML. No assertion
// depends on timing: the test waits for calls, and compares the summary with what the fake
// recorded it answered.
#include <cctype>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/fake_nvml.h"
#include "bench/nvml_sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using fake_nvml::Call;
using fake_nvml::Script;

constexpr absl::Duration kInterval = absl::Milliseconds(1);

// Waits until the fake has answered n calls of c (generously bounded; nothing is timed).
void WaitForCalls(Call c, int n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (fake_nvml::Seen().calls[c] < n) {
    ASSERT_LT(absl::Now(), deadline) << "the sampler stopped calling NVML";
    absl::SleepFor(absl::Milliseconds(1));
  }
}

std::unique_ptr<NvmlSampler> CreateOn(const Script& script) {
  fake_nvml::Reset(script);
  absl::StatusOr<std::unique_ptr<NvmlSampler>> s = NvmlSampler::Create(script.uuid, kInterval);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

double Mean(const fake_nvml::Record& r, Call c) { return r.returned_sum[c] / r.returned[c]; }

TEST(NvmlSamplerFakeTest, FindsTheGpuAndShutsNvmlDownWhenDestroyed) {
  Script script;
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(fake_nvml::Seen().inits, 1);
  EXPECT_EQ(fake_nvml::Seen().last_lookup, script.uuid);
  EXPECT_EQ(fake_nvml::Seen().gpm_samples, 2);  // GPM's start and end buffers
  s.reset();
  EXPECT_EQ(fake_nvml::Seen().inits, 0);
  EXPECT_EQ(fake_nvml::Seen().gpm_samples, 0);
}

TEST(NvmlSamplerFakeTest, LooksUpAnUpperCaseUuidInLowerCase) {
  Script script;
  fake_nvml::Reset(script);
  std::string upper = script.uuid;
  for (size_t i = 4; i < upper.size(); ++i) upper[i] = static_cast<char>(toupper(upper[i]));
  ASSERT_NE(upper, script.uuid);
  EXPECT_TRUE(NvmlSampler::Create(upper, kInterval).ok());
  EXPECT_EQ(fake_nvml::Seen().last_lookup, script.uuid);
  EXPECT_EQ(fake_nvml::Seen().inits, 0);
  // An id too short to be a UUID is looked up as given, and not found.
  EXPECT_EQ(NvmlSampler::Create("GPU", kInterval).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fake_nvml::Seen().last_lookup, "GPU");
}

TEST(NvmlSamplerFakeTest, UnknownGpuIsNotFoundAndNvmlIsShutDown) {
  fake_nvml::Reset(Script{});
  const absl::Status st =
      NvmlSampler::Create("GPU-00000000-0000-0000-0000-000000000000", kInterval).status();
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("GPU-00000000-0000-0000-0000-000000000000"));
  EXPECT_THAT(st.message(), HasSubstr("NVML_ERROR_NOT_FOUND"));
  EXPECT_EQ(fake_nvml::Seen().inits, 0);
}

TEST(NvmlSamplerFakeTest, InitFailureIsUnavailableSayingWhy) {
  Script script;
  script.init_result = kNvmlErrorDriverNotLoaded;
  fake_nvml::Reset(script);
  const absl::Status st = NvmlSampler::Create(script.uuid, kInterval).status();
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_EQ(st.message(), "NVML not available: nvmlInit_v2: NVML_ERROR_DRIVER_NOT_LOADED");
}

// A code nvml.h of this file's vintage does not name is given with NVML's own description.
TEST(NvmlSamplerFakeTest, AnErrorCodeWithoutANameIsDescribedByNvml) {
  Script script;
  script.init_result = 1000;
  fake_nvml::Reset(script);
  const absl::Status st = NvmlSampler::Create(script.uuid, kInterval).status();
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_EQ(st.message(), "NVML not available: nvmlInit_v2: NVML error 1000 (fake NVML error)");
}

// Utilization fails in every third sample: its mean is over the others, and a note says so.
// Power never reads: unset, and `unavailable` says why. The SM clock always reads: no note.
TEST(NvmlSamplerFakeTest, MeansAreOverTheReadsThatSucceededAndSaySo) {
  Script script;
  script.result[fake_nvml::kUtilization] = [](int i) {
    return i % 3 == 1 ? kNvmlErrorUnknown : kNvmlSuccess;
  };
  script.result[fake_nvml::kPower] = [](int) { return kNvmlErrorNotSupported; };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kUtilization, 10);
  const NvmlSummary summary = s->Stop();
  const fake_nvml::Record seen = fake_nvml::Seen();

  EXPECT_EQ(summary.samples, seen.calls[fake_nvml::kUtilization]);
  ASSERT_GT(seen.returned[fake_nvml::kUtilization], 0);
  ASSERT_LT(seen.returned[fake_nvml::kUtilization], summary.samples);
  ASSERT_TRUE(summary.util_gpu_pct.has_value());
  EXPECT_DOUBLE_EQ(*summary.util_gpu_pct, Mean(seen, fake_nvml::kUtilization));
  // Memory utilization comes with the same reads: the fake's is half the GPU's, truncated.
  double mem_sum = 0;
  int mem_reads = 0;
  for (int i = 0; i < seen.calls[fake_nvml::kUtilization]; ++i) {
    if (i % 3 == 1) continue;
    mem_sum += static_cast<unsigned int>(script.value(fake_nvml::kUtilization, i) / 2);
    ++mem_reads;
  }
  ASSERT_EQ(mem_reads, seen.returned[fake_nvml::kUtilization]);
  ASSERT_TRUE(summary.util_mem_pct.has_value());
  EXPECT_DOUBLE_EQ(*summary.util_mem_pct, mem_sum / mem_reads);
  // The default script's largest utilization, 96%, comes at call 8, which reads.
  EXPECT_EQ(summary.util_gpu_pct_max, 96);
  ASSERT_TRUE(summary.sm_clock_mhz.has_value());
  EXPECT_DOUBLE_EQ(*summary.sm_clock_mhz, Mean(seen, fake_nvml::kSmClock));
  EXPECT_FALSE(summary.power_w.has_value());
  EXPECT_THAT(summary.unavailable, Contains("power: NVML_ERROR_NOT_SUPPORTED"));
  EXPECT_THAT(summary.notes,
              ElementsAre(absl::StrCat("utilization: read in ",
                                       seen.returned[fake_nvml::kUtilization], " of ",
                                       summary.samples,
                                       " samples, the value is over those (NVML_ERROR_UNKNOWN)")));
}

// NVML gives power in mW and memory utilization beside the GPU's; with every sample the same,
// the means are those values: 312500 mW is 312.5 W, and the fake's memory utilization is half
// the GPU's (80% -> 40%).
TEST(NvmlSamplerFakeTest, PowerIsInWattsAndMemoryUtilizationIsItsOwnMean) {
  Script script;
  script.value = [](Call c, int) -> double {
    switch (c) {
      case fake_nvml::kUtilization: return 80;
      case fake_nvml::kSmClock: return 1755;
      case fake_nvml::kPower: return 312500;
      case fake_nvml::kEnergy: return 1e6;
      default: return 0;
    }
  };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kPower, 3);
  const NvmlSummary summary = s->Stop();
  EXPECT_EQ(summary.power_w, 312.5);
  EXPECT_EQ(summary.util_gpu_pct, 80);
  EXPECT_EQ(summary.util_mem_pct, 40);
  EXPECT_EQ(summary.sm_clock_mhz, 1755);
  // The energy counter did not move: no energy spent, not a counter gone backwards.
  EXPECT_EQ(summary.energy_j, 0);
  EXPECT_THAT(summary.unavailable, Not(Contains(HasSubstr("energy"))));
}

TEST(NvmlSamplerFakeTest, ClockEventReasonsAreTheOrOfEverySample) {
  Script script;
  const auto base_value = script.value;
  script.value = [base_value](Call c, int i) -> double {
    if (c != fake_nvml::kReasons) return base_value(c, i);
    return i == 2 ? 0x4 : i == 5 ? 0x8 : 0;  // sw_power_cap once, hw_slowdown once
  };
  script.result[fake_nvml::kReasons] = [](int i) {
    return i == 3 ? kNvmlErrorNoPermission : kNvmlSuccess;
  };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kReasons, 7);
  const NvmlSummary summary = s->Stop();
  const fake_nvml::Record seen = fake_nvml::Seen();
  EXPECT_EQ(seen.reasons_or, 0xCu);
  EXPECT_EQ(summary.clock_event_reasons, 0xCu);
  EXPECT_EQ(summary.ClockEventReasonsText(), "sw_power_cap|hw_slowdown");
  EXPECT_THAT(summary.notes,
              ElementsAre(absl::StrCat("clock_event_reasons: read in ", summary.samples - 1,
                                       " of ", summary.samples,
                                       " samples, the value is over those "
                                       "(NVML_ERROR_NO_PERMISSION)")));
}

// The temperature is the window's hottest reading, not its mean: a reading that failed is
// skipped, with a note, and one that never reads leaves it unset, saying why.
TEST(NvmlSamplerFakeTest, TemperatureIsTheHottestReading) {
  Script script;
  const auto base_value = script.value;
  script.value = [base_value](Call c, int i) -> double {
    if (c != fake_nvml::kTemperature) return base_value(c, i);
    return i == 4 ? 83 : i == 2 ? 99 : 51 + (i % 2);  // 99 C comes from a failed read
  };
  script.result[fake_nvml::kTemperature] = [](int i) {
    return i == 2 ? kNvmlErrorUnknown : kNvmlSuccess;
  };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kTemperature, 6);
  const NvmlSummary summary = s->Stop();
  EXPECT_EQ(summary.gpu_temp_c, 83);
  EXPECT_THAT(summary.notes,
              ElementsAre(absl::StrCat("gpu_temp: read in ", summary.samples - 1, " of ",
                                       summary.samples,
                                       " samples, the value is over those (NVML_ERROR_UNKNOWN)")));

  script.value = base_value;
  script.result[fake_nvml::kTemperature] = [](int) { return kNvmlErrorNotSupported; };
  s = nullptr;
  s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kTemperature, 2);
  const NvmlSummary unread = s->Stop();
  EXPECT_FALSE(unread.gpu_temp_c.has_value());
  EXPECT_THAT(unread.unavailable, Contains("gpu_temp: NVML_ERROR_NOT_SUPPORTED"));
}

TEST(NvmlSamplerFakeTest, ClockEventReasonsNeverReadAreUnavailableSayingWhy) {
  Script script;
  script.result[fake_nvml::kReasons] = [](int) { return kNvmlErrorNotSupported; };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kReasons, 2);
  const NvmlSummary summary = s->Stop();
  EXPECT_FALSE(summary.clock_event_reasons_read);
  EXPECT_EQ(summary.ClockEventReasonsText(), "unavailable");
  EXPECT_THAT(summary.unavailable, Contains("clock_event_reasons: NVML_ERROR_NOT_SUPPORTED"));
  EXPECT_THAT(summary.notes, IsEmpty());  // unset, so no note on a partial read
}

TEST(NvmlSamplerFakeTest, EnergyIsTheCounterAtStopMinusAtStart) {
  Script script;  // The counter reads 1,000,000 mJ at Start, 2.5 J more at Stop.
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  const NvmlSummary summary = s->Stop();
  EXPECT_EQ(fake_nvml::Seen().calls[fake_nvml::kEnergy], 2);
  EXPECT_EQ(summary.energy_j, 2.5);
}

TEST(NvmlSamplerFakeTest, EnergyGoingBackwardsOrUnreadableIsUnsetSayingWhy) {
  Script backwards;
  const auto base_value = backwards.value;
  backwards.value = [base_value](Call c, int i) -> double {
    return c == fake_nvml::kEnergy ? (i == 0 ? 5e6 : 1e6) : base_value(c, i);
  };
  std::unique_ptr<NvmlSampler> s = CreateOn(backwards);
  ASSERT_NE(s, nullptr);
  s->Start();
  NvmlSummary summary = s->Stop();
  EXPECT_FALSE(summary.energy_j.has_value());
  EXPECT_THAT(summary.unavailable,
              Contains("energy: the counter went backwards (driver reloaded?)"));

  Script denied;
  denied.result[fake_nvml::kEnergy] = [](int) { return kNvmlErrorNoPermission; };
  s.reset();  // before Reset, which clears the count of initializations
  s = CreateOn(denied);
  ASSERT_NE(s, nullptr);
  s->Start();
  summary = s->Stop();
  EXPECT_FALSE(summary.energy_j.has_value());
  EXPECT_THAT(summary.unavailable, Contains("energy: NVML_ERROR_NO_PERMISSION"));
  EXPECT_EQ(fake_nvml::Seen().calls[fake_nvml::kEnergy], 1);  // Stop does not try again
}

// The GPM values are NVML's for the four metrics asked for (the fake answers id * 1.5), each one
// that fails unset with its reason.
TEST(NvmlSamplerFakeTest, GpmValuesOverAWindowOfAtLeast100Ms) {
  Script script;
  script.gpm_metric_result = [](unsigned int id) {
    return id == 5 ? kNvmlErrorNotSupported : kNvmlSuccess;  // ANY_TENSOR_UTIL
  };
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  s->Start();
  absl::SleepFor(absl::Milliseconds(120));
  const NvmlSummary summary = s->Stop();
  ASSERT_GE(summary.window_s, 0.1);
  EXPECT_EQ(fake_nvml::Seen().gpm_metrics_gets, 1);
  EXPECT_EQ(summary.gpm_sm_util_pct, 2 * 1.5);
  EXPECT_FALSE(summary.gpm_tensor_util_pct.has_value());
  EXPECT_EQ(summary.gpm_dram_bw_util_pct, 10 * 1.5);
  EXPECT_THAT(summary.unavailable, ElementsAre("gpm_tensor_util: NVML_ERROR_NOT_SUPPORTED"));
}

TEST(NvmlSamplerFakeTest, GpmOffSaysWhyAndTakesNoBuffers) {
  Script unsupported;
  unsupported.gpm_supported = false;
  std::unique_ptr<NvmlSampler> s = CreateOn(unsupported);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(fake_nvml::Seen().gpm_samples, 0);
  s->Start();
  NvmlSummary summary = s->Stop();
  EXPECT_FALSE(summary.gpm_sm_util_pct.has_value());
  EXPECT_THAT(summary.unavailable, Contains("GPM: not supported on this GPU"));

  Script start_fails;
  start_fails.result[fake_nvml::kGpmSampleGet] = [](int i) {
    return i == 0 ? kNvmlErrorUnknown : kNvmlSuccess;
  };
  s.reset();
  s = CreateOn(start_fails);
  ASSERT_NE(s, nullptr);
  s->Start();
  summary = s->Stop();
  EXPECT_FALSE(summary.gpm_sm_util_pct.has_value());
  EXPECT_THAT(summary.unavailable, Contains("GPM: nvmlGpmSampleGet: NVML_ERROR_UNKNOWN"));
  EXPECT_EQ(fake_nvml::Seen().gpm_metrics_gets, 0);
}

// Where NVML cannot compute the metrics, or cannot read the end sample, no GPM value is set and
// `unavailable` says which call failed.
TEST(NvmlSamplerFakeTest, GpmCallsFailingAtStopLeaveEveryGpmValueUnset) {
  Script metrics_fail;
  metrics_fail.gpm_metrics_result = kNvmlErrorUnknown;
  std::unique_ptr<NvmlSampler> s = CreateOn(metrics_fail);
  ASSERT_NE(s, nullptr);
  s->Start();
  absl::SleepFor(absl::Milliseconds(120));  // past the 100 ms GPM needs
  NvmlSummary summary = s->Stop();
  ASSERT_GE(summary.window_s, 0.1);
  EXPECT_EQ(fake_nvml::Seen().gpm_metrics_gets, 1);
  EXPECT_FALSE(summary.gpm_sm_util_pct.has_value());
  EXPECT_FALSE(summary.gpm_tensor_util_pct.has_value());
  EXPECT_FALSE(summary.gpm_dram_bw_util_pct.has_value());
  EXPECT_THAT(summary.unavailable, ElementsAre("GPM: nvmlGpmMetricsGet: NVML_ERROR_UNKNOWN"));

  Script end_fails;
  end_fails.result[fake_nvml::kGpmSampleGet] = [](int i) {
    return i == 1 ? kNvmlErrorUnknown : kNvmlSuccess;  // the sample at Stop
  };
  s.reset();
  s = CreateOn(end_fails);
  ASSERT_NE(s, nullptr);
  s->Start();
  absl::SleepFor(absl::Milliseconds(120));
  summary = s->Stop();
  EXPECT_EQ(fake_nvml::Seen().gpm_metrics_gets, 0);
  EXPECT_FALSE(summary.gpm_sm_util_pct.has_value());
  EXPECT_THAT(summary.unavailable, ElementsAre("GPM: nvmlGpmSampleGet: NVML_ERROR_UNKNOWN"));
}

TEST(NvmlSamplerFakeTest, AShortWindowLeavesGpmUnset) {
  std::unique_ptr<NvmlSampler> s = CreateOn(Script{});
  ASSERT_NE(s, nullptr);
  s->Start();
  const NvmlSummary summary = s->Stop();
  if (summary.window_s >= 0.1) GTEST_SKIP() << "this machine took 100 ms from Start to Stop";
  EXPECT_FALSE(summary.gpm_sm_util_pct.has_value());
  EXPECT_THAT(summary.unavailable,
              Contains(HasSubstr("is shorter than the 100 ms GPM needs")));
  EXPECT_EQ(fake_nvml::Seen().gpm_metrics_gets, 0);
}

TEST(NvmlSamplerFakeTest, EachWindowCoversOnlyItsOwnSamples) {
  std::unique_ptr<NvmlSampler> s = CreateOn(Script{});
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kUtilization, 5);
  const NvmlSummary first = s->Stop();
  const fake_nvml::Record after_first = fake_nvml::Seen();
  EXPECT_EQ(first.samples, after_first.calls[fake_nvml::kUtilization]);

  s->Start();
  WaitForCalls(fake_nvml::kUtilization, after_first.calls[fake_nvml::kUtilization] + 5);
  const NvmlSummary second = s->Stop();
  const fake_nvml::Record after_second = fake_nvml::Seen();
  const int n = after_second.returned[fake_nvml::kUtilization] -
                after_first.returned[fake_nvml::kUtilization];
  EXPECT_EQ(second.samples, after_second.calls[fake_nvml::kUtilization] -
                                after_first.calls[fake_nvml::kUtilization]);
  ASSERT_TRUE(second.util_gpu_pct.has_value());
  EXPECT_DOUBLE_EQ(*second.util_gpu_pct,
                   (after_second.returned_sum[fake_nvml::kUtilization] -
                    after_first.returned_sum[fake_nvml::kUtilization]) /
                       n);
  EXPECT_THAT(second.notes, IsEmpty());
}

// A second Start leaves the running window alone: one window, its energy read once at each end.
TEST(NvmlSamplerFakeTest, StartWhileRunningIsANoOp) {
  std::unique_ptr<NvmlSampler> s = CreateOn(Script{});
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kUtilization, 2);
  s->Start();
  WaitForCalls(fake_nvml::kUtilization, 4);
  const NvmlSummary summary = s->Stop();
  const fake_nvml::Record seen = fake_nvml::Seen();
  EXPECT_EQ(summary.samples, seen.calls[fake_nvml::kUtilization]);
  EXPECT_EQ(seen.calls[fake_nvml::kEnergy], 2);
  EXPECT_EQ(summary.energy_j, 2.5);  // 1,000,000 mJ at Start, 1,002,500 at Stop
}

TEST(NvmlSamplerFakeTest, StopWithoutStartSaysSo) {
  std::unique_ptr<NvmlSampler> s = CreateOn(Script{});
  ASSERT_NE(s, nullptr);
  const NvmlSummary summary = s->Stop();
  EXPECT_EQ(summary.samples, 0);
  EXPECT_THAT(summary.unavailable, ElementsAre("sampler: Stop() without a running Start()"));
}

TEST(NvmlSamplerFakeTest, DestroyingARunningSamplerStopsItsThread) {
  std::unique_ptr<NvmlSampler> s = CreateOn(Script{});
  ASSERT_NE(s, nullptr);
  s->Start();
  WaitForCalls(fake_nvml::kUtilization, 2);
  s.reset();
  const fake_nvml::Record seen = fake_nvml::Seen();
  EXPECT_EQ(seen.inits, 0);
  EXPECT_EQ(seen.gpm_samples, 0);
  absl::SleepFor(absl::Milliseconds(20));  // 20 intervals: a thread left running would sample
  EXPECT_EQ(fake_nvml::Seen().calls[fake_nvml::kUtilization], seen.calls[fake_nvml::kUtilization]);
}

// The processes NVML lists on the GPU, with their memory where NVML knows it.
TEST(NvmlSamplerFakeTest, ListsTheComputeProcessesNvmlReports) {
  Script script;
  script.processes = {{.pid = 1234, .usedGpuMemory = 2000000000ULL},
                      {.pid = 99, .usedGpuMemory = kNvmlValueNotAvailable}};
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  absl::StatusOr<std::vector<GpuProcess>> p = s->ComputeProcesses();
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].pid, 1234u);
  EXPECT_EQ((*p)[0].used_bytes, 2000000000);
  EXPECT_EQ((*p)[1].pid, 99u);
  EXPECT_FALSE((*p)[1].used_bytes.has_value());
}

// More processes than the first array holds: NVML says how many, and the list is read again.
TEST(NvmlSamplerFakeTest, ReadsTheProcessesAgainWhenNvmlSaysTheArrayIsTooSmall) {
  Script script;
  for (unsigned int pid = 1; pid <= 40; ++pid) {
    script.processes.push_back({.pid = pid, .usedGpuMemory = pid * 1000ULL});
  }
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  absl::StatusOr<std::vector<GpuProcess>> p = s->ComputeProcesses();
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 40u);
  EXPECT_EQ(p->back().pid, 40u);
  EXPECT_EQ(p->back().used_bytes, 40000);
  EXPECT_EQ(fake_nvml::Seen().process_queries, 2);
}

// A list that outgrows every larger array: the sampler asks four times, then gives up with NVML's
// error instead of asking forever.
TEST(NvmlSamplerFakeTest, StopsReadingAListThatKeepsGrowing) {
  Script script;
  script.processes_started_per_query = 100;
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  absl::StatusOr<std::vector<GpuProcess>> p = s->ComputeProcesses();
  EXPECT_TRUE(absl::IsUnavailable(p.status())) << p.status();
  EXPECT_EQ(p.status().message(),
            "nvmlDeviceGetComputeRunningProcesses_v2: NVML_ERROR_INSUFFICIENT_SIZE");
  EXPECT_EQ(fake_nvml::Seen().process_queries, 4);
}

TEST(NvmlSamplerFakeTest, ProcessesNvmlWillNotListAreUnavailableNamingTheCall) {
  Script script;
  script.processes_result = kNvmlErrorNoPermission;
  std::unique_ptr<NvmlSampler> s = CreateOn(script);
  ASSERT_NE(s, nullptr);
  absl::StatusOr<std::vector<GpuProcess>> p = s->ComputeProcesses();
  EXPECT_TRUE(absl::IsUnavailable(p.status())) << p.status();
  EXPECT_EQ(p.status().message(),
            "nvmlDeviceGetComputeRunningProcesses_v2: NVML_ERROR_NO_PERMISSION");
}

}  // namespace
}  // namespace truthput
