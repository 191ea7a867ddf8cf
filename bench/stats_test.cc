#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace truthput {
namespace {

std::vector<double> OneTo(int n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 1.0);
  return v;
}

TEST(PercentileSorted, InterpolatesLinearlyBetweenRanks) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 10), 1.3);   // h = 0.3
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 25), 1.75);  // h = 0.75
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 50), 2.5);   // h = 1.5
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 90), 3.7);   // h = 2.7
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 99), 3.97);  // h = 2.97
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 100), 4.0);
}

TEST(PercentileSorted, SingleSampleIsEveryPercentile) {
  const std::vector<double> v = {7.5};
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 0), 7.5);
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 50), 7.5);
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 100), 7.5);
}

TEST(PercentileSorted, UnevenGaps) {
  const std::vector<double> v = {10, 20, 40, 80, 160};
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 50), 40.0);   // h = 2
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 60), 56.0);   // h = 2.4: 40 + 0.4 * 40
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 95), 144.0);  // h = 3.8: 80 + 0.8 * 80
}

// Hand-computed binomial tails: for n = 20, P(X <= 5) = (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20
// = 21700 / 1048576 = 0.0206947 <= 0.025 and P(X <= 6) = 60460 / 2^20 = 0.0576591 > 0.025, so the
// interval is [x_(6), x_(15)] with coverage 1 - 2 * 0.0206947.
TEST(MedianConfidenceInterval, TwentySamples) {
  const std::vector<double> v = OneTo(20);
  const MedianCi ci = MedianConfidenceInterval(v);
  EXPECT_TRUE(ci.valid);
  EXPECT_EQ(ci.lower_rank, 6);
  EXPECT_EQ(ci.upper_rank, 15);
  EXPECT_DOUBLE_EQ(ci.lower, 6.0);
  EXPECT_DOUBLE_EQ(ci.upper, 15.0);
  EXPECT_NEAR(ci.coverage, 1.0 - 2.0 * 21700.0 / 1048576.0, 1e-12);
}

// For n = 100, P(X <= 39) = 0.0176001 and P(X <= 40) = 0.0284439: ranks 40 and 61 (the textbook
// values for a 95% median interval at n = 100).
TEST(MedianConfidenceInterval, HundredSamples) {
  const MedianCi ci = MedianConfidenceInterval(OneTo(100));
  EXPECT_TRUE(ci.valid);
  EXPECT_EQ(ci.lower_rank, 40);
  EXPECT_EQ(ci.upper_rank, 61);
  EXPECT_NEAR(ci.coverage, 1.0 - 2.0 * 0.0176001, 1e-6);
}

// n = 6 is the smallest sample with a 95% interval: P(X <= 0) = 1/64 <= 0.025
// (n = 5: 1/32 > 0.025).
TEST(MedianConfidenceInterval, SmallestValidAndInvalidSamples) {
  const MedianCi six = MedianConfidenceInterval(OneTo(6));
  EXPECT_TRUE(six.valid);
  EXPECT_EQ(six.lower_rank, 1);
  EXPECT_EQ(six.upper_rank, 6);
  EXPECT_DOUBLE_EQ(six.coverage, 1.0 - 2.0 / 64.0);

  const MedianCi five = MedianConfidenceInterval(OneTo(5));
  EXPECT_FALSE(five.valid);
  EXPECT_DOUBLE_EQ(five.lower, 1.0);
  EXPECT_DOUBLE_EQ(five.upper, 5.0);

  const MedianCi one = MedianConfidenceInterval(OneTo(1));
  EXPECT_FALSE(one.valid);
  EXPECT_DOUBLE_EQ(one.lower, 1.0);
  EXPECT_DOUBLE_EQ(one.upper, 1.0);
}

// Large n must not underflow 2^-n; the ranks approach the normal approximation
// n/2 -/+ 1.96 sqrt(n)/2 = 1000 -/+ 43.8.
TEST(MedianConfidenceInterval, LargeSampleMatchesNormalApproximation) {
  const MedianCi ci = MedianConfidenceInterval(OneTo(2000));
  EXPECT_TRUE(ci.valid);
  EXPECT_NEAR(ci.lower_rank, 957, 1);
  EXPECT_EQ(ci.upper_rank, 2001 - ci.lower_rank);
  EXPECT_GE(ci.coverage, 0.95);
  EXPECT_LE(ci.coverage, 0.96);
}

