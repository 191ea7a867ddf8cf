#include "kernels/cublaslt_fp8_gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/reference_gemm.h"

namespace truthput {
namespace {

template <typename T>
DevicePtr<T> Upload(const std::vector<T>& host) {
  DevicePtr<T> d = DeviceAlloc<T>(static_cast<int64_t>(host.size()));
  if (d != nullptr && cudaMemcpy(d.get(), host.data(), host.size() * sizeof(T),
                                 cudaMemcpyHostToDevice) != cudaSuccess) {
    return nullptr;
  }
  return d;
}

template <typename T>
std::vector<T> Download(const T* device, int64_t count) {
  std::vector<T> host(static_cast<size_t>(count));
  if (cudaMemcpy(host.data(), device, host.size() * sizeof(T), cudaMemcpyDeviceToHost) !=
      cudaSuccess) {
    return {};
  }
  return host;
}

// A failed query fails the test rather than passing for "no fp8 tensor cores".
bool GpuHasFp8() {
  int device = 0, major = 0, minor = 0;
  EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), cudaSuccess);
  EXPECT_EQ(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), cudaSuccess);
  return major * 10 + minor >= 89;
}

#define SKIP_WITHOUT_FP8()                                                              \
  do {                                                                                  \
    if (!GpuHasFp8()) GTEST_SKIP() << "no fp8 tensor cores (compute capability < 8.9)"; \
  } while (0)

// One operand in both encodings: the fp8 bytes the GEMM reads and the same values in bf16 for
// ReferenceGemm (every e4m3 value, subnormals included, is exact in bf16).
struct Operand {
  std::vector<fp8_e4m3> fp8;
  std::vector<__nv_bfloat16> bf16;
};

// Values `value(i)` quantized to e4m3 (round to nearest), then widened to bf16 exactly.
template <typename F>
Operand MakeOperand(int64_t count, F value) {
  Operand o;
  o.fp8.reserve(count);
  o.bf16.reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    const fp8_e4m3 q(value(i));
    o.fp8.push_back(q);
    o.bf16.push_back(__float2bfloat16_rn(static_cast<float>(q)));
  }
  return o;
}

