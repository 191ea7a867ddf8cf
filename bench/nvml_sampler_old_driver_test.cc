// NvmlSampler against fake_nvml.h built as a driver before 535 (TRUTHPUT_FAKE_NVML_OLD_DRIVER):
// nvmlDeviceGetCurrentClocksEventReasons is missing, and the sampler reads the same bits through
// its older name, nvmlDeviceGetCurrentClocksThrottleReasons; nvmlDeviceGetTemperatureV is
// missing, and the sampler reads the deprecated nvmlDeviceGetTemperature.
#include <dlfcn.h>

#include <memory>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/fake_nvml.h"
#include "bench/nvml_sampler.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

TEST(NvmlSamplerOldDriverTest, ReadsClockEventReasonsAndTemperatureThroughTheOlderNames) {
  // The library this test linked is the old driver's: the newer name is not there to be found.
  void* nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(dlsym(nvml, "nvmlDeviceGetCurrentClocksEventReasons"), nullptr);
  EXPECT_NE(dlsym(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons"), nullptr);
  EXPECT_EQ(dlsym(nvml, "nvmlDeviceGetTemperatureV"), nullptr);
  EXPECT_NE(dlsym(nvml, "nvmlDeviceGetTemperature"), nullptr);
  dlclose(nvml);

  fake_nvml::Script script;
  const auto base_value = script.value;
  script.value = [base_value](fake_nvml::Call c, int i) -> double {
    if (c == fake_nvml::kTemperature) return i == 1 ? 74 : 70;
    return c == fake_nvml::kReasons ? 0x4 : base_value(c, i);  // sw_power_cap in every sample
  };
  fake_nvml::Reset(script);
  absl::StatusOr<std::unique_ptr<NvmlSampler>> s =
      NvmlSampler::Create(script.uuid, absl::Milliseconds(1));
  ASSERT_TRUE(s.ok()) << s.status();
  (*s)->Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (fake_nvml::Seen().calls[fake_nvml::kReasons] < 3 ||
         fake_nvml::Seen().calls[fake_nvml::kTemperature] < 3) {
    ASSERT_LT(absl::Now(), deadline)
        << "the sampler never read the clock event reasons and temperature";
    absl::SleepFor(absl::Milliseconds(1));
  }
  const NvmlSummary summary = (*s)->Stop();
  EXPECT_TRUE(summary.clock_event_reasons_read);
  EXPECT_EQ(summary.clock_event_reasons, 0x4u);
  EXPECT_EQ(summary.ClockEventReasonsText(), "sw_power_cap");
  EXPECT_EQ(summary.gpu_temp_c, 74);
}

}  // namespace
}  // namespace truthput
