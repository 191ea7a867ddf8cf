#include "bench/stats.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace truthput {

double PercentileSorted(absl::Span<const double> sorted, double p) {
  assert(!sorted.empty());
  const double h = (static_cast<double>(sorted.size()) - 1.0) * std::clamp(p, 0.0, 100.0) / 100.0;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= sorted.size()) return sorted.back();
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[lo + 1] - sorted[lo]);
}

MedianCi MedianConfidenceInterval(absl::Span<const double> sorted, double level) {
  assert(!sorted.empty());
  const int n = static_cast<int>(sorted.size());
  const double tail = (1.0 - level) / 2.0;
  // X ~ Binomial(n, 1/2) counts samples below the true median; [x_(lo), x_(n+1-lo)] misses it
  // with probability 2 P(X <= lo - 1). Take the largest lo whose tail P(X <= lo - 1) <= tail,
  // accumulating the CDF in one pass (pmf in log space: 2^-n underflows for n > 1074).
  const double log_norm = std::lgamma(n + 1.0) - n * std::log(2.0);
  const auto pmf = [&](int i) {
    return std::exp(log_norm - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0));
  };
  int lo = 0;
  double miss_tail = 0.0;
  double cdf = 0.0;
  for (int r = 1; r <= (n + 1) / 2; ++r) {
    cdf += pmf(r - 1);  // cdf = P(X <= r - 1).
    if (cdf > tail) break;
    lo = r;
    miss_tail = cdf;
  }
  MedianCi ci;
  ci.valid = lo >= 1;
  if (!ci.valid) {
    lo = 1;
    miss_tail = pmf(0);
  }
  ci.lower_rank = lo;
  ci.upper_rank = n + 1 - lo;
  ci.lower = sorted[ci.lower_rank - 1];
  ci.upper = sorted[ci.upper_rank - 1];
  ci.coverage = 1.0 - 2.0 * miss_tail;
  return ci;
}

namespace {

// kMedianCiBatches consecutive batches of as equal size as n allows (earlier ones one longer).
std::vector<double> BatchMedians(const std::vector<double>& in_order) {
  const size_t n = in_order.size();
  std::vector<double> medians;
  size_t begin = 0;
  for (int b = 0; b < kMedianCiBatches; ++b) {
    const size_t size = n / kMedianCiBatches + (static_cast<size_t>(b) < n % kMedianCiBatches);
    const size_t end = begin + size;
    std::vector<double> batch(in_order.begin() + begin, in_order.begin() + end);
    std::sort(batch.begin(), batch.end());
    medians.push_back(PercentileSorted(batch, 50));
    begin = end;
  }
  std::sort(medians.begin(), medians.end());
  return medians;
}

}  // namespace

SampleSummary Summarize(std::vector<double> samples) {
  assert(!samples.empty());
  std::vector<double> batch_medians;  // None under two samples a batch.
  if (samples.size() >= 2 * kMedianCiBatches) batch_medians = BatchMedians(samples);
  std::sort(samples.begin(), samples.end());
  SampleSummary s;
  s.n = static_cast<int>(samples.size());
  s.min = samples.front();
  s.max = samples.back();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / s.n;
  s.p10 = PercentileSorted(samples, 10);
  s.p50 = PercentileSorted(samples, 50);
  s.p90 = PercentileSorted(samples, 90);
  if (s.n >= kMinSamplesForP99) s.p99 = PercentileSorted(samples, 99);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  s.rel_spread = s.p50 > 0 ? (s.p90 - s.p10) / s.p50 : kInf;
  const MedianCi ci = MedianConfidenceInterval(samples);
  s.rel_ci = ci.valid && s.p50 > 0 ? (ci.upper - ci.lower) / 2.0 / s.p50 : kInf;
  if (!batch_medians.empty()) {
    const MedianCi bci = MedianConfidenceInterval(batch_medians);
    s.rel_ci_batches = s.p50 > 0 ? (bci.upper - bci.lower) / 2.0 / s.p50 : kInf;
  }
  return s;
}

}  // namespace truthput
