// NvmlSampler on a real GPU: what NVML reports while the GPU is busy. Skips (with NVML's reason)
// where NVML is not available.
#include "bench/nvml_sampler.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/device_buffer.h"
#include "bench/device_info.h"
#include "bench/stream_gate.h"
#include "gtest/gtest.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

constexpr absl::Duration kBusy = absl::Seconds(1);

class NvmlSamplerTest : public testing::Test {
 protected:
  void SetUp() override {
    int device = 0;
    ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
    absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(device);
    ASSERT_TRUE(id.ok()) << id.status();
    identity_ = *id;
    absl::StatusOr<std::unique_ptr<NvmlSampler>> s = NvmlSampler::Create(identity_.uuid);
    if (absl::IsUnavailable(s.status())) GTEST_SKIP() << s.status().message();
    ASSERT_TRUE(s.ok()) << s.status();
    sampler_ = std::move(*s);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) {
      EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
      cudaStreamDestroy(stream_);
    }
  }

  static void Print(const char* what, const NvmlSummary& s) {
    auto pct = [](const std::optional<double>& v) {
      return v ? absl::StrFormat("%.1f%%", *v) : std::string("n/a");
    };
    std::printf("%s: samples=%d window=%.3fs util_gpu=%s (max %s) sm_clock=%s power=%s "
                "(energy/window %s) temp=%s reasons=%s gpm_sm=%s gpm_tensor=%s gpm_dram_bw=%s "
                "unavailable=[%s]\n",
                what, s.samples, s.window_s, pct(s.util_gpu_pct).c_str(),
                pct(s.util_gpu_pct_max).c_str(),
                s.sm_clock_mhz ? absl::StrFormat("%.0fMHz", *s.sm_clock_mhz).c_str() : "n/a",
                s.power_w ? absl::StrFormat("%.1fW", *s.power_w).c_str() : "n/a",
                s.energy_j && s.window_s > 0
                    ? absl::StrFormat("%.1fW", *s.energy_j / s.window_s).c_str()
                    : "n/a",
                s.gpu_temp_c ? absl::StrFormat("%.0fC", *s.gpu_temp_c).c_str() : "n/a",
                s.ClockEventReasonsText().c_str(), pct(s.gpm_sm_util_pct).c_str(),
                pct(s.gpm_tensor_util_pct).c_str(), pct(s.gpm_dram_bw_util_pct).c_str(),
                absl::StrJoin(s.unavailable, "; ").c_str());
  }

  // What NVML must give on any supported GPU while it was busy for about kBusy.
  static void ExpectBusyBasics(const NvmlSummary& s) {
    EXPECT_GT(s.samples, 10);
    EXPECT_GE(s.window_s, 0.9);
    ASSERT_TRUE(s.util_gpu_pct_max.has_value());
    EXPECT_GE(*s.util_gpu_pct_max, 90);
    ASSERT_TRUE(s.util_gpu_pct.has_value());
    EXPECT_LE(*s.util_gpu_pct, 100);
    ASSERT_TRUE(s.util_mem_pct.has_value());
    ASSERT_TRUE(s.sm_clock_mhz.has_value());
    EXPECT_GT(*s.sm_clock_mhz, 0);
    ASSERT_TRUE(s.power_w.has_value());
    EXPECT_GT(*s.power_w, 0);
    if (s.energy_j.has_value()) {
      EXPECT_GT(*s.energy_j, 0);
    }
    EXPECT_TRUE(s.clock_event_reasons_read);
    // A die that computes is warmer than a cold room and cooler than where it would shut down.
    ASSERT_TRUE(s.gpu_temp_c.has_value());
    EXPECT_GT(*s.gpu_temp_c, 15);
    EXPECT_LT(*s.gpu_temp_c, 110);
    for (const std::optional<double>& v :
         {s.gpm_sm_util_pct, s.gpm_tensor_util_pct, s.gpm_dram_bw_util_pct}) {
      if (!v.has_value()) continue;
      EXPECT_GE(*v, 0);
      EXPECT_LE(*v, 100.5);
    }
  }

  DeviceIdentity identity_;
  std::unique_ptr<NvmlSampler> sampler_;
  cudaStream_t stream_ = nullptr;
};

