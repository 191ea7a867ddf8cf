#include "kernels/cublaslt_gemm.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cublaslt_algo.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"
#include "kernels/reference_gemm.h"

namespace truthput {
namespace {

constexpr float kXScale = 1.0f;
constexpr float kWScale = 0.05f;

// How much rounding of split-K partials to bf16 can add, from the algorithm description: with S
// splits reduced in the output type (reduction=inplace or output_type), S bf16 roundings of
// partial sums of size up to rms(ref) accumulate like a random walk, i.e. about sqrt(S) of one.
// Outputs are checked with ExpectCloseToReference (gpu_test_util.h), whose absolute term
// (2^-6 rms(ref), times this factor) is about 2^-8 rms(ref) per rounding with a factor 4 of slack
// for the tail of millions of elements; without split-K in bf16 the output rounding is the whole
// error, since fp32 summation-order differences are ~1e-6 relative.
double Bf16PartialsFactor(const std::string& algo) {
  const size_t at = algo.find("splitk=");
  if (at == std::string::npos) return 1.0;
  const int splits = std::atoi(algo.c_str() + at + 7);
  const bool bf16_partials = algo.find("reduction=inplace") != std::string::npos ||
                             algo.find("reduction=output_type") != std::string::npos;
  return bf16_partials && splits > 1 ? std::sqrt(static_cast<double>(splits)) : 1.0;
}

// Runs the GEMM under test and the reference on one shape, both outputs poisoned with NaN first.
void CheckShape(CublasLtGemm& gemm, const bf16* w, int64_t m, int64_t n, int64_t k,
                cudaStream_t stream) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("m=", m, " n=", n, " k=", k, " x seed=", seed));
  GemmOperands op;
  ASSERT_OK(MakeGemmOperands(m, n, k, seed, kXScale, stream, &op));
  const DevicePtr<bf16>& x = op.x;
  const DevicePtr<bf16>& y = op.y;
  const DevicePtr<float>& ref = op.ref;