TEST(Summarize, OneToTwenty) {
  std::vector<double> v = OneTo(20);
  std::reverse(v.begin(), v.end());  // Summarize sorts.
  const SampleSummary s = Summarize(v);
  EXPECT_EQ(s.n, 20);
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 20.0);
  EXPECT_DOUBLE_EQ(s.mean, 10.5);
  EXPECT_DOUBLE_EQ(s.p10, 2.9);    // h = 1.9
  EXPECT_DOUBLE_EQ(s.p50, 10.5);   // h = 9.5
  EXPECT_DOUBLE_EQ(s.p90, 18.1);   // h = 17.1
  EXPECT_FALSE(s.p99.has_value());  // 19.81 would lie between the two largest
  EXPECT_DOUBLE_EQ(s.rel_spread, (18.1 - 2.9) / 10.5);
  EXPECT_DOUBLE_EQ(s.rel_ci, (15.0 - 6.0) / 2.0 / 10.5);  // CI [x_(6), x_(15)].
}

// The spread is over the median, not the mean: one slow step in five moves the mean (3) but
// not the median (1).
TEST(Summarize, SpreadIsOverTheMedian) {
  const SampleSummary s = Summarize({1, 1, 11, 1, 1});
  EXPECT_DOUBLE_EQ(s.mean, 3.0);
  EXPECT_DOUBLE_EQ(s.p50, 1.0);
  EXPECT_DOUBLE_EQ(s.p90, 7.0);  // h = 3.6: 1 + 0.6 * 10
  EXPECT_DOUBLE_EQ(s.rel_spread, 6.0);
}

