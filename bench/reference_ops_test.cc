#include "bench/reference_ops.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace truthput::ref {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pointwise;

constexpr double kTol = 1e-12;

TEST(EmbeddingGatherTest, GathersRowsAndZerosOutOfRangeIds) {
  const std::vector<float> table = {1, 2, 3, 4, 5, 6};  // vocab 3, cols 2
  EXPECT_THAT(EmbeddingGather(table, {2, 0, 2, 3, -1}, 2),
              ElementsAre(5, 6, 1, 2, 5, 6, 0, 0, 0, 0));
}

TEST(RmsNormTest, HandComputed) {
  // mean([9, 16]) = 12.5, so the row is divided by sqrt(12.5) then scaled by [1, 2].
  const double inv = 1.0 / std::sqrt(12.5);
  EXPECT_THAT(RmsNorm({3, 4}, {1, 2}, 1, 2, 0.0), Pointwise(DoubleNear(kTol), {3 * inv, 8 * inv}));
  // eps enters under the root; rows are independent.
  const double inv2 = 1.0 / std::sqrt(1.0 + 0.5);
  EXPECT_THAT(RmsNorm({3, 4, 1, -1}, {1, 2}, 2, 2, 0.5),
              Pointwise(DoubleNear(kTol),
                        {3 / std::sqrt(12.5 + 0.5), 8 / std::sqrt(12.5 + 0.5), inv2, -2 * inv2}));
}

TEST(RmsNormTest, SizeMismatchGivesEmpty) {
  EXPECT_THAT(RmsNorm({3, 4, 5}, {1, 2}, 1, 2, 0.0), IsEmpty());
}

TEST(GemmTest, TwoByThreeTimesThreeByTwo) {
  // x [2, 3], W [2, 3] (n = 2 rows of k = 3): y = x W^T.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const std::vector<float> w = {1, 0, -1, 2, 1, 0};
  // y[0] = [1 - 3, 2 + 2] = [-2, 4]; y[1] = [4 - 6, 8 + 5] = [-2, 13].
  EXPECT_THAT(Gemm(x, w, 2, 2, 3), ElementsAre(-2, 4, -2, 13));
}

TEST(GemmTest, ThreadedMatchesSerialDefinition) {
  // Big enough that the work is spread over threads; every output checked against a plain loop.
  const int64_t m = 3, n = 301, k = 4099;
  std::vector<float> x(m * k), w(n * k);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 13) - 6.0f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 104729) % 17) - 8.0f;
  const std::vector<double> y = Gemm(x, w, m, n, k);
  ASSERT_EQ(y.size(), static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += static_cast<double>(x[i * k + l]) * w[j * k + l];
      ASSERT_EQ(y[i * n + j], s) << i << "," << j;  // small integers: exact in any order
    }
  }
}

TEST(RopeKvAppendTest, PositionZeroIsIdentity) {
  // Hq 2, Hkv 1, head_dim 4: a row is [q0 | q1 | k | v], 16 values; batch 2, q_len 1.
  std::vector<float> qkv(2 * 16);
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = static_cast<float>(i) * 0.5f - 3.0f;
  const RopeKvAppendResult r = RopeKvAppend(qkv, 2, 1, 0, 2, 1, 4, 10000.0);
  ASSERT_EQ(r.q.size(), 16u);
  ASSERT_EQ(r.k.size(), 8u);
  ASSERT_EQ(r.v.size(), 8u);
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < 8; ++i) EXPECT_EQ(r.q[b * 8 + i], qkv[b * 16 + i]);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(r.k[b * 4 + i], qkv[b * 16 + 8 + i]);
      EXPECT_EQ(r.v[b * 4 + i], qkv[b * 16 + 12 + i]);
    }
  }
}