  ASSERT_OK(gemm.Prepare(m, n, k));
  ASSERT_OK(gemm.Run(x.get(), w, y.get(), m, n, k, stream));
  ASSERT_OK(ReferenceGemm(x.get(), w, ref.get(), m, n, k, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  const std::string algo = gemm.AlgoDescription(m, n, k);
  EXPECT_NE(algo, "not prepared");
  EXPECT_NE(algo.find("algo="), std::string::npos) << algo;
  std::printf("m=%lld n=%lld k=%lld: %s\n", static_cast<long long>(m), static_cast<long long>(n),
              static_cast<long long>(k), algo.c_str());

  std::vector<bf16> y_host(m * n);
  std::vector<float> ref_host(m * n);
  ASSERT_CUDA(cudaMemcpy(y_host.data(), y.get(), m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(
      cudaMemcpy(ref_host.data(), ref.get(), m * n * sizeof(float), cudaMemcpyDeviceToHost));
  ExpectCloseToReference(y_host, ref_host, m, n, Bf16PartialsFactor(algo));
}

struct WeightShape {
  const char* name;
  int64_t n, k;
};

// Llama-3.1-70B projections (hidden 8192, 64 q heads + 8 kv heads of 128, intermediate 28672),
// and an odd shape that is no multiple of any tile size.
constexpr WeightShape kWeightShapes[] = {
    {"qkv", 10240, 8192},  {"o", 8192, 8192},   {"gate_up", 57344, 8192},
    {"down", 8192, 28672}, {"odd", 1000, 1032},
};
constexpr int64_t kMs[] = {1, 3, 7, 16, 128};

class CublasLtGemmTest : public testing::TestWithParam<WeightShape> {};

TEST_P(CublasLtGemmTest, MatchesReference) {
  const WeightShape shape = GetParam();
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const TestStream owned_stream;
  cudaStream_t stream = owned_stream.get();

  const uint64_t w_seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat(shape.name, " w seed=", w_seed));
  DevicePtr<bf16> w = DeviceAlloc<bf16>(shape.n * shape.k);
  ASSERT_TRUE(w);
  ASSERT_OK(FillRandomBf16(w.get(), shape.n * shape.k, w_seed, kWScale, stream));
  for (int64_t m : kMs) {
    CheckShape(**gemm, w.get(), m, shape.n, shape.k, stream);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Llama70B, CublasLtGemmTest, testing::ValuesIn(kWeightShapes),
                         [](const testing::TestParamInfo<WeightShape>& p) {
                           return std::string(p.param.name);
                         });

// The algorithm Autotune keeps (any of the heuristic's candidates) must be as correct as the
// heuristic's first choice.
TEST(CublasLtGemm, AutotunedAlgorithmMatchesReference) {
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const TestStream owned_stream;
  cudaStream_t stream = owned_stream.get();
  for (const WeightShape& shape : {kWeightShapes[0], kWeightShapes[3], kWeightShapes[4]}) {
    DevicePtr<bf16> w = DeviceAlloc<bf16>(shape.n * shape.k);
    ASSERT_TRUE(w);
    ASSERT_OK(FillRandomBf16(w.get(), shape.n * shape.k, FreshSeed(), kWScale, stream));
    for (int64_t m : {int64_t{1}, int64_t{16}}) {
      DevicePtr<bf16> x = DeviceAlloc<bf16>(m * shape.k);
      DevicePtr<bf16> y = DeviceAlloc<bf16>(m * shape.n);
      ASSERT_TRUE(x && y);
      ASSERT_OK(FillRandomBf16(x.get(), m * shape.k, FreshSeed(), kXScale, stream));
      ASSERT_OK((*gemm)->Autotune(m, shape.n, shape.k, {{x.get(), w.get(), y.get()}}, stream));
      const std::string algo = (*gemm)->AlgoDescription(m, shape.n, shape.k);
      EXPECT_NE(algo.find("autotuned="), std::string::npos) << algo;
      CheckShape(**gemm, w.get(), m, shape.n, shape.k, stream);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(CublasLtGemm, RunsInsideStreamCapture) {
  constexpr int64_t m = 16, n = 8192, k = 8192;
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const TestStream owned_stream;
  cudaStream_t stream = owned_stream.get();
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  GemmOperands op;
  ASSERT_OK(MakeGemmOperands(m, n, k, seed, kXScale, stream, &op));
  const DevicePtr<bf16>& x = op.x;
  const DevicePtr<bf16>& y = op.y;
  const DevicePtr<float>& ref = op.ref;
  DevicePtr<bf16> w = DeviceAlloc<bf16>(n * k);
  ASSERT_TRUE(w);
  ASSERT_OK(FillRandomBf16(w.get(), n * k, seed + 1, kWScale, stream));
  ASSERT_OK(ReferenceGemm(x.get(), w.get(), ref.get(), m, n, k, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  ASSERT_OK((*gemm)->Prepare(m, n, k));
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status run = (*gemm)->Run(x.get(), w.get(), y.get(), m, n, k, stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  const std::unique_ptr<CUgraph_st, cudaError_t (*)(cudaGraph_t)> graph_owner(graph,
                                                                              cudaGraphDestroy);
  ASSERT_OK(run);
  ASSERT_CUDA(end);
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  const std::unique_ptr<CUgraphExec_st, cudaError_t (*)(cudaGraphExec_t)> exec_owner(
      exec, cudaGraphExecDestroy);
  // Launch twice: a graph must be replayable, and the second launch overwrites the first.
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  ASSERT_OK(FillBf16(y.get(), m * n, std::numeric_limits<float>::quiet_NaN(), stream));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  std::vector<bf16> y_host(m * n);
  std::vector<float> ref_host(m * n);
  ASSERT_CUDA(cudaMemcpy(y_host.data(), y.get(), m * n * sizeof(bf16), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(
      cudaMemcpy(ref_host.data(), ref.get(), m * n * sizeof(float), cudaMemcpyDeviceToHost));
  ExpectCloseToReference(y_host, ref_host, m, n,
                         Bf16PartialsFactor((*gemm)->AlgoDescription(m, n, k)));
}

TEST(CublasLtGemm, UnpreparedShapeDuringCaptureIsRefused) {
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const TestStream owned_stream;
  cudaStream_t stream = owned_stream.get();
  DevicePtr<bf16> buf = DeviceAlloc<bf16>(3 * 64 * 64);
  ASSERT_TRUE(buf);
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status run =
      (*gemm)->Run(buf.get(), buf.get() + 64 * 64, buf.get() + 2 * 64 * 64, 64, 64, 64, stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (graph != nullptr) cudaGraphDestroy(graph);
  EXPECT_EQ(run.code(), absl::StatusCode::kFailedPrecondition) << run;
  EXPECT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
  EXPECT_EQ((*gemm)->AlgoDescription(64, 64, 64), "not prepared");
  // Outside capture the same call prepares the shape on the fly.
  EXPECT_TRUE((*gemm)
                  ->Run(buf.get(), buf.get() + 64 * 64, buf.get() + 2 * 64 * 64, 64, 64, 64, stream)
                  .ok());
  EXPECT_NE((*gemm)->AlgoDescription(64, 64, 64), "not prepared");
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
}

TEST(CublasLtGemm, RejectsMisalignedPointersAndShapes) {
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  DevicePtr<bf16> buf = DeviceAlloc<bf16>(3 * 64 * 64 + 8);
  ASSERT_TRUE(buf);
  bf16* x = buf.get();
  bf16* w = x + 64 * 64;
  bf16* y = w + 64 * 64;
  EXPECT_EQ((*gemm)->Run(x, w, y + 1, 64, 64, 64, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Run(x + 4, w, y, 64, 64, 64, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Prepare(4, 60, 64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Prepare(4, 64, 60).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Prepare(0, 64, 64).code(), absl::StatusCode::kInvalidArgument);
}

// A candidate cuBLASLt refuses when asked to run (a status, the stream unharmed) is passed over,
// not the end of the autotune; only when every candidate is refused is the first refusal returned.
TEST(CublasLtAlgo, FastestCandidatePassesOverOneThatIsRefused) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  constexpr size_t kBytes = size_t{64} << 20;
  void* buffer = nullptr;
  ASSERT_EQ(cudaMalloc(&buffer, kBytes), cudaSuccess);
  // 0: refused; 1: writes 64 MiB per set (slow); 2: writes 64 KiB (fast).
  auto enqueue = [&](size_t candidate, size_t) -> absl::Status {
    if (candidate == 0) return absl::UnimplementedError("refused: CUBLAS_STATUS_NOT_SUPPORTED");
    const size_t bytes = candidate == 1 ? kBytes : size_t{64} << 10;
    return cudaMemsetAsync(buffer, 0, bytes, stream) == cudaSuccess
               ? absl::OkStatus()
               : absl::InternalError("cudaMemsetAsync");
  };
  absl::StatusOr<size_t> fastest = FastestCublasLtCandidate(3, 2, enqueue, stream);
  ASSERT_TRUE(fastest.ok()) << fastest.status();
  EXPECT_EQ(*fastest, 2u);

  absl::StatusOr<size_t> none = FastestCublasLtCandidate(
      2, 2,
      [](size_t c, size_t) { return absl::UnimplementedError(absl::StrCat("refused ", c)); },
      stream);
  EXPECT_EQ(none.status(), absl::UnimplementedError("refused 0"));
  EXPECT_EQ(FastestCublasLtCandidate(0, 2, enqueue, stream).status().code(),
            absl::StatusCode::kInvalidArgument);
  cudaFree(buffer);
  cudaStreamDestroy(stream);
}

TEST(CublasLtGemm, VersionIsDotted) {
  const std::string v = CublasLtGemm::Version();
  std::printf("cuBLASLt %s\n", v.c_str());
  ASSERT_FALSE(v.empty());
  EXPECT_TRUE(v[0] >= '1' && v[0] <= '9') << v;
  EXPECT_NE(v.find('.'), std::string::npos) << v;
}

}  // namespace
}  // namespace truthput