TEST(Summarize, TooFewSamplesHaveInfiniteCi) {
  const SampleSummary s = Summarize({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_DOUBLE_EQ(s.rel_spread, (3.7 - 1.3) / 2.5);
  EXPECT_TRUE(std::isinf(s.rel_ci));
}

// From kMinSamplesForP99 samples on the 99th percentile is set; one fewer and it is not.
TEST(Summarize, P99FromAHundredSamples) {
  std::vector<double> v = OneTo(100);
  std::reverse(v.begin(), v.end());
  const SampleSummary s = Summarize(v);
  ASSERT_TRUE(s.p99.has_value());
  EXPECT_DOUBLE_EQ(*s.p99, 99.01);  // h = 98.01
  v.pop_back();
  EXPECT_FALSE(Summarize(v).p99.has_value());
}

TEST(Summarize, IdenticalSamplesHaveZeroSpread) {
  const SampleSummary s = Summarize(std::vector<double>(100, 0.25));
  EXPECT_DOUBLE_EQ(s.p50, 0.25);
  ASSERT_TRUE(s.p99.has_value());
  EXPECT_DOUBLE_EQ(*s.p99, 0.25);
  EXPECT_DOUBLE_EQ(s.rel_spread, 0.0);
  EXPECT_DOUBLE_EQ(s.rel_ci, 0.0);
  EXPECT_EQ(s.rel_ci_batches, 0.0);
}

// Percentiles outside [0, 100] are clamped to the sample's ends rather than read out of range.
TEST(PercentileSorted, OutOfRangePercentilesClampToTheEnds) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(PercentileSorted(v, -5), 1.0);
  EXPECT_DOUBLE_EQ(PercentileSorted(v, 105), 4.0);
}

// Too few samples: the interval is the whole range, and its coverage says what that range
// covers: for n = 2, 1 - 2 P(X = 0) = 1 - 2 x (1/2)^2 = 0.5; for n = 5, 1 - 2/32 = 0.9375.
TEST(MedianConfidenceInterval, InvalidIntervalStatesTheRangesCoverage) {
  const MedianCi two = MedianConfidenceInterval(OneTo(2));
  EXPECT_FALSE(two.valid);
  EXPECT_EQ(two.lower_rank, 1);
  EXPECT_EQ(two.upper_rank, 2);
  EXPECT_NEAR(two.coverage, 0.5, 1e-12);
  const MedianCi five = MedianConfidenceInterval(OneTo(5));
  EXPECT_NEAR(five.coverage, 0.9375, 1e-12);
}

// At level 0 the interval shrinks to the sample median for an odd n: ranks 3..3 of 5, where
// P(X <= 2) = 16/32 = 1/2 is the whole tail allowed.
TEST(MedianConfidenceInterval, LevelZeroIsTheMedianItself) {
  const MedianCi ci = MedianConfidenceInterval(OneTo(5), 0.0);
  EXPECT_TRUE(ci.valid);
  EXPECT_EQ(ci.lower_rank, 3);
  EXPECT_EQ(ci.upper_rank, 3);
  EXPECT_DOUBLE_EQ(ci.lower, 3.0);
  EXPECT_NEAR(ci.coverage, 0.0, 1e-12);
}

// A zero median makes relative figures meaningless: they are infinite, not NaN (0/0).
TEST(Summarize, ZeroMedianGivesInfiniteRelativeFigures) {
  const SampleSummary s = Summarize(std::vector<double>(20, 0.0));
  EXPECT_TRUE(std::isinf(s.rel_spread));
  EXPECT_TRUE(std::isinf(s.rel_ci));
  ASSERT_TRUE(s.rel_ci_batches.has_value());
  EXPECT_TRUE(std::isinf(*s.rel_ci_batches));
}

// Summarize's CI is the 95% one: for 100 samples [x_(40), x_(61)] (MedianConfidenceInterval's
// HundredSamples), so rel_ci = (61 - 40) / 2 / 50.5; a 90% interval would be [x_(42), x_(59)].
TEST(Summarize, RelCiIsTheNinetyFivePercentInterval) {
  EXPECT_DOUBLE_EQ(Summarize(OneTo(100)).rel_ci, 21.0 / 2.0 / 50.5);
}

// Batch medians need two samples a batch: none from 19 samples, set from 20.
TEST(Summarize, BatchMedianCiFromTwentySamples) {
  EXPECT_FALSE(Summarize(OneTo(19)).rel_ci_batches.has_value());
  EXPECT_TRUE(Summarize(OneTo(20)).rel_ci_batches.has_value());
}

// A drift: 1..100 in the order taken. The sample CI [x_(40), x_(61)] does not see the order; the
// batch medians 5.5, 15.5, ..., 95.5 do, and their ranks 2 and 9 give [15.5, 85.5].
TEST(Summarize, BatchMedianCiWidensOverADrift) {
  const SampleSummary s = Summarize(OneTo(100));
  EXPECT_DOUBLE_EQ(s.rel_ci, 21.0 / 2.0 / 50.5);
  ASSERT_TRUE(s.rel_ci_batches.has_value());
  EXPECT_DOUBLE_EQ(*s.rel_ci_batches, 70.0 / 2.0 / 50.5);
}

// The same values spread evenly over the batches: batch b holds b+1, b+11, ..., b+91, so its
// median is b+46 and the batch medians' ranks 2 and 9 are 47 and 54.
TEST(Summarize, BatchMedianCiOfValuesSpreadEvenlyOverTheBatches) {
  std::vector<double> v;
  for (int b = 0; b < 10; ++b) {
    for (int k = 0; k < 10; ++k) v.push_back(b + 1 + 10 * k);
  }
  const SampleSummary s = Summarize(v);
  EXPECT_DOUBLE_EQ(s.rel_ci, 21.0 / 2.0 / 50.5);
  ASSERT_TRUE(s.rel_ci_batches.has_value());
  EXPECT_DOUBLE_EQ(*s.rel_ci_batches, 7.0 / 2.0 / 50.5);
}

// In a random order (no drift) the batch medians' interval is far narrower than under the drift of
// the same values in ascending order, though for independent samples it is wider than the steps'
// (about 1.4x; not asserted: it varies with the draw).
TEST(Summarize, BatchMedianCiOfARandomOrderIsFarNarrowerThanOfADrift) {
  std::vector<double> v = OneTo(200);
  const double drift = *Summarize(v).rel_ci_batches;
  std::mt19937 rng(7);
  std::shuffle(v.begin(), v.end(), rng);
  const SampleSummary shuffled = Summarize(v);
  ASSERT_TRUE(shuffled.rel_ci_batches.has_value());
  EXPECT_LT(*shuffled.rel_ci_batches, drift / 2);
  EXPECT_DOUBLE_EQ(shuffled.rel_ci, Summarize(OneTo(200)).rel_ci);  // the steps' CI ignores order
}

// 25 samples make five batches of 3 and five of 2, the longer ones first: medians 2, 5, 8, 11,
// 14, 16.5, 18.5, 20.5, 22.5, 24.5, whose ranks 2 and 9 are 5 and 22.5 around the median 13.
TEST(Summarize, BatchMediansOfUnevenBatches) {
  const SampleSummary s = Summarize(OneTo(25));
  ASSERT_TRUE(s.rel_ci_batches.has_value());
  EXPECT_DOUBLE_EQ(*s.rel_ci_batches, (22.5 - 5.0) / 2.0 / 13.0);
}

}  // namespace
}  // namespace truthput