// Runs the fp8 GEMM and the bf16 reference on the same values; returns y (bf16) and ref (fp32).
void RunBoth(CublasLtFp8Gemm& gemm, const Operand& x, const Operand& w, int64_t m, int64_t n,
             int64_t k, cudaStream_t stream, std::vector<__nv_bfloat16>* y_out,
             std::vector<float>* ref_out) {
  DevicePtr<fp8_e4m3> x8 = Upload(x.fp8), w8 = Upload(w.fp8);
  DevicePtr<__nv_bfloat16> x16 = Upload(x.bf16), w16 = Upload(w.bf16);
  DevicePtr<__nv_bfloat16> y = DeviceAlloc<__nv_bfloat16>(m * n);
  DevicePtr<float> ref = DeviceAlloc<float>(m * n);
  ASSERT_TRUE(x8 && w8 && x16 && w16 && y && ref);
  // NaN in both outputs first, so an unwritten element can never pass.
  ASSERT_CUDA(cudaMemsetAsync(y.get(), 0xFF, m * n * sizeof(__nv_bfloat16), stream));
  ASSERT_CUDA(cudaMemsetAsync(ref.get(), 0xFF, m * n * sizeof(float), stream));
  ASSERT_OK(gemm.Run(x8.get(), w8.get(), y.get(), m, n, k, stream));
  ASSERT_OK(ReferenceGemm(x16.get(), w16.get(), ref.get(), m, n, k, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  *y_out = Download(y.get(), m * n);
  *ref_out = Download(ref.get(), m * n);
  ASSERT_EQ(y_out->size(), static_cast<size_t>(m * n));
  ASSERT_EQ(ref_out->size(), static_cast<size_t>(m * n));
  std::printf("m=%lld n=%lld k=%lld: %s\n", static_cast<long long>(m), static_cast<long long>(n),
              static_cast<long long>(k), gemm.AlgoDescription(m, n, k).c_str());
}

// |y - ref| <= rel * |ref| + abs_rms * rms(ref) for every element; NaN or Inf never passes.
void ExpectClose(const std::vector<__nv_bfloat16>& y, const std::vector<float>& ref, int64_t n,
                 double rel, double abs_rms) {
  double sum_sq = 0;
  for (float r : ref) {
    ASSERT_TRUE(std::isfinite(r)) << "reference output not finite";
    sum_sq += static_cast<double>(r) * r;
  }
  const double rms = std::sqrt(sum_sq / static_cast<double>(ref.size()));
  ASSERT_GT(rms, 0.0);
  int64_t bad = 0;
  double worst = 0;  // max of (|y - ref| - rel |ref|) / rms(ref): what abs_rms must cover.
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = __bfloat162float(y[i]);
    const double r = ref[i];
    if (std::isfinite(g)) worst = std::max(worst, (std::fabs(g - r) - rel * std::fabs(r)) / rms);
    if (std::isfinite(g) && std::fabs(g - r) <= rel * std::fabs(r) + abs_rms * rms) continue;
    if (++bad <= 5) {
      ADD_FAILURE() << "y[" << i / n << "," << i % n << "] = " << g << ", reference " << r
                    << " (rms " << rms << ")";
    }
  }
  EXPECT_EQ(bad, 0) << "elements out of bound, of " << ref.size();
  std::printf("  worst error %.4f of rms, allowed %.4f\n", worst, abs_rms);
}

// The absolute slack (over rms(ref)) that split-K partials rounded to bf16 need, from the
// algorithm description: S roundings of partial sums of up to rms(ref) at 2^-8 each, growing like
// sqrt(S), with a factor 4 to spare; 0 where partials stay in fp32 or there is no split.
double SplitKSlack(const std::string& algo) {
  const size_t at = algo.find("splitk=");
  if (at == std::string::npos) return 0.0;
  const int splits = std::atoi(algo.c_str() + at + 7);
  const bool bf16_partials = algo.find("reduction=inplace") != std::string::npos ||
                             algo.find("reduction=output_type") != std::string::npos;
  return bf16_partials && splits > 1 ? std::ldexp(std::sqrt(static_cast<double>(splits)), -6) : 0.0;
}

uint32_t Hash(uint64_t seed, int64_t i) {
  uint64_t z = seed + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

// `count` integers in [-spread, spread] times `scale` (a power of two), drawn by Hash(seed, i):
// exact in e4m3 and bf16.
Operand SmallIntegers(int64_t count, uint64_t seed, int spread, float scale) {
  return MakeOperand(count, [=](int64_t i) {
    return (static_cast<float>(Hash(seed, i) % (2 * spread + 1)) - spread) * scale;
  });
}

class CublasLtFp8GemmTest : public testing::TestWithParam<bool> {  // fast_accum
 protected:
  static absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> CreateGemm() {
    CublasLtFp8Gemm::Options options;
    options.fast_accum = GetParam();
    return CublasLtFp8Gemm::Create(options);
  }
};

// Small integers times powers of two: exact in e4m3 and bf16, and every partial sum (multiples
// of 0.5 below 2^10) is exact in any accumulator of 12 or more bits, fast accumulation's
// included. The only error left is rounding the output to bf16 (2^-9 relative; 2^-8 allowed).
TEST_P(CublasLtFp8GemmTest, ExactOnSmallIntegers) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CreateGemm();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  struct Shape {
    int64_t m, n, k;
  };
  for (const auto& [m, n, k] : {Shape{16, 64, 64}, Shape{64, 192, 512}, Shape{128, 1024, 1024}}) {
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k));
    const Operand x = SmallIntegers(m * k, FreshSeed(), 2, 1.0f);
    const Operand w = SmallIntegers(n * k, FreshSeed(), 2, 0.5f);
    std::vector<__nv_bfloat16> y;
    std::vector<float> ref;
    RunBoth(**gemm, x, w, m, n, k, stream.get(), &y, &ref);
    if (HasFatalFailure()) return;
    ExpectClose(y, ref, n, std::ldexp(1.0, -8), SplitKSlack((*gemm)->AlgoDescription(m, n, k)));
  }
}

