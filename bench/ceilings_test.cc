#include "bench/ceilings.h"

#include <iostream>
#include <string>
#include <sstream>

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "bench/ceilings_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Each held GEMM ran the algorithm its burst was tuned to (the held phase does not tune again),
// and every held shape had a burst.
void ExpectHeldWithTheBurstsAlgorithms(const MeasuredCeilings& c) {
  int held = 0;
  for (const MeasuredCeilings::GemmPoint& h : c.gemms()) {
    const std::string& dtype = h.dtype();
    absl::string_view burst_dtype = dtype;
    if (!absl::ConsumeSuffix(&burst_dtype, " sustained")) continue;
    ++held;
    int found = 0;
    for (const MeasuredCeilings::GemmPoint& b : c.gemms()) {
      if (b.dtype() != burst_dtype || b.m() != h.m() || b.n() != h.n() || b.k() != h.k()) continue;
      ++found;
      EXPECT_EQ(h.algo(), b.algo()) << dtype << " m=" << h.m() << " n=" << h.n() << " k=" << h.k();
    }
    EXPECT_EQ(found, 1) << dtype << " m=" << h.m() << " n=" << h.n() << " k=" << h.k();
  }
  EXPECT_GT(held, 0);
}

// The quick measurement (bench_ceilings --quick): every rate a run divides by is there,
// valid, within the datasheet's peak, and the sustained rates (held for seconds) at most a few
// percent above the best millisecond bursts.
TEST(MeasureCeilingsTest, QuickMeasuresTheBurstAndSustainedRates) {
  std::ostringstream log;
  absl::StatusOr<MeasuredCeilings> c = MeasureCeilings(
      {.quick = true, .run_weights = std::nullopt, .command_line = "ceilings_test"}, log);
  ASSERT_TRUE(c.ok()) << c.status();
  std::cout << log.str();
  EXPECT_TRUE(ValidateCeilings(*c).ok()) << ValidateCeilings(*c);
  ASSERT_TRUE(c->has_read_sustained_gbps());
  ASSERT_TRUE(c->has_bf16_sustained_tflops());
  EXPECT_EQ(MeasuredReadGbps(*c), c->read_sustained_gbps());
  EXPECT_EQ(MeasuredPeakTflops(*c, BF16), c->bf16_sustained_tflops());
  EXPECT_LE(c->read_sustained_gbps(), 1.05 * c->read_gbps());
  EXPECT_LE(c->bf16_sustained_tflops(), 1.05 * c->bf16_tflops());
  if (c->has_fp8_tflops()) {
    ASSERT_TRUE(c->has_fp8_sustained_tflops());
    EXPECT_LE(c->fp8_sustained_tflops(), 1.05 * c->fp8_tflops());
  }
  if (c->has_datasheet()) {
    EXPECT_LE(c->read_gbps(), c->datasheet().mem_bandwidth_gbps());
    EXPECT_LE(c->read_sustained_gbps(), c->datasheet().mem_bandwidth_gbps());
    EXPECT_LE(c->bf16_tflops(), c->datasheet().bf16_tflops());
  }
  // Every burst shape is held too, each with its interval, and the sustained rate is the one
  // SurestGemm takes of them, at its shape.
  int bursts = 0, held = 0;
  for (const MeasuredCeilings::GemmPoint& g : c->gemms()) {
    bursts += g.dtype() == "bf16";
    if (g.dtype() != "bf16 sustained") continue;
    ++held;
    EXPECT_TRUE(g.has_rel_ci()) << g.m() << "x" << g.n() << "x" << g.k();
  }
  EXPECT_GT(bursts, 0);
  EXPECT_EQ(held, bursts);
  const MeasuredCeilings::GemmPoint* surest = SurestGemm(*c, "bf16 sustained");
  ASSERT_NE(surest, nullptr);
  EXPECT_DOUBLE_EQ(surest->tflops(), c->bf16_sustained_tflops());
  EXPECT_EQ(GemmShapeText(*surest), c->bf16_sustained_shape());
  EXPECT_THAT(log.str(), HasSubstr("read, sustained"));
  ExpectHeldWithTheBurstsAlgorithms(*c);
}

// A run's start-up measures only what it divides by: the read and its weights' GEMM, burst and
// held (fp8 weights: bf16 too, the fallback where fp8 is not measured), and nothing else.
TEST(MeasureCeilingsTest, ARunMeasuresOnlyWhatItDividesBy) {
  for (const DType weights : {BF16, FP8_E4M3}) {
    SCOPED_TRACE(DType_Name(weights));
    std::ostringstream log;
    absl::StatusOr<MeasuredCeilings> c = MeasureCeilings(
        {.quick = true, .run_weights = weights, .command_line = "ceilings_test"}, log);
    ASSERT_TRUE(c.ok()) << c.status();
    std::cout << log.str();
    EXPECT_TRUE(ValidateCeilings(*c).ok()) << ValidateCeilings(*c);
    EXPECT_TRUE(c->has_read_sustained_gbps());
    EXPECT_TRUE(c->has_bf16_sustained_tflops());
    EXPECT_FALSE(c->has_write_gbps());
    EXPECT_FALSE(c->has_copy_gbps());
    EXPECT_FALSE(c->has_memcpy_d2d_gbps());
    EXPECT_FALSE(c->has_fp8_precise_accum_tflops());
    EXPECT_FALSE(c->has_launch_latency_us());
    EXPECT_FALSE(c->has_graph_node_us());
    EXPECT_FALSE(c->has_empty_kernel_gpu_us());
    EXPECT_FALSE(c->has_launch_sync_us());
    EXPECT_FALSE(c->has_h2d_gbps());
    EXPECT_FALSE(c->has_d2h_gbps());
    if (weights == BF16) {
      EXPECT_FALSE(c->has_fp8_tflops());
      EXPECT_FALSE(c->has_fp8_sustained_tflops());
      EXPECT_EQ(MeasuredPeakTflops(*c, BF16), c->bf16_sustained_tflops());
    } else if (c->has_fp8_tflops()) {
      EXPECT_TRUE(c->has_fp8_sustained_tflops());
      EXPECT_EQ(MeasuredPeakTflops(*c, FP8_E4M3), c->fp8_sustained_tflops());
    }
    EXPECT_THAT(MeasuredDenominatorsText(*c, weights), Not(HasSubstr("a burst")));
    ExpectHeldWithTheBurstsAlgorithms(*c);
  }
}

}  // namespace
}  // namespace truthput