TEST(RopeKvAppendTest, RotateHalfAtPosition) {
  // head_dim 4: pairs (0, 2) and (1, 3); angle_i = pos * theta^(-2i/4). theta = 100, pos 3:
  // angle_0 = 3, angle_1 = 3 / 10. Hq = Hkv = 1; q = [1, 2, 3, 4], k = [1, 0, 0, 1].
  const std::vector<float> qkv = {1, 2, 3, 4, 1, 0, 0, 1, 7, 8, 9, 10};
  const RopeKvAppendResult r = RopeKvAppend(qkv, 1, 1, 3, 1, 1, 4, 100.0);
  const double c0 = std::cos(3.0), s0 = std::sin(3.0), c1 = std::cos(0.3), s1 = std::sin(0.3);
  EXPECT_THAT(r.q, Pointwise(DoubleNear(kTol),
                             {1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1}));
  EXPECT_THAT(r.k, Pointwise(DoubleNear(kTol), {c0, -s1, s0, c1}));
  EXPECT_THAT(r.v, ElementsAre(7, 8, 9, 10));
}

TEST(RopeKvAppendTest, CacheRowsAreSequenceHeadToken) {
  // batch 1, q_len 2, Hq 1, Hkv 2, head_dim 2, at position 0 (identity): k rows come out as
  // [head][token], i.e. k head 0 token 0, k head 0 token 1, k head 1 token 0, ...
  // Row of a token: [q (2) | k0 (2) | k1 (2) | v0 (2) | v1 (2)].
  const std::vector<float> qkv = {0, 0, 1, 1, 2, 2, 5, 5, 6, 6,   // token 0
                                  0, 0, 3, 3, 4, 4, 7, 7, 8, 8};  // token 1
  // Token 1 sits at position 1 and is rotated; check only token 0's rows and the layout of V.
  const RopeKvAppendResult r = RopeKvAppend(qkv, 1, 2, 0, 1, 2, 2, 10000.0);
  ASSERT_EQ(r.k.size(), 8u);
  EXPECT_EQ(r.k[0], 1);  // head 0, token 0
  EXPECT_EQ(r.k[4], 2);  // head 1, token 0
  EXPECT_THAT(r.v, ElementsAre(5, 5, 7, 7, 6, 6, 8, 8));
}

TEST(DecodeAttentionTest, OneKeyGivesV) {
  // batch 1, Hq 2, Hkv 1, head_dim 2, capacity 3, kv_len 1: whatever q, the output is V[0].
  const std::vector<float> q = {1, -2, 3, 4};
  const std::vector<float> k = {0.5, 0.25, 9, 9, 9, 9};
  const std::vector<float> v = {7, -3, 100, 100, 100, 100};
  EXPECT_THAT(DecodeAttention(q, k, v, 1, 2, 1, 2, 1, 3, 0.7),
              Pointwise(DoubleNear(kTol), {7.0, -3.0, 7.0, -3.0}));
}

TEST(DecodeAttentionTest, EqualKeysGiveMeanOfV) {
  const std::vector<float> q = {1, 2};
  const std::vector<float> k = {0.5, -1, 0.5, -1};
  const std::vector<float> v = {1, 10, 3, 20};
  EXPECT_THAT(DecodeAttention(q, k, v, 1, 1, 1, 2, 2, 2, 1.0),
              Pointwise(DoubleNear(kTol), {2.0, 15.0}));
}