// Random e4m3 values over their usual range against the dequantized (bf16) reference, at an
// LLM-like k. Accumulation order and, with fast_accum, the tensor core's reduced-precision
// accumulator add error of a fraction of a percent of rms(ref); a wrong layout or index gives
// errors of order rms(ref).
TEST_P(CublasLtFp8GemmTest, MatchesDequantizedReference) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CreateGemm();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  const int64_t m = 128, n = 1536, k = 4096;
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> x_dist(-4.0f, 4.0f), w_dist(-0.5f, 0.5f);
  const Operand x = MakeOperand(m * k, [&](int64_t) { return x_dist(rng); });
  const Operand w = MakeOperand(n * k, [&](int64_t) { return w_dist(rng); });
  std::vector<__nv_bfloat16> y;
  std::vector<float> ref;
  RunBoth(**gemm, x, w, m, n, k, stream.get(), &y, &ref);
  if (HasFatalFailure()) return;
  ExpectClose(y, ref, n, std::ldexp(1.0, -7),
              (GetParam() ? 3e-2 : 1e-2) + SplitKSlack((*gemm)->AlgoDescription(m, n, k)));
}

// Autotune may keep any candidate; each must be as correct as the heuristic's first.
TEST_P(CublasLtFp8GemmTest, AutotunedAlgorithmIsCorrect) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CreateGemm();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  const int64_t m = 256, n = 2048, k = 1024;
  const Operand x = SmallIntegers(m * k, FreshSeed(), 2, 1.0f);
  const Operand w = SmallIntegers(n * k, FreshSeed(), 2, 0.25f);
  DevicePtr<fp8_e4m3> x8 = Upload(x.fp8), w8 = Upload(w.fp8);
  DevicePtr<__nv_bfloat16> scratch = DeviceAlloc<__nv_bfloat16>(m * n);
  ASSERT_TRUE(x8 && w8 && scratch);
  ASSERT_OK((*gemm)->Autotune(m, n, k, {{x8.get(), w8.get(), scratch.get()}}, stream.get()));
  EXPECT_NE((*gemm)->AlgoDescription(m, n, k).find("autotuned="), std::string::npos);
  std::vector<__nv_bfloat16> y;
  std::vector<float> ref;
  RunBoth(**gemm, x, w, m, n, k, stream.get(), &y, &ref);
  if (HasFatalFailure()) return;
  ExpectClose(y, ref, n, std::ldexp(1.0, -8), SplitKSlack((*gemm)->AlgoDescription(m, n, k)));
}

INSTANTIATE_TEST_SUITE_P(Accumulation, CublasLtFp8GemmTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "FastAccum" : "PreciseAccum");
                         });

// Captures what `enqueue` puts on `stream` into a graph and replays it once.
void ReplayCaptured(cudaStream_t stream, const std::function<void()>& enqueue) {
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue();
  cudaGraph_t graph = nullptr;
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// The graph's output equals the eager one bit for bit.
void ExpectSameBits(const __nv_bfloat16* eager, const __nv_bfloat16* graphed, int64_t count) {
  const std::vector<__nv_bfloat16> a = Download(eager, count);
  const std::vector<__nv_bfloat16> b = Download(graphed, count);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])), 0);
}

// Prepared shapes run inside stream capture, and the graph gives the eager result bit for bit.
TEST(CublasLtFp8Gemm, CapturesIntoGraph) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  const int64_t m = 64, n = 512, k = 256;
  const Operand x = SmallIntegers(m * k, FreshSeed(), 4, 1.0f);
  const Operand w = SmallIntegers(n * k, FreshSeed(), 4, 0.125f);
  DevicePtr<fp8_e4m3> x8 = Upload(x.fp8), w8 = Upload(w.fp8);
  DevicePtr<__nv_bfloat16> eager = DeviceAlloc<__nv_bfloat16>(m * n);
  DevicePtr<__nv_bfloat16> graphed = DeviceAlloc<__nv_bfloat16>(m * n);
  ASSERT_TRUE(x8 && w8 && eager && graphed);
  ASSERT_OK((*gemm)->Run(x8.get(), w8.get(), eager.get(), m, n, k, stream.get()));
  ASSERT_CUDA(cudaMemsetAsync(graphed.get(), 0xFF, m * n * sizeof(__nv_bfloat16), stream.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));

  absl::Status run, unprepared;
  ASSERT_NO_FATAL_FAILURE(ReplayCaptured(stream.get(), [&] {
    run = (*gemm)->Run(x8.get(), w8.get(), graphed.get(), m, n, k, stream.get());
    // Unprepared shapes are refused during capture rather than prepared mid-capture.
    unprepared = (*gemm)->Run(x8.get(), w8.get(), graphed.get(), m, n, 128, stream.get());
  }));
  ASSERT_OK(run);
  EXPECT_EQ(unprepared.code(), absl::StatusCode::kFailedPrecondition) << unprepared;
  ExpectSameBits(eager.get(), graphed.get(), m * n);
}

