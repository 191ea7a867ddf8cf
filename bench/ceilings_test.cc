#include "bench/ceilings.h"

#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "bench/ceilings_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput {
namespace {

using ::testing::HasSubstr;

// The quick measurement bench_decode makes at start-up: every rate a run divides by is there,
// valid, within the datasheet's peak, and the sustained rates (seconds back to back) at most a
// few percent above the millisecond bursts at the same shape.
TEST(MeasureCeilingsTest, QuickMeasuresTheBurstAndSustainedRates) {
  std::ostringstream log;
  absl::StatusOr<MeasuredCeilings> c =
      MeasureCeilings({.quick = true, .command_line = "ceilings_test"}, log);
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
  // The sweep records the sustained GEMM at the burst's best shape.
  bool recorded = false;
  for (const MeasuredCeilings::GemmPoint& g : c->gemms()) {
    if (g.dtype() != "bf16 sustained") continue;
    recorded = true;
    EXPECT_EQ(absl::StrCat("m=", g.m(), " n=", g.n(), " k=", g.k()), c->bf16_best_shape());
    EXPECT_DOUBLE_EQ(g.tflops(), c->bf16_sustained_tflops());
  }
  EXPECT_TRUE(recorded);
  EXPECT_THAT(log.str(), HasSubstr("read, sustained"));
}

}  // namespace
}  // namespace truthput
