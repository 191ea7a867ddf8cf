#include "kernels/cublas_gemm.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_fill.h"
#include "kernels/reference_gemm.h"

namespace truthput {
namespace {

using bf16 = __nv_bfloat16;

struct Shape {
  const char* name;
  int64_t n, k;
};
// Llama-3.1-70B qkv and down projections, and a shape that is no multiple of any tile.
constexpr Shape kShapes[] = {{"qkv", 10240, 8192}, {"down", 8192, 28672}, {"odd", 1000, 1030}};

// cuBLAS's default algorithm against the fp32 reference, outputs poisoned with NaN first, at
// decode (1, 16) and larger (128) batches; one CublasGemm object for all, switching streams.
TEST(CublasGemm, MatchesReference) {
  absl::StatusOr<std::unique_ptr<CublasGemm>> gemm = CublasGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const TestStream owned_streams[2];
  const cudaStream_t streams[2] = {owned_streams[0].get(), owned_streams[1].get()};
  int call = 0;
  for (const Shape& shape : kShapes) {
    const uint64_t w_seed = FreshSeed();
    DevicePtr<bf16> w = DeviceAlloc<bf16>(shape.n * shape.k);
    ASSERT_TRUE(w);
    ASSERT_OK(FillRandomBf16(w.get(), shape.n * shape.k, w_seed, 0.05f, streams[0]));
    for (int64_t m : {int64_t{1}, int64_t{16}, int64_t{128}}) {
      cudaStream_t stream = streams[call++ % 2];
      const uint64_t x_seed = FreshSeed();
      SCOPED_TRACE(absl::StrCat(shape.name, " m=", m, " w seed=", w_seed, " x seed=", x_seed));
      DevicePtr<bf16> x = DeviceAlloc<bf16>(m * shape.k);
      DevicePtr<bf16> y = DeviceAlloc<bf16>(m * shape.n);
      DevicePtr<float> ref = DeviceAlloc<float>(m * shape.n);
      ASSERT_TRUE(x && y && ref);
      ASSERT_CUDA(cudaDeviceSynchronize());  // w was filled on the other stream
      ASSERT_OK(FillRandomBf16(x.get(), m * shape.k, x_seed, 1.0f, stream));
      ASSERT_OK(FillBf16(y.get(), m * shape.n, std::numeric_limits<float>::quiet_NaN(), stream));
      ASSERT_OK((*gemm)->Run(x.get(), w.get(), y.get(), m, shape.n, shape.k, stream));
      ASSERT_OK(ReferenceGemm(x.get(), w.get(), ref.get(), m, shape.n, shape.k, stream));
      ASSERT_CUDA(cudaStreamSynchronize(stream));
      std::vector<bf16> y_host(m * shape.n);
      std::vector<float> ref_host(m * shape.n);
      ASSERT_CUDA(cudaMemcpy(y_host.data(), y.get(), y_host.size() * sizeof(bf16),
                             cudaMemcpyDeviceToHost));
      ASSERT_CUDA(cudaMemcpy(ref_host.data(), ref.get(), ref_host.size() * sizeof(float),
                             cudaMemcpyDeviceToHost));
      ExpectCloseToReference(y_host, ref_host, m, shape.n);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(CublasGemm, RejectsBadArguments) {
  absl::StatusOr<std::unique_ptr<CublasGemm>> gemm = CublasGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  DevicePtr<bf16> buf = DeviceAlloc<bf16>(64 * 64);
  ASSERT_TRUE(buf);
  bf16* p = buf.get();
  EXPECT_EQ((*gemm)->Run(p, p, p, 0, 8, 8, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Run(p, p, p, 1, 8, int64_t{1} << 31, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Run(nullptr, p, p, 1, 8, 8, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace truthput