TEST(CublasLtFp8Gemm, RejectsBadShapesAndAlignment) {
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  EXPECT_EQ((*gemm)->Prepare(0, 64, 64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Prepare(16, 24, 64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Prepare(16, 64, 8).code(), absl::StatusCode::kInvalidArgument);
  DevicePtr<uint8_t> buf = DeviceAlloc<uint8_t>(1 << 20);
  ASSERT_TRUE(buf);
  const auto* x = reinterpret_cast<const fp8_e4m3*>(buf.get() + 1);  // Misaligned.
  const auto* w = reinterpret_cast<const fp8_e4m3*>(buf.get());
  auto* y = reinterpret_cast<__nv_bfloat16*>(buf.get() + (1 << 19));
  EXPECT_EQ((*gemm)->Run(x, w, y, 16, 64, 64, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->AlgoDescription(16, 64, 64), "not prepared");
}

// Batch sizes that are no multiple of 16 (decode): either correct, or refused with NotFound by
// the heuristic; never wrong. Prints which, since it depends on the cuBLASLt version.
TEST(CublasLtFp8Gemm, OddBatchIsCorrectOrRefused) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  const int64_t n = 1024, k = 2048;
  for (int64_t m : {int64_t{1}, int64_t{3}, int64_t{200}}) {
    SCOPED_TRACE(absl::StrCat("m=", m));
    const absl::Status prepared = (*gemm)->Prepare(m, n, k);
    if (absl::IsNotFound(prepared)) {
      std::printf("m=%lld: refused: %s\n", static_cast<long long>(m),
                  std::string(prepared.message()).c_str());
      continue;
    }
    ASSERT_OK(prepared);
    const Operand x = SmallIntegers(m * k, FreshSeed(), 2, 1.0f);
    const Operand w = SmallIntegers(n * k, FreshSeed(), 2, 0.5f);
    std::vector<__nv_bfloat16> y;
    std::vector<float> ref;
    RunBoth(**gemm, x, w, m, n, k, stream.get(), &y, &ref);
    if (HasFatalFailure()) return;
    ExpectClose(y, ref, n, std::ldexp(1.0, -8), SplitKSlack((*gemm)->AlgoDescription(m, n, k)));
  }
}


// Per-row scales (W8A8): y[i,j] = x_scales[i] * w_scales[j] * sum_k x[i,k] * w[j,k].

// 4096 values of uniform(-range, range), each quantized to e4m3: random operands are drawn from
// it by 12 hash bits, fast enough for the 470M-element weights of the 70B FFN shapes.
std::vector<fp8_e4m3> UniformE4m3Table(float range) {
  std::vector<fp8_e4m3> table;
  table.reserve(4096);
  for (int t = 0; t < 4096; ++t) {
    table.push_back(fp8_e4m3(range * ((static_cast<float>(t) + 0.5f) / 2048.0f - 1.0f)));
  }
  return table;
}

std::vector<fp8_e4m3> RandomE4m3(int64_t count, uint64_t seed,
                                 const std::vector<fp8_e4m3>& table) {
  std::vector<fp8_e4m3> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = table[Hash(seed, i) & 4095];
  return v;
}

std::vector<float> RandomScales(int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& s : v) s = dist(rng);
  return v;
}

// The value of every e4m3 byte, for the reference's inner loop.
std::array<double, 256> E4m3Values() {
  std::array<double, 256> values{};
  for (int b = 0; b < 256; ++b) {
    const uint8_t byte = static_cast<uint8_t>(b);
    fp8_e4m3 v;
    std::memcpy(&v, &byte, 1);
    values[b] = static_cast<double>(static_cast<float>(v));
  }
  return values;
}

struct Entry {
  int64_t i, j;
};

// Checks y at `entries` against the double reference. The bound is MatchesDequantizedReference's
// applied to the unscaled sum s = sum_k x[i,k] w[j,k] and carried through the scaling (the
// scales multiply in the fp32 epilogue, whose rounding is negligible):
//   |y - ref| <= 2^-7 |ref| + abs_rms * x_scales[i] * w_scales[j] * rms(s over entries).
// NaN or Inf never passes. A swapped or misindexed scale vector is off by a factor up to 4.
void ExpectPerRowClose(const std::vector<__nv_bfloat16>& y, const std::vector<fp8_e4m3>& x,
                       const std::vector<float>& x_scales, const std::vector<fp8_e4m3>& w,
                       const std::vector<float>& w_scales, int64_t n, int64_t k,
                       const std::vector<Entry>& entries, const std::vector<double>& sums,
                       double abs_rms) {
  double sum_sq = 0;
  for (double s : sums) sum_sq += s * s;
  const double rms = std::sqrt(sum_sq / static_cast<double>(sums.size()));
  ASSERT_GT(rms, 0.0);
  int64_t bad = 0;
  double worst = 0;  // max of (|y - ref| - 2^-7 |ref|) / (scale * rms): what abs_rms must cover.
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto [i, j] = entries[e];
    const double scale = static_cast<double>(x_scales[i]) * w_scales[j];
    const double r = scale * sums[e];
    const double g = __bfloat162float(y[i * n + j]);
    if (std::isfinite(g)) {
      worst = std::max(worst, (std::fabs(g - r) - std::ldexp(std::fabs(r), -7)) / (scale * rms));
    }
    if (std::isfinite(g) &&
        std::fabs(g - r) <= std::ldexp(std::fabs(r), -7) + abs_rms * scale * rms) {
      continue;
    }
    if (++bad <= 5) {
      ADD_FAILURE() << "y[" << i << "," << j << "] = " << g << ", reference " << r << " (scales "
                    << x_scales[i] << " x " << w_scales[j] << ", rms of sums " << rms << ")";
    }
  }
  EXPECT_EQ(bad, 0) << "entries out of bound, of " << entries.size();
  std::printf("  worst error %.4f of rms, allowed %.4f\n", worst, abs_rms);
}