TEST(DecodeAttentionTest, SoftmaxWeightsAndGqaGrouping) {
  // batch 1, Hq 2, Hkv 2 (group 1) vs Hq 4, Hkv 2 (group 2): query head h reads KV head h / G.
  // KV head 0 keys [1, 0], [0, 0]; KV head 1 keys [0, 0], [0, 0]. q = [1, 0] everywhere, scale 1:
  // head 0 weights e/(e+1), 1/(e+1); head 1 uniform.
  const double e = std::exp(1.0);
  const std::vector<float> k = {1, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<float> v = {1, 0, 0, 1, 2, 0, 0, 2};
  const double w0 = e / (e + 1), w1 = 1 / (e + 1);
  EXPECT_THAT(DecodeAttention({1, 0, 1, 0}, k, v, 1, 2, 2, 2, 2, 2, 1.0),
              Pointwise(DoubleNear(kTol), {w0, w1, 1.0, 1.0}));
  EXPECT_THAT(DecodeAttention({1, 0, 1, 0, 1, 0, 1, 0}, k, v, 1, 4, 2, 2, 2, 2, 1.0),
              Pointwise(DoubleNear(kTol), {w0, w1, w0, w1, 1.0, 1.0, 1.0, 1.0}));
}

TEST(DecodeAttentionTest, ReadsOnlyKvLenPositions) {
  // capacity 3, kv_len 2: position 2 holds a huge key that must be ignored.
  const std::vector<float> k = {0, 0, 0, 0, 50, 50};
  const std::vector<float> v = {1, 2, 3, 4, 1000, 1000};
  EXPECT_THAT(DecodeAttention({1, 1}, k, v, 1, 1, 1, 2, 2, 3, 1.0),
              Pointwise(DoubleNear(kTol), {2.0, 3.0}));
}

TEST(AttentionTest, CausalSoftmaxByHand) {
  // batch 1, q_len 2 from start_pos 1, Hq = Hkv = 1, head_dim 1, capacity 4, scale 1. Keys
  // [0, 1, 2] at positions 0..2, values [10, 20, 40]; position 3 is past kv_len = 3 and holds
  // 1000s that must never be read. Query row 0 (position 1, q = 1) sees positions 0 and 1:
  // weights [1, e] / (1 + e). Query row 1 (position 2, q = 2) sees all three: scores [0, 2, 4],
  // weights [1, e^2, e^4] / (1 + e^2 + e^4).
  const double e = std::exp(1.0), e2 = std::exp(2.0), e4 = std::exp(4.0);
  const std::vector<float> q = {1, 2};
  const std::vector<float> k = {0, 1, 2, 1000};
  const std::vector<float> v = {10, 20, 40, 1000};
  const double row0_causal = (10 + 20 * e) / (1 + e);
  const double row1 = (10 + 20 * e2 + 40 * e4) / (1 + e2 + e4);
  EXPECT_THAT(Attention(q, k, v, 1, 2, 1, 1, 1, 1, 4, 1.0, /*causal=*/true),
              Pointwise(DoubleNear(kTol), {row0_causal, row1}));
  // Without the mask row 0 sees position 2 as well: scores [0, 1, 2].
  const double row0_full = (10 + 20 * e + 40 * e2) / (1 + e + e2);
  EXPECT_THAT(Attention(q, k, v, 1, 2, 1, 1, 1, 1, 4, 1.0, /*causal=*/false),
              Pointwise(DoubleNear(kTol), {row0_full, row1}));
}

TEST(AttentionTest, CausalRowIgnoresLaterPositions) {
  // batch 2, q_len 4 from start_pos 2 (positions 2..5, kv_len 6), Hq 4 over Hkv 2, head_dim 4,
  // capacity 8. Rewriting K and V at positions after 3 (query row 1) leaves rows 0 and 1 of
  // every sequence and head bit-for-bit as they were, and changes every row after.
  const int64_t batch = 2, q_len = 4, start = 2, hq = 4, hkv = 2, d = 4, cap = 8;
  std::vector<float> q(batch * q_len * hq * d), k(batch * hkv * cap * d), v(k.size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>((i * 37) % 11) * 0.25f - 1.25f;
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>((i * 53) % 13) * 0.25f - 1.5f;
    v[i] = static_cast<float>((i * 29) % 7) - 3.0f;
  }
  const double scale = 0.5;
  const std::vector<double> before =
      Attention(q, k, v, batch, q_len, start, hq, hkv, d, cap, scale, /*causal=*/true);
  ASSERT_EQ(before.size(), q.size());
  for (int64_t bh = 0; bh < batch * hkv; ++bh) {
    for (int64_t pos = 4; pos < cap; ++pos) {
      for (int64_t i = 0; i < d; ++i) {
        k[(bh * cap + pos) * d + i] += 2.0f;
        v[(bh * cap + pos) * d + i] += 5.0f;
      }
    }
  }
  const std::vector<double> after =
      Attention(q, k, v, batch, q_len, start, hq, hkv, d, cap, scale, /*causal=*/true);
  ASSERT_EQ(after.size(), q.size());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < q_len; ++t) {
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t at = ((b * q_len + t) * hq + h) * d;
        const std::vector<double> row0(before.begin() + at, before.begin() + at + d);
        const std::vector<double> row1(after.begin() + at, after.begin() + at + d);
        if (t <= 1) {
          EXPECT_EQ(row1, row0) << "batch " << b << ", row " << t << ", head " << h;
        } else {
          EXPECT_NE(row1, row0) << "batch " << b << ", row " << t << ", head " << h;
        }
      }
    }
  }
  // The last row sees every position, masked or not.
  const std::vector<double> full =
      Attention(q, k, v, batch, q_len, start, hq, hkv, d, cap, scale, /*causal=*/false);
  ASSERT_EQ(full.size(), q.size());
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t at = (b * q_len + q_len - 1) * hq * d;
    for (int64_t i = 0; i < hq * d; ++i) EXPECT_EQ(full[at + i], after[at + i]) << b << ", " << i;
  }
}

