#include "bench/cupti_range_profiler.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

// Creates a profiler into `var`, or skips the test where counters cannot be read on this machine
// (no permission, another profiler attached, MIG): those are facts about the machine, not bugs.
#define CREATE_PROFILER_OR_SKIP(var, metrics)                                         \
  std::unique_ptr<CuptiRangeProfiler> var;                                            \
  do {                                                                                \
    absl::StatusOr<std::unique_ptr<CuptiRangeProfiler>> _p =                          \
        CuptiRangeProfiler::Create(0, (metrics));                                     \
    if (absl::IsPermissionDenied(_p.status()) || absl::IsUnavailable(_p.status()) ||  \
        absl::IsUnimplemented(_p.status())) {                                         \
      GTEST_SKIP() << "GPU counters not readable here: " << _p.status().message();    \
    }                                                                                 \
    ASSERT_TRUE(_p.ok()) << _p.status();                                              \
    var = *std::move(_p);                                                             \
  } while (0)

void PrintMetrics(const RangeMetrics& m) {
  std::printf("range %s (%d passes):\n", m.range.c_str(), m.passes);
  for (const auto& [name, value] : m.values) std::printf("  %-72s %.6g\n", name.c_str(), value);
}

class CuptiRangeProfilerTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

constexpr int64_t kGiB = int64_t{1} << 30;

// A 1 GiB device-to-device copy reads and writes 1 GiB of DRAM; L2 (50 MB) cannot hide it. A
// warm-up copy first leaves L2 in the state every pass ends in, so dirty lines written back
// during a pass balance those left behind.
TEST_F(CuptiRangeProfilerTest, CopyMovesOneGibibyteEachWay) {
  CREATE_PROFILER_OR_SKIP(profiler, TruthMetricNames());
  std::printf("chip %s, %zu metrics, %d passes\n", profiler->chip().c_str(),
              profiler->metrics().size(), profiler->passes());
  for (const std::string& m : profiler->unsupported_metrics()) {
    std::printf("  unsupported: %s\n", m.c_str());
  }

  DevicePtr<char> src = DeviceAlloc<char>(kGiB), dst = DeviceAlloc<char>(kGiB);
  ASSERT_NE(src, nullptr);
  ASSERT_NE(dst, nullptr);
  ASSERT_OK(
      FillRandomBf16(reinterpret_cast<__nv_bfloat16*>(src.get()), kGiB / 2, 7, 1.0f, stream_));
  auto copy = [&](cudaStream_t s) -> absl::Status {
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst.get(), src.get(), kGiB, cudaMemcpyDeviceToDevice, s));
    return absl::OkStatus();
  };
  ASSERT_OK(copy(stream_));

  absl::StatusOr<RangeMetrics> m = profiler->Profile("copy_1gib", copy, stream_);
  ASSERT_TRUE(m.ok()) << m.status();
  PrintMetrics(*m);
  EXPECT_EQ(m->range, "copy_1gib");
  EXPECT_GE(m->passes, 1);
  EXPECT_EQ(m->passes, profiler->passes());

  const TruthColumns c = ToTruthColumns(*m);
  ASSERT_TRUE(c.dram_read_bytes.has_value());
  ASSERT_TRUE(c.dram_write_bytes.has_value());
  EXPECT_NEAR(*c.dram_read_bytes, static_cast<double>(kGiB), 0.02 * kGiB);
  EXPECT_NEAR(*c.dram_write_bytes, static_cast<double>(kGiB), 0.02 * kGiB);
  if (c.tensor_flops_bf16.has_value()) {
    EXPECT_EQ(*c.tensor_flops_bf16, 0);
  }
}

