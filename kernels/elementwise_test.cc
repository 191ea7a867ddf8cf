// GPU tests of RmsNorm, AddRmsNorm, ResidualAdd, SiluMul and RopeKvAppend against
// double-precision CPU references computed from the very bf16 inputs the GPU saw. Outputs are
// poisoned with NaN before each run, so an element the kernel never wrote fails the comparison.
// The e4m3 copies RmsNorm, AddRmsNorm and SiluMul can write are checked byte for byte against
// QuantizeWeightsFp8 on their bf16 output.
#include "kernels/elementwise.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/fp8_weights.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

// Device bf16 buffer with a little slack, so tests can also run at misaligned offsets.
class DeviceBf16 {
 public:
  explicit DeviceBf16(int64_t n) : n_(n + 8) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(bf16)), cudaSuccess);
  }
  ~DeviceBf16() { cudaFree(p_); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;
  bf16* get(int64_t offset = 0) const { return p_ + offset; }

 private:
  bf16* p_ = nullptr;
  int64_t n_;
};

// Every got[i] must satisfy |got - want| <= rtol * |want| + atol (NaN never does).
void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double rtol,
                 double atol) {
  ASSERT_EQ(got.size(), want.size());
  int64_t bad = 0;
  double worst = 0;
  int64_t worst_i = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double tol = rtol * std::fabs(want[i]) + atol;
    if (!(err <= tol)) {
      if (bad < 5) {
        ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i];
      }
      ++bad;
    }
    if (!(err <= worst)) {
      worst = err;
      worst_i = static_cast<int64_t>(i);
    }
  }
  EXPECT_EQ(bad, 0) << "of " << got.size() << " elements; worst |err| " << worst << " at "
                    << worst_i;
}

// bf16 rounding of an fp32 result: relative 2^-9, a little headroom for fp32 arithmetic.
constexpr double kRtol = 8e-3;

class ElementwiseTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_CUDA(cudaStreamCreate(&stream_)); }
  void TearDown() override { cudaStreamDestroy(stream_); }
  void Sync() { ASSERT_CUDA(cudaStreamSynchronize(stream_)); }
  cudaStream_t stream_ = nullptr;
};

// ---------------------------------------------------------------------------------------------

void RmsNormCase(cudaStream_t stream, int rows, int cols, int offset, bool in_place,
                 uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "rows=" << rows << " cols=" << cols << " offset=" << offset
                                  << " in_place=" << in_place);
  const int64_t n = static_cast<int64_t>(rows) * cols;
  DeviceBf16 x(n), w(cols), y(n);
  ASSERT_OK(FillRandomBf16(x.get(offset), n, seed, 2.0f, stream));
  ASSERT_OK(FillRandomBf16(w.get(offset), cols, seed + 1, 1.5f, stream));
  bf16* out = in_place ? x.get(offset) : y.get(offset);
  const std::vector<float> hx = ToHost(x.get(offset), n);
  const std::vector<float> hw = ToHost(w.get(offset), cols);
  if (!in_place) ASSERT_OK(FillBf16(out, n, NAN, stream));
  constexpr float kEps = 1e-5f;
  ASSERT_OK(RmsNorm(x.get(offset), w.get(offset), out, rows, cols, kEps, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  std::vector<double> want(n);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int c = 0; c < cols; ++c) ss += static_cast<double>(hx[r * cols + c]) * hx[r * cols + c];
    const double inv = 1.0 / std::sqrt(ss / cols + kEps);
    for (int c = 0; c < cols; ++c) want[r * cols + c] = hx[r * cols + c] * inv * hw[c];
  }
  ExpectClose(ToHost(out, n), want, kRtol, 1e-6);
}

TEST_F(ElementwiseTest, RmsNorm) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (int rows : {1, 3}) {
    // 20000: three 16-byte pieces per thread; 40000: past the in-register row.
    for (int cols : {8, 200, 8192, 16384, 20000, 40000, 13, 1}) {
      RmsNormCase(stream_, rows, cols, /*offset=*/0, /*in_place=*/false, seed++);
    }
  }
  // Misaligned pointers take the element-wise path; in-place must work on both paths.
  RmsNormCase(stream_, 3, 8192, /*offset=*/1, /*in_place=*/false, seed++);
  RmsNormCase(stream_, 3, 8192, /*offset=*/0, /*in_place=*/true, seed++);
  RmsNormCase(stream_, 2, 200, /*offset=*/3, /*in_place=*/true, seed++);
}