TEST(ResidualAddTest, Adds) {
  EXPECT_THAT(ResidualAdd({1, 2.5, -3}, {0.5, -2.5, 1}), ElementsAre(1.5, 0, -2));
  EXPECT_THAT(ResidualAdd({1, 2}, {1}), IsEmpty());
}

TEST(SiluMulTest, HandComputed) {
  // rows 2, ffn 2: [g0 g1 u0 u1]. silu(0) = 0; silu(1) = 1 / (1 + e^-1); silu(-2) = -2/(1+e^2).
  const std::vector<double> out = SiluMul({0, 1, 5, 3, -2, 0, 2, 7}, 2, 2);
  EXPECT_THAT(out, Pointwise(DoubleNear(kTol),
                             {0.0, 3 / (1 + std::exp(-1.0)), -2 / (1 + std::exp(2.0)) * 2, 0.0}));
}

TEST(CompareTest, PassesTinyErrors) {
  const std::vector<double> ref = {1.0, -2.0, 0.0, 4.0};
  const Comparison c = Compare({1.001f, -2.002f, 0.001f, 4.0f}, ref, 2e-2);
  EXPECT_TRUE(c.ok) << c.worst;
  EXPECT_EQ(c.fail_count, 0);
  EXPECT_EQ(c.nan_count, 0);
  EXPECT_NEAR(c.ref_rms, std::sqrt(21.0 / 4), 1e-12);
  EXPECT_NEAR(c.max_abs_err, 0.002, 1e-6);
}

TEST(CompareTest, FlagsLargeErrorWithIndexAndValues) {
  const std::vector<double> ref = {1, 2, 3, 4, 5, 6};
  const Comparison c = Compare({1, 2, 3, 4, 5.5f, 6}, ref, 2e-2, {2, 3});
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.fail_count, 1);
  EXPECT_EQ(c.worst_index, 4);
  EXPECT_NEAR(c.max_abs_err, 0.5, 1e-12);
  EXPECT_THAT(c.worst, HasSubstr("at [1, 1]"));
  EXPECT_THAT(c.worst, HasSubstr("got 5.5"));
  EXPECT_THAT(c.worst, HasSubstr("want 5"));
}

TEST(CompareTest, ErrorNearZeroIsJudgedAgainstRms) {
  // |err| 0.05 at a zero reference passes at rtol 2e-2 only thanks to ref_rms (about 3.2).
  const std::vector<double> ref = {0, 4, -4, 3};
  EXPECT_TRUE(Compare({0.05f, 4, -4, 3}, ref, 2e-2).ok);
  EXPECT_FALSE(Compare({0.5f, 4, -4, 3}, ref, 2e-2).ok);
}