// cuBLASLt bf16 GEMM, 4096^3: the tensor path does exactly 2*m*n*k FLOPs and is busy most of the
// time.
TEST_F(CuptiRangeProfilerTest, GemmTensorFlopsAndActivity) {
  CREATE_PROFILER_OR_SKIP(profiler, TruthMetricNames());
  constexpr int64_t m = 4096, n = 4096, k = 4096;
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  DevicePtr<bf16> x = DeviceAlloc<bf16>(m * k), w = DeviceAlloc<bf16>(n * k),
                  y = DeviceAlloc<bf16>(m * n);
  ASSERT_NE(x, nullptr);
  ASSERT_NE(w, nullptr);
  ASSERT_NE(y, nullptr);
  bf16* xp = x.get();
  bf16* wp = w.get();
  bf16* yp = y.get();
  ASSERT_OK(FillRandomBf16(xp, m * k, 11, 1.0f, stream_));
  ASSERT_OK(FillRandomBf16(wp, n * k, 12, 0.05f, stream_));
  ASSERT_OK((*gemm)->Prepare(m, n, k));
  std::printf("%s\n", (*gemm)->AlgoDescription(m, n, k).c_str());
  // Twenty GEMMs in the range, so that the range's start and end gaps (tens of microseconds on
  // the H100, seen as 45% tensor activity for a single 0.2 ms GEMM) do not dominate it.
  constexpr int kGemms = 20;
  auto run = [&](cudaStream_t s) -> absl::Status {
    for (int i = 0; i < kGemms; ++i) {
      absl::Status st = (*gemm)->Run(xp, wp, yp, m, n, k, s);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  };
  ASSERT_OK(run(stream_));  // Warm-up: module loading and first-launch costs stay outside.

  absl::StatusOr<RangeMetrics> r = profiler->Profile("gemm_4096", run, stream_);
  ASSERT_TRUE(r.ok()) << r.status();
  PrintMetrics(*r);
  const TruthColumns c = ToTruthColumns(*r);
  const double flops = 2.0 * m * n * k * kGemms;
  ASSERT_TRUE(c.tensor_flops_bf16.has_value());
  EXPECT_NEAR(*c.tensor_flops_bf16, flops, 0.02 * flops);
  ASSERT_TRUE(c.tensor_flops.has_value());
  EXPECT_NEAR(*c.tensor_flops, flops, 0.02 * flops);
  ASSERT_TRUE(c.tensor_active_pct.has_value());
  EXPECT_GT(*c.tensor_active_pct, 50.0);
  EXPECT_LE(*c.tensor_active_pct, 100.5);
}

// A name the chip does not know is listed, not fatal; the other metrics still read.
TEST_F(CuptiRangeProfilerTest, UnknownMetricIsReportedAndOthersRead) {
  const std::string bogus = "truthput__no_such_counter.sum";
  CREATE_PROFILER_OR_SKIP(profiler, (std::vector<std::string>{"dram__bytes_read.sum", bogus,
                                                              "gpu__time_duration.sum"}));
  EXPECT_EQ(profiler->unsupported_metrics(), std::vector<std::string>{bogus});
  EXPECT_EQ(profiler->metrics(),
            (std::vector<std::string>{"dram__bytes_read.sum", "gpu__time_duration.sum"}));

  constexpr size_t kBytes = 256 << 20;
  DevicePtr<char> src = DeviceAlloc<char>(kBytes), dst = DeviceAlloc<char>(kBytes);
  ASSERT_NE(src, nullptr);
  ASSERT_NE(dst, nullptr);
  ASSERT_CUDA(cudaMemsetAsync(src.get(), 1, kBytes, stream_));
  auto copy = [&](cudaStream_t s) -> absl::Status {
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst.get(), src.get(), kBytes, cudaMemcpyDeviceToDevice, s));
    return absl::OkStatus();
  };
  absl::StatusOr<RangeMetrics> r = profiler->Profile("copy", copy, stream_);
  ASSERT_TRUE(r.ok()) << r.status();
  PrintMetrics(*r);
  EXPECT_EQ(r->values.size(), 2u);
  EXPECT_EQ(r->values.count(bogus), 0u);
  ASSERT_EQ(r->values.count("dram__bytes_read.sum"), 1u);
  ASSERT_EQ(r->values.count("gpu__time_duration.sum"), 1u);
  EXPECT_GT(r->values.at("dram__bytes_read.sum"), 0.5 * kBytes);
  EXPECT_GT(r->values.at("gpu__time_duration.sum"), 0);

  const TruthColumns c = ToTruthColumns(*r);
  EXPECT_TRUE(c.dram_read_bytes.has_value());
  EXPECT_FALSE(c.dram_write_bytes.has_value());
  EXPECT_FALSE(c.tensor_flops.has_value());
}

// An error from the work comes back unchanged, and the profiler is clean for the next session.
TEST_F(CuptiRangeProfilerTest, WorkErrorPropagates) {
  CREATE_PROFILER_OR_SKIP(profiler, (std::vector<std::string>{"gpu__time_duration.sum"}));
  int calls = 0;
  absl::StatusOr<RangeMetrics> r = profiler->Profile(
      "failing",
      [&calls](cudaStream_t) {
        ++calls;
        return absl::DataLossError("work failed on purpose");
      },
      stream_);
  EXPECT_EQ(calls, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r.status().message(), "work failed on purpose");

  DevicePtr<char> buf = DeviceAlloc<char>(64 << 20);
  ASSERT_NE(buf, nullptr);
  absl::StatusOr<RangeMetrics> ok = profiler->Profile(
      "memset",
      [&buf](cudaStream_t s) -> absl::Status {
        TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(buf.get(), 0, 64 << 20, s));
        return absl::OkStatus();
      },
      stream_);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_GT(ok->values.at("gpu__time_duration.sum"), 0);
}

// Several ranges in one session come back in input order with their own counts.
TEST_F(CuptiRangeProfilerTest, ProfileManyKeepsRangesApart) {
  CREATE_PROFILER_OR_SKIP(
      profiler, (std::vector<std::string>{"dram__bytes_read.sum", "dram__bytes_write.sum"}));
  constexpr size_t kSmall = 128 << 20, kLarge = 512 << 20;
  DevicePtr<char> src = DeviceAlloc<char>(kLarge), dst = DeviceAlloc<char>(kLarge);
  ASSERT_NE(src, nullptr);
  ASSERT_NE(dst, nullptr);
  ASSERT_CUDA(cudaMemsetAsync(src.get(), 3, kLarge, stream_));
  auto copy_of = [&](size_t bytes) {
    return [&, bytes](cudaStream_t s) -> absl::Status {
      TP_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
      return absl::OkStatus();
    };
  };
  absl::StatusOr<std::vector<RangeMetrics>> r = profiler->ProfileMany(
      {{"large", copy_of(kLarge)}, {"small", copy_of(kSmall)}}, stream_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  for (const RangeMetrics& m : *r) PrintMetrics(m);
  EXPECT_EQ((*r)[0].range, "large");
  EXPECT_EQ((*r)[1].range, "small");
  // L2 can hold the tail of one copy into the next, so only coarse bounds.
  EXPECT_NEAR((*r)[0].values.at("dram__bytes_read.sum"), kLarge, 0.15 * kLarge);
  EXPECT_NEAR((*r)[1].values.at("dram__bytes_read.sum"), kSmall, 0.5 * kSmall);

  // Two ranges of one name could not be told apart.
  EXPECT_TRUE(absl::IsInvalidArgument(
      profiler->ProfileMany({{"a", copy_of(kSmall)}, {"a", copy_of(kSmall)}}, stream_).status()));
}

}  // namespace
}  // namespace truthput
