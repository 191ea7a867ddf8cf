#include "kernels/cublaslt_fp8_gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/reference_gemm.h"

namespace truthput {
namespace {

#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)
#define ASSERT_CUDA(expr)                                                      \
  do {                                                                         \
    const cudaError_t _err = (expr);                                           \
    ASSERT_EQ(_err, cudaSuccess) << #expr << ": " << cudaGetErrorString(_err); \
  } while (0)

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
template <typename T>
using DevicePtr = std::unique_ptr<T, CudaFree>;

template <typename T>
DevicePtr<T> DeviceAlloc(int64_t count) {
  void* p = nullptr;
  if (cudaMalloc(&p, static_cast<size_t>(count) * sizeof(T)) != cudaSuccess) return nullptr;
  return DevicePtr<T>(static_cast<T*>(p));
}

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

bool GpuHasFp8() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  return major * 10 + minor >= 89;
}

#define SKIP_WITHOUT_FP8()                                                              \
  do {                                                                                  \
    if (!GpuHasFp8()) GTEST_SKIP() << "no fp8 tensor cores (compute capability < 8.9)"; \
  } while (0)

class Stream {
 public:
  Stream() { cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking); }
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

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
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = __bfloat162float(y[i]);
    const double r = ref[i];
    if (std::isfinite(g) && std::fabs(g - r) <= rel * std::fabs(r) + abs_rms * rms) continue;
    if (++bad <= 5) {
      ADD_FAILURE() << "y[" << i / n << "," << i % n << "] = " << g << ", reference " << r
                    << " (rms " << rms << ")";
    }
  }
  EXPECT_EQ(bad, 0) << "elements out of bound, of " << ref.size();
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

class CublasLtFp8GemmTest : public testing::TestWithParam<bool> {};  // fast_accum

// Small integers times powers of two: exact in e4m3 and bf16, and every partial sum (multiples
// of 0.5 below 2^10) is exact in any accumulator of 12 or more bits, fast accumulation's
// included. The only error left is rounding the output to bf16 (2^-9 relative; 2^-8 allowed).
TEST_P(CublasLtFp8GemmTest, ExactOnSmallIntegers) {
  SKIP_WITHOUT_FP8();
  CublasLtFp8Gemm::Options options;
  options.fast_accum = GetParam();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create(options);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  Stream stream;
  struct Shape {
    int64_t m, n, k;
  };
  for (const auto& [m, n, k] : {Shape{16, 64, 64}, Shape{64, 192, 512}, Shape{128, 1024, 1024}}) {
    SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k));
    const Operand x =
        MakeOperand(m * k, [](int64_t i) { return static_cast<float>(Hash(1, i) % 5) - 2.0f; });
    const Operand w = MakeOperand(
        n * k, [](int64_t i) { return (static_cast<float>(Hash(2, i) % 5) - 2.0f) * 0.5f; });
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
  CublasLtFp8Gemm::Options options;
  options.fast_accum = GetParam();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create(options);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  Stream stream;
  const int64_t m = 128, n = 1536, k = 4096;
  std::mt19937_64 rng(12345);
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
  CublasLtFp8Gemm::Options options;
  options.fast_accum = GetParam();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create(options);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  Stream stream;
  const int64_t m = 256, n = 2048, k = 1024;
  const Operand x =
      MakeOperand(m * k, [](int64_t i) { return static_cast<float>(Hash(3, i) % 5) - 2.0f; });
  const Operand w = MakeOperand(
      n * k, [](int64_t i) { return (static_cast<float>(Hash(4, i) % 5) - 2.0f) * 0.25f; });
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

// Prepared shapes run inside stream capture, and the graph gives the eager result bit for bit.
TEST(CublasLtFp8Gemm, CapturesIntoGraph) {
  SKIP_WITHOUT_FP8();
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> gemm = CublasLtFp8Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  Stream stream;
  const int64_t m = 64, n = 512, k = 256;
  const Operand x =
      MakeOperand(m * k, [](int64_t i) { return static_cast<float>(Hash(5, i) % 9) - 4.0f; });
  const Operand w = MakeOperand(
      n * k, [](int64_t i) { return (static_cast<float>(Hash(6, i) % 9) - 4.0f) * 0.125f; });
  DevicePtr<fp8_e4m3> x8 = Upload(x.fp8), w8 = Upload(w.fp8);
  DevicePtr<__nv_bfloat16> eager = DeviceAlloc<__nv_bfloat16>(m * n);
  DevicePtr<__nv_bfloat16> graphed = DeviceAlloc<__nv_bfloat16>(m * n);
  ASSERT_TRUE(x8 && w8 && eager && graphed);
  ASSERT_OK((*gemm)->Run(x8.get(), w8.get(), eager.get(), m, n, k, stream.get()));
  ASSERT_CUDA(cudaMemsetAsync(graphed.get(), 0xFF, m * n * sizeof(__nv_bfloat16), stream.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));

  ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  const absl::Status run = (*gemm)->Run(x8.get(), w8.get(), graphed.get(), m, n, k, stream.get());
  // Unprepared shapes are refused during capture rather than prepared mid-capture.
  const absl::Status unprepared =
      (*gemm)->Run(x8.get(), w8.get(), graphed.get(), m, n, 128, stream.get());
  cudaGraph_t graph = nullptr;
  ASSERT_CUDA(cudaStreamEndCapture(stream.get(), &graph));
  ASSERT_OK(run);
  EXPECT_EQ(unprepared.code(), absl::StatusCode::kFailedPrecondition) << unprepared;
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream.get()));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  const std::vector<__nv_bfloat16> a = Download(eager.get(), m * n);
  const std::vector<__nv_bfloat16> b = Download(graphed.get(), m * n);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])), 0);
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
  Stream stream;
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
    const Operand x =
        MakeOperand(m * k, [](int64_t i) { return static_cast<float>(Hash(7, i) % 5) - 2.0f; });
    const Operand w = MakeOperand(
        n * k, [](int64_t i) { return (static_cast<float>(Hash(8, i) % 5) - 2.0f) * 0.5f; });
    std::vector<__nv_bfloat16> y;
    std::vector<float> ref;
    RunBoth(**gemm, x, w, m, n, k, stream.get(), &y, &ref);
    if (HasFatalFailure()) return;
    ExpectClose(y, ref, n, std::ldexp(1.0, -8), SplitKSlack((*gemm)->AlgoDescription(m, n, k)));
  }
}

}  // namespace
}  // namespace truthput
