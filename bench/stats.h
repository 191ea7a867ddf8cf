// Order statistics for timing samples: percentiles and a distribution-free confidence interval
// for the median. Pure C++, no CUDA.
#ifndef TRUTHPUT_BENCH_STATS_H_
#define TRUTHPUT_BENCH_STATS_H_

#include <optional>
#include <vector>

#include "absl/types/span.h"

namespace truthput {

// The p-th percentile (p in [0, 100]) of ascending-sorted, non-empty data, interpolating
// linearly between the two nearest ranks: with h = (n - 1) p / 100, the value is
// x[floor(h)] + (h - floor(h)) (x[floor(h) + 1] - x[floor(h)]) (NumPy's default "linear").
double PercentileSorted(absl::Span<const double> sorted, double p);

// A confidence interval for the median from order statistics: [x_(lo), x_(hi)] (1-based ranks),
// with hi = n + 1 - lo and lo the largest rank for which P(Binomial(n, 1/2) < lo) <= (1 - level)/2,
// so the interval covers the true median with probability >= level whatever the distribution.
// `valid` is false when n is too small for any such interval (n < 6 at level 0.95); the interval
// is then the whole sample range.
struct MedianCi {
  double lower = 0, upper = 0;
  int lower_rank = 0, upper_rank = 0;  // 1-based.
  double coverage = 0;                 // Exact coverage of [x_(lo), x_(hi)]: >= level when valid.
  bool valid = false;
};
MedianCi MedianConfidenceInterval(absl::Span<const double> sorted, double level = 0.95);

// The fewest samples a 99th percentile is taken from (about one sample above it). Below that the
// interpolated value leans on the slowest sample (weight 0.81 at 20 samples, 0.01 at 100): the
// sample's maximum under another name.
inline constexpr int kMinSamplesForP99 = 100;

// Samples are split into this many consecutive batches for a median CI that does not assume
// independent samples (SampleSummary::rel_ci_batches).
inline constexpr int kMedianCiBatches = 10;

// A summary of samples (non-empty, in the order they were taken).
struct SampleSummary {
  int n = 0;
  double min = 0, max = 0, mean = 0;
  double p10 = 0, p50 = 0, p90 = 0;
  std::optional<double> p99;  // Set from kMinSamplesForP99 samples on.
  double rel_spread = 0;  // (p90 - p10) / p50.
  // Half-width of the ~95% median CI over the median: (x_(hi) - x_(lo)) / 2 / p50. Infinite when
  // the CI is not valid (too few samples) or the median is 0. It treats the samples as
  // independent, which steps under a drifting clock are not.
  double rel_ci = 0;
  // The same half-width from the medians of kMedianCiBatches consecutive batches (ranks 2 and 9 of
  // the ten: ~98% coverage where batch medians are independent): batch means, for the median. A
  // drift between the first and last samples widens it where rel_ci does not see it; for
  // independent samples it is wider too, about 1.4x rel_ci at 50-200 samples (simulated normal
  // samples). Set from 2 x kMedianCiBatches samples on.
  std::optional<double> rel_ci_batches;
};
SampleSummary Summarize(std::vector<double> samples);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_STATS_H_