// A one-thread kernel keeps "utilization.gpu" at 100% while it uses one SM of many: exactly the
// gap between what nvidia-smi shows and what GPM's SM utilization shows.
TEST_F(NvmlSamplerTest, OneThreadSpinIsFullUtilizationButOneSm) {
  sampler_->Start();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(LaunchSpinKernel(absl::ToInt64Nanoseconds(kBusy) / 20, stream_).ok());
  }
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  const NvmlSummary s = sampler_->Stop();
  Print("one-thread spin", s);
  ExpectBusyBasics(s);
  if (s.gpm_sm_util_pct.has_value()) {
    // One SM busy of identity_.sm_count (132 on an H100 SXM): under 1%.
    EXPECT_LT(*s.gpm_sm_util_pct, 10) << "sm_count " << identity_.sm_count;
  }
  if (s.gpm_tensor_util_pct.has_value()) {
    EXPECT_LT(*s.gpm_tensor_util_pct, 5);
  }
}

// Large bf16 GEMMs back to back: every SM busy and the tensor cores working, so the GPM values
// must come out high (which also checks the GPM struct layout declared in nvml_sampler.cc).
TEST_F(NvmlSamplerTest, GemmLoopDrivesGpmSmAndTensorUtil) {
  constexpr int64_t kM = 8192, kN = 8192, kK = 8192;
  absl::StatusOr<DeviceBuffer> x = DeviceBuffer::Allocate(kM * kK * sizeof(bf16), "x");
  absl::StatusOr<DeviceBuffer> w = DeviceBuffer::Allocate(kN * kK * sizeof(bf16), "w");
  absl::StatusOr<DeviceBuffer> y = DeviceBuffer::Allocate(kM * kN * sizeof(bf16), "y");
  ASSERT_TRUE(x.ok() && w.ok() && y.ok());
  ASSERT_TRUE(FillRandomBf16(x->as<bf16>(), kM * kK, 1, 1.0f, stream_).ok());
  ASSERT_TRUE(FillRandomBf16(w->as<bf16>(), kN * kK, 2, 1.0f, stream_).ok());
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  ASSERT_TRUE((*gemm)->Prepare(kM, kN, kK).ok());
  auto run = [&] {
    return (*gemm)->Run(x->as<bf16>(), w->as<bf16>(), y->as<bf16>(), kM, kN, kK, stream_);
  };
  ASSERT_TRUE(run().ok());  // Warm-up: loads the kernel.
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);

  sampler_->Start();
  const absl::Time end = absl::Now() + kBusy;
  while (absl::Now() < end) {
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(run().ok());
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  }
  const NvmlSummary s = sampler_->Stop();
  Print("bf16 gemm loop", s);
  ExpectBusyBasics(s);
  if (s.gpm_sm_util_pct.has_value()) {
    EXPECT_GT(*s.gpm_sm_util_pct, 50);
  }
  if (s.gpm_tensor_util_pct.has_value()) {
    EXPECT_GT(*s.gpm_tensor_util_pct, 10);
  }
}

TEST_F(NvmlSamplerTest, UnknownUuidIsNotFound) {
  EXPECT_EQ(NvmlSampler::Create("GPU-00000000-0000-0000-0000-000000000000").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(NvmlSamplerTest, StartStopLifecycle) {
  // Stop without Start: an empty summary that says so.
  NvmlSummary none = sampler_->Stop();
  EXPECT_EQ(none.samples, 0);
  ASSERT_EQ(none.unavailable.size(), 1u);

  // A second Start while running is a no-op; Stop may come from another thread.
  sampler_->Start();
  sampler_->Start();
  absl::SleepFor(absl::Milliseconds(50));
  NvmlSummary first;
  std::thread stopper([&] { first = sampler_->Stop(); });
  stopper.join();
  EXPECT_GE(first.samples, 1);
  // A 50 ms window is too short for GPM: it must say so rather than report values.
  EXPECT_FALSE(first.gpm_sm_util_pct.has_value());

  // Started again: a fresh window.
  sampler_->Start();
  absl::SleepFor(absl::Milliseconds(30));
  const NvmlSummary second = sampler_->Stop();
  EXPECT_GE(second.samples, 1);
  EXPECT_LT(second.window_s, 0.5);  // Only the new window, not the time since the first Start.

  // Destroying a running sampler stops it.
  sampler_->Start();
  sampler_.reset();
}

}  // namespace
}  // namespace truthput