// ---------------------------------------------------------------------------------------------
// The e4m3 copy (E4m3Rows) of RmsNorm's and SiluMul's output against the two-kernel path it
// replaces: the op without it, then QuantizeWeightsFp8 on its output. The bf16 output, the bytes
// and the scales must all be identical; q starts as 0xFF bytes (e4m3 NaN, which the saturating
// quantizer never writes) and the scales as NaN.

struct E4m3Copy {
  E4m3Copy(int64_t rows, int64_t cols, cudaStream_t stream)
      : rows(rows), cols(cols), q(DeviceAlloc<__nv_fp8_e4m3>(rows * cols)),
        scales(DeviceAlloc<float>(rows)) {
    EXPECT_NE(q, nullptr);
    EXPECT_NE(scales, nullptr);
    EXPECT_EQ(cudaMemsetAsync(q.get(), 0xFF, rows * cols, stream), cudaSuccess);
    EXPECT_EQ(cudaMemsetAsync(scales.get(), 0xFF, rows * sizeof(float), stream), cudaSuccess);
  }
  E4m3Rows rows_view() const { return E4m3Rows{q.get(), scales.get()}; }
  std::vector<uint8_t> Bytes() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<uint8_t> h(rows * cols);
    EXPECT_EQ(cudaMemcpy(h.data(), q.get(), h.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  std::vector<uint32_t> ScaleBits() const {
    std::vector<float> h(rows);
    EXPECT_EQ(cudaMemcpy(h.data(), scales.get(), rows * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    std::vector<uint32_t> bits(rows);
    std::memcpy(bits.data(), h.data(), rows * sizeof(float));
    return bits;
  }
  int64_t rows, cols;
  DevicePtr<__nv_fp8_e4m3> q;
  DevicePtr<float> scales;
};

void ExpectSameCopy(const E4m3Copy& got, const E4m3Copy& want) {
  const std::vector<uint32_t> gs = got.ScaleBits(), ws = want.ScaleBits();
  for (size_t r = 0; r < ws.size(); ++r) {
    float f = 0;
    std::memcpy(&f, &ws[r], sizeof f);
    ASSERT_TRUE(std::isfinite(f) && f > 0) << "row " << r << ": reference scale " << f;
    ASSERT_EQ(gs[r], ws[r]) << "scale of row " << r;
  }
  const std::vector<uint8_t> gq = got.Bytes(), wq = want.Bytes();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < wq.size(); ++i) {
    if (gq[i] != wq[i] && bad++ == 0) first = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << "e4m3 bytes differ, first at " << first << " (row " << first / got.cols
                    << "): got 0x" << std::hex << (first >= 0 ? int{gq[first]} : 0) << ", want 0x"
                    << (first >= 0 ? int{wq[first]} : 0);
}

void ExpectSameBf16(const bf16* got, const bf16* want, int64_t n) {
  const std::vector<float> g = ToHost(got, n), w = ToHost(want, n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(g[i] == w[i]) << "bf16 output differs at " << i << ": " << g[i] << " vs " << w[i];
  }
}

// `op` (RmsNorm or SiluMul writing `out`, with the copy it is given) run with a copy, then without
// one and followed by QuantizeWeightsFp8 on its output: the bf16 outputs, the bytes and the scales
// must all be identical. Then with the copy alone (a null output): the same copy where `fused`
// (the copy made in the op's kernel), else InvalidArgument (nothing to quantize from).
void ExpectCopyMatchesTwoKernelPath(cudaStream_t stream, int rows, int cols, bool fused,
                                    const std::function<absl::Status(bf16*, E4m3Rows)>& op) {
  const int64_t n = static_cast<int64_t>(rows) * cols;
  DeviceBf16 out(n), out_ref(n);
  ASSERT_OK(FillBf16(out.get(), n, NAN, stream));
  E4m3Copy got(rows, cols, stream), want(rows, cols, stream), alone(rows, cols, stream);
  ASSERT_OK(op(out.get(), got.rows_view()));
  ASSERT_OK(op(out_ref.get(), E4m3Rows{}));
  ASSERT_OK(QuantizeWeightsFp8(out_ref.get(), want.q.get(), want.scales.get(), rows, cols,
                               stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ExpectSameBf16(out.get(), out_ref.get(), n);
  ExpectSameCopy(got, want);
  const absl::Status copy_alone = op(nullptr, alone.rows_view());
  if (!fused) {
    EXPECT_TRUE(absl::IsInvalidArgument(copy_alone)) << copy_alone;
    return;
  }
  ASSERT_OK(copy_alone);
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ExpectSameCopy(alone, want);
}

TEST_F(ElementwiseTest, RmsNormWritesTheQuantizersE4m3Copy) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  struct Case {
    int rows, cols, x_offset;
  };
  // 8192 and 16384: one and two pieces per thread; 28672: four (the 70B FFN width); 40000: past
  // the in-register row, and x misaligned: the element-wise kernel then QuantizeWeightsFp8.
  for (const Case& c : {Case{1, 8192, 0}, Case{64, 8192, 0}, Case{3, 16384, 0},
                        Case{5, 28672, 0}, Case{2, 40, 0}, Case{2, 40000, 0}, Case{3, 8192, 1}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " cols=" << c.cols
                                    << " x_offset=" << c.x_offset);
    const int64_t n = static_cast<int64_t>(c.rows) * c.cols;
    DeviceBf16 x(n), w(c.cols);
    ASSERT_OK(FillRandomBf16(x.get(c.x_offset), n, seed++, 2.0f, stream_));
    ASSERT_OK(FillRandomBf16(w.get(), c.cols, seed++, 1.5f, stream_));
    const bool fused = E4m3CopyIsFused(c.cols) && c.x_offset == 0;
    ExpectCopyMatchesTwoKernelPath(stream_, c.rows, c.cols, fused, [&](bf16* y, E4m3Rows copy) {
      return RmsNorm(x.get(c.x_offset), w.get(), y, c.rows, c.cols, 1e-5f, stream_, copy);
    });
    if (HasFatalFailure()) return;
  }
}

// AddRmsNorm against the two kernels it fuses, ResidualAdd then RmsNorm (then QuantizeWeightsFp8
// for the copy), on the same inputs: the sums left in x, the normalized rows and the copy must
// all be identical. Against a double reference too, so that both paths cannot be wrong alike.
TEST_F(ElementwiseTest, AddRmsNormIsResidualAddThenRmsNorm) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  struct Case {
    int rows, cols, offset;  // of x and the residual from 16-byte alignment (y stays aligned)
    bool copy;
  };
  // 8192 (70B hidden) at 1 and 64 rows, 16384 (405B) two pieces per thread, 20000 four with an
  // idle tail; 40 a partial warp; 40000 past the in-register row, and misaligned x and residual:
  // both take ResidualAdd, the element-wise norm (and QuantizeWeightsFp8).
  for (const Case& c :
       {Case{1, 8192, 0, false}, Case{1, 8192, 0, true}, Case{64, 8192, 0, true},
        Case{3, 16384, 0, false}, Case{3, 16384, 0, true}, Case{2, 20000, 0, true},
        Case{2, 40, 0, true}, Case{2, 40000, 0, true}, Case{3, 8192, 1, false},
        Case{3, 8192, 1, true}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " cols=" << c.cols
                                    << " offset=" << c.offset << " copy=" << c.copy);
    const int64_t n = static_cast<int64_t>(c.rows) * c.cols;
    constexpr float kEps = 1e-5f;
    DeviceBf16 x(n), x_ref(n), x_alone(n), r(n), w(c.cols), y(n), y_ref(n);
    ASSERT_OK(FillRandomBf16(x.get(c.offset), n, seed++, 2.0f, stream_));
    ASSERT_OK(FillRandomBf16(r.get(c.offset), n, seed++, 1.0f, stream_));
    ASSERT_OK(FillRandomBf16(w.get(), c.cols, seed++, 1.5f, stream_));
    for (DeviceBf16* copy : {&x_ref, &x_alone}) {
      ASSERT_CUDA(cudaMemcpyAsync(copy->get(c.offset), x.get(c.offset), n * sizeof(bf16),
                                  cudaMemcpyDeviceToDevice, stream_));
    }
    ASSERT_OK(FillBf16(y.get(), n, NAN, stream_));
    const std::vector<float> hx = ToHost(x.get(c.offset), n), hr = ToHost(r.get(c.offset), n);
    E4m3Copy got(c.rows, c.cols, stream_), want(c.rows, c.cols, stream_);
    ASSERT_OK(AddRmsNorm(x.get(c.offset), r.get(c.offset), w.get(), y.get(), c.rows, c.cols, kEps,
                         stream_, c.copy ? got.rows_view() : E4m3Rows{}));
    ASSERT_OK(ResidualAdd(x_ref.get(c.offset), r.get(c.offset), n, stream_));
    ASSERT_OK(RmsNorm(x_ref.get(c.offset), w.get(), y_ref.get(), c.rows, c.cols, kEps, stream_));
    if (c.copy) {
      ASSERT_OK(QuantizeWeightsFp8(y_ref.get(), want.q.get(), want.scales.get(), c.rows, c.cols,
                                   stream_));
    }
    Sync();
    ExpectSameBf16(x.get(c.offset), x_ref.get(c.offset), n);
    ExpectSameBf16(y.get(), y_ref.get(), n);
    if (c.copy) {
      ExpectSameCopy(got, want);
      // The copy alone (no y): the same sums and copy where the copy is fused, else rejected
      // before anything runs.
      E4m3Copy alone(c.rows, c.cols, stream_);
      const absl::Status st = AddRmsNorm(x_alone.get(c.offset), r.get(c.offset), w.get(), nullptr,
                                         c.rows, c.cols, kEps, stream_, alone.rows_view());
      if (E4m3CopyIsFused(c.cols) && c.offset == 0) {
        ASSERT_OK(st);
        Sync();
        ExpectSameBf16(x_alone.get(c.offset), x_ref.get(c.offset), n);
        ExpectSameCopy(alone, want);
      } else {
        EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
        Sync();
        const std::vector<float> untouched = ToHost(x_alone.get(c.offset), n);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_TRUE(untouched[i] == hx[i]) << "x changed by a rejected call at " << i;
        }
      }
    }
    std::vector<double> sums(n);
    for (int64_t i = 0; i < n; ++i) sums[i] = static_cast<double>(hx[i]) + hr[i];
    ExpectClose(ToHost(x.get(c.offset), n), sums, kRtol, 1e-6);
    if (HasFatalFailure()) return;
  }
}

TEST_F(ElementwiseTest, AddRmsNormRejectsAnOutputOverItsSums) {
  DeviceBf16 x(2 * 64), r(2 * 64), w(64), y(2 * 64);
  EXPECT_TRUE(absl::IsInvalidArgument(
      AddRmsNorm(x.get(), r.get(), w.get(), x.get(), 2, 64, 1e-5f, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      AddRmsNorm(x.get(), nullptr, w.get(), y.get(), 2, 64, 1e-5f, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      AddRmsNorm(x.get(), r.get(), w.get(), y.get(), 2, 0, 1e-5f, stream_)));
}

TEST_F(ElementwiseTest, SiluMulWritesTheQuantizersE4m3Copy) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  struct Case {
    int rows, ffn, in_offset;
  };
  // 28672 (70B): four 16-byte pieces per thread; 14336 (8B): two; 1040 and 40: one, with a
  // partial warp; 40000 past the in-register row and a misaligned input: SiluMul, then
  // QuantizeWeightsFp8.
  for (const Case& c : {Case{1, 28672, 0}, Case{64, 28672, 0}, Case{3, 14336, 0},
                        Case{3, 1040, 0}, Case{2, 40, 0}, Case{2, 40000, 0}, Case{3, 1024, 1}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " ffn=" << c.ffn
                                    << " in_offset=" << c.in_offset);
    const int64_t inputs = 2 * static_cast<int64_t>(c.rows) * c.ffn;
    DeviceBf16 gate_up(inputs);
    ASSERT_OK(FillRandomBf16(gate_up.get(c.in_offset), inputs, seed++, 8.0f, stream_));
    const bool fused = E4m3CopyIsFused(c.ffn) && c.in_offset == 0;
    ExpectCopyMatchesTwoKernelPath(stream_, c.rows, c.ffn, fused, [&](bf16* out, E4m3Rows copy) {
      return SiluMul(gate_up.get(c.in_offset), out, c.rows, c.ffn, stream_, copy);
    });
    if (HasFatalFailure()) return;
  }
}

TEST_F(ElementwiseTest, E4m3CopyRejectsWhatTheQuantizerCannotRead) {
  DeviceBf16 x(3 * 64), w(64), y(3 * 64);
  E4m3Copy copy(3, 64, stream_);
  const auto rejected = [](const absl::Status& st) { return absl::IsInvalidArgument(st); };
  // q without scales, a row length that is not a multiple of 8, a misaligned output.
  EXPECT_PRED1(rejected, RmsNorm(x.get(), w.get(), y.get(), 3, 64, 1e-5f, stream_,
                                 E4m3Rows{copy.q.get(), nullptr}));
  EXPECT_PRED1(rejected, RmsNorm(x.get(), w.get(), y.get(), 3, 60, 1e-5f, stream_,
                                 copy.rows_view()));
  EXPECT_PRED1(rejected, RmsNorm(x.get(), w.get(), y.get(1), 3, 64, 1e-5f, stream_,
                                 copy.rows_view()));
  EXPECT_PRED1(rejected, SiluMul(x.get(), y.get(), 1, 60, stream_, copy.rows_view()));
  EXPECT_PRED1(rejected,
               SiluMul(x.get(), y.get(), 1, 64, stream_, E4m3Rows{nullptr, copy.scales.get()}));
  EXPECT_PRED1(rejected, SiluMul(x.get(), y.get(1), 1, 64, stream_, copy.rows_view()));
  // No output at all: neither bf16 nor a copy.
  EXPECT_PRED1(rejected, RmsNorm(x.get(), w.get(), nullptr, 3, 64, 1e-5f, stream_));
  EXPECT_PRED1(rejected, SiluMul(x.get(), nullptr, 1, 64, stream_));
}

TEST(E4m3CopyIsFusedTest, RowsOfAMultipleOf8UpTo32768) {
  EXPECT_TRUE(E4m3CopyIsFused(8));
  EXPECT_TRUE(E4m3CopyIsFused(8192));
  EXPECT_TRUE(E4m3CopyIsFused(28672));
  EXPECT_TRUE(E4m3CopyIsFused(32768));
  EXPECT_FALSE(E4m3CopyIsFused(32776));
  EXPECT_FALSE(E4m3CopyIsFused(60));
  EXPECT_FALSE(E4m3CopyIsFused(0));
}

// ---------------------------------------------------------------------------------------------

TEST_F(ElementwiseTest, ResidualAdd) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  struct Case {
    int64_t n;
    int x_offset, r_offset;
  };
  for (const Case& c : {Case{1, 0, 0}, Case{7, 0, 0}, Case{8, 0, 0}, Case{1000, 0, 0},
                        Case{(int64_t{1} << 23) + 3, 0, 0}, Case{1003, 1, 1}, Case{1003, 3, 3},
                        Case{1003, 1, 0}, Case{(int64_t{1} << 20) + 1, 5, 2}}) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " x_offset=" << c.x_offset
                                    << " r_offset=" << c.r_offset);
    DeviceBf16 x(c.n), r(c.n);
    ASSERT_OK(FillRandomBf16(x.get(c.x_offset), c.n, seed++, 1.0f, stream_));
    ASSERT_OK(FillRandomBf16(r.get(c.r_offset), c.n, seed++, 0.5f, stream_));
    const std::vector<float> hx = ToHost(x.get(c.x_offset), c.n);
    const std::vector<float> hr = ToHost(r.get(c.r_offset), c.n);
    ASSERT_OK(ResidualAdd(x.get(c.x_offset), r.get(c.r_offset), c.n, stream_));
    Sync();
    std::vector<double> want(c.n);
    for (int64_t i = 0; i < c.n; ++i) want[i] = static_cast<double>(hx[i]) + hr[i];
    ExpectClose(ToHost(x.get(c.x_offset), c.n), want, kRtol, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------

TEST_F(ElementwiseTest, SiluMul) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  struct Case {
    int rows, ffn, offset;
  };
  for (const Case& c : {Case{1, 28672, 0}, Case{2, 28672, 0}, Case{3, 28672, 0},
                        Case{4, 28672, 0}, Case{3, 8, 0}, Case{3, 13, 0}, Case{2, 1000, 1},
                        Case{1, 1, 0}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " ffn=" << c.ffn
                                    << " offset=" << c.offset);
    const int64_t n = static_cast<int64_t>(c.rows) * c.ffn;
    DeviceBf16 gate_up(2 * n), out(n);
    // Gates over [-8, 8] cover silu's negative dip, its linear tail and the saturated side.
    ASSERT_OK(FillRandomBf16(gate_up.get(c.offset), 2 * n, seed++, 8.0f, stream_));
    ASSERT_OK(FillBf16(out.get(c.offset), n, NAN, stream_));
    const std::vector<float> hgu = ToHost(gate_up.get(c.offset), 2 * n);
    ASSERT_OK(SiluMul(gate_up.get(c.offset), out.get(c.offset), c.rows, c.ffn, stream_));
    Sync();
    std::vector<double> want(n);
    for (int r = 0; r < c.rows; ++r) {
      for (int i = 0; i < c.ffn; ++i) {
        const double g = hgu[static_cast<int64_t>(r) * 2 * c.ffn + i];
        const double u = hgu[static_cast<int64_t>(r) * 2 * c.ffn + c.ffn + i];
        want[static_cast<int64_t>(r) * c.ffn + i] = g / (1.0 + std::exp(-g)) * u;
      }
    }
    ExpectClose(ToHost(out.get(c.offset), n), want, kRtol, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------

struct RopeCase {
  int batch, q_len, start_pos, hq, hkv, head_dim, cache_capacity;
  float theta;
};

void RopeKvAppendCase(cudaStream_t stream, const RopeCase& c, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "batch=" << c.batch << " q_len=" << c.q_len
                                  << " start_pos=" << c.start_pos << " Hq=" << c.hq
                                  << " Hkv=" << c.hkv << " d=" << c.head_dim
                                  << " cap=" << c.cache_capacity);
  const int d = c.head_dim, half = d / 2;
  const int64_t tokens = static_cast<int64_t>(c.batch) * c.q_len;
  const int64_t width = static_cast<int64_t>(c.hq + 2 * c.hkv) * d;
  const int64_t cache_n = static_cast<int64_t>(c.batch) * c.hkv * c.cache_capacity * d;
  DeviceBf16 qkv(tokens * width), q_out(tokens * c.hq * d), k_cache(cache_n), v_cache(cache_n);
  ASSERT_OK(FillRandomBf16(qkv.get(), tokens * width, seed, 1.0f, stream));
  ASSERT_OK(FillBf16(q_out.get(), tokens * c.hq * d, NAN, stream));
  ASSERT_OK(FillBf16(k_cache.get(), cache_n, NAN, stream));
  ASSERT_OK(FillBf16(v_cache.get(), cache_n, NAN, stream));
  const std::vector<float> h_qkv = ToHost(qkv.get(), tokens * width);
  ASSERT_OK(RopeKvAppend(qkv.get(), q_out.get(), k_cache.get(), v_cache.get(), c.batch, c.q_len,
                         c.start_pos, c.hq, c.hkv, d, c.cache_capacity, c.theta, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  // Reference: q_ref [tokens, Hq, d]; k_ref/v_ref [batch, Hkv, q_len, d].
  std::vector<double> q_ref(tokens * c.hq * d);
  std::vector<double> k_ref(tokens * c.hkv * d), v_ref(tokens * c.hkv * d);
  for (int b = 0; b < c.batch; ++b) {
    for (int t = 0; t < c.q_len; ++t) {
      const int64_t token = static_cast<int64_t>(b) * c.q_len + t;
      const double pos = c.start_pos + t;
      const float* row = h_qkv.data() + token * width;
      for (int h = 0; h < c.hq + c.hkv; ++h) {
        for (int i = 0; i < half; ++i) {
          const double angle = pos * std::pow(static_cast<double>(c.theta), -2.0 * i / d);
          const double cs = std::cos(angle), sn = std::sin(angle);
          const double x1 = row[h * d + i], x2 = row[h * d + half + i];
          const double o1 = x1 * cs - x2 * sn, o2 = x2 * cs + x1 * sn;
          if (h < c.hq) {
            q_ref[(token * c.hq + h) * d + i] = o1;
            q_ref[(token * c.hq + h) * d + half + i] = o2;
          } else {
            const int64_t base = ((static_cast<int64_t>(b) * c.hkv + (h - c.hq)) * c.q_len + t) * d;
            k_ref[base + i] = o1;
            k_ref[base + half + i] = o2;
          }
        }
      }
      for (int h = 0; h < c.hkv; ++h) {
        const int64_t base = ((static_cast<int64_t>(b) * c.hkv + h) * c.q_len + t) * d;
        for (int i = 0; i < d; ++i) v_ref[base + i] = row[(c.hq + c.hkv + h) * d + i];
      }
    }
  }
  ExpectClose(ToHost(q_out.get(), tokens * c.hq * d), q_ref, kRtol, 1e-5);

  // Caches: the appended rows match; a window of untouched rows around them is still NaN (the
  // whole cache when it is small).
  const std::vector<float> hk = ToHost(k_cache.get(), cache_n);
  const std::vector<float> hv = ToHost(v_cache.get(), cache_n);
  const bool full = cache_n <= (int64_t{1} << 24);
  const int lo = full ? 0 : std::max(0, c.start_pos - 4);
  const int hi = full ? c.cache_capacity : std::min(c.cache_capacity, c.start_pos + c.q_len + 4);
  std::vector<float> k_got, v_got;
  int64_t stray = 0;
  for (int b = 0; b < c.batch; ++b) {
    for (int h = 0; h < c.hkv; ++h) {
      for (int pos = lo; pos < hi; ++pos) {
        const int64_t base = ((static_cast<int64_t>(b) * c.hkv + h) * c.cache_capacity + pos) * d;
        const bool appended = pos >= c.start_pos && pos < c.start_pos + c.q_len;
        for (int i = 0; i < d; ++i) {
          if (appended) {
            k_got.push_back(hk[base + i]);
            v_got.push_back(hv[base + i]);
          } else {
            stray += !std::isnan(hk[base + i]) + !std::isnan(hv[base + i]);
          }
        }
      }
    }
  }
  EXPECT_EQ(stray, 0) << "cache elements outside [start_pos, start_pos + q_len) were written";
  ExpectClose(k_got, k_ref, kRtol, 1e-5);
  ExpectClose(v_got, v_ref, 0.0, 0.0);  // V is copied bit for bit
}

TEST_F(ElementwiseTest, RopeKvAppendLlama70B) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  // Llama-3-70B attention: 64 query heads, 8 KV heads, head_dim 128, theta 500000.
  for (const RopeCase& c : {RopeCase{1, 1, 0, 64, 8, 128, 16, 500000.0f},
                            RopeCase{3, 1, 37, 64, 8, 128, 40, 500000.0f},
                            RopeCase{2, 5, 1001, 64, 8, 128, 1009, 500000.0f},
                            RopeCase{2, 17, 3, 64, 8, 128, 20, 500000.0f},
                            RopeCase{1, 3, 100003, 64, 8, 128, 100008, 500000.0f}}) {
    RopeKvAppendCase(stream_, c, seed++);
  }
}

TEST_F(ElementwiseTest, RopeKvAppendOtherShapes) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const RopeCase& c : {RopeCase{2, 3, 5, 3, 1, 6, 9, 10000.0f},      // element-wise path
                            RopeCase{1, 2, 1, 4, 2, 8, 3, 10000.0f},      // d % 16 != 0
                            RopeCase{2, 4, 7, 32, 8, 64, 12, 10000.0f},   // head_dim 64
                            RopeCase{1, 1, 0, 8, 8, 128, 1, 1000000.0f}}) {  // no GQA, full cache
    RopeKvAppendCase(stream_, c, seed++);
  }
}

TEST_F(ElementwiseTest, RopeKvAppendRejectsOverflowingCache) {
  DeviceBf16 buf(1024);
  const absl::Status st = RopeKvAppend(buf.get(), buf.get(), buf.get(), buf.get(), 1, 4, 13, 2, 1,
                                       8, 16, 10000.0f, stream_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  const absl::Status odd = RopeKvAppend(buf.get(), buf.get(), buf.get(), buf.get(), 1, 1, 0, 2, 1,
                                        7, 16, 10000.0f, stream_);
  EXPECT_EQ(odd.code(), absl::StatusCode::kInvalidArgument) << odd;
}

}  // namespace
}  // namespace truthput