// Random e4m3 operands and scales in [0.5, 2] against a double reference, with fast and precise
// accumulation, at decode batch sizes (1 to 16) and larger, and at the Llama-3.1-70B projections
// (QKV, O, gate+up, down) at m=64, where 2000 random entries and the corners are checked against
// the reference and every element for NaN. Refusal (NotFound) fails: a GPU with fp8 is expected
// to have per-row-scaled kernels.
TEST(CublasLtFp8GemmPerRow, MatchesDoubleReference) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> fast = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(fast.ok()) << fast.status();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> precise =
      CublasLtFp8Gemm::Create({.fast_accum = false});
  ASSERT_TRUE(precise.ok()) << precise.status();
  TestStream stream;
  const std::vector<fp8_e4m3> x_table = UniformE4m3Table(4.0f), w_table = UniformE4m3Table(0.5f);
  const std::array<double, 256> value = E4m3Values();
  struct Case {
    int64_t m, n, k;
    bool sampled;
  };
  const Case cases[] = {
      // Decode batches (--gemm=auto tunes cuBLASLt per-row for fp8 projections of 32 tokens or
      // fewer), then larger.
      {1, 1024, 2048, false},    {3, 1024, 2048, false},    {8, 1024, 2048, false},
      {16, 1024, 2048, false},
      {17, 1024, 2048, false},   {64, 1024, 2048, false},   {256, 1024, 2048, false},
      {37, 1040, 688, false},  // n and k multiples of 16 but of no larger power of two.
      {64, 10240, 8192, true},   {64, 8192, 8192, true},    {64, 57344, 8192, true},
      {64, 8192, 28672, true},
  };
  uint64_t seed = FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (const auto& [m, n, k, sampled] : cases) {
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k));
    seed += 4;
    const std::vector<fp8_e4m3> x = RandomE4m3(m * k, seed, x_table);
    const std::vector<fp8_e4m3> w = RandomE4m3(n * k, seed + 1, w_table);
    const std::vector<float> x_scales = RandomScales(m, seed + 2);
    const std::vector<float> w_scales = RandomScales(n, seed + 3);
    DevicePtr<fp8_e4m3> x8 = Upload(x), w8 = Upload(w);
    DevicePtr<float> xs = Upload(x_scales), ws = Upload(w_scales);
    DevicePtr<__nv_bfloat16> y = DeviceAlloc<__nv_bfloat16>(m * n);
    ASSERT_TRUE(x8 && w8 && xs && ws && y);

    std::vector<Entry> entries;
    if (sampled) {
      std::mt19937_64 rng(seed);
      entries = {{0, 0}, {0, n - 1}, {m - 1, 0}, {m - 1, n - 1}};
      for (int e = 0; e < 2000; ++e) {
        entries.push_back({static_cast<int64_t>(rng() % m), static_cast<int64_t>(rng() % n)});
      }
    } else {
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) entries.push_back({i, j});
      }
    }
    std::vector<double> sums(entries.size());
    const auto* xb = reinterpret_cast<const uint8_t*>(x.data());
    const auto* wb = reinterpret_cast<const uint8_t*>(w.data());
    for (size_t e = 0; e < entries.size(); ++e) {
      const uint8_t* xr = xb + entries[e].i * k;
      const uint8_t* wr = wb + entries[e].j * k;
      double s = 0;
      for (int64_t kk = 0; kk < k; ++kk) s += value[xr[kk]] * value[wr[kk]];
      sums[e] = s;
    }

    auto check = [&](CublasLtFp8Gemm* gemm) {
      // NaN first, so an unwritten element can never pass.
      ASSERT_CUDA(cudaMemsetAsync(y.get(), 0xFF, m * n * sizeof(__nv_bfloat16), stream.get()));
      ASSERT_OK(gemm->Run(x8.get(), xs.get(), w8.get(), ws.get(), y.get(), m, n, k, stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      const std::vector<__nv_bfloat16> got = Download(y.get(), m * n);
      ASSERT_EQ(got.size(), static_cast<size_t>(m * n));
      // Every element written and finite, sampled case or not.
      EXPECT_EQ(std::count_if(got.begin(), got.end(),
                              [](__nv_bfloat16 v) { return !std::isfinite(__bfloat162float(v)); }),
                0)
          << "non-finite (or unwritten) elements of " << m * n;
      const std::string algo = gemm->AlgoDescription(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow);
      std::printf("per-row m=%lld n=%lld k=%lld: %s\n", static_cast<long long>(m),
                  static_cast<long long>(n), static_cast<long long>(k), algo.c_str());
      EXPECT_NE(algo.find("per_row"), std::string::npos) << algo;
      // MatchesDequantizedReference's allowances at k=4096. Fast accumulation's error (the
      // accumulator drops low bits at every k step) grows as sqrt(k), as bench's ref::RtolGemm
      // measured it on 70B's GEMMs.
      const double abs_rms =
          (gemm->fast_accum() ? 3e-2 * std::sqrt(std::max(1.0, static_cast<double>(k) / 4096))
                              : 1e-2) +
          SplitKSlack(algo);
      ExpectPerRowClose(got, x, x_scales, w, w_scales, n, k, entries, sums, abs_rms);
    };
    for (CublasLtFp8Gemm* gemm : {fast->get(), precise->get()}) {
      SCOPED_TRACE(gemm->fast_accum() ? "fast_accum" : "precise");
      ASSERT_OK(gemm->Prepare(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow));
      check(gemm);
      if (HasFatalFailure()) return;
    }
    // Every candidate Autotune may pick (split-K and tile variants included) must be as correct,
    // on the unsampled shapes and the 70B O projection.
    if (sampled && n != 8192) continue;
    absl::StatusOr<size_t> count =
        (*fast)->CandidateCount(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow);
    ASSERT_TRUE(count.ok()) << count.status();
    std::set<std::string> seen;
    for (size_t c = 0; c < *count; ++c) {
      SCOPED_TRACE(absl::StrCat("candidate ", c + 1, " of ", *count));
      ASSERT_OK((*fast)->UseCandidate(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow, c));
      std::string algo = (*fast)->AlgoDescription(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow);
      algo.erase(algo.find(" candidate="));
      EXPECT_TRUE(seen.insert(algo).second) << "duplicate candidate: " << algo;
      check(fast->get());
      if (HasFatalFailure()) return;
    }
    EXPECT_EQ((*fast)->UseCandidate(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow, *count).code(),
              absl::StatusCode::kOutOfRange);
    // At the 70B shape cuBLASLt offers one per-row configuration; variants of it must exist.
    if (n == 8192) EXPECT_GT(*count, 1u);
  }
}