TEST(CompareTest, FlagsNanAndInf) {
  const std::vector<double> ref = {1, 2, 3};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Comparison c = Compare({1, nan, inf}, ref, 1.0);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.nan_count, 2);
  EXPECT_EQ(c.fail_count, 2);
  EXPECT_EQ(c.worst_index, 1);  // the first non-finite element
  EXPECT_THAT(c.worst, HasSubstr("at [1]"));
  EXPECT_THAT(c.worst, HasSubstr("got nan"));
}

TEST(CompareTest, SizeMismatchFails) {
  const Comparison c = Compare({1, 2}, {1, 2, 3}, 1.0);
  EXPECT_FALSE(c.ok);
  EXPECT_THAT(c.worst, HasSubstr("size mismatch"));
}

TEST(CompareTest, SizeMismatchWithAnEmptySideFails) {
  // A reference given a wrong shape returns empty; the GPU's output is not.
  const Comparison c = Compare({1, 2}, {}, 1.0);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.worst, "size mismatch: got 2 elements, want 0");
}

TEST(CompareTest, NothingToCompareFails) {
  // Both empty: every element passes because there is none; that checks nothing.
  const Comparison c = Compare({}, {}, 1.0);
  EXPECT_FALSE(c.ok);
  EXPECT_THAT(c.worst, HasSubstr("nothing to compare"));
  EXPECT_EQ(c.worst_index, -1);
  EXPECT_FALSE(CompareGemm({}, {}, 4096, false).ok);
}

TEST(CompareTest, ExactToleranceZero) {
  EXPECT_TRUE(Compare({1, -2, 0}, {1, -2, 0}, 0.0).ok);
  EXPECT_FALSE(Compare({1, -2, 0}, {1, -2.0001, 0}, 0.0).ok);
}

// fp32 accumulation keeps one tolerance; the fp8 fast accumulator's grows as sqrt(k) past 4096.
TEST(RtolGemm, FastAccumulationScalesWithTheRootOfK) {
  EXPECT_EQ(RtolGemm(28672, false), kRtolGemm);
  EXPECT_EQ(RtolGemm(64, true), kRtolGemm);
  EXPECT_EQ(RtolGemm(4096, true), kRtolGemm);
  EXPECT_DOUBLE_EQ(RtolGemm(16384, true), 2 * kRtolGemm);
  EXPECT_DOUBLE_EQ(RtolGemm(28672, true), std::sqrt(7.0) * kRtolGemm);
}

// A small error everywhere passes each element's bound yet fails the whole; noise does not.
TEST(CompareGemm, FailsASystematicErrorThatNoElementShows) {
  std::vector<double> ref;
  for (int i = 0; i < 1000; ++i) ref.push_back(std::sin(i * 0.7));
  std::vector<float> scaled, noisy;
  for (size_t i = 0; i < ref.size(); ++i) {
    scaled.push_back(static_cast<float>(ref[i] * 1.04));
    noisy.push_back(static_cast<float>(ref[i] + ((i % 2) ? 1e-3 : -1e-3)));
  }
  EXPECT_TRUE(Compare(scaled, ref, RtolGemm(28672, true)).ok);
  const Comparison c = CompareGemm(scaled, ref, 28672, true);
  EXPECT_FALSE(c.ok);
  EXPECT_NEAR(c.err_rms / c.ref_rms, 0.04, 1e-6);
  EXPECT_THAT(c.worst, HasSubstr("is 4.00% of rms(ref)"));
  EXPECT_TRUE(CompareGemm(noisy, ref, 28672, true).ok);
  // Without fast accumulation too (no element of a sine is past 3% of |ref| + rms either).
  EXPECT_FALSE(CompareGemm(scaled, ref, 28672, false).ok);
}

}  // namespace
}  // namespace truthput::ref
