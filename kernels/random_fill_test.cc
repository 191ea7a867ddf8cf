// GPU tests of the device fills: the values are the documented function of (seed, index),
// independent of pointer alignment and grid size, and the fill never touches its neighbours.
#include "kernels/random_fill.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"

namespace truthput {
namespace {

// Host copy of the documented formula (see random_fill.h).
float ExpectedUniform(uint64_t seed, uint64_t i, float scale) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const int32_t k = static_cast<int32_t>(z >> 41);
  return static_cast<float>(2 * k + 1 - (1 << 23)) * (1.0f / 8388608.0f) * scale;
}

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  std::vector<T> ToHost() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

uint16_t Bits(__nv_bfloat16 v) {
  uint16_t b;
  static_assert(sizeof(b) == sizeof(v));
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

class RandomFillTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_CUDA(cudaStreamCreate(&stream_)); }
  void TearDown() override { cudaStreamDestroy(stream_); }
  void Sync() { ASSERT_CUDA(cudaStreamSynchronize(stream_)); }
  cudaStream_t stream_ = nullptr;
};

TEST_F(RandomFillTest, Bf16MatchesFormulaAtEveryOffsetAndLength) {
  constexpr int64_t kPad = 16;
  DeviceBuffer<__nv_bfloat16> buf(2 * kPad + 1100);
  for (int64_t offset : {0, 1, 3, 7, 8}) {
    for (int64_t n : {1, 2, 7, 8, 9, 15, 17, 1001}) {
      SCOPED_TRACE(testing::Message() << "offset=" << offset << " n=" << n);
      const uint64_t seed = 1000 + offset * 31 + n;
      ASSERT_OK(FillBf16(buf.get(), 2 * kPad + 1100, NAN, stream_));
      ASSERT_OK(FillRandomBf16(buf.get() + offset, n, seed, 0.75f, stream_));
      Sync();
      const std::vector<__nv_bfloat16> h = buf.ToHost();
      for (int64_t i = 0; i < offset; ++i) ASSERT_TRUE(std::isnan(__bfloat162float(h[i]))) << i;
      for (int64_t i = 0; i < n; ++i) {
        const __nv_bfloat16 want = __float2bfloat16_rn(ExpectedUniform(seed, i, 0.75f));
        ASSERT_EQ(Bits(h[offset + i]), Bits(want)) << "i=" << i;
      }
      for (size_t i = offset + n; i < h.size(); ++i) {
        ASSERT_TRUE(std::isnan(__bfloat162float(h[i]))) << "overwrote element " << i;
      }
    }
  }
}

TEST_F(RandomFillTest, LargeFillUsesGridStrideAndMatchesFormula) {
  // More 16-byte vectors than the grid has threads, plus a ragged tail.
  constexpr int64_t kN = (int64_t{1} << 24) + 5;
  DeviceBuffer<__nv_bfloat16> buf(kN);
  ASSERT_OK(FillRandomBf16(buf.get(), kN, 7, 2.0f, stream_));
  Sync();
  const std::vector<__nv_bfloat16> h = buf.ToHost();
  double sum = 0, sum_sq = 0;
  int64_t zeros = 0, mismatches = 0;
  for (int64_t i = 0; i < kN; ++i) {
    const float v = __bfloat162float(h[i]);
    if (Bits(h[i]) != Bits(__float2bfloat16_rn(ExpectedUniform(7, i, 2.0f)))) ++mismatches;
    if (v == 0.0f) ++zeros;
    ASSERT_LE(std::fabs(v), 2.0f) << i;
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(zeros, 0);
  const double mean = sum / kN, var = sum_sq / kN - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 4.0 / 3.0, 0.01);  // uniform on [-2, 2]
}

TEST_F(RandomFillTest, SeedsGiveDifferentStreamsAndSameSeedRepeats) {
  constexpr int64_t kN = 4096;
  DeviceBuffer<__nv_bfloat16> a(kN), b(kN), c(kN);
  ASSERT_OK(FillRandomBf16(a.get(), kN, 1, 1.0f, stream_));
  ASSERT_OK(FillRandomBf16(b.get(), kN, 2, 1.0f, stream_));
  ASSERT_OK(FillRandomBf16(c.get(), kN, 1, 1.0f, stream_));
  Sync();
  const auto ha = a.ToHost(), hb = b.ToHost(), hc = c.ToHost();
  int same_ab = 0;
  for (int64_t i = 0; i < kN; ++i) {
    ASSERT_EQ(Bits(ha[i]), Bits(hc[i]));
    same_ab += Bits(ha[i]) == Bits(hb[i]);
  }
  EXPECT_LT(same_ab, kN / 50);
}

TEST_F(RandomFillTest, ConstantFill) {
  constexpr int64_t kN = 1027;
  DeviceBuffer<__nv_bfloat16> buf(kN);
  ASSERT_OK(FillBf16(buf.get(), kN, 1.5f, stream_));
  ASSERT_OK(FillBf16(buf.get() + 5, 3, NAN, stream_));
  Sync();
  const auto h = buf.ToHost();
  for (int64_t i = 0; i < kN; ++i) {
    if (i >= 5 && i < 8) {
      EXPECT_TRUE(std::isnan(__bfloat162float(h[i]))) << i;
    } else {
      EXPECT_EQ(__bfloat162float(h[i]), 1.5f) << i;
    }
  }
}

TEST_F(RandomFillTest, RejectsBadArguments) {
  DeviceBuffer<__nv_bfloat16> buf(8);
  EXPECT_EQ(FillRandomBf16(buf.get(), -1, 0, 1.0f, stream_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FillRandomBf16(buf.get(), 8, 0, 0.0f, stream_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FillRandomBf16(buf.get(), 8, 0, NAN, stream_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FillRandomBf16(nullptr, 8, 0, 1.0f, stream_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FillRandomBf16(buf.get(), 0, 0, 1.0f, stream_).ok());
}

}  // namespace
}  // namespace truthput