// A shape prepared with unit scales is not prepared with per-row scales (a separate plan);
// prepared, a per-row Run captures into a graph that gives the eager result bit for bit.
TEST(CublasLtFp8GemmPerRow, SeparatePlanAndCapturesIntoGraph) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  TestStream stream;
  const int64_t m = 64, n = 512, k = 256;
  const std::vector<fp8_e4m3> x = RandomE4m3(m * k, 9, UniformE4m3Table(4.0f));
  const std::vector<fp8_e4m3> w = RandomE4m3(n * k, 10, UniformE4m3Table(0.5f));
  DevicePtr<fp8_e4m3> x8 = Upload(x), w8 = Upload(w);
  DevicePtr<float> xs = Upload(RandomScales(m, 11)), ws = Upload(RandomScales(n, 12));
  DevicePtr<__nv_bfloat16> eager = DeviceAlloc<__nv_bfloat16>(m * n);
  DevicePtr<__nv_bfloat16> graphed = DeviceAlloc<__nv_bfloat16>(m * n);
  ASSERT_TRUE(x8 && w8 && xs && ws && eager && graphed);
  using Scaling = CublasLtFp8Gemm::Scaling;

  ASSERT_OK((*gemm)->Prepare(m, n, k));
  EXPECT_EQ((*gemm)->AlgoDescription(m, n, k, Scaling::kPerRow), "not prepared");
  ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  const absl::Status unprepared = (*gemm)->Run(x8.get(), xs.get(), w8.get(), ws.get(),
                                               graphed.get(), m, n, k, stream.get());
  cudaGraph_t graph = nullptr;
  ASSERT_CUDA(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphDestroy(graph);
  EXPECT_EQ(unprepared.code(), absl::StatusCode::kFailedPrecondition) << unprepared;

  ASSERT_OK((*gemm)->Prepare(m, n, k, Scaling::kPerRow));
  EXPECT_EQ((*gemm)->AlgoDescription(m, n, k).find("per_row"), std::string::npos);
  EXPECT_NE((*gemm)->AlgoDescription(m, n, k, Scaling::kPerRow).find("per_row"),
            std::string::npos);
  ASSERT_OK((*gemm)->Run(x8.get(), xs.get(), w8.get(), ws.get(), eager.get(), m, n, k,
                         stream.get()));
  ASSERT_CUDA(cudaMemsetAsync(graphed.get(), 0xFF, m * n * sizeof(__nv_bfloat16), stream.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  absl::Status run;
  ASSERT_NO_FATAL_FAILURE(ReplayCaptured(stream.get(), [&] {
    run = (*gemm)->Run(x8.get(), xs.get(), w8.get(), ws.get(), graphed.get(), m, n, k,
                       stream.get());
  }));
  ASSERT_OK(run);
  ExpectSameBits(eager.get(), graphed.get(), m * n);
}

TEST(CublasLtFp8GemmPerRow, RejectsBadShapesAndScales) {
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  using Scaling = CublasLtFp8Gemm::Scaling;
  EXPECT_EQ((*gemm)->Prepare(16, 24, 64, Scaling::kPerRow).code(),
            absl::StatusCode::kInvalidArgument);
  DevicePtr<uint8_t> buf = DeviceAlloc<uint8_t>(1 << 20);
  ASSERT_TRUE(buf);
  const auto* x = reinterpret_cast<const fp8_e4m3*>(buf.get());
  const auto* w = reinterpret_cast<const fp8_e4m3*>(buf.get() + (1 << 18));
  auto* y = reinterpret_cast<__nv_bfloat16*>(buf.get() + (1 << 19));
  const auto* s = reinterpret_cast<const float*>(buf.get() + 3 * (1 << 18));
  const auto* misaligned = reinterpret_cast<const float*>(buf.get() + 3 * (1 << 18) + 4);
  EXPECT_EQ((*gemm)->Run(x, nullptr, w, s, y, 16, 64, 64, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Run(x, s, w, misaligned, y, 16, 64, 64, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->AlgoDescription(16, 64, 64, Scaling::kPerRow), "not prepared");
}

}  // namespace
}  // namespace truthput
